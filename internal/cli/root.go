// Package cli wires vigil's commands (cobra). Commands only parse flags and
// call into the internal packages; no logic lives here.
package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/clio"
	"github.com/vigil-sec/vigil/internal/sensorcmd"
)

// Version is set at build time (-ldflags -X).
var version = "dev"

type globalFlags struct {
	logLevel  string
	logFormat string
}

// Main runs vigil with args and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return clio.ExitOK
	}
	fmt.Fprintf(stderr, "vigil: %v\n", err)
	if clio.ExitCode(err) == clio.ExitGeneral && strings.HasPrefix(err.Error(), "unknown command ") {
		return clio.ExitUsage
	}
	return clio.ExitCode(err)
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "vigil",
		Short: "Runtime threat detection for Kubernetes and Linux hosts",
		Long: `vigil watches what processes on your nodes do (eBPF), attributes every event to its
container and pod, and tells you when something running turns malicious.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	sensorcmd.RegisterLogFlags(root.PersistentFlags(), &g.logLevel, &g.logFormat)
	// Unknown or malformed flags are usage errors (exit 2).
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return clio.Errorf(clio.ExitUsage, "%v; see `%s --help`", err, c.CommandPath())
	})
	root.AddCommand(newUpCmd(g), sensorcmd.Command(version, g.logger), newHubCmd(g), newRulesCmd(), newVersionCmd(),
		newLoginCmd(), newLogoutCmd(), newAlertsCmd(), newClusterCmd())
	root.AddCommand(controlPlaneCmds(g)...)
	root.AddCommand(simulateCmds(g)...)
	root.AddCommand(newAuditCmd(g))
	return root
}

func (g *globalFlags) logger(stderr io.Writer) (*slog.Logger, error) {
	return sensorcmd.NewLogger(stderr, g.logLevel, g.logFormat)
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print vigil's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "vigil %s\n", version)
			return err
		},
	}
}

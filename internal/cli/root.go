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
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format on stderr: text or json")
	// Unknown or malformed flags are usage errors (exit 2).
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return clio.Errorf(clio.ExitUsage, "%v; see `%s --help`", err, c.CommandPath())
	})
	root.AddCommand(newUpCmd(g), newSensorCmd(g), newHubCmd(g), newRulesCmd(), newVersionCmd(),
		newLoginCmd(), newLogoutCmd(), newAlertsCmd(), newClusterCmd())
	root.AddCommand(controlPlaneCmds(g)...)
	root.AddCommand(simulateCmds(g)...)
	root.AddCommand(newAuditCmd(g))
	return root
}

func (g *globalFlags) logger(stderr io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", g.logLevel)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(g.logFormat) {
	case "text":
		return slog.New(slog.NewTextHandler(stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(stderr, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: use text or json", g.logFormat)
	}
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

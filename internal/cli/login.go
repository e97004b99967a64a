package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/clio"
	"github.com/vigil-sec/vigil/internal/hubclient"
)

func newLoginCmd() *cobra.Command {
	var hub, token, caFile, sub string
	cmd := &cobra.Command{
		Use:   "login --hub URL --token TOKEN [--ca FILE]",
		Short: "Sign the CLI in to a hub: check the token there, then save hub, token and CA for later commands",
		Long: `Sign the CLI in to a hub. The token is checked at the hub first (it must be
accepted and able to read the subscription); only then are the hub URL, the
token, the pinned CA certificate and the subscription saved to $VIGIL_CONFIG,
or ~/.vigil/cli.json (mode 0600), for every later command. Flags --hub,
--token, --ca and --subscription of later commands override what is saved.

The subscription defaults to "` + hubclient.DefaultSubscription + `", the one ` + "`vigil up`" + ` registers its host in.
Pass --token - to read the token from standard input (keeps it out of the
shell history and the process list).`,
		Example: `  vigil login --hub https://hub.example:8443 --token vgl_... --ca ca.crt
  vigil alerts list`,
		Args: usageArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.TrimSpace(hub) == "" {
				return flagUsage("--hub is required: the hub's URL, e.g. https://hub.example:8443 (`vigil hub` and `vigil up` print it)")
			}
			if token == "-" {
				line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if err != nil && line == "" {
					return flagUsage("--token -: no token on standard input: pipe it in, e.g. `vigil login --hub URL --token - < token.txt`")
				}
				token = line
			}
			token = strings.TrimSpace(token)
			if token == "" {
				return flagUsage("--token is required: a token an Owner created with `vigil hub token create` (or the one `vigil hub` printed at its first start)")
			}
			norm, err := hubclient.NormalizeHubURL(hub)
			if err != nil {
				return flagUsage("--hub: %v", err)
			}
			cfg := hubclient.Config{Hub: norm, Token: token, Subscription: sub}
			if caFile != "" {
				if cfg.CAPEM, err = readCA(caFile); err != nil {
					return err
				}
			}
			if cfg.Subscription == "" {
				cfg.Subscription = hubclient.DefaultSubscription
			}
			c, err := hubclient.New(cfg, hubclient.WithUserAgent("vigil/"+version))
			if err != nil {
				return err
			}
			defer c.CloseIdleConnections()
			if err := c.CheckAccess(cmd.Context(), cfg.Subscription); err != nil {
				var he *hubclient.Error
				switch {
				case errors.As(err, &he) && he.StatusCode == http.StatusUnauthorized:
					return clio.Errorf(clio.ExitUnauthorized, "the hub at %s refused the token: %s; nothing was saved", norm, he.Message)
				case errors.As(err, &he) && he.StatusCode == http.StatusForbidden:
					return clio.Errorf(clio.ExitUnauthorized, "the hub at %s accepted the token, but it may not read subscription %q: %s; if the token belongs to another subscription pass --subscription; nothing was saved", norm, cfg.Subscription, he.Message)
				}
				return fmt.Errorf("log in: %w; nothing was saved", err)
			}
			path, err := hubclient.ConfigPath()
			if err != nil {
				return err
			}
			if err := hubclient.SaveConfig(path, cfg); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Logged in to %s (subscription %s); saved to %s.\nTry: vigil alerts list\n", norm, cfg.Subscription, path)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&hub, "hub", "", "hub URL, e.g. https://hub.example:8443 (required)")
	fl.StringVar(&token, "token", "", "bearer token (vgl_...); - reads it from standard input (required)")
	fl.StringVar(&caFile, "ca", "", "CA certificate (PEM) to pin: the hub's ca.crt; default: the system's roots")
	fl.StringVar(&sub, "subscription", "", "default subscription of later commands (default \""+hubclient.DefaultSubscription+"\")")
	return cmd
}

func newLogoutCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Forget the hub, token and CA that `vigil login` (or `vigil up`) saved",
		Long: `Remove the CLI's saved sign-in ($VIGIL_CONFIG, or ~/.vigil/cli.json). The token itself
stays valid at the hub: revoke it there with ` + "`vigil hub token revoke ID`" + ` if it leaked.`,
		Args: usageArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := hubclient.ConfigPath()
			if err != nil {
				return err
			}
			cfg, err := hubclient.LoadConfig(path)
			if errors.Is(err, hubclient.ErrNoConfig) {
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "Not logged in (%s does not exist); nothing to do.\n", path)
				return err
			}
			// A damaged file is removed too: logging out must always work.
			if rmErr := os.Remove(path); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) {
				return fmt.Errorf("log out: remove %s: %w", path, rmErr)
			}
			if err != nil {
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "Removed %s (it was not a valid configuration).\n", path)
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Logged out of %s; removed %s.\nThe token stays valid at the hub; revoke it with `vigil hub token revoke` if it leaked.\n", cfg.Hub, path)
			return err
		},
	}
}

package cli

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/vigil-sec/vigil/internal/clio"
	"github.com/vigil-sec/vigil/internal/hubclient"
)

// remoteFlags are the flags of every verb that talks to a hub. They
// override what `vigil login` saved ($VIGIL_CONFIG or ~/.vigil/cli.json).
type remoteFlags struct {
	hub          string
	token        string
	caFile       string
	subscription string
}

func (r *remoteFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&r.hub, "hub", "", "hub `URL` (https://HOST:PORT); default: the one vigil login saved")
	fs.StringVar(&r.token, "token", "", "bearer `token` (vgl_...); default: the one vigil login saved")
	fs.StringVar(&r.caFile, "ca", "", "CA certificate `file` (PEM) the hub's certificate must be signed by (pinned); default: the one vigil login saved, else the system's roots")
	fs.StringVar(&r.subscription, "subscription", "", "subscription to act in; default: the one vigil login saved, else \""+hubclient.DefaultSubscription+"\"")
}

// remote is a resolved hub connection.
type remote struct {
	client       *hubclient.Client
	subscription string
}

// resolve merges the flags over the saved configuration and returns a
// client. Credentials saved for one hub are never sent to another: with
// --hub naming a different hub, --token is required.
func (r *remoteFlags) resolve() (*remote, error) {
	cfg, loadErr := hubclient.Load()
	loaded := loadErr == nil
	if loadErr != nil && !errors.Is(loadErr, hubclient.ErrNoConfig) {
		return nil, loadErr
	}
	if r.hub != "" {
		hub, err := hubclient.NormalizeHubURL(r.hub)
		if err != nil {
			return nil, clio.Errorf(clio.ExitUsage, "--hub: %v", err)
		}
		if loaded {
			if saved, err := hubclient.NormalizeHubURL(cfg.Hub); err != nil || saved != hub {
				cfg = hubclient.Config{Subscription: cfg.Subscription}
			}
		}
		cfg.Hub = hub
	}
	if r.token != "" {
		cfg.Token = strings.TrimSpace(r.token)
	}
	if r.caFile != "" {
		pem, err := readCA(r.caFile)
		if err != nil {
			return nil, err
		}
		cfg.CAPEM = pem
	}
	switch {
	case cfg.Hub == "" && !loaded:
		return nil, clio.Exit(clio.ExitUnauthorized, loadErr)
	case cfg.Hub == "":
		return nil, clio.Errorf(clio.ExitUnauthorized, "no hub URL: run `vigil login --hub URL --token TOKEN` or pass --hub")
	case cfg.Token == "":
		return nil, clio.Errorf(clio.ExitUnauthorized, "no token for the hub at %s: pass --token TOKEN, or run `vigil login --hub %s --token TOKEN`", cfg.Hub, cfg.Hub)
	}
	c, err := hubclient.New(cfg, hubclient.WithUserAgent("vigil/"+version))
	if err != nil {
		return nil, err
	}
	sub := r.subscription
	if sub == "" {
		sub = cfg.Subscription
	}
	if sub == "" {
		sub = hubclient.DefaultSubscription
	}
	return &remote{client: c, subscription: sub}, nil
}

// readCA reads a CA certificate file for --ca.
func readCA(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", clio.Errorf(clio.ExitUsage, "--ca %s: %v; give the hub's CA certificate file (ca.crt in the hub's data directory)", path, err)
	}
	if !strings.Contains(string(b), "-----BEGIN CERTIFICATE-----") {
		return "", clio.Errorf(clio.ExitUsage, "--ca %s holds no PEM certificate: give the hub's ca.crt (it starts with -----BEGIN CERTIFICATE-----)", path)
	}
	return string(b), nil
}

// usageArgs is cobra.ExactArgs with a usage error (exit 2) that says what
// to pass.
func usageArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			if n == 0 {
				return clio.Errorf(clio.ExitUsage, "%s takes no arguments (got %q); see `%s --help`", cmd.CommandPath(), args, cmd.CommandPath())
			}
			return clio.Errorf(clio.ExitUsage, "%s needs %s (got %d arguments); see `%s --help`", cmd.CommandPath(), what, len(args), cmd.CommandPath())
		}
		return nil
	}
}

// canonicalList checks comma-separated or repeated values against valid
// ones (case-insensitively) and returns them in canonical spelling.
func canonicalList(flag string, vals, valid []string) ([]string, error) {
	var out []string
	for _, v := range vals {
		for _, p := range strings.Split(v, ",") {
			p = strings.TrimSpace(p)
			if p == "" {
				continue
			}
			c, ok := canonicalOf(p, valid)
			if !ok {
				return nil, clio.Errorf(clio.ExitUsage, "--%s %q is not valid: use %s (comma-separated for several)", flag, p, strings.Join(valid, ", "))
			}
			out = append(out, c)
		}
	}
	return out, nil
}

func canonicalOf(v string, valid []string) (string, bool) {
	for _, s := range valid {
		if strings.EqualFold(s, v) {
			return s, true
		}
	}
	return "", false
}

// parseWhen reads a duration (90m, 24h, 7d) or a point in time (RFC 3339,
// or a date in UTC). ok is false when v is neither.
func parseWhen(v string) (d time.Duration, at time.Time, ok bool) {
	if days, isDays := strings.CutSuffix(v, "d"); isDays {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil || n <= 0 || n > 36500 {
			return 0, time.Time{}, false
		}
		return time.Duration(n * 24 * float64(time.Hour)), time.Time{}, true
	}
	if d, err := time.ParseDuration(v); err == nil {
		return d, time.Time{}, d > 0
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return 0, t, true
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return 0, t, true
	}
	return 0, time.Time{}, false
}

// parseSince reads a point in the past given as a duration back from now
// (90m, 24h, 7d), an RFC 3339 time or a date (UTC).
func parseSince(flag, v string, now time.Time) (time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, nil
	}
	d, at, ok := parseWhen(v)
	if !ok {
		return time.Time{}, flagUsage("--%s %q is not a time: use a duration back from now (30m, 24h, 7d), an RFC 3339 time (2026-11-01T12:00:00Z) or a date (2026-11-01)", flag, v)
	}
	if d > 0 {
		return now.Add(-d), nil
	}
	return at, nil
}

// parseUntil reads a point in the future given as a duration from now
// (24h, 90d), an RFC 3339 time or a date (UTC).
func parseUntil(flag, v string, now time.Time) (time.Time, error) {
	v = strings.TrimSpace(v)
	d, at, ok := parseWhen(v)
	if !ok {
		return time.Time{}, flagUsage("--%s %q is not a time: use a duration from now (24h, 90d), an RFC 3339 time (2027-01-01T00:00:00Z) or a date (2027-01-01)", flag, v)
	}
	if d > 0 {
		return now.Add(d), nil
	}
	if !at.After(now) {
		return time.Time{}, flagUsage("--%s %q is in the past: give a future time or a duration from now (24h, 90d)", flag, v)
	}
	return at, nil
}

// writeOut prints v with the verb's output options.
func writeOut(cmd *cobra.Command, v any, o clio.Options, cols []clio.Column) error {
	return clio.Write(cmd.OutOrStdout(), v, o, cols)
}

// flagUsage is a usage error about a flag.
func flagUsage(format string, args ...any) error {
	return clio.Errorf(clio.ExitUsage, format, args...)
}

// groupRun makes a command group (alerts, cluster, ...) refuse an unknown
// subcommand with a usage error instead of printing its help and
// succeeding; with no arguments it prints the help.
func groupRun(cmd *cobra.Command) {
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if len(args) == 0 {
			return c.Help()
		}
		var names []string
		for _, s := range c.Commands() {
			if s.IsAvailableCommand() {
				names = append(names, s.Name())
			}
		}
		return flagUsage("unknown command %q for %q: use one of %s (see `%s --help`)", args[0], c.CommandPath(), strings.Join(names, ", "), c.CommandPath())
	}
}

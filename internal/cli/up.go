package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/hubclient"
	"github.com/vigil-sec/vigil/internal/pki"
	"github.com/vigil-sec/vigil/internal/sensor"
	"github.com/vigil-sec/vigil/internal/sensorcmd"
	"github.com/vigil-sec/vigil/internal/store"
)

// upFlags configure `vigil up`.
type upFlags struct {
	hub         hubServeFlags
	cluster     string
	group       string
	noSensor    bool
	source      string
	fileEvts    bool
	signInCLI   bool
	threatIntel []string
}

// Resource names of the standalone cluster `vigil up` registers.
const (
	upSubscription  = "default"
	upResourceGroup = "local"
)

func newUpCmd(g *globalFlags) *cobra.Command {
	f := &upFlags{}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run a hub on SQLite and a sensor for this host: a first look in one command",
		Long: `Run vigil on this machine with embedded defaults: a hub (API over HTTPS, SQLite in the
data directory, a self-signed CA), this host registered as a standalone cluster, and a sensor
for this host that ships its alerts to the hub. It prints the API URL and the admin token and
signs the local CLI in, so that "vigil alerts list" works from another shell of the same user.
Ctrl-C stops everything; a second run reuses the data (and the same token).

The sensor needs root (eBPF); without it vigil up runs the hub alone and says so.`,
		Example: `  sudo vigil up
  vigil alerts list -o table     # from another shell`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUp(cmd, g, f)
		},
	}
	fl := cmd.Flags()
	f.hub.register(fl, defaultDataDir(), "127.0.0.1:8443")
	fl.StringVar(&f.cluster, "cluster-name", "", "name of this host's standalone cluster (default: the hostname)")
	fl.StringVar(&f.group, "resource-group", upResourceGroup, "resource group of this host's cluster")
	fl.BoolVar(&f.noSensor, "no-sensor", false, "run the hub only")
	fl.StringVar(&f.source, "source", sensor.ModeAuto, "sensor event source: auto, ebpf or proc")
	fl.BoolVar(&f.fileEvts, "file-events", true, "sensor: observe file and privilege syscalls (see vigil sensor --help)")
	fl.StringArrayVar(&f.threatIntel, "threat-intel", nil, "sensor: threat-intelligence indicator FILE, one domain, IP address or CIDR per line (repeatable; see vigil sensor --help)")
	fl.BoolVar(&f.signInCLI, "sign-in", true, "save the hub URL, CA and admin token for the CLI of the user running vigil up")
	return cmd
}

// defaultDataDir is ~/.vigil (of the invoking user under sudo).
func defaultDataDir() string {
	home, err := os.UserHomeDir()
	if u := os.Getenv("SUDO_USER"); u != "" && os.Geteuid() == 0 {
		if h, herr := homeOf(u); herr == nil {
			home, err = h, nil
		}
	}
	if err != nil || home == "" {
		return ".vigil"
	}
	return filepath.Join(home, ".vigil")
}

// homeOf reads a user's home directory from /etc/passwd.
func homeOf(user string) (string, error) {
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) >= 6 && f[0] == user {
			return f[5], nil
		}
	}
	return "", fmt.Errorf("user %q not in /etc/passwd", user)
}

// secretFile returns the secret kept in path, creating it (0600) with a
// newly generated one the first time.
func secretFile(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		s := strings.TrimSpace(string(b))
		if err := auth.ValidSecret(s); err != nil {
			return "", fmt.Errorf("%s: %w (delete the file to get a new token)", path, err)
		}
		return s, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	s, err := auth.GenerateSecret()
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("keep a token in %s: %w", path, err)
	}
	return s, nil
}

func runUp(cmd *cobra.Command, g *globalFlags, f *upFlags) error {
	log, err := g.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	if err := os.MkdirAll(f.hub.dataDir, 0o700); err != nil {
		return fmt.Errorf("--data-dir %s: %w", f.hub.dataDir, err)
	}
	// The admin token lives in the data directory so that every run of
	// vigil up (and the CLI it signs in) uses the same one.
	adminPath := filepath.Join(f.hub.dataDir, "admin.token")
	admin := f.hub.bootstrapToken
	if admin == "" {
		admin = os.Getenv("VIGIL_BOOTSTRAP_TOKEN")
	}
	if admin == "" {
		if admin, err = secretFile(adminPath); err != nil {
			return err
		}
	}
	f.hub.bootstrapToken = admin

	reg := prometheus.NewRegistry()
	rh, err := startHub(ctx, &f.hub, reg, log)
	if err != nil {
		return err
	}
	defer rh.stop()

	name := f.cluster
	if name == "" {
		name, _ = os.Hostname()
	}
	ref := store.ClusterRef{Subscription: upSubscription, ResourceGroup: f.group, Name: name}
	sensorToken, err := ensureStandaloneCluster(ctx, rh.Store, ref, f.hub.dataDir)
	if err != nil {
		return err
	}
	go heartbeat(ctx, rh.Store, ref, log)

	cliPath := ""
	if f.signInCLI {
		if cliPath, err = signInCLI(rh.URL, admin, rh.CAPEM); err != nil {
			log.Warn("could not sign the CLI in; use vigil login", "err", err)
		}
	}
	printUp(cmd.OutOrStdout(), rh, ref, admin, cliPath, filepath.Join(f.hub.dataDir, "tls", pki.CACertFile))

	sensorDone := make(chan error, 1)
	if f.noSensor {
		close(sensorDone)
	} else {
		sf := upSensorFlags(f, rh, ref, sensorToken)
		env := sensorcmd.Env{Stdout: cmd.OutOrStdout(), Logger: log, Version: version}
		go func() { sensorDone <- sensorcmd.Run(ctx, sf, env) }()
	}
	select {
	case <-ctx.Done():
	case err := <-rh.served:
		return fmt.Errorf("hub server: %w", err)
	case err, ok := <-sensorDone:
		if ok && err != nil {
			log.Error("the sensor for this host stopped; the hub keeps running (run vigil up as root for eBPF)", "err", err)
		}
		<-ctx.Done()
	}
	if !f.noSensor {
		// The sensor stops on the same signal and flushes its last alerts
		// into the outbox (and, while the hub still runs, to the hub).
		select {
		case <-sensorDone:
		case <-time.After(15 * time.Second):
			log.Warn("the sensor did not stop within 15s")
		}
	}
	fmt.Fprintln(cmd.ErrOrStderr(), "vigil up: stopped; run it again to continue with the same data")
	return nil
}

// ensureStandaloneCluster registers this host as a standalone cluster and
// returns its sensor token (kept in the data directory).
func ensureStandaloneCluster(ctx context.Context, st store.Store, ref store.ClusterRef, dataDir string) (string, error) {
	c, err := st.GetCluster(ctx, ref)
	if errors.Is(err, store.ErrNotFound) {
		c = store.Cluster{ClusterRef: ref, Location: "local", Distribution: "standalone", NodeCount: 1}
	} else if err != nil {
		return "", fmt.Errorf("look up cluster %s: %w", ref.Name, err)
	}
	c.Distribution, c.NodeCount, c.AgentVersion = "standalone", 1, version
	if _, err := st.PutCluster(ctx, c); err != nil {
		return "", fmt.Errorf("register this host as cluster %s: %w", ref.Name, err)
	}
	secret, err := secretFile(filepath.Join(dataDir, "sensor-"+ref.Name+".token"))
	if err != nil {
		return "", err
	}
	if _, err := st.TokenByHash(ctx, auth.HashSecret(secret)); errors.Is(err, store.ErrNotFound) {
		if _, _, err := auth.CreateToken(ctx, st, auth.NewToken{Name: "sensor " + ref.Name, Kind: store.TokenSensor, Cluster: ref, CreatedBy: "vigil up", Secret: secret}, time.Now()); err != nil {
			return "", fmt.Errorf("sensor token for %s: %w", ref.Name, err)
		}
	} else if err != nil {
		return "", fmt.Errorf("look up the sensor token: %w", err)
	}
	return secret, nil
}

// heartbeat keeps the standalone cluster Connected while vigil up runs
// (vigil up is its agent).
func heartbeat(ctx context.Context, st store.Store, ref store.ClusterRef, log *slog.Logger) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		hb := store.Heartbeat{AgentVersion: version, NodeCount: 1, At: time.Now()}
		if err := st.RecordHeartbeat(ctx, ref, hb); err != nil && ctx.Err() == nil {
			log.Warn("recording this host's heartbeat failed", "cluster", ref.Name, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// upSensorFlags is `vigil sensor` with its defaults, shipping to the local
// hub.
func upSensorFlags(f *upFlags, rh *runningHub, ref store.ClusterRef, token string) *sensorcmd.Flags {
	sf := sensorcmd.DefaultFlags()
	sf.Source, sf.FileEvents, sf.ThreatIntel = f.source, f.fileEvts, f.threatIntel
	sf.Hub.URL, sf.Hub.Token, sf.Hub.CAPEM, sf.Hub.ClusterID = rh.URL, token, rh.CAPEM, auth.ClusterID(ref)
	sf.Hub.OutboxDir = filepath.Join(f.hub.dataDir, "outbox")
	return &sf
}

func printUp(w io.Writer, rh *runningHub, ref store.ClusterRef, admin, cliPath, caPath string) {
	fmt.Fprintf(w, `
vigil is up.

  API:          %s   (OpenAPI: %s/openapi.json)
  Portal:       %s/portal/   (sign in with the admin token)
  Admin token:  %s
  This host:    %s
  CA to pin:    %s

`, rh.URL, rh.URL, rh.URL, admin, auth.ClusterID(ref), caPath)
	if cliPath != "" {
		fmt.Fprintf(w, "The CLI is signed in (%s): try `vigil alerts list -o table` in another shell.\n", cliPath)
	}
	fmt.Fprintf(w, "Prove the pipeline: `/bin/echo VIGIL-TEST-ALERT-7f3b` raises the harmless test alert.\nCtrl-C stops.\n\n")
}

// signInCLI saves the hub, CA and admin token as the CLI configuration of
// the user running vigil up (the invoking user under sudo, who also owns
// the file).
func signInCLI(url, token string, caPEM []byte) (string, error) {
	path, err := hubclient.ConfigPath()
	if err != nil {
		return "", err
	}
	if os.Getenv("VIGIL_CONFIG") == "" {
		path = filepath.Join(filepath.Dir(defaultDataDir()), ".vigil", "cli.json")
	}
	if err := hubclient.SaveConfig(path, hubclient.Config{Hub: url, Token: token, CAPEM: string(caPEM), Subscription: upSubscription}); err != nil {
		return "", err
	}
	chownToSudoUser(filepath.Dir(path), path)
	return path, nil
}

// chownToSudoUser gives files vigil up wrote for the invoking user back to
// that user when running under sudo.
func chownToSudoUser(paths ...string) {
	uid, gid := os.Getenv("SUDO_UID"), os.Getenv("SUDO_GID")
	if uid == "" || gid == "" || os.Geteuid() != 0 {
		return
	}
	u, err1 := strconv.Atoi(uid)
	g, err2 := strconv.Atoi(gid)
	if err1 != nil || err2 != nil {
		return
	}
	for _, p := range paths {
		_ = os.Chown(p, u, g)
	}
}

package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/hub"
	"github.com/vigil-sec/vigil/internal/notify"
	"github.com/vigil-sec/vigil/internal/pki"
	"github.com/vigil-sec/vigil/internal/portal"
	"github.com/vigil-sec/vigil/internal/seal"
	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/store/postgres"
	"github.com/vigil-sec/vigil/internal/store/sqlite"
)

// hubServeFlags configure a hub server (`vigil hub`, `vigil up`).
type hubServeFlags struct {
	dataDir        string
	db             string
	listen         string
	tlsCert        string
	tlsKey         string
	sans           []string
	bootstrapToken string
	offlineAfter   time.Duration
	sweepEvery     time.Duration
	ingestRate     float64
}

func (h *hubServeFlags) register(fl *pflag.FlagSet, dataDir, listen string) {
	fl.StringVar(&h.dataDir, "data-dir", dataDir, "data directory: SQLite database, TLS CA and certificate, sealing key")
	fl.StringVar(&h.db, "db", "", "database: empty for SQLite in the data directory, or postgres://user:pass@host:port/db")
	fl.StringVar(&h.listen, "listen", listen, "HTTPS listen address of the API")
	fl.StringVar(&h.tlsCert, "tls-cert", "", "serve this certificate (PEM) instead of the generated one (with --tls-key)")
	fl.StringVar(&h.tlsKey, "tls-key", "", "private key (PEM) of --tls-cert")
	fl.StringSliceVar(&h.sans, "tls-san", nil, "extra DNS name or IP address in the generated server certificate (repeatable)")
	fl.DurationVar(&h.offlineAfter, "offline-after", 15*time.Minute, "a Connected cluster without a heartbeat for this long becomes Offline")
	fl.Float64Var(&h.ingestRate, "ingest-rate", 100, "ingest requests (alert batches, health reports) per second each cluster may send, bursts of 4x; beyond it sensors are told to retry later (429); negative: no limit")
	fl.DurationVar(&h.sweepEvery, "sweep-every", 30*time.Second, "how often connectivity states are re-derived from heartbeats")
	fl.StringVar(&h.bootstrapToken, "bootstrap-token", "", "register this Owner token for automation (default $VIGIL_BOOTSTRAP_TOKEN; otherwise one is generated and printed at first start)")
}

// runningHub is a hub serving HTTPS.
type runningHub struct {
	URL   string // https://host:port
	CAPEM []byte // what clients pin
	// Bootstrap is the Owner secret created at this start ("" when the
	// bootstrap token existed already).
	Bootstrap string
	Store     store.Store
	Server    *hub.Server

	srv      *http.Server
	disp     *notify.Dispatcher
	log      *slog.Logger
	cancel   context.CancelFunc
	served   chan error
	bgDone   chan struct{}
	closeAll func()
}

// openStore opens the database the flags name.
func (h *hubServeFlags) openStore(ctx context.Context) (store.Store, string, error) {
	if strings.HasPrefix(h.db, "postgres://") || strings.HasPrefix(h.db, "postgresql://") {
		st, err := postgres.Open(ctx, h.db)
		if err != nil {
			return nil, "", err
		}
		return st, "postgres", nil
	}
	if h.db != "" {
		return nil, "", fmt.Errorf("--db %q: use postgres://user:password@host:port/database, or leave it empty for SQLite in --data-dir", h.db)
	}
	path := filepath.Join(h.dataDir, "vigil.db")
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		return nil, "", err
	}
	return st, "sqlite " + path, nil
}

// startHub opens the store, prepares TLS and the bootstrap token, and
// serves the API until stop.
func startHub(ctx context.Context, h *hubServeFlags, reg *prometheus.Registry, log *slog.Logger) (*runningHub, error) {
	if h.dataDir == "" {
		return nil, errors.New("--data-dir is empty: give a directory for the hub's data")
	}
	if err := os.MkdirAll(h.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("--data-dir %s: %w", h.dataDir, err)
	}
	if (h.tlsCert == "") != (h.tlsKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together: give both, or neither for a generated certificate")
	}
	var bundle *pki.Bundle
	var err error
	if h.tlsCert != "" {
		bundle, err = pki.LoadServer(h.tlsCert, h.tlsKey)
	} else {
		sans := append([]string(nil), h.sans...)
		if host, _, err := net.SplitHostPort(h.listen); err == nil && host != "" && host != "0.0.0.0" && host != "::" {
			sans = append(sans, host)
		}
		bundle, err = pki.EnsureServer(filepath.Join(h.dataDir, "tls"), sans)
	}
	if err != nil {
		return nil, fmt.Errorf("hub TLS: %w", err)
	}
	sealer, err := seal.New(h.dataDir)
	if err != nil {
		return nil, fmt.Errorf("hub sealing key: %w", err)
	}
	st, where, err := h.openStore(ctx)
	if err != nil {
		return nil, err
	}
	if c, ok := st.(interface{ Collector() prometheus.Collector }); ok {
		// Connection-pool and database gauges beside the API's metrics.
		if err := reg.Register(c.Collector()); err != nil {
			log.Warn("hub store metrics are not served", "err", err)
		}
	}
	closeStore := func() {
		if err := st.Close(); err != nil {
			log.Error("closing the hub store", "err", err)
		}
	}
	given := h.bootstrapToken
	if given == "" {
		given = os.Getenv("VIGIL_BOOTSTRAP_TOKEN")
	}
	secret, err := auth.Bootstrap(ctx, st, given, time.Now())
	if err != nil {
		closeStore()
		return nil, err
	}

	disp, err := notify.NewDispatcher(notify.DispatcherOptions{Logger: log, Registerer: reg})
	if err != nil {
		closeStore()
		return nil, fmt.Errorf("hub outputs: %w", err)
	}
	configure := func(outs []store.Output) {
		if err := disp.Configure(outs); err != nil {
			log.Error("configuring the hub's alert outputs failed; the previous ones stay in force", "err", err)
		}
	}
	if outs, err := st.ListOutputs(ctx); err != nil {
		log.Error("reading the hub's alert outputs failed; none are active", "err", err)
	} else {
		configure(outs)
	}
	srv, err := hub.New(hub.Config{
		Logger:         log,
		Registry:       reg,
		Sealer:         sealer,
		Sinks:          []hub.AlertSink{dispatchSink{disp}},
		OutputsChanged: configure,
		OfflineAfter:   h.offlineAfter,
		SweepEvery:     h.sweepEvery,
		IngestRate:     h.ingestRate,
		IngestBurst:    int(max(4*h.ingestRate, 1)),
	}, st)
	if err != nil {
		closeStore()
		return nil, err
	}
	web, err := portal.New(portal.Config{Store: st, Authenticator: srv.Authenticator(), Logger: log, Registerer: reg})
	if err != nil {
		closeStore()
		return nil, err
	}
	web.Register(srv)
	ln, err := net.Listen("tcp", h.listen)
	if err != nil {
		closeStore()
		return nil, fmt.Errorf("--listen %s: %w (is another hub running? pick a free address)", h.listen, err)
	}
	tlsCfg := bundle.TLSConfig()
	hs := &http.Server{
		Handler:           srv.Handler(),
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	hs.RegisterOnShutdown(web.Close) // end the portal's live-update streams
	bg, cancel := context.WithCancel(context.Background())
	rh := &runningHub{
		URL: "https://" + dialAddr(ln.Addr()), CAPEM: bundle.CAPEM, Bootstrap: secret,
		Store: st, Server: srv, srv: hs, disp: disp, log: log, cancel: cancel,
		served: make(chan error, 1), bgDone: make(chan struct{}), closeAll: closeStore,
	}
	go func() { rh.served <- hs.Serve(tls.NewListener(ln, tlsCfg)) }()
	go func() {
		defer close(rh.bgDone)
		if err := srv.Run(bg); err != nil && bg.Err() == nil {
			log.Error("hub background work stopped", "err", err)
		}
	}()
	log.Info("hub serving", "url", rh.URL, "store", where, "data", h.dataDir)
	return rh, nil
}

// dialAddr turns a listener address into one clients can dial (a wildcard
// address becomes localhost).
func dialAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// wait returns when the server stops serving (an error) or ctx ends.
func (h *runningHub) wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-h.served:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("hub server: %w", err)
	}
}

// stop shuts the API down gracefully, then background work, outputs and
// the store.
func (h *runningHub) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		h.log.Warn("hub shutdown: requests still running were cut", "err", err)
	}
	h.cancel()
	<-h.bgDone
	if err := h.disp.Close(ctx); err != nil {
		h.log.Warn("hub outputs: alerts still queued were not delivered", "err", err)
	}
	h.closeAll()
}

// dispatchSink hands committed alerts to the outputs.
type dispatchSink struct{ d *notify.Dispatcher }

func (s dispatchSink) Publish(a store.Alert) { s.d.Dispatch(a) }

// newHubCmd is `vigil hub`: serve the hub; `vigil hub token ...` manages
// API tokens of a running hub.
func newHubCmd(g *globalFlags) *cobra.Command {
	f := &hubServeFlags{}
	cmd := &cobra.Command{
		Use:   "hub",
		Short: "Run the hub (API, alert store, outputs); `vigil hub token` manages its API tokens",
		Long: `Run the hub: the ARM-shaped HTTPS API clusters and sensors connect to, the alert store
(SQLite in --data-dir, or PostgreSQL with --db postgres://...; several hubs on one PostgreSQL
behave as one) and the alert outputs (webhook, syslog).

On first start it generates a CA and a server certificate in --data-dir/tls (clients pin
tls/ca.crt), a sealing key for extension protected settings, and an Owner token that it prints
once (or registers --bootstrap-token / $VIGIL_BOOTSTRAP_TOKEN for automation).`,
		Example: `  vigil hub --data-dir /var/lib/vigil/hub --listen 0.0.0.0:8443
  vigil hub --db postgres://vigil:secret@db:5432/vigil --listen :8443`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			rh, err := startHub(cmd.Context(), f, prometheus.NewRegistry(), log)
			if err != nil {
				return err
			}
			defer rh.stop()
			if rh.Bootstrap != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "Owner token (shown once; keep it): %s\nSign in: vigil login --hub %s --token <token> --ca %s\n",
					rh.Bootstrap, rh.URL, filepath.Join(f.dataDir, "tls", pki.CACertFile))
			}
			return rh.wait(cmd.Context())
		},
	}
	f.register(cmd.Flags(), "/var/lib/vigil/hub", "127.0.0.1:8443")
	cmd.AddCommand(newHubTokenCmd())
	return cmd
}

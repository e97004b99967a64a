package sensorcmd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/vigil-sec/vigil/internal/outbox"
	"github.com/vigil-sec/vigil/internal/ship"
	"github.com/vigil-sec/vigil/internal/store"
)

// HubFlags configure delivery of alerts to a hub: a durable outbox between
// detection and the network, and a shipper.
type HubFlags struct {
	URL            string
	TokenFile      string
	CAFile         string
	ClusterID      string
	OutboxDir      string
	OutboxMax      string
	OutboxRepair   bool
	HealthInterval time.Duration
	// Token and CAPEM are set by vigil up (not flags): the sensor token and
	// the CA of the hub running in the same process.
	Token string
	CAPEM []byte
}

// Register adds the --hub-* and --outbox-* flags to fl (defaults:
// DefaultHubFlags).
func (h *HubFlags) Register(fl *pflag.FlagSet) {
	d := DefaultHubFlags()
	fl.StringVar(&h.URL, "hub-url", d.URL, "ship alerts and health to the hub at this URL (https://host:port); needs --hub-token-file (or $VIGIL_HUB_TOKEN) and --cluster-id")
	fl.StringVar(&h.TokenFile, "hub-token-file", d.TokenFile, "file holding the cluster's sensor token (default: $VIGIL_HUB_TOKEN)")
	fl.StringVar(&h.CAFile, "hub-ca", d.CAFile, "CA certificate (PEM) the hub's certificate must be signed by (pinned); default: the system's roots")
	fl.StringVar(&h.ClusterID, "cluster-id", d.ClusterID, "ARM id of this node's connected cluster, e.g. /subscriptions/default/resourceGroups/rg/providers/Vigil.Kubernetes/connectedClusters/prod")
	fl.StringVar(&h.OutboxDir, "outbox-dir", d.OutboxDir, "durable queue of alerts not yet acknowledged by the hub")
	fl.StringVar(&h.OutboxMax, "outbox-max-bytes", d.OutboxMax, "bound of the outbox on disk; when full the oldest alerts are dropped (counted and reported)")
	fl.BoolVar(&h.OutboxRepair, "outbox-repair", d.OutboxRepair, "cut a corrupt outbox segment at its first bad record (the rest is kept in <segment>.corrupt) instead of refusing to start")
	fl.DurationVar(&h.HealthInterval, "health-interval", d.HealthInterval, "how often the sensor reports its health (source mode, drops, rule-set version) to the hub")
}

// DefaultHubFlags are the flags' defaults: no hub.
func DefaultHubFlags() HubFlags {
	return HubFlags{OutboxDir: "/var/lib/vigil/outbox", OutboxMax: "64MiB", HealthInterval: 30 * time.Second}
}

// Enabled reports whether hub delivery was asked for.
func (h *HubFlags) Enabled() bool { return h.URL != "" }

// ShipConfig is a validated hub delivery configuration.
type ShipConfig struct {
	ship.Config
	OutboxDir    string
	OutboxMax    int64
	OutboxRepair bool
	Health       time.Duration
}

// ConfigIfEnabled is Config when hub delivery was asked for, nil otherwise.
func (h *HubFlags) ConfigIfEnabled() (*ShipConfig, error) {
	if !h.Enabled() {
		return nil, nil
	}
	c, err := h.Config()
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// Config validates the flags and reads the token.
func (h *HubFlags) Config() (ShipConfig, error) {
	token := h.Token
	if token == "" {
		token = os.Getenv("VIGIL_HUB_TOKEN")
	}
	if h.TokenFile != "" {
		b, err := os.ReadFile(h.TokenFile)
		if err != nil {
			return ShipConfig{}, fmt.Errorf("--hub-token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return ShipConfig{}, fmt.Errorf("--hub-url needs the cluster's sensor token: pass --hub-token-file FILE or set VIGIL_HUB_TOKEN")
	}
	if h.ClusterID == "" {
		return ShipConfig{}, fmt.Errorf("--hub-url needs --cluster-id (the connected cluster's ARM id, as `vigil cluster show` prints it)")
	}
	max, err := ParseSize(h.OutboxMax)
	if err != nil {
		return ShipConfig{}, fmt.Errorf("--outbox-max-bytes: %w", err)
	}
	if h.HealthInterval < time.Second {
		return ShipConfig{}, fmt.Errorf("--health-interval %s: use at least 1s", h.HealthInterval)
	}
	return ShipConfig{
		Config:       ship.Config{URL: h.URL, Token: token, Cluster: h.ClusterID, CAFile: h.CAFile, CAPEM: h.CAPEM},
		OutboxDir:    h.OutboxDir,
		OutboxMax:    int64(max),
		OutboxRepair: h.OutboxRepair,
		Health:       h.HealthInterval,
	}, nil
}

// OpenOutbox opens the outbox (before the sensor, which writes alerts to
// it) with its metrics on reg.
func (c ShipConfig) OpenOutbox(reg prometheus.Registerer, log *slog.Logger) (*outbox.Outbox, error) {
	if err := os.MkdirAll(c.OutboxDir, 0o700); err != nil {
		return nil, fmt.Errorf("--outbox-dir %s: %w", c.OutboxDir, err)
	}
	ob, err := outbox.Open(c.OutboxDir, outbox.Options{MaxBytes: c.OutboxMax, Repair: c.OutboxRepair, Logger: log, Registerer: reg})
	if err != nil {
		return nil, fmt.Errorf("open the alert outbox: %w", err)
	}
	return ob, nil
}

// Delivery is a running outbox + shipper.
type Delivery struct {
	ob      *outbox.Outbox
	sh      *ship.Shipper
	log     *slog.Logger
	cancel  context.CancelFunc
	done    chan struct{}
	healthD chan struct{}
}

// StartDelivery ships what ob holds as node and, unless health is nil,
// reports health every c.Health until Stop.
func StartDelivery(c ShipConfig, ob *outbox.Outbox, node string, health func() store.SensorHealth, reg prometheus.Registerer, log *slog.Logger) (*Delivery, error) {
	cfg := c.Config
	cfg.Node = node
	cfg.Logger = log
	cfg.Registerer = reg
	sh, err := ship.New(cfg, ob)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Delivery{ob: ob, sh: sh, log: log, cancel: cancel, done: make(chan struct{}), healthD: make(chan struct{})}
	go func() {
		defer close(d.done)
		if err := sh.Run(ctx); err != nil {
			log.Error("shipping alerts to the hub stopped", "hub", cfg.URL, "err", err)
		}
	}()
	if health == nil {
		close(d.healthD)
	} else {
		go func() {
			defer close(d.healthD)
			sh.RunHealth(ctx, c.Health, health)
		}()
	}
	log.Info("shipping alerts to the hub", "hub", cfg.URL, "cluster", cfg.Cluster, "outbox", ob.Dir())
	return d, nil
}

// Stop lets the shipper deliver what it can (it bounds that itself) and
// closes the outbox; what is left is sent at the next start.
func (d *Delivery) Stop() {
	d.cancel()
	<-d.done
	<-d.healthD
	if err := d.ob.Close(); err != nil {
		d.log.Error("closing the alert outbox", "err", err)
	}
	st := d.sh.Status()
	if st.Backlog > 0 {
		d.log.Warn("alerts not yet delivered stay in the outbox for the next start", "backlog", st.Backlog, "outbox", d.ob.Dir())
	}
}

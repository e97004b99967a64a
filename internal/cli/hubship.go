package cli

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
	"github.com/vigil-sec/vigil/internal/sensor"
	"github.com/vigil-sec/vigil/internal/ship"
	"github.com/vigil-sec/vigil/internal/store"
)

// hubShipFlags configure delivery of a sensor's alerts to a hub: a durable
// outbox between detection and the network, and a shipper.
type hubShipFlags struct {
	url            string
	tokenFile      string
	caFile         string
	clusterID      string
	outboxDir      string
	outboxMax      string
	outboxRepair   bool
	healthInterval time.Duration
	// token and caPEM are set by vigil up (not flags): the sensor token and
	// the CA of the hub running in the same process.
	token string
	caPEM []byte
}

func (h *hubShipFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&h.url, "hub-url", "", "ship alerts and health to the hub at this URL (https://host:port); needs --hub-token-file (or $VIGIL_HUB_TOKEN) and --cluster-id")
	fl.StringVar(&h.tokenFile, "hub-token-file", "", "file holding the cluster's sensor token (default: $VIGIL_HUB_TOKEN)")
	fl.StringVar(&h.caFile, "hub-ca", "", "CA certificate (PEM) the hub's certificate must be signed by (pinned); default: the system's roots")
	fl.StringVar(&h.clusterID, "cluster-id", "", "ARM id of this node's connected cluster, e.g. /subscriptions/default/resourceGroups/rg/providers/Vigil.Kubernetes/connectedClusters/prod")
	fl.StringVar(&h.outboxDir, "outbox-dir", "/var/lib/vigil/outbox", "durable queue of alerts not yet acknowledged by the hub")
	fl.StringVar(&h.outboxMax, "outbox-max-bytes", "64MiB", "bound of the outbox on disk; when full the oldest alerts are dropped (counted and reported)")
	fl.BoolVar(&h.outboxRepair, "outbox-repair", false, "cut a corrupt outbox segment at its first bad record (the rest is kept in <segment>.corrupt) instead of refusing to start")
	fl.DurationVar(&h.healthInterval, "health-interval", 30*time.Second, "how often the sensor reports its health (source mode, drops, rule-set version) to the hub")
}

// enabled reports whether hub delivery was asked for.
func (h *hubShipFlags) enabled() bool { return h.url != "" }

// shipConfig is a validated hub delivery configuration.
type shipConfig struct {
	ship.Config
	outboxDir    string
	outboxMax    int64
	outboxRepair bool
	health       time.Duration
}

func (h *hubShipFlags) config() (shipConfig, error) {
	token := h.token
	if token == "" {
		token = os.Getenv("VIGIL_HUB_TOKEN")
	}
	if h.tokenFile != "" {
		b, err := os.ReadFile(h.tokenFile)
		if err != nil {
			return shipConfig{}, fmt.Errorf("--hub-token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return shipConfig{}, fmt.Errorf("--hub-url needs the cluster's sensor token: pass --hub-token-file FILE or set VIGIL_HUB_TOKEN")
	}
	if h.clusterID == "" {
		return shipConfig{}, fmt.Errorf("--hub-url needs --cluster-id (the connected cluster's ARM id, as `vigil cluster show` prints it)")
	}
	max, err := parseSize(h.outboxMax)
	if err != nil {
		return shipConfig{}, fmt.Errorf("--outbox-max-bytes: %w", err)
	}
	if h.healthInterval < time.Second {
		return shipConfig{}, fmt.Errorf("--health-interval %s: use at least 1s", h.healthInterval)
	}
	return shipConfig{
		Config:       ship.Config{URL: h.url, Token: token, Cluster: h.clusterID, CAFile: h.caFile, CAPEM: h.caPEM},
		outboxDir:    h.outboxDir,
		outboxMax:    int64(max),
		outboxRepair: h.outboxRepair,
		health:       h.healthInterval,
	}, nil
}

// hubDelivery is a running outbox + shipper beside a sensor.
type hubDelivery struct {
	ob      *outbox.Outbox
	sh      *ship.Shipper
	log     *slog.Logger
	cancel  context.CancelFunc
	done    chan struct{}
	healthD chan struct{}
}

// openOutbox opens the outbox (before the sensor, which writes alerts to it)
// with its metrics on reg.
func (c shipConfig) openOutbox(reg prometheus.Registerer, log *slog.Logger) (*outbox.Outbox, error) {
	if err := os.MkdirAll(c.outboxDir, 0o700); err != nil {
		return nil, fmt.Errorf("--outbox-dir %s: %w", c.outboxDir, err)
	}
	ob, err := outbox.Open(c.outboxDir, outbox.Options{MaxBytes: c.outboxMax, Repair: c.outboxRepair, Logger: log, Registerer: reg})
	if err != nil {
		return nil, fmt.Errorf("open the alert outbox: %w", err)
	}
	return ob, nil
}

// start ships what the outbox holds and reports s's health until stop.
func (c shipConfig) start(ob *outbox.Outbox, s *sensor.Sensor, reg prometheus.Registerer, log *slog.Logger) (*hubDelivery, error) {
	cfg := c.Config
	cfg.Node = s.Status().Node
	cfg.Logger = log
	cfg.Registerer = reg
	sh, err := ship.New(cfg, ob)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &hubDelivery{ob: ob, sh: sh, log: log, cancel: cancel, done: make(chan struct{}), healthD: make(chan struct{})}
	go func() {
		defer close(d.done)
		if err := sh.Run(ctx); err != nil {
			log.Error("shipping alerts to the hub stopped", "hub", cfg.URL, "err", err)
		}
	}()
	go func() {
		defer close(d.healthD)
		sh.RunHealth(ctx, c.health, func() store.SensorHealth {
			st := s.Status()
			h := store.SensorHealth{Node: st.Node, SourceMode: st.Mode, Drops: st.Drops, RuleSetVersion: st.RuleSetVersion, SensorVersion: version}
			for _, k := range st.Missing {
				h.Missing = append(h.Missing, string(k))
			}
			return h
		})
	}()
	log.Info("shipping alerts to the hub", "hub", cfg.URL, "cluster", cfg.Cluster, "outbox", ob.Dir())
	return d, nil
}

// stop lets the shipper deliver what it can (it bounds that itself) and
// closes the outbox; what is left is sent at the next start.
func (d *hubDelivery) stop() {
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

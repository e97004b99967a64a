package cli

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/outbox"
	"github.com/vigil-sec/vigil/internal/sensorcmd"
)

// The sensor's building blocks vigil audit shares (implemented in
// sensorcmd, which the lean vigil-sensor binary links too).

// hubShipFlags configure delivery of alerts to a hub: a durable outbox
// between detection and the network, and a shipper.
type hubShipFlags struct{ sensorcmd.HubFlags }

func (h *hubShipFlags) register(fl *pflag.FlagSet) { h.Register(fl) }

// enabled reports whether hub delivery was asked for.
func (h *hubShipFlags) enabled() bool { return h.Enabled() }

// shipConfig is a validated hub delivery configuration.
type shipConfig struct{ sensorcmd.ShipConfig }

// openOutbox opens the outbox with its metrics on reg.
func (c shipConfig) openOutbox(reg prometheus.Registerer, log *slog.Logger) (*outbox.Outbox, error) {
	return c.OpenOutbox(reg, log)
}

// watchRules reloads the rules on SIGHUP and when a --rules file changes.
func watchRules(ctx context.Context, r *detect.Reloader, paths []string, log *slog.Logger) {
	sensorcmd.WatchRules(ctx, r, paths, log)
}

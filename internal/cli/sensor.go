package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/outbox"
	"github.com/vigil-sec/vigil/internal/output"
	"github.com/vigil-sec/vigil/internal/sensor"
	ebpfsrc "github.com/vigil-sec/vigil/internal/source/ebpf"
)

type sensorFlags struct {
	eventsOut     string
	metricsAddr   string
	source        string
	ringSize      string
	argvMax       int
	fileEvents    bool
	networkEvents bool
	sensitive     []string
	node          string
	noSnapshot    bool
	pprof         bool
	alertsOut     string
	rules         ruleSource
	threatIntel   []string
	noDetectors   bool
	noRules       bool
	hub           hubShipFlags
	kube          kubeMetaFlags
}

func newSensorCmd(g *globalFlags) *cobra.Command {
	f := &sensorFlags{}
	cmd := &cobra.Command{
		Use:   "sensor",
		Short: "Run the node sensor: eBPF telemetry, process tree, container attribution",
		Long: `Run the node sensor. It observes process (exec, fork, exit), network (connect, bind,
listen, accept, DNS) and file/privilege activity (writes, chmod +x, unlink, rename, sensitive reads,
memfd, ptrace, module loads, setns/unshare, mount) through eBPF, attributes every event to its
process ancestry and container/pod, and writes it out.

Needs Linux >= 5.8 with BTF and root (or CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN). Without eBPF
(--source proc, or auto when eBPF cannot load) it falls back to the proc connector and says which
event kinds it cannot see.`,
		Example: `  # every event as one JSON object per line on stdout
  vigil sensor --events-out -

  # to a file, with Prometheus metrics and /healthz
  vigil sensor --events-out /var/log/vigil/events.jsonl --metrics-addr 127.0.0.1:9464`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSensor(cmd, g, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.eventsOut, "events-out", "", "write every event as JSON lines to FILE (appended), or - for stdout")
	fl.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics and /healthz on this address (e.g. 127.0.0.1:9464)")
	fl.StringVar(&f.source, "source", sensor.ModeAuto, "event source: auto (eBPF, else proc connector), ebpf, proc")
	fl.StringVar(&f.ringSize, "ring-size", "4MiB", "eBPF ring buffer size (power of two, >= 4KiB)")
	fl.IntVar(&f.argvMax, "argv-max", 4096, "bytes of argv captured per exec (longer command lines are marked truncated)")
	fl.BoolVar(&f.fileEvents, "file-events", true, "observe file and privilege syscalls (costs a slower path for every syscall; see docs/benchmarks.md)")
	fl.BoolVar(&f.networkEvents, "network-events", true, "observe connect/bind/listen/accept/DNS")
	fl.StringSliceVar(&f.sensitive, "sensitive-path", nil, "report read-only opens under this path prefix (repeatable; adds to the defaults)")
	fl.StringVar(&f.node, "node", "", "node name put on events (default $NODE_NAME or the hostname)")
	fl.StringVar(&f.alertsOut, "alerts-out", "", "write alerts (and their aggregated updates, same id) as JSON lines to FILE (appended), or - for stdout")
	fl.BoolVar(&f.noDetectors, "no-detectors", false, "do not run the stateful detectors (drift, fan-out, recon bursts, sustained CPU)")
	fl.BoolVar(&f.noRules, "no-rules", false, "do not evaluate rules (telemetry only)")
	f.rules.flags(cmd)
	fl.StringArrayVar(&f.threatIntel, "threat-intel", nil, "threat-intelligence indicator FILE: one domain, IP address or CIDR per line, # comments (repeatable); appended to the threat_intel_* rule lists, re-read on reload")
	fl.BoolVar(&f.pprof, "pprof", false, "also serve Go's profiler under /debug/pprof/ on --metrics-addr")
	f.kube.register(fl)
	fl.BoolVar(&f.noSnapshot, "no-snapshot", false, "do not emit snapshot events for processes already running at start")
	f.hub.register(fl)
	return cmd
}

func runSensor(cmd *cobra.Command, g *globalFlags, f *sensorFlags) error {
	log, err := g.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	if f.eventsOut == "" && f.metricsAddr == "" && f.alertsOut == "" && !f.hub.enabled() {
		return fmt.Errorf("nothing to report to: pass --hub-url URL, --alerts-out FILE, --events-out FILE (or - for stdout) and/or --metrics-addr ADDR")
	}
	var ship *shipConfig
	if f.hub.enabled() {
		sc, err := f.hub.config()
		if err != nil {
			return err
		}
		ship = &sc
	}
	if f.eventsOut == "-" && f.alertsOut == "-" {
		return fmt.Errorf("--events-out and --alerts-out cannot both be stdout: send one of them to a file")
	}
	ring, err := parseSize(f.ringSize)
	if err != nil {
		return fmt.Errorf("--ring-size: %w", err)
	}
	if ring < 4096 || ring&(ring-1) != 0 {
		return fmt.Errorf("--ring-size %s: must be a power of two of at least 4KiB (e.g. 4MiB, 16MiB)", f.ringSize)
	}
	if f.argvMax < 64 || f.argvMax > 4096 {
		return fmt.Errorf("--argv-max %d: must be between 64 and 4096 bytes", f.argvMax)
	}
	switch f.source {
	case sensor.ModeAuto, sensor.ModeEBPF, sensor.ModeProc:
	default:
		return fmt.Errorf("--source %q: use auto, ebpf or proc", f.source)
	}

	cfg := sensor.Config{
		Mode:         f.source,
		MetricsAddr:  f.metricsAddr,
		Node:         f.node,
		SkipSnapshot: f.noSnapshot,
		Pprof:        f.pprof,
		Logger:       log,
		EBPF: ebpfsrc.Config{
			RingBytes:         ring,
			ArgvMax:           f.argvMax,
			FileEvents:        f.fileEvents,
			NetworkEvents:     f.networkEvents,
			SensitivePrefixes: append(append([]string(nil), ebpfsrc.DefaultSensitivePrefixes...), f.sensitive...),
		},
	}
	if f.eventsOut != "" {
		w, closeFn, err := openOut(cmd.OutOrStdout(), f.eventsOut)
		if err != nil {
			return fmt.Errorf("--events-out: %w", err)
		}
		out := output.NewJSONL(w)
		defer func() {
			if err := out.Close(); err != nil {
				log.Error("closing event output", "err", err)
			}
			closeFn()
		}()
		cfg.Sinks = append(cfg.Sinks, out)
	}

	if !f.noRules {
		// Rules are compiled before the sensor attaches, so a bad rule file
		// stops the start with its position instead of running blind.
		reloader, err := detect.NewReloader(func() (*detect.RuleSet, error) { return loadRulesWithThreatIntel(&f.rules, f.threatIntel) }, log)
		if err != nil {
			return fmt.Errorf("rules: %w", err)
		}
		cfg.Rules = reloader.Engine
		go watchRules(cmd.Context(), reloader, f.rules.paths, log)
	}
	cfg.Detectors = !f.noDetectors
	if f.alertsOut != "" {
		w, closeFn, err := openOut(cmd.OutOrStdout(), f.alertsOut)
		if err != nil {
			return fmt.Errorf("--alerts-out: %w", err)
		}
		aw := alert.NewWriter(w)
		defer func() {
			if err := aw.Close(); err != nil {
				log.Error("closing alert output", "err", err)
			}
			closeFn()
		}()
		cfg.AlertSinks = append(cfg.AlertSinks, aw)
	}

	cfg.Registry = prometheus.NewRegistry()
	if on, err := f.kube.enabled(); err != nil {
		return err
	} else if on {
		node := f.node
		if node == "" {
			node = os.Getenv("NODE_NAME")
		}
		meta, err := f.kube.start(cmd.Context(), node, cfg.Registry, log)
		if err != nil {
			return err
		}
		cfg.ContainerMeta, cfg.MetaWait, cfg.Node = meta, f.kube.wait, node
	}

	var ob *outbox.Outbox
	if ship != nil {
		if ob, err = ship.openOutbox(cfg.Registry, log); err != nil {
			return err
		}
		cfg.AlertSinks = append(cfg.AlertSinks, ob)
	}

	s, err := sensor.New(cfg)
	if err != nil {
		if ob != nil {
			_ = ob.Close()
		}
		return err
	}
	defer s.Close()
	if ship != nil {
		d, err := ship.start(ob, s, cfg.Registry, log)
		if err != nil {
			_ = ob.Close()
			return err
		}
		// The sensor's last alerts (the aggregator's final flush) reach the
		// outbox before delivery stops.
		defer d.stop()
	}
	return s.Run(cmd.Context())
}

// openOut opens an output destination: "-" is stdout (never closed by the
// writers), anything else a file opened for appending.
func openOut(stdout io.Writer, dest string) (io.Writer, func(), error) {
	if dest == "-" {
		return struct{ io.Writer }{stdout}, func() {}, nil
	}
	file, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, err
	}
	return file, func() { _ = file.Close() }, nil
}

// watchRules reloads the rules on SIGHUP and when a --rules file changes.
// A rule set that fails to load or compile is logged with its position and
// the last good one stays in force.
func watchRules(ctx context.Context, r *detect.Reloader, paths []string, log *slog.Logger) {
	if len(paths) > 0 {
		go func() {
			if err := r.Watch(ctx, paths...); err != nil && ctx.Err() == nil {
				log.Error("watching rule files failed; SIGHUP still reloads", "err", err)
			}
		}()
	}
	r.HandleSIGHUP(ctx)
}

// Package sensorcmd is the node sensor's command: its flags, their
// validation and the run function that wires the sensor, the rules, the
// outputs, the pod metadata and the delivery to the hub together. vigil's
// CLI (`vigil sensor`, `vigil up`) and the lean vigil-sensor binary (the
// one the DaemonSet runs) share it.
//
// It must not import the Kubernetes client libraries (client-go's typed
// clientset, informers, clientcmd) or anything of the control plane: every
// package a binary links runs its init functions and touches its pages
// whatever the command, and the sensor's memory is a promise (P6: at most
// 48 MiB). internal/kubemeta talks to the API server with net/http.
package sensorcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/outbox"
	"github.com/vigil-sec/vigil/internal/sensor"
	ebpfsrc "github.com/vigil-sec/vigil/internal/source/ebpf"
	"github.com/vigil-sec/vigil/internal/store"
)

// Flags are the sensor's settings, one field per flag.
type Flags struct {
	EventsOut      string
	MetricsAddr    string
	Source         string
	RingSize       string
	ArgvMax        int
	FileEvents     bool
	NetworkEvents  bool
	RepeatWindow   time.Duration // --network-repeat-window; 0 reports every connection
	SensitivePaths []string
	Node           string
	NoSnapshot     bool
	Pprof          bool
	AlertsOut      string
	Rules          RuleSource
	ThreatIntel    []string
	NoDetectors    bool
	NoRules        bool
	Hub            HubFlags
	Kube           KubeFlags
}

// DefaultFlags are the flags' defaults (vigil up starts from them).
func DefaultFlags() Flags {
	return Flags{
		Source: sensor.ModeAuto, RingSize: "4MiB", ArgvMax: 4096, FileEvents: true, NetworkEvents: true,
		RepeatWindow: ebpfsrc.DefaultRepeatWindow,
		Hub:          DefaultHubFlags(), Kube: DefaultKubeFlags(),
	}
}

// Env is what Run needs from the process around it.
type Env struct {
	Stdout  io.Writer // --events-out - and --alerts-out -
	Logger  *slog.Logger
	Version string // on health reports and the API server's user agent
}

const long = `Run the node sensor. It observes process (exec, fork, exit), network (connect, bind,
listen, accept, DNS) and file/privilege activity (writes, chmod +x, unlink, rename, sensitive reads,
memfd, ptrace, module loads, setns/unshare, mount) through eBPF, attributes every event to its
process ancestry and container/pod, and writes it out.

Needs Linux >= 5.11 with BTF and root (or CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN). Without eBPF
(--source proc, or auto when eBPF cannot load) it falls back to the proc connector and says which
event kinds it cannot see.`

func example(prog string) string {
	return `  # every event as one JSON object per line on stdout
  ` + prog + ` --events-out -

  # to a file, with Prometheus metrics and /healthz
  ` + prog + ` --events-out /var/log/vigil/events.jsonl --metrics-addr 127.0.0.1:9464`
}

// Command returns `vigil sensor`. logger makes the logger from vigil's
// global --log-level and --log-format.
func Command(version string, logger func(stderr io.Writer) (*slog.Logger, error)) *cobra.Command {
	f := DefaultFlags()
	cmd := &cobra.Command{
		Use:     "sensor",
		Short:   "Run the node sensor: eBPF telemetry, process tree, container attribution",
		Long:    long,
		Example: example("vigil sensor"),
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			tuneGC(log)
			return Run(cmd.Context(), &f, Env{Stdout: cmd.OutOrStdout(), Logger: log, Version: version})
		},
	}
	f.Register(cmd)
	return cmd
}

// sensorGCPercent is the sensor process's GOGC unless the environment sets
// one. The sensor's live heap is small (about 10 MiB: process table, rule
// programs) and Go's default (100) lets the heap grow to twice that between
// collections; 50 keeps RSS about 4 MiB lower (P6: 48.6 → 41.9 MiB after
// the short-lived processes, -quick) for about 15 % more sensor CPU per
// exec (P8: 2 % of a core at the default, the goal is 5 %). Set only by the
// sensor command, not by vigil up, whose hub shares the process.
const sensorGCPercent = 50

func tuneGC(log *slog.Logger) {
	if os.Getenv("GOGC") != "" {
		return
	}
	debug.SetGCPercent(sensorGCPercent)
	log.Debug("garbage collector target set", "gogc", sensorGCPercent, "override", "GOGC environment variable")
}

// Register adds the sensor's flags to cmd (defaults: DefaultFlags).
func (f *Flags) Register(cmd *cobra.Command) {
	d := DefaultFlags()
	fl := cmd.Flags()
	fl.StringVar(&f.EventsOut, "events-out", d.EventsOut, "write every event as JSON lines to FILE (appended), or - for stdout")
	fl.StringVar(&f.MetricsAddr, "metrics-addr", d.MetricsAddr, "serve Prometheus /metrics and /healthz on this address (e.g. 127.0.0.1:9464)")
	fl.StringVar(&f.Source, "source", d.Source, "event source: auto (eBPF, else proc connector), ebpf, proc")
	fl.StringVar(&f.RingSize, "ring-size", d.RingSize, "eBPF ring buffer size (power of two, >= 4KiB)")
	fl.IntVar(&f.ArgvMax, "argv-max", d.ArgvMax, "bytes of argv captured per exec (longer command lines are marked truncated)")
	fl.BoolVar(&f.FileEvents, "file-events", d.FileEvents, "observe file and privilege syscalls (costs a slower path for every syscall; see docs/benchmarks.md)")
	fl.BoolVar(&f.NetworkEvents, "network-events", d.NetworkEvents, "observe connect/bind/listen/accept/DNS")
	fl.DurationVar(&f.RepeatWindow, "network-repeat-window", d.RepeatWindow, "fold a process's repeated connections to the same destination (and accepts from the same peer on the same port) within this window into a count on the next one reported (network.repeats); 0 reports every connection")
	fl.StringSliceVar(&f.SensitivePaths, "sensitive-path", d.SensitivePaths, "report read-only opens under this path prefix (repeatable; adds to the defaults)")
	fl.StringVar(&f.Node, "node", d.Node, "node name put on events (default $NODE_NAME or the hostname)")
	fl.StringVar(&f.AlertsOut, "alerts-out", d.AlertsOut, "write alerts (and their aggregated updates, same id) as JSON lines to FILE (appended), or - for stdout")
	fl.BoolVar(&f.NoDetectors, "no-detectors", d.NoDetectors, "do not run the stateful detectors (drift, fan-out, recon bursts, sustained CPU)")
	fl.BoolVar(&f.NoRules, "no-rules", d.NoRules, "do not evaluate rules (telemetry only)")
	f.Rules.Register(fl)
	fl.StringArrayVar(&f.ThreatIntel, "threat-intel", d.ThreatIntel, "threat-intelligence indicator FILE: one domain, IP address or CIDR per line, # comments (repeatable); appended to the threat_intel_* rule lists, re-read on reload")
	fl.BoolVar(&f.Pprof, "pprof", d.Pprof, "also serve Go's profiler under /debug/pprof/ on --metrics-addr")
	f.Kube.Register(fl)
	fl.BoolVar(&f.NoSnapshot, "no-snapshot", d.NoSnapshot, "do not emit snapshot events for processes already running at start")
	f.Hub.Register(fl)
}

// Run validates f and runs the sensor until ctx ends.
func Run(ctx context.Context, f *Flags, env Env) error {
	log := env.Logger
	if log == nil {
		log = slog.Default()
	}
	if f.EventsOut == "" && f.MetricsAddr == "" && f.AlertsOut == "" && !f.Hub.Enabled() {
		return fmt.Errorf("nothing to report to: pass --hub-url URL, --alerts-out FILE, --events-out FILE (or - for stdout) and/or --metrics-addr ADDR")
	}
	ship, err := f.Hub.ConfigIfEnabled()
	if err != nil {
		return err
	}
	if f.EventsOut == "-" && f.AlertsOut == "-" {
		return fmt.Errorf("--events-out and --alerts-out cannot both be stdout: send one of them to a file")
	}
	ring, err := ParseSize(f.RingSize)
	if err != nil {
		return fmt.Errorf("--ring-size: %w", err)
	}
	if ring < 4096 || ring&(ring-1) != 0 {
		return fmt.Errorf("--ring-size %s: must be a power of two of at least 4KiB (e.g. 4MiB, 16MiB)", f.RingSize)
	}
	if f.ArgvMax < 64 || f.ArgvMax > 4096 {
		return fmt.Errorf("--argv-max %d: must be between 64 and 4096 bytes", f.ArgvMax)
	}
	if f.RepeatWindow < 0 || f.RepeatWindow > time.Hour || (f.RepeatWindow > 0 && f.RepeatWindow < time.Millisecond) {
		return fmt.Errorf("--network-repeat-window %v: must be 0 (report every connection) or between 1ms and 1h", f.RepeatWindow)
	}
	switch f.Source {
	case sensor.ModeAuto, sensor.ModeEBPF, sensor.ModeProc:
	default:
		return fmt.Errorf("--source %q: use auto, ebpf or proc", f.Source)
	}
	stdout := env.Stdout
	if stdout == nil {
		stdout = os.Stdout
	}

	cfg := sensor.Config{
		Mode:         f.Source,
		MetricsAddr:  f.MetricsAddr,
		Node:         f.Node,
		SkipSnapshot: f.NoSnapshot,
		Pprof:        f.Pprof,
		Logger:       log,
		EBPF: ebpfsrc.Config{
			RingBytes:         ring,
			ArgvMax:           f.ArgvMax,
			FileEvents:        f.FileEvents,
			NetworkEvents:     f.NetworkEvents,
			RepeatWindow:      repeatWindow(f.RepeatWindow),
			SensitivePrefixes: append(append([]string(nil), ebpfsrc.DefaultSensitivePrefixes...), f.SensitivePaths...),
		},
	}
	if f.EventsOut != "" {
		out, closeOut, err := OpenEvents(stdout, f.EventsOut, log)
		if err != nil {
			return err
		}
		defer closeOut()
		cfg.Sinks = append(cfg.Sinks, out)
	}

	if !f.NoRules {
		// Rules are compiled before the sensor attaches, so a bad rule file
		// stops the start with its position instead of running blind.
		reloader, err := detect.NewReloader(func() (*detect.RuleSet, error) { return f.Rules.LoadWithThreatIntel(f.ThreatIntel) }, log)
		if err != nil {
			return fmt.Errorf("rules: %w", err)
		}
		cfg.Rules = reloader.Engine
		go WatchRules(ctx, reloader, f.Rules.Paths, log)
	}
	cfg.Detectors = !f.NoDetectors
	if f.AlertsOut != "" {
		aw, closeAlerts, err := OpenAlerts(stdout, f.AlertsOut, log)
		if err != nil {
			return err
		}
		defer closeAlerts()
		cfg.AlertSinks = append(cfg.AlertSinks, aw)
	}

	cfg.Registry = prometheus.NewRegistry()
	if on, err := f.Kube.Enabled(); err != nil {
		return err
	} else if on {
		node := f.Node
		if node == "" {
			node = os.Getenv("NODE_NAME")
		}
		meta, err := f.Kube.Start(ctx, node, env.Version, cfg.Registry, log)
		if err != nil {
			return err
		}
		cfg.ContainerMeta, cfg.MetaWait, cfg.Node = meta, f.Kube.Wait, node
	}

	var ob *outbox.Outbox
	if ship != nil {
		if ob, err = ship.OpenOutbox(cfg.Registry, log); err != nil {
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
		health := func() store.SensorHealth {
			st := s.Status()
			h := store.SensorHealth{Node: st.Node, SourceMode: st.Mode, Drops: st.Drops, RuleSetVersion: st.RuleSetVersion, SensorVersion: env.Version}
			for _, k := range st.Missing {
				h.Missing = append(h.Missing, string(k))
			}
			return h
		}
		d, err := StartDelivery(*ship, ob, s.Status().Node, health, cfg.Registry, log)
		if err != nil {
			_ = ob.Close()
			return err
		}
		// The sensor's last alerts (the aggregator's final flush) reach the
		// outbox before delivery stops.
		defer d.Stop()
	}
	return s.Run(ctx)
}

// usageError is a command line mistake (exit code 2).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// Root returns the vigil-sensor binary's command: `vigil sensor` as a
// program of its own (the same flags, with --log-level and --log-format
// beside them), plus `vigil-sensor version`.
func Root(version string, stdout, stderr io.Writer) *cobra.Command {
	var level, format string
	cmd := Command(version, func(w io.Writer) (*slog.Logger, error) { return NewLogger(w, level, format) })
	cmd.Use = "vigil-sensor"
	cmd.Example = example("vigil-sensor")
	cmd.Long += "\n\nvigil-sensor is `vigil sensor` alone, without the hub, the CLI verbs and the control plane:\nthe binary the sensor DaemonSet runs."
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.CompletionOptions.DisableDefaultCmd = true
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	RegisterLogFlags(cmd.PersistentFlags(), &level, &format)
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w; see `%s --help`", err, c.CommandPath())}
	})
	// Arguments are an error of the sensor, not an unknown command.
	cmd.Args = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageError{fmt.Errorf("unexpected argument %q: vigil-sensor takes only flags (and the command version); see `vigil-sensor --help`", args[0])}
		}
		return nil
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print vigil-sensor's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "vigil-sensor %s\n", version)
			return err
		},
	})
	return cmd
}

// Main runs vigil-sensor with args until SIGINT or SIGTERM and returns the
// process exit code: 0, 1 when the sensor failed, 2 for a usage mistake.
func Main(version string, args []string, stdout, stderr io.Writer) int {
	root := Root(version, stdout, stderr)
	root.SetArgs(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "vigil-sensor: %v\n", err)
	if errors.As(err, new(usageError)) || strings.HasPrefix(err.Error(), "unknown command ") {
		return 2
	}
	return 1
}

// repeatWindow maps --network-repeat-window to ebpf.Config.RepeatWindow,
// where 0 means the default and a negative value reports everything.
func repeatWindow(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// Package sensor wires vigil's node sensor together: a source (eBPF, or the
// proc-connector fallback) → the process tree (identity, ancestry) →
// container attribution → sinks (JSONL today; rules and the hub outbox
// later), with metrics, health events and drop accounting that is never
// silent.
package sensor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sec/vigil/internal/container"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/proctree"
	ebpfsrc "github.com/vigil-sec/vigil/internal/source/ebpf"
	procsrc "github.com/vigil-sec/vigil/internal/source/proc"
	"github.com/vigil-sec/vigil/internal/telemetry"
)

// Source modes.
const (
	ModeAuto = "auto"
	ModeEBPF = "ebpf"
	ModeProc = "proc"
)

// Sink receives every enriched event. Write is called from the sensor's
// single pipeline goroutine (and, for health events, the health loop), so
// implementations must be safe for concurrent use.
// Write must not keep ev (or pointers into it) after it returns: the
// pipeline reuses events. Copy what you keep (values such as strings and
// slices read from the event stay valid).
type Sink interface {
	Write(ev *event.Event) error
}

// SinkFunc adapts a function to a Sink.
type SinkFunc func(ev *event.Event) error

// Write calls f.
func (f SinkFunc) Write(ev *event.Event) error { return f(ev) }

// Config configures a sensor.
type Config struct {
	// Mode is auto (eBPF, falling back to proc loudly), ebpf or proc.
	Mode string
	// EBPF tunes the eBPF source; Logger, CgroupSubsys and Cgroup2Path are
	// filled by the sensor.
	EBPF ebpfsrc.Config
	// Sinks receive every event, in order.
	Sinks []Sink
	// MetricsAddr, when set, serves /metrics and /healthz.
	MetricsAddr string
	// Pprof also serves /debug/pprof/ on MetricsAddr.
	Pprof bool
	// Node names this host in events (default: hostname).
	Node string
	// HealthInterval is how often drop counters are checked (default 1s).
	HealthInterval time.Duration
	// SkipSnapshot disables the snapshot events emitted for processes that
	// were already running when the sensor started.
	SkipSnapshot bool
	// ProcRoot is /proc (tests may point elsewhere).
	ProcRoot string
	Logger   *slog.Logger

	// Rules returns the current rule engine (a detect.Reloader's Engine,
	// so reloads take effect on the next event); nil runs no rules.
	Rules func() *detect.Engine
	// Registry, if set, receives the sensor's metrics, so that components
	// running beside it (the hub shipper, its outbox) share one /metrics.
	Registry *prometheus.Registry
	// Detectors runs the stateful detectors (drift, fan-out, recon bursts,
	// sustained CPU) before the rules.
	Detectors bool
	// AlertSinks receive alerts and their aggregated updates.
	AlertSinks []AlertSink
	// AlertWindow is the aggregation window (default alert.DefaultWindow).
	AlertWindow time.Duration
	// ContainerMeta, if set, adds pod and container metadata (Kubernetes
	// API) to container attributions; alerts about a container whose
	// metadata has not arrived yet wait for it up to MetaWait.
	ContainerMeta ContainerMeta
	// MetaWait bounds how long an alert waits for its pod's metadata
	// (default 10s).
	MetaWait time.Duration
}

// ContainerMeta is a source of pod metadata (kubemeta.Cache).
type ContainerMeta interface {
	// Enrich fills what is known now, without blocking.
	Enrich(c *event.Container)
	// Complete reports whether c lacks nothing that may still arrive.
	Complete(c *event.Container) bool
	// Wait fills c, waiting until it is complete or ctx ends.
	Wait(ctx context.Context, c *event.Container) bool
}

// source is what the pipeline needs from eBPF and proc sources alike.
type source interface {
	Run(ctx context.Context, emit func(*event.Event)) error
	Missing() []event.Kind
	Close() error
	counters() counters
}

type counters struct {
	Seen        uint64 // records the kernel tried to send
	Dropped     uint64 // records lost before the pipeline saw them
	Delivered   uint64 // records decoded by the pipeline
	RingPending uint64 // bytes waiting in the ring (eBPF only)
}

// Sensor is a running node sensor.
type Sensor struct {
	cfg     Config
	log     *slog.Logger
	mode    string
	src     source
	tree    *proctree.Table
	conts   *container.Resolver
	layout  container.Layout
	reg     *prometheus.Registry
	metrics *metrics
	server  *telemetry.Server
	detect  *detection

	sinkMu     sync.Mutex
	sinkErrs   atomic.Uint64
	lastDrops  uint64
	running    atomic.Bool
	runErr     atomic.Value // string
	eventCount atomic.Uint64
}

// New prepares a sensor: it detects the cgroup layout, loads the source
// (attaching eBPF programs) and seeds the process tree. Call Run to start
// delivering events and Close to release everything.
func New(cfg Config) (*Sensor, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Mode == "" {
		cfg.Mode = ModeAuto
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = time.Second
	}
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	if cfg.Node == "" {
		cfg.Node = os.Getenv("NODE_NAME")
	}
	if cfg.Node == "" {
		cfg.Node, _ = os.Hostname()
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &Sensor{cfg: cfg, log: cfg.Logger, reg: reg}
	// The host's mount namespace is init's; where init cannot be inspected
	// (a hardened or sandboxed pid 1) the sensor's own is the best guess,
	// which is right when the sensor runs on the host itself.
	hostNS, err := mountNS(cfg.ProcRoot, "1")
	if err != nil {
		self, serr := mountNS(cfg.ProcRoot, "self")
		if serr != nil {
			return nil, fmt.Errorf("read the host's mount namespace: %w; and the sensor's own: %w", err, serr)
		}
		s.log.Warn("cannot read init's mount namespace; using the sensor's own as the host's", "err", err)
		hostNS = self
	}
	ropts := []container.ResolverOption{container.WithHostMountNS(hostNS)}
	if cfg.ContainerMeta != nil {
		ropts = append(ropts, container.WithEnricher(cfg.ContainerMeta))
	}
	s.conts = container.NewResolver(container.DefaultCacheSize, ropts...)

	layout, err := container.DetectLayout("", "")
	if err != nil {
		return nil, fmt.Errorf("detect cgroup layout: %w", err)
	}
	s.layout = layout
	s.log.Info("cgroup layout", "mode", layout.Mode, "controller", layout.Controller, "cgroup2", layout.Cgroup2Path)

	if err := s.openSource(); err != nil {
		return nil, err
	}
	s.tree = proctree.New(proctree.Options{ProcRoot: cfg.ProcRoot, CgroupController: layout.Controller})
	s.metrics = newMetrics(s)
	s.detect = s.newDetection()
	if cfg.MetricsAddr != "" {
		var opts []telemetry.Option
		if cfg.Pprof {
			opts = append(opts, telemetry.WithPprof())
		}
		srv, err := telemetry.Serve(cfg.MetricsAddr, s.reg, s.health, s.log, opts...)
		if err != nil {
			s.src.Close()
			return nil, err
		}
		s.server = srv
	}
	return s, nil
}

func (s *Sensor) openSource() error {
	switch s.cfg.Mode {
	case ModeEBPF, ModeAuto:
		ec := s.cfg.EBPF
		ec.Logger = s.log
		ec.CgroupSubsys = s.layout.SubsysIndex
		ec.Cgroup2Path = s.layout.Cgroup2Path
		src, err := ebpfsrc.New(ec)
		if err == nil {
			s.src, s.mode = ebpfAdapter{src}, ModeEBPF
			return nil
		}
		if s.cfg.Mode == ModeEBPF {
			return fmt.Errorf("start eBPF source: %w", err)
		}
		s.log.Warn("eBPF source unavailable, falling back to the proc connector", "err", err)
		fallthrough
	case ModeProc:
		src, err := procsrc.New(procsrc.Config{ProcRoot: s.cfg.ProcRoot, Logger: s.log, CgroupController: s.layout.Controller})
		if err != nil {
			return fmt.Errorf("start proc-connector source: %w", err)
		}
		s.src, s.mode = procAdapter{src}, ModeProc
		return nil
	default:
		return fmt.Errorf("unknown source %q: use auto, ebpf or proc", s.cfg.Mode)
	}
}

// Mode reports the source in use: "ebpf" or "proc".
func (s *Sensor) Mode() string { return s.mode }

// Missing lists event kinds the sensor cannot observe in its current mode.
func (s *Sensor) Missing() []event.Kind { return s.src.Missing() }

// Status is what the sensor reports about itself to the hub.
type Status struct {
	Node           string
	Mode           string // ebpf or proc
	Drops          uint64 // events lost before the pipeline saw them, since start
	Missing        []event.Kind
	RuleSetVersion string // detect.Engine.Version of the rules in force ("" without rules)
}

// Status returns the sensor's current status.
func (s *Sensor) Status() Status {
	st := Status{Node: s.cfg.Node, Mode: s.mode, Missing: s.src.Missing(), Drops: s.src.counters().Dropped}
	if s.cfg.Rules != nil {
		if e := s.cfg.Rules(); e != nil {
			st.RuleSetVersion = e.Version()
		}
	}
	return st
}

// Registry exposes the sensor's metrics (for embedding in another server).
func (s *Sensor) Registry() *prometheus.Registry { return s.reg }

// MetricsAddr is the address /metrics is served on, if any.
func (s *Sensor) MetricsAddr() string {
	if s.server == nil {
		return ""
	}
	return s.server.Addr()
}

// Run delivers events until ctx is cancelled or the source fails.
func (s *Sensor) Run(ctx context.Context) error {
	n, err := s.tree.SeedFromProc()
	if err != nil {
		return fmt.Errorf("seed process tree from %s: %w", s.cfg.ProcRoot, err)
	}
	s.log.Info("process tree seeded from /proc", "processes", n)
	s.announce()
	if !s.cfg.SkipSnapshot {
		s.emitSnapshot()
	}

	s.running.Store(true)
	defer s.running.Store(false)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.healthLoop(ctx)
	}()
	if s.detect != nil {
		s.detect.run(ctx, &wg)
	}
	err = s.src.Run(ctx, s.handle)
	cancel()
	wg.Wait()
	s.checkDrops() // report drops that happened in the last interval
	if err != nil && !errors.Is(err, context.Canceled) {
		s.runErr.Store(err.Error())
		return fmt.Errorf("%s source: %w", s.mode, err)
	}
	return nil
}

// announce says, loudly, what this sensor can and cannot see.
func (s *Sensor) announce() {
	missing := s.src.Missing()
	if s.mode == ModeProc {
		msg := fmt.Sprintf("DEGRADED MODE: eBPF is not in use; the proc connector sees only exec/fork/exit, "+
			"argv of short-lived processes may be incomplete, and these event kinds are NOT observed: %v", missing)
		fmt.Fprintln(os.Stderr, "vigil sensor: "+msg)
		s.log.Warn("sensor running in degraded mode", "mode", s.mode, "missing", missing)
		s.emit(&event.Event{Kind: event.KindHealth, Time: time.Now(), Health: &event.Health{
			Status: "degraded", Mode: s.mode, Missing: missing, Message: msg}})
		return
	}
	if len(missing) > 0 {
		s.log.Warn("some event kinds are disabled", "missing", missing)
	}
	s.log.Info("sensor running", "mode", s.mode, "node", s.cfg.Node)
	s.emit(&event.Event{Kind: event.KindHealth, Time: time.Now(), Health: &event.Health{
		Status: "ok", Mode: s.mode, Missing: missing, Message: "sensor started"}})
}

// emitSnapshot reports every process already running at start, so rules
// can judge workloads that started before the sensor.
func (s *Sensor) emitSnapshot() {
	now := time.Now()
	s.tree.Walk(func(p *event.Process) {
		ev := &event.Event{Kind: event.KindSnapshot, Time: now, Source: "proc", Process: *p}
		s.handle(ev)
	})
}

// handle is the pipeline: process tree, container attribution, sinks.
// It runs on the source's reader goroutine.
func (s *Sensor) handle(ev *event.Event) {
	if ev.Node == "" {
		ev.Node = s.cfg.Node
	}
	s.tree.Apply(ev)
	s.attribute(ev)
	if s.detect != nil {
		s.detect.observe(ev)
	}
	s.eventCount.Add(1)
	s.metrics.countEvent(ev.Kind)
	s.metrics.countRepeats(ev)
	s.emitSinks(ev)
	if r, ok := s.src.(recycler); ok {
		r.Recycle(ev)
	}
}

// recycler is a source that reuses the events it emits once the pipeline
// is done with them (the eBPF source: most events are a few hundred bytes
// that would otherwise be garbage within microseconds).
type recycler interface {
	Recycle(*event.Event)
}

func (s *Sensor) attribute(ev *event.Event) {
	if ev.Container != nil {
		return
	}
	c := s.conts.ResolveProcess(ev.Process.CgroupID, ev.Process.Cgroup, ev.Process.MntNS)
	if c != nil {
		ev.Container = c
	}
}

// emit sends a sensor-generated event (health) through the sinks.
func (s *Sensor) emit(ev *event.Event) {
	if ev.Node == "" {
		ev.Node = s.cfg.Node
	}
	if ev.Process.PID == 0 {
		ev.Process = event.Process{PID: os.Getpid(), Comm: "vigil", Exe: selfExe()}
	}
	if ev.Source == "" {
		ev.Source = "sensor"
	}
	s.metrics.countEvent(ev.Kind)
	s.emitSinks(ev)
}

func (s *Sensor) emitSinks(ev *event.Event) {
	s.sinkMu.Lock()
	defer s.sinkMu.Unlock()
	for _, sink := range s.cfg.Sinks {
		if err := sink.Write(ev); err != nil {
			if s.sinkErrs.Add(1) == 1 {
				s.log.Error("writing events failed; events are being lost", "err", err)
			}
			s.metrics.sinkErrors.Inc()
		}
	}
}

func (s *Sensor) healthLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.checkDrops()
		}
	}
}

// checkDrops turns new drops into a health event and a log line.
func (s *Sensor) checkDrops() {
	c := s.src.counters()
	if c.Dropped <= s.lastDrops {
		return
	}
	delta := c.Dropped - s.lastDrops
	s.lastDrops = c.Dropped
	msg := fmt.Sprintf("%d events lost (total %d of %d seen): the reader could not keep up; "+
		"raise --ring-size or reduce load", delta, c.Dropped, c.Seen)
	s.log.Warn("events dropped", "lost", delta, "total", c.Dropped, "seen", c.Seen)
	s.emit(&event.Event{Kind: event.KindHealth, Time: time.Now(), Health: &event.Health{
		Status: "drops", Mode: s.mode, Drops: delta, Message: msg}})
}

func (s *Sensor) health() telemetry.Health {
	if msg, ok := s.runErr.Load().(string); ok && msg != "" {
		return telemetry.Health{OK: false, Status: "failed", Message: msg}
	}
	if !s.running.Load() {
		return telemetry.Health{OK: false, Status: "starting"}
	}
	if s.mode == ModeProc {
		return telemetry.Health{OK: true, Status: "degraded", Message: fmt.Sprintf("proc connector fallback; not observed: %v", s.src.Missing())}
	}
	return telemetry.Health{OK: true, Status: "ok"}
}

// Counters reports the source's delivery counters (for tests and benchmarks).
func (s *Sensor) Counters() (seen, dropped, delivered uint64) {
	c := s.src.counters()
	return c.Seen, c.Dropped, c.Delivered
}

// Close detaches from the kernel and stops the metrics endpoint.
func (s *Sensor) Close() error {
	var errs []error
	if s.server != nil {
		errs = append(errs, s.server.Close())
	}
	errs = append(errs, s.src.Close())
	return errors.Join(errs...)
}

// mountNS returns the inode of /proc/<pid>/ns/mnt.
func mountNS(procRoot string, pid string) (uint32, error) {
	link, err := os.Readlink(procRoot + "/" + pid + "/ns/mnt")
	if err != nil {
		return 0, err
	}
	var ino uint32
	if _, err := fmt.Sscanf(link, "mnt:[%d]", &ino); err != nil {
		return 0, fmt.Errorf("parse %q: %w", link, err)
	}
	return ino, nil
}

func selfExe() string {
	p, _ := os.Executable()
	return p
}

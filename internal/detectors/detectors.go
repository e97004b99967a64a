// Package detectors holds vigil's stateful detectors: behaviour that no
// single event shows, learnt from a sequence of events. The sensor calls
// Observe for every event before rules run; detectors annotate the event
// with facts (event.SetFact) that rule conditions read as facts["name"], and
// raise alerts of their own through a callback.
//
// Detectors:
//   - drift: a file written (open for write/create) or chmod +x'ed in a
//     container and later executed there sets drift.writtenAfterStart,
//     drift.writtenBy and drift.chmodBy on the exec; an executable on the
//     overlay upper layer sets drift.upperLayer.
//   - fan-out: distinct (ip, port) destinations a process connected to in a
//     sliding window (fact fanout.distinct on connect events); alert
//     vigil.node/NetworkScanningBehavior when it crosses a threshold.
//   - recon: distinct discovery commands (id, whoami, uname, ps, ...) under
//     one parent within a window (fact recon.burst on exec events); alert
//     vigil.node/ReconnaissanceBurst at the threshold.
//   - cpu: a sampler (Run) of /proc/<pid>/stat for container processes;
//     alert vigil.node/SustainedHighCPU when one uses more than a threshold
//     of a core over a whole window.
//
// Every table is bounded (capacity and TTL); Stats exposes counters for
// metrics.
//
// Concurrency: Observe must be called from one goroutine at a time (the
// sensor's pipeline goroutine). Run may run concurrently with Observe; Stats
// may be called from any goroutine. The raise callback is called from the
// goroutine of Observe (fan-out, recon) or of Run (cpu).
//
// Time: windows use the event's Time when set (so replayed recordings
// behave as they did live) and Options.Now otherwise; the CPU sampler uses
// Options.Now.
package detectors

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/event"
)

// Options configure the detectors. Zero values take the documented defaults.
type Options struct {
	// Now is the clock (default time.Now).
	Now func() time.Time
	// ProcRoot is where procfs is mounted (default /proc).
	ProcRoot string
	// Logger receives sampler errors (default slog.Default()).
	Logger *slog.Logger
	// Node names the machine in alerts when the event does not.
	Node string
	// RulesRaiseFactAlerts leaves the fan-out and recon-burst alerts to the
	// rules that read their facts (fanout.distinct, recon.burst), so users
	// tune them like any rule; the detectors then only annotate events. The
	// sustained-CPU detector, which has no event to annotate, still raises
	// its own alert.
	RulesRaiseFactAlerts bool

	// DriftTTL is how long a write or chmod is remembered (default 24h).
	DriftTTL time.Duration
	// DriftMaxFiles bounds remembered container files (default 65536);
	// DriftMaxHostFiles bounds host files separately (default 16384), so a
	// busy host cannot push container evidence out.
	DriftMaxFiles, DriftMaxHostFiles int

	// FanoutWindow is the sliding window (default 10s), FanoutThreshold the
	// number of distinct destinations that raises an alert (default 50).
	FanoutWindow    time.Duration
	FanoutThreshold int
	// FanoutMaxPerProcess bounds destinations kept per process (default
	// 4096; more are counted, not stored). FanoutMaxProcesses bounds tracked
	// processes (default 8192) and FanoutMaxEntries destinations across all
	// of them (default 262144).
	FanoutMaxPerProcess, FanoutMaxProcesses, FanoutMaxEntries int

	// ReconWindow (default 10s) and ReconThreshold (default 5 distinct
	// discovery commands); ReconMaxParents bounds tracked parents (default 8192).
	ReconWindow     time.Duration
	ReconThreshold  int
	ReconMaxParents int

	// CPUInterval is the sampling period (default 5s), CPUWindow how long a
	// process must stay above CPUThreshold percent of one core (default 60s,
	// 80). CPUMaxProcesses bounds sampled processes (default 16384).
	CPUInterval     time.Duration
	CPUWindow       time.Duration
	CPUThreshold    float64
	CPUMaxProcesses int
}

func (o *Options) defaults() {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ProcRoot == "" {
		o.ProcRoot = "/proc"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	setDur(&o.DriftTTL, 24*time.Hour)
	setInt(&o.DriftMaxFiles, 65536)
	setInt(&o.DriftMaxHostFiles, 16384)
	setDur(&o.FanoutWindow, 10*time.Second)
	setInt(&o.FanoutThreshold, 50)
	setInt(&o.FanoutMaxPerProcess, 4096)
	setInt(&o.FanoutMaxProcesses, 8192)
	setInt(&o.FanoutMaxEntries, 262144)
	setDur(&o.ReconWindow, 10*time.Second)
	setInt(&o.ReconThreshold, 5)
	setInt(&o.ReconMaxParents, 8192)
	setDur(&o.CPUInterval, 5*time.Second)
	setDur(&o.CPUWindow, 60*time.Second)
	if o.CPUThreshold <= 0 {
		o.CPUThreshold = 80
	}
	setInt(&o.CPUMaxProcesses, 16384)
}

func setDur(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

func setInt(n *int, def int) {
	if *n <= 0 {
		*n = def
	}
}

// Stats are cumulative counters and current table sizes, for metrics.
type Stats struct {
	Events uint64 // events observed

	DriftFiles      int    // remembered written/chmod'ed files (container + host)
	DriftEvictions  uint64 // files forgotten because a table was full
	DriftExecFacts  uint64 // execs annotated drift.writtenAfterStart
	DriftUpperLayer uint64 // execs annotated drift.upperLayer
	FanoutProcesses int    // processes with connect state
	FanoutEntries   int    // destinations stored across processes
	FanoutSaturated uint64 // destinations counted but not stored (a cap was reached)
	FanoutEvictions uint64 // process states dropped because the table was full
	ReconParents    int    // parents with discovery-command state
	ReconEvictions  uint64 // parent states dropped because the table was full
	CPUProcesses    int    // container processes the sampler follows
	CPUDropped      uint64 // candidates not followed because the table was full
	CPUSamples      uint64 // /proc/<pid>/stat reads
	CPUReadErrors   uint64 // reads that failed for another reason than the process being gone
	AlertsFanout    uint64
	AlertsRecon     uint64
	AlertsCPU       uint64
}

// Set is the collection of detectors.
type Set struct {
	opts  Options
	raise func(*alert.Alert)
	nums  []string // decimal strings 0..max, so facts need no allocation

	drift  driftDetector
	fanout fanoutDetector
	recon  reconDetector
	cpu    cpuDetector

	stats counters
}

// counters are written by Observe/Run and read by Stats from any goroutine.
type counters struct {
	events, driftExecFacts, driftUpper                    atomic.Uint64
	driftFiles, fanoutProcs, fanoutEntries, reconParents  atomic.Int64
	driftEvictions, fanoutSaturated, fanoutEvictions      atomic.Uint64
	reconEvictions, cpuDropped, cpuSamples, cpuReadErrors atomic.Uint64
	cpuProcs                                              atomic.Int64
	alertsFanout, alertsRecon, alertsCPU                  atomic.Uint64
}

// New builds the detectors. raise receives every alert a detector raises;
// nil discards them (facts are still set).
func New(opts Options, raise func(*alert.Alert)) *Set {
	opts.defaults()
	if raise == nil {
		raise = func(*alert.Alert) {}
	}
	s := &Set{opts: opts, raise: raise}
	max := max(opts.FanoutMaxPerProcess, 64)
	s.nums = make([]string, max+1)
	for i := range s.nums {
		s.nums[i] = itoa(i)
	}
	s.drift.init(s)
	s.fanout.init(s)
	s.recon.init(s)
	s.cpu.init(s)
	return s
}

// Observe feeds one event to every detector; it may add facts to ev and
// raise alerts. It runs in amortised constant time and allocates only when
// a table learns a new key.
func (s *Set) Observe(ev *event.Event) {
	if ev == nil {
		return
	}
	s.stats.events.Add(1)
	now := ev.Time.UnixNano()
	if ev.Time.IsZero() {
		now = s.opts.Now().UnixNano()
	}
	switch ev.Kind {
	case event.KindExec:
		s.drift.exec(ev, now)
		s.recon.exec(ev, now)
		s.cpu.learn(ev)
	case event.KindSnapshot, event.KindFork:
		s.cpu.learn(ev)
	case event.KindOpen:
		s.drift.open(ev, now)
	case event.KindChmod:
		s.drift.chmod(ev, now)
	case event.KindRename:
		s.drift.rename(ev, now)
	case event.KindUnlink:
		s.drift.unlink(ev)
	case event.KindConnect:
		s.fanout.connect(ev, now)
	case event.KindExit:
		k := ev.Process.Key()
		s.fanout.forget(k)
		s.recon.forget(k)
		s.cpu.forget(k)
	}
}

// Run samples CPU usage of container processes every CPUInterval until ctx
// is done.
func (s *Set) Run(ctx context.Context) {
	t := time.NewTicker(s.opts.CPUInterval)
	defer t.Stop()
	for {
		s.cpu.sample()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Stats returns the current counters. Safe from any goroutine.
func (s *Set) Stats() Stats {
	c := &s.stats
	return Stats{
		Events:          c.events.Load(),
		DriftFiles:      int(c.driftFiles.Load()),
		DriftEvictions:  c.driftEvictions.Load(),
		DriftExecFacts:  c.driftExecFacts.Load(),
		DriftUpperLayer: c.driftUpper.Load(),
		FanoutProcesses: int(c.fanoutProcs.Load()),
		FanoutEntries:   int(c.fanoutEntries.Load()),
		FanoutSaturated: c.fanoutSaturated.Load(),
		FanoutEvictions: c.fanoutEvictions.Load(),
		ReconParents:    int(c.reconParents.Load()),
		ReconEvictions:  c.reconEvictions.Load(),
		CPUProcesses:    int(c.cpuProcs.Load()),
		CPUDropped:      c.cpuDropped.Load(),
		CPUSamples:      c.cpuSamples.Load(),
		CPUReadErrors:   c.cpuReadErrors.Load(),
		AlertsFanout:    c.alertsFanout.Load(),
		AlertsRecon:     c.alertsRecon.Load(),
		AlertsCPU:       c.alertsCPU.Load(),
	}
}

// num renders n without allocating for the common range.
func (s *Set) num(n int) string {
	if n >= 0 && n < len(s.nums) {
		return s.nums[n]
	}
	return itoa(n)
}

// containerID is the attribution key: "" for host processes and events
// without attribution.
func containerID(ev *event.Event) string {
	if ev.Container == nil || ev.Container.Host {
		return ""
	}
	return ev.Container.ID
}

func basename(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}

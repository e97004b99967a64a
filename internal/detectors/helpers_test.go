package detectors

import (
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/event"
)

// clock is an injectable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// sink collects raised alerts.
type sink struct {
	mu     sync.Mutex
	alerts []*alert.Alert
}

func (s *sink) raise(a *alert.Alert) {
	s.mu.Lock()
	s.alerts = append(s.alerts, a)
	s.mu.Unlock()
}

func (s *sink) all() []*alert.Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*alert.Alert(nil), s.alerts...)
}

func (s *sink) ofType(t string) []*alert.Alert {
	var out []*alert.Alert
	for _, a := range s.all() {
		if a.AlertType == t {
			out = append(out, a)
		}
	}
	return out
}

// newTestSet builds a Set on a fake clock.
func newTestSet(t testing.TB, opts Options) (*Set, *clock, *sink) {
	t.Helper()
	c := newClock()
	if opts.Now == nil {
		opts.Now = c.now
	}
	k := &sink{}
	return New(opts, k.raise), c, k
}

// An event factory on the fake clock. cid "" means a host process.
type gen struct{ c *clock }

func ctr(cid string) *event.Container {
	if cid == "" {
		return &event.Container{Host: true}
	}
	return &event.Container{ID: cid, Runtime: "containerd", Image: "registry.local/app:1", Pod: "web-0", Namespace: "shop"}
}

func (g gen) proc(pid int, exe string, args ...string) event.Process {
	if len(args) == 0 {
		args = []string{exe}
	}
	return event.Process{PID: pid, PPID: 1, StartTime: uint64(pid) * event.TickNS * 7, Exe: exe, Comm: basename(exe), Args: args}
}

func (g gen) exec(cid string, pid int, exe string, args ...string) *event.Event {
	return &event.Event{Kind: event.KindExec, Time: g.c.now(), Node: "node-1", Process: g.proc(pid, exe, args...), Container: ctr(cid),
		Parent: &event.ProcessRef{PID: 10, StartTime: 70 * event.TickNS, Exe: "/bin/bash", Args: []string{"bash"}}}
}

func (g gen) open(cid string, pid int, exe, path string, write, create bool, result int) *event.Event {
	return &event.Event{Kind: event.KindOpen, Time: g.c.now(), Process: g.proc(pid, exe), Container: ctr(cid),
		File: &event.File{Path: path, Write: write, Create: create, Result: result}}
}

func (g gen) chmod(cid string, pid int, exe, path string, mode uint32) *event.Event {
	return &event.Event{Kind: event.KindChmod, Time: g.c.now(), Process: g.proc(pid, exe), Container: ctr(cid),
		File: &event.File{Path: path, Mode: mode}}
}

func (g gen) connect(cid string, pid int, ip string, port uint16) *event.Event {
	return &event.Event{Kind: event.KindConnect, Time: g.c.now(), Node: "node-1", Process: g.proc(pid, "/usr/bin/python3", "python3", "scan.py"),
		Container: ctr(cid), Network: &event.Network{Family: "ipv4", Protocol: "tcp", DstIP: ip, DstPort: port, Result: -111}}
}

func facts(ev *event.Event) map[string]string {
	m := map[string]string{}
	for _, f := range ev.Facts {
		m[f.Name] = f.Value
	}
	return m
}

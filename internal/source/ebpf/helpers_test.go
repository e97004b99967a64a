package ebpf

import (
	"bufio"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/testenv"
)

// memoryRow returns the row index of the "memory" controller in
// /proc/cgroups (its v1 subsystem id), or -1 on a pure cgroup v2 host.
func memoryRow(t testing.TB) int {
	t.Helper()
	f, err := os.Open("/proc/cgroups")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	row := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) >= 2 && fields[0] == "memory" {
			if fields[1] == "0" { // hierarchy 0: bound to cgroup2 only
				return -1
			}
			return row
		}
		row++
	}
	return -1
}

// collector runs a Source and records what it emits.
type collector struct {
	src     *Source
	mu      sync.Mutex
	events  []*event.Event
	cancel  context.CancelFunc
	ctx     context.Context
	started bool
	done    chan error
}

func startSource(t testing.TB, cfg Config) *collector {
	t.Helper()
	c := startStalled(t, cfg)
	c.run()
	return c
}

// startStalled loads and attaches a Source without reading it (the ring
// fills up) until run is called.
func startStalled(t testing.TB, cfg Config) *collector {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.Require(t, Check() == nil, "eBPF prerequisites: "+errString(Check()))
	if cfg.CgroupSubsys == 0 {
		cfg.CgroupSubsys = memoryRow(t)
	}
	src, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &collector{src: src, cancel: cancel, done: make(chan error, 1), ctx: ctx}
	t.Cleanup(func() {
		cancel()
		if c.started {
			if err := <-c.done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
		if err := src.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

func (c *collector) run() {
	c.started = true
	go func() {
		c.done <- c.src.Run(c.ctx, func(ev *event.Event) {
			c.mu.Lock()
			c.events = append(c.events, ev)
			c.mu.Unlock()
		})
	}()
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// waitFor returns the first event matching ok, failing after 10s.
func (c *collector) waitFor(t *testing.T, what string, ok func(*event.Event) bool) *event.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if ev := c.find(ok); ev != nil {
			return ev
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %s event within 10s", what)
	return nil
}

func (c *collector) find(ok func(*event.Event) bool) *event.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range c.events {
		if ok(ev) {
			return ev
		}
	}
	return nil
}

// settle waits for the reader to drain what is pending (poll deadline is
// 100ms by default) so absence checks are meaningful.
func settle() { time.Sleep(400 * time.Millisecond) }

func hasArg(ev *event.Event, marker string) bool {
	for _, a := range ev.Process.Args {
		if strings.Contains(a, marker) {
			return true
		}
	}
	return false
}

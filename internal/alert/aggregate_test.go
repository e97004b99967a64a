package alert

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// collector records emitted alerts.
type collector struct {
	mu  sync.Mutex
	out []*Alert
}

func (c *collector) emit(al *Alert) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out = append(c.out, al)
}

func (c *collector) all() []*Alert {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Alert(nil), c.out...)
}

// fakeClock is a settable wall clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(d)
}

func newTestAggregator(window time.Duration, opts ...Option) (*Aggregator, *collector, *fakeClock) {
	c := &collector{}
	clk := &fakeClock{t: testTime}
	a := NewAggregator(window, c.emit, opts...)
	a.now = clk.now
	return a, c, clk
}

// mk builds an alert as FromMatch would for the given rule, container,
// executable and event time.
func mk(rule, cid, exe string, at time.Time) *Alert {
	ev := &event.Event{Kind: event.KindExec, Time: at, Node: "node-1", Source: "ebpf",
		Process:   event.Process{PID: 10, Exe: exe, Args: []string{exe}},
		Container: &event.Container{ID: cid}}
	return FromMatch(rule, "name", "desc", SeverityHigh, "stable", nil, nil, nil, ev)
}

func TestAggregation(t *testing.T) {
	const w = 10 * time.Minute
	ws := testTime.Truncate(w)
	type step struct {
		add   *Alert
		flush bool
	}
	tests := []struct {
		name   string
		steps  []step
		counts []int // Count of each emitted alert, in order
		sameID [][2]int
		diffID [][2]int
	}{
		{
			name:   "the first occurrence is emitted at once",
			steps:  []step{{add: mk("r", "c1", "/x", ws.Add(time.Minute))}},
			counts: []int{1},
		},
		{
			name: "repeats are counted and emitted as one update with the same id at flush",
			steps: []step{
				{add: mk("r", "c1", "/x", ws.Add(time.Minute))},
				{add: mk("r", "c1", "/x", ws.Add(2*time.Minute))},
				{add: mk("r", "c1", "/x", ws.Add(3*time.Minute))},
				{flush: true},
			},
			counts: []int{1, 3},
			sameID: [][2]int{{0, 1}},
		},
		{
			name: "a flush without repeats emits nothing",
			steps: []step{
				{add: mk("r", "c1", "/x", ws.Add(time.Minute))},
				{flush: true},
				{flush: true},
			},
			counts: []int{1},
		},
		{
			name: "repeats after an update give a later update with a higher count",
			steps: []step{
				{add: mk("r", "c1", "/x", ws.Add(time.Minute))},
				{add: mk("r", "c1", "/x", ws.Add(2*time.Minute))},
				{flush: true},
				{add: mk("r", "c1", "/x", ws.Add(3*time.Minute))},
				{flush: true},
			},
			counts: []int{1, 2, 3},
			sameID: [][2]int{{0, 1}, {1, 2}},
		},
		{
			name: "the next window is a new alert with a new id",
			steps: []step{
				{add: mk("r", "c1", "/x", ws.Add(9*time.Minute))},
				{add: mk("r", "c1", "/x", ws.Add(w+time.Minute))},
			},
			counts: []int{1, 1},
			diffID: [][2]int{{0, 1}},
		},
		{
			name: "other containers, executables and rules are separate alerts",
			steps: []step{
				{add: mk("r", "c1", "/x", ws.Add(time.Minute))},
				{add: mk("r", "c2", "/x", ws.Add(time.Minute))},
				{add: mk("r", "c1", "/y", ws.Add(time.Minute))},
				{add: mk("s", "c1", "/x", ws.Add(time.Minute))},
			},
			counts: []int{1, 1, 1, 1},
			diffID: [][2]int{{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, c, _ := newTestAggregator(w)
			for _, s := range tt.steps {
				if s.add != nil {
					a.Add(s.add)
				}
				if s.flush {
					a.Flush()
				}
			}
			out := c.all()
			if len(out) != len(tt.counts) {
				t.Fatalf("emitted %d alerts, want %d", len(out), len(tt.counts))
			}
			for i, al := range out {
				if al.Count != tt.counts[i] {
					t.Errorf("emission %d has count %d, want %d", i, al.Count, tt.counts[i])
				}
			}
			for _, p := range tt.sameID {
				if out[p[0]].ID != out[p[1]].ID {
					t.Errorf("emissions %d and %d have ids %s and %s, want the same", p[0], p[1], out[p[0]].ID, out[p[1]].ID)
				}
			}
			for _, p := range tt.diffID {
				if out[p[0]].ID == out[p[1]].ID {
					t.Errorf("emissions %d and %d share id %s", p[0], p[1], out[p[0]].ID)
				}
			}
		})
	}
}

func TestAggregatedAlertSpansFirstToLastSeen(t *testing.T) {
	a, c, _ := newTestAggregator(10 * time.Minute)
	ws := testTime.Truncate(10 * time.Minute)
	a.Add(mk("r", "c1", "/x", ws.Add(2*time.Minute)))
	a.Add(mk("r", "c1", "/x", ws.Add(5*time.Minute)))
	a.Add(mk("r", "c1", "/x", ws.Add(time.Minute))) // out of order
	a.Flush()
	out := c.all()
	if len(out) != 2 {
		t.Fatalf("emitted %d, want 2", len(out))
	}
	first, upd := out[0], out[1]
	if !first.StartTime.Equal(ws.Add(2*time.Minute)) || !first.EndTime.Equal(ws.Add(2*time.Minute)) || first.Count != 1 {
		t.Errorf("the first emission changed after it was emitted: %v..%v count %d", first.StartTime, first.EndTime, first.Count)
	}
	if !upd.StartTime.Equal(ws.Add(time.Minute)) || !upd.EndTime.Equal(ws.Add(5*time.Minute)) || upd.Count != 3 {
		t.Errorf("update spans %v..%v count %d, want %v..%v count 3", upd.StartTime, upd.EndTime, upd.Count, ws.Add(time.Minute), ws.Add(5*time.Minute))
	}
	if first.ID != ID("r", "node-1", "c1", "/x", ws) {
		t.Errorf("id %s is not ID(rule, node, container, exe, window start)", first.ID)
	}
}

func TestAggregatorSetsIDForItsOwnWindow(t *testing.T) {
	const w = time.Minute
	a, c, _ := newTestAggregator(w)
	al := mk("r", "c1", "/x", testTime) // FromMatch used DefaultWindow
	a.Add(al)
	if got, want := c.all()[0].ID, ID("r", "node-1", "c1", "/x", testTime.Truncate(w)); got != want {
		t.Fatalf("id %s, want %s (window %v)", got, want, w)
	}
}

func TestAggregatorForgetsClosedWindows(t *testing.T) {
	const w = time.Minute
	ws := testTime.Truncate(w)
	t.Run("a window is forgotten once event time has moved past it", func(t *testing.T) {
		a, c, _ := newTestAggregator(w)
		a.Add(mk("r", "c1", "/x", ws.Add(10*time.Second)))
		a.Add(mk("r", "c1", "/x", ws.Add(20*time.Second)))
		a.Add(mk("r", "c2", "/x", ws.Add(w+lateGrace+time.Second))) // watermark beyond the grace
		a.Flush()
		if a.Len() != 1 {
			t.Fatalf("%d alerts open, want only the one of the current window", a.Len())
		}
		out := c.all()
		if last := out[len(out)-1]; last.Count != 2 || last.Entities.Container.ID != "c1" {
			t.Fatalf("the closed window's pending update was not emitted before forgetting it: %+v", last)
		}
	})
	t.Run("a window is forgotten after a window length of wall-clock quiet", func(t *testing.T) {
		a, _, clk := newTestAggregator(w)
		a.Add(mk("r", "c1", "/x", ws.Add(10*time.Second)))
		clk.advance(w / 2)
		a.Flush()
		if a.Len() != 1 {
			t.Fatalf("%d open, want 1 before the quiet period", a.Len())
		}
		clk.advance(w / 2)
		a.Flush()
		if a.Len() != 0 {
			t.Fatalf("%d open after a quiet window, want 0", a.Len())
		}
	})
	t.Run("a late event within the grace period still folds into its window", func(t *testing.T) {
		a, c, _ := newTestAggregator(w)
		a.Add(mk("r", "c1", "/x", ws.Add(50*time.Second)))
		a.Add(mk("r", "c2", "/x", ws.Add(w+5*time.Second)))
		a.Flush()
		a.Add(mk("r", "c1", "/x", ws.Add(55*time.Second)))
		a.Flush()
		out := c.all()
		if len(out) != 3 || out[2].Count != 2 || out[2].ID != out[0].ID {
			t.Fatalf("emissions %d, last %+v; want an update of the first alert with count 2", len(out), out[len(out)-1])
		}
	})
}

func TestAggregatorMemoryIsBounded(t *testing.T) {
	const max = 100
	a, c, _ := newTestAggregator(time.Hour, WithMaxEntries(max))
	a.Add(mk("r", "c-old", "/x", testTime))
	a.Add(mk("r", "c-old", "/x", testTime)) // pending update, Count 2
	for i := range 10 * max {
		a.Add(mk("r", fmt.Sprintf("c%d", i), "/x", testTime))
		if a.Len() > max {
			t.Fatalf("%d alerts open after %d distinct ones, want at most %d", a.Len(), i+2, max)
		}
	}
	if a.Evicted() != 10*max+1-max {
		t.Fatalf("Evicted() = %d, want %d", a.Evicted(), 10*max+1-max)
	}
	var found bool
	for _, al := range c.all() {
		if al.Entities.Container.ID == "c-old" && al.Count == 2 {
			found = true
		}
	}
	if !found {
		t.Fatal("the evicted alert's pending repeat was lost instead of emitted")
	}
}

func TestAggregatorConcurrentUse(t *testing.T) {
	c := &collector{}
	a := NewAggregator(time.Hour, c.emit, WithFlushInterval(time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	const goroutines, per = 8, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				a.Add(mk("r", fmt.Sprintf("c%d", (g+i)%4), "/x", testTime))
			}
		}()
	}
	wg.Wait()
	cancel()
	<-done // Run flushes a last time before returning
	final := map[string]int{}
	last := map[string]int{}
	for _, al := range c.all() {
		if al.Count < last[al.ID] {
			t.Fatalf("alert %s emitted with count %d after %d: updates out of order", al.ID, al.Count, last[al.ID])
		}
		last[al.ID] = al.Count
		final[al.Entities.Container.ID] = al.Count
	}
	total := 0
	for _, n := range final {
		total += n
	}
	if len(final) != 4 || total != goroutines*per {
		t.Fatalf("final counts %v (total %d), want 4 alerts totalling %d", final, total, goroutines*per)
	}
}

package detectors

import (
	"runtime"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// TestMemoryIsBounded feeds a million events with ever-new processes,
// containers, paths, destinations and parents: the tables stay at their caps
// and the heap does not grow with the event count.
func TestMemoryIsBounded(t *testing.T) {
	opts := Options{
		DriftMaxFiles: 1000, DriftMaxHostFiles: 500,
		FanoutMaxPerProcess: 100, FanoutMaxProcesses: 200, FanoutMaxEntries: 5000,
		ReconMaxParents: 300, CPUMaxProcesses: 400,
	}
	s, c, _ := newTestSet(t, opts)
	g := gen{c}
	// Build the events up front so the heap measurement sees only the
	// detectors' state.
	const n = 1_000_000
	evs := make([]event.Event, 0, 64)
	mk := func(i int) *event.Event {
		if len(evs) == cap(evs) {
			evs = evs[:0]
		}
		var ev *event.Event
		cid := "c" + itoa(i%777)
		switch i % 5 {
		case 0:
			ev = g.open(cid, 1000+i, "/usr/bin/curl", "/tmp/f"+itoa(i), true, true, 0)
		case 1:
			ev = g.open("", 1000+i, "/usr/bin/gcc", "/build/o"+itoa(i), true, true, 0)
		case 2:
			ev = g.connect(cid, 1000+i/600%1000, "10."+itoa(i%200)+"."+itoa(i/200%250)+".1", uint16(i))
		case 3:
			ev = g.exec(cid, 1000+i, "/usr/bin/id", "id")
			ev.Parent = &event.ProcessRef{PID: i, StartTime: uint64(i) * event.TickNS}
		default:
			ev = g.exec("c"+itoa((i-4)%777), 1000+i, "/tmp/f"+itoa(i-4)) // written just before
		}
		return ev
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	var base uint64
	for i := range n {
		if i == n/10 {
			base = heap()
		}
		s.Observe(mk(i))
		if i%1000 == 0 {
			c.advance(time.Millisecond)
		}
	}
	st := s.Stats()
	if st.Events != n {
		t.Fatalf("events counted = %d, want %d", st.Events, n)
	}
	checks := []struct {
		what      string
		got, most int
	}{
		{"remembered files", st.DriftFiles, opts.DriftMaxFiles + opts.DriftMaxHostFiles},
		{"fan-out processes", st.FanoutProcesses, opts.FanoutMaxProcesses},
		{"fan-out destinations", st.FanoutEntries, opts.FanoutMaxEntries},
		{"recon parents", st.ReconParents, opts.ReconMaxParents},
		{"cpu candidates", st.CPUProcesses, opts.CPUMaxProcesses},
	}
	for _, ch := range checks {
		if ch.got > ch.most || ch.got <= 0 {
			t.Errorf("%s = %d, want 1..%d", ch.what, ch.got, ch.most)
		}
	}
	if st.DriftExecFacts == 0 {
		t.Errorf("no exec of a just-written file was recognised under churn: %+v", st)
	}
	if st.DriftEvictions == 0 || st.FanoutEvictions == 0 || st.ReconEvictions == 0 || st.CPUDropped == 0 || st.FanoutSaturated == 0 {
		t.Errorf("caps were never hit: %+v", st)
	}
	// Growth between 10% and 100% of the events: bounded tables mean no
	// growth proportional to 900k more events (which would be >100 MB).
	if grew := int64(heap()) - int64(base); grew > 8<<20 {
		t.Errorf("heap grew by %d bytes over 900k events; state is not bounded", grew)
	}
	t.Logf("stats after %d events: %+v", n, st)
}

func TestExitForgetsTheProcess(t *testing.T) {
	s, c, _ := newTestSet(t, Options{})
	g := gen{c}
	s.Observe(g.exec("c1", 300, "/usr/bin/miner"))
	s.Observe(g.connect("c1", 300, "10.0.0.1", 3333))
	if st := s.Stats(); st.CPUProcesses != 1 || st.FanoutProcesses != 1 {
		t.Fatalf("before exit: cpu candidates %d, fan-out processes %d; want 1 and 1", st.CPUProcesses, st.FanoutProcesses)
	}
	exit := g.exec("c1", 300, "/usr/bin/miner")
	exit.Kind = event.KindExit
	exit.Process.StartTime = g.proc(300, "").StartTime
	s.Observe(exit)
	if st := s.Stats(); st.CPUProcesses != 0 || st.FanoutProcesses != 0 {
		t.Fatalf("after exit: cpu candidates %d, fan-out processes %d; want 0 and 0", st.CPUProcesses, st.FanoutProcesses)
	}
}

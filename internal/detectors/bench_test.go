package detectors

import (
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
)

// The pipeline reuses nothing of an event after Observe; the benchmarks
// reset Facts (keeping capacity) the way a pooled event would be reset.

// BenchmarkObserveExec: a container exec also copies the process for the
// CPU sampler's alert (the allocations); a host exec only runs drift and
// recon lookups.
func BenchmarkObserveExec(b *testing.B) {
	for _, cid := range []string{"c1", ""} {
		name := "container"
		if cid == "" {
			name = "host"
		}
		b.Run(name, func(b *testing.B) {
			s, c, _ := newTestSet(b, Options{})
			g := gen{c}
			evs := []*event.Event{
				g.exec(cid, 100, "/usr/bin/id", "id"),               // a discovery command
				g.exec(cid, 101, "/usr/local/bin/app", "app", "-v"), // an ordinary exec
				g.exec(cid, 102, "/tmp/x"),                          // drift
			}
			s.Observe(g.open(cid, 99, "/usr/bin/curl", "/tmp/x", true, true, 0))
			for _, ev := range evs {
				s.Observe(ev)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				ev := evs[i%len(evs)]
				ev.Facts = ev.Facts[:0]
				s.Observe(ev)
				i++
			}
		})
	}
}

func BenchmarkObserveConnect(b *testing.B) {
	s, c, _ := newTestSet(b, Options{})
	g := gen{c}
	// 64 processes each talking to 16 destinations: the steady state of a
	// busy node (state exists; entries are refreshed).
	var evs []*event.Event
	for p := range 64 {
		for d := range 16 {
			evs = append(evs, g.connect("c1", 1000+p, "10.0.0."+itoa(d+1), 443))
		}
	}
	for _, ev := range evs {
		s.Observe(ev)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ev := evs[i%len(evs)]
		ev.Facts = ev.Facts[:0]
		s.Observe(ev)
		i++
	}
}

func BenchmarkObserveOpenWrite(b *testing.B) {
	s, c, _ := newTestSet(b, Options{})
	g := gen{c}
	var evs []*event.Event
	for i := range 1024 {
		evs = append(evs, g.open("c1", 1000, "/usr/bin/app", "/var/log/app/"+itoa(i), true, false, 0))
	}
	for _, ev := range evs {
		s.Observe(ev)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.Observe(evs[i%len(evs)])
		i++
	}
}

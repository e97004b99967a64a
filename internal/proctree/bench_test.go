package proctree

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
)

// chainTable builds init → ... a 7-deep chain plus n leaves under its tip.
func chainTable(b testing.TB, n int) *Table {
	tb, _ := newTestTable(b, Options{})
	apply(tb, snapshot(1, 0, 1, "/sbin/init"))
	for i := 1; i < 7; i++ {
		apply(tb, fork(i, i, i+1, i+1), execEv(i+1, i+1, fmt.Sprintf("/bin/level%d", i), "level", "--flag"))
	}
	for i := range n {
		pid := 1000 + i
		apply(tb, fork(7, 7, pid, pid), execEv(pid, pid, "/usr/bin/curl", "curl", "-s", "http://127.0.0.1/"))
	}
	return tb
}

func BenchmarkApplyNonExec(b *testing.B) {
	const leaves = 1000
	tb := chainTable(b, leaves)
	evs := make([]event.Event, leaves)
	for i := range evs {
		evs[i] = *connect(1000+i, 1000+i, 7)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var ev event.Event
	for i := 0; b.Loop(); i++ {
		ev = evs[i%leaves] // fresh copy: Apply fills it
		tb.Apply(&ev)
	}
	if len(ev.Ancestry) != 7 || ev.Process.Exe != "/usr/bin/curl" {
		b.Fatalf("event not enriched: %+v", ev)
	}
}

func BenchmarkApplyExec(b *testing.B) {
	const leaves = 1000
	tb := chainTable(b, leaves)
	args := [][]string{{"sh", "-c", "id"}, {"curl", "-s", "http://127.0.0.1/"}}
	exes := []string{"/bin/sh", "/usr/bin/curl"}
	b.ReportAllocs()
	b.ResetTimer()
	var ev event.Event
	for i := 0; b.Loop(); i++ {
		pid := 1000 + i%leaves
		ev = event.Event{Kind: event.KindExec, Process: event.Process{PID: pid, StartTime: start(pid),
			Exe: exes[i&1], Args: args[i&1], Comm: "x"}}
		tb.Apply(&ev)
	}
	if len(ev.Ancestry) != 7 {
		b.Fatalf("exec event ancestry = %d levels", len(ev.Ancestry))
	}
}

// BenchmarkApplyForkExecExit measures a whole short-lived process: one op
// is fork + exec + exit (three Apply calls) including entry creation and,
// at steady state, removal.
func BenchmarkApplyForkExecExit(b *testing.B) {
	tb := chainTable(b, 0)
	args := []string{"sh", "-c", "id"}
	b.ReportAllocs()
	b.ResetTimer()
	var evs [3]event.Event
	for i := 0; b.Loop(); i++ {
		pid, st := 10000+i%30000, 10000+i
		evs[0] = event.Event{Kind: event.KindFork, Process: event.Process{PID: pid, PPID: 7, StartTime: start(st)},
			Parent: &event.ProcessRef{PID: 7, StartTime: start(7)}}
		evs[1] = event.Event{Kind: event.KindExec, Process: event.Process{PID: pid, StartTime: start(st), Exe: "/bin/sh", Args: args}}
		evs[2] = event.Event{Kind: event.KindExit, Process: event.Process{PID: pid, StartTime: start(st)}}
		for j := range evs {
			tb.Apply(&evs[j])
		}
	}
}

// TestHeapFor10000LiveProcesses reports (and bounds) the heap the table
// needs per live process, args included.
func TestHeapFor10000LiveProcesses(t *testing.T) {
	const n = 10_000
	t.Run("10,000 live processes fit in a bounded heap", func(t *testing.T) {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		tb := chainTable(t, n)
		// Every process has had an event, so ancestry caches are built.
		for i := range n {
			tb.Apply(connect(1000+i, 1000+i, 7))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if tb.Len() != n+7 {
			t.Fatalf("Len = %d, want %d", tb.Len(), n+7)
		}
		heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
		per := heap / n
		t.Logf("heap for %d live processes (ancestry cached per parent): %d bytes total, %d bytes/process", n, heap, per)
		const limit = 384 // about twice the 170 measured (470 before entries were compacted)
		if per > limit {
			t.Fatalf("%d heap bytes per process, want <= %d", per, limit)
		}
		runtime.KeepAlive(tb)
	})
}

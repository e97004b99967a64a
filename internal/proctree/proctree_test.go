package proctree

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// clock is a manual clock for ageing tests.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time          { return c.now }
func (c *clock) Advance(d time.Duration) { c.now = c.now.Add(d) }

// newTestTable returns a table over an empty procfs, so unknown processes
// get minimal entries and nothing is read from the real /proc.
func newTestTable(t testing.TB, opts Options) (*Table, *clock) {
	t.Helper()
	clk := &clock{now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	if opts.ProcRoot == "" {
		opts.ProcRoot = t.TempDir()
	}
	opts.Now = clk.Now
	return New(opts), clk
}

// start returns a start time in ns for tick n (distinct keys per n).
func start(n int) uint64 { return uint64(n) * event.TickNS }

func snapshot(pid, ppid, st int, exe string, args ...string) *event.Event {
	return &event.Event{Kind: event.KindSnapshot, Process: event.Process{
		PID: pid, PPID: ppid, StartTime: start(st), Exe: exe, Args: args, Comm: filepath.Base(exe),
		Cwd: "/srv", Cgroup: "/kubepods/pod1/abc"}}
}

func fork(ppid, pst, pid, st int) *event.Event {
	return &event.Event{Kind: event.KindFork,
		Process: event.Process{PID: pid, PPID: ppid, StartTime: start(st)},
		Parent:  &event.ProcessRef{PID: ppid, StartTime: start(pst)},
		Fork:    &event.Fork{ChildPID: pid}}
}

func execEv(pid, st int, exe string, args ...string) *event.Event {
	return &event.Event{Kind: event.KindExec, Process: event.Process{
		PID: pid, StartTime: start(st), Exe: exe, Args: args, Comm: filepath.Base(exe), UID: 33}}
}

func exit(pid, st int) *event.Event {
	return &event.Event{Kind: event.KindExit, Process: event.Process{PID: pid, StartTime: start(st)},
		Exit: &event.Exit{}}
}

// connect is a typical non-exec event: the kernel knows pid, start time
// and comm, nothing else.
func connect(pid, st, ppid int) *event.Event {
	return &event.Event{Kind: event.KindConnect, Process: event.Process{PID: pid, PPID: ppid, StartTime: start(st)},
		Network: &event.Network{Family: "ipv4", Protocol: "tcp", DstIP: "127.0.0.1", DstPort: 80}}
}

func apply(tb *Table, evs ...*event.Event) *event.Event {
	for _, ev := range evs {
		tb.Apply(ev)
	}
	return evs[len(evs)-1]
}

func exes(anc []event.ProcessRef) []string {
	var out []string
	for _, a := range anc {
		out = append(out, a.Exe)
	}
	return out
}

func TestApply(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		run  func(t *testing.T, tb *Table, clk *clock)
	}{
		{
			name: "a forked child inherits its parent's executable until it execs",
			run: func(t *testing.T, tb *Table, _ *clock) {
				apply(tb, snapshot(100, 1, 1, "/usr/sbin/php-fpm", "php-fpm: pool www"))
				ev := apply(tb, fork(100, 1, 200, 5))
				if ev.Process.Exe != "/usr/sbin/php-fpm" || !slices.Equal(ev.Process.Args, []string{"php-fpm: pool www"}) ||
					ev.Process.Cwd != "/srv" || ev.Process.Cgroup != "/kubepods/pod1/abc" {
					t.Fatalf("fork event not enriched with the parent's image: %+v", ev.Process)
				}
				ev = apply(tb, connect(200, 5, 100))
				if ev.Process.Exe != "/usr/sbin/php-fpm" {
					t.Fatalf("child before exec: exe %q, want the parent's", ev.Process.Exe)
				}
				apply(tb, execEv(200, 5, "/bin/sh", "sh", "-c", "curl x"))
				ev = apply(tb, connect(200, 5, 100))
				if ev.Process.Exe != "/bin/sh" || !slices.Equal(ev.Process.Args, []string{"sh", "-c", "curl x"}) {
					t.Fatalf("child after exec: exe %q args %q, want /bin/sh", ev.Process.Exe, ev.Process.Args)
				}
				if ev.Process.Cwd != "/srv" || ev.Process.Cgroup != "/kubepods/pod1/abc" {
					t.Fatalf("exec lost cwd/cgroup inherited at fork: %+v", ev.Process)
				}
				if ev.Parent == nil || ev.Parent.PID != 100 || ev.Parent.Exe != "/usr/sbin/php-fpm" {
					t.Fatalf("parent = %+v, want php-fpm 100", ev.Parent)
				}
			},
		},
		{
			name: "exec replaces executable and args but keeps identity",
			run: func(t *testing.T, tb *Table, _ *clock) {
				apply(tb, snapshot(100, 1, 1, "/usr/bin/bash", "bash"), fork(100, 1, 300, 7))
				ev := apply(tb, execEv(300, 7, "/usr/bin/curl", "curl", "http://127.0.0.1/"))
				if ev.Process.PID != 300 || ev.Process.StartTime != start(7) || ev.Process.PPID != 100 {
					t.Fatalf("identity changed by exec: %+v", ev.Process)
				}
				in, ok := tb.Lookup(event.MakeKey(300, start(7)))
				if !ok {
					t.Fatal("exec'd process not found by its pre-exec key")
				}
				if in.Process.Exe != "/usr/bin/curl" || !slices.Equal(in.Process.Args, []string{"curl", "http://127.0.0.1/"}) ||
					in.Process.Comm != "curl" || in.Process.UID != 33 {
					t.Fatalf("entry after exec = %+v", in.Process)
				}
				if in.Parent != event.MakeKey(100, start(1)) {
					t.Fatalf("parent key after exec = %v, want 100@1", in.Parent)
				}
				if tb.Len() != 2 {
					t.Fatalf("Len = %d after exec, want 2 (exec creates no entry)", tb.Len())
				}
			},
		},
		{
			name: "ancestry lists parent first up to the configured depth",
			opts: Options{AncestryDepth: 5},
			run: func(t *testing.T, tb *Table, _ *clock) {
				chain := []string{"/usr/lib/systemd/systemd", "/usr/bin/containerd-shim", "/usr/sbin/php-fpm",
					"/bin/sh", "/bin/bash", "/usr/bin/curl", "/usr/bin/python3"}
				apply(tb, snapshot(1, 0, 1, chain[0]))
				for i := 1; i < len(chain); i++ {
					apply(tb, fork(i, i, i+1, i+1), execEv(i+1, i+1, chain[i], filepath.Base(chain[i])))
				}
				ev := apply(tb, connect(7, 7, 6))
				want := []string{"/usr/bin/curl", "/bin/bash", "/bin/sh", "/usr/sbin/php-fpm", "/usr/bin/containerd-shim"}
				if got := exes(ev.Ancestry); !slices.Equal(got, want) {
					t.Fatalf("ancestry = %q, want %q", got, want)
				}
				if ev.Parent == nil || ev.Parent.PID != 6 || ev.Parent.StartTime != start(6) || ev.Parent.UID != 33 ||
					ev.Parent.Comm != "curl" || !slices.Equal(ev.Parent.Args, []string{"curl"}) {
					t.Fatalf("parent = %+v, want curl pid 6", ev.Parent)
				}
				ev = apply(tb, connect(3, 3, 2))
				if got := exes(ev.Ancestry); !slices.Equal(got, []string{chain[1], chain[0]}) {
					t.Fatalf("short chain ancestry = %q, want containerd-shim, systemd", got)
				}
			},
		},
		{
			name: "an ancestor's exec shows in its descendants' next events",
			run: func(t *testing.T, tb *Table, _ *clock) {
				apply(tb, snapshot(10, 1, 1, "/usr/bin/bash"), fork(10, 1, 11, 2), fork(11, 2, 12, 3))
				ev := apply(tb, connect(12, 3, 11))
				if got := exes(ev.Ancestry); !slices.Equal(got, []string{"/usr/bin/bash", "/usr/bin/bash"}) {
					t.Fatalf("ancestry before exec = %q", got)
				}
				apply(tb, execEv(10, 1, "/usr/bin/zsh", "zsh"))
				ev2 := apply(tb, connect(12, 3, 11))
				if got := exes(ev2.Ancestry); !slices.Equal(got, []string{"/usr/bin/bash", "/usr/bin/zsh"}) {
					t.Fatalf("ancestry after grandparent exec = %q", got)
				}
				if got := exes(ev.Ancestry); !slices.Equal(got, []string{"/usr/bin/bash", "/usr/bin/bash"}) {
					t.Fatalf("an earlier event's ancestry changed afterwards: %q", got)
				}
			},
		},
		{
			name: "a reused pid is not mistaken for the exited parent",
			run: func(t *testing.T, tb *Table, _ *clock) {
				apply(tb, snapshot(1, 0, 1, "/sbin/init"), fork(1, 1, 500, 10),
					execEv(500, 10, "/bin/sh", "sh"), fork(500, 10, 501, 11), execEv(501, 11, "/usr/bin/curl", "curl"),
					exit(500, 10))
				// pid 500 is reused by an unrelated process.
				apply(tb, fork(1, 1, 500, 90), execEv(500, 90, "/usr/bin/sshd", "sshd"))
				ev := apply(tb, connect(501, 11, 1))
				if ev.Parent == nil || ev.Parent.Exe != "/bin/sh" || ev.Parent.StartTime != start(10) || !ev.Parent.Exited {
					t.Fatalf("parent = %+v, want the exited sh, not the new pid-500 sshd", ev.Parent)
				}
				// A fork reported late (after the reuse) names its creator by key.
				late := apply(tb, fork(500, 10, 502, 12))
				if late.Parent == nil || late.Parent.Exe != "/bin/sh" || late.Process.Exe != "/bin/sh" {
					t.Fatalf("late fork: parent %+v exe %q, want the exited sh", late.Parent, late.Process.Exe)
				}
				// An event with only a pid resolves to the process holding it now.
				byPID := apply(tb, &event.Event{Kind: event.KindConnect, Process: event.Process{PID: 500}})
				if byPID.Process.Exe != "/usr/bin/sshd" || byPID.Process.StartTime != start(90) {
					t.Fatalf("pid-only event resolved to %+v, want sshd", byPID.Process)
				}
			},
		},
		{
			name: "an orphan keeps its original ancestry after reparenting",
			run: func(t *testing.T, tb *Table, _ *clock) {
				apply(tb, snapshot(1, 0, 1, "/sbin/init"), snapshot(100, 1, 2, "/usr/sbin/php-fpm"),
					fork(100, 2, 200, 3), execEv(200, 3, "/bin/sh", "sh", "-c", "curl ... &"),
					fork(200, 3, 300, 4), execEv(300, 4, "/usr/bin/curl", "curl"), exit(200, 3))
				ev := apply(tb, connect(300, 4, 1)) // the kernel now says ppid 1
				if got := exes(ev.Ancestry); !slices.Equal(got, []string{"/bin/sh", "/usr/sbin/php-fpm", "/sbin/init"}) {
					t.Fatalf("orphan ancestry = %q, want sh, php-fpm, init", got)
				}
				if !ev.Ancestry[0].Exited || ev.Ancestry[1].Exited {
					t.Fatalf("exited flags = %v %v, want sh exited, php-fpm live", ev.Ancestry[0].Exited, ev.Ancestry[1].Exited)
				}
				if ev.Process.PPID != 1 {
					t.Fatalf("PPID reported by the kernel was overwritten: %d", ev.Process.PPID)
				}
			},
		},
		{
			name: "an orphan keeps its ancestry after its exited parent aged out",
			opts: Options{ExitedTTL: time.Second},
			run: func(t *testing.T, tb *Table, clk *clock) {
				apply(tb, snapshot(1, 0, 1, "/sbin/init"), snapshot(100, 1, 2, "/usr/sbin/php-fpm"),
					fork(100, 2, 200, 3), execEv(200, 3, "/bin/sh", "sh"),
					fork(200, 3, 300, 4), execEv(300, 4, "/usr/bin/curl", "curl"), exit(200, 3), exit(100, 2))
				clk.Advance(2 * time.Second)
				apply(tb, connect(1, 1, 0)) // lets the sweep run
				if _, ok := tb.Lookup(event.MakeKey(200, start(3))); ok {
					t.Fatal("exited sh still in the table after its TTL")
				}
				ev := apply(tb, connect(300, 4, 1))
				if got := exes(ev.Ancestry); !slices.Equal(got, []string{"/bin/sh", "/usr/sbin/php-fpm", "/sbin/init"}) {
					t.Fatalf("ancestry after aging = %q, want sh, php-fpm, init", got)
				}
				if !ev.Ancestry[0].Exited || !ev.Ancestry[1].Exited || ev.Ancestry[2].Exited {
					t.Fatalf("exited flags wrong: %+v", ev.Ancestry)
				}
			},
		},
		{
			name: "an exited process reports when it exited",
			run: func(t *testing.T, tb *Table, clk *clock) {
				apply(tb, snapshot(1, 0, 1, "/sbin/init"), fork(1, 1, 2, 2), fork(1, 1, 3, 3))
				reported := time.Date(2026, 11, 25, 11, 59, 58, 123456789, time.UTC)
				ex := exit(2, 2)
				ex.Time = reported
				apply(tb, ex, exit(3, 3)) // no time: the table's clock
				if in, ok := tb.Lookup(event.MakeKey(2, start(2))); !ok || !in.Exited || !in.ExitTime.Equal(reported) {
					t.Fatalf("exit time = %v (found %v, exited %v), want the reported %v", in.ExitTime, ok, in.Exited, reported)
				}
				if in, _ := tb.Lookup(event.MakeKey(3, start(3))); !in.ExitTime.Equal(clk.Now()) {
					t.Fatalf("exit time of an exit event without a time = %v, want the clock's %v", in.ExitTime, clk.Now())
				}
				if in, _ := tb.Lookup(event.MakeKey(1, start(1))); in.Exited || !in.ExitTime.IsZero() {
					t.Fatalf("a live process has exit time %v", in.ExitTime)
				}
			},
		},
		{
			name: "exited entries age out after the TTL",
			opts: Options{ExitedTTL: 30 * time.Second},
			run: func(t *testing.T, tb *Table, clk *clock) {
				apply(tb, snapshot(1, 0, 1, "/sbin/init"), fork(1, 1, 2, 2), exit(2, 2))
				clk.Advance(29 * time.Second)
				apply(tb, connect(1, 1, 0))
				if in, ok := tb.Lookup(event.MakeKey(2, start(2))); !ok || !in.Exited {
					t.Fatalf("exited process gone before its TTL (found %v, exited %v)", ok, in.Exited)
				}
				if tb.Len() != 2 {
					t.Fatalf("Len = %d before TTL, want 2", tb.Len())
				}
				clk.Advance(2 * time.Second)
				if _, ok := tb.Lookup(event.MakeKey(2, start(2))); ok {
					t.Fatal("Lookup finds an exited process past its TTL")
				}
				apply(tb, connect(1, 1, 0))
				if tb.Len() != 1 {
					t.Fatalf("Len = %d after TTL, want 1 (only init)", tb.Len())
				}
			},
		},
		{
			name: "live entries beyond the cap are evicted least recently seen first and counted",
			opts: Options{MaxEntries: 10},
			run: func(t *testing.T, tb *Table, _ *clock) {
				for i := 1; i <= 10; i++ {
					apply(tb, snapshot(i, 0, i, fmt.Sprintf("/bin/p%d", i)))
				}
				apply(tb, connect(1, 1, 0)) // pid 1 was seen recently
				for i := 11; i <= 15; i++ {
					apply(tb, snapshot(i, 0, i, fmt.Sprintf("/bin/p%d", i)))
				}
				if tb.Len() != 10 || tb.Evictions() != 5 {
					t.Fatalf("Len %d Evictions %d, want 10 and 5", tb.Len(), tb.Evictions())
				}
				if _, ok := tb.Lookup(event.MakeKey(1, start(1))); !ok {
					t.Fatal("recently seen pid 1 was evicted")
				}
				for _, gone := range []int{2, 3, 4, 5, 6} {
					if _, ok := tb.Lookup(event.MakeKey(gone, start(gone))); ok {
						t.Fatalf("pid %d should have been evicted first", gone)
					}
				}
			},
		},
		{
			name: "exited entries make room before live ones",
			opts: Options{MaxEntries: 4},
			run: func(t *testing.T, tb *Table, _ *clock) {
				apply(tb, snapshot(1, 0, 1, "/sbin/init"), fork(1, 1, 2, 2), exit(2, 2),
					fork(1, 1, 3, 3), fork(1, 1, 4, 4), fork(1, 1, 5, 5))
				if tb.Evictions() != 0 {
					t.Fatalf("Evictions = %d, want 0: the exited entry should have gone first", tb.Evictions())
				}
				if _, ok := tb.Lookup(event.MakeKey(2, start(2))); ok {
					t.Fatal("exited entry kept while the table was full")
				}
			},
		},
		{
			name: "reported fields are kept and missing ones filled",
			run: func(t *testing.T, tb *Table, _ *clock) {
				apply(tb, snapshot(10, 1, 1, "/usr/bin/bash", "bash", "-l"))
				ev := &event.Event{Kind: event.KindOpen, Process: event.Process{PID: 10, StartTime: start(1),
					Comm: "renamed", Cgroup: "/moved"}}
				apply(tb, ev)
				if ev.Process.Comm != "renamed" || ev.Process.Cgroup != "/moved" || ev.Process.Exe != "/usr/bin/bash" ||
					ev.Process.PPID != 1 || ev.Process.Cwd != "/srv" {
					t.Fatalf("enriched process = %+v", ev.Process)
				}
				if in, _ := tb.Lookup(event.MakeKey(10, start(1))); in.Process.Cgroup != "/moved" {
					t.Fatalf("a cgroup move reported by an event was not remembered: %q", in.Process.Cgroup)
				}
			},
		},
		{
			name: "a process never seen and gone from /proc gets a minimal entry from the event",
			run: func(t *testing.T, tb *Table, _ *clock) {
				apply(tb, snapshot(1, 0, 1, "/sbin/init"))
				ev := apply(tb, &event.Event{Kind: event.KindConnect, Process: event.Process{
					PID: 4242, PPID: 1, StartTime: start(50), Comm: "nc"}})
				if ev.Parent == nil || ev.Parent.Exe != "/sbin/init" {
					t.Fatalf("parent = %+v, want init (from the event's ppid)", ev.Parent)
				}
				in, ok := tb.Lookup(event.MakeKey(4242, start(50)))
				if !ok || in.Process.Comm != "nc" || in.Exited {
					t.Fatalf("minimal entry = %+v (found %v)", in, ok)
				}
				reads := tb.procReads
				apply(tb, &event.Event{Kind: event.KindConnect, Process: event.Process{PID: 4242, StartTime: start(50)}})
				if tb.procReads != reads {
					t.Fatal("procfs was read again for a key already in the table")
				}
			},
		},
		{
			name: "an exec of an unknown process creates its entry under the reported parent",
			run: func(t *testing.T, tb *Table, _ *clock) {
				apply(tb, snapshot(1, 0, 1, "/sbin/init"))
				ev := execEv(321, 9, "/tmp/x", "x")
				ev.Process.PPID = 1
				apply(tb, ev)
				in, ok := tb.Lookup(event.MakeKey(321, start(9)))
				if !ok || in.Process.Exe != "/tmp/x" || in.Parent != event.MakeKey(1, start(1)) || ev.Parent == nil {
					t.Fatalf("entry %+v found %v, event parent %+v", in, ok, ev.Parent)
				}
			},
		},
		{
			name: "walk lists live processes parents first and tolerates Apply from the callback",
			run: func(t *testing.T, tb *Table, _ *clock) {
				apply(tb, snapshot(1, 0, 1, "/sbin/init"), fork(1, 1, 50, 3), fork(50, 3, 20, 4), fork(1, 1, 9, 5), exit(9, 5))
				var pids []int
				tb.Walk(func(p *event.Process) {
					pids = append(pids, p.PID)
					tb.Apply(&event.Event{Kind: event.KindSnapshot, Process: *p})
				})
				if !slices.Equal(pids, []int{1, 50, 20}) {
					t.Fatalf("Walk visited %v, want [1 50 20] (exited 9 left out)", pids)
				}
				if in, _ := tb.LookupPID(20); in.Parent != event.MakeKey(50, start(3)) {
					t.Fatalf("a snapshot re-applied from Walk lost the parent: %v", in.Parent)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb, clk := newTestTable(t, tc.opts)
			tc.run(t, tb, clk)
		})
	}
}

func TestTableNeverExceedsMaxEntries(t *testing.T) {
	t.Run("the table never exceeds MaxEntries", func(t *testing.T) {
		const max, n = 1000, 1_000_000
		tb, clk := newTestTable(t, Options{MaxEntries: max})
		apply(tb, snapshot(1, 0, 1, "/sbin/init"), fork(1, 1, 2, 2), execEv(2, 2, "/usr/sbin/cron", "cron"))
		args := []string{"sh", "-c", "run-parts /etc/cron.hourly"}
		var last *event.Event
		for i := range n {
			pid, st := 1000+i%30000, 100+i
			apply(tb, fork(2, 2, pid, st), execEv(pid, st, "/bin/sh", args...))
			last = connect(pid, st, 2)
			apply(tb, last, exit(pid, st))
			clk.Advance(time.Millisecond)
			if tb.Len() > max {
				t.Fatalf("after %d sequences Len = %d > MaxEntries %d", i+1, tb.Len(), max)
			}
		}
		if tb.Evictions() != 0 {
			t.Fatalf("Evictions = %d: live init and cron were evicted although exited entries could go", tb.Evictions())
		}
		if got := exes(last.Ancestry); !slices.Equal(got, []string{"/usr/sbin/cron", "/sbin/init"}) {
			t.Fatalf("last child's ancestry = %q, want cron, init", got)
		}
		if len(tb.byKey) != tb.Len() || len(tb.byPID) != 2 {
			t.Fatalf("index sizes: byKey %d, Len %d, live %d", len(tb.byKey), tb.Len(), len(tb.byPID))
		}
		t.Logf("Len %d after %d fork/exec/exit sequences (MaxEntries %d)", tb.Len(), n, max)
	})
}

// A storm of short-lived processes keeps at most MaxExited exited entries
// (oldest exits go first), so memory stays flat, while a child whose
// parent's entry went keeps its ancestry.
func TestExitedEntriesAreBoundedByMaxExitedAndChildrenKeepTheirAncestry(t *testing.T) {
	tb, _ := newTestTable(t, Options{MaxExited: 50})
	apply(tb, snapshot(1, 0, 1, "/sbin/init"), fork(1, 1, 2, 2), execEv(2, 2, "/usr/sbin/sshd", "sshd"))
	// A shell whose child outlives it.
	apply(tb, fork(2, 2, 3, 3), execEv(3, 3, "/bin/bash", "bash"), fork(3, 3, 4, 4), execEv(4, 4, "/usr/bin/sleep", "sleep", "600"), exit(3, 3))
	for i := range 10_000 {
		pid, st := 1000+i%20000, 100+i
		apply(tb, fork(2, 2, pid, st), execEv(pid, st, "/bin/true", "true"), exit(pid, st))
		if tb.nExited > 50 {
			t.Fatalf("after %d short-lived processes %d exited entries are kept, want at most MaxExited 50", i+1, tb.nExited)
		}
	}
	if tb.Len() > 50+4 {
		t.Fatalf("Len = %d after the storm, want the 4 live processes and at most 50 exited", tb.Len())
	}
	ev := apply(tb, connect(4, 4, 3))
	if got := exes(ev.Ancestry); !slices.Equal(got, []string{"/bin/bash", "/usr/sbin/sshd", "/sbin/init"}) {
		t.Fatalf("the orphaned child's ancestry = %q, want bash, sshd, init", got)
	}
}

// writeProc writes a fake procfs entry.
func writeProc(t *testing.T, root string, pid, ppid int, comm string, startTicks uint64, files map[string]string) {
	t.Helper()
	dir := filepath.Join(root, fmt.Sprint(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stat := fmt.Sprintf("%d (%s) S %d %d %d 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 %d 1000 100 "+
		"18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n", pid, comm, ppid, pid, pid, startTicks)
	files["stat"] = stat
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestProcfs(t *testing.T) {
	const hybrid = "12:memory:/kubepods/burstable/pod1/c0ffee\n5:cpu,cpuacct:/kubepods/burstable/pod1/c0ffee\n1:name=systemd:/init.scope\n0::/unified.scope\n"
	tests := []struct {
		name       string
		controller string
		comm       string
		wantCgroup string
	}{
		{"a v1 controller selects its line on a hybrid host", "memory", "php-fpm", "/kubepods/burstable/pod1/c0ffee"},
		{"a controller listed with others is found", "cpuacct", "php-fpm", "/kubepods/burstable/pod1/c0ffee"},
		{"no controller selects the unified line", "", "php-fpm", "/unified.scope"},
		{"a comm with spaces and parentheses is parsed", "", "a) (b c", "/unified.scope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeProc(t, root, 1, 0, "init", 1, map[string]string{"cmdline": "/sbin/init\x00"})
			writeProc(t, root, 77, 1, tc.comm, 12345, map[string]string{
				"cmdline": "php-fpm: pool www\x00",
				"status":  "Name:\tphp-fpm\nUid:\t33\t34\t33\t33\nGid:\t35\t35\t35\t35\n",
				"cgroup":  hybrid,
			})
			if err := os.Symlink("/usr/sbin/php-fpm8.2 (deleted)", filepath.Join(root, "77", "exe")); err != nil {
				t.Fatal(err)
			}
			tb := New(Options{ProcRoot: root, CgroupController: tc.controller})
			n, err := tb.SeedFromProc()
			if err != nil || n != 2 {
				t.Fatalf("SeedFromProc = %d, %v; want 2", n, err)
			}
			in, ok := tb.Lookup(event.MakeKey(77, 12345*event.TickNS))
			if !ok {
				t.Fatal("seeded process not found by the key the kernel would produce")
			}
			p := in.Process
			if p.Comm != tc.comm || p.PPID != 1 || p.UID != 33 || p.EUID != 34 || p.GID != 35 ||
				p.Exe != "/usr/sbin/php-fpm8.2" || !p.ExeDeleted || !slices.Equal(p.Args, []string{"php-fpm: pool www"}) ||
				p.Cgroup != tc.wantCgroup {
				t.Fatalf("seeded process = %+v", p)
			}
			if in.Parent != event.MakeKey(1, event.TickNS) {
				t.Fatalf("parent key = %v, want 1@1", in.Parent)
			}
		})
	}

	t.Run("an unknown process is read from /proc once", func(t *testing.T) {
		root := t.TempDir()
		writeProc(t, root, 1, 0, "init", 1, map[string]string{"cmdline": "/sbin/init\x00"})
		writeProc(t, root, 900, 1, "miner", 777, map[string]string{"cmdline": "./xmrig\x00-o\x00pool\x00"})
		tb := New(Options{ProcRoot: root})
		ev := apply(tb, &event.Event{Kind: event.KindConnect, Process: event.Process{PID: 900, StartTime: 777 * event.TickNS}})
		if !slices.Equal(ev.Process.Args, []string{"./xmrig", "-o", "pool"}) || ev.Process.Comm != "miner" {
			t.Fatalf("event of an unknown process not enriched from /proc: %+v", ev.Process)
		}
		if ev.Parent == nil || ev.Parent.PID != 1 || !slices.Equal(ev.Parent.Args, []string{"/sbin/init"}) {
			t.Fatalf("parent of an unknown process not loaded from /proc: %+v", ev.Parent)
		}
		if err := os.RemoveAll(filepath.Join(root, "900")); err != nil {
			t.Fatal(err)
		}
		reads := tb.procReads
		ev = apply(tb, &event.Event{Kind: event.KindConnect, Process: event.Process{PID: 900, StartTime: 777 * event.TickNS}})
		if tb.procReads != reads || ev.Process.Comm != "miner" {
			t.Fatalf("second event re-read procfs (%d reads, was %d) or lost the entry: %+v", tb.procReads, reads, ev.Process)
		}
	})

	t.Run("a missing proc root is an error that names it", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "nope")
		_, err := New(Options{ProcRoot: root}).SeedFromProc()
		if err == nil || !strings.Contains(err.Error(), root) {
			t.Fatalf("err = %v, want one naming %s", err, root)
		}
	})
}

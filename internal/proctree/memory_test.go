package proctree

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// hostGen produces the events a sensor sees on a busy Kubernetes node: a
// host part seeded from /proc (snapshots), then pods whose processes are
// created by fork and exec events, with many processes sharing one
// executable, command line, cwd and cgroup, as on real hosts. Every string
// in every event is a fresh allocation, the way the eBPF decoder and the
// procfs reader produce them, so the table's own sharing (or its lack)
// shows in the heap.
type hostGen struct {
	rng     *rand.Rand
	tb      *Table
	nextPID int
	tick    int
	procs   []genProc // every live process, for later events
}

type genProc struct{ pid, tick, ppid int32 }

// fresh returns a copy of s in its own allocation.
func fresh(s string) string { return strings.Clone(s) }

func freshArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = fresh(a)
	}
	return out
}

func (g *hostGen) hex(n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = digits[g.rng.IntN(16)]
	}
	return string(b)
}

func (g *hostGen) uuid() string {
	h := g.hex(32)
	return h[:8] + "_" + h[8:12] + "_" + h[12:16] + "_" + h[16:20] + "_" + h[20:]
}

// snapshot seeds one process the way SeedFromProc reads it.
func (g *hostGen) snapshot(ppid int, exe string, args []string, cwd, cgroup string, uid uint32) int {
	g.nextPID++
	g.tick++
	pid := g.nextPID
	g.tb.Apply(&event.Event{Kind: event.KindSnapshot, Process: event.Process{
		PID: pid, PPID: ppid, StartTime: start(g.tick), UID: uid, GID: uid, EUID: uid,
		Comm: fresh(comm(exe)), Exe: fresh(exe), Args: freshArgs(args), Cwd: fresh(cwd), Cgroup: fresh(cgroup),
		CgroupID: uint64(len(cgroup)), MntNS: 4026531841, PidNS: 4026531836, NetNS: 4026531840,
		ExeInode: uint64(len(exe)) * 977, ExeDev: 2049}})
	g.procs = append(g.procs, genProc{int32(pid), int32(g.tick), int32(ppid)})
	return pid
}

// spawn forks a child of parent and execs it, the way the eBPF source
// reports a new process.
func (g *hostGen) spawn(parent int, exe string, args []string, cwd, cgroup string, uid uint32) int {
	g.nextPID++
	g.tick++
	pid := g.nextPID
	pp := g.procs[g.index(parent)]
	g.tb.Apply(&event.Event{Kind: event.KindFork,
		Process: event.Process{PID: pid, PPID: parent, StartTime: start(g.tick), Comm: fresh(comm(exe))},
		Parent:  &event.ProcessRef{PID: parent, StartTime: start(int(pp.tick))},
		Fork:    &event.Fork{ChildPID: pid}})
	g.tb.Apply(&event.Event{Kind: event.KindExec, Process: event.Process{
		PID: pid, PPID: parent, StartTime: start(g.tick), UID: uid, GID: uid, EUID: uid,
		Comm: fresh(comm(exe)), Exe: fresh(exe), Args: freshArgs(args), Cwd: fresh(cwd), Cgroup: fresh(cgroup),
		CgroupID: uint64(len(cgroup)), MntNS: 4026532000 + uint32(len(cgroup)), PidNS: 4026532001, NetNS: 4026532002,
		ExeInode: uint64(len(exe)) * 977, ExeDev: 2049}})
	g.procs = append(g.procs, genProc{int32(pid), int32(g.tick), int32(parent)})
	return pid
}

// index finds a process by pid (pids are handed out in order).
func (g *hostGen) index(pid int) int { return pid - 1 }

func comm(exe string) string {
	c := exe[strings.LastIndexByte(exe, '/')+1:]
	if len(c) > 15 {
		c = c[:15]
	}
	return c
}

// podKinds are the workloads of the generated pods: a main process and
// its workers (all with one command line), some of which run commands.
var podKinds = []struct {
	exe, cwd        string
	main, worker    []string
	uid             uint32
	minW, maxW      int
	childExe, shArg string
}{
	{"/usr/sbin/nginx", "/", []string{"nginx: master process /usr/sbin/nginx -g daemon off;"},
		[]string{"nginx: worker process"}, 101, 2, 64, "", ""},
	{"/usr/local/sbin/php-fpm", "/var/www/html", []string{"php-fpm: master process (/usr/local/etc/php-fpm.conf)"},
		[]string{"php-fpm: pool www"}, 33, 20, 200, "/usr/bin/curl", "curl -fsS http://127.0.0.1:9000/status"},
	{"/usr/local/bin/python3.12", "/app", []string{"/usr/local/bin/python3.12", "/usr/local/bin/gunicorn", "app.wsgi:application", "--workers", "32", "--bind", "0.0.0.0:8000", "--timeout", "120"},
		[]string{"/usr/local/bin/python3.12", "/usr/local/bin/gunicorn", "app.wsgi:application", "--workers", "32", "--bind", "0.0.0.0:8000", "--timeout", "120"}, 1000, 4, 64, "/usr/bin/git", "git -C /app/repo fetch --quiet origin"},
	{"/usr/local/bin/node", "/usr/src/app", []string{"node", "--max-old-space-size=4096", "/usr/src/app/dist/server.js"},
		[]string{"/usr/local/bin/node", "/usr/src/app/node_modules/.bin/worker", "--queue", "default", "--concurrency=4"}, 1000, 1, 40, "", ""},
	{"/opt/java/openjdk/bin/java", "/opt/app", []string{"java", "-XX:+UseContainerSupport", "-XX:MaxRAMPercentage=75.0", "-Dspring.profiles.active=prod", "-jar", "/opt/app/app.jar"},
		[]string{"/bin/sh", "/opt/app/bin/healthcheck.sh", "--port", "8080"}, 1001, 1, 8, "", ""},
}

// build creates a host with about n live processes.
func (g *hostGen) build(n int) {
	initPID := g.snapshot(0, "/usr/lib/systemd/systemd", []string{"/sbin/init", "splash"}, "/", "/init.scope", 0)
	daemons := []struct {
		exe  string
		args []string
	}{
		{"/usr/lib/systemd/systemd-journald", []string{"/usr/lib/systemd/systemd-journald"}},
		{"/usr/lib/systemd/systemd-udevd", []string{"/usr/lib/systemd/systemd-udevd"}},
		{"/usr/sbin/cron", []string{"/usr/sbin/cron", "-f", "-P"}},
		{"/usr/sbin/rsyslogd", []string{"/usr/sbin/rsyslogd", "-n", "-iNONE"}},
		{"/usr/bin/dbus-daemon", []string{"@dbus-daemon", "--system", "--address=systemd:", "--nofork", "--nopidfile", "--systemd-activation", "--syslog-only"}},
		{"/usr/local/bin/kubelet", []string{"/usr/local/bin/kubelet", "--config=/var/lib/kubelet/config.yaml", "--kubeconfig=/etc/kubernetes/kubelet.conf", "--container-runtime-endpoint=unix:///run/containerd/containerd.sock", "--node-ip=10.0.0.12"}},
		{"/usr/local/bin/vigil", []string{"/usr/local/bin/vigil", "sensor", "--hub-url", "https://hub.example:8443", "--cluster-id", "prod"}},
	}
	for _, d := range daemons {
		g.snapshot(initPID, d.exe, d.args, "/", "/system.slice/"+comm(d.exe)+".service", 0)
	}
	sshd := g.snapshot(initPID, "/usr/sbin/sshd", []string{"sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups"}, "/", "/system.slice/ssh.service", 0)
	for i := range 3 {
		sess := g.snapshot(sshd, "/usr/sbin/sshd", []string{"sshd: admin [priv]"}, "/", fmt.Sprintf("/user.slice/user-1000.slice/session-%d.scope", i), 0)
		bash := g.snapshot(sess, "/usr/bin/bash", []string{"-bash"}, "/home/admin", fmt.Sprintf("/user.slice/user-1000.slice/session-%d.scope", i), 1000)
		g.snapshot(bash, "/usr/bin/less", []string{"less", "/var/log/syslog"}, "/home/admin", fmt.Sprintf("/user.slice/user-1000.slice/session-%d.scope", i), 1000)
	}
	containerd := g.snapshot(initPID, "/usr/bin/containerd", []string{"/usr/bin/containerd"}, "/", "/system.slice/containerd.service", 0)
	for len(g.procs) < n {
		pod := g.uuid()
		qos := []string{"burstable", "besteffort"}[g.rng.IntN(2)]
		podSlice := "/kubepods.slice/kubepods-" + qos + ".slice/kubepods-" + qos + "-pod" + pod + ".slice/"
		sandbox := g.hex(64)
		shim := g.spawn(containerd, "/usr/bin/containerd-shim-runc-v2", []string{"/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", sandbox, "-address", "/run/containerd/containerd.sock"}, "/run/containerd/io.containerd.runtime.v2.task/k8s.io/"+sandbox, "/system.slice/containerd.service", 0)
		g.spawn(shim, "/pause", []string{"/pause"}, "/", podSlice+"cri-containerd-"+sandbox+".scope", 65535)
		k := podKinds[g.rng.IntN(len(podKinds))]
		cg := podSlice + "cri-containerd-" + g.hex(64) + ".scope"
		main := g.spawn(shim, k.exe, k.main, k.cwd, cg, k.uid)
		workers := k.minW + g.rng.IntN(k.maxW-k.minW+1)
		for w := 0; w < workers && len(g.procs) < n; w++ {
			worker := g.spawn(main, k.exe, k.worker, k.cwd, cg, k.uid)
			if k.childExe != "" && g.rng.IntN(20) == 0 && len(g.procs)+2 <= n {
				sh := g.spawn(worker, "/bin/sh", []string{"sh", "-c", k.shArg}, k.cwd, cg, k.uid)
				args := strings.Fields(k.shArg)
				g.spawn(sh, k.childExe, args, k.cwd, cg, k.uid)
			}
		}
	}
}

// realisticTable returns a table holding the processes of a busy node
// (about n live ones), after one non-exec event per process so every
// cache the table keeps for ancestry is built.
func realisticTable(tb testing.TB, n int) *Table {
	g := &hostGen{rng: rand.New(rand.NewPCG(1, 2))}
	g.tb, _ = newTestTable(tb, Options{})
	g.build(n)
	for _, p := range g.procs {
		g.tb.Apply(connect(int(p.pid), int(p.tick), int(p.ppid)))
	}
	return g.tb
}

// heapPerEntry returns the heap the table built by mk retains, per entry.
func heapPerEntry(t testing.TB, mk func() *Table) (perEntry float64, entries int) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tb := mk()
	runtime.GC()
	runtime.ReadMemStats(&after)
	entries = tb.Len()
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	runtime.KeepAlive(tb)
	return float64(heap) / float64(entries), entries
}

// BenchmarkTableMemory reports the heap bytes per live process of a table
// holding a busy node's 10,000 processes (B/entry).
func BenchmarkTableMemory(b *testing.B) {
	var per float64
	for b.Loop() {
		per, _ = heapPerEntry(b, func() *Table { return realisticTable(b, 10_000) })
	}
	b.ReportMetric(per, "B/entry")
}

// TestHeapPerLiveProcess bounds the heap a busy node's 10,000 live
// processes cost (issue 8, P6: the sensor's RSS must stay ≤ 48 MiB). The
// table measured about 250 bytes per entry when this test was written (619
// before what processes share was stored once); the bound is twice that,
// so only a real regression fails it.
func TestHeapPerLiveProcess(t *testing.T) {
	const n, limit = 10_000, 500
	per, entries := heapPerEntry(t, func() *Table { return realisticTable(t, n) })
	if entries < n {
		t.Fatalf("the generated node has %d entries, want at least %d", entries, n)
	}
	t.Logf("%d entries: %.0f heap bytes per entry", entries, per)
	if per > limit {
		t.Fatalf("%.0f heap bytes per live process, want <= %d: something is stored per process that could be shared", per, limit)
	}
}

// countImages returns how many images the table's intern map holds.
func countImages(tb *Table) int {
	n := 0
	for _, m := range tb.images.m {
		for ; m != nil; m = m.next {
			n++
		}
	}
	return n
}

// A storm of short-lived processes, each with its own command line and
// working directory, must not leave interned strings or images behind:
// memory stays flat however many processes ran.
func TestAStormOfDistinctCommandLinesLeavesNothingBehind(t *testing.T) {
	tb, clk := newTestTable(t, Options{MaxExited: 100})
	apply(tb, snapshot(1, 0, 1, "/sbin/init"), fork(1, 1, 2, 2), execEv(2, 2, "/usr/sbin/cron", "cron", "-f"))
	storm := func(from, n int) {
		for i := from; i < from+n; i++ {
			pid, st := 1000+i%30000, 100+i
			ex := execEv(pid, st, "/bin/sh", "sh", "-c", fmt.Sprintf("/usr/local/bin/job --id %d --output /var/spool/job-%d.out", i, i))
			ex.Process.Cwd = fmt.Sprintf("/var/spool/jobs/%d", i)
			apply(tb, fork(2, 2, pid, st), ex, connect(pid, st, 2), exit(pid, st))
			clk.Advance(time.Millisecond)
		}
	}
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	storm(0, 10_000)
	after1 := heap()
	storm(10_000, 50_000)
	after2 := heap()
	for _, c := range []struct {
		what string
		n    int
	}{{"images", countImages(tb)}, {"comms", len(tb.comms.m)}, {"credentials", len(tb.creds.m)}, {"places", len(tb.places.m)}} {
		if c.n > tb.Len() {
			t.Fatalf("%d interned %s for %d entries: those of removed processes are kept", c.n, c.what, tb.Len())
		}
	}
	grown := int64(after2) - int64(after1)
	t.Logf("heap after 10,000 short-lived processes %d bytes, after 50,000 more %d", after1, after2)
	if grown > 512<<10 {
		t.Fatalf("the heap grew by %d bytes over 50,000 more short-lived processes, want it flat", grown)
	}
	ev := apply(tb, connect(2, 2, 1))
	if ev.Process.Exe != "/usr/sbin/cron" || !slices.Equal(ev.Process.Args, []string{"cron", "-f"}) {
		t.Fatalf("the long-lived cron lost its image in the storm: %q %q", ev.Process.Exe, ev.Process.Args)
	}
	runtime.KeepAlive(tb)
}

func TestProcessesRunningOneCommandLineShareOneCopyOfIt(t *testing.T) {
	tb, _ := newTestTable(t, Options{})
	apply(tb, snapshot(1, 0, 1, "/usr/sbin/php-fpm", "php-fpm: master process"))
	var args []*string
	for pid := 10; pid < 20; pid++ {
		// Every event carries its own copy, as decoded from the kernel.
		apply(tb, fork(1, 1, pid, pid), execEv(pid, pid, fresh("/usr/sbin/php-fpm"), fresh("php-fpm: pool www")))
		ev := apply(tb, connect(pid, pid, 1))
		if !slices.Equal(ev.Process.Args, []string{"php-fpm: pool www"}) || ev.Process.Exe != "/usr/sbin/php-fpm" {
			t.Fatalf("worker %d: exe %q args %q", pid, ev.Process.Exe, ev.Process.Args)
		}
		args = append(args, &ev.Process.Args[0])
	}
	for _, a := range args[1:] {
		if a != args[0] {
			t.Fatal("workers with one command line hold separate copies of it")
		}
	}
	if got := countImages(tb); got != 2 {
		t.Fatalf("%d interned images, want 2 (master and workers)", got)
	}
}

func TestEventsWithPIDsLinuxCannotHaveAreLeftAlone(t *testing.T) {
	tb, _ := newTestTable(t, Options{})
	apply(tb, snapshot(1, 0, 1, "/sbin/init"))
	for _, pid := range []int{-1, 0, maxPID + 1, 1 << 40} {
		ev := apply(tb, &event.Event{Kind: event.KindExec, Process: event.Process{PID: pid, PPID: 1, StartTime: start(5), Exe: "/x"}})
		if ev.Parent != nil || ev.Ancestry != nil {
			t.Fatalf("pid %d: event enriched with parent %+v", pid, ev.Parent)
		}
		if _, ok := tb.LookupPID(pid); ok {
			t.Fatalf("pid %d: found in the table", pid)
		}
		if _, ok := tb.Lookup(event.Key{PID: pid, Start: 5}); ok {
			t.Fatalf("pid %d: found by key", pid)
		}
	}
	if tb.Len() != 1 {
		t.Fatalf("Len = %d, want 1", tb.Len())
	}
	ev := apply(tb, &event.Event{Kind: event.KindExec, Process: event.Process{PID: maxPID, PPID: 1, StartTime: start(5), Exe: "/x"}})
	if ev.Parent == nil || ev.Parent.PID != 1 {
		t.Fatalf("the largest Linux pid was not tracked: parent %+v", ev.Parent)
	}
}

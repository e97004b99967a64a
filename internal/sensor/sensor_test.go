package sensor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	ebpfsrc "github.com/vigil-sec/vigil/internal/source/ebpf"
	"github.com/vigil-sec/vigil/internal/testenv"
	"github.com/vigil-sec/vigil/internal/testutil/loopback"
	"github.com/vigil-sec/vigil/internal/testutil/runc"
)

// collector is a Sink that keeps every event for assertions.
type collector struct {
	mu     sync.Mutex
	events []*event.Event
	notify chan struct{}
}

func newCollector() *collector { return &collector{notify: make(chan struct{}, 1)} }

func (c *collector) Write(ev *event.Event) error {
	cp := *ev
	c.mu.Lock()
	c.events = append(c.events, &cp)
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
	return nil
}

// waitFor returns the first event matching pred, waiting up to d.
func (c *collector) waitFor(t *testing.T, d time.Duration, what string, pred func(*event.Event) bool) *event.Event {
	t.Helper()
	deadline := time.After(d)
	seen := 0
	for {
		c.mu.Lock()
		for ; seen < len(c.events); seen++ {
			if pred(c.events[seen]) {
				ev := c.events[seen]
				c.mu.Unlock()
				return ev
			}
		}
		c.mu.Unlock()
		select {
		case <-c.notify:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no %s within %s (%d events seen)", what, d, seen)
			return nil
		}
	}
}

func (c *collector) all(pred func(*event.Event) bool) []*event.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*event.Event
	for _, ev := range c.events {
		if pred(ev) {
			out = append(out, ev)
		}
	}
	return out
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startSensor runs a sensor for the rest of the test and returns what it
// reports. It waits for the startup health event, so everything the test
// does afterwards is observed.
func startSensor(t *testing.T, cfg Config) (*Sensor, *collector) {
	t.Helper()
	testenv.RequireRoot(t)
	col := newCollector()
	cfg.Sinks = append(cfg.Sinks, col)
	cfg.Logger = testLogger(t)
	cfg.SkipSnapshot = true
	if cfg.EBPF.RingBytes == 0 {
		cfg.EBPF = ebpfsrc.Config{RingBytes: 4 << 20, ArgvMax: 4096, FileEvents: true, NetworkEvents: true,
			SensitivePrefixes: ebpfsrc.DefaultSensitivePrefixes}
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("start sensor: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sensor run: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("sensor close: %v", err)
		}
	})
	col.waitFor(t, 20*time.Second, "startup health event", func(ev *event.Event) bool {
		return ev.Kind == event.KindHealth
	})
	return s, col
}

// dumpEvents logs matching events, to explain a failed expectation.
func dumpEvents(t *testing.T, col *collector, pred func(*event.Event) bool) {
	n := 0
	for _, ev := range col.all(pred) {
		if n++; n > 60 {
			break
		}
		b, _ := json.Marshal(ev)
		t.Logf("event: %s", b)
	}
	t.Logf("%d matching events", len(col.all(pred)))
}

func inContainer(id string) func(*event.Event) bool {
	return func(ev *event.Event) bool { return ev.Container != nil && ev.Container.ID == id }
}

func argv0(ev *event.Event) string {
	if len(ev.Process.Args) == 0 {
		return ""
	}
	return ev.Process.Args[0]
}

// The headline path: a real container's processes arrive with the
// container's id, full argv, their genealogy, network destinations and
// exit codes.
func TestContainerEventsCarryContainerArgvAncestryNetworkAndExit(t *testing.T) {
	_, col := startSensor(t, Config{Mode: ModeEBPF})

	port := loopback.Port(loopback.Serve(t, "127.0.0.1", true))

	img := runc.NewImage(t)
	// /usr/bin/id by path: busybox sh runs applets named bare (id) in a forked
	// child without exec; a path makes it a real execve.
	script := fmt.Sprintf("/usr/bin/id; cat /etc/passwd; echo hello | nc 127.0.0.1 %d; exit 3", port)
	c := img.NewContainer(t, runc.Options{Args: []string{"sh", "-c", script}, HostNetwork: true, Timeout: 30 * time.Second})
	res, err := c.Run(context.Background())
	if err != nil {
		t.Fatalf("container: %v (stderr %q)", err, res.Stderr)
	}
	if res.ExitCode != 3 {
		t.Fatalf("container exit code %d, want 3 (stdout %q stderr %q)", res.ExitCode, res.Stdout, res.Stderr)
	}
	mine := inContainer(c.ID)
	const wait = 10 * time.Second
	t.Cleanup(func() {
		if t.Failed() {
			dumpEvents(t, col, func(ev *event.Event) bool {
				return strings.Contains(ev.Process.Cgroup, c.ID) || mine(ev)
			})
		}
	})

	id := col.waitFor(t, wait, "exec of id in the container", func(ev *event.Event) bool {
		return mine(ev) && ev.Kind == event.KindExec && argv0(ev) == "/usr/bin/id"
	})
	t.Run("exec carries the container's id and runtime", func(t *testing.T) {
		if id.Container.Runtime != "runc" || id.Container.Host {
			t.Fatalf("container = %+v, want runtime runc, not host", id.Container)
		}
		if id.Process.Cgroup != c.CgroupPath {
			t.Fatalf("cgroup = %q, want %q", id.Process.Cgroup, c.CgroupPath)
		}
	})
	t.Run("exec carries the executable path resolved through the applet symlink", func(t *testing.T) {
		if id.Process.Exe != "/bin/busybox" {
			t.Fatalf("exe = %q, want /bin/busybox", id.Process.Exe)
		}
		if id.Process.PidNS == 0 || id.Process.MntNS == 0 || id.Process.ExeInode == 0 {
			t.Fatalf("namespaces/inode missing: %+v", id.Process)
		}
	})
	t.Run("ancestry runs from the container shell up through runc init to runc run", func(t *testing.T) {
		if id.Parent == nil || len(id.Parent.Args) == 0 || id.Parent.Args[0] != "sh" {
			t.Fatalf("parent = %+v, want the container's sh", id.Parent)
		}
		if got := strings.Join(id.Ancestry[0].Args, " "); got != "sh -c "+script {
			t.Fatalf("parent argv = %q, want the full script", got)
		}
		if len(id.Ancestry) < 5 {
			t.Fatalf("ancestry has %d levels, want at least 5: %+v", len(id.Ancestry), id.Ancestry)
		}
		// sh was exec'd by runc's init process, which runc run started.
		var sawInit, sawRun bool
		for _, a := range id.Ancestry[1:] {
			args := strings.Join(a.Args, " ")
			if strings.HasSuffix(args, "runc init") {
				sawInit = true
				// runc init runs from a detached read-only bind mount of the
				// runc binary; it must still be named by its real path so
				// rules can recognise the runtime.
				if !strings.HasSuffix(a.Exe, "/runc") {
					t.Errorf("runc init's exe = %q, want the runc binary's path", a.Exe)
				}
			}
			sawRun = sawRun || (sawInit && strings.Contains(args, " run ") && strings.Contains(args, c.ID))
		}
		if !sawInit || !sawRun {
			t.Fatalf("ancestry lacks runc init then runc run: %+v", id.Ancestry)
		}
	})
	t.Run("full argv of a child command", func(t *testing.T) {
		col.waitFor(t, wait, "cat /etc/passwd", func(ev *event.Event) bool {
			return mine(ev) && ev.Kind == event.KindExec && strings.Join(ev.Process.Args, " ") == "cat /etc/passwd"
		})
	})
	t.Run("the connect to the loopback listener is attributed to nc in the container", func(t *testing.T) {
		ev := col.waitFor(t, wait, "connect from nc", func(ev *event.Event) bool {
			return mine(ev) && ev.Kind == event.KindConnect && ev.Network != nil && int(ev.Network.DstPort) == port
		})
		if ev.Network.DstIP != "127.0.0.1" || !ev.Network.ResultOK || ev.Network.Protocol != "tcp" {
			t.Fatalf("network = %+v, want a successful tcp connect to 127.0.0.1", ev.Network)
		}
		if argv0(ev) != "nc" {
			t.Fatalf("connect attributed to %q (%+v), want nc", argv0(ev), ev.Process)
		}
	})
	t.Run("exit codes of the shell and of id", func(t *testing.T) {
		sh := col.waitFor(t, wait, "exit of the container shell", func(ev *event.Event) bool {
			return mine(ev) && ev.Kind == event.KindExit && ev.Process.PID == id.Parent.PID
		})
		if sh.Exit == nil || sh.Exit.Code != 3 {
			t.Fatalf("shell exit = %+v, want code 3", sh.Exit)
		}
		idExit := col.waitFor(t, wait, "exit of id", func(ev *event.Event) bool {
			return mine(ev) && ev.Kind == event.KindExit && ev.Process.PID == id.Process.PID
		})
		if idExit.Exit == nil || idExit.Exit.Code != 0 || idExit.Exit.Signal != 0 {
			t.Fatalf("id exit = %+v, want code 0", idExit.Exit)
		}
	})
}

// Drift: a binary written into the container's writable layer is flagged,
// the image's own binaries are not.
func TestBinaryInTheUpperLayerIsFlaggedAndImageBinaryIsNot(t *testing.T) {
	_, col := startSensor(t, Config{Mode: ModeEBPF})
	img := runc.NewImage(t)
	c := img.NewContainer(t, runc.Options{
		Args:    []string{"sh", "-c", "/opt/dropped true; /bin/true image-binary"},
		Overlay: true, Timeout: 30 * time.Second,
	})
	if err := os.MkdirAll(filepath.Join(c.UpperDir, "opt"), 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.UpperDir, "opt", "dropped"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Run(context.Background()); err != nil || res.ExitCode != 0 {
		t.Fatalf("container: %v exit %d stderr %q", err, res.ExitCode, res.Stderr)
	}
	mine := inContainer(c.ID)
	dropped := col.waitFor(t, 10*time.Second, "exec of the dropped binary", func(ev *event.Event) bool {
		return mine(ev) && ev.Kind == event.KindExec && ev.Process.Exe == "/opt/dropped"
	})
	if !dropped.Process.ExeUpperLayer {
		t.Fatalf("binary in the upper layer not flagged: %+v", dropped.Process)
	}
	image := col.waitFor(t, 10*time.Second, "exec of the image binary", func(ev *event.Event) bool {
		return mine(ev) && ev.Kind == event.KindExec && strings.Join(ev.Process.Args, " ") == "/bin/true image-binary"
	})
	if image.Process.ExeUpperLayer {
		t.Fatalf("image binary flagged as upper layer: %+v", image.Process)
	}
}

func TestHostProcessesCarryNoContainerID(t *testing.T) {
	_, col := startSensor(t, Config{Mode: ModeEBPF})
	marker := fmt.Sprintf("host-marker-%d", time.Now().UnixNano())
	if err := exec.Command("/bin/sh", "-c", "true "+marker).Run(); err != nil {
		t.Fatal(err)
	}
	ev := col.waitFor(t, 10*time.Second, "exec of the host command", func(ev *event.Event) bool {
		return ev.Kind == event.KindExec && strings.Contains(strings.Join(ev.Process.Args, " "), marker)
	})
	if ev.Container == nil || !ev.Container.Host || ev.Container.ID != "" {
		t.Fatalf("host process attributed to %+v, want host with no id", ev.Container)
	}
}

// Degraded mode: without eBPF the sensor still reports exec and exit, and
// says what it cannot see.
func TestProcFallbackReportsExecAndExitAndWarns(t *testing.T) {
	s, col := startSensor(t, Config{Mode: ModeProc})
	if s.Mode() != ModeProc {
		t.Fatalf("mode = %s", s.Mode())
	}
	h := col.waitFor(t, time.Second, "degraded health event", func(ev *event.Event) bool {
		return ev.Kind == event.KindHealth && ev.Health.Status == "degraded"
	})
	missing := fmt.Sprint(h.Health.Missing)
	for _, k := range []event.Kind{event.KindConnect, event.KindOpen, event.KindDNS} {
		if !strings.Contains(missing, string(k)) {
			t.Errorf("degraded health event does not list %s as missing: %v", k, h.Health.Missing)
		}
	}
	marker := fmt.Sprintf("proc-marker-%d", time.Now().UnixNano())
	if err := exec.Command("/bin/sh", "-c", "sleep 0.2; exit 4", marker).Run(); err == nil {
		t.Fatal("want exit status 4")
	}
	ex := col.waitFor(t, 10*time.Second, "exec in proc mode", func(ev *event.Event) bool {
		return ev.Kind == event.KindExec && strings.Contains(strings.Join(ev.Process.Args, " "), marker)
	})
	exit := col.waitFor(t, 10*time.Second, "exit in proc mode", func(ev *event.Event) bool {
		return ev.Kind == event.KindExit && ev.Process.PID == ex.Process.PID
	})
	if exit.Exit.Code != 4 {
		t.Fatalf("exit = %+v, want code 4", exit.Exit)
	}
}

// auto mode must fall back, loudly, when eBPF cannot load.
func TestAutoModeFallsBackToProcWhenEBPFCannotLoad(t *testing.T) {
	cfg := Config{Mode: ModeAuto}
	// A ring size that is not a power of two makes the eBPF source refuse
	// to load.
	cfg.EBPF = ebpfsrc.Config{RingBytes: 12345, ArgvMax: 4096}
	s, col := startSensor(t, cfg)
	if s.Mode() != ModeProc {
		t.Fatalf("mode = %s, want the proc fallback", s.Mode())
	}
	col.waitFor(t, time.Second, "degraded health event", func(ev *event.Event) bool {
		return ev.Kind == event.KindHealth && ev.Health.Status == "degraded"
	})
}

// Operators watch /metrics and /healthz: the names below are documented
// and dashboards depend on them.
func TestMetricsAndHealthAreServed(t *testing.T) {
	s, col := startSensor(t, Config{Mode: ModeEBPF, MetricsAddr: "127.0.0.1:0"})
	if err := exec.Command("/bin/true").Run(); err != nil {
		t.Fatal(err)
	}
	col.waitFor(t, 10*time.Second, "an exec event", func(ev *event.Event) bool { return ev.Kind == event.KindExec })
	base := "http://" + s.MetricsAddr()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != http.StatusOK || !strings.Contains(body, `"ok":true`) {
		t.Fatalf("/healthz = %d %s", code, body)
	}
	_, body := get("/metrics")
	for _, want := range []string{
		`vigil_sensor_events_total{kind="exec"}`,
		"vigil_sensor_drops_total 0",
		"vigil_sensor_kernel_records_total",
		"vigil_sensor_process_table_size",
		"vigil_sensor_ring_pending_bytes",
		`vigil_sensor_source_info{mode="ebpf"} 1`,
		"vigil_sensor_degraded 0",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// Drops are never silent: with a tiny ring and a stalled consumer the
// sensor loses events, counts every one of them exactly, and reports them
// as health events.
func TestDropsAreCountedExactlyAndReportedAsHealthEvents(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	stall := SinkFunc(func(ev *event.Event) error {
		if ev.Kind == event.KindExec && strings.Contains(strings.Join(ev.Process.Args, " "), "vigil-stall") {
			<-release // the reader stops here while the kernel keeps producing
		}
		return nil
	})
	cfg := Config{Mode: ModeEBPF, HealthInterval: 100 * time.Millisecond, Sinks: []Sink{stall}}
	cfg.EBPF = ebpfsrc.Config{RingBytes: 4096, ArgvMax: 4096}
	s, col := startSensor(t, cfg)
	t.Cleanup(func() { once.Do(func() { close(release) }) })

	if err := exec.Command("/bin/true", "vigil-stall").Run(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // let the reader reach the stalled sink
	for i := 0; i < 200; i++ {
		if err := exec.Command("/bin/true").Run(); err != nil {
			t.Fatal(err)
		}
	}
	once.Do(func() { close(release) })

	col.waitFor(t, 10*time.Second, "a drops health event", func(ev *event.Event) bool {
		return ev.Kind == event.KindHealth && ev.Health.Status == "drops"
	})
	// Let the reader drain, then compare the books.
	var seen, dropped, delivered uint64
	deadline := time.Now().Add(10 * time.Second)
	for {
		seen, dropped, delivered = s.Counters()
		if seen == dropped+delivered || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if dropped == 0 {
		t.Fatalf("no drops counted (seen %d, delivered %d): the ring did not overflow", seen, delivered)
	}
	if seen-delivered != dropped {
		t.Fatalf("kernel seen %d - delivered %d = %d, but %d dropped were counted", seen, delivered, seen-delivered, dropped)
	}
	// Every dropped record appears in some health event (the last one may
	// still be pending: wait for the sum to catch up), and health events
	// never report more than were counted. The ring is machine-wide, so
	// other activity may add drops meanwhile: compare with the counter as
	// it is after the health events were read.
	deadline = time.Now().Add(5 * time.Second)
	for {
		var reported uint64
		for _, ev := range col.all(func(ev *event.Event) bool { return ev.Kind == event.KindHealth && ev.Health.Status == "drops" }) {
			reported += ev.Health.Drops
		}
		_, now, _ := s.Counters()
		if reported > now {
			t.Fatalf("health events report %d drops, more than the %d counted", reported, now)
		}
		if reported >= dropped {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health events report %d drops, counters say %d", reported, dropped)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A client that opens a connection per request to the same place is folded
// into one report per window; the count is on the next report and in
// /metrics, so operators can see how much the kernel folded.
func TestRepeatedConnectionsOfOneProcessAreFoldedAndCounted(t *testing.T) {
	const window = 2 * time.Second
	cfg := Config{Mode: ModeEBPF, MetricsAddr: "127.0.0.1:0"}
	cfg.EBPF.RepeatWindow = window
	s, col := startSensor(t, cfg)

	port := loopback.Port(loopback.Serve(t, "127.0.0.1", false))
	// One bash process: 20 connections, a pause longer than the window, one more.
	const n = 20
	script := fmt.Sprintf(`c() { exec 3<>/dev/tcp/127.0.0.1/%d; exec 3>&-; }; for i in $(seq %d); do c; done; sleep %.1f; c`,
		port, n, (window + 500*time.Millisecond).Seconds())
	cmd := exec.Command("/bin/bash", "-c", script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bash connecting %d times: %v: %s", n+1, err, out)
	}
	pid := cmd.Process.Pid
	mine := func(ev *event.Event) bool {
		return ev.Kind == event.KindConnect && ev.Process.PID == pid && ev.Network != nil && int(ev.Network.DstPort) == port
	}
	col.waitFor(t, 10*time.Second, "the connect after the window", func(ev *event.Event) bool {
		return mine(ev) && ev.Network.Repeats > 0
	})
	var got []int
	for _, ev := range col.all(mine) {
		got = append(got, ev.Network.Repeats)
	}
	if len(got) != 2 || got[0] != 0 || got[1] != n-1 {
		t.Fatalf("repeats of bash's reported connects = %v, want [0 %d]: the first reported, %d folded into the one after the window", got, n-1, n-1)
	}

	resp, err := http.Get("http://" + s.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	// The sensor sees the whole machine: other processes may fold
	// connections too, so the counter is at least bash's.
	const metric = `vigil_sensor_network_repeats_total{kind="connect"} `
	line := grepLines(string(body), metric)
	v, err := strconv.ParseFloat(strings.TrimPrefix(line, metric), 64)
	if err != nil || v < n-1 {
		t.Errorf("/metrics: %q, want the connect counter at %d or more", line, n-1)
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

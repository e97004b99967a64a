package network

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/vigil-sec/vigil/internal/bpf"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/testenv"
)

// Helper-process protocol: the test binary re-executes itself with
// helperEnv=<mode> and helperArgEnv=<arg>; the helper acts, prints
// "<pid> <port>" and exits.
const (
	helperEnv    = "VIGIL_NET_TEST_HELPER"
	helperArgEnv = "VIGIL_NET_TEST_ARG"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		if err := runHelper(mode, os.Getenv(helperArgEnv)); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runHelper performs one network action as a separate process.
func runHelper(mode, arg string) error {
	port := 0
	switch mode {
	case "tcp-connect", "tcp-connect-refused":
		c, err := net.DialTimeout("tcp", arg, 5*time.Second)
		if mode == "tcp-connect-refused" {
			if err == nil {
				c.Close()
				return fmt.Errorf("connect to %s succeeded, want refused", arg)
			}
			break
		}
		if err != nil {
			return err
		}
		port = c.LocalAddr().(*net.TCPAddr).Port
		c.Close()
	case "udp-connect":
		c, err := net.Dial("udp", arg)
		if err != nil {
			return err
		}
		port = c.LocalAddr().(*net.UDPAddr).Port
		c.Close()
	case "repeat":
		// "repeat NETWORK ADDR OTHER N PAUSE-MS": N connections to ADDR,
		// one to OTHER, a pause, one more to ADDR.
		var network, addr, other string
		var n, pauseMS int
		if _, err := fmt.Sscan(arg, &network, &addr, &other, &n, &pauseMS); err != nil {
			return fmt.Errorf("repeat helper argument %q: %w", arg, err)
		}
		dial := func(a string) error {
			c, err := net.DialTimeout(network, a, 5*time.Second)
			if err != nil {
				return err
			}
			return c.Close()
		}
		for range n {
			if err := dial(addr); err != nil {
				return err
			}
		}
		if err := dial(other); err != nil {
			return err
		}
		time.Sleep(time.Duration(pauseMS) * time.Millisecond)
		if err := dial(addr); err != nil {
			return err
		}
	case "tcp-connect-exec":
		// Connect, then exec this binary (same pid, a new program) to
		// connect to the same address again.
		c, err := net.DialTimeout("tcp", arg, 5*time.Second)
		if err != nil {
			return err
		}
		c.Close()
		self, err := os.Executable()
		if err != nil {
			return err
		}
		env := []string{helperEnv + "=tcp-connect"}
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, helperEnv+"=") {
				env = append(env, kv)
			}
		}
		return syscall.Exec(self, []string{self, "-test.run=^$"}, env)
	case "udp-bind":
		c, err := net.ListenPacket("udp", arg)
		if err != nil {
			return err
		}
		port = c.LocalAddr().(*net.UDPAddr).Port
		c.Close()
	case "dns":
		p, err := dnsExchange(arg)
		if err != nil {
			return err
		}
		port = p
	default:
		return fmt.Errorf("unknown helper mode %q", mode)
	}
	fmt.Printf("%d %d\n", os.Getpid(), port)
	return nil
}

// testQName is the name every DNS test queries.
const testQName = "vigil-test.example"

// dnsQuery builds a standard query for name, type A.
func dnsQuery(name string) []byte {
	q := []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0} // id, RD, 1 question
	for _, l := range strings.Split(name, ".") {
		q = append(q, byte(len(l)))
		q = append(q, l...)
	}
	return append(q, 0, 0, 1, 0, 1) // root, type A, class IN
}

// dnsExchange runs a tiny DNS server on 127.0.0.1:53 (inside the test's
// network namespace) and sends it one query, over a connected UDP socket
// (how="connected") or with sendto on an unconnected one (how="sendto").
// It returns the client's local port once the server has answered.
func dnsExchange(how string) (int, error) {
	srv, err := net.ListenPacket("udp", "127.0.0.1:53")
	if err != nil {
		return 0, fmt.Errorf("DNS server: %w", err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := srv.ReadFrom(buf)
			if err != nil {
				return
			}
			resp := append([]byte(nil), buf[:n]...)
			resp[2] |= 0x80 // QR: response (no answers: NODATA)
			_, _ = srv.WriteTo(resp, from)
		}
	}()
	server := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
	var c *net.UDPConn
	if how == "connected" {
		c, err = net.DialUDP("udp", nil, server)
	} else {
		c, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	}
	if err != nil {
		return 0, fmt.Errorf("DNS client socket: %w", err)
	}
	defer c.Close()
	q := dnsQuery(testQName)
	if how == "connected" {
		_, err = c.Write(q)
	} else {
		_, err = c.WriteTo(q, server)
	}
	if err != nil {
		return 0, fmt.Errorf("send DNS query: %w", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		return 0, fmt.Errorf("read DNS answer: %w", err)
	}
	if n < 12 || buf[2]&0x80 == 0 {
		return 0, errors.New("DNS server sent no response")
	}
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// helperResult is what a helper process reports.
type helperResult struct{ pid, port int }

// runHelperProcess runs the test binary as a helper (optionally prefixed,
// e.g. by "ip netns exec NAME") and returns its pid and port.
func runHelperProcess(t *testing.T, prefix []string, mode, arg string) helperResult {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatalf("find test binary: %v", err)
	}
	argv := append(append([]string{}, prefix...), self, "-test.run=^$")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperArgEnv+"="+arg)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("helper %s %s: %v: %s", mode, arg, err, ee.Stderr)
		}
		t.Fatalf("helper %s %s: %v", mode, arg, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		t.Fatalf("helper %s printed %q, want \"<pid> <port>\"", mode, out)
	}
	pid, err1 := strconv.Atoi(f[0])
	port, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		t.Fatalf("helper %s printed %q, want \"<pid> <port>\"", mode, out)
	}
	return helperResult{pid: pid, port: port}
}

// cgroup2Mount finds the cgroup2 mount point in /proc/mounts.
func cgroup2Mount(t testing.TB) string {
	t.Helper()
	f, err := os.Open("/proc/mounts")
	if err != nil {
		t.Fatalf("read /proc/mounts: %v", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 3 && fields[2] == "cgroup2" {
			return fields[1]
		}
	}
	testenv.Require(t, false, "a cgroup2 mount (none in /proc/mounts)")
	return ""
}

// sharedMaps creates the sensor-wide maps from the network object's own
// specs, as the first-loaded object would, and writes the configuration.
func sharedMaps(t testing.TB, cfg bpf.Config) bpf.SharedMaps {
	t.Helper()
	spec, err := bpf.LoadNet()
	if err != nil {
		t.Fatalf("load network spec: %v", err)
	}
	newMap := func(name string) *ebpf.Map {
		m, err := ebpf.NewMap(spec.Maps[name])
		if err != nil {
			t.Fatalf("create map %s: %v", name, err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	m := bpf.SharedMaps{Events: newMap("events"), Drops: newMap("drops"), Config: newMap("vigil_cfg")}
	if err := m.Config.Put(uint32(0), cfg); err != nil {
		t.Fatalf("write vigil_cfg: %v", err)
	}
	return m
}

// harness has the network programs attached and collects decoded events.
type harness struct {
	t      *testing.T
	mu     sync.Mutex
	events []event.Event
	errs   []error
}

// newHarness attaches the network programs on their own, reading the ring.
// cfg.WakeupBytes 1 makes every record wake the reader.
func newHarness(t *testing.T, selfTgid uint32) *harness {
	t.Helper()
	return newHarnessWith(t, bpf.Config{SelfTgid: selfTgid})
}

// newHarnessWith is newHarness with more of the BPF configuration (e.g.
// RepeatMS); CgroupSubsys and WakeupBytes are set by it.
func newHarnessWith(t *testing.T, cfg bpf.Config) *harness {
	t.Helper()
	testenv.RequireRoot(t)
	cg := cgroup2Mount(t)
	cfg.CgroupSubsys, cfg.WakeupBytes = -1, 1
	m := sharedMaps(t, cfg)
	closer, err := Attach(m, cg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	rd, err := ringbuf.NewReader(m.Events)
	if err != nil {
		closer.Close()
		t.Fatalf("ring reader: %v", err)
	}
	h := &harness{t: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			rec, err := rd.Read()
			if err != nil {
				if !errors.Is(err, ringbuf.ErrClosed) {
					h.addErr(fmt.Errorf("ring read: %w", err))
				}
				return
			}
			h.add(rec.RawSample)
		}
	}()
	t.Cleanup(func() {
		if err := closer.Close(); err != nil {
			t.Errorf("detach: %v", err)
		}
		rd.Close()
		<-done
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, err := range h.errs {
			t.Errorf("decoding: %v", err)
		}
	})
	return h
}

func (h *harness) addErr(err error) {
	h.mu.Lock()
	h.errs = append(h.errs, err)
	h.mu.Unlock()
}

func (h *harness) add(raw []byte) {
	var hdr bpf.RecHdr
	if _, err := binary.Decode(raw, binary.NativeEndian, &hdr); err != nil {
		h.addErr(fmt.Errorf("header: %w", err))
		return
	}
	var ev event.Event
	if err := new(Decoder).Decode(&hdr, raw, &ev); err != nil {
		h.addErr(err)
		return
	}
	h.mu.Lock()
	h.events = append(h.events, ev)
	h.mu.Unlock()
}

// find returns the first event matching, if any.
func (h *harness) find(match func(*event.Event) bool) (event.Event, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range h.events {
		if match(&h.events[i]) {
			return h.events[i], true
		}
	}
	return event.Event{}, false
}

// all returns every event matching, in arrival order.
func (h *harness) all(match func(*event.Event) bool) []event.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []event.Event
	for i := range h.events {
		if match(&h.events[i]) {
			out = append(out, h.events[i])
		}
	}
	return out
}

// wait waits up to 5 s for an event matching; on timeout it fails, listing
// the network events seen for the given pids.
func (h *harness) wait(what string, pids []int, match func(*event.Event) bool) event.Event {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if ev, ok := h.find(match); ok {
			return ev
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.mu.Lock()
	var seen []string
	for _, ev := range h.events {
		for _, p := range pids {
			if ev.Process.PID == p {
				seen = append(seen, fmt.Sprintf("%s pid=%d %+v", ev.Kind, ev.Process.PID, *ev.Network))
			}
		}
	}
	h.mu.Unlock()
	h.t.Fatalf("no %s event within 5s; events of pids %v:\n%s", what, pids, strings.Join(seen, "\n"))
	return event.Event{}
}

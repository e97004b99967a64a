package network

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/vigil-sec/vigil/internal/bpf"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/testenv"
	"github.com/vigil-sec/vigil/internal/testutil/loopback"
)

func TestTCPEvents(t *testing.T) {
	h := newHarness(t, 0)
	self := os.Getpid()

	for _, tc := range []struct {
		name, host, family string
	}{
		{"tcp over ipv4 loopback is reported on both sides", "127.0.0.1", "ipv4"},
		{"tcp over ipv6 loopback is reported on both sides", "::1", "ipv6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.t = t
			ln := loopback.Serve(t, tc.host, false)
			port := uint16(ln.Addr().(*net.TCPAddr).Port)

			// The connector is another process, so that the accept event
			// (established in softirq, often running on the connector's
			// CPU) must come from the listener's remembered process.
			child := runHelperProcess(t, nil, "tcp-connect", ln.Addr().String())
			pids := []int{self, child.pid}

			lis := h.wait("listen", pids, func(ev *event.Event) bool {
				return ev.Kind == event.KindListen && ev.Network.SrcPort == port
			})
			if lis.Process.PID != self || lis.Network.Protocol != "tcp" || lis.Network.Family != tc.family || lis.Network.SrcIP != tc.host {
				t.Errorf("listen event = pid %d %+v; want pid %d tcp %s %s:%d", lis.Process.PID, *lis.Network, self, tc.family, tc.host, port)
			}

			conn := h.wait("connect", pids, func(ev *event.Event) bool {
				return ev.Kind == event.KindConnect && ev.Network.DstPort == port && ev.Process.PID == child.pid
			})
			n := conn.Network
			if n.Result != 0 || !n.ResultOK || n.Error != "" || n.Protocol != "tcp" || n.Family != tc.family ||
				n.DstIP != tc.host || n.SrcPort != uint16(child.port) {
				t.Errorf("connect event = %+v; want success, tcp %s to %s:%d from port %d", *n, tc.family, tc.host, port, child.port)
			}
			if conn.Process.Comm == "" || conn.Process.StartTime == 0 {
				t.Errorf("connect event process = %+v; want comm and start time of the connecting process", conn.Process)
			}

			acc := h.wait("accept", pids, func(ev *event.Event) bool {
				return ev.Kind == event.KindAccept && ev.Network.SrcPort == port && ev.Network.DstPort == uint16(child.port)
			})
			if acc.Process.PID != self || acc.Network.DstIP != tc.host || acc.Network.Family != tc.family {
				t.Errorf("accept event = pid %d %+v; want listener pid %d, peer %s:%d", acc.Process.PID, *acc.Network, self, tc.host, child.port)
			}

			bind := h.wait("bind", pids, func(ev *event.Event) bool {
				return ev.Kind == event.KindBind && ev.Network.SrcPort == port
			})
			if bind.Process.PID != self || bind.Network.Protocol != "tcp" {
				t.Errorf("bind event of the listener = pid %d %+v; want pid %d tcp", bind.Process.PID, *bind.Network, self)
			}
		})
	}
}

func TestTCPConnectRefused(t *testing.T) {
	h := newHarness(t, 0)
	// A port that was free a moment ago: nothing listens on it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close()

	child := runHelperProcess(t, nil, "tcp-connect-refused", addr.String())
	ev := h.wait("refused connect", []int{child.pid}, func(ev *event.Event) bool {
		return ev.Kind == event.KindConnect && ev.Process.PID == child.pid && ev.Network.DstPort == uint16(addr.Port)
	})
	if n := ev.Network; n.Result != -int(syscall.ECONNREFUSED) || n.ResultOK || n.Error != "connection refused" || n.DstIP != "127.0.0.1" {
		t.Errorf("connect event = %+v; want result -111 (connection refused) to 127.0.0.1", *n)
	}
}

func TestUDPConnectAndBind(t *testing.T) {
	h := newHarness(t, 0)
	for _, tc := range []struct {
		name, mode, arg, family, ip string
		kind                        event.Kind
	}{
		{"udp connect over ipv4 reports the destination", "udp-connect", "127.0.0.1:9", "ipv4", "127.0.0.1", event.KindConnect},
		{"udp connect over ipv6 reports the destination", "udp-connect", "[::1]:9", "ipv6", "::1", event.KindConnect},
		{"binding a udp socket reports the bound port", "udp-bind", "127.0.0.1:0", "ipv4", "127.0.0.1", event.KindBind},
		{"binding a udp6 socket reports the bound port", "udp-bind", "[::1]:0", "ipv6", "::1", event.KindBind},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.t = t
			child := runHelperProcess(t, nil, tc.mode, tc.arg)
			ev := h.wait(string(tc.kind), []int{child.pid}, func(ev *event.Event) bool {
				return ev.Kind == tc.kind && ev.Process.PID == child.pid
			})
			n := ev.Network
			if n.Protocol != "udp" || n.Family != tc.family {
				t.Errorf("%s event = %+v; want udp %s", tc.kind, *n, tc.family)
			}
			switch tc.kind {
			case event.KindConnect:
				if n.DstIP != tc.ip || n.DstPort != 9 || !n.ResultOK {
					t.Errorf("connect event = %+v; want successful connect to %s port 9", *n, tc.ip)
				}
			case event.KindBind:
				if n.SrcIP != tc.ip || n.SrcPort != uint16(child.port) {
					t.Errorf("bind event = %+v; want %s port %d", *n, tc.ip, child.port)
				}
			}
		})
	}
}

func TestSensorOwnTrafficIsNotReported(t *testing.T) {
	self := os.Getpid()
	h := newHarness(t, uint32(self))

	// The sensor (this process) connects first; a helper connects after.
	// Records are ordered in the ring, so once the helper's event is read
	// the sensor's would have been too.
	c, err := net.Dial("udp", "127.0.0.1:9")
	if err != nil {
		t.Fatalf("udp dial: %v", err)
	}
	c.Close()
	child := runHelperProcess(t, nil, "udp-connect", "127.0.0.1:9")
	h.wait("helper connect", []int{child.pid}, func(ev *event.Event) bool {
		return ev.Kind == event.KindConnect && ev.Process.PID == child.pid
	})
	if ev, ok := h.find(func(ev *event.Event) bool { return ev.Process.PID == self }); ok {
		t.Errorf("got %s event %+v from the sensor's own process", ev.Kind, *ev.Network)
	}
}

// netns creates a network namespace with loopback up, removed at cleanup.
func netns(t *testing.T) (name string, inode uint64) {
	t.Helper()
	testenv.RequireBinary(t, "ip")
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name = "vigil-dns-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s link set lo up: %v: %s", name, err, out)
	}
	var st syscall.Stat_t
	if err := syscall.Stat("/run/netns/"+name, &st); err != nil {
		t.Fatalf("stat netns %s: %v", name, err)
	}
	return name, st.Ino
}

func TestDNSQueries(t *testing.T) {
	h := newHarness(t, 0)
	for _, tc := range []struct{ name, how string }{
		{"a query over a connected udp socket names the sender and the question", "connected"},
		{"a query sent with sendto on an unconnected socket names the sender and the question", "sendto"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.t = t
			ns, ino := netns(t)
			child := runHelperProcess(t, []string{"ip", "netns", "exec", ns}, "dns", tc.how)
			ev := h.wait("dns", []int{child.pid}, func(ev *event.Event) bool {
				return ev.Kind == event.KindDNS && ev.Process.PID == child.pid
			})
			n := ev.Network
			if n.DNSQuery != testQName || n.DNSType != "A" || n.DstIP != "127.0.0.1" || n.DstPort != 53 ||
				n.SrcPort != uint16(child.port) || n.Protocol != "udp" || n.Family != "ipv4" {
				t.Errorf("dns event = %+v; want query %s type A to 127.0.0.1:53 from port %d", *n, testQName, child.port)
			}
			if uint64(ev.Process.NetNS) != ino {
				t.Errorf("dns event netns = %d; want the test namespace %s (%d)", ev.Process.NetNS, ns, ino)
			}
			// The server's answer (from port 53) is not a query.
			if extra, ok := h.find(func(ev *event.Event) bool {
				return ev.Kind == event.KindDNS && ev.Network.SrcPort == 53 && ev.Process.NetNS == uint32(ino)
			}); ok {
				t.Errorf("the DNS server's answer was reported as a query: %+v", *extra.Network)
			}
		})
	}
}

// BenchmarkTCPConnectStorm measures loopback connect+accept+close with and
// without the network programs attached (and, separately, the kernel's own
// count of time spent in them per connection):
//
//	go test -run '^$' -bench TCPConnectStorm -count 5 ./internal/source/ebpf/network
func BenchmarkTCPConnectStorm(b *testing.B) {
	testenv.RequireRoot(b)
	storm := func(b *testing.B) {
		addr := loopback.Serve(b, "127.0.0.1", false).Addr().String()
		b.ResetTimer()
		for range b.N {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatalf("dial: %v", err)
			}
			// Reset instead of FIN: no TIME_WAIT, so the storm measures
			// connect/accept rather than ephemeral port search.
			_ = c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}
	b.Run("without programs", storm)
	withPrograms := func(b *testing.B, stats bool) {
		m := sharedMaps(b, bpf.Config{CgroupSubsys: -1}) // default batched wake-ups
		closer, err := Attach(m, cgroup2Mount(b), nil)
		if err != nil {
			b.Fatalf("Attach: %v", err)
		}
		defer closer.Close()
		if stats {
			// Kernel-measured time spent in the programs: independent of
			// other load on the machine, but stats themselves add a little.
			st, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
			if err != nil {
				b.Fatalf("enable BPF stats: %v", err)
			}
			defer st.Close()
			objs := closer.(*attachment).objs
			progs := []*ebpf.Program{objs.VigilInetSockSetState, objs.VigilConnect4, objs.VigilSendmsg4,
				objs.VigilPostBind4, objs.VigilDnsEgress}
			// The programs see the whole machine (other processes'
			// traffic too), so report time per run of each hot program
			// alongside the total per connection of this benchmark.
			names := []string{"tp", "connect4", "sendmsg4", "bind4", "skb"}
			snapshot := func() []ebpf.ProgramStats {
				out := make([]ebpf.ProgramStats, len(progs))
				for i, p := range progs {
					st, err := p.Stats()
					if err != nil {
						b.Fatalf("program stats: %v", err)
					}
					out[i] = *st
				}
				return out
			}
			before := snapshot()
			defer func() {
				after := snapshot()
				var total time.Duration
				for i := range progs {
					d := after[i].Runtime - before[i].Runtime
					runs := after[i].RunCount - before[i].RunCount
					total += d
					if runs > 0 && (names[i] == "tp" || names[i] == "skb") {
						b.ReportMetric(float64(d.Nanoseconds())/float64(runs), names[i]+"-ns/run")
						b.ReportMetric(float64(runs)/float64(b.N), names[i]+"-runs/op")
					}
				}
				b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "bpf-ns/op")
			}()
		}
		// Drain the ring as the sensor does: batched wake-ups plus a
		// 100 ms deadline.
		rd, err := ringbuf.NewReader(m.Events)
		if err != nil {
			b.Fatalf("ring reader: %v", err)
		}
		var records atomic.Int64
		done := make(chan struct{})
		go func() {
			defer close(done)
			var rec ringbuf.Record
			for {
				rd.SetDeadline(time.Now().Add(100 * time.Millisecond))
				err := rd.ReadInto(&rec)
				if errors.Is(err, os.ErrDeadlineExceeded) {
					continue
				}
				if err != nil {
					return
				}
				records.Add(1)
			}
		}()
		storm(b)
		b.StopTimer()
		time.Sleep(200 * time.Millisecond)
		rd.Close()
		<-done
		var drops []uint64
		if err := m.Drops.Lookup(uint32(bpf.SlotDropRingbuf), &drops); err != nil {
			b.Fatalf("read drops: %v", err)
		}
		var dropped uint64
		for _, d := range drops {
			dropped += d
		}
		b.ReportMetric(float64(records.Load())/float64(b.N), "records/op")
		b.ReportMetric(float64(dropped), "drops")
	}
	b.Run("with programs", func(b *testing.B) { withPrograms(b, false) })
	b.Run("with programs and BPF run-time stats", func(b *testing.B) { withPrograms(b, true) })
}

// TestRepeatedConnectionsAreFoldedIntoACount: with a repeat window, a
// process's repeated connections to one destination cross to user space
// once per window, the next report carrying the count; another
// destination, and the same destination after the window, are reported.
func TestRepeatedConnectionsAreFoldedIntoACount(t *testing.T) {
	const window = 1500 * time.Millisecond
	h := newHarnessWith(t, bpf.Config{RepeatMS: uint32(window / time.Millisecond)})
	self := os.Getpid()
	const n = 40

	for _, tc := range []struct {
		name, network string
	}{
		{"tcp connects and accepts", "tcp"},
		{"udp connects", "udp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.t = t
			var addr, other string
			var port, otherPort uint16
			if tc.network == "tcp" {
				lns := [2]net.Listener{loopback.Serve(t, "127.0.0.1", false), loopback.Serve(t, "127.0.0.1", false)}
				addr, other = lns[0].Addr().String(), lns[1].Addr().String()
				port, otherPort = uint16(lns[0].Addr().(*net.TCPAddr).Port), uint16(lns[1].Addr().(*net.TCPAddr).Port)
			} else {
				// UDP connect needs no listener; ports 9 and 7 (discard, echo).
				addr, other, port, otherPort = "127.0.0.1:9", "127.0.0.1:7", 9, 7
			}
			child := runHelperProcess(t, nil, "repeat", fmt.Sprintf("%s4 %s %s %d %d", tc.network, addr, other, n, (window+300*time.Millisecond).Milliseconds()))
			pids := []int{self, child.pid}

			to := func(p uint16) func(*event.Event) bool {
				return func(ev *event.Event) bool {
					return ev.Kind == event.KindConnect && ev.Process.PID == child.pid && ev.Network.DstPort == p
				}
			}
			// The last connect of the helper is the one after the pause.
			h.wait("the connect after the window", pids, func(ev *event.Event) bool {
				return to(port)(ev) && ev.Network.Repeats > 0
			})
			h.wait("the connect to the other destination", pids, to(otherPort))
			if tc.network == "tcp" {
				h.wait("the accept after the window", pids, func(ev *event.Event) bool {
					return ev.Kind == event.KindAccept && ev.Network.SrcPort == port && ev.Network.Repeats > 0
				})
			}

			check := func(what string, match func(*event.Event) bool, want []int) {
				t.Helper()
				var got []int
				for _, ev := range h.all(match) {
					got = append(got, ev.Network.Repeats)
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s: repeats of the reported events = %v, want %v (one report per window, the count on the next)", what, got, want)
				}
			}
			check("connects to the repeated destination", to(port), []int{0, n - 1})
			check("connects to the other destination", to(otherPort), []int{0})
			if tc.network == "tcp" {
				check("accepts on the repeated port", func(ev *event.Event) bool {
					return ev.Kind == event.KindAccept && ev.Process.PID == self && ev.Network.SrcPort == port
				}, []int{0, n - 1})
			}
		})
	}

	t.Run("a new program in the same process is reported afresh", func(t *testing.T) {
		h.t = t
		ln := loopback.Serve(t, "127.0.0.1", false)
		port := uint16(ln.Addr().(*net.TCPAddr).Port)
		child := runHelperProcess(t, nil, "tcp-connect-exec", ln.Addr().String())
		match := func(ev *event.Event) bool {
			return ev.Kind == event.KindConnect && ev.Process.PID == child.pid && ev.Network.DstPort == port
		}
		h.wait("the exec'd program's connect", []int{child.pid}, func(ev *event.Event) bool {
			return match(ev) && ev.Network.SrcPort == uint16(child.port)
		})
		if got := len(h.all(match)); got != 2 {
			t.Errorf("got %d connect events from pid %d (connect, exec, connect again), want 2", got, child.pid)
		}
	})
}

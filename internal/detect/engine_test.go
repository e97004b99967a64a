package detect

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/event"
)

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// ruleYAML renders one rule entry.
func ruleYAML(id, events, cond string) string {
	return fmt.Sprintf("- rule: %s\n  name: %s\n  description: test rule\n  severity: Medium\n  events: [%s]\n  condition: %s\n", id, id, events, quoteCond(cond))
}

func quoteCond(c string) string { return "'" + strings.ReplaceAll(c, "'", "''") + "'" }

func compileFiles(t *testing.T, opts []Option, files ...string) *Engine {
	t.Helper()
	m := map[string]string{}
	for i, f := range files {
		m[fmt.Sprintf("%02d.yaml", i)] = f
	}
	rs, err := LoadFS(mapFS(m))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	e, err := Compile(rs, opts...)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return e
}

func matchIDs(e *Engine, ev *event.Event) []string {
	var ids []string
	e.Evaluate(ev, func(r *Rule, _ *event.Event) { ids = append(ids, r.ID) })
	slices.Sort(ids)
	return ids
}

// execEv builds an exec event in a container.
func execEv(exe string, args ...string) *event.Event {
	comm := baseName(exe)
	if len(comm) > 15 {
		comm = comm[:15]
	}
	return &event.Event{Kind: event.KindExec,
		Process:   event.Process{PID: 100, PPID: 99, Exe: exe, Comm: comm, Args: args, UID: 33, EUID: 33},
		Container: &event.Container{ID: "c1", Image: "registry.local/app:1", Namespace: "default", Pod: "web-0"}}
}

func withAncestors(ev *event.Event, exes ...string) *event.Event {
	for i, x := range exes {
		ev.Ancestry = append(ev.Ancestry, event.ProcessRef{PID: 99 - i, Exe: x, Comm: baseName(x), Args: []string{baseName(x)}})
	}
	return ev
}

func TestEvaluateConditions(t *testing.T) {
	lists := `- list: web_servers
  items: [nginx, httpd, apache2, php-fpm]
- list: shells
  items: [sh, bash, dash]
- list: pool_ports
  items: [3333, 4444, 14444]
- macro: in_container
  condition: '!container.host && container.id != ""'
- macro: shell_from_web
  condition: proc.name in shells && ancestors.exists(a, a.name in web_servers)
`
	tests := []struct {
		name string
		cond string
		kind string
		ev   *event.Event
		want bool
	}{
		{"a shell under nginx matches ancestors.exists", "in_container && shell_from_web", "exec",
			withAncestors(execEv("/bin/sh", "sh", "-c", "id"), "/usr/sbin/nginx"), true},
		{"a shell two levels under php-fpm matches", "shell_from_web", "exec",
			withAncestors(execEv("/bin/bash", "bash"), "/bin/sh", "/usr/sbin/php-fpm"), true},
		{"a shell under sshd does not match", "shell_from_web", "exec",
			withAncestors(execEv("/bin/bash", "bash"), "/usr/sbin/sshd"), false},
		{"a host process is not in a container", "in_container && proc.name == \"sh\"", "exec",
			func() *event.Event { e := execEv("/bin/sh"); e.Container = &event.Container{Host: true}; return e }(), false},
		{"an event without container info has empty container fields", "container.id == \"\" && !container.host", "exec",
			func() *event.Event { e := execEv("/bin/sh"); e.Container = nil; return e }(), true},
		{"a download-then-exec fact matches", "facts[\"drift.writtenBy\"] in [\"/usr/bin/curl\", \"/usr/bin/wget\"]", "exec",
			func() *event.Event {
				e := execEv("/tmp/x")
				e.SetFact("drift.writtenBy", "/usr/bin/curl")
				return e
			}(), true},
		{"an absent fact reads as empty", "facts[\"drift.writtenBy\"] == \"\" && !(\"drift.writtenBy\" in facts)", "exec",
			execEv("/tmp/x"), true},
		{"a present fact is in facts", "\"drift.writtenAfterStart\" in facts", "exec",
			func() *event.Event { e := execEv("/tmp/x"); e.SetFact("drift.writtenAfterStart", "true"); return e }(), true},
		{"cmdline joins argv with spaces", "proc.cmdline == \"xmrig -o stratum+tcp://pool:3333\"", "exec",
			execEv("/tmp/xmrig", "xmrig", "-o", "stratum+tcp://pool:3333"), true},
		{"name is the exe basename, not comm", "proc.name == \"xmrig\" && proc.comm == \"pause\"", "exec",
			func() *event.Event { e := execEv("/tmp/xmrig"); e.Process.Comm = "pause"; return e }(), true},
		{"parent comes from the ancestry", "parent.name == \"nginx\" && parent.pid == 99", "exec",
			withAncestors(execEv("/bin/sh"), "/usr/sbin/nginx"), true},
		{"an int list matches a destination port", "net.dstPort in pool_ports && net.protocol == \"tcp\"", "connect",
			&event.Event{Kind: event.KindConnect, Network: &event.Network{Protocol: "tcp", DstIP: "10.0.0.1", DstPort: 14444}}, true},
		{"a port not in the list does not match", "net.dstPort in pool_ports", "connect",
			&event.Event{Kind: event.KindConnect, Network: &event.Network{DstPort: 443}}, false},
		{"argv exists with lowerAscii", "proc.args.exists(a, a.lowerAscii().startsWith(\"--donate\"))", "exec",
			execEv("/tmp/m", "m", "--DONATE-level=1"), true},
		{"regex matches on file paths", "file.path.matches(\"^/etc/(shadow|gshadow)$\") && !file.write", "open",
			&event.Event{Kind: event.KindOpen, File: &event.File{Path: "/etc/shadow", Sensitive: true}}, true},
		{"indexing argv works through CEL", "size(proc.args) > 1 && proc.args[1] == \"-c\"", "exec",
			execEv("/bin/sh", "sh", "-c", "id"), true},
		{"an out-of-range index is no match, not a crash", "proc.args[5] == \"x\"", "exec",
			execEv("/bin/sh", "sh"), false},
		{"a negated out-of-range index is still no match", "!(proc.args[5] == \"x\")", "exec",
			execEv("/bin/sh", "sh"), false},
		{"true or an error is true", "proc.args[5] == \"x\" || proc.name == \"sh\"", "exec",
			execEv("/bin/sh", "sh"), true},
		{"false and an error is false, and exists skips past errors to a true element",
			"ancestors.exists(a, a.args[1] == \"-c\")", "exec",
			func() *event.Event {
				e := withAncestors(execEv("/bin/sh"), "/bin/a")
				e.Ancestry = append(e.Ancestry, event.ProcessRef{Exe: "/bin/sh", Args: []string{"sh", "-c", "x"}})
				return e
			}(), true},
		{"a numeric fact converts with int()", "int(facts[\"recon.burst\"]) >= 5", "exec",
			func() *event.Event { e := execEv("/bin/id"); e.SetFact("recon.burst", "7"); return e }(), true},
		{"a non-numeric fact in int() is no match", "int(facts[\"recon.burst\"]) >= 5", "exec",
			func() *event.Event { e := execEv("/bin/id"); e.SetFact("recon.burst", "many"); return e }(), false},
		{"a rule does not see events of other kinds", "true", "connect", execEv("/bin/sh"), false},
		{"sys fields are typed", "sys.name == \"finit_module\" && sys.module.endsWith(\"msr.ko\")", "module",
			&event.Event{Kind: event.KindModule, Syscall: &event.Syscall{Name: "finit_module", Module: "/lib/modules/msr.ko"}}, true},
		{"kind is the event kind", "kind == \"exec\"", "exec,connect", execEv("/bin/true"), true},
		{"ancestors.all is true for no ancestors", "ancestors.all(a, a.name == \"x\") && size(ancestors) == 0", "exec",
			execEv("/bin/true"), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, native := range []bool{true, false} {
				var opts []Option
				if !native {
					opts = append(opts, withoutNative())
				}
				e := compileFiles(t, opts, lists+ruleYAML("test/R", tc.kind, tc.cond))
				got := len(matchIDs(e, tc.ev)) == 1
				if got != tc.want {
					info, _ := e.Info("test/R")
					t.Errorf("native=%v: match = %v, want %v (condition %s, native %v)", native, got, tc.want, info.Expanded, info.Native)
				}
			}
		})
	}
}

func TestCompileReportsErrorsWithPosition(t *testing.T) {
	tests := []struct {
		name  string
		files []string
		opts  []Option
		want  []string
	}{
		{"a typo in a field fails at its column",
			[]string{ruleYAML("test/X", "exec", `proc.exee == "/x"`)},
			nil, []string{"00.yaml:6:20: rule test/X: condition: undefined field 'exee'"}},
		{"a typo in a double-quoted condition is located inside the quotes",
			[]string{"- rule: test/X\n  name: X\n  description: d\n  severity: Low\n  events: [exec]\n  condition: \"proc.name == 'a' && container.imag == 'x'\"\n"},
			nil, []string{"00.yaml:6:45: rule test/X: condition: undefined field 'imag'"}},
		{"a typo on a later line of a literal block is located on that line",
			[]string{"- rule: test/X\n  name: X\n  description: d\n  severity: Low\n  events: [exec]\n  condition: |\n    proc.name == 'a'\n      && parent.nmae == 'b'\n"},
			nil, []string{"00.yaml:8:17: rule test/X: condition: undefined field 'nmae'"}},
		{"an undefined list or macro is reported",
			[]string{ruleYAML("test/X", "exec", `proc.name in miner_nmes`)},
			nil, []string{"00.yaml:6:28: rule test/X: condition: undeclared reference to 'miner_nmes'"}},
		{"an error inside a macro points into the macro",
			[]string{"- macro: bad\n  condition: proc.nam == 'x'\n" + ruleYAML("test/X", "exec", `bad`)},
			nil, []string{"00.yaml:2:19: macro \"bad\": condition: undefined field 'nam'"}},
		{"an override of an unknown rule is reported at compile time",
			[]string{goodRule, "- rule: test/Nope\n  override: {enabled: false}\n"},
			nil, []string{"01.yaml:1:3: rule \"test/Nope\": override/exceptions_append of a rule that is not defined"}},
		{"an append to an unknown list is reported at compile time",
			[]string{"- list: nope\n  append: true\n  items: [a]\n"},
			nil, []string{"00.yaml:1:3: list \"nope\": append to a list that is not defined"}},
		{"a macro cycle is detected",
			[]string{"- macro: a\n  condition: b\n- macro: b\n  condition: a\n" + ruleYAML("test/X", "exec", `a`)},
			nil, []string{"macro \"a\" is part of a cycle (a -> b -> a)"}},
		{"a non-boolean condition is rejected",
			[]string{ruleYAML("test/X", "exec", `proc.name`)},
			nil, []string{"00.yaml:6:14: rule test/X: condition must be true/false but is string"}},
		{"comparing an int with a string is a type error",
			[]string{ruleYAML("test/X", "connect", `net.dstPort == "3333"`)},
			nil, []string{"rule test/X: condition: found no matching overload for '_==_'", "compare ints with ints"}},
		{"a condition with a huge worst-case cost is rejected",
			[]string{ruleYAML("test/X", "exec", `proc.args.exists(a, proc.args.exists(b, proc.args.exists(c, (a + b + c).matches("x+y"))))`)},
			nil, []string{"rule test/X: condition is too expensive: worst-case cost"}},
		{"an exception on a list of the wrong type is rejected",
			[]string{"- list: ports\n  items: [1, 2]\n" + ruleYAML("test/X", "exec", `true`) + "  exceptions:\n    - name: e\n      fields: [proc.exe]\n      values: [[ports]]\n"},
			nil, []string{"field proc.exe is string but list \"ports\" holds integers"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := map[string]string{}
			for i, f := range tc.files {
				m[fmt.Sprintf("%02d.yaml", i)] = f
			}
			rs, err := LoadFS(mapFS(m))
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			_, err = Compile(rs, tc.opts...)
			if err == nil {
				t.Fatalf("Compile succeeded; want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\ndoes not contain\n%s", err, w)
				}
			}
		})
	}
}

func TestCompileKeepsGoodRulesBesideABadOne(t *testing.T) {
	rs, err := LoadFS(mapFS(map[string]string{"a.yaml": goodRule + ruleYAML("test/Bad", "exec", "proc.exee == 1")}))
	if err != nil {
		t.Fatal(err)
	}
	e, err := Compile(rs)
	if err == nil {
		t.Fatal("want a compile error for test/Bad")
	}
	if got := matchIDs(e, execEv("/bin/good")); !slices.Equal(got, []string{"test/Good"}) {
		t.Errorf("matches = %v, want test/Good", got)
	}
}

func TestRuntimeCostLimitStopsExpensiveEvaluation(t *testing.T) {
	cond := `proc.args.exists(a, proc.args.exists(b, a + b == "never"))`
	args := make([]string, 100)
	for i := range args {
		args[i] = fmt.Sprintf("arg%d", i)
	}
	ev := execEv("/bin/x", args...)
	// Without a low limit the rule evaluates (no match, no error).
	e := compileFiles(t, []Option{withoutNative()}, ruleYAML("test/X", "exec", cond))
	e.Evaluate(ev, func(*Rule, *event.Event) {})
	if e.EvalErrors() != 0 {
		t.Fatalf("default limit: %d evaluation errors, want 0", e.EvalErrors())
	}
	e = compileFiles(t, []Option{withoutNative(), WithCostLimit(500)}, ruleYAML("test/X", "exec", cond+` || true`))
	if got := matchIDs(e, ev); len(got) != 0 {
		t.Errorf("matches = %v; an evaluation over the cost limit must not match", got)
	}
	if e.EvalErrors() != 1 {
		t.Errorf("EvalErrors = %d, want 1", e.EvalErrors())
	}
}

func TestOverridesAppendsAndExceptions(t *testing.T) {
	base := `- list: miner_names
  items: [xmrig]
- rule: test/Miner
  name: Miner
  description: miner by name
  severity: High
  events: [exec]
  condition: proc.name in miner_names
- rule: test/Shell
  name: Shell
  description: any shell
  severity: Low
  events: [exec]
  condition: proc.name == "sh"
`
	user := `- list: miner_names
  append: true
  items: [my-miner]
- rule: test/Shell
  override: {enabled: false}
- rule: test/Miner
  override: {severity: Medium}
  exceptions_append:
    - name: bench
      fields: [container.image, proc.exe]
      values: [[registry.local/bench:1, /usr/bin/xmrig]]
`
	baseRS, err := LoadFS(mapFS(map[string]string{"base.yaml": base}))
	if err != nil {
		t.Fatal(err)
	}
	// User files load on their own (their overrides wait for the merge).
	userRS, err := LoadFS(mapFS(map[string]string{"user.yaml": user}))
	if err != nil {
		t.Fatalf("load user.yaml: %v", err)
	}
	if _, err := Compile(userRS); err == nil || !strings.Contains(err.Error(), "user.yaml:4:3: rule \"test/Shell\": override") {
		t.Errorf("compiling user.yaml alone: err = %v, want its unresolved override reported", err)
	}
	if err := baseRS.Merge(userRS); err != nil {
		t.Fatalf("merge: %v", err)
	}
	e, err := Compile(baseRS)
	if err != nil {
		t.Fatal(err)
	}
	bench := execEv("/usr/bin/xmrig")
	bench.Container.Image = "registry.local/bench:1"
	otherImage := execEv("/usr/bin/xmrig")
	tests := []struct {
		name string
		ev   *event.Event
		want []string
	}{
		{"an appended list item matches", execEv("/tmp/my-miner"), []string{"test/Miner"}},
		{"the original list item still matches", execEv("/tmp/xmrig"), []string{"test/Miner"}},
		{"the exception tuple suppresses the benchmark image running /usr/bin/xmrig", bench, nil},
		{"the same binary in another image is not excepted", otherImage, []string{"test/Miner"}},
		{"a disabled rule does not match", execEv("/bin/sh"), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := matchIDs(e, tc.ev); !slices.Equal(got, tc.want) {
				t.Errorf("matches = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("rules lists disabled rules and applied overrides", func(t *testing.T) {
		rules := e.Rules()
		if len(rules) != 2 || rules[0].ID != "test/Miner" || rules[1].ID != "test/Shell" {
			t.Fatalf("Rules() = %v", rules)
		}
		if rules[0].Severity != alert.SeverityMedium || len(rules[0].Exceptions) != 1 || rules[1].Enabled {
			t.Errorf("miner severity %s exceptions %d, shell enabled %v", rules[0].Severity, len(rules[0].Exceptions), rules[1].Enabled)
		}
	})
}

func TestExceptionSemantics(t *testing.T) {
	rules := `- list: trusted_images
  items: [registry.local/a:1, registry.local/b:1]
` + ruleYAML("test/X", "exec", `proc.name == "nc"`) + `  exceptions:
    - name: pairs
      fields: [container.image, proc.exe]
      values:
        - [registry.local/debug:1, [/usr/bin/nc, /bin/nc]]
        - [trusted_images, /usr/bin/nc]
    - name: root_in_ns
      fields: [container.namespace, proc.uid]
      values: [[kube-system, 0]]
`
	mk := func(image, exe, ns string, uid uint32) *event.Event {
		e := execEv(exe)
		e.Container.Image, e.Container.Namespace, e.Process.UID = image, ns, uid
		return e
	}
	tests := []struct {
		name string
		ev   *event.Event
		want bool
	}{
		{"any of the alternative paths is excepted in the debug image", mk("registry.local/debug:1", "/bin/nc", "default", 33), false},
		{"a path outside the alternatives still alerts", mk("registry.local/debug:1", "/tmp/nc", "default", 33), true},
		{"a list name in a tuple means any list item", mk("registry.local/b:1", "/usr/bin/nc", "default", 33), false},
		{"the list does not except other paths", mk("registry.local/b:1", "/tmp/nc", "default", 33), true},
		{"an integer field matches its value", mk("x", "/tmp/nc", "kube-system", 0), false},
		{"every field of the tuple must match", mk("x", "/tmp/nc", "kube-system", 1000), true},
	}
	for _, native := range []bool{true, false} {
		var opts []Option
		if !native {
			opts = append(opts, withoutNative())
		}
		e := compileFiles(t, opts, rules)
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%s (native=%v)", tc.name, native), func(t *testing.T) {
				if got := len(matchIDs(e, tc.ev)) == 1; got != tc.want {
					t.Errorf("match = %v, want %v", got, tc.want)
				}
			})
		}
	}
}

func TestMasquerade(t *testing.T) {
	tests := []struct {
		name       string
		comm, exe  string
		args       []string
		masquerade bool
	}{
		{"a binary under its own name is not masquerading", "xmrig", "/tmp/xmrig", []string{"xmrig"}, false},
		{"a truncated comm is a prefix of a long name", "containerd-shim", "/usr/bin/containerd-shim-runc-v2", nil, false},
		{"a miner calling itself pause is masquerading", "pause", "/tmp/xmrig", []string{"pause"}, true},
		{"a miner renamed to kworker is masquerading", "kworker/0:1", "/usr/bin/python3", []string{"python3", "-c", "x"}, true},
		{"a script run by its interpreter is not masquerading", "entrypoint.sh", "/usr/bin/dash", []string{"/bin/sh", "/entrypoint.sh"}, false},
		{"a busybox applet is not masquerading", "ls", "/bin/busybox", []string{"ls", "-l"}, false},
		{"a busybox applet claiming another name is masquerading", "sshd", "/bin/busybox", []string{"ls"}, true},
		{"an unknown exe is not judged", "pause", "", nil, false},
		{"an empty comm is not judged", "", "/tmp/x", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Masquerade(tc.comm, tc.exe, tc.args); got != tc.masquerade {
				t.Errorf("Masquerade(%q, %q, %q) = %v, want %v", tc.comm, tc.exe, tc.args, got, tc.masquerade)
			}
		})
	}
	t.Run("rules see proc.masquerade", func(t *testing.T) {
		e := compileFiles(t, nil, ruleYAML("test/M", "exec", "proc.masquerade"))
		ev := execEv("/tmp/xmrig")
		ev.Process.Comm = "pause"
		if got := matchIDs(e, ev); len(got) != 1 {
			t.Errorf("matches = %v, want test/M", got)
		}
	})
}

func TestEnabledCountsOnlyEnabledRules(t *testing.T) {
	e := compileFiles(t, nil,
		ruleYAML("test/A", "exec", `proc.exe == "/a"`)+ruleYAML("test/B", "exec", `proc.exe == "/b"`),
		"- rule: test/B\n  override: {enabled: false}\n")
	if got := e.Enabled(); got != 1 || len(e.Rules()) != 2 {
		t.Fatalf("Enabled() = %d of %d rules, want 1 of 2", got, len(e.Rules()))
	}
}

func TestEngineVersionChangesWithTheRulesAndNotOtherwise(t *testing.T) {
	compile := func(cond string) *Engine {
		t.Helper()
		rs, err := LoadFS(mapFS(map[string]string{"a.yaml": `- list: l
  items: [a]
- rule: test/R
  name: R
  description: d
  severity: Low
  events: [exec]
  condition: ` + cond + "\n"}))
		if err != nil {
			t.Fatal(err)
		}
		e, err := Compile(rs)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	a, b, c := compile(`proc.name in l`), compile(`proc.name in l`), compile(`proc.name == "x"`)
	if len(a.Version()) != 12 || a.Version() != b.Version() {
		t.Fatalf("same rules: versions %q and %q, want equal 12-digit versions", a.Version(), b.Version())
	}
	if a.Version() == c.Version() {
		t.Fatalf("a changed condition kept version %q", a.Version())
	}
}

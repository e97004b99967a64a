package detect

import (
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/rules"
)

// indexRules exercise the name index (gates on proc.name / proc.comm) and
// shared sub-expressions.
func indexRules() string {
	return ruleYAML("idx/ShellByName", "exec", `proc.name in ["bash", "sh"] && proc.args.exists(a, a == "-i")`) +
		ruleYAML("idx/ByComm", "exec", `proc.comm == "pwn"`) +
		ruleYAML("idx/KindBranches", "exec, open", `(kind == "exec" && proc.name == "crontab") || (kind == "open" && file.path == "/etc/crontab")`) +
		ruleYAML("idx/OrWithUngated", "exec", `proc.name == "nc" || proc.cmdline.contains("/dev/tcp/")`) +
		ruleYAML("idx/RegexNames", "exec", `proc.name.matches(r'^(nc|ncat)$') && size(proc.args) > 1`) +
		ruleYAML("idx/NegatedName", "exec", `!(proc.name in ["ls", "git", "bash", "sh", "ncat", "crontab", "python3", "pwn", "x"]) && proc.uid == 33`) +
		ruleYAML("idx/SharedA", "exec", `proc.name == "sh" && ancestors.exists(a, a.name in ["nginx"])`) +
		ruleYAML("idx/SharedB", "exec", `proc.cmdline.contains("whoami") && ancestors.exists(a, a.name in ["nginx"])`) +
		ruleYAML("idx/UnicodeSize", "exec", `proc.name == "x" && size(proc.cmdline) == 5`) +
		ruleYAML("idx/OrWithUid", "exec", `proc.name == "nc" || proc.uid == 12345`)
}

func TestNameIndexKeepsEveryMatch(t *testing.T) {
	native := compileFiles(t, nil, indexRules())
	interp := compileFiles(t, []Option{withoutNative()}, indexRules())
	renamed := execEv("/tmp/x", "kworker")
	renamed.Process.Comm = "pwn"
	cron := &event.Event{Kind: event.KindOpen, Process: event.Process{Exe: "/usr/bin/vi", Comm: "vi", UID: 33}, File: &event.File{Path: "/etc/crontab", Write: true}}
	cases := []struct {
		name string
		ev   *event.Event
		want []string
	}{
		{"an interactive shell matches through the indexed name", execEv("/bin/bash", "bash", "-i"), []string{"idx/ShellByName"}},
		{"a shell without -i passes the index but not the condition", execEv("/bin/bash", "bash", "-c", "true"), nil},
		{"a process matches through the indexed comm alone", renamed, []string{"idx/ByComm"}},
		{"an exec of crontab matches the exec branch", execEv("/usr/bin/crontab", "crontab", "-e"), []string{"idx/KindBranches"}},
		{"an open of /etc/crontab by any process is not skipped by the index", cron, []string{"idx/KindBranches"}},
		{"a reverse shell by an unlisted name is not skipped by the index", execEv("/usr/bin/python3", "python3", "-c", "open('/dev/tcp/10.0.0.1/4444')"), []string{"idx/OrWithUngated"}},
		{"a name in an anchored regex alternation matches", execEv("/usr/bin/ncat", "ncat", "-l"), []string{"idx/RegexNames"}},
		{"a longer name than the regex alternatives does not match", execEv("/usr/bin/ncatx", "ncatx", "-l"), []string{"idx/NegatedName"}},
		{"a negated name test is evaluated for every name", execEv("/usr/bin/cat", "cat"), []string{"idx/NegatedName"}},
		{"a shell under nginx matches the shared ancestry test", withAncestors(execEv("/bin/sh", "sh", "-c", "whoami"), "/usr/sbin/nginx"), []string{"idx/SharedA", "idx/SharedB"}},
		{"the next event without nginx does not reuse the previous result", withAncestors(execEv("/bin/sh", "sh", "-c", "whoami"), "/usr/sbin/sshd"), nil},
		{"size of a string counts code points like CEL", execEv("/x", "ü", "abc"), []string{"idx/UnicodeSize"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ref := matchIDs(native, tc.ev), matchIDs(interp, tc.ev)
			if !slices.Equal(got, tc.want) {
				t.Errorf("native (indexed) engine matched %v, want %v", got, tc.want)
			}
			if !slices.Equal(ref, tc.want) {
				t.Errorf("CEL engine matched %v, want %v", ref, tc.want)
			}
		})
	}
}

func TestNameGatesAreDerivedPerKind(t *testing.T) {
	e := compileFiles(t, nil, indexRules())
	gate := func(id string, k event.Kind) *nameKeys {
		for _, cr := range e.all {
			if cr.rule.ID == id {
				return cr.gates[k]
			}
		}
		t.Fatalf("rule %s not compiled", id)
		return nil
	}
	t.Run("a name set in a conjunction gates the rule", func(t *testing.T) {
		g := gate("idx/ShellByName", event.KindExec)
		if g == nil || strings.Join(sortedKeys(g.name), ",") != "bash,sh" || len(g.comm) != 0 {
			t.Errorf("gate = %+v, want name in {bash, sh}", g)
		}
	})
	t.Run("a branch for another kind is dropped from the gate", func(t *testing.T) {
		if g := gate("idx/KindBranches", event.KindExec); g == nil || strings.Join(sortedKeys(g.name), ",") != "crontab" {
			t.Errorf("exec gate = %+v, want name in {crontab}", g)
		}
		g := gate("idx/KindBranches", event.KindOpen)
		if g == nil || len(g.name) != 0 || len(g.comm) != 0 || g.vals["file.path"] == nil ||
			strings.Join(sortedKeys(g.vals["file.path"].set), ",") != "/etc/crontab" {
			t.Errorf("open gate = %+v, want file.path in {/etc/crontab} and no name (the open branch does not test the name)", g)
		}
	})
	t.Run("a disjunction with an unindexable operand is not gated", func(t *testing.T) {
		if g := gate("idx/OrWithUid", event.KindExec); g != nil {
			t.Errorf("gate = %+v, want none", g)
		}
	})
	t.Run("a disjunction with a command-line literal is gated on the name or the literal", func(t *testing.T) {
		g := gate("idx/OrWithUngated", event.KindExec)
		if g == nil || strings.Join(sortedKeys(g.name), ",") != "nc" || len(g.lits) != 1 {
			t.Fatalf("gate = %+v, want name in {nc} or a proc.cmdline literal", g)
		}
		for sub, ids := range g.lits {
			for id := range ids {
				if sub.key != "proc.cmdline" || sub.lits[id] != "/dev/tcp/" {
					t.Errorf("literal gate on %s %q, want proc.cmdline \"/dev/tcp/\"", sub.key, sub.lits[id])
				}
			}
		}
	})
	t.Run("a negated name test is not gated", func(t *testing.T) {
		if g := gate("idx/NegatedName", event.KindExec); g != nil {
			t.Errorf("gate = %+v, want none", g)
		}
	})
	t.Run("the shared ancestry test gets a memo slot", func(t *testing.T) {
		if e.nMemo < 1 {
			t.Errorf("nMemo = %d, want at least 1", e.nMemo)
		}
	})
}

func TestLiteralAlternatives(t *testing.T) {
	cases := []struct {
		name, re string
		want     string // "" when not a finite set
	}{
		{"an anchored alternation is its alternatives", `^(nc|ncat|nc\.openbsd)$`, "nc,nc.openbsd,ncat"},
		{"an optional suffix doubles the set", `^nc(at)?$`, "nc,ncat"},
		{"an unanchored pattern is not a set", `(nc|ncat)`, ""},
		{"a repetition is not a set", `^python[0-9.]*$`, ""},
		{"a case-insensitive pattern is not a set", `(?i)^(nc|ncat)$`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			set, ok := literalAlternatives(tc.re)
			got := ""
			if ok {
				got = strings.Join(sortedKeys(set), ",")
			}
			if got != tc.want {
				t.Errorf("literalAlternatives(%q) = %q, want %q", tc.re, got, tc.want)
			}
		})
	}
}

func TestCatalogUsesTheNameIndex(t *testing.T) {
	e := compileCatalog(t)
	gated := 0
	for _, cr := range e.byKind[event.KindExec] {
		if cr.gates[event.KindExec] != nil {
			gated++
		}
	}
	if gated < 10 {
		t.Errorf("%d of %d exec rules are gated on proc.name/proc.comm, want at least 10", gated, len(e.byKind[event.KindExec]))
	}
	for _, ev := range benignEvents() {
		if got := matchIDs(e, ev); len(got) != 0 {
			t.Fatalf("benign %s event matched %v", ev.Kind, got)
		}
		if raceEnabled {
			continue // allocation counts are checked in the ordinary (non -race) run
		}
		if allocs := testing.AllocsPerRun(200, func() { e.Evaluate(ev, func(*Rule, *event.Event) {}) }); allocs != 0 {
			t.Errorf("%s event: %.1f allocations per Evaluate with the catalog, want 0", ev.Kind, allocs)
		}
	}
}

func TestConcurrentEvaluationMatchesSequential(t *testing.T) {
	e := compileCatalog(t)
	events := append(benignEvents(), variedEvents()...)
	want := make([][]string, len(events))
	for i, ev := range events {
		want[i] = matchIDs(e, ev)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for n := 0; n < 3; n++ {
				for i := range events {
					j := (i*7 + g) % len(events) // each goroutine in its own order
					if got := matchIDs(e, events[j]); !slices.Equal(got, want[j]) {
						errs <- strings.Join(got, ",") + " != " + strings.Join(want[j], ",")
						return
					}
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Errorf("concurrent evaluation differs from sequential: %s", msg)
	}
}

// compileCatalog compiles the default catalog (rules/*.yaml).
func compileCatalog(tb testing.TB) *Engine {
	tb.Helper()
	rs, err := LoadFS(rules.FS, "*.yaml")
	if err != nil {
		tb.Fatalf("load the default catalog: %v", err)
	}
	e, err := Compile(rs)
	if err != nil {
		tb.Fatalf("compile the default catalog: %v", err)
	}
	return e
}

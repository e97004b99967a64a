package detect

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/cel-go/common/ast"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/rules"
)

// recordedEvents reads every event of the catalog's recorded fixtures
// (rules/testdata/*.jsonl, by file) and of the recorded host stream.
func recordedEvents(t *testing.T) map[string][]event.Event {
	t.Helper()
	out := map[string][]event.Event{}
	paths, err := filepath.Glob(filepath.Join("..", "..", "rules", "testdata", "*.jsonl"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no recorded fixtures in rules/testdata (%v)", err)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("read fixtures: %v", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			if len(bytes.TrimSpace(sc.Bytes())) == 0 {
				continue
			}
			var fx struct {
				Event event.Event `json:"event"`
			}
			if err := json.Unmarshal(sc.Bytes(), &fx); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			out[filepath.Base(p)] = append(out[filepath.Base(p)], fx.Event)
		}
	}
	f, err := os.Open(filepath.Join("..", "..", "rules", "testdata", "stream-host-build-and-web.jsonl.gz"))
	if err != nil {
		t.Fatalf("open the recorded stream: %v", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("read the recorded stream: %v", err)
	}
	dec := json.NewDecoder(zr)
	for {
		var ev event.Event
		if err := dec.Decode(&ev); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode the recorded stream: %v", err)
		}
		out["stream"] = append(out["stream"], ev)
	}
	return out
}

// variants returns ev and copies whose strings are changed in the ways the
// indexes must cope with: upper case (case-insensitive patterns), a
// non-ASCII character (which the folded literal index cannot judge), and
// text around the command line (anchors and word contexts).
func variants(ev event.Event) []event.Event {
	out := []event.Event{ev}
	mutate := func(f func(string) string) event.Event {
		c := ev
		c.Process.Args = nil
		for _, a := range ev.Process.Args {
			c.Process.Args = append(c.Process.Args, f(a))
		}
		c.Process.Exe = f(ev.Process.Exe)
		if ev.File != nil {
			fc := *ev.File
			fc.Path = f(fc.Path)
			c.File = &fc
		}
		if ev.Network != nil {
			nc := *ev.Network
			nc.DNSQuery = f(nc.DNSQuery)
			c.Network = &nc
		}
		if ev.Audit != nil {
			ac := *ev.Audit
			ac.UserAgent = f(ac.UserAgent)
			c.Audit = &ac
		}
		return c
	}
	out = append(out,
		mutate(strings.ToUpper),
		mutate(func(s string) string { return s + "\u212a" }), // KELVIN SIGN folds to k
		mutate(func(s string) string { return "x" + s + "x" }),
		mutate(func(s string) string { return strings.ReplaceAll(s, " ", "") }),
	)
	return out
}

// TestIndexesAndGatesNeverDropAMatchOnRecordedEvents compares the engine
// with every optimisation (literal index, membership index, name and
// literal gates, split regexps, native evaluation) against the plain CEL
// interpreter on every recorded event, including the attack fixtures that
// do match, and on variants of them.
func TestIndexesAndGatesNeverDropAMatchOnRecordedEvents(t *testing.T) {
	rs, err := LoadFS(rules.FS, "*.yaml")
	if err != nil {
		t.Fatalf("load the default catalog: %v", err)
	}
	if err := rs.AppendList("k8s_api_addresses", "test cluster", "10.96.0.1"); err != nil {
		t.Fatal(err)
	}
	native, err := Compile(rs)
	if err != nil {
		t.Fatal(err)
	}
	interp, err := Compile(rs, withoutNative())
	if err != nil {
		t.Fatal(err)
	}
	matchedBy := map[string]int{}
	for file, evs := range recordedEvents(t) {
		t.Run(file, func(t *testing.T) {
			for i := range evs {
				for j, ev := range variants(evs[i]) {
					got, want := matchIDs(native, &ev), matchIDs(interp, &ev)
					if !slices.Equal(got, want) {
						t.Errorf("event %d variant %d (%s %s %q): indexed engine matched %v, CEL matched %v",
							i+1, j, ev.Kind, ev.Process.Exe, ev.Process.Args, got, want)
					}
					for _, id := range got {
						matchedBy[id]++
					}
				}
			}
		})
	}
	// The comparison proves something for a gated rule only if some event
	// matches it.
	for _, cr := range native.all {
		if len(cr.gates) == 0 || !cr.rule.Enabled {
			continue
		}
		if matchedBy[cr.rule.ID] == 0 && cr.rule.ID != "vigil.node/ReconnaissanceBurst" {
			t.Errorf("rule %s is gated but no recorded event matches it: the comparison does not cover its gate", cr.rule.ID)
		}
	}
}

// TestCatalogRulesAreGatedOnCommandLineLiterals checks that the literal
// gates apply to the rules whose exec branch needs a command-line literal,
// so the test above covers them.
func TestCatalogRulesAreGatedOnCommandLineLiterals(t *testing.T) {
	e := compileCatalog(t)
	for _, id := range []string{"vigil.node/LdSoPreloadAccess", "vigil.node/KubeConfigAccess", "vigil.node/HistoryFileCleared"} {
		t.Run(id, func(t *testing.T) {
			for _, cr := range e.all {
				if cr.rule.ID != id {
					continue
				}
				g := cr.gates[event.KindExec]
				if g == nil || len(g.lits) == 0 {
					t.Fatalf("exec gate = %+v, want a gate on proc.cmdline literals", g)
				}
				return
			}
			t.Fatalf("rule %s is not in the catalog", id)
		})
	}
}

// TestCatalogPatternsAgreeWithRegexpOnRecordedStrings checks every
// matches() pattern of the catalog, in the split and bounded forms the
// engine runs them in, against the regexp package on every string of the
// recorded events (and variants).
func TestCatalogPatternsAgreeWithRegexpOnRecordedStrings(t *testing.T) {
	e := compileCatalog(t)
	patterns := map[string]bool{}
	var walk func(x ast.Expr)
	walk = func(x ast.Expr) {
		switch x.Kind() {
		case ast.CallKind:
			call := x.AsCall()
			if call.FunctionName() == "matches" {
				if lit, ok := stringLiteral(call.Args()[len(call.Args())-1]); ok {
					patterns[lit] = true
				}
			}
			if call.IsMemberFunction() {
				walk(call.Target())
			}
			for _, a := range call.Args() {
				walk(a)
			}
		case ast.ComprehensionKind:
			cx := x.AsComprehension()
			walk(cx.IterRange())
			walk(cx.LoopStep())
		case ast.SelectKind:
			walk(x.AsSelect().Operand())
		}
	}
	for _, cr := range e.all {
		walk(cr.checked.NativeRep().Expr())
	}
	if len(patterns) < 20 {
		t.Fatalf("found %d patterns in the catalog, expected many more", len(patterns))
	}
	seen := map[string]bool{}
	var inputs []string
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			inputs = append(inputs, s)
		}
	}
	for _, evs := range recordedEvents(t) {
		for i := range evs {
			for _, ev := range variants(evs[i]) {
				add(ev.Process.Exe)
				add(ev.Process.Comm)
				add(strings.Join(ev.Process.Args, " "))
				for _, a := range ev.Process.Args {
					add(a)
				}
				for _, a := range ev.Ancestry {
					add(a.Exe)
					add(baseName(a.Exe))
					add(strings.Join(a.Args, " "))
				}
				if ev.File != nil {
					add(ev.File.Path)
				}
				if ev.Network != nil {
					add(ev.Network.DNSQuery)
				}
				if ev.Audit != nil {
					add(ev.Audit.UserAgent)
					add(strings.ToLower(ev.Audit.UserAgent))
					for _, p := range ev.Audit.HostPaths {
						add(p)
					}
				}
			}
		}
	}
	split := 0
	for p := range patterns {
		f, err := compileFastRegexp(p)
		if err != nil {
			t.Fatalf("compile %q: %v", p, err)
		}
		if f.split {
			split++
		}
		re := regexp.MustCompile(p)
		for _, in := range inputs {
			if got, want := f.MatchString(in), re.MatchString(in); got != want {
				t.Errorf("pattern %q on %q: fast form %v, regexp %v", p, in, got, want)
			}
		}
	}
	if split < 10 {
		t.Errorf("%d catalog patterns use the split form, expected at least 10", split)
	}
}

func TestSplitAndBoundedPatternsAgreeWithRegexp(t *testing.T) {
	cases := []struct {
		pattern string
		split   bool // the pattern must be decided without (all of) the regexp
		inputs  []string
	}{
		{`(xmrig|minerd|t-rex)`, true, []string{"", "xmrig", "/opt/xmrig -o x", "XMRIG", "t-re", "at-rexx"}},
		{`(?i)socket|fsockopen|TCPSocket|IO::Socket`, true, []string{"SOCKET", "io::SoCkEt", "sock", "tcp\u212asocket", "fsockopen(", "so\u017fcket"}},
		{"(?i)\u212aelvin|temp", true, []string{"kelvin", "KELVIN", "\u212aelvin", "TEMP"}},
		{`(^|[ ;|&(/])(nc|ncat|netcat|socat)( |$)`, true, []string{"nc", "nc -e", "/bin/nc", "sync", "x;ncat 1", "ncx", "a nc", "(socat)", "éncat ", "nc\u00a0"}},
		{`(^|[ ;|&(/])(ba|da|z|k|a)?sh -i`, true, []string{"sh -i", "bash -i", "/bin/bash -i >&", "xsh -i", "zsh -ix", "fish -i", "ksh -"}},
		{`^(php-fpm|php|php-cgi|lsphp|httpd|apache2)[0-9.]*$`, true, []string{"php", "php8.2", "php-fpm8.1", "php-cgi", "phpx", "httpd2.4", "apache2", "xphp", "php8.2é"}},
		{`^(python[0-9.]*|perl[0-9.]*|ruby[0-9.]*|node|pwsh)$`, true, []string{"python", "python3.11", "perl5", "node", "nodejs", "pwsh", "pwsh7", "ruby3.", "py"}},
		{`^/(tmp|var/tmp|dev/shm|run/shm)/`, true, []string{"/tmp/x", "/tmp", "/var/tmp/", "x/tmp/", "/dev/shm/a", "/run/shmx/"}},
		{`kube-?hunter|peirates|(^|[^a-z])cdk/|rakkess`, true, []string{"kubehunter", "kube-hunter/1", "cdk/1", "xcdk/", "_cdk/", "écdk/", "rakkess", "peirate"}},
		{`(^|/)pip[0-9.]*$`, true, []string{"pip", "pip3", "/usr/bin/pip3.11", "xpip", "pipx", "pip3.11 "}},
		{`(?i)(password|passwd=|\.pem( |$)|api[_-]?key)`, true, []string{"PASSWORD", "x.pem", "x.pem y", "x.pemy", "API-KEY", "apikey", "api__key"}},
		{` --(donate-level|cpu-priority)([ =]|$)`, true, []string{"x --donate-level 1", "x --donate-level", "x --donate-levelx", "x --cpu-priority=5", "--donate-level"}},
		{`^/(healthz|livez|readyz|version)(/|\?|$)`, true, []string{"/healthz", "/healthz/x", "/healthz?v", "/healthzx", "x/healthz"}},
		{`(^|[ =.])4[0-9AB][1-9A-HJ-NP-Za-km-z]{3}($|[ .])`, false, []string{"44abc", "x=4Abcd", "4Abc", "4Ab0c"}},
	}
	for _, tc := range cases {
		t.Run(tc.pattern, func(t *testing.T) {
			f, err := compileFastRegexp(tc.pattern)
			if err != nil {
				t.Fatal(err)
			}
			if f.split != tc.split {
				t.Errorf("split form = %v, want %v", f.split, tc.split)
			}
			re := regexp.MustCompile(tc.pattern)
			for _, in := range append(tc.inputs, "\xff", "") {
				if got, want := f.MatchString(in), re.MatchString(in); got != want {
					t.Errorf("on %q: fast form %v, regexp %v", in, got, want)
				}
			}
		})
	}
}

func TestLiteralIndexFindsExactlyTheLiteralsASubstringSearchFinds(t *testing.T) {
	lits := []string{"--", " -a", " --algo", "xmrig", "history", "HIST", "/dev/", "tratum", "aa", "aaa", "ld.so.preload"}
	inputs := []string{"", "xmrig --algo=rx/0", "unset HISTFILE; history -c", "cat /etc/ld.so.preload", "aaaa", "a-a--a", "bash -i >& /dev/tcp/1/2",
		"STRATUM+tcp://", "xmRIG", "é--\xff", "a -a -a"}
	for _, fold := range []bool{false, true} {
		s := &litSubject{fold: fold, ids: map[string]int{}}
		for _, l := range lits {
			if fold {
				l = strings.ToLower(l)
			}
			if _, ok := s.ids[l]; !ok {
				s.ids[l] = len(s.lits)
				s.lits = append(s.lits, l)
			}
		}
		if !s.build() {
			t.Fatal("the automaton did not build")
		}
		for _, in := range inputs {
			var r litSet
			s.scan(in, &r)
			subject := in
			if fold {
				if strings.IndexFunc(in, func(r rune) bool { return r >= 0x80 }) >= 0 {
					if !r.unknown {
						t.Errorf("fold: %q has a non-ASCII byte but the scan claims to know its literals", in)
					}
					continue
				}
				subject = strings.ToLower(in)
			}
			if r.unknown {
				t.Errorf("fold=%v: %q scanned as unknown", fold, in)
			}
			for id, l := range s.lits {
				got := r.bits[id/64]&(1<<(id%64)) != 0
				if want := strings.Contains(subject, l); got != want {
					t.Errorf("fold=%v: literal %q in %q: index %v, strings.Contains %v", fold, l, in, got, want)
				}
			}
		}
	}
}

// TestPrefilteredConditionsMatchTheSameNativelyAndInCEL covers the shapes
// the indexes compile (several rules testing one subject, so that it is
// indexed) and string concatenation, natively and through CEL.
func TestPrefilteredConditionsMatchTheSameNativelyAndInCEL(t *testing.T) {
	lists := "- list: shells\n  items: [sh, bash]\n- list: tools\n  items: [curl, wget, bash]\n- list: prefixes\n  items: [/etc, /var/run]\n"
	conds := []string{
		`proc.cmdline.contains("--algo") || proc.cmdline.contains(" -a ")`,
		`proc.cmdline.contains("history") && proc.cmdline.matches(r'(^|[ ;&|])history -c')`,
		`proc.cmdline.matches(r'(?i)stratum\+(tcp|ssl)://')`,
		`proc.cmdline.matches(r'(xmrig|minerd)') && !proc.cmdline.contains("--version")`,
		`proc.name in shells && !(proc.name in tools)`,
		`proc.name in tools || proc.comm in shells`,
		`proc.name in ["sh", "dash"] && parent.name in shells`,
		`file.path.matches(r'^/etc/(shadow|gshadow)$') || prefixes.exists(d, file.path == d || file.path.startsWith(d + "/"))`,
		`prefixes.exists(d, file.path.endsWith(d + "/x") || file.path.contains("/" + d + "/"))`,
		`proc.cmdline.lowerAscii().contains("stratum") && parent.cmdline.lowerAscii() != proc.cmdline.lowerAscii()`,
		`size(proc.cmdline) > 14 && size(proc.args[1]) >= 5`,
		`size(proc.name) < 5 || size(proc.args[2]) <= 2`,
		`proc.args.exists(a, a == "install") && proc.args.exists(a, a.matches(r'(^|/)pip[0-9.]*$') || a == "pip")`,
		`proc.args.exists(a, a.contains("MARK-1234") || a.endsWith(".pem"))`,
	}
	var rulesYAML strings.Builder
	rulesYAML.WriteString(lists)
	for i, c := range conds {
		rulesYAML.WriteString(ruleYAML("t/R"+itoa(i), "exec, open", c))
	}
	native := compileFiles(t, nil, rulesYAML.String())
	interp := compileFiles(t, []Option{withoutNative()}, rulesYAML.String())
	if native.index[event.KindExec] == nil {
		t.Fatal("no exec rules compiled")
	}
	var evs []*event.Event
	for _, args := range [][]string{
		{"xmrig", "--algo", "rx/0"}, {"bash", "-c", "history -c"}, {"sh", "-c", "unset x;history -c"}, {"miner", "STRATUM+TCP://pool"},
		{"minerd", "--version"}, {"curl", "-a", "x"}, {"sh", "stratum\u212a"}, {"dash"}, {"bash", "-c", "xhistory -c"},
		{"ääää", "ääääü"}, {"python3", "äbcd", "üü"}, {"python3", "abcde", "xyz"}, {"ab", "äbcde"},
		{"pip3.11", "install", "x"}, {"python3", "-m", "pip", "install"}, {"python3", "/usr/bin/pip", "install"}, {"pipx", "install"},
		{"echo", "xMARK-1234x"}, {"cat", "key.pem"}, {"cat", "key.pem.bak"},
	} {
		ev := withAncestors(execEv("/usr/bin/"+args[0], args...), "/bin/bash", "/usr/bin/sh")
		ev.Parent = &event.ProcessRef{Exe: "/bin/bash", Comm: "bash", Args: []string{"bash", "STRATUM"}}
		evs = append(evs, ev)
	}
	for _, p := range []string{"/etc/shadow", "/etc/gshadow", "/etc", "/etc/passwd", "/var/run/x", "/var/runx", "/tmp/etc/x", "/x/etc/x"} {
		evs = append(evs, &event.Event{Kind: event.KindOpen, Process: event.Process{Exe: "/bin/cat", Comm: "cat"}, File: &event.File{Path: p}})
	}
	matched := 0
	for i, ev := range evs {
		got, want := matchIDs(native, ev), matchIDs(interp, ev)
		matched += len(got)
		if !slices.Equal(got, want) {
			t.Errorf("event %d (%s %q %+v): native matched %v, CEL matched %v", i, ev.Kind, ev.Process.Args, ev.File, got, want)
		}
	}
	if matched < len(conds) {
		t.Errorf("only %d matches over %d conditions: the comparison proves little", matched, len(conds))
	}
	// The argv loops are gated on command-line literals.
	for _, cr := range native.all {
		if strings.HasPrefix(cr.rule.Condition, "proc.args.exists") {
			if g := cr.gates[event.KindExec]; g == nil || len(g.lits) == 0 {
				t.Errorf("rule %s (%s): exec gate %+v, want command-line literals", cr.rule.ID, cr.rule.Condition, g)
			}
		}
	}
	// The concatenation conditions must run natively.
	for _, cr := range native.all {
		if cr.native == nil {
			t.Errorf("rule %s (%s) is not evaluated natively", cr.rule.ID, cr.rule.Condition)
		}
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

func TestConcurrentEvaluationOfRecordedEventsMatchesSequential(t *testing.T) {
	e := compileCatalog(t)
	var evs []event.Event
	for file, fevs := range recordedEvents(t) {
		if file != "stream" {
			evs = append(evs, fevs...)
		}
	}
	want := make([][]string, len(evs))
	matched := 0
	for i := range evs {
		want[i] = matchIDs(e, &evs[i])
		matched += len(want[i])
	}
	if matched == 0 {
		t.Fatal("no recorded event matched: the comparison proves nothing")
	}
	errs := make(chan string, 4)
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		// Each goroutine has its own events: Evaluate annotates an event
		// with threat-intelligence facts, like a sensor's one evaluation
		// of each event.
		own := slices.Clone(evs)
		for i := range own {
			own[i].Facts = slices.Clone(own[i].Facts)
		}
		go func(g int) {
			defer func() { done <- struct{}{} }()
			for i := range own {
				j := (i*7 + g*13) % len(own) // each goroutine in its own order
				if got := matchIDs(e, &own[j]); !slices.Equal(got, want[j]) {
					errs <- strings.Join(got, ",") + " != " + strings.Join(want[j], ",")
					return
				}
			}
		}(g)
	}
	for g := 0; g < 4; g++ {
		<-done
	}
	close(errs)
	for msg := range errs {
		t.Errorf("concurrent evaluation differs from sequential: %s", msg)
	}
}

// FuzzFastRegexpAgreesWithRegexp checks the prefiltered, split and bounded
// forms of arbitrary patterns against the regexp package.
func FuzzFastRegexpAgreesWithRegexp(f *testing.F) {
	for _, seed := range [][2]string{
		{`(^|[ ;|&(/])(nc|ncat)( |$)`, "x;nc -e"},
		{`^(php-fpm|php)[0-9.]*$`, "php8.2"},
		{`(?i)(secret|\.pem( |$)|api[_-]?key)`, "API_KEY"},
		{`kube-?hunter|(^|[^a-z])cdk/`, "écdk/"},
		{`^/(tmp|dev/shm)/`, "/tmp/x"},
		{`(xmrig|minerd)`, "XMRIG"},
		{` --(donate-level|nicehash)([ =]|$)`, "a --nicehash"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, pattern, in string) {
		re, err := regexp.Compile(pattern)
		if err != nil {
			return
		}
		fr, err := compileFastRegexp(pattern)
		if err != nil {
			t.Fatalf("regexp compiles %q but the fast form does not: %v", pattern, err)
		}
		if got, want := fr.MatchString(in), re.MatchString(in); got != want {
			t.Fatalf("pattern %q on %q: fast form %v, regexp %v", pattern, in, got, want)
		}
	})
}

package rules_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/rules"
)

// fixture is one recorded event with the exact set of rules expected to fire
// on it. Fixtures live in testdata/*.jsonl, one JSON object per line:
//
//	{"case": "...", "rules": ["vigil.node/X"], "expect": ["vigil.node/X"], "event": {...}}
//
// "rules" names the rules the case is about: it counts as a positive case
// for those in "expect" and as a negative case for the others. "event" is
// an event exactly as `vigil sensor --events-out` writes it.
type fixture struct {
	Case   string      `json:"case"`
	Rules  []string    `json:"rules"`
	Expect []string    `json:"expect"`
	Event  event.Event `json:"event"`

	file string
	line int
}

func (f fixture) where() string { return f.file + ":" + itoa(f.line) }

func itoa(n int) string {
	b := []byte{}
	if n == 0 {
		return "0"
	}
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

func compileCatalog(t *testing.T) *detect.Engine {
	t.Helper()
	rs, err := detect.LoadFS(rules.FS, "*.yaml")
	if err != nil {
		t.Fatalf("loading the default catalog: %v", err)
	}
	// The recorded events come from a cluster whose kubernetes service is
	// 10.96.0.1 (kubeadm's default), which the sensor would append from its
	// environment.
	if err := rs.AppendList("k8s_api_addresses", "test cluster", "10.96.0.1"); err != nil {
		t.Fatal(err)
	}
	eng, err := detect.Compile(rs)
	if err != nil {
		t.Fatalf("compiling the default catalog: %v", err)
	}
	return eng
}

func readFixtures(t *testing.T, pattern string) []fixture {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil {
		t.Fatalf("listing fixtures %s: %v", pattern, err)
	}
	if len(paths) == 0 {
		t.Fatalf("no fixtures match testdata/%s", pattern)
	}
	var out []fixture
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("reading fixtures: %v", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for n := 1; sc.Scan(); n++ {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 {
				continue
			}
			var fx fixture
			dec := json.NewDecoder(bytes.NewReader(line))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&fx); err != nil {
				t.Fatalf("%s:%d: bad fixture (fix the JSON; fields are case, rules, expect, event): %v", p, n, err)
			}
			if fx.Case == "" {
				t.Fatalf("%s:%d: fixture has no case name", p, n)
			}
			fx.file, fx.line = p, n
			out = append(out, fx)
		}
		if err := sc.Err(); err != nil {
			t.Fatalf("reading %s: %v", p, err)
		}
	}
	return out
}

// fired evaluates ev against the engine and returns the ids of the rules
// that matched, sorted, with their rules.
func fired(eng *detect.Engine, ev *event.Event) ([]string, []*detect.Rule) {
	var ids []string
	var rs []*detect.Rule
	eng.Evaluate(ev, func(r *detect.Rule, _ *event.Event) {
		ids = append(ids, r.ID)
		rs = append(rs, r)
	})
	slices.Sort(ids)
	return ids, rs
}

func sorted(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	if c == nil {
		c = []string{}
	}
	return c
}

func TestCatalogLoadsAndEveryRuleIsEnabledWithAStableID(t *testing.T) {
	eng := compileCatalog(t)
	rs := eng.Rules()
	if len(rs) < 40 {
		t.Fatalf("the default catalog has %d rules, want at least 40", len(rs))
	}
	// vigil.node/ for what happens on a node, vigil.cluster/ for what the
	// Kubernetes API server saw (audit events).
	idRe := regexp.MustCompile(`^vigil\.(node|cluster)/[A-Z][A-Za-z0-9]+$`)
	for _, r := range rs {
		if !idRe.MatchString(r.ID) {
			t.Errorf("%s (%s): id must look like vigil.node/PascalCaseName (or vigil.cluster/ for audit rules)", r.ID, r.Source)
		}
		if strings.HasPrefix(r.ID, "vigil.cluster/") != slices.Contains(r.Kinds, event.KindAudit) {
			t.Errorf("%s (%s): audit rules are vigil.cluster/, the others vigil.node/", r.ID, r.Source)
		}
		if !r.Enabled {
			t.Errorf("%s (%s): default rules are enabled by default", r.ID, r.Source)
		}
	}
}

func TestEveryRuleCarriesTheMetadataUsersRelyOn(t *testing.T) {
	eng := compileCatalog(t)
	technique := regexp.MustCompile(`^T[0-9]{4}(\.[0-9]{3})?$`)
	tactics := []string{"Reconnaissance", "ResourceDevelopment", "InitialAccess", "Execution", "Persistence",
		"PrivilegeEscalation", "DefenseEvasion", "CredentialAccess", "Discovery", "LateralMovement",
		"Collection", "CommandAndControl", "Exfiltration", "Impact"}
	tuning := regexp.MustCompile(`(?i)(false positive|exception|tuning)`)
	for _, r := range eng.Rules() {
		t.Run(r.ID, func(t *testing.T) {
			if strings.TrimSpace(r.Name) == "" {
				t.Errorf("%s: no display name", r.Source)
			}
			if len(r.Description) < 80 {
				t.Errorf("%s: description is %d characters, want at least 80 explaining the behaviour", r.Source, len(r.Description))
			}
			if !tuning.MatchString(r.Description) {
				t.Errorf("%s: description must give tuning advice and known false positives", r.Source)
			}
			if !slices.Contains([]string{alert.SeverityInformational, alert.SeverityLow, alert.SeverityMedium, alert.SeverityHigh}, r.Severity) {
				t.Errorf("%s: severity %q is not one of Informational, Low, Medium, High", r.Source, r.Severity)
			}
			if !slices.Contains([]string{detect.MaturityStable, detect.MaturityIncubating}, r.Maturity) {
				t.Errorf("%s: maturity %q; default rules are stable or incubating", r.Source, r.Maturity)
			}
			if len(r.Tactics) == 0 {
				t.Errorf("%s: no MITRE tactics", r.Source)
			}
			for _, ta := range r.Tactics {
				if !slices.Contains(tactics, ta) {
					t.Errorf("%s: tactic %q is not a MITRE ATT&CK tactic name", r.Source, ta)
				}
			}
			if len(r.Techniques) == 0 {
				t.Errorf("%s: no MITRE techniques", r.Source)
			}
			for _, te := range r.Techniques {
				if !technique.MatchString(te) {
					t.Errorf("%s: technique %q is not a MITRE id like T1059 or T1059.004", r.Source, te)
				}
			}
			if len(r.Kinds) == 0 {
				t.Errorf("%s: no event kinds", r.Source)
			}
			for _, k := range r.Kinds {
				if !slices.Contains(event.AllKinds, k) {
					t.Errorf("%s: unknown event kind %q", r.Source, k)
				}
			}
			if len(r.Remediation) == 0 {
				t.Errorf("%s: no remediation steps", r.Source)
			}
		})
	}
}

func TestRulesFireExactlyAsExpectedOnRecordedEvents(t *testing.T) {
	eng := compileCatalog(t)
	for _, fx := range readFixtures(t, "*.jsonl") {
		t.Run(fx.Case, func(t *testing.T) {
			ev := fx.Event
			got, _ := fired(eng, &ev)
			want := sorted(fx.Expect)
			if got == nil {
				got = []string{}
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s: fired %v, want exactly %v", fx.where(), got, want)
			}
		})
	}
}

func TestEveryRuleHasAPositiveAndANegativeRecordedCase(t *testing.T) {
	eng := compileCatalog(t)
	fxs := readFixtures(t, "*.jsonl")
	known := map[string]bool{}
	for _, r := range eng.Rules() {
		known[r.ID] = true
	}
	pos, neg := map[string]int{}, map[string]int{}
	for _, fx := range fxs {
		for _, id := range append(slices.Clone(fx.Rules), fx.Expect...) {
			if !known[id] {
				t.Errorf("%s: case %q names unknown rule %s", fx.where(), fx.Case, id)
			}
		}
		for _, id := range fx.Rules {
			if slices.Contains(fx.Expect, id) {
				pos[id]++
			} else {
				neg[id]++
			}
		}
	}
	for _, r := range eng.Rules() {
		if pos[r.ID] == 0 {
			t.Errorf("%s (%s) has no positive case: add an event it must fire on to testdata/*.jsonl", r.ID, r.Source)
		}
		if neg[r.ID] == 0 {
			t.Errorf("%s (%s) has no negative case: add a similar benign event it must not fire on", r.ID, r.Source)
		}
	}
}

// The benign runs are realistic event sequences of ordinary container work:
// nginx starting and serving requests, apt-get installing packages (dpkg,
// maintainer scripts, a system user, cron and sudoers files), and a C build
// (make, gcc, cc1, as, collect2, ld). They may raise Low alerts (a package
// manager in a container) but never a Medium or High one.
func TestBenignRunsRaiseNoHighOrMediumAlert(t *testing.T) {
	eng := compileCatalog(t)
	fxs := readFixtures(t, "benign-*.jsonl")
	if len(fxs) < 40 {
		t.Fatalf("only %d benign events; the benign runs should be realistic sequences", len(fxs))
	}
	for _, fx := range fxs {
		ev := fx.Event
		_, rs := fired(eng, &ev)
		for _, r := range rs {
			if r.Severity == alert.SeverityHigh || r.Severity == alert.SeverityMedium {
				t.Errorf("%s: benign event %q raised %s alert %s (%s)", fx.where(), fx.Case, r.Severity, r.ID, r.Name)
			}
		}
	}
}

func TestAMinerRenamedPauseIsCaught(t *testing.T) {
	eng := compileCatalog(t)
	shim := event.ProcessRef{PID: 2211, Exe: "/usr/bin/containerd-shim-runc-v2", Comm: "containerd-shim"}
	ctr := &event.Container{ID: "c0ffee", Runtime: "containerd", Image: "registry.example.com/app:1"}
	cases := []struct {
		name string
		proc event.Process
		want []string
	}{
		{
			name: "a miner binary named pause with a stratum url",
			proc: event.Process{PID: 1, Comm: "pause", Exe: "/pause",
				Args: []string{"/pause", "-o", "stratum+tcp://203.0.113.7:3333", "-u", "wallet", "--donate-level", "1"}},
			want: []string{"vigil.node/DigitalCurrencyMining", "vigil.node/ProcessMasquerade"},
		},
		{
			name: "a miner named pause with rx/0 and no url",
			proc: event.Process{PID: 1, Comm: "pause", Exe: "/pause", Args: []string{"/pause", "-a", "rx/0", "--coin", "XMR"}},
			want: []string{"vigil.node/DigitalCurrencyMining", "vigil.node/ProcessMasquerade"},
		},
		{
			name: "xmrig started through a link called pause",
			proc: event.Process{PID: 1, Comm: "pause", Exe: "/usr/local/bin/xmrig", Args: []string{"pause"}},
			want: []string{"vigil.node/CryptoCoinMinerArtifacts", "vigil.node/ProcessMasquerade"},
		},
		{
			name: "the real sandbox pause",
			proc: event.Process{PID: 1, Comm: "pause", Exe: "/pause", Args: []string{"/pause"}},
			want: []string{},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := &event.Event{Kind: event.KindExec, Process: c.proc, Parent: &shim, Ancestry: []event.ProcessRef{shim}, Container: ctr}
			got, rs := fired(eng, ev)
			if got == nil {
				got = []string{}
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("fired %v, want %v", got, c.want)
			}
			for _, r := range rs {
				if r.ID == "vigil.node/DigitalCurrencyMining" && r.Severity != alert.SeverityHigh {
					t.Errorf("mining alert severity %s, want High", r.Severity)
				}
			}
		})
	}
}

func TestTheTestAlertFiresOnTheMarkerAsAHighNonThreat(t *testing.T) {
	eng := compileCatalog(t)
	ev := &event.Event{
		Kind:      event.KindExec,
		Process:   event.Process{PID: 77, Comm: "sh", Exe: "/usr/bin/dash", Args: []string{"sh", "-c", "echo VIGIL-TEST-ALERT-7f3b"}},
		Container: &event.Container{ID: "c0ffee", Runtime: "containerd"},
	}
	_, rs := fired(eng, ev)
	if len(rs) != 1 || rs[0].ID != "vigil.node/TestAlert" {
		t.Fatalf("fired %v, want only vigil.node/TestAlert", rs)
	}
	if rs[0].Name != "vigil test alert (not a threat)" || rs[0].Severity != alert.SeverityHigh {
		t.Errorf("test alert is %q/%s, want %q/High", rs[0].Name, rs[0].Severity, "vigil test alert (not a threat)")
	}
}

// catalogWith returns the default catalog plus one user rule file (loaded
// last, as a user's rule directory would be).
func catalogWith(t *testing.T, user string) fs.FS {
	t.Helper()
	m := fstest.MapFS{}
	names, err := fs.Glob(rules.FS, "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		b, err := fs.ReadFile(rules.FS, n)
		if err != nil {
			t.Fatal(err)
		}
		m[n] = &fstest.MapFile{Data: b}
	}
	m["zz-user.yaml"] = &fstest.MapFile{Data: []byte(user)}
	return m
}

func TestUsersCannotTrustAMinerByNameButCanExceptAnImageAndExecutable(t *testing.T) {
	miner := &event.Event{
		Kind:      event.KindExec,
		Process:   event.Process{PID: 1, Comm: "pause", Exe: "/pause", Args: []string{"/pause", "-o", "stratum+tcp://203.0.113.7:3333"}},
		Container: &event.Container{ID: "c0ffee", Runtime: "containerd", Image: "registry.example.com/bench:1"},
	}
	t.Run("an exception on the process name alone is rejected", func(t *testing.T) {
		_, err := detect.LoadFS(catalogWith(t, `
- rule: vigil.node/DigitalCurrencyMining
  exceptions_append:
    - name: trust_pause
      fields: [proc.name]
      values: [[pause]]
`), "*.yaml")
		if err == nil {
			t.Fatal("an exception trusting proc.name loaded; it must be rejected")
		}
		if !strings.Contains(err.Error(), "zz-user.yaml") || !strings.Contains(err.Error(), "proc.name") {
			t.Errorf("the error should point at the user file and the proc.name field: %v", err)
		}
	})
	t.Run("an exception on image and executable path silences only that workload", func(t *testing.T) {
		rs, err := detect.LoadFS(catalogWith(t, `
- rule: vigil.node/DigitalCurrencyMining
  exceptions_append:
    - name: sanctioned_benchmark
      fields: [container.image, proc.exe]
      values: [[registry.example.com/bench:1, /pause]]
`), "*.yaml")
		if err != nil {
			t.Fatalf("loading a user exception: %v", err)
		}
		eng, err := detect.Compile(rs)
		if err != nil {
			t.Fatalf("compiling with a user exception: %v", err)
		}
		if got, _ := fired(eng, miner); slices.Contains(got, "vigil.node/DigitalCurrencyMining") {
			t.Errorf("the excepted workload still raised mining: %v", got)
		}
		other := *miner
		other.Container = &event.Container{ID: "d00d", Runtime: "containerd", Image: "registry.example.com/web:2"}
		if got, _ := fired(eng, &other); !slices.Contains(got, "vigil.node/DigitalCurrencyMining") {
			t.Errorf("another image running the same miner was silenced too: %v", got)
		}
	})
}

// BenchmarkCatalogOnRecordedEvents evaluates every recorded event against
// the full default catalog.
func BenchmarkCatalogOnRecordedEvents(b *testing.B) {
	rs, err := detect.LoadFS(rules.FS, "*.yaml")
	if err != nil {
		b.Fatal(err)
	}
	eng, err := detect.Compile(rs)
	if err != nil {
		b.Fatal(err)
	}
	var benign, attacks []event.Event
	paths, _ := filepath.Glob(filepath.Join("testdata", "*.jsonl"))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			var fx fixture
			if err := json.Unmarshal(line, &fx); err != nil {
				b.Fatal(err)
			}
			if strings.HasPrefix(filepath.Base(p), "benign-") {
				benign = append(benign, fx.Event)
			} else {
				attacks = append(attacks, fx.Event)
			}
		}
	}
	stream := readStream(b, filepath.Join("testdata", "stream-host-build-and-web.jsonl.gz"))
	var realistic []event.Event
	for i := 0; len(realistic) < 100*len(attacks); i++ {
		realistic = append(realistic, benign[i%len(benign)])
		if i%99 == 98 {
			realistic = append(realistic, attacks[(i/99)%len(attacks)])
		}
	}
	for _, bc := range []struct {
		name string
		evs  []event.Event
	}{{"stream", stream}, {"benign", benign}, {"realistic", realistic}, {"attacks", attacks}} {
		b.Run(bc.name, func(b *testing.B) {
			n := 0
			count := func(*detect.Rule, *event.Event) { n++ }
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				eng.Evaluate(&bc.evs[i%len(bc.evs)], count)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// readStream reads a gzipped event stream recorded with `vigil sensor
// --events-out` (see testdata/README.md).
func readStream(tb testing.TB, path string) []event.Event {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	var evs []event.Event
	dec := json.NewDecoder(zr)
	for {
		var ev event.Event
		if err := dec.Decode(&ev); err == io.EOF {
			break
		} else if err != nil {
			tb.Fatalf("%s: event %d: %v", path, len(evs)+1, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

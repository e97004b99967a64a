package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRulesListShowsTheDefaultCatalog(t *testing.T) {
	code, out, errs := run(t, "rules", "list")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"ID", "vigil.node/TestAlert", "vigil.node/DigitalCurrencyMining", "High"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q", want)
		}
	}
}

func TestRulesShowPrintsOneRuleAndSuggestsOnTypos(t *testing.T) {
	code, out, errs := run(t, "rules", "show", "vigil.node/TestAlert")
	if code != 0 || !strings.Contains(out, "VIGIL-TEST-ALERT-7f3b") {
		t.Fatalf("exit %d, out %q, err %q", code, out, errs)
	}
	code, _, errs = run(t, "rules", "show", "testalert")
	if code == 0 || !strings.Contains(errs, "did you mean: vigil.node/TestAlert") {
		t.Fatalf("exit %d, err %q: want a suggestion", code, errs)
	}
}

func TestRulesValidateReportsFileLineAndColumn(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.yaml", `
- rule: site/CurlInContainer
  name: curl ran in a container
  description: curl in a container is unusual for our workloads; exclude images that need it with exceptions.
  severity: Low
  tactics: [CommandAndControl]
  events: [exec]
  condition: '!container.host && proc.name == "curl"'
  remediation: [Check why curl ran.]
`)
	bad := writeFile(t, dir, "bad.yaml", `
- rule: site/Typo
  name: typo
  description: a rule with a misspelt field, to prove the position is reported to the user.
  severity: Low
  tactics: [Execution]
  events: [exec]
  condition: proc.exee == "/bin/sh"
`)
	code, out, errs := run(t, "rules", "validate", good)
	if code != 0 || !strings.Contains(out, "ok:") {
		t.Fatalf("valid file: exit %d out %q err %q", code, out, errs)
	}
	code, _, errs = run(t, "rules", "validate", bad)
	if code == 0 {
		t.Fatal("a misspelt field validated")
	}
	if !strings.Contains(errs, "bad.yaml:8:") || !strings.Contains(errs, "exee") {
		t.Fatalf("error %q does not name bad.yaml line 8 and the field", errs)
	}
}

func TestRulesTestReplaysRecordedEvents(t *testing.T) {
	dir := t.TempDir()
	evs := []event.Event{
		{Kind: event.KindExec, Time: time.Now(), Process: event.Process{PID: 10, Exe: "/bin/echo", Args: []string{"echo", "VIGIL-TEST-ALERT-7f3b"}},
			Container: &event.Container{ID: "abc", Runtime: "containerd"}},
		{Kind: event.KindExec, Time: time.Now(), Process: event.Process{PID: 11, Exe: "/bin/date", Args: []string{"date"}},
			Container: &event.Container{ID: "abc", Runtime: "containerd"}},
	}
	var buf bytes.Buffer
	for _, ev := range evs {
		b, _ := json.Marshal(ev)
		buf.Write(append(b, '\n'))
	}
	path := writeFile(t, dir, "events.jsonl", buf.String())
	code, out, errs := run(t, "rules", "test", "--events", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "vigil.node/TestAlert") || !strings.Contains(out, "2 events replayed, 1 matches") {
		t.Fatalf("output %q: want exactly the test alert", out)
	}

	bad := writeFile(t, dir, "bad.jsonl", "{not json}\n")
	code, _, errs = run(t, "rules", "test", "--events", bad)
	if code == 0 || !strings.Contains(errs, "line 1") {
		t.Fatalf("exit %d err %q: want the bad line named", code, errs)
	}
}

func TestKubernetesAPIAddressesFromTheFlagAndTheEnvironmentReachTheRules(t *testing.T) {
	dir := t.TempDir()
	ev := event.Event{Kind: event.KindConnect, Time: time.Now(),
		Process:   event.Process{PID: 12, Comm: "curl", Exe: "/usr/bin/curl", Args: []string{"curl", "-k", "https://10.43.0.1/api"}},
		Container: &event.Container{ID: "abc", Runtime: "containerd"},
		Network:   &event.Network{Family: "ipv4", Protocol: "tcp", DstIP: "10.43.0.1", DstPort: 443}}
	b, _ := json.Marshal(ev)
	path := writeFile(t, dir, "events.jsonl", string(b)+"\n")
	cases := []struct {
		name    string
		env     string
		args    []string
		matches bool
	}{
		{name: "without a known API address curl to an IP is not an API request", args: nil, matches: false},
		{name: "the --kubernetes-api flag names the API service", args: []string{"--kubernetes-api", "10.43.0.1"}, matches: true},
		{name: "KUBERNETES_SERVICE_HOST names the API service", env: "10.43.0.1", matches: true},
		{name: "another address is not the API", args: []string{"--kubernetes-api", "10.43.0.2"}, matches: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KUBERNETES_SERVICE_HOST", tc.env)
			code, out, errs := run(t, append([]string{"rules", "test", "--events", path}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			if got := strings.Contains(out, "vigil.node/KubernetesAPIAccess"); got != tc.matches {
				t.Fatalf("KubernetesAPIAccess matched = %v, want %v; output:\n%s", got, tc.matches, out)
			}
		})
	}
	code, _, errs := run(t, "rules", "test", "--events", path, "--kubernetes-api", "api.example")
	if code == 0 || !strings.Contains(errs, `--kubernetes-api "api.example": not an IP address`) {
		t.Fatalf("exit %d err %q: want the bad address named", code, errs)
	}
}

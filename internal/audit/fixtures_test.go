package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"testing"

	"github.com/vigil-sec/vigil/internal/output"
)

var updateFixtures = flag.Bool("update", false, "rewrite rules/testdata/audit.jsonl from testdata/rule-cases.jsonl")

const ruleFixtures = "../../rules/testdata/audit.jsonl"

// ruleCase is one line of testdata/rule-cases.jsonl: a raw audit.k8s.io/v1
// Event as the API server writes it, with the rules it is about and those
// expected to fire (the rules package checks the expectation).
type ruleCase struct {
	Case   string          `json:"case"`
	Rules  []string        `json:"rules"`
	Expect []string        `json:"expect"`
	Audit  json.RawMessage `json:"audit"`
}

// renderRuleFixtures converts the raw audit events into the rule fixtures
// (what `vigil audit --events-out` would write for them).
func renderRuleFixtures(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/rule-cases.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		var rc ruleCase
		if err := json.Unmarshal(sc.Bytes(), &rc); err != nil {
			t.Fatalf("testdata/rule-cases.jsonl:%d: %v", n, err)
		}
		ev, err := ParseEvent(rc.Audit, SourceLog)
		if err != nil {
			t.Fatalf("testdata/rule-cases.jsonl:%d (%s): %v", n, rc.Case, err)
		}
		evJSON, err := output.AppendEvent(nil, ev)
		if err != nil {
			t.Fatal(err)
		}
		line, err := json.Marshal(struct {
			Case   string          `json:"case"`
			Rules  []string        `json:"rules"`
			Expect []string        `json:"expect"`
			Event  json.RawMessage `json:"event"`
		}{rc.Case, rc.Rules, nonNil(rc.Expect), evJSON})
		if err != nil {
			t.Fatal(err)
		}
		out.Write(line)
		out.WriteByte('\n')
	}
	return out.Bytes()
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// TestRuleFixturesAreTheParsedRawAuditEvents keeps the audit rule fixtures
// (rules/testdata/audit.jsonl) equal to what the parser makes of the raw
// audit events they come from, so the rules are tested on what the
// collector really produces. Run `go test ./internal/audit -run
// TestRuleFixtures -update` after changing the raw cases or the parser.
func TestRuleFixturesAreTheParsedRawAuditEvents(t *testing.T) {
	want := renderRuleFixtures(t)
	if *updateFixtures {
		if err := os.WriteFile(ruleFixtures, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(ruleFixtures)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/audit -run TestRuleFixtures -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is out of date with internal/audit/testdata/rule-cases.jsonl; run go test ./internal/audit -run TestRuleFixtures -update", ruleFixtures)
	}
}

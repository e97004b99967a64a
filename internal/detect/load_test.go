package detect

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/event"
)

func mapFS(files map[string]string) fstest.MapFS {
	m := fstest.MapFS{}
	for n, d := range files {
		m[n] = &fstest.MapFile{Data: []byte(d)}
	}
	return m
}

const goodRule = `- rule: test/Good
  name: Good rule
  description: fires on exec of /bin/good
  severity: Low
  events: [exec]
  condition: proc.exe == "/bin/good"
`

func TestLoadReportsErrorsWithPosition(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error
	}{
		{"a misspelled key is named with its position and a suggestion", `- rule: test/X
  name: X
  description: d
  severity: High
  events: [exec]
  conditon: proc.exe == "/x"
`, []string{"a.yaml:6:3: unknown key 'conditon' in rule test/X — did you mean 'condition'?"}},
		{"a missing required key is reported at the rule", `- rule: test/X
  name: X
  severity: High
  events: [exec]
  condition: proc.exe == "/x"
`, []string{"a.yaml:1:3: rule test/X: missing required key 'description'"}},
		{"an invalid severity suggests the closest one", `- rule: test/X
  name: X
  description: d
  severity: Hgh
  events: [exec]
  condition: proc.exe == "/x"
`, []string{"a.yaml:4:13: rule test/X: invalid severity \"Hgh\"", "did you mean 'High'?"}},
		{"an invalid maturity lists the valid ones", `- rule: test/X
  name: X
  description: d
  severity: High
  maturity: beta
  events: [exec]
  condition: proc.exe == "/x"
`, []string{"a.yaml:5:13: rule test/X: invalid maturity \"beta\"; use one of stable, incubating, sandbox"}},
		{"an unknown event kind is reported at the item", `- rule: test/X
  name: X
  description: d
  severity: High
  events: [exec, conect]
  condition: proc.exe == "/x"
`, []string{"a.yaml:5:18: rule test/X: unknown event kind \"conect\"", "did you mean 'connect'?"}},
		{"an exception on the process name alone is rejected with advice", goodRule + `  exceptions:
    - name: trust_pause
      fields: [proc.name]
      values: [[pause]]
`, []string{"a.yaml:9:15:", "exception \"trust_pause\": an exception on proc.name alone is rejected", "proc.exe"}},
		{"an exception on comm and parent name is rejected too", goodRule + `  exceptions:
    - name: names
      fields: [proc.comm, parent.name]
      values: [[pause, containerd-shim]]
`, []string{"an exception on proc.comm + parent.name alone is rejected"}},
		{"an exception tuple of the wrong length is reported", goodRule + `  exceptions:
    - name: pairs
      fields: [container.image, proc.exe]
      values: [[registry.local/bench:1]]
`, []string{"a.yaml:10:16:", "tuple has 1 values but fields has 2"}},
		{"an exception on an unknown field suggests the right one", goodRule + `  exceptions:
    - name: img
      fields: [container.imag]
      values: [[x]]
`, []string{"a.yaml:9:16:", "unknown field \"container.imag\"", "did you mean 'container.image'?"}},
		{"an integer field needs integer exception values", goodRule + `  exceptions:
    - name: uid
      fields: [proc.exe, proc.uid]
      values: [[/bin/good, root]]
`, []string{"field proc.uid is an integer but value \"root\" is not"}},
		{"an override with a misspelled key is reported inside override", goodRule + `- rule: test/Good
  override: {enabeld: false}
`, []string{"a.yaml:8:14: unknown key 'enabeld' in rule test/Good override — did you mean 'enabled'?"}},
		{"keys next to override are rejected with advice", goodRule + `- rule: test/Good
  override: {enabled: false}
  severity: High
`, []string{"a.yaml:9:3:", "put keys to replace inside override"}},
		{"an entry that is neither rule, list nor macro is reported", `- rul: test/X
  name: X
`, []string{"a.yaml:1:3: unknown key 'rul' at the start of an entry — did you mean 'rule'?"}},
		{"invalid YAML is reported with the file", "- rule: [unclosed\n", []string{"a.yaml: invalid YAML"}},
		{"a duplicate key is reported", `- list: l
  items: [a]
  items: [b]
`, []string{"a.yaml:3:3: duplicate key 'items'"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadFS(mapFS(map[string]string{"a.yaml": tc.yaml}))
			if err == nil {
				t.Fatalf("LoadFS succeeded; want errors %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\ndoes not contain\n%s", err, w)
				}
			}
		})
	}
}

func TestLoadKeepsGoodEntriesWhenAFileIsBad(t *testing.T) {
	rs, err := LoadFS(mapFS(map[string]string{
		"a.yaml": goodRule,
		"b.yaml": "- rule: test/Bad\n  name: B\n",
		"c.yaml": strings.ReplaceAll(goodRule, "test/Good", "test/AlsoGood"),
	}))
	if err == nil {
		t.Fatal("want an error for b.yaml")
	}
	if !strings.Contains(err.Error(), "b.yaml:1:3") {
		t.Errorf("error does not name b.yaml:1:3: %v", err)
	}
	var ids []string
	for _, r := range rs.Rules() {
		ids = append(ids, r.ID)
	}
	if strings.Join(ids, ",") != "test/AlsoGood,test/Good" {
		t.Errorf("rules after a bad file = %v, want test/AlsoGood,test/Good", ids)
	}
}

func TestLoadFilesReadsDirectoriesInOrder(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir+"/10-base.yaml", goodRule)
	writeFile(t, dir+"/20-user.yml", "- rule: test/Good\n  override: {severity: High}\n")
	writeFile(t, dir+"/README.md", "not rules")
	rs, err := LoadFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := rs.Rules()[0]
	if r.Severity != alert.SeverityHigh {
		t.Errorf("severity = %s, want the override from 20-user.yml (High)", r.Severity)
	}
	if r.Source.File != dir+"/10-base.yaml" || r.Source.Line != 1 {
		t.Errorf("source = %v, want the defining file", r.Source)
	}
	if _, err := LoadFiles(dir + "/missing"); err == nil || !strings.Contains(err.Error(), "pass an existing rule file or directory") {
		t.Errorf("missing path error = %v", err)
	}
}

func TestAppendListAddsItemsTheRulesThenMatch(t *testing.T) {
	rs, err := LoadFS(mapFS(map[string]string{"a.yaml": `- list: api_ips
  items: []
- rule: test/API
  name: API contact
  description: connect to a listed address
  severity: Low
  events: [connect]
  condition: net.dstIP in api_ips
`}))
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.AppendList("no_such_list", "--flag", "10.0.0.1"); err == nil || !strings.Contains(err.Error(), `--flag: append to list "no_such_list"`) {
		t.Fatalf("append to an undefined list: err = %v, want it named with its source", err)
	}
	if err := rs.AppendList("api_ips", "--flag", "10.96.0.1"); err != nil {
		t.Fatal(err)
	}
	e, err := Compile(rs)
	if err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]bool{"10.96.0.1": true, "10.96.0.2": false} {
		ev := &event.Event{Kind: event.KindConnect, Network: &event.Network{DstIP: ip, DstPort: 443}}
		got := false
		e.Evaluate(ev, func(*Rule, *event.Event) { got = true })
		if got != want {
			t.Errorf("connect to %s matched = %v, want %v", ip, got, want)
		}
	}
}

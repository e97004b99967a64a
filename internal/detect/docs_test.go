package detect

import (
	"os"
	"strings"
	"testing"
)

// TestDocsDescribeTheVocabulary keeps docs/rules.md in step with the code:
// every field rules can use is documented with its type, and the examples
// compile.
func TestDocsDescribeTheVocabulary(t *testing.T) {
	b, err := os.ReadFile("../../docs/rules.md")
	if err != nil {
		t.Fatalf("read docs/rules.md: %v", err)
	}
	doc := string(b)
	v := newVocabulary()
	check := func(obj, name string, typ valType) {
		if !strings.Contains(doc, "| `"+obj+"."+name+"` | "+typ.String()+" |") {
			t.Errorf("docs/rules.md does not document %s.%s (%s)", obj, name, typ)
		}
	}
	for k, f := range v.proc {
		check("proc", k, f.t)
	}
	for k, f := range v.container {
		check("container", k, f.t)
	}
	for k, f := range v.net {
		check("net", k, f.t)
	}
	for k, f := range v.file {
		check("file", k, f.t)
	}
	for k, f := range v.sys {
		check("sys", k, f.t)
	}
	for k, f := range v.audit {
		check("audit", k, f.t)
	}
	_, ex, ok := strings.Cut(doc, "### Examples\n\n```\n")
	if !ok {
		t.Fatal("docs/rules.md has no Examples block")
	}
	ex, _, _ = strings.Cut(ex, "```")
	lists := "- list: shells\n  items: [sh]\n- list: web_servers\n  items: [nginx]\n- list: pool_ports\n  items: [3333]\n"
	for i, cond := range strings.Split(strings.TrimSpace(ex), "\n") {
		compileFiles(t, nil, lists+ruleYAML("doc/Example"+string(rune('A'+i)), "exec", cond))
	}
}

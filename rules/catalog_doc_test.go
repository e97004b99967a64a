package rules_test

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/rules"
)

// catalogDocPath is docs/rule-catalog.md, relative to this package (tests
// run with the package directory as the working directory).
const catalogDocPath = "../docs/rule-catalog.md"

var updateCatalogDoc = flag.Bool("update", false, "rewrite docs/rule-catalog.md from the default rule catalog")

// TestCatalogDoc keeps docs/rule-catalog.md exactly in step with the
// embedded catalog. Run `go test ./rules -run TestCatalogDoc -update` after
// changing a rule file to regenerate it.
func TestCatalogDoc(t *testing.T) {
	want, err := renderCatalogDoc(rules.FS, "*.yaml")
	if err != nil {
		t.Fatalf("rendering the rule catalog reference: %v", err)
	}
	if *updateCatalogDoc {
		if err := os.WriteFile(catalogDocPath, want, 0o644); err != nil {
			t.Fatalf("writing %s: %v", catalogDocPath, err)
		}
		t.Logf("wrote %s (%d bytes)", catalogDocPath, len(want))
		return
	}
	got, err := os.ReadFile(catalogDocPath)
	if err != nil {
		t.Fatalf("reading %s: %v (run go test ./rules -run TestCatalogDoc -update to generate it)", catalogDocPath, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("docs/rule-catalog.md is out of date with rules/*.yaml (%s); run go test ./rules -run TestCatalogDoc -update",
			firstDifference(got, want))
	}
}

func TestCatalogDocRendersWhatUsersNeedToTuneARule(t *testing.T) {
	user := fstest.MapFS{
		"a-shells.yaml": &fstest.MapFile{Data: []byte(`# Shells and | pipes. More about them.

- rule: doc.test/ShellSpawned
  name: Shell | spawned
  description: >
    A shell started in a container (sh -c 'curl -u <user> ... *.pem'). Known false positives:
    entrypoint scripts; add an exception on ` + "`container.image`" + ` plus proc_exe.
  severity: Medium
  maturity: incubating
  tactics: [Execution]
  techniques: [T1059.004]
  events: [exec]
  enabled: false
  condition: |
    proc.name == "sh"
    && !container.host
  exceptions:
    - name: trusted_entrypoints
      fields: [container.image, proc.exe]
      values:
        - [registry.local/app:1, [/bin/sh, /bin/dash]]
  remediation:
    - Check the parent process.
`)},
		"b-net.yaml": &fstest.MapFile{Data: []byte(`- rule: doc.test/Connect
  name: Outbound connection
  description: An outbound connection was made by a process; tuning - add an exception on the image.
  severity: Low
  tactics: [CommandAndControl]
  techniques: [T1071]
  events: [connect]
  condition: net.dstPort == 4444
  remediation: [Block the port.]
`)},
	}
	doc, err := renderCatalogDoc(user, "*.yaml")
	if err != nil {
		t.Fatalf("rendering a small catalog: %v", err)
	}
	s := string(doc)
	cases := []struct {
		name string
		want string
	}{
		{"the summary links each rule and escapes pipes in names", "| [`doc.test/ShellSpawned`](#doctestshellspawned) | Shell \\| spawned | Medium | incubating | Execution |"},
		{"a category is titled by its file and its header comment", "## a-shells.yaml: Shells and | pipes\n"},
		{"a file without a header comment still gets a category", "## b-net.yaml\n"},
		{"description text shows as written, code spans untouched", "(sh -c 'curl -u \\<user\\> ... \\*.pem'). Known false positives: entrypoint scripts; add an exception on `container.image` plus proc\\_exe."},
		{"a disabled rule says so", "| Enabled | no (enable with `override: {enabled: true}`) |"},
		{"an enabled rule says so", "| Enabled | yes |"},
		{"techniques link to MITRE ATT&CK", "[T1059.004](https://attack.mitre.org/techniques/T1059/004/)"},
		{"event kinds are listed", "| Events | `exec` |"},
		{"exceptions show their fields and trusted values", "- `trusted_entrypoints` on `container.image`, `proc.exe`:\n  - `registry.local/app:1`, any of [`/bin/sh`, `/bin/dash`]"},
		{"a rule without exceptions says how to add one", "None. Add one with `exceptions_append`"},
		{"the condition is shown as written", "```\nproc.name == \"sh\"\n&& !container.host\n```"},
		{"remediation steps are numbered", "1. Check the parent process."},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(s, c.want) {
				t.Errorf("the rendered catalog lacks %q:\n%s", c.want, s)
			}
		})
	}
	t.Run("categories follow file order", func(t *testing.T) {
		a, b := strings.Index(s, "## a-shells.yaml"), strings.Index(s, "## b-net.yaml")
		if a < 0 || b < 0 || a > b {
			t.Errorf("a-shells.yaml (at %d) should come before b-net.yaml (at %d)", a, b)
		}
	})
}

// catalogCategory is the rules of one rule file (or, for rules without a
// source file, of one id prefix).
type catalogCategory struct {
	key   string
	title string
	rules []*detect.Rule
}

// renderCatalogDoc loads and compiles the rule files of fsys matching
// patterns and renders the Markdown reference of every rule.
func renderCatalogDoc(fsys fs.FS, patterns ...string) ([]byte, error) {
	rs, err := detect.LoadFS(fsys, patterns...)
	if err != nil {
		return nil, fmt.Errorf("load rule files: %w", err)
	}
	eng, err := detect.Compile(rs)
	if err != nil {
		return nil, fmt.Errorf("compile rule files: %w", err)
	}
	all := slices.Clone(eng.Rules())
	slices.SortFunc(all, func(a, b *detect.Rule) int { return strings.Compare(a.ID, b.ID) })

	byKey := map[string]*catalogCategory{}
	var cats []*catalogCategory
	for _, r := range all {
		key, title := ruleCategory(fsys, r)
		c, ok := byKey[key]
		if !ok {
			c = &catalogCategory{key: key, title: title}
			byKey[key] = c
			cats = append(cats, c)
		}
		c.rules = append(c.rules, r)
	}
	slices.SortFunc(cats, func(a, b *catalogCategory) int { return strings.Compare(a.key, b.key) })

	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# Default rule catalog\n\n")
	w("<!-- Generated from rules/*.yaml by `go test ./rules -run TestCatalogDoc -update`. Do not edit by hand. -->\n\n")
	w("vigil's default detection rules, embedded in the binary from `rules/*.yaml`: %d rules in %d files.\n", len(all), len(cats))
	w("The rule language (conditions, fields, lists, macros) is described in [rules.md](rules.md).\n\n")
	w("## Tuning\n\n")
	w("Do not edit the default files: put changes in your own rule file, loaded after the defaults\n")
	w("(see [Changing existing rules](rules.md#changing-existing-rules)).\n\n")
	w("- **Silence a known-good workload** with `exceptions_append`, on the image and the executable's\n")
	w("  full path rather than a process name (exceptions on names alone are rejected; see\n")
	w("  [Exceptions](rules.md#exceptions)). Each rule's description lists its known false positives.\n")
	w("- **Change severity, condition or other keys** with `override`.\n")
	w("- **Disable a rule** with `override: {enabled: false}` - prefer an exception: a disabled rule\n")
	w("  also misses the attacks it was written for.\n")
	w("- **Extend a list** (for example trusted images or paths) with `append: true`; every rule using it follows.\n\n")
	w("```yaml\n")
	w("- rule: vigil.node/RuleId\n")
	w("  exceptions_append:\n")
	w("    - name: our_workload\n")
	w("      fields: [container.image, proc.exe]\n")
	w("      values: [[registry.local/app:1, /usr/local/bin/tool]]\n")
	w("```\n\n")

	w("## Summary\n\n")
	w("| ID | Name | Severity | Maturity | Tactics |\n")
	w("|---|---|---|---|---|\n")
	for _, r := range all {
		w("| [`%s`](#%s) | %s | %s | %s | %s |\n", r.ID, headingAnchor(r.ID), cellText(r.Name), r.Severity, r.Maturity,
			cellText(strings.Join(r.Tactics, ", ")))
	}

	for _, c := range cats {
		w("\n## %s\n", c.title)
		for _, r := range c.rules {
			renderCatalogRule(&b, r)
		}
	}
	return []byte(b.String()), nil
}

func renderCatalogRule(b *strings.Builder, r *detect.Rule) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("\n### %s\n\n", r.ID)
	w("**%s**\n\n", mdText(strings.TrimSpace(r.Name)))
	w("| | |\n|---|---|\n")
	w("| Severity | %s |\n", r.Severity)
	w("| Maturity | %s |\n", r.Maturity)
	if r.Enabled {
		w("| Enabled | yes |\n")
	} else {
		w("| Enabled | no (enable with `override: {enabled: true}`) |\n")
	}
	w("| Tactics | %s |\n", cellText(strings.Join(r.Tactics, ", ")))
	techs := make([]string, len(r.Techniques))
	for i, te := range r.Techniques {
		techs[i] = techniqueLink(te)
	}
	w("| Techniques | %s |\n", strings.Join(techs, ", "))
	kinds := make([]string, len(r.Kinds))
	for i, k := range r.Kinds {
		kinds[i] = "`" + string(k) + "`"
	}
	w("| Events | %s |\n", strings.Join(kinds, ", "))
	w("\n%s\n", mdText(strings.TrimSpace(r.Description)))

	w("\n**Exceptions:** ")
	if len(r.Exceptions) == 0 {
		w("None. Add one with `exceptions_append` (see [Tuning](#tuning)).\n")
	} else {
		w("\n\n")
		for _, ex := range r.Exceptions {
			fields := make([]string, len(ex.Fields))
			for i, f := range ex.Fields {
				fields[i] = "`" + f + "`"
			}
			w("- `%s` on %s:\n", ex.Name, strings.Join(fields, ", "))
			for _, tuple := range ex.Values {
				cells := make([]string, len(tuple))
				for i, cell := range tuple {
					cells[i] = exceptionCell(cell)
				}
				w("  - %s\n", strings.Join(cells, ", "))
			}
		}
	}

	w("\n**Remediation:**\n\n")
	for i, step := range r.Remediation {
		w("%d. %s\n", i+1, mdText(strings.TrimSpace(step)))
	}

	cond := strings.TrimSpace(r.Condition)
	fence := codeFence(cond)
	w("\n**Condition:**\n\n%s\n%s\n%s\n", fence, cond, fence)
}

// ruleCategory returns the sort key and heading of the category a rule
// belongs to: its source file (titled with the file's first comment line),
// or its id prefix when the source file is unknown.
func ruleCategory(fsys fs.FS, r *detect.Rule) (key, title string) {
	if r.Source.File != "" {
		name := path.Base(r.Source.File)
		if h := headerComment(fsys, r.Source.File); h != "" {
			return name, name + ": " + mdText(h)
		}
		return name, name
	}
	prefix, _, ok := strings.Cut(r.ID, "/")
	if !ok {
		prefix = "other"
	}
	return "~" + prefix, prefix
}

// headerComment returns the first sentence of the comment that opens a
// rule file, or "" when the file cannot be read or does not start with one.
func headerComment(fsys fs.FS, name string) string {
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		text, ok := strings.CutPrefix(line, "#")
		if !ok {
			return ""
		}
		text = strings.TrimSpace(text)
		if first, _, ok := strings.Cut(text, ". "); ok {
			text = first
		}
		return strings.TrimSuffix(text, ".")
	}
	return ""
}

// headingAnchor is the anchor GitHub generates for a heading: lower case,
// punctuation other than '-' and '_' dropped, spaces turned into '-'.
func headingAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// cellText makes text safe inside a Markdown table cell.
func cellText(s string) string {
	s = mdText(strings.Join(strings.Fields(s), " "))
	return strings.ReplaceAll(s, "|", `\|`)
}

// mdText escapes the characters Markdown would read as emphasis, HTML or
// escapes (`*.pem`, `-u <wallet>`) outside `code spans`, so rule text shows
// as written.
func mdText(s string) string {
	var b strings.Builder
	inCode := false
	for _, r := range s {
		if r == '`' {
			inCode = !inCode
		} else if !inCode && strings.ContainsRune(`\*_<>[]`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func techniqueLink(id string) string {
	base, sub, ok := strings.Cut(id, ".")
	url := "https://attack.mitre.org/techniques/" + base + "/"
	if ok {
		url += sub + "/"
	}
	return "[" + id + "](" + url + ")"
}

func exceptionCell(c detect.Cell) string {
	if len(c.Values) == 1 {
		return inlineCode(c.Values[0])
	}
	vs := make([]string, len(c.Values))
	for i, v := range c.Values {
		vs[i] = inlineCode(v)
	}
	return "any of [" + strings.Join(vs, ", ") + "]"
}

func inlineCode(s string) string {
	if strings.Contains(s, "`") {
		return "`` " + s + " ``"
	}
	return "`" + s + "`"
}

// codeFence returns a backtick fence longer than any backtick run in s.
func codeFence(s string) string {
	longest, run := 0, 0
	for _, r := range s {
		if r == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return strings.Repeat("`", max(3, longest+1))
}

// firstDifference describes the first line where got and want differ.
func firstDifference(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if i >= len(g) || i >= len(w) || gl != wl {
			return fmt.Sprintf("first difference at line %d: the file has %q, the catalog gives %q", i+1, gl, wl)
		}
	}
	return "the files differ"
}

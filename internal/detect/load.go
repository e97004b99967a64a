package detect

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/vigil-sec/vigil/internal/event"
)

// RuleSet is the merged content of rule files: rules, lists and macros
// after appends and overrides were applied in file order.
type RuleSet struct {
	rules  map[string]*Rule
	order  []string
	lists  map[string]*List
	macros map[string]*Macro
	// items are the parsed entries in order, so that Merge can replay
	// another set's entries (appends, overrides) onto this one.
	items []item
	// pending are appends/overrides whose target is not (yet) defined in
	// this set. They apply when this set is merged into one that defines
	// the target; Compile reports those still pending.
	pending []item
}

// NewRuleSet returns an empty rule set.
func NewRuleSet() *RuleSet {
	return &RuleSet{rules: map[string]*Rule{}, lists: map[string]*List{}, macros: map[string]*Macro{}}
}

// Lists returns the lists, sorted by name.
func (rs *RuleSet) Lists() []*List {
	out := make([]*List, 0, len(rs.lists))
	for _, l := range rs.lists {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Macros returns the macros, sorted by name.
func (rs *RuleSet) Macros() []*Macro {
	out := make([]*Macro, 0, len(rs.macros))
	for _, m := range rs.macros {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Rules returns the rules (enabled and disabled), sorted by ID.
func (rs *RuleSet) Rules() []*Rule {
	out := make([]*Rule, 0, len(rs.rules))
	for _, id := range rs.order {
		out = append(out, rs.rules[id])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

type itemKind int

const (
	itemRule itemKind = iota
	itemRuleOverride
	itemList
	itemMacro
)

type item struct {
	kind itemKind
	pos  Pos
	// itemRule: a complete rule. itemRuleOverride: rule.ID plus the keys
	// in overrideKeys (and exceptionsAppend).
	rule             *Rule
	overrideKeys     []string
	exceptionsAppend []Exception
	list             *List
	appendList       bool
	macro            *Macro
}

// LoadFS loads rule files from fsys matching the glob patterns (default
// "*.yaml" and "*.yml"), in lexical order. It returns every error found
// (joined, each with file:line:column); the returned RuleSet is never nil
// and holds everything that loaded cleanly.
func LoadFS(fsys fs.FS, patterns ...string) (*RuleSet, error) {
	if len(patterns) == 0 {
		patterns = []string{"*.yaml", "*.yml"}
	}
	var names []string
	var errs []error
	for _, p := range patterns {
		m, err := fs.Glob(fsys, p)
		if err != nil {
			errs = append(errs, fmt.Errorf("rule file pattern %q: %w", p, err))
			continue
		}
		names = append(names, m...)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	rs := NewRuleSet()
	for _, n := range names {
		data, err := fs.ReadFile(fsys, n)
		if err != nil {
			errs = append(errs, fmt.Errorf("read rule file %s: %w", n, err))
			continue
		}
		if err := rs.add(n, data); err != nil {
			errs = append(errs, err)
		}
	}
	return rs, errors.Join(errs...)
}

// LoadFiles loads rule files and directories (every *.yaml and *.yml file
// directly inside, in lexical order), in the order given. Errors are as for
// LoadFS.
func LoadFiles(paths ...string) (*RuleSet, error) {
	rs := NewRuleSet()
	var errs []error
	for _, p := range paths {
		files, err := ruleFiles(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				errs = append(errs, fmt.Errorf("read rule file: %w", err))
				continue
			}
			if err := rs.add(f, data); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return rs, errors.Join(errs...)
}

func ruleFiles(p string) ([]string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("rule path: %w (pass an existing rule file or directory)", err)
	}
	if !st.IsDir() {
		return []string{p}, nil
	}
	ents, err := os.ReadDir(p)
	if err != nil {
		return nil, fmt.Errorf("read rule directory: %w", err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		if n := e.Name(); strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml") {
			out = append(out, filepath.Join(p, n))
		}
	}
	slices.Sort(out)
	return out, nil
}

// pendingErrors reports appends and overrides whose target was never
// defined.
func (rs *RuleSet) pendingErrors() []error {
	var errs []error
	for _, it := range rs.pending {
		switch it.kind {
		case itemList:
			errs = append(errs, errAt(it.pos, "list %q: append to a list that is not defined; define it first (without append: true), check the name, or load the file that defines it earlier", it.list.Name))
		case itemRuleOverride:
			errs = append(errs, errAt(it.pos, "rule %q: override/exceptions_append of a rule that is not defined; check the id, or load the file defining it first", it.rule.ID))
		}
	}
	return errs
}

// Merge applies other's entries (definitions, appends, overrides) on top of
// rs, as if other's files were loaded after rs's. Entries that fail are
// skipped and reported; the rest are applied.
func (rs *RuleSet) Merge(other *RuleSet) error {
	if other == nil {
		return nil
	}
	var errs []error
	for _, it := range other.items {
		if err := rs.apply(it); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// AppendList appends string items to the named list as a rule file's
// `append: true` entry would; source names where the items come from (a
// flag, the environment) in errors and `vigil rules show`. Appending to a
// list the set does not define fails.
func (rs *RuleSet) AppendList(name, source string, items ...string) error {
	if _, ok := rs.lists[name]; !ok {
		return fmt.Errorf("%s: append to list %q: the loaded rules do not define it", source, name)
	}
	l := &List{Name: name, Items: items, Source: Pos{File: source}}
	it := item{kind: itemList, pos: l.Source, list: l, appendList: true}
	rs.items = append(rs.items, it)
	return rs.apply(it)
}

// add parses one file and applies its entries.
func (rs *RuleSet) add(file string, data []byte) error {
	items, errs := parseFile(file, data)
	for _, it := range items {
		if err := rs.apply(it); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (rs *RuleSet) apply(it item) error {
	switch it.kind {
	case itemList:
		l := it.list
		if it.appendList {
			old, ok := rs.lists[l.Name]
			if !ok {
				rs.pending = append(rs.pending, it)
				break
			}
			if old.Ints != l.Ints && len(l.Items) > 0 && len(old.Items) > 0 {
				return errAt(it.pos, "list %q: appended items are %s but the list (%s) holds %s; use the same item type", l.Name, intsWord(l.Ints), old.Source, intsWord(old.Ints))
			}
			nl := *old
			nl.Items = append(slices.Clip(old.Items), l.Items...)
			if len(old.Items) == 0 {
				nl.Ints = l.Ints
			}
			rs.lists[l.Name] = &nl
		} else {
			if _, isMacro := rs.macros[l.Name]; isMacro {
				return errAt(it.pos, "list %q: a macro has the same name (%s); rename one of them", l.Name, rs.macros[l.Name].Source)
			}
			rs.lists[l.Name] = l
		}
	case itemMacro:
		if l, isList := rs.lists[it.macro.Name]; isList {
			return errAt(it.pos, "macro %q: a list has the same name (%s); rename one of them", it.macro.Name, l.Source)
		}
		rs.macros[it.macro.Name] = it.macro
	case itemRule:
		if _, ok := rs.rules[it.rule.ID]; !ok {
			rs.order = append(rs.order, it.rule.ID)
		}
		rs.rules[it.rule.ID] = it.rule
	case itemRuleOverride:
		old, ok := rs.rules[it.rule.ID]
		if !ok {
			rs.pending = append(rs.pending, it)
			break
		}
		nr := *old
		for _, k := range it.overrideKeys {
			switch k {
			case "name":
				nr.Name = it.rule.Name
			case "description":
				nr.Description = it.rule.Description
			case "severity":
				nr.Severity = it.rule.Severity
			case "maturity":
				nr.Maturity = it.rule.Maturity
			case "condition":
				nr.Condition, nr.cond = it.rule.Condition, it.rule.cond
			case "tactics":
				nr.Tactics = it.rule.Tactics
			case "techniques":
				nr.Techniques = it.rule.Techniques
			case "remediation":
				nr.Remediation = it.rule.Remediation
			case "events":
				nr.Kinds = it.rule.Kinds
			case "enabled":
				nr.Enabled = it.rule.Enabled
			case "exceptions":
				nr.Exceptions = it.rule.Exceptions
			}
		}
		if len(it.exceptionsAppend) > 0 {
			nr.Exceptions = append(slices.Clip(nr.Exceptions), it.exceptionsAppend...)
		}
		rs.rules[it.rule.ID] = &nr
	}
	rs.items = append(rs.items, it)
	return nil
}

func intsWord(ints bool) string {
	if ints {
		return "integers"
	}
	return "strings"
}

// Keys allowed in each kind of entry.
var (
	ruleKeys = []string{"rule", "name", "description", "severity", "tactics", "techniques", "events",
		"condition", "maturity", "enabled", "exceptions", "remediation", "override", "exceptions_append"}
	overridableKeys = []string{"name", "description", "severity", "tactics", "techniques", "events",
		"condition", "maturity", "enabled", "exceptions", "remediation"}
	listKeys      = []string{"list", "items", "append"}
	macroKeys     = []string{"macro", "condition"}
	exceptionKeys = []string{"name", "fields", "values"}
)

// parser collects errors for one file.
type parser struct {
	file string
	errs []error
}

func (p *parser) pos(n *yaml.Node) Pos { return Pos{File: p.file, Line: n.Line, Column: n.Column} }

func (p *parser) errf(n *yaml.Node, format string, args ...any) {
	p.errs = append(p.errs, errAt(p.pos(n), format, args...))
}

func parseFile(file string, data []byte) ([]item, []error) {
	p := &parser{file: file}
	var items []item
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if err == io.EOF {
			break
		}
		if err != nil {
			p.errs = append(p.errs, fmt.Errorf("%s: invalid YAML: %w (fix the syntax; nothing after this point in the file was loaded)", file, err))
			break
		}
		if len(doc.Content) == 0 {
			continue
		}
		top := doc.Content[0]
		switch top.Kind {
		case yaml.SequenceNode:
			for _, n := range top.Content {
				if it, ok := p.entry(n); ok {
					items = append(items, it)
				}
			}
		case yaml.MappingNode:
			if it, ok := p.entry(top); ok {
				items = append(items, it)
			}
		case yaml.ScalarNode:
			if top.Tag == "!!null" {
				continue
			}
			fallthrough
		default:
			p.errf(top, "a rule file holds a list of entries (- rule: ..., - list: ..., - macro: ...); found a %s", nodeKind(top))
		}
	}
	return items, p.errs
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "sequence"
	case yaml.MappingNode:
		return "mapping"
	case yaml.ScalarNode:
		return "scalar " + strconv.Quote(n.Value)
	case yaml.AliasNode:
		return "alias"
	}
	return "document"
}

// mapping returns the key/value pairs of a mapping node, reporting unknown
// keys (with a suggestion) and duplicates.
func (p *parser) mapping(n *yaml.Node, what string, allowed []string) (map[string]*yaml.Node, map[string]*yaml.Node, bool) {
	if n.Kind != yaml.MappingNode {
		p.errf(n, "%s must be a mapping of keys to values; found a %s", what, nodeKind(n))
		return nil, nil, false
	}
	vals := map[string]*yaml.Node{}
	keys := map[string]*yaml.Node{}
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if v.Kind == yaml.AliasNode && v.Alias != nil {
			v = v.Alias
		}
		if _, dup := vals[k.Value]; dup {
			p.errf(k, "duplicate key '%s' in %s; keep only one", k.Value, what)
			ok = false
			continue
		}
		if !slices.Contains(allowed, k.Value) {
			msg := fmt.Sprintf("unknown key '%s' in %s", k.Value, what)
			if s := suggest(k.Value, allowed); s != "" {
				msg += fmt.Sprintf(" — did you mean '%s'?", s)
			} else {
				msg += " (allowed: " + strings.Join(allowed, ", ") + ")"
			}
			p.errs = append(p.errs, errAt(p.pos(k), "%s", msg))
			ok = false
			continue
		}
		vals[k.Value] = v
		keys[k.Value] = k
	}
	return vals, keys, ok
}

// suggest returns the allowed word closest to w, if it is close.
func suggest(w string, allowed []string) string {
	best, bestD := "", 3
	if len(w) <= 4 {
		bestD = 2
	}
	for _, a := range allowed {
		if d := editDistance(strings.ToLower(w), strings.ToLower(a)); d < bestD {
			best, bestD = a, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func (p *parser) str(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.errf(n, "%s must be a string; found a %s", what, nodeKind(n))
		return "", false
	}
	return n.Value, true
}

func (p *parser) strList(n *yaml.Node, what string) ([]string, bool) {
	if n.Kind != yaml.SequenceNode {
		p.errf(n, "%s must be a list ([a, b] or - items); found a %s", what, nodeKind(n))
		return nil, false
	}
	out := make([]string, 0, len(n.Content))
	ok := true
	for _, c := range n.Content {
		s, good := p.str(c, what+" item")
		ok = ok && good
		out = append(out, s)
	}
	return out, ok
}

func (p *parser) boolean(n *yaml.Node, what string) (bool, bool) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!bool" {
		b, err := strconv.ParseBool(n.Value)
		if err == nil {
			return b, true
		}
	}
	p.errf(n, "%s must be true or false; found %s", what, nodeKind(n))
	return false, false
}

func (p *parser) entry(n *yaml.Node) (item, bool) {
	if n.Kind != yaml.MappingNode {
		p.errf(n, "each entry must be a mapping starting with rule:, list: or macro:; found a %s", nodeKind(n))
		return item{}, false
	}
	var has [3]bool
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch n.Content[i].Value {
		case "rule":
			has[0] = true
		case "list":
			has[1] = true
		case "macro":
			has[2] = true
		}
	}
	count := 0
	for _, h := range has {
		if h {
			count++
		}
	}
	if count != 1 {
		keys := []string{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			keys = append(keys, n.Content[i].Value)
		}
		msg := "an entry needs exactly one of rule:, list: or macro:"
		if count == 0 && len(keys) > 0 {
			if s := suggest(keys[0], []string{"rule", "list", "macro"}); s != "" {
				msg = fmt.Sprintf("unknown key '%s' at the start of an entry — did you mean '%s'? (%s)", keys[0], s, msg)
			}
		}
		p.errf(n, "%s; found keys %v", msg, keys)
		return item{}, false
	}
	switch {
	case has[0]:
		return p.rule(n)
	case has[1]:
		return p.list(n)
	default:
		return p.macro(n)
	}
}

// named reads the mapping of a list or macro entry (kind "list" or
// "macro") and its identifier name; what names the entry in errors.
func (p *parser) named(n *yaml.Node, kind string, allowed []string) (vals, keys map[string]*yaml.Node, name, what string, ok bool) {
	what = kind
	if nameNode := valueOf(n, kind); nameNode != nil {
		what = fmt.Sprintf("%s %q", kind, nameNode.Value)
	}
	vals, keys, ok = p.mapping(n, what, allowed)
	if !ok {
		return nil, nil, "", what, false
	}
	name, ok = p.str(vals[kind], kind+" name")
	if !ok {
		return nil, nil, "", what, false
	}
	if !isIdent(name) {
		p.errf(vals[kind], "%s name %q must be an identifier (letters, digits, _; not starting with a digit) so conditions can use it", kind, name)
		return nil, nil, "", what, false
	}
	return vals, keys, name, what, true
}

func (p *parser) list(n *yaml.Node) (item, bool) {
	vals, _, name, what, ok := p.named(n, "list", listKeys)
	if !ok {
		return item{}, false
	}
	l := &List{Name: name, Source: p.pos(n)}
	itemsNode := vals["items"]
	if itemsNode == nil {
		p.errf(n, "%s: missing required key 'items' (use items: [] for an empty list)", what)
		return item{}, false
	}
	if itemsNode.Kind != yaml.SequenceNode {
		p.errf(itemsNode, "%s: items must be a list; found a %s", what, nodeKind(itemsNode))
		return item{}, false
	}
	ints := len(itemsNode.Content) > 0
	for _, c := range itemsNode.Content {
		s, good := p.str(c, what+" item")
		if !good {
			return item{}, false
		}
		if c.Tag != "!!int" {
			ints = false
		}
		l.Items = append(l.Items, s)
	}
	l.Ints = ints
	if ints {
		for i, s := range l.Items {
			v, err := strconv.ParseInt(s, 0, 64)
			if err != nil {
				p.errf(itemsNode.Content[i], "%s: %q is not a valid integer: %v", what, s, err)
				return item{}, false
			}
			l.Items[i] = strconv.FormatInt(v, 10)
		}
	}
	it := item{kind: itemList, pos: p.pos(n), list: l}
	if a := vals["append"]; a != nil {
		b, good := p.boolean(a, what+": append")
		if !good {
			return item{}, false
		}
		it.appendList = b
	}
	return it, true
}

func (p *parser) macro(n *yaml.Node) (item, bool) {
	vals, keys, name, what, ok := p.named(n, "macro", macroKeys)
	if !ok {
		return item{}, false
	}
	cn := vals["condition"]
	if cn == nil {
		p.errf(n, "%s: missing required key 'condition'", what)
		return item{}, false
	}
	c, good := p.str(cn, what+": condition")
	if !good {
		return item{}, false
	}
	if strings.TrimSpace(c) == "" {
		p.errf(cn, "%s: condition is empty; write a CEL expression", what)
		return item{}, false
	}
	m := &Macro{Name: name, Condition: c, Source: p.pos(n),
		cond: srcText{pos: p.pos(cn), style: cn.Style, keyCol: keys["condition"].Column}}
	return item{kind: itemMacro, pos: p.pos(n), macro: m}, true
}

func valueOf(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func (p *parser) rule(n *yaml.Node) (item, bool) {
	idNode := valueOf(n, "rule")
	what := "rule"
	if idNode != nil && idNode.Kind == yaml.ScalarNode {
		what = fmt.Sprintf("rule %s", idNode.Value)
	}
	vals, keys, ok := p.mapping(n, what, ruleKeys)
	if !ok {
		return item{}, false
	}
	id, good := p.str(vals["rule"], "rule id")
	if !good {
		return item{}, false
	}
	if strings.TrimSpace(id) == "" || strings.ContainsAny(id, " \t\n") {
		p.errf(vals["rule"], "rule id %q must be non-empty without spaces, like vigil.node/DigitalCurrencyMining", id)
		return item{}, false
	}
	ov, hasOv := vals["override"]
	exa, hasExa := vals["exceptions_append"]
	if hasOv || hasExa {
		it := item{kind: itemRuleOverride, pos: p.pos(n), rule: &Rule{ID: id}}
		for k := range vals {
			if k != "rule" && k != "override" && k != "exceptions_append" {
				p.errf(keys[k], "%s: '%s' next to override/exceptions_append; put keys to replace inside override: {%s: ...}", what, k, k)
				ok = false
			}
		}
		if hasOv {
			ovVals, ovKeys, good := p.mapping(ov, what+" override", overridableKeys)
			if !good {
				return item{}, false
			}
			if !p.ruleFields(it.rule, ovVals, ovKeys, what) {
				return item{}, false
			}
			for _, k := range overridableKeys {
				if _, set := ovVals[k]; set {
					it.overrideKeys = append(it.overrideKeys, k)
				}
			}
			if len(it.overrideKeys) == 0 {
				p.errf(ov, "%s: override is empty; list the keys to replace, e.g. override: {enabled: false}", what)
				return item{}, false
			}
		}
		if hasExa {
			exs, good := p.exceptions(exa, what)
			if !good {
				return item{}, false
			}
			it.exceptionsAppend = exs
		}
		return it, ok
	}
	r := &Rule{ID: id, Enabled: true, Maturity: MaturityStable, Source: p.pos(n)}
	if !p.ruleFields(r, vals, keys, what) {
		return item{}, false
	}
	for _, req := range []string{"name", "description", "severity", "events", "condition"} {
		if vals[req] == nil {
			hint := ""
			switch req {
			case "events":
				hint = " (the event kinds it applies to, e.g. events: [exec])"
			case "severity":
				hint = " (one of " + strings.Join(severities, ", ") + ")"
			case "description":
				hint = " (what it means, why it matters, tuning advice and known false positives)"
			}
			p.errf(n, "%s: missing required key '%s'%s; to change an existing rule use override: {...}", what, req, hint)
			ok = false
		}
	}
	return item{kind: itemRule, pos: p.pos(n), rule: r}, ok
}

// ruleFields decodes the rule keys present in vals into r.
func (p *parser) ruleFields(r *Rule, vals, keys map[string]*yaml.Node, what string) bool {
	ok := true
	setStr := func(k string, dst *string) {
		if v := vals[k]; v != nil {
			s, good := p.str(v, what+": "+k)
			if good && strings.TrimSpace(s) == "" {
				p.errf(v, "%s: %s is empty", what, k)
				good = false
			}
			ok = ok && good
			*dst = s
		}
	}
	setList := func(k string, dst *[]string) {
		if v := vals[k]; v != nil {
			l, good := p.strList(v, what+": "+k)
			ok = ok && good
			*dst = l
		}
	}
	setStr("name", &r.Name)
	setStr("description", &r.Description)
	setStr("severity", &r.Severity)
	setStr("maturity", &r.Maturity)
	setStr("condition", &r.Condition)
	setList("tactics", &r.Tactics)
	setList("techniques", &r.Techniques)
	setList("remediation", &r.Remediation)
	if v := vals["condition"]; v != nil {
		r.cond = srcText{pos: p.pos(v), style: v.Style, keyCol: keys["condition"].Column}
	}
	if v := vals["severity"]; v != nil && r.Severity != "" && !slices.Contains(severities, r.Severity) {
		msg := fmt.Sprintf("%s: invalid severity %q; use one of %s", what, r.Severity, strings.Join(severities, ", "))
		if s := suggest(r.Severity, severities); s != "" {
			msg += fmt.Sprintf(" — did you mean '%s'?", s)
		}
		p.errs = append(p.errs, errAt(p.pos(v), "%s", msg))
		ok = false
	}
	if v := vals["maturity"]; v != nil && !slices.Contains(maturities, r.Maturity) {
		p.errf(v, "%s: invalid maturity %q; use one of %s", what, r.Maturity, strings.Join(maturities, ", "))
		ok = false
	}
	if v := vals["enabled"]; v != nil {
		b, good := p.boolean(v, what+": enabled")
		ok = ok && good
		r.Enabled = b
	}
	if v := vals["events"]; v != nil {
		ks, good := p.strList(v, what+": events")
		ok = ok && good
		if good && len(ks) == 0 {
			p.errf(v, "%s: events is empty; list the event kinds the rule applies to, e.g. [exec]", what)
			ok = false
		}
		for i, k := range ks {
			if !slices.Contains(event.AllKinds, event.Kind(k)) {
				all := make([]string, len(event.AllKinds))
				for j, a := range event.AllKinds {
					all[j] = string(a)
				}
				msg := fmt.Sprintf("%s: unknown event kind %q; use one of %s", what, k, strings.Join(all, ", "))
				if s := suggest(k, all); s != "" {
					msg += fmt.Sprintf(" — did you mean '%s'?", s)
				}
				p.errs = append(p.errs, errAt(p.pos(v.Content[i]), "%s", msg))
				ok = false
				continue
			}
			if !slices.Contains(r.Kinds, event.Kind(k)) {
				r.Kinds = append(r.Kinds, event.Kind(k))
			}
		}
	}
	if v := vals["exceptions"]; v != nil {
		exs, good := p.exceptions(v, what)
		ok = ok && good
		r.Exceptions = exs
	}
	return ok
}

// nameOnlyFields are fields that never establish trust on their own.
var nameOnlyFields = []string{"proc.name", "proc.comm", "parent.name", "parent.comm"}

func (p *parser) exceptions(n *yaml.Node, what string) ([]Exception, bool) {
	if n.Kind != yaml.SequenceNode {
		p.errf(n, "%s: exceptions must be a list of {name, fields, values}; found a %s", what, nodeKind(n))
		return nil, false
	}
	ok := true
	var out []Exception
	for _, en := range n.Content {
		vals, _, good := p.mapping(en, what+" exception", exceptionKeys)
		if !good {
			ok = false
			continue
		}
		ex := Exception{Source: p.pos(en)}
		for _, req := range exceptionKeys {
			if vals[req] == nil {
				p.errf(en, "%s: exception is missing required key '%s' (an exception is {name, fields: [field, ...], values: [[value, ...], ...]})", what, req)
				good = false
			}
		}
		if !good {
			ok = false
			continue
		}
		ex.Name, good = p.str(vals["name"], what+": exception name")
		if !good {
			ok = false
			continue
		}
		ew := fmt.Sprintf("%s exception %q", what, ex.Name)
		ex.Fields, good = p.strList(vals["fields"], ew+": fields")
		if !good {
			ok = false
			continue
		}
		if len(ex.Fields) == 0 {
			p.errf(vals["fields"], "%s: fields is empty; name the fields to match, e.g. [container.image, proc.exe]", ew)
			ok = false
			continue
		}
		fieldsOK := true
		onlyNames := true
		for i, f := range ex.Fields {
			if _, known := exceptionFieldType(f); !known {
				msg := fmt.Sprintf("%s: unknown field %q", ew, f)
				if s := suggest(f, exceptionFieldNames()); s != "" {
					msg += fmt.Sprintf(" — did you mean '%s'?", s)
				}
				msg += " (exception fields are vocabulary paths like proc.exe, container.image, parent.exe; see docs/rules.md)"
				p.errs = append(p.errs, errAt(p.pos(vals["fields"].Content[i]), "%s", msg))
				fieldsOK = false
			}
			if !slices.Contains(nameOnlyFields, f) {
				onlyNames = false
			}
		}
		if !fieldsOK {
			ok = false
			continue
		}
		if onlyNames {
			p.errf(vals["fields"], "%s: an exception on %s alone is rejected: process names and comm are chosen by whoever starts the process (a miner can call itself 'pause'); match on proc.exe (full path), container.image, parent.exe or ancestry, optionally together with the name", ew, strings.Join(ex.Fields, " + "))
			ok = false
			continue
		}
		vn := vals["values"]
		if vn.Kind != yaml.SequenceNode {
			p.errf(vn, "%s: values must be a list of tuples, e.g. [[registry.local/bench:1, /usr/bin/xmrig]]", ew)
			ok = false
			continue
		}
		for _, tn := range vn.Content {
			if tn.Kind != yaml.SequenceNode {
				if len(ex.Fields) == 1 && tn.Kind == yaml.ScalarNode {
					// A single field allows values: [a, b] as shorthand.
					tn = &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{tn}, Line: tn.Line, Column: tn.Column}
				} else {
					p.errf(tn, "%s: each value must be a tuple [v1, v2, ...] with one value per field (%d fields)", ew, len(ex.Fields))
					good = false
					continue
				}
			}
			if len(tn.Content) != len(ex.Fields) {
				p.errf(tn, "%s: tuple has %d values but fields has %d (%s); give one value per field", ew, len(tn.Content), len(ex.Fields), strings.Join(ex.Fields, ", "))
				good = false
				continue
			}
			var tuple []Cell
			for i, cn := range tn.Content {
				ft, _ := exceptionFieldType(ex.Fields[i])
				var cell Cell
				switch cn.Kind {
				case yaml.ScalarNode:
					cell.Values = []string{cn.Value}
				case yaml.SequenceNode:
					vs, g := p.strList(cn, ew+" value")
					if !g {
						good = false
						continue
					}
					cell.Values = vs
				default:
					p.errf(cn, "%s: a value must be a scalar or a list of alternatives; found a %s", ew, nodeKind(cn))
					good = false
					continue
				}
				if ft == tInt {
					for _, s := range cell.Values {
						if _, err := strconv.ParseInt(s, 0, 64); err != nil {
							p.errf(cn, "%s: field %s is an integer but value %q is not", ew, ex.Fields[i], s)
							good = false
						}
					}
				}
				if ft == tBool {
					for _, s := range cell.Values {
						if _, err := strconv.ParseBool(s); err != nil {
							p.errf(cn, "%s: field %s is true/false but value %q is not", ew, ex.Fields[i], s)
							good = false
						}
					}
				}
				tuple = append(tuple, cell)
			}
			ex.Values = append(ex.Values, tuple)
		}
		if !good {
			ok = false
			continue
		}
		out = append(out, ex)
	}
	return out, ok
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return !reservedIdent(s)
}

func reservedIdent(s string) bool {
	switch s {
	case "kind", "proc", "parent", "ancestors", "container", "net", "file", "sys", "audit", "facts",
		"true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function",
		"if", "import", "let", "loop", "package", "namespace", "return", "var", "void", "while":
		return true
	}
	return false
}

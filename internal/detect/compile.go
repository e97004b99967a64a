package detect

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"

	"github.com/vigil-sec/vigil/internal/event"
)

// Default limits.
const (
	// DefaultCostLimit is the runtime CEL cost limit per rule evaluation.
	DefaultCostLimit = 1_000_000
	// DefaultMaxEstimatedCost rejects rules whose worst-case static cost
	// estimate exceeds it (with strings up to maxStringSize bytes, argv up to
	// maxArgs entries of up to maxArgSize bytes, 8 ancestors).
	DefaultMaxEstimatedCost = 5_000_000

	maxAncestors  = 8
	maxStringSize = 4096
	maxArgs       = 128 // the sensor captures at most 4096 bytes of argv
	maxArgSize    = 512
	maxFacts      = 32
)

type options struct {
	costLimit    uint64
	maxEstimated uint64
	noNative     bool
	log          *slog.Logger
}

// Option configures Compile.
type Option func(*options)

// WithCostLimit sets the runtime CEL cost limit per rule evaluation; an
// evaluation exceeding it counts as no match (and is counted in Stats).
func WithCostLimit(n uint64) Option { return func(o *options) { o.costLimit = n } }

// WithMaxEstimatedCost sets the static cost estimate above which a rule is
// rejected at compile time.
func WithMaxEstimatedCost(n uint64) Option { return func(o *options) { o.maxEstimated = n } }

// WithLogger sets the logger for evaluation errors (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// withoutNative forces every rule through the CEL interpreter (tests use it
// to check the native evaluator against CEL).
func withoutNative() Option { return func(o *options) { o.noNative = true } }

// vocabulary is the typed rule vocabulary: object types and their fields.
type vocabulary struct {
	proc      map[string]field[*procView]
	container map[string]field[*contView]
	net       map[string]field[*netView]
	file      map[string]field[*fileView]
	sys       map[string]field[*sysView]
	audit     map[string]field[*auditView]
}

func newVocabulary() *vocabulary {
	return &vocabulary{proc: procFields(), container: containerFields(), net: netFields(),
		file: fileFields(), sys: sysFields(), audit: auditFields()}
}

// objectVars maps a top-level variable to its object type name.
var objectVars = map[string]string{
	"proc": typeProcess, "parent": typeProcess, "container": typeContainer,
	"net": typeNet, "file": typeFile, "sys": typeSys,
	"audit": typeAudit,
}

func (v *vocabulary) fieldTypes(typeName string) map[string]valType {
	out := map[string]valType{}
	switch typeName {
	case typeProcess:
		for k, f := range v.proc {
			out[k] = f.t
		}
	case typeContainer:
		for k, f := range v.container {
			out[k] = f.t
		}
	case typeNet:
		for k, f := range v.net {
			out[k] = f.t
		}
	case typeFile:
		for k, f := range v.file {
			out[k] = f.t
		}
	case typeSys:
		for k, f := range v.sys {
			out[k] = f.t
		}
	case typeAudit:
		for k, f := range v.audit {
			out[k] = f.t
		}
	}
	return out
}

// exceptionFieldType returns the type of a dotted vocabulary path usable in
// exceptions (kind, proc.exe, container.image, ...).
func exceptionFieldType(path string) (valType, bool) {
	if path == "kind" {
		return tString, true
	}
	obj, f, ok := strings.Cut(path, ".")
	if !ok {
		return 0, false
	}
	tn, ok := objectVars[obj]
	if !ok {
		return 0, false
	}
	t, ok := newVocabulary().fieldTypes(tn)[f]
	if !ok || t == tStringList {
		return 0, false
	}
	return t, true
}

func exceptionFieldNames() []string {
	v := newVocabulary()
	out := []string{"kind"}
	for obj, tn := range objectVars {
		for f, t := range v.fieldTypes(tn) {
			if t != tStringList {
				out = append(out, obj+"."+f)
			}
		}
	}
	sort.Strings(out)
	return out
}

// provider exposes the vocabulary's object types to the CEL checker and
// interpreter; everything else is delegated to the standard registry.
type provider struct {
	*types.Registry
	fields map[string]map[string]*types.FieldType
}

func newProvider(v *vocabulary) (*provider, error) {
	reg, err := types.NewRegistry()
	if err != nil {
		return nil, fmt.Errorf("create CEL type registry: %w", err)
	}
	p := &provider{Registry: reg, fields: map[string]map[string]*types.FieldType{}}
	p.fields[typeProcess] = celFields(v.proc)
	p.fields[typeContainer] = celFields(v.container)
	p.fields[typeNet] = celFields(v.net)
	p.fields[typeFile] = celFields(v.file)
	p.fields[typeSys] = celFields(v.sys)
	p.fields[typeAudit] = celFields(v.audit)
	return p, nil
}

func celFields[V any](m map[string]field[V]) map[string]*types.FieldType {
	out := make(map[string]*types.FieldType, len(m))
	for name, f := range m {
		f := f
		out[name] = &types.FieldType{
			Type:  f.t.celType(),
			IsSet: func(any) bool { return true },
			GetFrom: func(target any) (any, error) {
				v, ok := target.(V)
				if !ok {
					return nil, fmt.Errorf("field %s: unexpected object %T", name, target)
				}
				return f.celValue(v), nil
			},
		}
	}
	return out
}

func (p *provider) FindStructType(name string) (*types.Type, bool) {
	if _, ok := p.fields[name]; ok {
		return types.NewTypeTypeWithParam(types.NewObjectType(name)), true
	}
	return p.Registry.FindStructType(name)
}

func (p *provider) FindStructFieldNames(name string) ([]string, bool) {
	if fs, ok := p.fields[name]; ok {
		out := make([]string, 0, len(fs))
		for k := range fs {
			out = append(out, k)
		}
		sort.Strings(out)
		return out, true
	}
	return p.Registry.FindStructFieldNames(name)
}

func (p *provider) FindStructFieldType(name, fieldName string) (*types.FieldType, bool) {
	if fs, ok := p.fields[name]; ok {
		f, ok := fs[fieldName]
		return f, ok
	}
	return p.Registry.FindStructFieldType(name, fieldName)
}

func (p *provider) NewValue(name string, fields map[string]ref.Val) ref.Val {
	if _, ok := p.fields[name]; ok {
		return types.NewErr("%s values cannot be constructed in a condition", name)
	}
	return p.Registry.NewValue(name, fields)
}

// compiledRule is a rule ready for evaluation.
type compiledRule struct {
	rule *Rule
	// native evaluates the whole condition without CEL, when possible.
	native boolFn
	// pre is a necessary condition (conjuncts of the condition that compile
	// natively); nil when none. Only used when native is nil.
	pre  boolFn
	prg  cel.Program
	cost uint64 // static worst-case estimate
	expr string // expanded condition (macros substituted, exceptions added)
	// gates holds, per kind, a necessary condition on proc.name/proc.comm
	// (see nameGate); a kind without an entry is not gated.
	gates map[event.Kind]*nameKeys
	// checked is the type-checked condition (for the native compiler).
	checked *cel.Ast
}

// Compile type-checks and compiles every rule of rs (disabled ones too, so
// that errors surface early) and builds an Engine. Errors carry
// file:line:column. On error the returned Engine, if non-nil, holds the
// rules that compiled; callers that need all-or-nothing (reload) must treat
// any error as failure.
func Compile(rs *RuleSet, opts ...Option) (*Engine, error) {
	o := options{costLimit: DefaultCostLimit, maxEstimated: DefaultMaxEstimatedCost, log: slog.Default()}
	for _, f := range opts {
		f(&o)
	}
	if rs == nil {
		rs = NewRuleSet()
	}
	voc := newVocabulary()
	prov, err := newProvider(voc)
	if err != nil {
		return nil, err
	}
	envOpts := []cel.EnvOption{
		cel.CustomTypeProvider(prov),
		cel.Variable("kind", cel.StringType),
		cel.Variable("proc", types.NewObjectType(typeProcess)),
		cel.Variable("parent", types.NewObjectType(typeProcess)),
		cel.Variable("ancestors", cel.ListType(types.NewObjectType(typeProcess))),
		cel.Variable("container", types.NewObjectType(typeContainer)),
		cel.Variable("net", types.NewObjectType(typeNet)),
		cel.Variable("file", types.NewObjectType(typeFile)),
		cel.Variable("sys", types.NewObjectType(typeSys)),
		cel.Variable("audit", types.NewObjectType(typeAudit)),
		cel.Variable("facts", cel.MapType(cel.StringType, cel.StringType)),
		ext.Strings(),
	}
	lists := map[string]*listVal{}
	for _, l := range rs.Lists() {
		lv := newListVal(l)
		lists[l.Name] = lv
		envOpts = append(envOpts, cel.Constant(l.Name, lv.celType(), lv.cel))
	}
	env, err := cel.NewEnv(envOpts...)
	if err != nil {
		return nil, fmt.Errorf("create CEL environment: %w", err)
	}
	c := &compiler{rs: rs, env: env, voc: voc, lists: lists, opts: o, expanded: map[string]*expansion{}}

	errs := rs.pendingErrors()
	// Macros first, so a broken macro is reported once, at its own position.
	for _, m := range rs.Macros() {
		if _, err := c.expandMacro(m.Name, nil); err != nil {
			errs = append(errs, err)
			continue
		}
	}
	e := &Engine{byKind: map[event.Kind][]*compiledRule{}, lists: lists, opts: o, ti: newTIMatcher(lists)}
	for _, r := range rs.Rules() {
		cr, err := c.rule(r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		e.all = append(e.all, cr)
	}
	if !o.noNative {
		e.nMemo = compileNative(c, e.all)
	}
	e.finish()
	return e, errors.Join(errs...)
}

type compiler struct {
	rs       *RuleSet
	env      *cel.Env
	voc      *vocabulary
	lists    map[string]*listVal
	opts     options
	expanded map[string]*expansion
}

// run is a piece of the expanded text copied from a source text.
type run struct {
	start, end int // in the expanded text
	src        *srcText
	text       string // the source text the run was copied from
	srcOff     int
	macro      string // "" for the rule's own condition
}

type expansion struct {
	text string
	runs []run
	err  error
}

// expand substitutes macros into text (a condition from src).
func (c *compiler) expand(text string, src *srcText, macro string, stack []string) (*expansion, error) {
	var b strings.Builder
	var runs []run
	copyRun := func(from, to int) {
		if from >= to {
			return
		}
		runs = append(runs, run{start: b.Len(), end: b.Len() + to - from, src: src, text: text, srcOff: from, macro: macro})
		b.WriteString(text[from:to])
	}
	last := 0
	for _, tok := range identTokens(text) {
		m, ok := c.rs.macros[tok.name]
		if !ok {
			continue
		}
		inner, err := c.expandMacro(m.Name, stack)
		if err != nil {
			if len(stack) > 0 || macro != "" {
				return nil, err
			}
			// The macro's own error is reported once; name the use site.
			return nil, errAt(src.at(lineCol(text, tok.start)), "uses macro %q, which does not compile (see its error)", m.Name)
		}
		copyRun(last, tok.start)
		// "(" and ")" map to the macro name at the use site.
		runs = append(runs, run{start: b.Len(), end: b.Len() + 1, src: src, text: text, srcOff: tok.start, macro: macro})
		b.WriteByte('(')
		base := b.Len()
		for _, r := range inner.runs {
			r.start += base
			r.end += base
			runs = append(runs, r)
		}
		b.WriteString(inner.text)
		runs = append(runs, run{start: b.Len(), end: b.Len() + 1, src: src, text: text, srcOff: tok.start, macro: macro})
		b.WriteByte(')')
		last = tok.end
	}
	copyRun(last, len(text))
	return &expansion{text: b.String(), runs: runs}, nil
}

func (c *compiler) expandMacro(name string, stack []string) (*expansion, error) {
	m := c.rs.macros[name]
	for i, s := range stack {
		if s == name {
			cycle := append(append([]string{}, stack[i:]...), name)
			return nil, errAt(m.Source, "macro %q is part of a cycle (%s); macros cannot refer to themselves, directly or indirectly", name, strings.Join(cycle, " -> "))
		}
	}
	if x, ok := c.expanded[name]; ok {
		return x, x.err
	}
	x, err := c.expand(m.Condition, &m.cond, name, append(stack, name))
	if err != nil {
		if len(stack) == 0 {
			c.expanded[name] = &expansion{err: err}
		}
		return nil, err
	}
	// Check the macro on its own so errors point into it.
	if _, iss := c.env.Compile(x.text); iss != nil && iss.Err() != nil {
		err := c.celError(x, iss.Errors(), fmt.Sprintf("macro %q", name))
		if len(stack) == 0 {
			c.expanded[name] = &expansion{err: err}
		}
		return nil, err
	}
	if len(stack) == 0 {
		c.expanded[name] = x
	}
	return x, nil
}

// celError maps CEL errors in an expansion back to file positions.
func (c *compiler) celError(x *expansion, cerrs []*common.Error, what string) error {
	var errs []error
	for _, ce := range cerrs {
		off := offsetOf(x.text, ce.Location.Line(), ce.Location.Column())
		var r *run
		for i := range x.runs {
			if off >= x.runs[i].start && off < x.runs[i].end {
				r = &x.runs[i]
				break
			}
		}
		if r == nil && len(x.runs) > 0 && off >= x.runs[len(x.runs)-1].end {
			r = &x.runs[len(x.runs)-1]
			off = r.end - 1
		}
		if r == nil {
			errs = append(errs, fmt.Errorf("%s: condition: %s", what, ce.Message))
			continue
		}
		if strings.Contains(ce.Message, "undefined field") && off < len(x.text) && x.text[off] == '.' {
			off++ // point at the field name, not the dot
		}
		srcOff := r.srcOff + off - r.start
		pos := r.src.at(lineCol(r.text, srcOff))
		msg := fmt.Sprintf("%s: condition: %s", what, ce.Message)
		if r.macro != "" && !strings.HasPrefix(what, "macro") {
			msg += fmt.Sprintf(" (in macro %q)", r.macro)
		}
		msg += hintFor(ce.Message)
		errs = append(errs, errAt(pos, "%s", msg))
	}
	return errors.Join(errs...)
}

func hintFor(msg string) string {
	switch {
	case strings.Contains(msg, "undefined field"):
		return "; see docs/rules.md for the fields of proc, parent, ancestors, container, net, file and sys"
	case strings.Contains(msg, "undeclared reference"):
		return "; define the list or macro, or check the variable name (kind, proc, parent, ancestors, container, net, file, sys, audit, facts)"
	case strings.Contains(msg, "found no matching overload"):
		return "; check the operand types (e.g. compare ints with ints: net.dstPort == 3333, not \"3333\")"
	}
	return ""
}

// lineCol converts a byte offset to a 1-based line and column (in runes).
func lineCol(text string, off int) (int, int) {
	line, col := 1, 1
	for i, r := range text {
		if i >= off {
			break
		}
		if r == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}

// offsetOf converts CEL's 1-based line and 0-based rune column to a byte offset.
func offsetOf(text string, line, col int) int {
	off := 0
	for l := 1; l < line; l++ {
		i := strings.IndexByte(text[off:], '\n')
		if i < 0 {
			return len(text)
		}
		off += i + 1
	}
	for ; col > 0 && off < len(text); col-- {
		_, n := utf8.DecodeRuneInString(text[off:])
		off += n
	}
	return off
}

type identTok struct {
	name       string
	start, end int
}

// identTokens returns the identifiers of a CEL text that could be macro
// references: not inside string literals, not a field selection (after a
// '.'), not a function call name.
func identTokens(s string) []identTok {
	var out []identTok
	prevSig := byte(0) // previous non-space character
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\'':
			i = skipString(s, i)
			prevSig = c
			continue
		case (c == 'r' || c == 'R' || c == 'b' || c == 'B') && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\''):
			if i == 0 || !isIdentByte(s[i-1]) {
				i = skipString(s, i+1)
				prevSig = '"'
				continue
			}
		}
		if isIdentStart(c) {
			j := i
			for j < len(s) && isIdentByte(s[j]) {
				j++
			}
			k := j
			for k < len(s) && (s[k] == ' ' || s[k] == '\t' || s[k] == '\n' || s[k] == '\r') {
				k++
			}
			if prevSig != '.' && (k >= len(s) || s[k] != '(') {
				out = append(out, identTok{name: s[i:j], start: i, end: j})
			}
			prevSig = s[j-1]
			i = j
			continue
		}
		if c >= '0' && c <= '9' {
			// numbers (including 1.5e3, 0x1F) are not identifiers
			for i < len(s) && (isIdentByte(s[i]) || s[i] == '.') {
				i++
			}
			prevSig = '0'
			continue
		}
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			prevSig = c
		}
		i++
	}
	return out
}

func skipString(s string, i int) int {
	q := s[i]
	if i+2 < len(s) && s[i+1] == q && s[i+2] == q { // triple-quoted
		end := strings.Index(s[i+3:], string([]byte{q, q, q}))
		if end < 0 {
			return len(s)
		}
		return i + 3 + end + 3
	}
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case q:
			return j + 1
		}
	}
	return len(s)
}

func isIdentStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isIdentByte(c byte) bool  { return isIdentStart(c) || c >= '0' && c <= '9' }

func (c *compiler) rule(r *Rule) (*compiledRule, error) {
	what := "rule " + r.ID
	x, err := c.expand(r.Condition, &r.cond, "", nil)
	if err != nil {
		var pe *Error
		if errors.As(err, &pe) && !strings.HasPrefix(pe.Msg, "macro") {
			return nil, errAt(pe.Pos, "%s: %s", what, pe.Msg)
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	text := x.text
	if exc, err := c.exceptionsExpr(r); err != nil {
		return nil, err
	} else if exc != "" {
		// Keep the condition's offsets: prepend nothing, append exceptions.
		text = "(" + text + ")" + exc
		for i := range x.runs {
			x.runs[i].start++
			x.runs[i].end++
		}
	}
	x = &expansion{text: text, runs: x.runs}
	ast, iss := c.env.Compile(text)
	if iss != nil && iss.Err() != nil {
		return nil, c.celError(x, iss.Errors(), what)
	}
	if !ast.OutputType().IsExactType(types.BoolType) {
		return nil, errAt(r.cond.pos, "%s: condition must be true/false but is %s; compare the value (e.g. proc.name == \"x\")", what, ast.OutputType())
	}
	est, err := c.env.EstimateCost(ast, sizeEstimator{lists: c.lists})
	if err != nil {
		return nil, errAt(r.cond.pos, "%s: estimate condition cost: %v", what, err)
	}
	if est.Max > c.opts.maxEstimated {
		return nil, errAt(r.cond.pos, "%s: condition is too expensive: worst-case cost %d exceeds the limit %d (with argv up to %d items, strings up to %d bytes); avoid nested loops over proc.args/ancestors and regexes inside loops, or narrow it with cheap tests first",
			what, est.Max, c.opts.maxEstimated, maxArgs, maxStringSize)
	}
	prg, err := c.env.Program(ast, cel.CostLimit(c.opts.costLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, errAt(r.cond.pos, "%s: build program: %v", what, err)
	}
	return &compiledRule{rule: r, prg: prg, cost: est.Max, expr: text, checked: ast}, nil
}

// compileNative translates the rules' conditions for the native evaluator
// (whole conditions, or prefilters), derives their name-index gates, and
// returns the number of shared sub-expression (memo) slots used.
func compileNative(c *compiler, rules []*compiledRule) int {
	memo := newMemoTable()
	for _, cr := range rules {
		memo.count(cr.checked.NativeRep().Expr())
	}
	res := &regexCache{}
	var uses []litUse
	for _, cr := range rules {
		collectLitUses(cr.checked.NativeRep().Expr(), res, &uses)
	}
	lits := buildLitIndex(&nativeCompiler{voc: c.voc, lists: c.lists}, uses)
	exprs := make([]ast.Expr, len(rules))
	for i, cr := range rules {
		exprs[i] = cr.checked.NativeRep().Expr()
	}
	sets := buildSetIndex(&nativeCompiler{voc: c.voc, lists: c.lists}, exprs)
	nLower := 0
	for _, cr := range rules {
		expr := cr.checked.NativeRep().Expr()
		nc := &nativeCompiler{voc: c.voc, lists: c.lists, memo: memo, lits: lits, sets: sets, res: res, nLower: &nLower}
		cr.native = nc.boolExpr(expr)
		if cr.native == nil {
			cr.pre = nc.prefilter(expr)
		}
		for _, k := range cr.rule.Kinds {
			if g := nc.nameGate(expr, k); g != nil {
				if cr.gates == nil {
					cr.gates = map[event.Kind]*nameKeys{}
				}
				cr.gates[k] = g
			}
		}
	}
	return len(memo.slots)
}

// exceptionsExpr renders a rule's exceptions as "&& !(...)" clauses.
func (c *compiler) exceptionsExpr(r *Rule) (string, error) {
	var b strings.Builder
	for _, ex := range r.Exceptions {
		for _, tuple := range ex.Values {
			b.WriteString(" && !(")
			for i, f := range ex.Fields {
				if i > 0 {
					b.WriteString(" && ")
				}
				ft, ok := exceptionFieldType(f)
				if !ok {
					return "", errAt(ex.Source, "rule %s exception %q: unknown field %q", r.ID, ex.Name, f)
				}
				cell := tuple[i]
				if len(cell.Values) == 1 {
					if l, isList := c.lists[cell.Values[0]]; isList {
						if (ft == tInt) != l.list.Ints {
							return "", errAt(ex.Source, "rule %s exception %q: field %s is %s but list %q holds %s", r.ID, ex.Name, f, ft, l.list.Name, intsWord(l.list.Ints))
						}
						fmt.Fprintf(&b, "%s in %s", f, l.list.Name)
						continue
					}
					fmt.Fprintf(&b, "%s == %s", f, literal(ft, cell.Values[0]))
					continue
				}
				fmt.Fprintf(&b, "%s in [", f)
				for j, v := range cell.Values {
					if j > 0 {
						b.WriteString(", ")
					}
					b.WriteString(literal(ft, v))
				}
				b.WriteString("]")
			}
			b.WriteString(")")
		}
	}
	return b.String(), nil
}

func literal(t valType, v string) string {
	switch t {
	case tInt:
		n, _ := strconv.ParseInt(v, 0, 64)
		return strconv.FormatInt(n, 10)
	case tBool:
		b, _ := strconv.ParseBool(v)
		return strconv.FormatBool(b)
	}
	return strconv.Quote(v)
}

// sizeEstimator bounds the sizes of vocabulary values for static cost
// estimation.
type sizeEstimator struct{ lists map[string]*listVal }

func (s sizeEstimator) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	p := n.Path()
	if len(p) == 1 {
		if l, ok := s.lists[p[0]]; ok {
			e := checker.FixedSizeEstimate(uint64(len(l.list.Items)))
			return &e
		}
		switch p[0] {
		case "ancestors":
			return &checker.SizeEstimate{Min: 0, Max: maxAncestors}
		case "facts":
			return &checker.SizeEstimate{Min: 0, Max: maxFacts}
		}
	}
	if len(p) > 0 && p[len(p)-1] == "@items" && len(p) >= 2 && p[len(p)-2] == "args" {
		return &checker.SizeEstimate{Min: 0, Max: maxArgSize}
	}
	if t := n.Type(); t != nil {
		switch t.Kind() {
		case types.StringKind:
			return &checker.SizeEstimate{Min: 0, Max: maxStringSize}
		case types.ListKind:
			return &checker.SizeEstimate{Min: 0, Max: maxArgs}
		}
	}
	return nil
}

func (s sizeEstimator) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// listVal is a compiled list: its CEL constant and a set for native `in`.
type listVal struct {
	list *List
	cel  ref.Val
	strs map[string]struct{}
	ints map[int64]struct{}
}

func newListVal(l *List) *listVal {
	lv := &listVal{list: l}
	if l.Ints {
		lv.ints = make(map[int64]struct{}, len(l.Items))
		vals := make([]ref.Val, 0, len(l.Items))
		for _, s := range l.Items {
			n, _ := strconv.ParseInt(s, 10, 64)
			lv.ints[n] = struct{}{}
			vals = append(vals, types.Int(n))
		}
		lv.cel = types.NewRefValList(types.DefaultTypeAdapter, vals)
		return lv
	}
	lv.strs = make(map[string]struct{}, len(l.Items))
	for _, s := range l.Items {
		lv.strs[s] = struct{}{}
	}
	lv.cel = types.NewStringList(types.DefaultTypeAdapter, l.Items)
	return lv
}

func (lv *listVal) celType() *types.Type {
	if lv.list.Ints {
		return cel.ListType(cel.IntType)
	}
	return cel.ListType(cel.StringType)
}

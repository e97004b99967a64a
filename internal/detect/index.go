package detect

import (
	"math/bits"
	"regexp/syntax"
	"sort"
	"strconv"
	"strings"

	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"

	"github.com/vigil-sec/vigil/internal/event"
)

// Optimisations that do not change which rules match (each is checked
// against the CEL interpreter on every recorded event in prefilter_test.go):
//
//   - The gate index. For each kind, a rule whose condition can only be
//     true when proc.name or proc.comm is in a known set of strings, when
//     another top-level field (audit.resource, file.path, ...) is, or when
//     an indexed subject such as proc.cmdline contains one of a set of
//     literals (a necessary condition derived from the AST, see nameGate)
//     is only evaluated for events that meet it. Rules without such a
//     condition are always evaluated. Candidates are kept in a bitset in
//     the engine's evaluation order, so the order of matches is unchanged.
//
//   - The literal index (literals.go) and the membership index
//     (members.go): per-event subjects tested by many rules are scanned or
//     looked up once, and each test becomes a bit test.
//
//   - Regexps are decided without the regexp engine where their shape
//     allows (regex.go, branch.go).
//
//   - Shared sub-expressions. A natively compiled boolean sub-expression
//     that occurs more than once in the catalog (outside loops), such as
//     "proc.name in shell_binaries" or the package-manager ancestry test,
//     is evaluated at most once per event and its result reused (memo).

// nameKeys is a necessary condition "proc.name ∈ name || proc.comm ∈ comm".
// nil means no restriction could be derived.
//
// lits extends it with "or the subject contains one of the literals" for
// subjects of the literal index (see litIndex): the condition becomes
// proc.name ∈ name || proc.comm ∈ comm || (some subject contains a literal).
//
// vals extends it likewise with "or another top-level field (audit.verb,
// file.path, ...) is in a set of values".
type nameKeys struct {
	name, comm map[string]struct{}
	lits       map[*litSubject]map[int]struct{}
	vals       map[string]*valKeys // by field path
}

// valKeys is a set of values of one field.
type valKeys struct {
	get strFn
	set map[string]struct{}
}

func (k *nameKeys) size() int {
	n := len(k.name) + len(k.comm)
	for _, ids := range k.lits {
		// A literal is a weaker filter than a name: a short one occurs
		// in many command lines.
		n += 4 * len(ids)
	}
	for _, v := range k.vals {
		n += len(v.set)
	}
	return n
}

func unionVals(a, b map[string]*valKeys) map[string]*valKeys {
	if len(a) == 0 && len(b) == 0 {
		return nil
	}
	out := map[string]*valKeys{}
	for _, m := range []map[string]*valKeys{a, b} {
		for key, v := range m {
			if out[key] == nil {
				out[key] = &valKeys{get: v.get, set: map[string]struct{}{}}
			}
			for s := range v.set {
				out[key].set[s] = struct{}{}
			}
		}
	}
	return out
}

// valGate is the gate of a test that holds only when the top-level field
// e has one of the values in set, or nil.
func (c *nativeCompiler) valGate(e ast.Expr, set map[string]struct{}) *nameKeys {
	key, ok := setSubjectKey(e)
	if !ok {
		return nil
	}
	if _, shadow := c.slots[e.AsSelect().Operand().AsIdent()]; shadow {
		return nil
	}
	get := c.strExpr(e)
	if get == nil {
		return nil
	}
	return &nameKeys{vals: map[string]*valKeys{key: {get: get, set: set}}}
}

func unionLits(a, b map[*litSubject]map[int]struct{}) map[*litSubject]map[int]struct{} {
	if len(a) == 0 && len(b) == 0 {
		return nil
	}
	out := map[*litSubject]map[int]struct{}{}
	for _, m := range []map[*litSubject]map[int]struct{}{a, b} {
		for s, ids := range m {
			if out[s] == nil {
				out[s] = map[int]struct{}{}
			}
			for id := range ids {
				out[s][id] = struct{}{}
			}
		}
	}
	return out
}

// litKeys is the gate of a test that holds only when the subject of e
// contains one of lits, or nil when e is not an indexed subject.
func (c *nativeCompiler) litKeys(e ast.Expr, fold bool, lits []string) *nameKeys {
	sub := c.lits.subject(c, e, fold)
	if sub == nil || len(lits) == 0 {
		return nil
	}
	ids := map[int]struct{}{}
	for _, l := range lits {
		id, ok := sub.ids[l]
		if !ok {
			return nil
		}
		ids[id] = struct{}{}
	}
	return &nameKeys{lits: map[*litSubject]map[int]struct{}{sub: ids}}
}

func unionSet(a, b map[string]struct{}) map[string]struct{} {
	out := make(map[string]struct{}, len(a)+len(b))
	for s := range a {
		out[s] = struct{}{}
	}
	for s := range b {
		out[s] = struct{}{}
	}
	return out
}

// nameGate derives, for events of kind k, a necessary condition of e on
// proc.name and proc.comm: when e is true (not false, not an error), the
// event's name or comm is in the returned sets. An empty (non-nil) result
// means e can never be true for kind k. nil means no such condition.
//
//	gate(a && b) = the smaller of gate(a), gate(b) (either, if one is nil)
//	gate(a || b) = gate(a) ∪ gate(b)              (nil if either is nil)
//	gate(kind == "x") = ∅ if x != k               (nil otherwise)
//	gate(proc.name in S) = {name: S}, gate(proc.comm == "s") = {comm: {s}}
//
// CEL's && is true only when both operands are true and || only when one
// is, also in the presence of errors, so the rules compose. Comprehension
// bodies are not entered, so identifiers always mean the top-level
// variables.
func (c *nativeCompiler) nameGate(e ast.Expr, k event.Kind) *nameKeys {
	if e.Kind() == ast.ComprehensionKind {
		return c.argsGate(e.AsComprehension())
	}
	if e.Kind() != ast.CallKind {
		return nil
	}
	call := e.AsCall()
	args := call.Args()
	switch call.FunctionName() {
	case "_&&_":
		a, b := c.nameGate(args[0], k), c.nameGate(args[1], k)
		switch {
		case a == nil:
			return b
		case b == nil:
			return a
		case b.size() < a.size():
			return b
		}
		return a
	case "_||_":
		a, b := c.nameGate(args[0], k), c.nameGate(args[1], k)
		if a == nil || b == nil {
			return nil
		}
		return &nameKeys{name: unionSet(a.name, b.name), comm: unionSet(a.comm, b.comm), lits: unionLits(a.lits, b.lits), vals: unionVals(a.vals, b.vals)}
	case "_==_":
		for i := 0; i < 2; i++ {
			x, y := args[i], args[1-i]
			lit, ok := stringLiteral(y)
			if !ok {
				continue
			}
			if x.Kind() == ast.IdentKind && x.AsIdent() == "kind" {
				if lit != string(k) {
					return &nameKeys{}
				}
				return nil
			}
			if f := procNameField(x); f != "" {
				return keysOn(f, map[string]struct{}{lit: {}})
			}
			if g := c.valGate(x, map[string]struct{}{lit: {}}); g != nil {
				return g
			}
		}
	case "@in":
		if set, ok := c.constStrSet(args[1]); ok {
			if f := procNameField(args[0]); f != "" {
				return keysOn(f, set)
			}
			return c.valGate(args[0], set)
		}
	case "matches":
		if call.IsMemberFunction() && len(args) == 1 {
			if f := procNameField(call.Target()); f != "" {
				if lit, ok := stringLiteral(args[0]); ok {
					if set, ok := literalAlternatives(lit); ok {
						return keysOn(f, set)
					}
				}
			}
			// A match contains one of the regexp's index literals.
			if lit, ok := stringLiteral(args[0]); ok {
				if re, err := c.regex(lit); err == nil && re.idxNeed != nil {
					return c.litKeys(call.Target(), re.fold, re.idxNeed)
				}
			}
		}
	case "contains":
		if call.IsMemberFunction() && len(args) == 1 {
			if lit, ok := stringLiteral(args[0]); ok && len(lit) >= 2 {
				return c.litKeys(call.Target(), false, []string{lit})
			}
		}
	}
	return nil
}

func keysOn(field string, set map[string]struct{}) *nameKeys {
	if field == "name" {
		return &nameKeys{name: set}
	}
	return &nameKeys{comm: set}
}

// procNameField returns "name" or "comm" for proc.name and proc.comm.
func procNameField(e ast.Expr) string {
	if e.Kind() != ast.SelectKind {
		return ""
	}
	sel := e.AsSelect()
	if sel.IsTestOnly() || sel.Operand().Kind() != ast.IdentKind || sel.Operand().AsIdent() != "proc" {
		return ""
	}
	switch sel.FieldName() {
	case "name", "comm":
		return sel.FieldName()
	}
	return ""
}

// literalAlternatives returns the strings a regular expression matches
// when it matches exactly a finite set of literals over the whole text,
// such as ^(nc|ncat|nc\.openbsd)$.
func literalAlternatives(pattern string) (map[string]struct{}, bool) {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil, false
	}
	re = re.Simplify()
	if re.Op != syntax.OpConcat || len(re.Sub) < 3 {
		return nil, false
	}
	first, last := re.Sub[0], re.Sub[len(re.Sub)-1]
	if first.Op != syntax.OpBeginText || last.Op != syntax.OpEndText {
		return nil, false
	}
	words := []string{""}
	for _, sub := range re.Sub[1 : len(re.Sub)-1] {
		alts, ok := literalSet(sub)
		if !ok {
			return nil, false
		}
		var next []string
		for _, w := range words {
			for _, a := range alts {
				next = append(next, w+a)
			}
		}
		if len(next) > 256 {
			return nil, false
		}
		words = next
	}
	out := make(map[string]struct{}, len(words))
	for _, w := range words {
		out[w] = struct{}{}
	}
	return out, true
}

// literalSet returns the finite set of strings re matches (case-sensitive).
func literalSet(re *syntax.Regexp) ([]string, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return nil, false
		}
		return []string{string(re.Rune)}, true
	case syntax.OpEmptyMatch:
		return []string{""}, true
	case syntax.OpCapture:
		return literalSet(re.Sub[0])
	case syntax.OpCharClass:
		var out []string
		for i := 0; i+1 < len(re.Rune); i += 2 {
			for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
				out = append(out, string(r))
				if len(out) > 16 {
					return nil, false
				}
			}
		}
		return out, true
	case syntax.OpAlternate:
		var out []string
		for _, s := range re.Sub {
			a, ok := literalSet(s)
			if !ok {
				return nil, false
			}
			out = append(out, a...)
		}
		return out, true
	case syntax.OpConcat:
		words := []string{""}
		for _, s := range re.Sub {
			a, ok := literalSet(s)
			if !ok {
				return nil, false
			}
			var next []string
			for _, w := range words {
				for _, x := range a {
					next = append(next, w+x)
				}
			}
			if len(next) > 256 {
				return nil, false
			}
			words = next
		}
		return words, true
	case syntax.OpQuest:
		a, ok := literalSet(re.Sub[0])
		if !ok {
			return nil, false
		}
		return append([]string{""}, a...), true
	}
	return nil, false
}

// kindIndex holds the rules of one kind in evaluation order and, when some
// of them are gated on proc.name / proc.comm, the candidate bitsets.
type kindIndex struct {
	rules  []*compiledRule
	gated  bool
	always []uint64            // rules without a gate
	byName map[string][]uint64 // gated rules by proc.name
	byComm map[string][]uint64 // gated rules by proc.comm
	byLit  []litGate           // gated rules by literals of indexed subjects
	byVal  []valIndex          // gated rules by values of other fields
}

// valIndex holds the rules gated on the values of one field.
type valIndex struct {
	key   string
	get   strFn
	rules map[string][]uint64
}

// litGate holds the rules gated on literals of one subject: rules[id] are
// the rules that can match when literal id occurs; all is their union
// (for a subject that cannot be scanned, see litSet.unknown).
type litGate struct {
	sub   *litSubject
	rules map[int][]uint64
	all   []uint64
}

func buildKindIndex(rules []*compiledRule, k event.Kind) *kindIndex {
	words := (len(rules) + 63) / 64
	x := &kindIndex{rules: rules, always: make([]uint64, words), byName: map[string][]uint64{}, byComm: map[string][]uint64{}}
	set := func(m map[string][]uint64, key string, i int) {
		b := m[key]
		if b == nil {
			b = make([]uint64, words)
			m[key] = b
		}
		b[i/64] |= 1 << (i % 64)
	}
	for i, cr := range rules {
		g := cr.gates[k]
		if g == nil {
			x.always[i/64] |= 1 << (i % 64)
			continue
		}
		x.gated = true
		for s := range g.name {
			set(x.byName, s, i)
		}
		for s := range g.comm {
			set(x.byComm, s, i)
		}
		for sub, ids := range g.lits {
			var lg *litGate
			for j := range x.byLit {
				if x.byLit[j].sub == sub {
					lg = &x.byLit[j]
				}
			}
			if lg == nil {
				x.byLit = append(x.byLit, litGate{sub: sub, rules: map[int][]uint64{}, all: make([]uint64, words)})
				lg = &x.byLit[len(x.byLit)-1]
			}
			for id := range ids {
				b := lg.rules[id]
				if b == nil {
					b = make([]uint64, words)
					lg.rules[id] = b
				}
				b[i/64] |= 1 << (i % 64)
			}
			lg.all[i/64] |= 1 << (i % 64)
		}
	}
	for i, cr := range rules {
		g := cr.gates[k]
		if g == nil {
			continue
		}
		for key, v := range g.vals {
			var vi *valIndex
			for j := range x.byVal {
				if x.byVal[j].key == key {
					vi = &x.byVal[j]
				}
			}
			if vi == nil {
				x.byVal = append(x.byVal, valIndex{key: key, get: v.get, rules: map[string][]uint64{}})
				vi = &x.byVal[len(x.byVal)-1]
			}
			for s := range v.set {
				set(vi.rules, s, i)
			}
		}
	}
	sort.Slice(x.byVal, func(i, j int) bool { return x.byVal[i].key < x.byVal[j].key })
	// A fixed order, so that the evaluation order does not depend on map
	// iteration (it does not change which rules match either way).
	sort.Slice(x.byLit, func(i, j int) bool { return x.byLit[i].sub.slot < x.byLit[j].sub.slot })
	return x
}

// candidates fills dst with the rules that can match an event of this
// kind with the given process (a superset of the matching rules).
func (x *kindIndex) candidates(dst []uint64, st *evalState) []uint64 {
	p := &st.procs[0]
	dst = append(dst[:0], x.always...)
	for i := range x.byVal {
		vi := &x.byVal[i]
		if b, ok := vi.rules[vi.get(st)]; ok {
			for i := range dst {
				dst[i] |= b[i]
			}
		}
	}
	for i := range x.byLit {
		lg := &x.byLit[i]
		r := st.lits(lg.sub)
		if r.unknown {
			for i := range dst {
				dst[i] |= lg.all[i]
			}
			continue
		}
		for w, m := range r.bits {
			for m != 0 {
				id := w*64 + bits.TrailingZeros64(m)
				m &= m - 1
				if b, ok := lg.rules[id]; ok {
					for i := range dst {
						dst[i] |= b[i]
					}
				}
			}
		}
	}
	if b, ok := x.byName[p.name()]; ok {
		for i := range dst {
			dst[i] |= b[i]
		}
	}
	if b, ok := x.byComm[p.comm()]; ok {
		for i := range dst {
			dst[i] |= b[i]
		}
	}
	return dst
}

// nextBit returns the index of the lowest set bit of b at or after i, or -1.
func nextBit(b []uint64, i int) int {
	for w := i / 64; w < len(b); w++ {
		m := b[w]
		if w == i/64 {
			m &= ^uint64(0) << (i % 64)
		}
		if m != 0 {
			return w*64 + bits.TrailingZeros64(m)
		}
	}
	return -1
}

const (
	// maxMemo bounds the shared sub-expressions cached per event (the
	// cache lives inline in evalState); further ones are not cached.
	maxMemo = 128
	// candWords is the candidate bitset kept inline in evalState.
	candWords = 8
)

// memoTable assigns per-event result slots to boolean sub-expressions that
// occur more than once across the compiled rules.
type memoTable struct {
	counts map[string]int
	slots  map[string]int
}

func newMemoTable() *memoTable {
	return &memoTable{counts: map[string]int{}, slots: map[string]int{}}
}

// memoEntry is one cached result; valid when gen equals the evalState's.
type memoEntry struct {
	gen uint32
	v   tri
}

// memoCandidate reports whether caching e's result can pay off.
func memoCandidate(e ast.Expr) bool {
	switch e.Kind() {
	case ast.ComprehensionKind:
		return true
	case ast.CallKind:
		switch e.AsCall().FunctionName() {
		case "@in", "matches", "!_", "_&&_", "_||_", "contains", "startsWith", "endsWith":
			return true
		}
	}
	return false
}

// count records the memo candidates of e outside comprehension bodies.
func (m *memoTable) count(e ast.Expr) {
	if memoCandidate(e) {
		if key, ok := exprKey(e); ok {
			m.counts[key]++
		}
	}
	if e.Kind() == ast.CallKind {
		call := e.AsCall()
		switch call.FunctionName() {
		case "_&&_", "_||_", "!_":
			for _, a := range call.Args() {
				m.count(a)
			}
		}
	}
}

// slot returns the memo slot for e, or -1 when e is not shared.
func (m *memoTable) slot(e ast.Expr) int {
	if m == nil || !memoCandidate(e) {
		return -1
	}
	key, ok := exprKey(e)
	if !ok || m.counts[key] < 2 {
		return -1
	}
	if i, ok := m.slots[key]; ok {
		return i
	}
	i := len(m.slots)
	if i >= maxMemo {
		return -1
	}
	m.slots[key] = i
	return i
}

func memoize(i int, f boolFn) boolFn {
	return func(st *evalState) tri {
		m := &st.memo[i]
		if m.gen == st.gen {
			return m.v
		}
		v := f(st)
		*m = memoEntry{gen: st.gen, v: v}
		return v
	}
}

// exprKey renders e structurally (ignoring node ids), so that equal
// sub-expressions of different rules get the same key. ok is false for
// expressions it does not render (maps, structs), which are never shared.
func exprKey(e ast.Expr) (key string, ok bool) {
	var b strings.Builder
	if !writeKey(&b, e) {
		return "", false
	}
	return b.String(), true
}

func writeKey(b *strings.Builder, e ast.Expr) bool {
	switch e.Kind() {
	case ast.LiteralKind:
		v := e.AsLiteral()
		b.WriteString(v.Type().TypeName())
		b.WriteByte(':')
		switch x := v.Value().(type) {
		case string:
			b.WriteString(strconv.Quote(x))
		case bool:
			b.WriteString(strconv.FormatBool(x))
		case int64:
			b.WriteString(strconv.FormatInt(x, 10))
		case uint64:
			b.WriteString(strconv.FormatUint(x, 10))
		case float64:
			b.WriteString(strconv.FormatFloat(x, 'g', -1, 64))
		case []byte:
			b.WriteString(strconv.Quote(string(x)))
		default:
			if v.Type() != types.NullType {
				return false
			}
		}
		return true
	case ast.IdentKind:
		b.WriteString("id:")
		b.WriteString(e.AsIdent())
		return true
	case ast.SelectKind:
		sel := e.AsSelect()
		if sel.IsTestOnly() {
			b.WriteString("has")
		}
		b.WriteString("sel(")
		ok := writeKey(b, sel.Operand())
		b.WriteString(").")
		b.WriteString(sel.FieldName())
		return ok
	case ast.CallKind:
		call := e.AsCall()
		b.WriteString("call:")
		b.WriteString(call.FunctionName())
		b.WriteByte('(')
		if call.IsMemberFunction() {
			b.WriteString("target=")
			if !writeKey(b, call.Target()) {
				return false
			}
			b.WriteByte(';')
		}
		for _, a := range call.Args() {
			if !writeKey(b, a) {
				return false
			}
			b.WriteByte(',')
		}
		b.WriteByte(')')
		return true
	case ast.ListKind:
		b.WriteString("list[")
		for _, el := range e.AsList().Elements() {
			if !writeKey(b, el) {
				return false
			}
			b.WriteByte(',')
		}
		b.WriteByte(']')
		return true
	case ast.ComprehensionKind:
		cx := e.AsComprehension()
		b.WriteString("comp(")
		b.WriteString(cx.IterVar())
		b.WriteByte(',')
		b.WriteString(cx.IterVar2())
		b.WriteByte(',')
		b.WriteString(cx.AccuVar())
		for _, x := range []ast.Expr{cx.IterRange(), cx.AccuInit(), cx.LoopCondition(), cx.LoopStep(), cx.Result()} {
			b.WriteByte(';')
			if !writeKey(b, x) {
				return false
			}
		}
		b.WriteByte(')')
		return true
	}
	return false
}

// sortedKeys is used by tests and diagnostics.
func sortedKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for s := range m {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// argsGate derives the gate of proc.args.exists(v, P): an element of argv
// is a substring of proc.cmdline (argv joined by spaces), so a literal
// that P requires in v is required in proc.cmdline too.
//
//	gate(P || Q) = gate(P) ∪ gate(Q), gate(P && Q) = the smaller,
//	gate(v == "x"), gate(v.contains("x")), ... = {cmdline: {x}}
func (c *nativeCompiler) argsGate(cx ast.ComprehensionExpr) *nameKeys {
	if cx.HasIterVar2() || !isProcArgs(cx.IterRange()) {
		return nil
	}
	if _, shadow := c.slots["proc"]; shadow {
		return nil
	}
	init := cx.AccuInit()
	if init.Kind() != ast.LiteralKind {
		return nil
	}
	if b, ok := init.AsLiteral().(types.Bool); !ok || bool(b) {
		return nil // not exists()
	}
	res := cx.Result()
	if res.Kind() != ast.IdentKind || res.AsIdent() != cx.AccuVar() {
		return nil
	}
	step := cx.LoopStep()
	if step.Kind() != ast.CallKind || step.AsCall().FunctionName() != "_||_" {
		return nil
	}
	sa := step.AsCall().Args()
	var pred ast.Expr
	switch {
	case sa[0].Kind() == ast.IdentKind && sa[0].AsIdent() == cx.AccuVar():
		pred = sa[1]
	case sa[1].Kind() == ast.IdentKind && sa[1].AsIdent() == cx.AccuVar():
		pred = sa[0]
	default:
		return nil
	}
	sub := c.lits.exactSubject("proc.cmdline")
	if sub == nil {
		return nil
	}
	return c.argPredGate(pred, cx.IterVar(), sub)
}

func (c *nativeCompiler) argPredGate(e ast.Expr, v string, sub *litSubject) *nameKeys {
	if e.Kind() != ast.CallKind {
		return nil
	}
	call := e.AsCall()
	switch call.FunctionName() {
	case "_&&_":
		a, b := c.argPredGate(call.Args()[0], v, sub), c.argPredGate(call.Args()[1], v, sub)
		switch {
		case a == nil:
			return b
		case b == nil, b.size() >= a.size():
			return a
		}
		return b
	case "_||_":
		a, b := c.argPredGate(call.Args()[0], v, sub), c.argPredGate(call.Args()[1], v, sub)
		if a == nil || b == nil {
			return nil
		}
		return &nameKeys{lits: unionLits(a.lits, b.lits)}
	}
	lits, fold, ok := argTestLits(call, map[string]bool{v: true}, c.res)
	if !ok || fold {
		return nil
	}
	ids := map[int]struct{}{}
	for _, l := range lits {
		id, found := sub.ids[l]
		if !found {
			return nil
		}
		ids[id] = struct{}{}
	}
	return &nameKeys{lits: map[*litSubject]map[int]struct{}{sub: ids}}
}

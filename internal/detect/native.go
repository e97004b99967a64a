package detect

import (
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
)

// The native evaluator: a type-checked CEL AST is translated into Go
// closures when every node belongs to a subset whose evaluation can neither
// fail nor allocate (boolean logic, comparisons, string tests, `in` with a
// hash set, exists/all over ancestors, argv and lists, facts lookups). The
// result is exactly the CEL result because every vocabulary value is always
// present (strings "", numbers 0, facts[k] ""). Anything else is left to the
// CEL interpreter; conjuncts that translate still serve as a prefilter.

type (
	boolFn func(*evalState) tri
	strFn  func(*evalState) string
	intFn  func(*evalState) int64
	listFn func(*evalState) []string
	procFn func(*evalState) *procView
)

const maxSlots = 8

// tri is a CEL boolean result: false, true, or an error (an index out of
// range, int() of a non-number). Errors follow CEL's rules: false && error
// is false, true || error is true, anything else with an error is an error
// (and an error is never a match).
type tri uint8

const (
	triF tri = iota
	triT
	triE
)

func triOf(b bool) tri {
	if b {
		return triT
	}
	return triF
}

// fault reports and clears an error raised by a string or int accessor
// (index out of range, failed int conversion) since the last check.
func (st *evalState) fault() bool {
	if st.err {
		st.err = false
		return true
	}
	return false
}

type slot struct {
	idx    int
	isProc bool
}

type nativeCompiler struct {
	voc   *vocabulary
	lists map[string]*listVal
	slots map[string]slot
	nslot int
	memo  *memoTable // shared across the rules of one Compile; nil: no memo
	lits  *litIndex  // literal index of subjects (nil: none)
	sets  *setIndex  // membership index of subjects (nil: none)
	// nLower counts the lowerAscii call sites given a buffer in
	// evalState (shared across the rules of one Compile).
	nLower *int
	res    *regexCache
}

// prefilter returns a natively evaluated necessary condition of e: when it
// is false, e cannot be true (it is false, or a CEL error, which also counts
// as no match). It returns nil when no such condition can be derived.
//
//	nec(x) = x                       if x translates natively
//	nec(a && b) = nec(a) && nec(b)   (either side alone if only one exists)
//	nec(a || b) = nec(a) || nec(b)   (only if both exist)
func (c *nativeCompiler) prefilter(e ast.Expr) boolFn {
	if f := c.boolExpr(e); f != nil {
		return f
	}
	if e.Kind() != ast.CallKind {
		return nil
	}
	call := e.AsCall()
	switch call.FunctionName() {
	case "_&&_":
		a, b := c.prefilter(call.Args()[0]), c.prefilter(call.Args()[1])
		switch {
		case a == nil:
			return b
		case b == nil:
			return a
		}
		return and(a, b)
	case "_||_":
		a, b := c.prefilter(call.Args()[0]), c.prefilter(call.Args()[1])
		if a == nil || b == nil {
			return nil
		}
		return or(a, b)
	}
	return nil
}

func and(a, b boolFn) boolFn {
	return func(st *evalState) tri {
		x := a(st)
		if x == triF {
			return triF
		}
		y := b(st)
		if y == triF {
			return triF
		}
		if x == triE || y == triE {
			return triE
		}
		return triT
	}
}

func or(a, b boolFn) boolFn {
	return func(st *evalState) tri {
		x := a(st)
		if x == triT {
			return triT
		}
		y := b(st)
		if y == triT {
			return triT
		}
		if x == triE || y == triE {
			return triE
		}
		return triF
	}
}

// andN is a && b && ... in one closure: false at the first false operand,
// else an error if any operand is one, else true.
func andN(fs []boolFn) boolFn { return chainN(fs, triF, and) }

// orN is a || b || ...: true at the first true operand, else an error if
// any operand is one, else false.
func orN(fs []boolFn) boolFn { return chainN(fs, triT, or) }

// chainN runs the operands in order until one returns decisive (triF for
// &&, triT for ||); otherwise the result is an error if any operand was
// one, else the opposite of decisive. pair builds the two-operand form.
func chainN(fs []boolFn, decisive tri, pair func(a, b boolFn) boolFn) boolFn {
	switch len(fs) {
	case 1:
		return fs[0]
	case 2:
		return pair(fs[0], fs[1])
	}
	otherwise := triT
	if decisive == triT {
		otherwise = triF
	}
	return func(st *evalState) tri {
		res := otherwise
		for _, f := range fs {
			switch f(st) {
			case decisive:
				return decisive
			case triE:
				res = triE
			}
		}
		return res
	}
}

func (c *nativeCompiler) boolExpr(e ast.Expr) boolFn {
	// Sub-expressions outside loops that several rules share are
	// evaluated once per event (inside a loop, identifiers may be shadowed
	// by the iteration variable and results depend on the element).
	if c.nslot == 0 {
		if i := c.memo.slot(e); i >= 0 {
			if f := c.boolExprUncached(e); f != nil {
				return memoize(i, f)
			}
			return nil
		}
	}
	return c.boolExprUncached(e)
}

func (c *nativeCompiler) boolExprUncached(e ast.Expr) boolFn {
	switch e.Kind() {
	case ast.LiteralKind:
		if b, ok := e.AsLiteral().(types.Bool); ok {
			v := triOf(bool(b))
			return func(*evalState) tri { return v }
		}
	case ast.SelectKind:
		return c.boolField(e)
	case ast.ComprehensionKind:
		return c.comprehension(e.AsComprehension())
	case ast.CallKind:
		return c.boolCall(e.AsCall())
	}
	return nil
}

func (c *nativeCompiler) boolCall(call ast.CallExpr) boolFn {
	args := call.Args()
	switch call.FunctionName() {
	case "_&&_", "_||_":
		// CEL's && and || are commutative (also with errors), so operands
		// are evaluated cheapest first.
		op := call.FunctionName()
		var terms []ast.Expr
		flatten(call, op, &terms)
		sort.SliceStable(terms, func(i, j int) bool { return exprCost(terms[i]) < exprCost(terms[j]) })
		fs := make([]boolFn, 0, len(terms))
		for _, t := range terms {
			g := c.boolExpr(t)
			if g == nil {
				return nil
			}
			fs = append(fs, g)
		}
		if op == "_&&_" {
			return andN(fs)
		}
		return orN(fs)
	case "!_":
		a := c.boolExpr(args[0])
		if a == nil {
			return nil
		}
		return func(st *evalState) tri {
			switch a(st) {
			case triF:
				return triT
			case triT:
				return triF
			}
			return triE
		}
	case "_==_", "_!=_":
		neg := call.FunctionName() == "_!=_"
		var f boolFn
		if a, b := c.strExpr(args[0]), c.strExpr(args[1]); a != nil && b != nil {
			// Comparisons with a constant are the common case.
			for i := 0; i < 2; i++ {
				if lit, ok := stringLiteral(args[1-i]); ok {
					x := a
					if i == 1 {
						x = b
					}
					return func(st *evalState) tri {
						eq := x(st) == lit
						if st.fault() {
							return triE
						}
						return triOf(eq != neg)
					}
				}
			}
			f = func(st *evalState) tri {
				eq := a(st) == b(st)
				if st.fault() {
					return triE
				}
				return triOf(eq != neg)
			}
		} else if a, b := c.intExpr(args[0]), c.intExpr(args[1]); a != nil && b != nil {
			f = func(st *evalState) tri {
				eq := a(st) == b(st)
				if st.fault() {
					return triE
				}
				return triOf(eq != neg)
			}
		} else if a, b := c.boolExpr(args[0]), c.boolExpr(args[1]); a != nil && b != nil {
			f = func(st *evalState) tri {
				x, y := a(st), b(st)
				if x == triE || y == triE {
					return triE
				}
				return triOf((x == y) != neg)
			}
		}
		return f
	case "_<_", "_<=_", "_>_", "_>=_":
		if f := c.sizeCompare(call.FunctionName(), args[0], args[1]); f != nil {
			return f
		}
		a, b := c.intExpr(args[0]), c.intExpr(args[1])
		if a == nil || b == nil {
			return nil
		}
		var cmp func(x, y int64) bool
		switch call.FunctionName() {
		case "_<_":
			cmp = func(x, y int64) bool { return x < y }
		case "_<=_":
			cmp = func(x, y int64) bool { return x <= y }
		case "_>_":
			cmp = func(x, y int64) bool { return x > y }
		default:
			cmp = func(x, y int64) bool { return x >= y }
		}
		return func(st *evalState) tri {
			r := cmp(a(st), b(st))
			if st.fault() {
				return triE
			}
			return triOf(r)
		}
	case "@in":
		return c.in(args[0], args[1])
	case "contains", "startsWith", "endsWith":
		if !call.IsMemberFunction() || len(args) != 1 {
			return nil
		}
		t, a := c.strExpr(call.Target()), c.strExpr(args[0])
		if t != nil && a == nil {
			// A concatenation argument (p.startsWith(d + "/")) is tested
			// piecewise, without building the string.
			if parts := c.concatParts(args[0]); parts != nil {
				return concatTest(call.FunctionName(), t, parts)
			}
		}
		if t == nil || a == nil {
			return nil
		}
		// Constant arguments are the common case: avoid the extra call.
		var op func(s, sub string) bool
		switch call.FunctionName() {
		case "contains":
			op = strings.Contains
		case "startsWith":
			op = strings.HasPrefix
		default:
			op = strings.HasSuffix
		}
		if lit, ok := stringLiteral(args[0]); ok {
			if sub := c.lits.subject(c, call.Target(), false); sub != nil && call.FunctionName() == "contains" {
				if m, ok := sub.mask([]string{lit}); ok {
					// The subject is scanned for every indexed literal at
					// once; its accessor cannot fail.
					return func(st *evalState) tri { return triOf(m.anyOf(&st.lits(sub).bits)) }
				}
			}
			return func(st *evalState) tri {
				r := op(t(st), lit)
				if st.fault() {
					return triE
				}
				return triOf(r)
			}
		}
		return func(st *evalState) tri {
			r := op(t(st), a(st))
			if st.fault() {
				return triE
			}
			return triOf(r)
		}
	case "matches":
		var target, pat ast.Expr
		switch {
		case call.IsMemberFunction() && len(args) == 1:
			target, pat = call.Target(), args[0]
		case !call.IsMemberFunction() && len(args) == 2:
			target, pat = args[0], args[1]
		default:
			return nil
		}
		t := c.strExpr(target)
		lit, ok := stringLiteral(pat)
		if t == nil || !ok {
			return nil
		}
		re, err := c.regex(lit)
		if err != nil {
			return nil // CEL reports the error at evaluation
		}
		if f := c.lits.compileMatch(c, target, t, re); f != nil {
			// The literals come from the subject's scan (its accessor
			// cannot fail).
			return f
		}
		return func(st *evalState) tri {
			r := re.MatchString(t(st))
			if st.fault() {
				return triE
			}
			return triOf(r)
		}
	}
	return nil
}

func (c *nativeCompiler) regex(pattern string) (*fastRegexp, error) {
	if c.res == nil {
		return compileFastRegexp(pattern)
	}
	return c.res.get(pattern)
}

func stringLiteral(e ast.Expr) (string, bool) {
	if e.Kind() != ast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}

// in compiles `x in y`.
func (c *nativeCompiler) in(x, y ast.Expr) boolFn {
	// "name" in facts
	if y.Kind() == ast.IdentKind && y.AsIdent() == "facts" {
		k := c.strExpr(x)
		if k == nil {
			return nil
		}
		return func(st *evalState) tri {
			_, ok := st.ev.Fact(k(st))
			if st.fault() {
				return triE
			}
			return triOf(ok)
		}
	}
	if f := c.sets.compileIn(c, x, y); f != nil {
		return f
	}
	if s := c.strExpr(x); s != nil {
		if set, ok := c.constStrSet(y); ok {
			lens := newLenMask(set)
			return func(st *evalState) tri {
				v := s(st)
				found := false
				if lens.has(len(v)) {
					_, found = set[v]
				}
				if st.fault() {
					return triE
				}
				return triOf(found)
			}
		}
		if l := c.listExpr(y); l != nil {
			return func(st *evalState) tri {
				v := s(st)
				found := false
				for _, e := range l(st) {
					if e == v {
						found = true
						break
					}
				}
				if st.fault() {
					return triE
				}
				return triOf(found)
			}
		}
		return nil
	}
	if n := c.intExpr(x); n != nil {
		if set, ok := c.constIntSet(y); ok {
			return func(st *evalState) tri {
				_, found := set[n(st)]
				if st.fault() {
					return triE
				}
				return triOf(found)
			}
		}
	}
	return nil
}

// lenMask records which string lengths (below 256; longer ones share the
// last bit) a constant set holds, so that most misses cost no hash.
type lenMask [4]uint64

func newLenMask(set map[string]struct{}) lenMask {
	var m lenMask
	for k := range set {
		n := min(len(k), 255)
		m[n>>6] |= 1 << (n & 63)
	}
	return m
}

func (m *lenMask) has(n int) bool {
	n = min(n, 255)
	return m[n>>6]&(1<<(n&63)) != 0
}

func (c *nativeCompiler) constStrSet(e ast.Expr) (map[string]struct{}, bool) {
	switch e.Kind() {
	case ast.IdentKind:
		if l, ok := c.lists[e.AsIdent()]; ok && l.strs != nil {
			if _, shadow := c.slots[e.AsIdent()]; !shadow {
				return l.strs, true
			}
		}
	case ast.ListKind:
		set := map[string]struct{}{}
		for _, el := range e.AsList().Elements() {
			s, ok := stringLiteral(el)
			if !ok {
				return nil, false
			}
			set[s] = struct{}{}
		}
		return set, true
	}
	return nil, false
}

func (c *nativeCompiler) constIntSet(e ast.Expr) (map[int64]struct{}, bool) {
	switch e.Kind() {
	case ast.IdentKind:
		if l, ok := c.lists[e.AsIdent()]; ok && l.ints != nil {
			if _, shadow := c.slots[e.AsIdent()]; !shadow {
				return l.ints, true
			}
		}
	case ast.ListKind:
		set := map[int64]struct{}{}
		for _, el := range e.AsList().Elements() {
			if el.Kind() != ast.LiteralKind {
				return nil, false
			}
			n, ok := el.AsLiteral().(types.Int)
			if !ok {
				return nil, false
			}
			set[int64(n)] = struct{}{}
		}
		return set, true
	}
	return nil, false
}

func (c *nativeCompiler) strExpr(e ast.Expr) strFn {
	switch e.Kind() {
	case ast.LiteralKind:
		if s, ok := e.AsLiteral().(types.String); ok {
			v := string(s)
			return func(*evalState) string { return v }
		}
	case ast.IdentKind:
		name := e.AsIdent()
		if sl, ok := c.slots[name]; ok {
			if sl.isProc {
				return nil
			}
			i := sl.idx
			return func(st *evalState) string { return st.slotS[i] }
		}
		if name == "kind" {
			return func(st *evalState) string { return string(st.ev.Kind) }
		}
	case ast.SelectKind:
		return c.strField(e)
	case ast.CallKind:
		call := e.AsCall()
		if call.FunctionName() == "lowerAscii" && call.IsMemberFunction() && len(call.Args()) == 0 {
			t := c.strExpr(call.Target())
			if t == nil {
				return nil
			}
			if c.nLower != nil && *c.nLower < maxLower {
				// Each call site lowers into its own buffer: its result
				// is used before the site runs again, and never kept.
				i := *c.nLower
				*c.nLower++
				return func(st *evalState) string { return lowerASCIIInto(&st.lowBuf[i], t(st)) }
			}
			return func(st *evalState) string { return lowerASCII(t(st)) }
		}
		if call.FunctionName() == "_[_]" && len(call.Args()) == 2 {
			if l, i := c.listExpr(call.Args()[0]), c.intExpr(call.Args()[1]); l != nil && i != nil {
				return func(st *evalState) string {
					elems, n := l(st), i(st)
					if n < 0 || n >= int64(len(elems)) {
						st.err = true // CEL: index out of bounds
						return ""
					}
					return elems[n]
				}
			}
		}
		if call.FunctionName() == "_[_]" && len(call.Args()) == 2 {
			m, k := call.Args()[0], call.Args()[1]
			if m.Kind() == ast.IdentKind && m.AsIdent() == "facts" {
				if _, shadow := c.slots["facts"]; shadow {
					return nil
				}
				key := c.strExpr(k)
				if key == nil {
					return nil
				}
				return func(st *evalState) string {
					v, _ := st.ev.Fact(key(st))
					return v
				}
			}
		}
	}
	return nil
}

func (c *nativeCompiler) intExpr(e ast.Expr) intFn {
	switch e.Kind() {
	case ast.LiteralKind:
		if n, ok := e.AsLiteral().(types.Int); ok {
			v := int64(n)
			return func(*evalState) int64 { return v }
		}
	case ast.SelectKind:
		return c.intField(e)
	case ast.CallKind:
		call := e.AsCall()
		if call.FunctionName() == "int" && !call.IsMemberFunction() && len(call.Args()) == 1 {
			if a := c.strExpr(call.Args()[0]); a != nil {
				return func(st *evalState) int64 {
					n, err := strconv.ParseInt(a(st), 10, 64)
					if err != nil {
						st.err = true // CEL: string to int conversion error
						return 0
					}
					return n
				}
			}
			return c.intExpr(call.Args()[0])
		}
		if call.FunctionName() == "size" {
			var arg ast.Expr
			switch {
			case call.IsMemberFunction() && len(call.Args()) == 0:
				arg = call.Target()
			case !call.IsMemberFunction() && len(call.Args()) == 1:
				arg = call.Args()[0]
			default:
				return nil
			}
			if arg.Kind() == ast.IdentKind && arg.AsIdent() == "ancestors" {
				return func(st *evalState) int64 { return int64(st.nAnc) }
			}
			if l := c.listExpr(arg); l != nil {
				return func(st *evalState) int64 { return int64(len(l(st))) }
			}
			if t := c.strExpr(arg); t != nil {
				// CEL's size of a string counts code points.
				return func(st *evalState) int64 { return int64(utf8.RuneCountInString(t(st))) }
			}
		}
	}
	return nil
}

// listExpr compiles a list<string> expression: argv of a process or a
// string list constant.
func (c *nativeCompiler) listExpr(e ast.Expr) listFn {
	switch e.Kind() {
	case ast.IdentKind:
		if _, shadow := c.slots[e.AsIdent()]; shadow {
			return nil
		}
		if l, ok := c.lists[e.AsIdent()]; ok && l.strs != nil {
			items := l.list.Items
			return func(*evalState) []string { return items }
		}
	case ast.SelectKind:
		sel := e.AsSelect()
		if sel.IsTestOnly() {
			return nil
		}
		if op := sel.Operand(); op.Kind() == ast.IdentKind && op.AsIdent() == "audit" {
			if _, shadow := c.slots["audit"]; shadow {
				return nil
			}
			f, ok := c.voc.audit[sel.FieldName()]
			if !ok || f.t != tStringList {
				return nil
			}
			g := f.l
			return func(st *evalState) []string { return g(&st.audit) }
		}
		p := c.procExpr(sel.Operand())
		f, ok := c.voc.proc[sel.FieldName()]
		if p == nil || !ok || f.t != tStringList {
			return nil
		}
		g := f.l
		return func(st *evalState) []string { return g(p(st)) }
	}
	return nil
}

func (c *nativeCompiler) procExpr(e ast.Expr) procFn {
	if e.Kind() != ast.IdentKind {
		return nil
	}
	name := e.AsIdent()
	if sl, ok := c.slots[name]; ok {
		if !sl.isProc {
			return nil
		}
		i := sl.idx
		return func(st *evalState) *procView { return st.slotP[i] }
	}
	switch name {
	case "proc":
		return func(st *evalState) *procView { return &st.procs[0] }
	case "parent":
		return func(st *evalState) *procView { return &st.procs[1] }
	}
	return nil
}

// objSelect resolves obj.field on any vocabulary object into typed
// accessors; exactly one of the returned functions is non-nil.
func (c *nativeCompiler) objSelect(e ast.Expr) (strFn, intFn, boolFn) {
	sel := e.AsSelect()
	if sel.IsTestOnly() {
		return nil, nil, nil
	}
	op, name := sel.Operand(), sel.FieldName()
	if s, n, b, ok := c.procSelect(op, name); ok {
		return s, n, b
	}
	if p := c.procExpr(op); p != nil {
		return bind(c.voc.proc, name, p)
	}
	if op.Kind() != ast.IdentKind {
		return nil, nil, nil
	}
	obj := op.AsIdent()
	if _, shadow := c.slots[obj]; shadow {
		return nil, nil, nil
	}
	switch obj {
	case "container":
		// The in_container macro's fields, without indirection.
		switch name {
		case "id":
			return func(st *evalState) string { return st.cont.c.ID }, nil, nil
		case "host":
			return nil, nil, func(st *evalState) tri { return triOf(st.cont.c.Host) }
		}
		return bind(c.voc.container, name, func(st *evalState) *contView { return &st.cont })
	case "net":
		return bind(c.voc.net, name, func(st *evalState) *netView { return &st.net })
	case "file":
		return bind(c.voc.file, name, func(st *evalState) *fileView { return &st.file })
	case "sys":
		return bind(c.voc.sys, name, func(st *evalState) *sysView { return &st.sys })
	case "audit":
		return bind(c.voc.audit, name, func(st *evalState) *auditView { return &st.audit })
	}
	return nil, nil, nil
}

// procSelect compiles proc.f, parent.f and (loop variable over
// ancestors).f with the view resolved directly, and the most used string
// fields called directly; ok is false for other operands.
func (c *nativeCompiler) procSelect(op ast.Expr, name string) (strFn, intFn, boolFn, bool) {
	if op.Kind() != ast.IdentKind {
		return nil, nil, nil, false
	}
	id := op.AsIdent()
	f, ok := c.voc.proc[name]
	if !ok {
		return nil, nil, nil, false
	}
	if sl, ok := c.slots[id]; ok {
		if !sl.isProc {
			return nil, nil, nil, false
		}
		i := sl.idx
		switch name {
		case "name":
			return func(st *evalState) string { return st.slotP[i].name() }, nil, nil, true
		case "exe":
			return func(st *evalState) string { return st.slotP[i].exe() }, nil, nil, true
		case "comm":
			return func(st *evalState) string { return st.slotP[i].comm() }, nil, nil, true
		}
		switch f.t {
		case tString:
			g := f.s
			return func(st *evalState) string { return g(st.slotP[i]) }, nil, nil, true
		case tInt:
			g := f.n
			return nil, func(st *evalState) int64 { return g(st.slotP[i]) }, nil, true
		case tBool:
			g := f.b
			return nil, nil, func(st *evalState) tri { return triOf(g(st.slotP[i])) }, true
		}
		return nil, nil, nil, false
	}
	var k int
	switch id {
	case "proc":
		k = 0
	case "parent":
		k = 1
	default:
		return nil, nil, nil, false
	}
	switch name {
	case "name":
		return func(st *evalState) string { return st.procs[k].name() }, nil, nil, true
	case "exe":
		return func(st *evalState) string { return st.procs[k].exe() }, nil, nil, true
	case "comm":
		return func(st *evalState) string { return st.procs[k].comm() }, nil, nil, true
	case "cmdline":
		return func(st *evalState) string { return st.procs[k].cmdline() }, nil, nil, true
	}
	switch f.t {
	case tString:
		g := f.s
		return func(st *evalState) string { return g(&st.procs[k]) }, nil, nil, true
	case tInt:
		g := f.n
		return nil, func(st *evalState) int64 { return g(&st.procs[k]) }, nil, true
	case tBool:
		g := f.b
		return nil, nil, func(st *evalState) tri { return triOf(g(&st.procs[k])) }, true
	}
	return nil, nil, nil, false
}

func bind[V any](fields map[string]field[V], name string, obj func(*evalState) V) (strFn, intFn, boolFn) {
	f, ok := fields[name]
	if !ok {
		return nil, nil, nil
	}
	switch f.t {
	case tString:
		g := f.s
		return func(st *evalState) string { return g(obj(st)) }, nil, nil
	case tInt:
		g := f.n
		return nil, func(st *evalState) int64 { return g(obj(st)) }, nil
	case tBool:
		g := f.b
		return nil, nil, func(st *evalState) tri { return triOf(g(obj(st))) }
	}
	return nil, nil, nil
}

func (c *nativeCompiler) strField(e ast.Expr) strFn   { s, _, _ := c.objSelect(e); return s }
func (c *nativeCompiler) intField(e ast.Expr) intFn   { _, n, _ := c.objSelect(e); return n }
func (c *nativeCompiler) boolField(e ast.Expr) boolFn { _, _, b := c.objSelect(e); return b }

// comprehension compiles the exists() and all() macros over ancestors,
// argv and string lists.
func (c *nativeCompiler) comprehension(cx ast.ComprehensionExpr) boolFn {
	if cx.HasIterVar2() || c.nslot >= maxSlots {
		return nil
	}
	init := cx.AccuInit()
	if init.Kind() != ast.LiteralKind {
		return nil
	}
	initB, ok := init.AsLiteral().(types.Bool)
	if !ok {
		return nil
	}
	res := cx.Result()
	if res.Kind() != ast.IdentKind || res.AsIdent() != cx.AccuVar() {
		return nil
	}
	step := cx.LoopStep()
	if step.Kind() != ast.CallKind {
		return nil
	}
	sc := step.AsCall()
	wantOp := "_||_" // exists
	if initB {
		wantOp = "_&&_" // all
	}
	if sc.FunctionName() != wantOp || len(sc.Args()) != 2 {
		return nil
	}
	a0, a1 := sc.Args()[0], sc.Args()[1]
	var predE ast.Expr
	switch {
	case a0.Kind() == ast.IdentKind && a0.AsIdent() == cx.AccuVar():
		predE = a1
	case a1.Kind() == ast.IdentKind && a1.AsIdent() == cx.AccuVar():
		predE = a0
	default:
		return nil
	}
	rng := cx.IterRange()
	isAnc := rng.Kind() == ast.IdentKind && rng.AsIdent() == "ancestors"
	if _, shadow := c.slots["ancestors"]; shadow {
		isAnc = false
	}
	var list listFn
	if !isAnc {
		if list = c.listExpr(rng); list == nil {
			return nil
		}
	}
	k := c.nslot
	prev, hadPrev := c.slots[cx.IterVar()]
	if c.slots == nil {
		c.slots = map[string]slot{}
	}
	c.slots[cx.IterVar()] = slot{idx: k, isProc: isAnc}
	c.nslot++
	pred := c.boolExpr(predE)
	c.nslot--
	if hadPrev {
		c.slots[cx.IterVar()] = prev
	} else {
		delete(c.slots, cx.IterVar())
	}
	if pred == nil {
		return nil
	}
	// exists stops at the first true, all at the first false; otherwise
	// an error on any element makes the result an error.
	stop, done := triT, triF
	if initB {
		stop, done = triF, triT
	}
	if isAnc {
		return func(st *evalState) tri {
			res := done
			for i := 0; i < st.nAnc; i++ {
				st.slotP[k] = &st.procs[2+i]
				switch pred(st) {
				case stop:
					return stop
				case triE:
					res = triE
				}
			}
			return res
		}
	}
	return func(st *evalState) tri {
		elems := list(st)
		if st.fault() {
			return triE
		}
		res := done
		for _, s := range elems {
			st.slotS[k] = s
			switch pred(st) {
			case stop:
				return stop
			case triE:
				res = triE
			}
		}
		return res
	}
}

// maxLower is the number of lowerAscii call sites with a buffer.
const maxLower = 16

// lowerASCIIInto is lowerASCII into *buf (reused; the result aliases it).
func lowerASCIIInto(buf *[]byte, s string) string {
	i := 0
	for i < len(s) && (s[i] < 'A' || s[i] > 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	b := append((*buf)[:0], s...)
	for ; i < len(b); i++ {
		if b[i] >= 'A' && b[i] <= 'Z' {
			b[i] += 'a' - 'A'
		}
	}
	*buf = b
	return unsafeString(b)
}

// lowerASCII lowers ASCII letters like CEL's lowerAscii. It allocates only
// when s contains an upper-case ASCII letter.
func lowerASCII(s string) string {
	i := 0
	for i < len(s) && (s[i] < 'A' || s[i] > 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if b[i] >= 'A' && b[i] <= 'Z' {
			b[i] += 'a' - 'A'
		}
	}
	return string(b)
}

// flatten collects the operands of a chain of the same boolean operator.
func flatten(call ast.CallExpr, op string, out *[]ast.Expr) {
	for _, a := range call.Args() {
		if a.Kind() == ast.CallKind && a.AsCall().FunctionName() == op {
			flatten(a.AsCall(), op, out)
			continue
		}
		*out = append(*out, a)
	}
}

// exprCost is a rough relative evaluation cost used to order operands.
func exprCost(e ast.Expr) int {
	switch e.Kind() {
	case ast.CallKind:
		call := e.AsCall()
		n := 1
		switch call.FunctionName() {
		case "matches":
			// Most subjects fail the literal prefilter (see fastRegexp
			// and litIndex): a few substring tests, not a regexp run.
			n = 12
		case "contains", "lowerAscii", "int", "@in":
			n = 4
		}
		if call.IsMemberFunction() {
			n += exprCost(call.Target())
		}
		for _, a := range call.Args() {
			n += exprCost(a)
		}
		return n
	case ast.ComprehensionKind:
		cx := e.AsComprehension()
		return 2 + 8*(exprCost(cx.LoopStep())+exprCost(cx.IterRange()))
	case ast.SelectKind:
		sel := e.AsSelect()
		switch sel.FieldName() {
		case "cmdline":
			return 4
		case "masquerade":
			return 3
		}
		return 1 + exprCost(sel.Operand())
	}
	return 0
}

// concatParts returns the operands of a string concatenation a + b + ...
// when every one of them compiles natively, nil otherwise.
func (c *nativeCompiler) concatParts(e ast.Expr) []strFn {
	if e.Kind() != ast.CallKind {
		return nil
	}
	call := e.AsCall()
	if call.FunctionName() != "_+_" || len(call.Args()) != 2 {
		return nil
	}
	var parts []strFn
	for _, a := range call.Args() {
		if f := c.strExpr(a); f != nil {
			parts = append(parts, f)
			continue
		}
		sub := c.concatParts(a)
		if sub == nil {
			return nil
		}
		parts = append(parts, sub...)
	}
	return parts
}

// concatTest compiles t.contains/startsWith/endsWith(p1 + p2 + ...) without
// allocating the concatenation (CEL's string + cannot fail).
func concatTest(fn string, t strFn, parts []strFn) boolFn {
	if len(parts) > maxConcat {
		return nil
	}
	return func(st *evalState) tri {
		s := t(st)
		var vals [maxConcat]string // on the stack: Evaluate runs concurrently
		ps := vals[:len(parts)]
		for i, p := range parts {
			ps[i] = p(st)
		}
		var r bool
		switch fn {
		case "startsWith":
			r = hasPrefixConcat(s, ps)
		case "endsWith":
			n := 0
			for _, p := range ps {
				n += len(p)
			}
			r = n <= len(s) && hasPrefixConcat(s[len(s)-n:], ps)
		default:
			r = containsConcat(s, ps)
		}
		if st.fault() {
			return triE
		}
		return triOf(r)
	}
}

const maxConcat = 8

// hasPrefixConcat reports whether s starts with the concatenation of ps.
func hasPrefixConcat(s string, ps []string) bool {
	for _, p := range ps {
		if !strings.HasPrefix(s, p) {
			return false
		}
		s = s[len(p):]
	}
	return true
}

// containsConcat reports whether s contains the concatenation of ps.
func containsConcat(s string, ps []string) bool {
	n := 0
	for _, p := range ps {
		n += len(p)
	}
	for i := 0; i+n <= len(s); i++ {
		if hasPrefixConcat(s[i:], ps) {
			return true
		}
	}
	return false
}

// sizeCompare compiles size(s) > k (and <, <=, >=) for a string s and a
// constant k: a string has at most as many code points as bytes, so its
// byte length often decides without counting.
func (c *nativeCompiler) sizeCompare(op string, x, y ast.Expr) boolFn {
	if x.Kind() != ast.CallKind || y.Kind() != ast.LiteralKind {
		return nil
	}
	n, ok := y.AsLiteral().(types.Int)
	if !ok {
		return nil
	}
	k := int64(n)
	call := x.AsCall()
	if call.FunctionName() != "size" {
		return nil
	}
	var arg ast.Expr
	switch {
	case call.IsMemberFunction() && len(call.Args()) == 0:
		arg = call.Target()
	case !call.IsMemberFunction() && len(call.Args()) == 1:
		arg = call.Args()[0]
	default:
		return nil
	}
	if c.listExpr(arg) != nil || arg.Kind() == ast.IdentKind && arg.AsIdent() == "ancestors" {
		return nil // not a string
	}
	t := c.strExpr(arg)
	if t == nil {
		return nil
	}
	// gt: the result is "size > k" (or >= k+1); lt likewise.
	var gt bool
	switch op {
	case "_>_":
		gt = true
	case "_>=_":
		gt, k = true, k-1
	case "_<_":
		k = k - 1 // size < k  <=>  !(size > k-1)
	}
	return func(st *evalState) tri {
		s := t(st)
		var r bool
		if int64(len(s)) <= k {
			r = false // size <= len <= k
		} else {
			r = int64(utf8.RuneCountInString(s)) > k
		}
		if st.fault() {
			return triE
		}
		return triOf(r == gt)
	}
}

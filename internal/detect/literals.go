package detect

import (
	"sort"
	"strings"

	"github.com/google/cel-go/common/ast"
)

// The literal index. Many rules test the same per-event string (above all
// proc.cmdline) for substrings: cmdline.contains(" --"), and the literal
// prefilters of cmdline.matches(...) (see fastRegexp). Run one by one, each
// test scans the string again. Instead, the literals every rule tests on a
// subject (a top-level field such as proc.cmdline, the same for the whole
// event) are compiled into one Aho-Corasick automaton; the first test of an
// event scans the subject once and records which literals occur, and every
// further test is a bit test. Case-insensitive regexp prefilters get their
// own automaton that folds ASCII letters (a subject with a non-ASCII byte
// leaves the regexp to decide, as fastRegexp does).

const (
	maxLitSubjects = 8 // subjects indexed per engine (per-event state is inline)
	litWords       = 4 // literals per subject: 64*litWords
	minLitUses     = 3 // a subject is indexed when rules test it this often
	maxLitStates   = 4096
)

// litSubject is one indexed subject and its automaton.
type litSubject struct {
	key  string // field path, e.g. "proc.cmdline"
	fold bool
	slot int
	get  strFn
	lits []string // registered literals (lower-case when fold)
	ids  map[string]int

	// The automaton: states × byte classes transitions, outputs per state.
	cls   [256]uint8 // byte class; with fold, upper-case ASCII maps like lower-case
	ncls  int
	delta []uint16 // while building
	next  []uint32 // see scan
	out   []litBits
}

// litBits is a set of literal ids.
type litBits [litWords]uint64

// litSet is the per-event result of scanning one subject.
type litSet struct {
	gen uint32
	// unknown: the subject could not be scanned (fold with a non-ASCII
	// byte); every literal counts as possibly present.
	unknown bool
	bits    litBits
}

// litIndex holds the subjects of one Compile.
type litIndex struct {
	subjects map[string]*litSubject // by key + "/fold" for folded
	list     []*litSubject
}

// litSubjectKey returns the field path of e when e is a string field of a
// top-level object (proc.cmdline, parent.cmdline, file.path, ...), which is
// the same value for the whole event. Identifiers bound by a comprehension
// are never subjects (the caller checks shadowing).
func litSubjectKey(e ast.Expr) (string, bool) {
	key, ok := setSubjectKey(e)
	if !ok {
		return "", false
	}
	// Scanning pays off on long text; short values (names, executables)
	// are cheaper to search directly.
	switch key[strings.IndexByte(key, '.')+1:] {
	case "cmdline", "path", "newPath", "dnsQuery", "userAgent", "requestURI":
		return key, true
	}
	return "", false
}

// litUse is one literal test found in the catalog.
type litUse struct {
	subject ast.Expr
	key     string
	fold    bool
	lits    []string
}

// collectLitUses walks e and records substring tests with constant
// literals on subjects: contains("x") and the prefilters of matches(),
// and the tests on the elements of proc.args in loops, which imply the
// same literal in proc.cmdline (see argsGate).
func collectLitUses(e ast.Expr, res *regexCache, out *[]litUse) {
	collectLitUsesIn(e, res, out, nil)
}

func collectLitUsesIn(e ast.Expr, res *regexCache, out *[]litUse, argVars map[string]bool) {
	switch e.Kind() {
	case ast.CallKind:
		call := e.AsCall()
		if lits, fold, ok := argTestLits(call, argVars, res); ok {
			*out = append(*out, litUse{key: "proc.cmdline", fold: fold, lits: lits})
		}
		if call.IsMemberFunction() && len(call.Args()) == 1 {
			if key, ok := litSubjectKey(call.Target()); ok {
				if lit, ok := stringLiteral(call.Args()[0]); ok {
					switch call.FunctionName() {
					case "contains":
						*out = append(*out, litUse{subject: call.Target(), key: key, lits: []string{lit}})
					case "matches":
						if re, err := res.get(lit); err == nil && re.idxNeed != nil {
							*out = append(*out, litUse{subject: call.Target(), key: key, fold: re.fold, lits: re.idxNeed})
						}
					}
				}
			}
		}
		if call.IsMemberFunction() {
			collectLitUsesIn(call.Target(), res, out, argVars)
		}
		for _, a := range call.Args() {
			collectLitUsesIn(a, res, out, argVars)
		}
	case ast.SelectKind:
		collectLitUsesIn(e.AsSelect().Operand(), res, out, argVars)
	case ast.ListKind:
		for _, el := range e.AsList().Elements() {
			collectLitUsesIn(el, res, out, argVars)
		}
	case ast.ComprehensionKind:
		cx := e.AsComprehension()
		inner := argVars
		if isProcArgs(cx.IterRange()) && !cx.HasIterVar2() {
			inner = map[string]bool{cx.IterVar(): true}
		}
		collectLitUsesIn(cx.IterRange(), res, out, argVars)
		for _, x := range []ast.Expr{cx.AccuInit(), cx.LoopCondition(), cx.LoopStep(), cx.Result()} {
			collectLitUsesIn(x, res, out, inner)
		}
	}
}

// isProcArgs reports whether e is proc.args.
func isProcArgs(e ast.Expr) bool {
	if e.Kind() != ast.SelectKind {
		return false
	}
	sel := e.AsSelect()
	return !sel.IsTestOnly() && sel.FieldName() == "args" && sel.Operand().Kind() == ast.IdentKind && sel.Operand().AsIdent() == "proc"
}

// argTestLits returns the literals one of which an element v of proc.args
// (v in argVars) contains when the test call holds: v == "x",
// v.contains/startsWith/endsWith("x"), v.matches(re) (its index
// prefilter). ok is false for other tests.
func argTestLits(call ast.CallExpr, argVars map[string]bool, res *regexCache) (lits []string, fold, ok bool) {
	if len(argVars) == 0 {
		return nil, false, false
	}
	isVar := func(e ast.Expr) bool { return e.Kind() == ast.IdentKind && argVars[e.AsIdent()] }
	args := call.Args()
	switch call.FunctionName() {
	case "_==_":
		for i := 0; i < 2; i++ {
			if lit, isLit := stringLiteral(args[1-i]); isLit && isVar(args[i]) && len(lit) >= 2 {
				return []string{lit}, false, true
			}
		}
	case "contains", "startsWith", "endsWith":
		if call.IsMemberFunction() && len(args) == 1 && isVar(call.Target()) {
			if lit, isLit := stringLiteral(args[0]); isLit && len(lit) >= 2 {
				return []string{lit}, false, true
			}
		}
	case "matches":
		if call.IsMemberFunction() && len(args) == 1 && isVar(call.Target()) {
			if lit, isLit := stringLiteral(args[0]); isLit {
				if re, err := res.get(lit); err == nil && re.idxNeed != nil {
					return re.idxNeed, re.fold, true
				}
			}
		}
	}
	return nil, false, false
}

// buildLitIndex indexes the subjects that the uses test at least
// minLitUses times. Literals shorter than 2 bytes are left to
// strings.Contains (a byte search is as fast as a lookup).
func buildLitIndex(c *nativeCompiler, uses []litUse) *litIndex {
	count := map[string]int{}
	for _, u := range uses {
		count[subjKey(u.key, u.fold)]++
	}
	x := &litIndex{subjects: map[string]*litSubject{}}
	var keys []string
	for k, n := range count {
		if n >= minLitUses {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if count[keys[i]] != count[keys[j]] {
			return count[keys[i]] > count[keys[j]]
		}
		return keys[i] < keys[j]
	})
	if len(keys) > maxLitSubjects {
		keys = keys[:maxLitSubjects]
	}
	for _, k := range keys {
		x.subjects[k] = &litSubject{ids: map[string]int{}}
	}
	for _, u := range uses {
		s := x.subjects[subjKey(u.key, u.fold)]
		if s == nil {
			continue
		}
		s.key, s.fold = u.key, u.fold
		if s.get == nil && u.subject != nil {
			s.get = c.strExpr(u.subject)
		}
		for _, l := range u.lits {
			if len(l) < 2 {
				continue
			}
			if _, ok := s.ids[l]; !ok && len(s.lits) < 64*litWords {
				s.ids[l] = len(s.lits)
				s.lits = append(s.lits, l)
			}
		}
	}
	for _, k := range keys {
		s := x.subjects[k]
		if s.get == nil || len(s.lits) == 0 || !s.build() {
			delete(x.subjects, k)
			continue
		}
		s.slot = len(x.list)
		x.list = append(x.list, s)
	}
	return x
}

func subjKey(key string, fold bool) string {
	if fold {
		return key + "/fold"
	}
	return key
}

// subject returns the indexed subject for e (exact or folded), or nil.
func (x *litIndex) subject(c *nativeCompiler, e ast.Expr, fold bool) *litSubject {
	if x == nil {
		return nil
	}
	key, ok := litSubjectKey(e)
	if !ok {
		return nil
	}
	if _, shadow := c.slots[e.AsSelect().Operand().AsIdent()]; shadow {
		return nil
	}
	return x.subjects[subjKey(key, fold)]
}

// exactSubject returns the indexed (case-sensitive) subject with the given
// field path, or nil.
func (x *litIndex) exactSubject(key string) *litSubject {
	if x == nil {
		return nil
	}
	return x.subjects[key]
}

// mask returns the bits of lits, ok false when one of them is not indexed.
func (s *litSubject) mask(lits []string) (m litBits, ok bool) {
	for _, l := range lits {
		id, found := s.ids[l]
		if !found {
			return m, false
		}
		m[id/64] |= 1 << (id % 64)
	}
	return m, true
}

func lowerByte(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

// build compiles the automaton; false when it would be too large.
func (s *litSubject) build() bool {
	// Byte classes: one per byte occurring in a literal, 0 for the rest.
	// With fold, literals are lower-case and upper-case letters map to the
	// same class; non-ASCII bytes get their own class (see scan).
	s.ncls = 1
	for _, l := range s.lits {
		for i := 0; i < len(l); i++ {
			b := l[i]
			if s.cls[b] == 0 {
				s.cls[b] = uint8(s.ncls)
				s.ncls++
				if s.ncls > 250 {
					return false
				}
			}
		}
	}
	if s.fold {
		for b := 'A'; b <= 'Z'; b++ {
			s.cls[b] = s.cls[lowerByte(byte(b))]
		}
	}
	// Trie.
	type node struct {
		next map[uint8]int
		fail int
		out  litBits
	}
	nodes := []node{{next: map[uint8]int{}}}
	for id, l := range s.lits {
		n := 0
		for i := 0; i < len(l); i++ {
			c := s.cls[l[i]]
			nx, ok := nodes[n].next[c]
			if !ok {
				nx = len(nodes)
				nodes = append(nodes, node{next: map[uint8]int{}})
				nodes[n].next[c] = nx
			}
			n = nx
		}
		nodes[n].out[id/64] |= 1 << (id % 64)
	}
	if len(nodes) > maxLitStates {
		return false
	}
	// Breadth-first: failure links, outputs, and the full transition table.
	s.delta = make([]uint16, len(nodes)*s.ncls)
	queue := []int{}
	for c := 0; c < s.ncls; c++ {
		if nx, ok := nodes[0].next[uint8(c)]; ok {
			nodes[nx].fail = 0
			s.delta[c] = uint16(nx)
			queue = append(queue, nx)
		}
	}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		f := nodes[n].fail
		for w := range nodes[n].out {
			nodes[n].out[w] |= nodes[f].out[w]
		}
		for c := 0; c < s.ncls; c++ {
			if nx, ok := nodes[n].next[uint8(c)]; ok {
				nodes[nx].fail = int(s.delta[f*s.ncls+c])
				s.delta[n*s.ncls+c] = uint16(nx)
				queue = append(queue, nx)
			} else {
				s.delta[n*s.ncls+c] = s.delta[f*s.ncls+c]
			}
		}
	}
	s.out = make([]litBits, len(nodes))
	for i, n := range nodes {
		s.out[i] = n.out
	}
	s.next = make([]uint32, len(s.delta))
	for i, d := range s.delta {
		v := uint32(d) * uint32(s.ncls)
		if s.out[d] != (litBits{}) {
			v |= outFlag
		}
		s.next[i] = v
	}
	s.delta = nil
	return true
}

// scan records in r which literals occur in v.
func (s *litSubject) scan(v string, r *litSet) {
	r.bits = litBits{}
	r.unknown = false
	if s.fold {
		for i := 0; i < len(v); i++ {
			if v[i] >= 0x80 {
				// Unicode case folding (U+212A folds to k) is beyond
				// the ASCII literals: let the regexp decide.
				r.unknown = true
				return
			}
		}
	}
	// next holds, per state and byte class, the next state premultiplied
	// by the number of classes, with outFlag set when it has outputs.
	next, cls := s.next, &s.cls
	cur := uint32(0)
	for i := 0; i < len(v); i++ {
		cur = next[cur+uint32(cls[v[i]])]
		if cur&outFlag != 0 {
			cur &^= outFlag
			o := &s.out[cur/uint32(s.ncls)]
			for w := range r.bits {
				r.bits[w] |= o[w]
			}
		}
	}
}

const outFlag = 1 << 31

// scanAny reports whether any literal occurs in v. A literal found in
// ASCII text is a match whatever else v holds; otherwise a folded
// automaton cannot judge a v with a non-ASCII byte (see scan): known is
// false.
func (s *litSubject) scanAny(v string) (found, known bool) {
	next, cls := s.next, &s.cls
	cur := uint32(0)
	nonASCII := false
	for i := 0; i < len(v); i++ {
		b := v[i]
		if b >= 0x80 {
			nonASCII = true
		}
		cur = next[cur+uint32(cls[b])]
		if cur&outFlag != 0 {
			return true, true
		}
	}
	return false, !(s.fold && nonASCII)
}

// lits returns the literal set of subject s for the current event,
// scanning the subject on first use.
func (st *evalState) lits(s *litSubject) *litSet {
	r := &st.litSets[s.slot]
	if r.gen != st.gen {
		s.scan(s.get(st), r)
		r.gen = st.gen
	}
	return r
}

func (m *litBits) anyOf(b *litBits) bool {
	for w := range m {
		if m[w]&b[w] != 0 {
			return true
		}
	}
	return false
}

// regexCache compiles each pattern once per Compile.
type regexCache struct{ m map[string]*fastRegexp }

func (c *regexCache) get(pattern string) (*fastRegexp, error) {
	if re, ok := c.m[pattern]; ok {
		return re, nil
	}
	re, err := compileFastRegexp(pattern)
	if err != nil {
		return nil, err
	}
	if c.m == nil {
		c.m = map[string]*fastRegexp{}
	}
	c.m[pattern] = re
	return re, nil
}

// minimalNeed drops the literals of a prefilter set that contain another
// one: "one of the set occurs" stays exactly the same test.
func minimalNeed(need []string) []string {
	var out []string
	for i, a := range need {
		redundant := false
		for j, b := range need {
			if i != j && strings.Contains(a, b) && (len(b) < len(a) || j < i) {
				redundant = true
				break
			}
		}
		if !redundant {
			out = append(out, a)
		}
	}
	return out
}

// compileMatch compiles subject.matches(re) against the literal index:
// when none of the regexp's index prefilter literals occurs in the
// subject, it cannot match. It returns nil when the subject or the
// literals are not indexed.
func (x *litIndex) compileMatch(c *nativeCompiler, target ast.Expr, t strFn, re *fastRegexp) boolFn {
	if re.idxNeed == nil {
		return nil
	}
	sub := x.subject(c, target, re.fold)
	if sub == nil {
		return nil
	}
	m, ok := sub.mask(re.idxNeed)
	if !ok {
		return nil
	}
	return func(st *evalState) tri {
		if r := st.lits(sub); !r.unknown && !m.anyOf(&r.bits) {
			return triF
		}
		return triOf(re.MatchString(t(st)))
	}
}

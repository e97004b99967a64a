package detect

import (
	"sort"

	"github.com/google/cel-go/common/ast"
)

// The membership index. Rules test the same per-event value against many
// constant sets (proc.name in shell_binaries, proc.name in download_tools,
// proc.comm in ...). For a subject tested often, every set it is tested
// against is merged into one map from value to the sets holding it: the
// first test of an event looks the value up once, every further test is
// a bit test.

const (
	maxAncSetSubjects = 3 // ancestor fields (per-ancestor cache)
	maxSetSubjects    = 8
	maxSetsPerSubj    = 64
	minSetUses        = 3
)

type setSubject struct {
	slot  int
	get   strFn                  // top-level subjects
	getP  func(*procView) string // ancestor subjects (cached per ancestor)
	ids   map[string]int         // set key -> bit
	sets  []map[string]struct{}
	bits  map[string]uint64 // value -> sets holding it
	lens  lenMask
	count int
}

type setRes struct {
	gen  uint32
	bits uint64
}

type setIndex struct {
	subjects map[string]*setSubject
}

// setKey identifies a constant set: a named list or a literal list.
func setKey(e ast.Expr) (string, bool) {
	if e.Kind() == ast.IdentKind {
		return "list:" + e.AsIdent(), true
	}
	return exprKey(e)
}

// collectSetUses records `subject in constant-set` tests in e. anc holds
// the variables of enclosing loops over ancestors.
func collectSetUses(c *nativeCompiler, e ast.Expr, x *setIndex, anc map[string]bool) {
	switch e.Kind() {
	case ast.CallKind:
		call := e.AsCall()
		if call.FunctionName() == "@in" && len(call.Args()) == 2 {
			if set, ok := c.constStrSet(call.Args()[1]); ok {
				if sk, ok := setKey(call.Args()[1]); ok {
					if key, ok := setSubjectKey(call.Args()[0]); ok {
						x.add(c, key, call.Args()[0], sk, set)
					} else if key, ok := ancSubjectKey(call.Args()[0], anc); ok {
						x.add(c, key, nil, sk, set)
					}
				}
			}
		}
		if call.IsMemberFunction() {
			collectSetUses(c, call.Target(), x, anc)
		}
		for _, a := range call.Args() {
			collectSetUses(c, a, x, anc)
		}
	case ast.SelectKind:
		collectSetUses(c, e.AsSelect().Operand(), x, anc)
	case ast.ListKind:
		for _, el := range e.AsList().Elements() {
			collectSetUses(c, el, x, anc)
		}
	case ast.ComprehensionKind:
		cx := e.AsComprehension()
		inner := anc
		if r := cx.IterRange(); r.Kind() == ast.IdentKind && r.AsIdent() == "ancestors" {
			inner = map[string]bool{cx.IterVar(): true}
			for v := range anc {
				inner[v] = true
			}
		}
		collectSetUses(c, cx.IterRange(), x, anc)
		for _, y := range []ast.Expr{cx.AccuInit(), cx.LoopCondition(), cx.LoopStep(), cx.Result()} {
			collectSetUses(c, y, x, inner)
		}
	}
}

// ancFields are the ancestor fields the membership index caches per
// ancestor (see procView.members).
var ancFields = map[string]func(*procView) string{
	"name": (*procView).name,
	"exe":  (*procView).exe,
	"comm": (*procView).comm,
}

// ancSubjectKey returns "anc.<field>" for v.name, v.exe, v.comm where v
// is a loop variable over ancestors.
func ancSubjectKey(e ast.Expr, anc map[string]bool) (string, bool) {
	if e.Kind() != ast.SelectKind {
		return "", false
	}
	sel := e.AsSelect()
	if sel.IsTestOnly() || sel.Operand().Kind() != ast.IdentKind || !anc[sel.Operand().AsIdent()] {
		return "", false
	}
	if _, ok := ancFields[sel.FieldName()]; !ok {
		return "", false
	}
	return "anc." + sel.FieldName(), true
}

func (x *setIndex) add(c *nativeCompiler, key string, subject ast.Expr, sk string, set map[string]struct{}) {
	s := x.subjects[key]
	if s == nil {
		s = &setSubject{ids: map[string]int{}}
		if subject == nil { // an ancestor field
			s.getP = ancFields[key[len("anc."):]]
		} else if s.get = c.strExpr(subject); s.get == nil {
			return
		}
		x.subjects[key] = s
	}
	s.count++
	if _, ok := s.ids[sk]; ok || len(s.sets) >= maxSetsPerSubj {
		return
	}
	s.ids[sk] = len(s.sets)
	s.sets = append(s.sets, set)
}

// buildSetIndex collects the tests of the rules and keeps the subjects
// tested at least minSetUses times.
func buildSetIndex(c *nativeCompiler, exprs []ast.Expr) *setIndex {
	x := &setIndex{subjects: map[string]*setSubject{}}
	for _, e := range exprs {
		collectSetUses(c, e, x, nil)
	}
	var keys []string
	for k, s := range x.subjects {
		if s.count >= minSetUses {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := x.subjects[keys[i]], x.subjects[keys[j]]
		if a.count != b.count {
			return a.count > b.count
		}
		return keys[i] < keys[j]
	})
	if len(keys) > maxSetSubjects {
		keys = keys[:maxSetSubjects]
	}
	kept := map[string]*setSubject{}
	nTop, nAnc := 0, 0
	for _, k := range keys {
		s := x.subjects[k]
		if s.getP != nil {
			if nAnc == maxAncSetSubjects {
				continue
			}
			s.slot = nAnc
			nAnc++
		} else {
			s.slot = nTop
			nTop++
		}
		s.bits = map[string]uint64{}
		for id, set := range s.sets {
			for v := range set {
				s.bits[v] |= 1 << id
			}
		}
		s.lens = newLenMask(s.bits2set())
		kept[k] = s
	}
	x.subjects = kept
	return x
}

func (s *setSubject) bits2set() map[string]struct{} {
	out := make(map[string]struct{}, len(s.bits))
	for v := range s.bits {
		out[v] = struct{}{}
	}
	return out
}

// compileIn compiles `subject in set` against the index, or returns nil.
func (x *setIndex) compileIn(c *nativeCompiler, subject, setExpr ast.Expr) boolFn {
	if x == nil || subject.Kind() != ast.SelectKind || subject.AsSelect().Operand().Kind() != ast.IdentKind {
		return nil
	}
	if sl, ok := c.slots[subject.AsSelect().Operand().AsIdent()]; ok {
		// A loop variable: an ancestor's name, exe or comm.
		if !sl.isProc {
			return nil
		}
		s := x.subjects["anc."+subject.AsSelect().FieldName()]
		if s == nil || s.getP == nil {
			return nil
		}
		bit, ok := x.bit(c, s, setExpr)
		if !ok {
			return nil
		}
		i := sl.idx
		return func(st *evalState) tri { return triOf(st.slotP[i].members(s, st.gen)&bit != 0) }
	}
	key, ok := setSubjectKey(subject)
	if !ok {
		return nil
	}
	s := x.subjects[key]
	if s == nil || s.get == nil {
		return nil
	}
	bit, ok := x.bit(c, s, setExpr)
	if !ok {
		return nil
	}
	return func(st *evalState) tri { return triOf(st.members(s)&bit != 0) }
}

// bit returns the bit of the constant set e in subject s.
func (x *setIndex) bit(c *nativeCompiler, s *setSubject, e ast.Expr) (uint64, bool) {
	if _, ok := c.constStrSet(e); !ok {
		return 0, false
	}
	sk, ok := setKey(e)
	if !ok {
		return 0, false
	}
	id, ok := s.ids[sk]
	if !ok {
		return 0, false
	}
	return uint64(1) << id, true
}

// members returns the sets holding the ancestor field of s for v, looking
// it up on first use for the event of generation gen.
func (v *procView) members(s *setSubject, gen uint32) uint64 {
	if v.memGen[s.slot] != gen {
		v.memBits[s.slot] = 0
		if f := s.getP(v); s.lens.has(len(f)) {
			v.memBits[s.slot] = s.bits[f]
		}
		v.memGen[s.slot] = gen
	}
	return v.memBits[s.slot]
}

// members returns the sets holding the subject's value for the current
// event, looking it up on first use.
func (st *evalState) members(s *setSubject) uint64 {
	r := &st.setRes[s.slot]
	if r.gen != st.gen {
		r.bits = 0
		if v := s.get(st); s.lens.has(len(v)) {
			r.bits = s.bits[v]
		}
		r.gen = st.gen
	}
	return r.bits
}

// setSubjectKey returns the field path of e when e is a field of a
// top-level object (proc.name, parent.exe, audit.resource, ...), the same
// value for the whole event.
func setSubjectKey(e ast.Expr) (string, bool) {
	if e.Kind() != ast.SelectKind {
		return "", false
	}
	sel := e.AsSelect()
	if sel.IsTestOnly() || sel.Operand().Kind() != ast.IdentKind {
		return "", false
	}
	obj := sel.Operand().AsIdent()
	switch obj {
	case "proc", "parent", "container", "net", "file", "sys", "audit":
		return obj + "." + sel.FieldName(), true
	}
	return "", false
}

package detect

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/interpreter"

	"github.com/vigil-sec/vigil/internal/event"
)

// Match is one rule matching one event.
type Match struct {
	Rule  *Rule
	Event *event.Event
}

// Engine evaluates compiled rules against events. It is immutable after
// Compile; Evaluate is safe for concurrent use (each call takes its own
// scratch state from a pool).
type Engine struct {
	all    []*compiledRule
	byKind map[event.Kind][]*compiledRule
	index  map[event.Kind]*kindIndex // byKind with the name index
	nMemo  int                       // shared sub-expression slots used (at most maxMemo)
	lists  map[string]*listVal
	ti     *tiMatcher // nil without indicators
	opts   options
	pool   sync.Pool

	evalErrors atomic.Uint64
	version    string
}

func (e *Engine) finish() {
	sort.Slice(e.all, func(i, j int) bool { return e.all[i].rule.ID < e.all[j].rule.ID })
	for _, cr := range e.all {
		if !cr.rule.Enabled {
			continue
		}
		for _, k := range cr.rule.Kinds {
			e.byKind[k] = append(e.byKind[k], cr)
		}
	}
	// Native rules first: they are cheapest.
	for k, rs := range e.byKind {
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].native != nil && rs[j].native == nil })
		e.byKind[k] = rs
	}
	e.index = make(map[event.Kind]*kindIndex, len(e.byKind))
	words := 0
	for k, rs := range e.byKind {
		e.index[k] = buildKindIndex(rs, k)
		words = max(words, len(e.index[k].always))
	}
	e.pool.New = func() any { return newEvalState(words) }
	e.version = e.digest()
}

// digest fingerprints what the engine judges by: every rule's id, state,
// severity and expanded condition, and the lists' contents.
func (e *Engine) digest() string {
	h := sha256.New()
	for _, cr := range e.all {
		fmt.Fprintf(h, "%s\x00%t\x00%s\x00%v\x00%s\x00", cr.rule.ID, cr.rule.Enabled, cr.rule.Severity, cr.rule.Kinds, cr.expr)
	}
	names := make([]string, 0, len(e.lists))
	for n := range e.lists {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(h, "%s=%q\x00", n, e.lists[n].list.Items)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// Version identifies the rule set (12 hex digits of a digest of the rules
// and lists): sensors report it so that the hub shows which rules a node
// runs, and two nodes with the same version judge alike.
func (e *Engine) Version() string { return e.version }

// Rules returns every rule, enabled and disabled, sorted by ID.
func (e *Engine) Rules() []*Rule {
	out := make([]*Rule, len(e.all))
	for i, cr := range e.all {
		out[i] = cr.rule
	}
	return out
}

// Enabled counts the rules that are enabled.
func (e *Engine) Enabled() int {
	n := 0
	for _, cr := range e.all {
		if cr.rule.Enabled {
			n++
		}
	}
	return n
}

// Rule returns the rule with the given id.
func (e *Engine) Rule(id string) (*Rule, bool) {
	i := sort.Search(len(e.all), func(i int) bool { return e.all[i].rule.ID >= id })
	if i < len(e.all) && e.all[i].rule.ID == id {
		return e.all[i].rule, true
	}
	return nil, false
}

// RuleInfo describes how a rule is evaluated (for `vigil rules show`).
type RuleInfo struct {
	// Expanded is the condition with macros substituted and exceptions
	// appended, as compiled.
	Expanded string
	// Native is set when the whole condition runs without the CEL
	// interpreter; Prefiltered when part of it screens events first.
	Native, Prefiltered bool
	// EstimatedCost is the static worst-case CEL cost.
	EstimatedCost uint64
}

// Info returns how the rule with the given id is evaluated.
func (e *Engine) Info(id string) (RuleInfo, bool) {
	for _, cr := range e.all {
		if cr.rule.ID == id {
			return RuleInfo{Expanded: cr.expr, Native: cr.native != nil, Prefiltered: cr.pre != nil, EstimatedCost: cr.cost}, true
		}
	}
	return RuleInfo{}, false
}

// EvalErrors returns how many rule evaluations failed (runtime cost limit
// exceeded or a CEL runtime error such as an out-of-range index); a failed
// evaluation counts as no match.
func (e *Engine) EvalErrors() uint64 { return e.evalErrors.Load() }

// Evaluate calls match for every enabled rule whose condition holds for ev,
// in rule-id order within the natively evaluated and the CEL-evaluated
// rules. It does not allocate when no rule matches (and none of the
// CEL-evaluated rules passes its prefilter). match must not retain ev
// beyond the call if the caller reuses events. Safe for concurrent use.
func (e *Engine) Evaluate(ev *event.Event, match func(r *Rule, ev *event.Event)) {
	x := e.index[ev.Kind]
	if x == nil {
		return
	}
	if e.ti != nil && (ev.Kind == event.KindDNS || ev.Kind == event.KindConnect) {
		e.ti.annotate(ev)
	}
	st := e.pool.Get().(*evalState)
	st.reset(ev)
	if !x.gated {
		for _, cr := range x.rules {
			e.evalRule(st, cr, ev, match)
		}
	} else {
		st.cand = x.candidates(st.cand, st)
		for i := nextBit(st.cand, 0); i >= 0; i = nextBit(st.cand, i+1) {
			e.evalRule(st, x.rules[i], ev, match)
		}
	}
	st.ev = nil
	e.pool.Put(st)
}

func (e *Engine) evalRule(st *evalState, cr *compiledRule, ev *event.Event, match func(r *Rule, ev *event.Event)) {
	if cr.native != nil {
		if cr.native(st) == triT {
			match(cr.rule, ev)
		}
		return
	}
	if cr.pre != nil && cr.pre(st) == triF {
		return
	}
	out, _, err := cr.prg.Eval(st)
	if err != nil {
		if e.evalErrors.Add(1)&(1<<10-1) == 1 { // log the 1st, 1025th, ...
			e.opts.log.Warn("rule evaluation failed; counted as no match",
				"rule", cr.rule.ID, "err", err, "kind", ev.Kind)
		}
		return
	}
	if b, ok := out.(types.Bool); ok && bool(b) {
		match(cr.rule, ev)
	}
}

// Matches returns the rules matching ev (allocates; for tools and tests).
func (e *Engine) Matches(ev *event.Event) []Match {
	var out []Match
	e.Evaluate(ev, func(r *Rule, ev *event.Event) { out = append(out, Match{Rule: r, Event: ev}) })
	return out
}

// evalState is the per-evaluation view of one event. It is also the CEL
// activation: variables resolve lazily to views over the event.
type evalState struct {
	ev    *event.Event
	procs [2 + maxAncestors]procView // proc, parent, ancestors...
	nAnc  int
	cont  contView
	net   netView
	file  fileView
	sys   sysView
	audit auditView
	facts factsVal

	zc event.Container
	zn event.Network
	zf event.File
	zs event.Syscall
	za event.Audit

	ancVals [maxAncestors]ref.Val
	slotP   [maxSlots]*procView
	slotS   [maxSlots]string
	err     bool // set by a native accessor that failed (see fault)

	gen     uint32                 // current event's generation: memo entries of older ones are stale
	memo    [maxMemo]memoEntry     // shared sub-expression results (see memoTable)
	litSets [maxLitSubjects]litSet // literal index results (see litIndex)
	setRes  [maxSetSubjects]setRes // membership index results (see setIndex)
	lowBuf  [maxLower][]byte       // lowerAscii results (see lowerASCIIInto)
	cand    []uint64               // candidate rules (see kindIndex)
	candBuf [candWords]uint64      // cand's storage when a kind has at most 64*candWords rules
}

func newEvalState(words int) *evalState {
	st := &evalState{}
	st.cand = st.candBuf[:0]
	if words > candWords {
		st.cand = make([]uint64, 0, words)
	}
	for i := range st.ancVals {
		st.ancVals[i] = &st.procs[2+i]
	}
	st.facts.st = st
	return st
}

func (st *evalState) reset(ev *event.Event) {
	st.ev = ev
	st.err = false
	st.gen++
	if st.gen == 0 { // wrapped: forget every cached result
		st.memo = [maxMemo]memoEntry{}
		st.litSets = [maxLitSubjects]litSet{}
		st.setRes = [maxSetSubjects]setRes{}
		for i := range st.procs {
			st.procs[i].memGen = [maxAncSetSubjects]uint32{}
		}
		st.gen = 1
	}
	st.procs[0].reset(&ev.Process, nil)
	st.procs[0].ppid = ev.Process.PPID
	anc := ev.Ancestry
	var parent *event.ProcessRef
	switch {
	case ev.Parent != nil:
		parent = ev.Parent
		if len(anc) == 0 {
			anc = unsafe.Slice(ev.Parent, 1)
		}
	case len(anc) > 0:
		parent = &anc[0]
	}
	st.procs[1].reset(nil, parent)
	st.procs[1].ppid = 0
	st.nAnc = min(len(anc), maxAncestors)
	for i := 0; i < st.nAnc; i++ {
		st.procs[2+i].reset(nil, &anc[i])
		st.procs[2+i].ppid = 0
	}
	st.cont.c = ev.Container
	if st.cont.c == nil {
		st.cont.c = &st.zc
	}
	st.net.n = ev.Network
	if st.net.n == nil {
		st.net.n = &st.zn
	}
	st.file.f = ev.File
	if st.file.f == nil {
		st.file.f = &st.zf
	}
	st.sys.s = ev.Syscall
	if st.sys.s == nil {
		st.sys.s = &st.zs
	}
	st.audit.a = ev.Audit
	if st.audit.a == nil {
		st.audit.a = &st.za
	}
}

// ResolveName implements interpreter.Activation.
func (st *evalState) ResolveName(name string) (any, bool) {
	switch name {
	case "kind":
		return types.String(st.ev.Kind), true
	case "proc":
		return &st.procs[0], true
	case "parent":
		return &st.procs[1], true
	case "ancestors":
		return types.NewRefValList(types.DefaultTypeAdapter, st.ancVals[:st.nAnc]), true
	case "container":
		return &st.cont, true
	case "net":
		return &st.net, true
	case "file":
		return &st.file, true
	case "sys":
		return &st.sys, true
	case "audit":
		return &st.audit, true
	case "facts":
		return &st.facts, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (st *evalState) Parent() interpreter.Activation { return nil }

var (
	procObjType  = types.NewObjectType(typeProcess)
	contObjType  = types.NewObjectType(typeContainer)
	netObjType   = types.NewObjectType(typeNet)
	fileObjType  = types.NewObjectType(typeFile)
	sysObjType   = types.NewObjectType(typeSys)
	auditObjType = types.NewObjectType(typeAudit)
)

func noNative(t ref.Type) error {
	return fmt.Errorf("%s values cannot be converted to Go values in a condition", t.TypeName())
}

func objConvert(v ref.Val, t ref.Type) ref.Val {
	if t == types.TypeType {
		return v.Type().(ref.Val)
	}
	return types.NewErr("type conversion from %s to %s is not supported", v.Type().TypeName(), t.TypeName())
}

func objEqual(a, b ref.Val) ref.Val {
	if a.Type().TypeName() != b.Type().TypeName() {
		return types.MaybeNoSuchOverloadErr(b)
	}
	return types.Bool(a.Value() == b.Value())
}

// ref.Val implementations of the views (CEL path).

func (v *procView) ConvertToNative(reflect.Type) (any, error) { return nil, noNative(procObjType) }
func (v *procView) ConvertToType(t ref.Type) ref.Val          { return objConvert(v, t) }
func (v *procView) Equal(o ref.Val) ref.Val                   { return objEqual(v, o) }
func (v *procView) Type() ref.Type                            { return procObjType }
func (v *procView) Value() any                                { return v }

func (v *contView) ConvertToNative(reflect.Type) (any, error) { return nil, noNative(contObjType) }
func (v *contView) ConvertToType(t ref.Type) ref.Val          { return objConvert(v, t) }
func (v *contView) Equal(o ref.Val) ref.Val                   { return objEqual(v, o) }
func (v *contView) Type() ref.Type                            { return contObjType }
func (v *contView) Value() any                                { return v }

func (v *netView) ConvertToNative(reflect.Type) (any, error) { return nil, noNative(netObjType) }
func (v *netView) ConvertToType(t ref.Type) ref.Val          { return objConvert(v, t) }
func (v *netView) Equal(o ref.Val) ref.Val                   { return objEqual(v, o) }
func (v *netView) Type() ref.Type                            { return netObjType }
func (v *netView) Value() any                                { return v }

func (v *fileView) ConvertToNative(reflect.Type) (any, error) { return nil, noNative(fileObjType) }
func (v *fileView) ConvertToType(t ref.Type) ref.Val          { return objConvert(v, t) }
func (v *fileView) Equal(o ref.Val) ref.Val                   { return objEqual(v, o) }
func (v *fileView) Type() ref.Type                            { return fileObjType }
func (v *fileView) Value() any                                { return v }

func (v *sysView) ConvertToNative(reflect.Type) (any, error) { return nil, noNative(sysObjType) }
func (v *sysView) ConvertToType(t ref.Type) ref.Val          { return objConvert(v, t) }
func (v *sysView) Equal(o ref.Val) ref.Val                   { return objEqual(v, o) }
func (v *sysView) Type() ref.Type                            { return sysObjType }
func (v *sysView) Value() any                                { return v }

func (v *auditView) ConvertToNative(reflect.Type) (any, error) { return nil, noNative(auditObjType) }
func (v *auditView) ConvertToType(t ref.Type) ref.Val          { return objConvert(v, t) }
func (v *auditView) Equal(o ref.Val) ref.Val                   { return objEqual(v, o) }
func (v *auditView) Type() ref.Type                            { return auditObjType }
func (v *auditView) Value() any                                { return v }

// factsVal is the facts map. facts["name"] is "" when the fact is absent
// (like every other vocabulary value); `"name" in facts` tests presence.
type factsVal struct{ st *evalState }

var factsType = types.NewMapType(types.StringType, types.StringType)

func (f *factsVal) toMap() traits.Mapper {
	m := make(map[string]string, len(f.st.ev.Facts))
	for _, x := range f.st.ev.Facts {
		m[x.Name] = x.Value
	}
	return types.NewStringStringMap(types.DefaultTypeAdapter, m)
}

func (f *factsVal) ConvertToNative(t reflect.Type) (any, error) { return f.toMap().ConvertToNative(t) }
func (f *factsVal) ConvertToType(t ref.Type) ref.Val            { return f.toMap().ConvertToType(t) }
func (f *factsVal) Equal(o ref.Val) ref.Val                     { return f.toMap().Equal(o) }
func (f *factsVal) Type() ref.Type                              { return factsType }
func (f *factsVal) Value() any                                  { return f }
func (f *factsVal) Iterator() traits.Iterator                   { return f.toMap().Iterator() }
func (f *factsVal) Size() ref.Val                               { return types.Int(len(f.st.ev.Facts)) }

func (f *factsVal) Contains(key ref.Val) ref.Val {
	k, ok := key.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(key)
	}
	_, found := f.st.ev.Fact(string(k))
	return types.Bool(found)
}

func (f *factsVal) Get(key ref.Val) ref.Val {
	v, _ := f.Find(key)
	return v
}

func (f *factsVal) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(key), false
	}
	v, _ := f.st.ev.Fact(string(k))
	return types.String(v), true
}

// unsafeString views b as a string without copying. The caller must not
// retain it past the next change of b.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

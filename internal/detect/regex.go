package detect

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// fastRegexp wraps a regexp with a literal prefilter: a set of strings at
// least one of which occurs in every match. Inputs containing none of them
// are rejected with strings.Contains instead of running the regexp engine
// (most events do not come close to matching a rule's pattern).
type fastRegexp struct {
	re   *regexp.Regexp
	need []string // nil: no prefilter
	// fold: the pattern is (partly) case-insensitive, need holds lower-case
	// literals and is checked against the ASCII-lower-cased subject.
	fold bool

	// split: the pattern is an alternation some of whose branches match
	// exactly a finite set of strings (xmrig|minerd|...). An unanchored
	// match of an alternation is a match of one of its branches, so the
	// pattern matches s exactly when s contains one of lits (lower-case
	// and compared with the ASCII-lower-cased s when fold) or rest (the
	// other branches; nil when there are none) matches s.
	// idxNeed is a prefilter for the literal index (see indexNeed).
	idxNeed []string

	split   bool
	lits    []string
	bounded []*boundedBranch // branches decided by substring searches
	ac      *litSubject      // lits as one automaton (when there are many)
	rest    *fastRegexp
}

// foldMax is the longest subject the case-insensitive prefilter lowers (on
// the stack); longer or non-ASCII subjects go straight to the regexp.
const foldMax = 512

func compileFastRegexp(pattern string) (*fastRegexp, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, err
	}
	f := &fastRegexp{re: re}
	if sre, err := syntax.Parse(pattern, syntax.Perl); err == nil {
		sre = sre.Simplify()
		f.fold = hasFoldCase(sre)
		if need, ok := mustContain(sre, f.fold); ok && len(need) <= 64 {
			f.need = need
		}
		f.idxNeed, _ = indexNeed(sre, f.fold)
		if err := f.splitFinite(sre); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// minACLits is the number of literals from which one automaton pass beats
// a substring search per literal.
const minACLits = 4

// maxFinite bounds the strings a branch may expand to.
const maxFinite = 256

// splitFinite sets up the split form (see fastRegexp) when some top-level
// branches of re match finite sets of strings.
func (f *fastRegexp) splitFinite(re *syntax.Regexp) error {
	for re.Op == syntax.OpCapture {
		re = re.Sub[0]
	}
	branches := []*syntax.Regexp{re}
	if re.Op == syntax.OpAlternate {
		branches = re.Sub
	}
	var lits []string
	var bounded []*boundedBranch
	var rest []*syntax.Regexp
	for _, b := range branches {
		if set, ok := finiteStrings(b, f.fold); ok && len(lits)+len(set) <= maxFinite {
			lits = append(lits, set...)
			continue
		}
		if !f.fold {
			if bs, ok := boundedBranches(b); ok {
				bounded = append(bounded, bs...)
				continue
			}
		}
		rest = append(rest, b)
	}
	if len(lits) == 0 && len(bounded) == 0 {
		return nil
	}
	f.split, f.lits, f.bounded = true, minimalNeed(lits), bounded
	if len(f.lits) >= minACLits && minLen(f.lits) > 0 {
		ac := &litSubject{fold: f.fold, ids: map[string]int{}}
		for _, l := range f.lits {
			if _, dup := ac.ids[l]; !dup && len(ac.lits) < 64*litWords {
				ac.ids[l] = len(ac.lits)
				ac.lits = append(ac.lits, l)
			}
		}
		if len(ac.lits) == len(f.lits) && ac.build() {
			f.ac = ac
		}
	}
	if len(rest) == 0 {
		return nil
	}
	r := rest[0]
	if len(rest) > 1 {
		r = &syntax.Regexp{Op: syntax.OpAlternate, Sub: rest}
	}
	rf, err := compileFastRegexp(r.String())
	if err != nil {
		return fmt.Errorf("compile the remaining branches %q: %w", r.String(), err)
	}
	f.rest = rf
	return nil
}

// finiteStrings returns the strings re matches when they are a finite set
// (literals, small classes, alternations, concatenations, optional parts;
// no anchors or repetitions). With fold they are lower-cased, and every
// letter of re must match both cases, so that re matches an ASCII string
// exactly when its lower-cased form is in the set.
func finiteStrings(re *syntax.Regexp, fold bool) ([]string, bool) {
	switch re.Op {
	case syntax.OpEmptyMatch:
		return []string{""}, true
	case syntax.OpLiteral:
		var b []byte
		for _, r := range re.Rune {
			if r >= utf8.RuneSelf {
				return nil, false
			}
			c := byte(r)
			if isASCIILetter(c) {
				if fold != (re.Flags&syntax.FoldCase != 0) {
					return nil, false
				}
				if fold {
					c = lowerByte(c)
				}
			}
			b = append(b, c)
		}
		return []string{string(b)}, true
	case syntax.OpCharClass:
		var in [128]bool
		n := 0
		for i := 0; i+1 < len(re.Rune); i += 2 {
			if re.Rune[i+1] >= utf8.RuneSelf {
				return nil, false
			}
			for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
				in[r] = true
				n++
			}
		}
		if n == 0 || n > 16 {
			return nil, false
		}
		var out []string
		for c := 0; c < 128; c++ {
			if !in[c] {
				continue
			}
			b := byte(c)
			if fold && isASCIILetter(b) {
				if !in[lowerByte(b)] || !in[upperByte(b)] {
					return nil, false
				}
				if b != lowerByte(b) {
					continue
				}
			}
			out = append(out, string(b))
		}
		return out, true
	case syntax.OpCapture:
		return finiteStrings(re.Sub[0], fold)
	case syntax.OpQuest:
		sub, ok := finiteStrings(re.Sub[0], fold)
		if !ok {
			return nil, false
		}
		return append([]string{""}, sub...), true
	case syntax.OpAlternate:
		var out []string
		for _, s := range re.Sub {
			a, ok := finiteStrings(s, fold)
			if !ok || len(out)+len(a) > maxFinite {
				return nil, false
			}
			out = append(out, a...)
		}
		return out, true
	case syntax.OpConcat:
		words := []string{""}
		for _, s := range re.Sub {
			a, ok := finiteStrings(s, fold)
			if !ok || len(words)*len(a) > maxFinite {
				return nil, false
			}
			next := make([]string, 0, len(words)*len(a))
			for _, w := range words {
				for _, x := range a {
					next = append(next, w+x)
				}
			}
			words = next
		}
		return words, true
	}
	return nil, false
}

func isASCIILetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

func upperByte(b byte) byte {
	if 'a' <= b && b <= 'z' {
		return b - ('a' - 'A')
	}
	return b
}

// matchSplit evaluates the split form; ok is false when it cannot decide
// (fold with a long or non-ASCII subject).
func (f *fastRegexp) matchSplit(s string) (match, ok bool) {
	if f.ac != nil {
		// One pass over s for all the literals.
		found, known := f.ac.scanAny(s)
		if !known {
			return false, false
		}
		if found {
			return true, true
		}
	} else if f.fold {
		if len(s) > foldMax {
			return false, false
		}
		var buf [foldMax]byte
		lower, ascii := appendLowerASCII(buf[:0], s)
		if !ascii {
			return false, false
		}
		if containsAny(unsafe.String(unsafe.SliceData(lower), len(lower)), f.lits) {
			return true, true
		}
	} else if containsAny(s, f.lits) {
		return true, true
	}
	for _, b := range f.bounded {
		if b.match(s) {
			return true, true
		}
	}
	if f.rest == nil {
		return false, true
	}
	return f.rest.MatchString(s), true
}

func (f *fastRegexp) MatchString(s string) bool {
	if f.split {
		if m, ok := f.matchSplit(s); ok {
			return m
		}
		return f.re.MatchString(s)
	}
	if f.fold {
		if f.need != nil && len(s) <= foldMax {
			var buf [foldMax]byte
			if lower, ascii := appendLowerASCII(buf[:0], s); ascii && !containsAny(unsafe.String(unsafe.SliceData(lower), len(lower)), f.need) {
				return false
			}
		}
		return f.re.MatchString(s)
	}
	if f.need != nil {
		found := false
		for _, n := range f.need {
			if strings.Contains(s, n) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return f.re.MatchString(s)
}

func containsAny(s string, need []string) bool {
	for _, n := range need {
		if strings.Contains(s, n) {
			return true
		}
	}
	return false
}

// appendLowerASCII appends s lower-cased to dst; ascii is false (and dst
// unusable) when s has a non-ASCII byte, whose Unicode case folding
// (e.g. U+017F folds to s, U+212A to k) the literals cannot account for.
func appendLowerASCII(dst []byte, s string) (out []byte, ascii bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			return dst, false
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst, true
}

// hasFoldCase reports whether any part of re is case-insensitive.
func hasFoldCase(re *syntax.Regexp) bool {
	if re.Flags&syntax.FoldCase != 0 && (re.Op == syntax.OpLiteral || re.Op == syntax.OpCharClass) {
		return true
	}
	for _, sub := range re.Sub {
		if hasFoldCase(sub) {
			return true
		}
	}
	return false
}

// mustContain returns literals one of which every match of re contains;
// with fold, lower-cased literals one of which the ASCII-lower-cased
// subject of every match contains. ok is false when no such (non-empty)
// set is known.
func mustContain(re *syntax.Regexp, fold bool) ([]string, bool) {
	set, _, ok := litInfo(re, fold, litSetScore)
	if !ok || minLen(set) == 0 {
		return nil, false
	}
	return set, true
}

const maxLitSet = 64

// litInfo returns a set of strings one of which every match of re
// contains; exact reports that the set is precisely the strings re
// matches (so that sets of consecutive exact parts can be concatenated).
func litInfo(re *syntax.Regexp, fold bool, score func([]string) int) (set []string, exact, ok bool) {
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return []string{""}, true, true
	case syntax.OpLiteral:
		if fold {
			lit, ascii := appendLowerASCII(nil, string(re.Rune))
			if !ascii {
				return nil, false, false
			}
			return []string{string(lit)}, true, true
		}
		if re.Flags&syntax.FoldCase != 0 {
			return nil, false, false
		}
		return []string{string(re.Rune)}, true, true
	case syntax.OpCharClass:
		n := 0
		for i := 0; i+1 < len(re.Rune); i += 2 {
			n += int(re.Rune[i+1]-re.Rune[i]) + 1
		}
		if n == 0 || n > 4 {
			return nil, false, false
		}
		for i := 0; i+1 < len(re.Rune); i += 2 {
			for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
				set = append(set, string(r))
			}
		}
		if fold {
			// A class such as [Pp] lowers to one literal; non-ASCII
			// members defeat the ASCII prefilter.
			var low []string
			for _, m := range set {
				l, ascii := appendLowerASCII(nil, m)
				if !ascii {
					return nil, false, false
				}
				if !slices.Contains(low, string(l)) {
					low = append(low, string(l))
				}
			}
			set = low
		}
		return set, true, true
	case syntax.OpCapture:
		return litInfo(re.Sub[0], fold, score)
	case syntax.OpQuest:
		sub, ex, ok := litInfo(re.Sub[0], fold, score)
		if !ok || !ex {
			return []string{""}, false, true
		}
		return append(sub, ""), true, true
	case syntax.OpPlus:
		sub, _, ok := litInfo(re.Sub[0], fold, score)
		return sub, false, ok
	case syntax.OpRepeat:
		if re.Min >= 1 {
			sub, _, ok := litInfo(re.Sub[0], fold, score)
			return sub, false, ok
		}
	case syntax.OpAlternate:
		exact = true
		for _, sub := range re.Sub {
			ss, ex, ok := litInfo(sub, fold, score)
			if !ok {
				return nil, false, false
			}
			exact = exact && ex
			set = append(set, ss...)
		}
		if len(set) > maxLitSet {
			return nil, false, false
		}
		return set, exact, true
	case syntax.OpConcat:
		// Concatenate runs of exact parts; keep the best candidate (every
		// prefix of a run is a candidate too: a match containing a+b
		// contains a).
		var best []string
		bestScore := -1 << 30
		consider := func(c []string) {
			if c == nil {
				return
			}
			if sc := score(c); sc > bestScore {
				best, bestScore = c, sc
			}
		}
		run := []string{""}
		allExact := true
		for _, sub := range re.Sub {
			ss, ex, ok := litInfo(sub, fold, score)
			if ok && ex {
				if p := product(run, ss); p != nil {
					consider(run)
					run = p
					continue
				}
			}
			allExact = false
			consider(run)
			run = []string{""}
			if ok {
				consider(ss)
				if ex {
					run = ss
				}
			}
		}
		consider(run)
		if allExact {
			return run, true, true
		}
		return best, false, best != nil
	}
	return nil, false, false
}

// indexNeed returns literals one of which every match of re contains,
// chosen for the literal index: few literals of at least 2 bytes (the
// index answers each for free once the subject is scanned, but every
// literal grows the automaton). ok is false when there is no such set.
func indexNeed(re *syntax.Regexp, fold bool) ([]string, bool) {
	set, _, ok := litInfo(re, fold, indexScore)
	if !ok || minLen(set) < 2 {
		return nil, false
	}
	// A prefix of a literal every match contains is one too: shorter
	// prefixes can merge many literals (" -a rx/", " -a cn/", ... into " -a").
	best, bestScore := set, indexScore(set)
	for n := 2; n < 8; n++ {
		var p []string
		for _, w := range set {
			w = w[:min(n, len(w))]
			if !slices.Contains(p, w) {
				p = append(p, w)
			}
		}
		if sc := indexScore(p); sc > bestScore {
			best, bestScore = p, sc
		}
	}
	return minimalNeed(best), true
}

func indexScore(set []string) int {
	return 20*min(minLen(set), 5) - len(set)
}

// litSetScore ranks prefilter candidates: each literal costs one substring
// search per subject, and literals longer than 5 bytes add little
// selectivity, so a few literals of 5 bytes beat dozens of longer ones.
func litSetScore(set []string) int {
	return min(minLen(set), 5)*100 - len(set)
}

func product(a, b []string) []string {
	if len(a)*len(b) > maxLitSet {
		return nil
	}
	out := make([]string, 0, len(a)*len(b))
	for _, x := range a {
		for _, y := range b {
			out = append(out, x+y)
		}
	}
	return out
}

func minLen(set []string) int {
	m := -1
	for _, s := range set {
		if m < 0 || len(s) < m {
			m = len(s)
		}
	}
	return m
}

package detect

import (
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
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
	}
	return f, nil
}

func (f *fastRegexp) MatchString(s string) bool {
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
	set, _, ok := litInfo(re, fold)
	if !ok || minLen(set) == 0 {
		return nil, false
	}
	return set, true
}

const maxLitSet = 64

// litInfo returns a set of strings one of which every match of re
// contains; exact reports that the set is precisely the strings re
// matches (so that sets of consecutive exact parts can be concatenated).
func litInfo(re *syntax.Regexp, fold bool) (set []string, exact, ok bool) {
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
		return litInfo(re.Sub[0], fold)
	case syntax.OpQuest:
		sub, ex, ok := litInfo(re.Sub[0], fold)
		if !ok || !ex {
			return []string{""}, false, true
		}
		return append(sub, ""), true, true
	case syntax.OpPlus:
		sub, _, ok := litInfo(re.Sub[0], fold)
		return sub, false, ok
	case syntax.OpRepeat:
		if re.Min >= 1 {
			sub, _, ok := litInfo(re.Sub[0], fold)
			return sub, false, ok
		}
	case syntax.OpAlternate:
		exact = true
		for _, sub := range re.Sub {
			ss, ex, ok := litInfo(sub, fold)
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
			if sc := litSetScore(c); sc > bestScore {
				best, bestScore = c, sc
			}
		}
		run := []string{""}
		allExact := true
		for _, sub := range re.Sub {
			ss, ex, ok := litInfo(sub, fold)
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

package detect

import (
	"regexp"
	"regexp/syntax"
	"strings"
)

// fastRegexp wraps a regexp with a literal prefilter: a set of strings at
// least one of which occurs in every match. Inputs containing none of them
// are rejected with strings.Contains instead of running the regexp engine
// (most events do not come close to matching a rule's pattern).
type fastRegexp struct {
	re   *regexp.Regexp
	need []string // nil: no prefilter
}

func compileFastRegexp(pattern string) (*fastRegexp, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, err
	}
	f := &fastRegexp{re: re}
	if sre, err := syntax.Parse(pattern, syntax.Perl); err == nil {
		if need, ok := mustContain(sre.Simplify()); ok && len(need) <= 64 {
			f.need = need
		}
	}
	return f, nil
}

func (f *fastRegexp) MatchString(s string) bool {
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

// mustContain returns literals one of which every match of re contains.
// ok is false when no such (non-empty) set is known.
func mustContain(re *syntax.Regexp) ([]string, bool) {
	set, _, ok := litInfo(re)
	if !ok || minLen(set) == 0 {
		return nil, false
	}
	return set, true
}

const maxLitSet = 64

// litInfo returns a set of strings one of which every match of re
// contains; exact reports that the set is precisely the strings re
// matches (so that sets of consecutive exact parts can be concatenated).
func litInfo(re *syntax.Regexp) (set []string, exact, ok bool) {
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return []string{""}, true, true
	case syntax.OpLiteral:
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
		return set, true, true
	case syntax.OpCapture:
		return litInfo(re.Sub[0])
	case syntax.OpQuest:
		sub, ex, ok := litInfo(re.Sub[0])
		if !ok || !ex {
			return []string{""}, false, true
		}
		return append(sub, ""), true, true
	case syntax.OpPlus:
		sub, _, ok := litInfo(re.Sub[0])
		return sub, false, ok
	case syntax.OpRepeat:
		if re.Min >= 1 {
			sub, _, ok := litInfo(re.Sub[0])
			return sub, false, ok
		}
	case syntax.OpAlternate:
		exact = true
		for _, sub := range re.Sub {
			ss, ex, ok := litInfo(sub)
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
		// Concatenate runs of exact parts; keep the best candidate.
		var best []string
		bestLen := -1
		consider := func(c []string) {
			if c == nil {
				return
			}
			if m := minLen(c); m > bestLen {
				best, bestLen = c, m
			}
		}
		run := []string{""}
		allExact := true
		for _, sub := range re.Sub {
			ss, ex, ok := litInfo(sub)
			if ok && ex {
				if p := product(run, ss); p != nil {
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

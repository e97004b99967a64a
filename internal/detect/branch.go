package detect

import (
	"regexp/syntax"
	"strings"
	"unicode/utf8"
)

// boundedBranch is a regexp branch of the shape
//
//	[pre] words [post]
//
// where words is a finite set of ASCII strings, pre is ^, a one-character
// class, or ^ or such a class ((^|[ ;|&(/])), and post is $, a
// one-character class, either of them (( |$)), or a class repeated to
// the end ([0-9.]*$). Such a branch is decided with substring searches
// instead of the regexp engine. Only case-sensitive patterns are split
// this way.
type boundedBranch struct {
	words []string

	preBegin bool       // may start at the beginning of the subject
	preClass *[256]bool // else the preceding byte must be in the class; nil: any
	postEnd  bool       // may end at the end of the subject
	postCls  *[256]bool // else the next byte must be in the class; nil: any
	tail     *[256]bool // the rest of the subject must be in the class (implies postEnd)
	first    [256]bool  // the first bytes of words
}

// hasPre and hasPost report whether the branch constrains its context.
func (b *boundedBranch) hasPre() bool  { return b.preBegin || b.preClass != nil }
func (b *boundedBranch) hasPost() bool { return b.postEnd || b.postCls != nil || b.tail != nil }

func (b *boundedBranch) preOK(s string, i int) bool {
	if !b.hasPre() {
		return true
	}
	if i == 0 {
		return b.preBegin
	}
	return b.preClass != nil && b.preClass[s[i-1]]
}

// postOK reports whether a word ending at j may end the match. tailStart
// is where the subject's final run of tail-class bytes starts (see
// tailFrom), so that checking every occurrence stays linear.
func (b *boundedBranch) postOK(s string, j, tailStart int) bool {
	if b.tail != nil {
		return j >= tailStart
	}
	if !b.hasPost() {
		return true
	}
	if j == len(s) {
		return b.postEnd
	}
	return b.postCls != nil && b.postCls[s[j]]
}

// tailFrom returns the start of the longest suffix of s whose bytes are
// all in the tail class (len(s) when there is no tail class).
func (b *boundedBranch) tailFrom(s string) int {
	k := len(s)
	if b.tail != nil {
		for k > 0 && b.tail[s[k-1]] {
			k--
		}
	}
	return k
}

func (b *boundedBranch) match(s string) bool {
	if b.preBegin && b.preClass == nil && (len(s) == 0 || !b.first[s[0]]) {
		return false // anchored: no word starts with the subject's first byte
	}
	tailStart := b.tailFrom(s)
	for _, w := range b.words {
		if b.preBegin && b.preClass == nil {
			if strings.HasPrefix(s, w) && b.postOK(s, len(w), tailStart) {
				return true
			}
			continue
		}
		for off := 0; off+len(w) <= len(s); {
			i := strings.Index(s[off:], w)
			if i < 0 {
				break
			}
			i += off
			if b.preOK(s, i) && b.postOK(s, i+len(w), tailStart) {
				return true
			}
			off = i + 1
		}
	}
	return false
}

// byteClass converts a one-character class (or an ASCII literal of one
// character) into a byte table. A byte >= 0x80 belongs to a non-ASCII
// character (or an invalid byte, which the regexp engine reads as U+FFFD),
// so the class must hold all non-ASCII characters or none.
func byteClass(re *syntax.Regexp) (*[256]bool, bool) {
	var t [256]bool
	switch re.Op {
	case syntax.OpLiteral:
		if len(re.Rune) != 1 || re.Rune[0] >= utf8.RuneSelf || re.Flags&syntax.FoldCase != 0 && isASCIILetter(byte(re.Rune[0])) {
			return nil, false
		}
		t[re.Rune[0]] = true
		return &t, true
	case syntax.OpCharClass:
		hi := 0 // non-ASCII runes covered
		for i := 0; i+1 < len(re.Rune); i += 2 {
			lo, up := re.Rune[i], re.Rune[i+1]
			for r := lo; r <= up && r < utf8.RuneSelf; r++ {
				t[r] = true
			}
			if up >= utf8.RuneSelf {
				hi += int(up-max(lo, utf8.RuneSelf)) + 1
			}
		}
		switch hi {
		case 0:
		case unicodeMax - utf8.RuneSelf + 1:
			for b := 0x80; b < 256; b++ {
				t[b] = true
			}
		default:
			return nil, false
		}
		return &t, true
	}
	return nil, false
}

const unicodeMax = utf8.MaxRune

// unwrap strips capture groups.
func unwrap(re *syntax.Regexp) *syntax.Regexp {
	for re.Op == syntax.OpCapture {
		re = re.Sub[0]
	}
	return re
}

// flatSeq returns re as a sequence of elements (nested concatenations and
// captures flattened).
func flatSeq(re *syntax.Regexp) []*syntax.Regexp {
	re = unwrap(re)
	if re.Op != syntax.OpConcat {
		return []*syntax.Regexp{re}
	}
	var out []*syntax.Regexp
	for _, s := range re.Sub {
		out = append(out, flatSeq(s)...)
	}
	return out
}

const maxBranchSeqs = 32

// expandSeqs distributes alternations that are not finite sets over the
// sequence (^(a[0-9]*|b)$ becomes ^a[0-9]*$ and ^b$), up to a bound.
func expandSeqs(seq []*syntax.Regexp) ([][]*syntax.Regexp, bool) {
	for i, el := range seq {
		if el.Op != syntax.OpAlternate {
			continue
		}
		if i == 0 && len(el.Sub) == 2 && unwrap(el.Sub[0]).Op == syntax.OpBeginText ||
			i == len(seq)-1 && len(el.Sub) == 2 && unwrap(el.Sub[1]).Op == syntax.OpEndText {
			continue // the context before or after the words (see boundedSeq)
		}
		if _, ok := finiteStrings(el, false); ok {
			continue
		}
		var out [][]*syntax.Regexp
		for _, alt := range el.Sub {
			n := append(append(append([]*syntax.Regexp{}, seq[:i]...), flatSeq(alt)...), seq[i+1:]...)
			sub, ok := expandSeqs(n)
			if !ok || len(out)+len(sub) > maxBranchSeqs {
				return nil, false
			}
			out = append(out, sub...)
		}
		return out, true
	}
	return [][]*syntax.Regexp{seq}, true
}

// boundedBranches returns the bounded branches equivalent to re (one
// alternative of a top-level alternation), or false.
func boundedBranches(re *syntax.Regexp) ([]*boundedBranch, bool) {
	seqs, ok := expandSeqs(flatSeq(re))
	if !ok {
		return nil, false
	}
	var out []*boundedBranch
	for _, seq := range seqs {
		b, ok := boundedSeq(seq)
		if !ok {
			return nil, false
		}
		out = append(out, b)
	}
	return out, true
}

func boundedSeq(seq []*syntax.Regexp) (*boundedBranch, bool) {
	b := &boundedBranch{}
	// Context before the words.
	if len(seq) > 0 {
		first := unwrap(seq[0])
		switch {
		case first.Op == syntax.OpBeginText:
			b.preBegin = true
			seq = seq[1:]
		case first.Op == syntax.OpAlternate && len(first.Sub) == 2 && unwrap(first.Sub[0]).Op == syntax.OpBeginText:
			c, ok := byteClass(unwrap(first.Sub[1]))
			if !ok {
				return nil, false
			}
			b.preBegin, b.preClass = true, c
			seq = seq[1:]
		}
	}
	// Context after the words.
	if n := len(seq); n > 0 {
		last := unwrap(seq[n-1])
		switch {
		case last.Op == syntax.OpEndText:
			seq = seq[:n-1]
			if m := len(seq); m > 0 {
				if st := unwrap(seq[m-1]); st.Op == syntax.OpStar {
					c, ok := byteClass(unwrap(st.Sub[0]))
					if !ok {
						return nil, false
					}
					b.tail = c
					seq = seq[:m-1]
					break
				}
			}
			b.postEnd = true
		case last.Op == syntax.OpAlternate && len(last.Sub) == 2 && unwrap(last.Sub[1]).Op == syntax.OpEndText:
			c, ok := byteClass(unwrap(last.Sub[0]))
			if !ok {
				return nil, false
			}
			b.postEnd, b.postCls = true, c
			seq = seq[:n-1]
		}
	}
	if len(seq) == 0 {
		return nil, false
	}
	words := []string{""}
	for _, el := range seq {
		set, ok := finiteStrings(el, false)
		if !ok || len(words)*len(set) > maxFinite {
			return nil, false
		}
		next := make([]string, 0, len(words)*len(set))
		for _, w := range words {
			for _, x := range set {
				next = append(next, w+x)
			}
		}
		words = next
	}
	for _, w := range words {
		if w == "" {
			return nil, false
		}
	}
	b.words = words
	for _, w := range words {
		b.first[w[0]] = true
	}
	return b, true
}

// Package detect is vigil's rule language and detection engine.
//
// Rules are YAML documents (see docs/rules.md) holding lists, macros and
// rules whose conditions are CEL expressions over a typed view of an
// *event.Event. LoadFS/LoadFiles parse rule files into a RuleSet (errors
// carry file:line:column), Compile type-checks every condition against the
// vocabulary and builds an Engine that indexes rules by event kind and
// evaluates most conditions natively (no allocation), falling back to the
// CEL interpreter, with a runtime cost limit, for the rest. A Reloader holds
// the current Engine behind an atomic pointer for hot reload.
package detect

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/event"
)

// Pos is a position in a rule file (1-based line and column).
type Pos struct {
	File         string
	Line, Column int
}

func (p Pos) String() string {
	if p.File == "" && p.Line == 0 {
		return "<unknown position>"
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
}

// Error is one problem in a rule file, at a position.
type Error struct {
	Pos Pos
	Msg string
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

func errAt(p Pos, format string, args ...any) *Error {
	return &Error{Pos: p, Msg: fmt.Sprintf(format, args...)}
}

// Maturity values.
const (
	MaturityStable     = "stable"
	MaturityIncubating = "incubating"
	MaturitySandbox    = "sandbox"
)

var (
	severities = []string{alert.SeverityInformational, alert.SeverityLow, alert.SeverityMedium, alert.SeverityHigh}
	maturities = []string{MaturityStable, MaturityIncubating, MaturitySandbox}
)

// Rule is one detection rule.
type Rule struct {
	ID          string
	Name        string
	Description string
	Severity    string
	Maturity    string
	// Condition is the CEL condition as written (before macro expansion
	// and exceptions).
	Condition   string
	Tactics     []string
	Techniques  []string
	Remediation []string
	Kinds       []event.Kind
	Enabled     bool
	Exceptions  []Exception
	// Source is where the rule was (last) defined.
	Source Pos

	cond srcText // the condition's position and YAML style, for error mapping
}

// Exception suppresses a rule for events whose Fields equal one of the
// Values tuples. It compiles to !(f1 == v1 && f2 == v2 ...) per tuple.
type Exception struct {
	Name   string
	Fields []string
	// Values holds one tuple per row; each tuple has one Cell per field.
	Values [][]Cell
	Source Pos
}

// Cell is one value of an exception tuple: one value (equality; a value
// that is the name of a list means any item of the list) or several values
// (a YAML sequence: any of them).
type Cell struct {
	Values []string
}

func (c Cell) String() string {
	if len(c.Values) == 1 {
		return c.Values[0]
	}
	return "[" + strings.Join(c.Values, ", ") + "]"
}

// List is a named list usable in conditions (`x in name`).
type List struct {
	Name  string
	Items []string
	// Ints is set when every item is an integer (a list of ports, uids):
	// the list is then a list<int> in CEL.
	Ints   bool
	Source Pos
}

// Macro is a named CEL fragment substituted into conditions.
type Macro struct {
	Name      string
	Condition string
	Source    Pos
	cond      srcText
}

// srcText locates a YAML scalar's text so positions inside it can be
// mapped back to file:line:column.
type srcText struct {
	pos    Pos
	style  yaml.Style
	keyCol int // column of the mapping key; block content is assumed indented by 2 more
}

// at maps a 1-based (line, column) inside the scalar's value to a file
// position. Plain and quoted single-line scalars are exact; for block
// scalars (| and >) the line is exact and the column is relative to the
// block's indentation.
func (s srcText) at(line, col int) Pos {
	p := s.pos
	switch {
	case s.style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0:
		p.Line += line // content starts on the line after the indicator
		p.Column = s.keyCol + 1 + col
		if s.style&yaml.FoldedStyle != 0 {
			p.Line = s.pos.Line + 1 // folded lines are joined: only the first line is known
		}
	case line > 1:
		p.Line += line - 1
		p.Column = col
	default:
		p.Column += col - 1
		if s.style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
			p.Column++
		}
	}
	return p
}

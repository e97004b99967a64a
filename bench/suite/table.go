// Package suite runs vigil's performance suite (issue 8, P1–P8) and
// renders its one table: item, what, goal, measured median [min–max] over
// repetitions, met?. bench/cmd/suite is the command; this package holds the
// measurements that are not a Go benchmark (the forced ring overflow, the
// sensor's RSS under 10,000 live and many short-lived processes), the
// parsing of `go test -bench` output, the statistics and the table.
package suite

import (
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/vigil-sec/vigil/bench/sidebyside"
)

// Met verdicts of a row.
const (
	MetYes  = "yes"
	MetNo   = "NO"
	MetInfo = "—" // shown for the record, not judged
)

// Goal is the promise a row is judged against. Goals come from the issue
// and are never lowered to make a row pass.
type Goal struct {
	Text string // as printed, e.g. "≥ 0.97"
	// Exactly one of AtLeast / AtMost applies when Judged.
	Min, Max float64
	AtMost   bool
	Judged   bool
}

// AtLeast is a lower bound (ratios, throughput).
func AtLeast(text string, min float64) Goal { return Goal{Text: text, Min: min, Judged: true} }

// AtMost is an upper bound (latency, CPU, memory, drops).
func AtMost(text string, max float64) Goal {
	return Goal{Text: text, Max: max, AtMost: true, Judged: true}
}

// Info is a row without a goal.
func Info() Goal { return Goal{Text: "(info)"} }

// Judge says whether v meets the goal.
func (g Goal) Judge(v float64) string {
	switch {
	case !g.Judged:
		return MetInfo
	case math.IsNaN(v):
		return MetNo
	case g.AtMost && v <= g.Max, !g.AtMost && v >= g.Min:
		return MetYes
	default:
		return MetNo
	}
}

// Row is one line of the suite's table.
type Row struct {
	Item     string `json:"item"` // P1 … P8
	What     string `json:"what"`
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	Met      string `json:"met"`
}

// SummaryRow judges a summary by its median and shows it as
// "median [min–max]" with verb (e.g. "%.3f"); scale multiplies every value
// before printing (e.g. 1/1e6 to print millions). An empty summary is a row
// that was not measured, which never meets a goal.
func SummaryRow(item, what string, g Goal, s sidebyside.Summary, verb string, scale float64) Row {
	r := Row{Item: item, What: what, Goal: g.Text}
	if s.N == 0 {
		r.Measured, r.Met = "not measured", MetNo
		if !g.Judged {
			r.Met = MetInfo
		}
		return r
	}
	if scale == 0 {
		scale = 1
	}
	r.Measured = fmt.Sprintf(verb+" ["+verb+"–"+verb+"]", s.Median*scale, s.Min*scale, s.Max*scale)
	if s.N > 1 {
		r.Measured += fmt.Sprintf(" (n=%d)", s.N)
	} else {
		r.Measured = fmt.Sprintf(verb+" (n=1)", s.Median*scale)
	}
	r.Met = g.Judge(s.Median)
	return r
}

// FailedRow is a measurement that could not be made: it never meets its goal.
func FailedRow(item, what string, g Goal, err error) Row {
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	if len(msg) > 160 {
		msg = msg[:160] + "…"
	}
	met := MetNo
	if !g.Judged {
		met = MetInfo
	}
	return Row{Item: item, What: what, Goal: g.Text, Measured: "FAILED: " + msg, Met: met}
}

// WriteTable prints the rows as a Markdown table with padded columns.
func WriteTable(w io.Writer, rows []Row) error {
	cells := make([][]string, len(rows))
	for i, r := range rows {
		cells[i] = []string{r.Item, r.What, r.Goal, r.Measured, r.Met}
	}
	var b strings.Builder
	sidebyside.WriteTable(&b, []string{"item", "what", "goal", "measured: median [min–max]", "met?"}, cells)
	_, err := io.WriteString(w, b.String())
	return err
}

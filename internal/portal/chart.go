package portal

import (
	"context"
	"fmt"
	"html"
	"html/template"
	"strings"
	"time"
)

// chartScanLimit bounds how many alerts the severity chart reads. The store
// has no "count by severity per bucket" query, so the portal pages through
// ListAlerts; at portal scale that is a few pages.
const chartScanLimit = 20_000

// chart is the severity-over-time chart of the alerts page.
type chart struct {
	SVG       template.HTML
	Totals    map[string]int
	Truncated bool
	Bucket    string
}

// severityChart counts the alerts matching lq (without paging) by severity
// per bucket of the selected range and draws them as stacked bars.
func (p *Portal) severityChart(ctx context.Context, lq listQuery) (chart, error) {
	now := p.cfg.Now().UTC()
	span, bucket := 30*24*time.Hour, 24*time.Hour
	for _, r := range ranges {
		if r.Name == lq.Range {
			span, bucket = r.Span, r.Bucket
		}
	}
	start := now.Add(-span).Truncate(bucket)
	n := int(now.Sub(start)/bucket) + 1
	counts := make([]map[string]int, n)
	for i := range counts {
		counts[i] = map[string]int{}
	}
	c := chart{Totals: map[string]int{}, Bucket: "hour"}
	switch {
	case bucket < time.Hour:
		c.Bucket = bucket.String()
	case bucket >= 24*time.Hour:
		c.Bucket = "day"
	}
	f := lq.filter
	f.Cursor, f.Limit, f.Order = "", 1000, "endTime"
	if f.Since.IsZero() || f.Since.Before(start) {
		f.Since = start
	}
	scanned := 0
	for {
		page, err := p.cfg.Store.ListAlerts(ctx, f)
		if err != nil {
			return c, fmt.Errorf("count alerts for the chart: %w", err)
		}
		for _, a := range page.Alerts {
			i := int(a.EndTime.UTC().Sub(start) / bucket)
			if i < 0 || i >= n {
				continue
			}
			counts[i][a.Severity]++
			c.Totals[a.Severity]++
		}
		scanned += len(page.Alerts)
		if page.NextCursor == "" {
			break
		}
		if scanned >= chartScanLimit {
			c.Truncated = true
			break
		}
		f.Cursor = page.NextCursor
	}
	c.SVG = drawChart(counts, start, bucket)
	return c, nil
}

// drawChart renders stacked bars (severity classes are coloured by the
// stylesheet, so the chart follows the light/dark theme).
func drawChart(counts []map[string]int, start time.Time, bucket time.Duration) template.HTML {
	const w, h, left, bottom, top = 720.0, 170.0, 34.0, 22.0, 8.0
	max := 0
	for _, c := range counts {
		t := 0
		for _, v := range c {
			t += v
		}
		if t > max {
			max = t
		}
	}
	if max == 0 {
		max = 1
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %g %g" role="img" aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg">`, w, h)
	b.WriteString(`<title id="chart-title">Alerts by severity over time</title>`)
	plotH := h - bottom - top
	fmt.Fprintf(&b, `<line class="axis" x1="%g" y1="%g" x2="%g" y2="%g"/>`, left, h-bottom, w, h-bottom)
	fmt.Fprintf(&b, `<text class="tick" x="%g" y="%g" text-anchor="end">%d</text>`, left-4, top+8, max)
	fmt.Fprintf(&b, `<text class="tick" x="%g" y="%g" text-anchor="end">0</text>`, left-4, h-bottom)
	slot := (w - left) / float64(len(counts))
	bw := slot * 0.7
	labelEvery := 1 + len(counts)/8
	order := []string{"Informational", "Low", "Medium", "High"}
	for i, c := range counts {
		x := left + float64(i)*slot + (slot-bw)/2
		y := h - bottom
		at := start.Add(time.Duration(i) * bucket)
		for _, sev := range order {
			v := c[sev]
			if v == 0 {
				continue
			}
			bh := plotH * float64(v) / float64(max)
			y -= bh
			fmt.Fprintf(&b, `<rect class="sev-%s" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s: %d %s</title></rect>`,
				strings.ToLower(sev), x, y, bw, bh, html.EscapeString(at.Format("2006-01-02 15:04")), v, sev)
		}
		if i%labelEvery == 0 {
			label := at.Format("15:04")
			if bucket >= 24*time.Hour {
				label = at.Format("01-02")
			}
			fmt.Fprintf(&b, `<text class="tick" x="%.1f" y="%g" text-anchor="middle">%s</text>`, x+bw/2, h-6, label)
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // numbers and escaped labels only
}

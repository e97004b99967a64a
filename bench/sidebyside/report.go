package sidebyside

import (
	"fmt"
	"io"
	"strings"
)

// goal is a target a row is checked against; min is a lower bound for
// ratios, max an upper bound (CPU %, drops). Zero-value goals are
// informational rows.
type goal struct {
	text     string
	min, max float64
	isMax    bool
	info     bool // shown, not judged
}

func (g goal) met(v float64) string {
	switch {
	case g.text == "" || g.info:
		return "—"
	case g.isMax && v <= g.max, !g.isMax && v >= g.min:
		return "yes"
	default:
		return "NO"
	}
}

var workloadTitles = map[string]string{
	"exec":    "exec storm (fork+exec /bin/true)",
	"connect": "connect storm (127.0.0.1 TCP)",
	"getppid": "getppid loop",
	"read":    "read 64 B of /dev/zero",
}

func ratioGoal(workload string) goal {
	switch workload {
	case "exec":
		return goal{text: "≥ 0.97", min: 0.97}
	case "connect":
		return goal{text: "≥ 0.98", min: 0.98}
	}
	return goal{text: "(info)", info: true}
}

type report struct {
	header    string
	ratioRows [][]string
	sensorHdr []string
	sensor    [][]string
	footer    []string
}

// paired is one workload's comparison of a sensor configuration with no
// sensor, each round paired with its own baseline.
type paired struct {
	rate    []float64 // rate(with) / rate(without)
	perCPU  []float64 // (ops per CPU-second with) / (ops per CPU-second without)
	off, on []float64 // the rates
}

// noiseFloor pairs each round without the sensor with the previous one:
// ratios a sensor that costs nothing would show on this machine.
func noiseFloor(res *Results, workload string) (rate, perCPU []float64) {
	var prev *StormResult
	for _, s := range res.Samples {
		if s.Workload != workload || s.Mode != modeOff {
			continue
		}
		cur := s.Storm
		if prev != nil && prev.Rate > 0 && prev.CPU > 0 && cur.CPU > 0 {
			rate = append(rate, cur.Rate/prev.Rate)
			perCPU = append(perCPU, (float64(cur.Ops)/cur.CPU)/(float64(prev.Ops)/prev.CPU))
		}
		prev = &cur
	}
	return rate, perCPU
}

func pairedRatios(res *Results, workload, cfg string) paired {
	offBy := map[int]StormResult{}
	for _, s := range res.Samples {
		if s.Workload == workload && s.Mode == modeOff {
			offBy[s.Round] = s.Storm
		}
	}
	var p paired
	for _, s := range res.Samples {
		if s.Workload != workload || s.Mode != cfg {
			continue
		}
		base, ok := offBy[s.Round]
		if !ok || base.Rate == 0 || base.CPU == 0 || s.Storm.CPU == 0 {
			continue
		}
		p.rate = append(p.rate, s.Storm.Rate/base.Rate)
		p.perCPU = append(p.perCPU, (float64(s.Storm.Ops)/s.Storm.CPU)/(float64(base.Ops)/base.CPU))
		p.off = append(p.off, base.Rate)
		p.on = append(p.on, s.Storm.Rate)
	}
	return p
}

func sensorSamples(res *Results, workload, cfg string) []Sample {
	var out []Sample
	for _, s := range res.Samples {
		if s.Workload == workload && s.Mode == cfg && s.Sensor != nil {
			out = append(out, s)
		}
	}
	return out
}

func buildReport(res *Results, workloads []string) *report {
	r := &report{header: fmt.Sprintf("vigil sensor overhead, side by side: %s, kernel %s, %d CPUs, %v rounds per mode, %.0f s total",
		res.Date, res.Kernel, res.CPUs, res.Options["pairs"], res.Duration)}
	for _, w := range workloads {
		for _, c := range res.Configs {
			p := pairedRatios(res, w, c.Name)
			rs, cs := Summarize(p.rate), Summarize(p.perCPU)
			g := ratioGoal(w)
			r.ratioRows = append(r.ratioRows, []string{
				workloadTitles[w] + ", sensor " + c.Label,
				fmt.Sprintf("%.0f/s", Summarize(p.off).Median),
				fmt.Sprintf("%.0f/s", Summarize(p.on).Median),
				rs.format("%.3f"),
				g.text, g.met(rs.Median),
				cs.format("%.3f"), g.met(cs.Median),
			})
		}
		if rate, perCPU := noiseFloor(res, w); len(rate) > 0 {
			r.ratioRows = append(r.ratioRows, []string{
				workloadTitles[w] + ", no sensor vs no sensor (noise floor)", "", "",
				Summarize(rate).format("%.3f"), "(info)", "—", Summarize(perCPU).format("%.3f"), "—",
			})
		}
	}

	r.sensorHdr = []string{"sensor during the exec storm"}
	for _, c := range res.Configs {
		r.sensorHdr = append(r.sensorHdr, c.Label)
	}
	r.sensorHdr = append(r.sensorHdr, "goal", "met?")
	type rowFn func(ss []Sample) (string, float64)
	rows := []struct {
		name string
		g    goal
		f    rowFn
	}{
		{"drops per storm, max (total)", goal{text: "0", isMax: true}, func(ss []Sample) (string, float64) {
			var mx, sum float64
			for _, s := range ss {
				mx = max(mx, s.Sensor.Drops)
				sum += s.Sensor.Drops
			}
			return fmt.Sprintf("%.0f (%.0f)", mx, sum), mx
		}},
		{"CPU, % of one core, median [min–max]", goal{text: "≤ 5 %", max: 5, isMax: true}, func(ss []Sample) (string, float64) {
			var xs []float64
			for _, s := range ss {
				xs = append(xs, s.Sensor.CPUPercent)
			}
			sm := Summarize(xs)
			return sm.format("%.1f"), sm.Median
		}},
		{"exec events / execs done, median", goal{}, func(ss []Sample) (string, float64) {
			var xs []float64
			for _, s := range ss {
				xs = append(xs, s.Sensor.ExecEvents/float64(s.Storm.Ops))
			}
			sm := Summarize(xs)
			return fmt.Sprintf("%.3f", sm.Median), sm.Median
		}},
		{"kernel records per exec, median", goal{}, func(ss []Sample) (string, float64) {
			var xs []float64
			for _, s := range ss {
				xs = append(xs, s.Sensor.KernelRecords/float64(s.Storm.Ops))
			}
			sm := Summarize(xs)
			return fmt.Sprintf("%.2f", sm.Median), sm.Median
		}},
	}
	for _, row := range rows {
		line := []string{row.name}
		met := "yes"
		for _, c := range res.Configs {
			txt, v := row.f(sensorSamples(res, "exec", c.Name))
			line = append(line, txt)
			if m := row.g.met(v); m != "yes" {
				met = m
			}
		}
		if row.g.text == "" {
			met = "—"
		}
		r.sensor = append(r.sensor, append(line, row.g.text, met))
	}

	// Memory: the last round's VmRSS and the largest VmHWM of each config.
	memLine := []string{"RSS at the end of the last round (peak over all rounds)"}
	for _, c := range res.Configs {
		var last Memory
		var peak uint64
		for _, m := range res.Memory {
			if m.Mode == c.Name {
				last = m.Memory
				peak = max(peak, m.Memory.PeakKiB)
			}
		}
		memLine = append(memLine, fmt.Sprintf("%.1f MiB (%.1f MiB)", float64(last.RSSKiB)/1024, float64(peak)/1024))
	}
	r.sensor = append(r.sensor, append(memLine, "", "—"))

	// CPU in the other storms, for the record.
	for _, w := range workloads[1:] {
		line := []string{"CPU during the " + w + " storm, % of one core"}
		for _, c := range res.Configs {
			var xs []float64
			for _, s := range sensorSamples(res, w, c.Name) {
				xs = append(xs, s.Sensor.CPUPercent)
			}
			line = append(line, Summarize(xs).format("%.1f"))
		}
		r.sensor = append(r.sensor, append(line, "", "—"))
	}
	r.footer = []string{
		"ratio = rate with the sensor / rate without it in the same round (rounds alternate off/on); met? judges the median.",
		"ops/CPU-s ratio = the same for operations per CPU-second of the workload (user+sys, with its children): it",
		"carries the in-kernel hook cost but not CPU stolen by other load, so it is steadier on a shared machine.",
		"Sensor CPU = utime+stime of the sensor process over the storm (including draining its backlog) ÷ the storm's wall time;",
		"the eBPF programs' own cost runs in the workload's context and shows in the ratio, not here.",
	}
	return r
}

func (r *report) write(w io.Writer) error {
	var b strings.Builder
	b.WriteString(r.header + "\n\n")
	WriteTable(&b, []string{"benchmark", "without", "with", "ratio median [min–max]", "goal", "met?",
		"ops/CPU-s ratio median [min–max]", "met?"}, r.ratioRows)
	b.WriteString("\n")
	WriteTable(&b, r.sensorHdr, r.sensor)
	b.WriteString("\n")
	for _, f := range r.footer {
		b.WriteString(f + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteTable renders a Markdown table with padded columns.
func WriteTable(b *strings.Builder, header []string, rows [][]string) {
	width := make([]int, len(header))
	for _, row := range append([][]string{header}, rows...) {
		for i, c := range row {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	line := func(cells []string) {
		b.WriteString("|")
		for i, c := range cells {
			b.WriteString(" " + c + strings.Repeat(" ", width[i]-len([]rune(c))) + " |")
		}
		b.WriteString("\n")
	}
	line(header)
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	line(sep)
	for _, row := range rows {
		line(row)
	}
}

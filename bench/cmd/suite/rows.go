package main

import (
	"fmt"
	"strings"

	"github.com/vigil-sec/vigil/bench/sidebyside"
	"github.com/vigil-sec/vigil/bench/suite"
)

// prodConfig is the side-by-side configuration that runs the sensor as
// `vigil up` does: the whole pipeline and catalog, no JSON event stream.
const prodConfig = "noout"

// sideBySideRows turns a side-by-side run into the P1, P2, P3 (4 MiB ring)
// and P8 rows. With err (the run failed), every row says FAILED.
func sideBySideRows(res *sidebyside.Results, err error, o options) []suite.Row {
	type spec struct {
		item, what string
		goal       suite.Goal
		value      func() sidebyside.Summary
		verb       string
		judgeMax   bool // every storm must meet the goal, not the median
	}
	ratioOf := func(w, config string, perCPU bool) func() sidebyside.Summary {
		return func() sidebyside.Summary {
			r, c := res.Ratio(w, config)
			if perCPU {
				return c
			}
			return r
		}
	}
	ratio := func(w string, perCPU bool) func() sidebyside.Summary {
		return ratioOf(w, prodConfig, perCPU)
	}
	floor := func(w string) func() sidebyside.Summary {
		return func() sidebyside.Summary { r, _ := res.NoiseFloor(w); return r }
	}
	drops := func() sidebyside.Summary {
		var xs []float64
		for _, c := range res.Configs {
			for _, s := range res.SensorSamples("exec", c.Name) {
				xs = append(xs, s.Sensor.Drops)
			}
		}
		return sidebyside.Summarize(xs)
	}
	cpu := func() sidebyside.Summary {
		var xs []float64
		for _, s := range res.SensorSamples("exec", prodConfig) {
			xs = append(xs, s.Sensor.CPUPercent)
		}
		return sidebyside.Summarize(xs)
	}
	specs := []spec{
		{"P1", "exec storm (fork+exec /bin/true): rate with sensor ÷ without", suite.AtLeast("≥ 0.97", 0.97), ratio("exec", false), "%.3f", false},
		{"P1", "exec storm: ops per CPU-second with ÷ without", suite.AtLeast("≥ 0.97", 0.97), ratio("exec", true), "%.3f", false},
		{"P1", "exec storm: no sensor ÷ no sensor (noise floor of this run)", suite.Info(), floor("exec"), "%.3f", false},
		{"P2", "loopback TCP connect storm: rate with sensor ÷ without", suite.AtLeast("≥ 0.98", 0.98), ratio("connect", false), "%.3f", false},
		{"P2", "connect storm: ops per CPU-second with ÷ without", suite.AtLeast("≥ 0.98", 0.98), ratio("connect", true), "%.3f", false},
		{"P2", "connect storm: no sensor ÷ no sensor (noise floor of this run)", suite.Info(), floor("connect"), "%.3f", false},
		{"P2", "connect storm, every connection reported (--network-repeat-window=0): rate with ÷ without", suite.Info(), ratioOf("connect", "everyconn", false), "%.3f", false},
		{"P2", "getppid loop (per-syscall hook cost): rate with ÷ without", suite.Info(), ratio("getppid", false), "%.3f", false},
		{"P2", "read 64 B of /dev/zero loop: rate with ÷ without", suite.Info(), ratio("read", false), "%.3f", false},
		{"P3", "drops per exec storm at the machine's exec limit, 4 MiB ring (every configuration)", suite.AtMost("0", 0), drops, "%.0f", true},
		{"P8", "sensor CPU during the exec storm, % of one core", suite.AtMost("≤ 5 %", 5), cpu, "%.1f", false},
	}
	var rows []suite.Row
	for _, s := range specs {
		if !o.runs(s.item) {
			continue
		}
		if err != nil || res == nil {
			if err == nil {
				err = fmt.Errorf("no side-by-side results")
			}
			rows = append(rows, suite.FailedRow(s.item, s.what, s.goal, err))
			continue
		}
		sum := s.value()
		row := suite.SummaryRow(s.item, s.what, s.goal, sum, s.verb, 1)
		if s.judgeMax && sum.N > 0 {
			row.What += "; judged on the worst storm"
			row.Met = s.goal.Judge(sum.Max)
		}
		rows = append(rows, row)
	}
	return rows
}

// replays are the sub-benchmarks of BenchmarkCatalogOnRecordedEvents.
var replays = []struct{ name, what string }{
	{"stream", "a real sensor recording"},
	{"benign", "benign fixtures (exec-heavy)"},
	{"realistic", "benign fixtures + 1 % attacks"},
	{"attacks", "attack fixtures (worst case)"},
}

func ruleRows(rs []suite.BenchResult, err error) []suite.Row {
	g := suite.AtLeast("≥ 1.00 M", 1e6)
	var rows []suite.Row
	var allocs []string
	for _, r := range replays {
		what := fmt.Sprintf("rule engine, full catalog, one core, replay %s (%s): M events/s", r.name, r.what)
		name := "BenchmarkCatalogOnRecordedEvents/" + r.name
		if err != nil {
			rows = append(rows, suite.FailedRow("P4", what, g, err))
			continue
		}
		rows = append(rows, suite.SummaryRow("P4", what, g, sidebyside.Summarize(suite.Values(rs, "/rules", name, "events/s")), "%.2f", 1e-6))
		a := sidebyside.Summarize(suite.Values(rs, "/rules", name, "allocs/op"))
		if a.N > 0 {
			allocs = append(allocs, fmt.Sprintf("%s %.0f", r.name, a.Median))
		}
	}
	if err == nil {
		rows = append(rows, suite.Row{Item: "P4", What: "allocations per event, median by replay", Goal: suite.Info().Text,
			Measured: strings.Join(allocs, ", "), Met: suite.MetInfo})
	}
	return rows
}

func latencyRows(rs []suite.BenchResult, err error, containers int) []suite.Row {
	const name = "BenchmarkExecInAContainerToAlertAtTheHub"
	specs := []struct {
		what, unit string
		goal       suite.Goal
	}{
		{fmt.Sprintf("exec in a runc container → alert readable from the hub API (vigil up), p50 over %d containers, ms", containers), "p50-ms", suite.Info()},
		{fmt.Sprintf("the same, p99 over %d containers, ms", containers), "p99-ms", suite.AtMost("≤ 500 ms", 500)},
		{"the same, p99 from the alert's kernel exec timestamp (cross-check), ms", "p99-from-event-ms", suite.Info()},
	}
	var rows []suite.Row
	for _, s := range specs {
		if err != nil {
			rows = append(rows, suite.FailedRow("P5", s.what, s.goal, err))
			continue
		}
		rows = append(rows, suite.SummaryRow("P5", s.what, s.goal, sidebyside.Summarize(suite.Values(rs, "/bench/latency", name, s.unit)), "%.0f", 1))
	}
	return rows
}

func hubRows(rs []suite.BenchResult, err error) []suite.Row {
	specs := []struct {
		what, pkg, name, unit string
		goal                  suite.Goal
		verb                  string
	}{
		{"hub HTTP ingest, SQLite, 4 senders × 1000-alert batches: alerts/s", "/internal/hub", "BenchmarkIngestHTTP/sqlite", "alerts/s", suite.AtLeast("≥ 20,000", 20_000), "%.0f"},
		{"hub HTTP ingest, PostgreSQL: alerts/s", "/internal/hub", "BenchmarkIngestHTTP/postgres", "alerts/s", suite.AtLeast("≥ 50,000", 50_000), "%.0f"},
		{"store ingest, SQLite: alerts/s", "/internal/store/sqlite", "BenchmarkIngest", "alerts/s", suite.AtLeast("≥ 20,000", 20_000), "%.0f"},
		{"store ingest, PostgreSQL: alerts/s", "/internal/store/postgres", "BenchmarkIngest", "alerts/s", suite.AtLeast("≥ 50,000", 50_000), "%.0f"},
		{"heartbeat latency with 10,000 clusters, p50, ms", "/internal/hub", "BenchmarkHeartbeat/clusters=10000", "p50-ms", suite.Info(), "%.2f"},
		{"heartbeat latency with 10,000 clusters, p99, ms", "/internal/hub", "BenchmarkHeartbeat/clusters=10000", "p99-ms", suite.AtMost("< 50 ms", 50), "%.2f"},
	}
	var rows []suite.Row
	for _, s := range specs {
		if err != nil {
			rows = append(rows, suite.FailedRow("P7", s.what, s.goal, err))
			continue
		}
		rows = append(rows, suite.SummaryRow("P7", s.what, s.goal, sidebyside.Summarize(suite.Values(rs, s.pkg, s.name, s.unit)), s.verb, 1))
	}
	return rows
}

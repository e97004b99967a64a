// Command suite runs vigil's whole performance suite (issue 8, P1–P8) and
// prints ONE table: item, what, goal, measured median [min–max] over
// repetitions, met?. Raw results go to bench/results/suite-<time>.json
// (git-ignored). It must run as root, from the vigil repository:
//
//	go run ./bench/cmd/suite            # full run
//	go run ./bench/cmd/suite -quick     # smoke run (fewer repetitions, 100,000 short-lived processes)
//
// What each item runs:
//
//	P1, P2, P3 (4 MiB ring), P8  bench/sidebyside: storms with and without `vigil-sensor`, side by side
//	P3 (forced overflow)         `vigil-sensor --ring-size 4KiB` + exec storms: drops vs kernel − delivered
//	P4                           go test -run '^$' -bench CatalogOnRecorded -benchmem -cpu 1 ./rules
//	P5                           go test -run '^$' -bench ExecInAContainer -benchtime Nx ./bench/latency
//	P6                           `vigil-sensor` idle, with 10,000 live processes, then 1,000,000 short-lived ones
//
// The sensor measured is vigil-sensor (./cmd/vigil-sensor), the binary the
// sensor DaemonSet runs; P5 runs `vigil up`-style hub and sensor from vigil.
//
//	P7                           go test -run '^$' -bench 'Ingest|Heartbeat' ./internal/hub ./internal/store/{sqlite,postgres}
//
// A goal that is missed says NO; an item that could not be measured says
// FAILED and makes the command exit 1 after printing the table.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vigil-sec/vigil/bench/sidebyside"
	"github.com/vigil-sec/vigil/bench/suite"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	_, err := run(ctx, log, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		log.Error("performance suite", "err", err)
		os.Exit(1)
	}
}

// items are the suite's P items, in the order they run.
var items = []string{"P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8"}

type options struct {
	quick      bool
	only       []string
	vigil      string
	sensor     string
	results    string
	pairs      int           // side-by-side rounds
	count      int           // -count of the Go benchmarks
	benchtime  string        // -benchtime of P4 and P7 (empty: go test's default)
	containers int           // P5 containers per repetition
	p5reps     int           // P5 repetitions
	overflows  int           // P3 forced-overflow storms
	overflowD  time.Duration // each one's duration
	live       int           // P6 live processes
	shortLived uint64        // P6 short-lived processes
	checkpts   int           // P6 checkpoints
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	var only string
	fs := flag.NewFlagSet("suite", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.quick, "quick", false, "smoke run: fewer repetitions and 100,000 instead of 1,000,000 short-lived processes for P6")
	fs.StringVar(&only, "only", "", "comma-separated items to run, e.g. P4,P7 (default: all)")
	fs.StringVar(&o.vigil, "vigil", "", "use this vigil binary instead of building ./cmd/vigil (P5)")
	fs.StringVar(&o.sensor, "sensor", "", "use this sensor binary instead of building ./cmd/vigil-sensor (P1/P2/P3/P6/P8); a vigil binary is run as `vigil sensor`")
	fs.StringVar(&o.results, "results", "bench/results", "directory for the raw JSON results (relative to the repository root; empty: none)")
	fs.IntVar(&o.pairs, "pairs", 0, "side-by-side rounds per mode for P1/P2/P3/P8 (default 10, -quick 3)")
	fs.IntVar(&o.count, "count", 0, "repetitions (go test -count) of the P4 and P7 benchmarks (default 5, -quick 3)")
	fs.StringVar(&o.benchtime, "benchtime", "", "go test -benchtime of the P4 and P7 benchmarks (default: go test's 1s)")
	fs.IntVar(&o.containers, "containers", 0, "P5: containers per repetition (default 50)")
	fs.IntVar(&o.p5reps, "p5-count", 0, "P5: repetitions (default 3, -quick 1)")
	fs.IntVar(&o.overflows, "overflows", 0, "P3: forced-overflow storms (default 5, -quick 3)")
	fs.DurationVar(&o.overflowD, "overflow-storm", time.Second, "P3: duration of each forced-overflow storm")
	fs.IntVar(&o.live, "live", 10_000, "P6: live processes")
	fs.Uint64Var(&o.shortLived, "short-lived", 0, "P6: short-lived processes (default 1,000,000, -quick 100,000)")
	fs.IntVar(&o.checkpts, "checkpoints", 10, "P6: RSS checkpoints over the short-lived processes")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() != 0 {
		return o, fmt.Errorf("unexpected arguments %v: the suite takes only flags (see -h)", fs.Args())
	}
	for _, it := range strings.Split(only, ",") {
		it = strings.ToUpper(strings.TrimSpace(it))
		if it == "" {
			continue
		}
		if !slices.Contains(items, it) {
			return o, fmt.Errorf("-only %q: %s is not an item; use some of %s", only, it, strings.Join(items, ","))
		}
		o.only = append(o.only, it)
	}
	pick := func(v *int, full, quick int) {
		if *v == 0 {
			*v = full
			if o.quick {
				*v = quick
			}
		}
	}
	pick(&o.count, 5, 3)
	pick(&o.containers, 50, 50)
	pick(&o.p5reps, 3, 1)
	pick(&o.overflows, 5, 3)
	if o.shortLived == 0 {
		o.shortLived = 1_000_000
		if o.quick {
			o.shortLived = 100_000
		}
	}
	for name, v := range map[string]int{"-count": o.count, "-containers": o.containers, "-p5-count": o.p5reps,
		"-overflows": o.overflows, "-live": o.live, "-checkpoints": o.checkpts} {
		if v < 1 {
			return o, fmt.Errorf("%s %d: must be at least 1", name, v)
		}
	}
	return o, nil
}

func (o options) runs(item string) bool { return len(o.only) == 0 || slices.Contains(o.only, item) }

// report is what the suite saves as JSON.
type report struct {
	Date     string            `json:"date"`
	Kernel   string            `json:"kernel"`
	CPUs     int               `json:"cpus"`
	Options  map[string]any    `json:"options"`
	Rows     []suite.Row       `json:"rows"`
	Errors   map[string]string `json:"errors,omitempty"`
	Duration float64           `json:"duration_seconds"`
	Raw      map[string]any    `json:"raw"`
	// LoadBefore and LoadAfter are /proc/loadavg's 1-minute load: what
	// else the machine was doing, to read the noise by.
	LoadBefore string `json:"loadavg_before"`
	LoadAfter  string `json:"loadavg_after"`
	failures   []error
}

func run(ctx context.Context, log *slog.Logger, args []string, stdout io.Writer) (*report, error) {
	o, err := parseOptions(args, os.Stderr)
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("must run as root: the sensor loads eBPF programs and P5 runs runc containers (sudo go run ./bench/cmd/suite)")
	}
	began := time.Now()
	root, err := sidebyside.ModuleRoot(ctx)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "vigil-suite-")
	if err != nil {
		return nil, fmt.Errorf("creating a work directory: %w", err)
	}
	defer os.RemoveAll(work)
	storm := filepath.Join(work, "storm")
	if err := sidebyside.GoBuild(ctx, root, storm, "./bench/storm"); err != nil {
		return nil, err
	}
	vigil := o.vigil
	if vigil == "" && o.runs("P5") {
		vigil = filepath.Join(work, "vigil")
		log.Info("building vigil", "out", vigil)
		if err := sidebyside.GoBuild(ctx, root, vigil, "./cmd/vigil"); err != nil {
			return nil, err
		}
	}
	// The sensor as deployed: the lean vigil-sensor binary, static.
	sensorBin := o.sensor
	if sensorBin == "" {
		sensorBin = filepath.Join(work, "vigil-sensor")
		log.Info("building vigil-sensor", "out", sensorBin)
		if err := sidebyside.GoBuildAsDeployed(ctx, root, sensorBin, "./cmd/vigil-sensor"); err != nil {
			return nil, err
		}
	}

	rep := &report{
		LoadBefore: loadAvg(),
		Date:       time.Now().UTC().Format(time.RFC3339), Kernel: sidebyside.KernelRelease(), CPUs: sidebyside.NumCPU(),
		Options: map[string]any{"quick": o.quick, "only": o.only, "pairs": o.pairs, "count": o.count, "benchtime": o.benchtime,
			"containers": o.containers, "p5_count": o.p5reps, "overflows": o.overflows, "overflow_storm": o.overflowD.String(),
			"live": o.live, "short_lived": o.shortLived, "checkpoints": o.checkpts, "sensor_binary": filepath.Base(sensorBin)},
		Errors: map[string]string{}, Raw: map[string]any{},
	}
	fail := func(item string, err error) {
		log.Error("item failed", "item", item, "err", err)
		rep.Errors[item] = err.Error()
		rep.failures = append(rep.failures, fmt.Errorf("%s: %w", item, err))
	}
	step := func(item string) { log.Info("running", "item", item, "elapsed", time.Since(began).Round(time.Second)) }

	if o.runs("P1") || o.runs("P2") || o.runs("P3") || o.runs("P8") {
		step("P1/P2/P3/P8 side by side")
		res, err := sidebyside.Run(ctx, log, sidebyside.Options{Quick: o.quick, Pairs: o.pairs, Vigil: sensorBin}, nil)
		if err != nil {
			fail("P1/P2/P3/P8", err)
		}
		rep.Raw["sidebyside"] = res
		rep.Rows = append(rep.Rows, sideBySideRows(res, err, o)...)
	}
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}
	if o.runs("P3") {
		step("P3 forced overflow")
		storms, err := suite.Overflow(ctx, log, sensorBin, storm, work, o.overflowD, o.overflows)
		rep.Raw["overflow"] = storms
		if err != nil {
			fail("P3", err)
			rep.Rows = append(rep.Rows, suite.FailedRow("P3", "forced overflow (4 KiB ring): drops counted exactly", suite.Goal{Text: "counted exactly", Judged: true}, err))
		} else {
			rep.Rows = append(rep.Rows, suite.OverflowRow(storms))
		}
	}
	if o.runs("P4") {
		step("P4 rule engine")
		args := []string{"-run", "^$", "-bench", "CatalogOnRecorded", "-benchmem", "-cpu", "1", "-count", fmt.Sprint(o.count)}
		if o.benchtime != "" {
			args = append(args, "-benchtime", o.benchtime)
		}
		rs, _, err := suite.RunGoBench(ctx, root, nil, append(args, "./rules")...)
		rep.Raw["P4"] = rs
		if err != nil {
			fail("P4", err)
		}
		rep.Rows = append(rep.Rows, ruleRows(rs, err)...)
	}
	if o.runs("P5") {
		step("P5 exec in a container to alert at the hub")
		args := []string{"-run", "^$", "-bench", "ExecInAContainer", "-benchtime", fmt.Sprintf("%dx", o.containers),
			"-count", fmt.Sprint(o.p5reps), "-timeout", "30m", "./bench/latency"}
		rs, _, err := suite.RunGoBench(ctx, root, []string{"VIGIL_BENCH_VIGIL=" + vigil}, args...)
		rep.Raw["P5"] = rs
		if err != nil {
			fail("P5", err)
		}
		rep.Rows = append(rep.Rows, latencyRows(rs, err, o.containers)...)
	}
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}
	if o.runs("P6") {
		step("P6 sensor memory")
		label := suite.Thousands(o.shortLived)
		if o.shortLived < 1_000_000 {
			label += " (not the issue's 1,000,000: -quick or -short-lived)"
		}
		r, err := suite.RSS(ctx, log, sensorBin, storm, work, o.live, o.shortLived, o.checkpts)
		rep.Raw["P6"] = r
		if err != nil {
			fail("P6", err)
			rep.Rows = append(rep.Rows, suite.FailedRow("P6", fmt.Sprintf("sensor RSS with %d live and %s short-lived processes", o.live, label), suite.AtMost("≤ 48 MiB", 48*1024), err))
		} else {
			rep.Rows = append(rep.Rows, suite.RSSRows(r, label)...)
		}
	}
	if o.runs("P7") {
		step("P7 hub")
		args := []string{"-run", "^$", "-bench", "Ingest|Heartbeat", "-count", fmt.Sprint(o.count), "-timeout", "30m"}
		if o.benchtime != "" {
			args = append(args, "-benchtime", o.benchtime)
		}
		rs, _, err := suite.RunGoBench(ctx, root, nil, append(args, "./internal/hub", "./internal/store/sqlite", "./internal/store/postgres")...)
		rep.Raw["P7"] = rs
		if err != nil {
			fail("P7", err)
		}
		rep.Rows = append(rep.Rows, hubRows(rs, err)...)
	}
	slices.SortStableFunc(rep.Rows, func(a, b suite.Row) int { return slices.Index(items, a.Item) - slices.Index(items, b.Item) })
	rep.Duration = time.Since(began).Seconds()
	rep.LoadAfter = loadAvg()

	if err := writeReport(stdout, rep, o); err != nil {
		return rep, fmt.Errorf("printing the table: %w", err)
	}
	if o.results != "" {
		dir := o.results
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(root, dir)
		}
		path, err := save(dir, rep)
		if err != nil {
			return rep, err
		}
		log.Info("raw results saved", "path", path)
	}
	if len(rep.failures) > 0 {
		return rep, fmt.Errorf("%d item(s) could not be measured (their rows say FAILED): %w", len(rep.failures), errors.Join(rep.failures...))
	}
	return rep, nil
}

func writeReport(w io.Writer, rep *report, o options) error {
	mode := "full run"
	if o.quick {
		mode = "-quick run"
	}
	if _, err := fmt.Fprintf(w, "vigil performance suite (issue 8): %s, kernel %s, %d CPUs, %s, %.0f s; load average %s at the start, %s at the end\n\n",
		rep.Date, rep.Kernel, rep.CPUs, mode, rep.Duration, rep.LoadBefore, rep.LoadAfter); err != nil {
		return err
	}
	if err := suite.WriteTable(w, rep.Rows); err != nil {
		return err
	}
	_, err := fmt.Fprint(w, `
Ratios are rate with the sensor ÷ rate without it in the same round (rounds alternate); met? judges the median.
The sensor is vigil-sensor, the binary the DaemonSet runs, started as vigil up runs the sensor (no --events-out,
4 MiB ring, full default catalog) unless a row says otherwise;
the other side-by-side configurations are in the raw JSON (and in go run ./bench/cmd/sidebyside).
`)
	return err
}

func save(dir string, rep *report) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating the results directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, "suite-"+time.Now().UTC().Format("20060102T150405Z")+".json")
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encoding the results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("saving the results to %s: %w", path, err)
	}
	return path, nil
}

// loadAvg is the 1-minute load average, or "?" when unreadable.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

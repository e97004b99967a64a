// Command sidebyside measures the overhead of `vigil sensor` side by side:
// it alternates rounds of the bench/storm workloads without the sensor and
// with it (in two configurations), in one run, and prints per-benchmark
// rate ratios as median [min–max] together with the sensor's drops, CPU and
// memory. It must run as root, from the vigil repository:
//
//	go run ./bench/cmd/sidebyside          # full run, about 4 minutes
//	go run ./bench/cmd/sidebyside -quick   # smoke run, about 1 minute
//
// See docs/benchmarks.md for what each number means.
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
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type options struct {
	quick      bool
	pairs      int
	execDur    time.Duration
	connectDur time.Duration
	syscallDur time.Duration
	gap        time.Duration
	vigil      string
	results    string
	ringSize   string
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, log, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		log.Error("benchmark failed", "err", err)
		os.Exit(1)
	}
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("sidebyside", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.quick, "quick", false, "smoke run: 3 rounds per mode and shorter storms (about 1 minute)")
	fs.IntVar(&o.pairs, "pairs", 0, "rounds per mode; each round runs without the sensor and with each configuration (default 10, -quick 3)")
	fs.DurationVar(&o.execDur, "exec", 0, "exec storm duration per round (default 2s, -quick 1s)")
	fs.DurationVar(&o.connectDur, "connect", 0, "connect storm duration per round (default 1s, -quick 0.5s)")
	fs.DurationVar(&o.syscallDur, "syscall", 0, "getppid and read storm durations per round (default 0.5s, -quick 0.3s)")
	fs.DurationVar(&o.gap, "gap", 300*time.Millisecond, "pause between storms, so the sensor drains before the next one")
	fs.StringVar(&o.vigil, "vigil", "", "use this vigil binary instead of building ./cmd/vigil")
	fs.StringVar(&o.results, "results", "bench/results", "directory for the raw JSON results (relative to the repository root; empty: none)")
	fs.StringVar(&o.ringSize, "ring-size", "4MiB", "the sensor's --ring-size")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() != 0 {
		return o, fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	def := func(d *time.Duration, full, quick time.Duration) {
		if *d == 0 {
			*d = full
			if o.quick {
				*d = quick
			}
		}
	}
	// Many short rounds beat few long ones on a shared machine: each ratio
	// pairs storms seconds apart, and the median of many pairs shrugs off
	// the rounds another job disturbed.
	def(&o.execDur, 2*time.Second, time.Second)
	def(&o.connectDur, time.Second, 500*time.Millisecond)
	def(&o.syscallDur, 500*time.Millisecond, 300*time.Millisecond)
	if o.pairs == 0 {
		o.pairs = 10
		if o.quick {
			o.pairs = 3
		}
	}
	if o.pairs < 1 || o.pairs > 50 {
		return o, fmt.Errorf("-pairs %d: must be between 1 and 50", o.pairs)
	}
	return o, nil
}

// sensorConfig is one way of running the sensor that gets compared with
// no sensor at all.
type sensorConfig struct {
	Name  string   `json:"name"`
	Label string   `json:"label"`
	Args  []string `json:"args"`
	// NoEvents runs the sensor without --events-out: the whole pipeline
	// (decode, process tree, container attribution, metrics) without the
	// JSON debugging stream, which is what the rule engine will sit on.
	NoEvents bool `json:"noEvents"`
}

func sensorConfigs() []sensorConfig {
	return []sensorConfig{
		{Name: "default", Label: "default (events to a JSONL file)"},
		{Name: "nofile", Label: "--file-events=false", Args: []string{"--file-events=false"}},
		{Name: "noout", Label: "no --events-out", NoEvents: true},
	}
}

// modeOff is the mode of rounds without the sensor.
const modeOff = "off"

// sample is one storm in one round.
type sample struct {
	Round    int         `json:"round"`
	Mode     string      `json:"mode"` // "off" or a sensorConfig name
	Workload string      `json:"workload"`
	Storm    stormResult `json:"storm"`
	// With the sensor only: deltas over the storm (after the sensor drained).
	Sensor *sensorDelta `json:"sensor,omitempty"`
}

type sensorDelta struct {
	CPUPercent    float64 `json:"cpu_percent_of_one_core"`
	Drops         float64 `json:"drops"`
	KernelRecords float64 `json:"kernel_records"`
	Delivered     float64 `json:"delivered"`
	ExecEvents    float64 `json:"exec_events"`
}

type roundMemory struct {
	Round  int    `json:"round"`
	Mode   string `json:"mode"`
	Memory memory `json:"memory"`
	Table  int    `json:"process_table_size"`
	Drops  int    `json:"drops_total"` // over the sensor's whole life
}

type results struct {
	Date     string         `json:"date"`
	Kernel   string         `json:"kernel"`
	CPUs     int            `json:"cpus"`
	Options  map[string]any `json:"options"`
	Configs  []sensorConfig `json:"configs"`
	Samples  []sample       `json:"samples"`
	Memory   []roundMemory  `json:"memory"`
	Duration float64        `json:"duration_seconds"`
}

func run(ctx context.Context, log *slog.Logger, args []string, stdout io.Writer) error {
	o, err := parseOptions(args, os.Stderr)
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("must run as root: the sensor loads eBPF programs (sudo go run ./bench/cmd/sidebyside)")
	}
	began := time.Now()
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "vigil-bench-")
	if err != nil {
		return fmt.Errorf("creating a work directory: %w", err)
	}
	defer os.RemoveAll(work)

	storm := filepath.Join(work, "storm")
	if err := goBuild(ctx, root, storm, "./bench/storm"); err != nil {
		return err
	}
	vigil := o.vigil
	if vigil == "" {
		vigil = filepath.Join(work, "vigil")
		if err := goBuild(ctx, root, vigil, "./cmd/vigil"); err != nil {
			return err
		}
	}

	durations := map[string]time.Duration{
		"exec": o.execDur, "connect": o.connectDur, "getppid": o.syscallDur, "read": o.syscallDur,
	}
	workloads := []string{"exec", "connect", "getppid", "read"}
	configs := sensorConfigs()
	res := &results{
		Date:    time.Now().UTC().Format(time.DateOnly),
		Kernel:  kernelRelease(),
		CPUs:    numCPU(),
		Configs: configs,
		Options: map[string]any{
			"quick": o.quick, "pairs": o.pairs, "exec": o.execDur.String(), "connect": o.connectDur.String(),
			"syscall": o.syscallDur.String(), "ring_size": o.ringSize,
		},
	}
	modes := []string{modeOff}
	for _, c := range configs {
		modes = append(modes, c.Name)
	}
	log.Info("side-by-side run", "rounds", o.pairs, "modes", modes, "exec", o.execDur, "connect", o.connectDur, "syscall", o.syscallDur)

	for round := 0; round < o.pairs; round++ {
		// Alternate the order (off, A, B / B, A, off, ...) so a slow drift
		// of the machine does not favour one mode.
		order := append([]string(nil), modes...)
		if round%2 == 1 {
			for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
				order[i], order[j] = order[j], order[i]
			}
		}
		for _, mode := range order {
			log.Info("round", "n", round+1, "of", o.pairs, "mode", mode)
			var cfg *sensorConfig
			for i := range configs {
				if configs[i].Name == mode {
					cfg = &configs[i]
				}
			}
			if err := runRound(ctx, log, o, res, round, mode, cfg, vigil, storm, work, workloads, durations); err != nil {
				return fmt.Errorf("round %d (%s): %w", round+1, mode, err)
			}
		}
	}
	res.Duration = time.Since(began).Seconds()

	rep := buildReport(res, workloads)
	if err := rep.write(stdout); err != nil {
		return fmt.Errorf("printing the table: %w", err)
	}
	if o.results != "" {
		dir := o.results
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(root, dir)
		}
		path, err := saveResults(dir, res)
		if err != nil {
			return err
		}
		log.Info("raw results saved", "path", path)
	}
	return nil
}

// runRound runs every workload once, with the sensor in configuration cfg
// or, when cfg is nil, without it.
func runRound(ctx context.Context, log *slog.Logger, o options, res *results, round int, mode string,
	cfg *sensorConfig, vigil, storm, work string, workloads []string, durations map[string]time.Duration) (err error) {
	var s *sensorProc
	if cfg != nil {
		s, err = startSensor(ctx, log, vigil, work, o.ringSize, !cfg.NoEvents, cfg.Args)
		if err != nil {
			return err
		}
		defer func() {
			if serr := s.stop(); serr != nil {
				err = errors.Join(err, serr)
			}
		}()
	}
	for _, w := range workloads {
		if err := sleep(ctx, o.gap); err != nil {
			return err
		}
		smp := sample{Round: round, Mode: mode, Workload: w}
		var before sensorState
		if s != nil {
			if before, err = s.state(ctx); err != nil {
				return err
			}
		}
		r, err := runStorm(ctx, storm, w, durations[w])
		if err != nil {
			return err
		}
		smp.Storm = r
		if s != nil {
			after, err := s.drained(ctx)
			if err != nil {
				return err
			}
			smp.Sensor = before.delta(after, r.Wall)
		}
		log.Info("storm", "workload", w, "mode", mode, "rate", fmt.Sprintf("%.0f/s", r.Rate), "sensor", smp.Sensor)
		res.Samples = append(res.Samples, smp)
	}
	if s != nil {
		m, err := processMemory(s.pid)
		if err != nil {
			return err
		}
		st, err := s.state(ctx)
		if err != nil {
			return err
		}
		res.Memory = append(res.Memory, roundMemory{
			Round: round, Mode: mode, Memory: m,
			Table: int(st.metrics[mTable]), Drops: int(st.metrics[mDrops]),
		})
	}
	return nil
}

// stormResult is what bench/storm prints, plus the wall time the runner saw.
type stormResult struct {
	Workload string        `json:"workload"`
	Workers  int           `json:"workers"`
	Ops      uint64        `json:"ops"`
	Seconds  float64       `json:"seconds"`
	Rate     float64       `json:"rate_per_sec"`
	CPU      float64       `json:"cpu_seconds"`
	Accepted uint64        `json:"accepted,omitempty"`
	Capped   bool          `json:"capped"`
	Wall     time.Duration `json:"wall_ns"`
}

func runStorm(ctx context.Context, storm, workload string, d time.Duration) (stormResult, error) {
	var r stormResult
	cmd := exec.CommandContext(ctx, storm, workload, "-duration", d.String())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	r.Wall = time.Since(start)
	if err != nil {
		return r, fmt.Errorf("storm %s: %w: %s", workload, err, strings.TrimSpace(stderr.String()))
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return r, fmt.Errorf("storm %s printed %q, not its JSON result: %w", workload, out, err)
	}
	if r.Ops == 0 || r.Capped || r.CPU <= 0 {
		return r, fmt.Errorf("storm %s did %d ops in %.3f CPU-s (capped %v): not a usable measurement", workload, r.Ops, r.CPU, r.Capped)
	}
	if workload == "connect" && r.Accepted != r.Ops {
		return r, fmt.Errorf("storm connect: %d connects but %d accepts", r.Ops, r.Accepted)
	}
	return r, nil
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("finding the vigil repository with `go env GOMOD` (is go on PATH?): %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the vigil repository: run from its root (go run ./bench/cmd/sidebyside)")
	}
	return filepath.Dir(gomod), nil
}

func goBuild(ctx context.Context, root, out, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = root
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

func saveResults(dir string, res *results) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating the results directory: %w", err)
	}
	path := filepath.Join(dir, "sidebyside-"+time.Now().UTC().Format("20060102T150405Z")+".json")
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encoding the results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("saving the results: %w", err)
	}
	return path, nil
}

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

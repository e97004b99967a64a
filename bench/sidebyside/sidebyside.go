// Package sidebyside measures the overhead of `vigil sensor` side by side:
// it alternates rounds of the bench/storm workloads without the sensor and
// with it (in four configurations), in one run, and prints per-benchmark
// rate ratios as median [min–max] together with the sensor's drops, CPU and
// memory. It must run as root, from the vigil repository:
//
//	go run ./bench/cmd/sidebyside          # full run, about 4 minutes
//	go run ./bench/cmd/sidebyside -quick   # smoke run, about 1 minute
//
// See docs/benchmarks.md for what each number means.
package sidebyside

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
	"path/filepath"
	"strings"
	"time"
)

// Options configure a side-by-side run. A zero duration or Pairs means its
// default (full, or shorter with Quick).
type Options struct {
	Quick      bool
	Pairs      int           // rounds per mode
	ExecDur    time.Duration // exec storm per round
	ConnectDur time.Duration // connect storm per round
	SyscallDur time.Duration // getppid and read storms per round
	Gap        time.Duration // pause between storms
	Vigil      string        // an existing sensor binary (vigil-sensor, or vigil: run as `vigil sensor`); empty: build ./cmd/vigil-sensor
	Results    string        // directory for the raw JSON (relative to the repository root; empty: none)
	RingSize   string        // the sensor's --ring-size
}

// ParseOptions reads the sidebyside command line.
func ParseOptions(args []string, stderr io.Writer) (Options, error) {
	var o Options
	fs := flag.NewFlagSet("sidebyside", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.Quick, "quick", false, "smoke run: 3 rounds per mode and shorter storms (about 1 minute)")
	fs.IntVar(&o.Pairs, "pairs", 0, "rounds per mode; each round runs without the sensor and with each configuration (default 10, -quick 3)")
	fs.DurationVar(&o.ExecDur, "exec", 0, "exec storm duration per round (default 2s, -quick 1s)")
	fs.DurationVar(&o.ConnectDur, "connect", 0, "connect storm duration per round (default 1s, -quick 0.5s)")
	fs.DurationVar(&o.SyscallDur, "syscall", 0, "getppid and read storm durations per round (default 0.5s, -quick 0.3s)")
	fs.DurationVar(&o.Gap, "gap", 300*time.Millisecond, "pause between storms, so the sensor drains before the next one")
	fs.StringVar(&o.Vigil, "vigil", "", "use this vigil binary instead of building ./cmd/vigil")
	fs.StringVar(&o.Results, "results", "bench/results", "directory for the raw JSON results (relative to the repository root; empty: none)")
	fs.StringVar(&o.RingSize, "ring-size", "4MiB", "the sensor's --ring-size")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() != 0 {
		return o, fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	return o.withDefaults()
}

// withDefaults fills in the zero fields and checks the rest.
func (o Options) withDefaults() (Options, error) {
	def := func(d *time.Duration, full, quick time.Duration) {
		if *d == 0 {
			*d = full
			if o.Quick {
				*d = quick
			}
		}
	}
	// Many short rounds beat few long ones on a shared machine: each ratio
	// pairs storms seconds apart, and the median of many pairs shrugs off
	// the rounds another job disturbed.
	def(&o.ExecDur, 2*time.Second, time.Second)
	def(&o.ConnectDur, time.Second, 500*time.Millisecond)
	def(&o.SyscallDur, 500*time.Millisecond, 300*time.Millisecond)
	if o.Gap == 0 {
		o.Gap = 300 * time.Millisecond
	}
	if o.RingSize == "" {
		o.RingSize = "4MiB"
	}
	if o.Pairs == 0 {
		o.Pairs = 10
		if o.Quick {
			o.Pairs = 3
		}
	}
	if o.Pairs < 1 || o.Pairs > 50 {
		return o, fmt.Errorf("-pairs %d: must be between 1 and 50", o.Pairs)
	}
	return o, nil
}

// SensorConfig is one way of running the sensor that gets compared with
// no sensor at all.
type SensorConfig struct {
	Name  string   `json:"name"`
	Label string   `json:"label"`
	Args  []string `json:"args"`
	// NoEvents runs the sensor without --events-out: the whole pipeline
	// (decode, process tree, container attribution, metrics) without the
	// JSON debugging stream, which is what the rule engine will sit on.
	NoEvents bool `json:"noEvents"`
}

func SensorConfigs() []SensorConfig {
	return []SensorConfig{
		{Name: "default", Label: "default (events to a JSONL file)"},
		{Name: "nofile", Label: "--file-events=false", Args: []string{"--file-events=false"}},
		{Name: "noout", Label: "no --events-out", NoEvents: true},
		// Every connection crosses to user space (no repeat folding): the
		// cost of the whole per-event path on the connect storm.
		{Name: "everyconn", Label: "no --events-out, --network-repeat-window=0", Args: []string{"--network-repeat-window=0"}, NoEvents: true},
	}
}

// modeOff is the mode of rounds without the sensor.
const modeOff = "off"

// Sample is one storm in one round.
type Sample struct {
	Round    int         `json:"round"`
	Mode     string      `json:"mode"` // "off" or a SensorConfig name
	Workload string      `json:"workload"`
	Storm    StormResult `json:"storm"`
	// With the sensor only: deltas over the storm (after the sensor drained).
	Sensor *SensorDelta `json:"sensor,omitempty"`
}

type SensorDelta struct {
	CPUPercent    float64 `json:"cpu_percent_of_one_core"`
	Drops         float64 `json:"drops"`
	KernelRecords float64 `json:"kernel_records"`
	Delivered     float64 `json:"delivered"`
	ExecEvents    float64 `json:"exec_events"`
}

type RoundMemory struct {
	Round  int    `json:"round"`
	Mode   string `json:"mode"`
	Memory Memory `json:"memory"`
	Table  int    `json:"process_table_size"`
	Drops  int    `json:"drops_total"` // over the sensor's whole life
}

type Results struct {
	Date     string         `json:"date"`
	Kernel   string         `json:"kernel"`
	CPUs     int            `json:"cpus"`
	Options  map[string]any `json:"options"`
	Configs  []SensorConfig `json:"configs"`
	Samples  []Sample       `json:"samples"`
	Memory   []RoundMemory  `json:"memory"`
	Duration float64        `json:"duration_seconds"`
}

// Run builds what it needs, runs the rounds, prints the table to stdout
// (unless nil), saves the raw results under o.Results and returns them. It
// must run as root, inside the vigil repository.
func Run(ctx context.Context, log *slog.Logger, o Options, stdout io.Writer) (*Results, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("must run as root: the sensor loads eBPF programs (sudo go run ./bench/cmd/sidebyside)")
	}
	began := time.Now()
	root, err := ModuleRoot(ctx)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "vigil-bench-")
	if err != nil {
		return nil, fmt.Errorf("creating a work directory: %w", err)
	}
	defer os.RemoveAll(work)

	storm := filepath.Join(work, "storm")
	if err := GoBuild(ctx, root, storm, "./bench/storm"); err != nil {
		return nil, err
	}
	vigil := o.Vigil
	if vigil == "" {
		// The binary the sensor DaemonSet runs.
		vigil = filepath.Join(work, "vigil-sensor")
		if err := GoBuildAsDeployed(ctx, root, vigil, "./cmd/vigil-sensor"); err != nil {
			return nil, err
		}
	}

	durations := map[string]time.Duration{
		"exec": o.ExecDur, "connect": o.ConnectDur, "getppid": o.SyscallDur, "read": o.SyscallDur,
	}
	workloads := []string{"exec", "connect", "getppid", "read"}
	configs := SensorConfigs()
	res := &Results{
		Date:    time.Now().UTC().Format(time.DateOnly),
		Kernel:  KernelRelease(),
		CPUs:    NumCPU(),
		Configs: configs,
		Options: map[string]any{
			"quick": o.Quick, "pairs": o.Pairs, "exec": o.ExecDur.String(), "connect": o.ConnectDur.String(),
			"syscall": o.SyscallDur.String(), "ring_size": o.RingSize,
		},
	}
	modes := []string{modeOff}
	for _, c := range configs {
		modes = append(modes, c.Name)
	}
	log.Info("side-by-side run", "rounds", o.Pairs, "modes", modes, "exec", o.ExecDur, "connect", o.ConnectDur, "syscall", o.SyscallDur)

	for round := 0; round < o.Pairs; round++ {
		// Alternate the order (off, A, B / B, A, off, ...) so a slow drift
		// of the machine does not favour one mode.
		order := append([]string(nil), modes...)
		if round%2 == 1 {
			for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
				order[i], order[j] = order[j], order[i]
			}
		}
		for _, mode := range order {
			log.Info("round", "n", round+1, "of", o.Pairs, "mode", mode)
			var cfg *SensorConfig
			for i := range configs {
				if configs[i].Name == mode {
					cfg = &configs[i]
				}
			}
			if err := runRound(ctx, log, o, res, round, mode, cfg, vigil, storm, work, workloads, durations); err != nil {
				return nil, fmt.Errorf("round %d (%s): %w", round+1, mode, err)
			}
		}
	}
	res.Duration = time.Since(began).Seconds()

	if stdout != nil {
		if err := buildReport(res, workloads).write(stdout); err != nil {
			return nil, fmt.Errorf("printing the table: %w", err)
		}
	}
	if o.Results != "" {
		dir := o.Results
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(root, dir)
		}
		path, err := SaveResults(dir, res)
		if err != nil {
			return nil, err
		}
		log.Info("raw results saved", "path", path)
	}
	return res, nil
}

// runRound runs every workload once, with the sensor in configuration cfg
// or, when cfg is nil, without it.
func runRound(ctx context.Context, log *slog.Logger, o Options, res *Results, round int, mode string,
	cfg *SensorConfig, vigil, storm, work string, workloads []string, durations map[string]time.Duration) (err error) {
	var s *Sensor
	if cfg != nil {
		s, err = StartSensor(ctx, log, vigil, work, o.RingSize, !cfg.NoEvents, cfg.Args)
		if err != nil {
			return err
		}
		defer func() {
			if serr := s.Stop(); serr != nil {
				err = errors.Join(err, serr)
			}
		}()
	}
	for _, w := range workloads {
		if err := sleep(ctx, o.Gap); err != nil {
			return err
		}
		smp := Sample{Round: round, Mode: mode, Workload: w}
		var before SensorState
		if s != nil {
			if before, err = s.State(ctx); err != nil {
				return err
			}
		}
		r, err := RunStorm(ctx, storm, w, durations[w])
		if err != nil {
			return err
		}
		smp.Storm = r
		if s != nil {
			after, err := s.Drained(ctx)
			if err != nil {
				return err
			}
			smp.Sensor = before.Delta(after, r.Wall)
		}
		log.Info("storm", "workload", w, "mode", mode, "rate", fmt.Sprintf("%.0f/s", r.Rate), "sensor", smp.Sensor)
		res.Samples = append(res.Samples, smp)
	}
	if s != nil {
		m, err := ProcessMemory(s.PID)
		if err != nil {
			return err
		}
		st, err := s.State(ctx)
		if err != nil {
			return err
		}
		res.Memory = append(res.Memory, RoundMemory{
			Round: round, Mode: mode, Memory: m,
			Table: int(st.Metrics[MetricProcessTable]), Drops: int(st.Metrics[MetricDrops]),
		})
	}
	return nil
}

// StormResult is what bench/storm prints, plus the wall time the runner saw.
type StormResult struct {
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

func RunStorm(ctx context.Context, storm, workload string, d time.Duration) (StormResult, error) {
	var r StormResult
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

func ModuleRoot(ctx context.Context) (string, error) {
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

func GoBuild(ctx context.Context, root, out, pkg string) error {
	return goBuild(ctx, root, out, pkg, false)
}

// GoBuildAsDeployed builds pkg the way the image's binaries are built
// (hack/k8s/cmd/cluster image.go): static (CGO_ENABLED=0) and -trimpath.
// A cgo build would link libc dynamically and measure its pages too.
func GoBuildAsDeployed(ctx context.Context, root, out, pkg string) error {
	return goBuild(ctx, root, out, pkg, true)
}

func goBuild(ctx context.Context, root, out, pkg string, static bool) error {
	args := []string{"build", "-o", out}
	if static {
		args = append(args, "-trimpath")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, pkg)...)
	cmd.Dir = root
	if static {
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	}
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

func SaveResults(dir string, res *Results) (string, error) {
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

func KernelRelease() string {
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

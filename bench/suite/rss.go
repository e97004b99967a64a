package suite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vigil-sec/vigil/bench/sidebyside"
)

// RSSCheckpoint is the sensor's memory after some of the short-lived
// processes.
type RSSCheckpoint struct {
	ShortLived uint64  `json:"short_lived_processes"` // exec'd and exited so far
	RSSKiB     uint64  `json:"vm_rss_kib"`
	PeakKiB    uint64  `json:"vm_hwm_kib"`
	AnonKiB    uint64  `json:"rss_anon_kib,omitempty"`
	FileKiB    uint64  `json:"rss_file_kib,omitempty"`
	Table      float64 `json:"process_table_size"`
}

// RSSResult is the sensor's memory with many live processes and along a
// storm of short-lived ones (the live ones still running).
type RSSResult struct {
	// Binary is the sensor binary measured (vigil-sensor, as deployed, or vigil).
	Binary        string                   `json:"binary"`
	Idle          sidebyside.Memory        `json:"memory_idle"` // before the live processes
	Live          int                      `json:"live_processes"`
	TableWithLive float64                  `json:"process_table_size_with_live"`
	WithLive      sidebyside.Memory        `json:"memory_with_live"`
	Checkpoints   []RSSCheckpoint          `json:"checkpoints"`
	Storm         []sidebyside.StormResult `json:"storms"`
}

const (
	sleeperPath = "/bin/sleep"
	// tableWait bounds how long the sensor may take to track the sleepers.
	tableWait = 60 * time.Second
	// memSettle lets the sensor's heap settle before reading its RSS.
	memSettle = 2 * time.Second
)

// RSS starts the sensor binary vigil (vigil-sensor, or `vigil sensor`; see
// sidebyside.SensorArgs) as `vigil up` runs it (no event stream, 4 MiB
// ring), reads its idle memory, starts live sleeping processes and waits until the sensor tracks
// them, reads its memory, then runs exec storms of shortLived processes in
// all, reading its memory at checkpoints evenly spread over them. Every
// process it starts is killed and reaped before it returns.
func RSS(ctx context.Context, log *slog.Logger, vigil, storm, work string, live int, shortLived uint64, checkpoints int) (res RSSResult, err error) {
	if checkpoints < 1 {
		checkpoints = 1
	}
	s, err := sidebyside.StartSensor(ctx, log, vigil, work, "4MiB", false, nil)
	if err != nil {
		return res, fmt.Errorf("starting the sensor: %w", err)
	}
	defer func() {
		if serr := s.Stop(); serr != nil {
			err = errors.Join(err, serr)
		}
	}()
	res.Binary = filepath.Base(vigil)
	base, err := s.Drained(ctx)
	if err != nil {
		return res, err
	}
	if err := sleepCtx(ctx, memSettle); err != nil {
		return res, err
	}
	if res.Idle, err = sidebyside.ProcessMemory(s.PID); err != nil {
		return res, err
	}
	log.Info("sensor memory idle", "binary", res.Binary, "rss_kib", res.Idle.RSSKiB, "anon_kib", res.Idle.AnonKiB, "file_kib", res.Idle.FileKiB)
	log.Info("starting live processes", "n", live, "table before", base.Metrics[sidebyside.MetricProcessTable])
	stopSleepers, err := startSleepers(live)
	defer func() {
		if serr := stopSleepers(); serr != nil {
			err = errors.Join(err, serr)
		}
	}()
	if err != nil {
		return res, err
	}
	res.Live = live
	want := base.Metrics[sidebyside.MetricProcessTable] + float64(live)
	deadline := time.Now().Add(tableWait)
	for {
		st, err := s.Drained(ctx)
		if err != nil {
			return res, err
		}
		res.TableWithLive = st.Metrics[sidebyside.MetricProcessTable]
		if res.TableWithLive >= want {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("the sensor tracks %.0f processes %v after %d were started (want ≥ %.0f): it lost track of live processes",
				res.TableWithLive, tableWait, live, want)
		}
		if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
			return res, err
		}
	}
	if err := sleepCtx(ctx, memSettle); err != nil {
		return res, err
	}
	if res.WithLive, err = sidebyside.ProcessMemory(s.PID); err != nil {
		return res, err
	}
	log.Info("sensor memory with live processes", "live", live, "table", res.TableWithLive, "rss_kib", res.WithLive.RSSKiB,
		"anon_kib", res.WithLive.AnonKiB, "file_kib", res.WithLive.FileKiB)

	per := shortLived / uint64(checkpoints)
	var done uint64
	for i := 0; i < checkpoints; i++ {
		n := per
		if i == checkpoints-1 {
			n = shortLived - done
		}
		r, err := stormOps(ctx, storm, n)
		if err != nil {
			return res, err
		}
		res.Storm = append(res.Storm, r)
		done += r.Ops
		st, err := s.Drained(ctx)
		if err != nil {
			return res, err
		}
		m, err := sidebyside.ProcessMemory(s.PID)
		if err != nil {
			return res, err
		}
		if table := st.Metrics[sidebyside.MetricProcessTable]; table < float64(live) {
			return res, fmt.Errorf("after %d short-lived processes the sensor tracks %.0f processes, fewer than the %d live ones: did they end?", done, table, live)
		}
		cp := RSSCheckpoint{ShortLived: done, RSSKiB: m.RSSKiB, PeakKiB: m.PeakKiB, AnonKiB: m.AnonKiB, FileKiB: m.FileKiB, Table: st.Metrics[sidebyside.MetricProcessTable]}
		log.Info("rss checkpoint", "short_lived", done, "rss_kib", cp.RSSKiB, "anon_kib", cp.AnonKiB, "file_kib", cp.FileKiB, "peak_kib", cp.PeakKiB, "table", cp.Table, "rate", fmt.Sprintf("%.0f/s", r.Rate))
		res.Checkpoints = append(res.Checkpoints, cp)
	}
	return res, nil
}

// stormOps runs `storm exec` until it did n execs (its operation cap).
func stormOps(ctx context.Context, storm string, n uint64) (sidebyside.StormResult, error) {
	var r sidebyside.StormResult
	cmd := exec.CommandContext(ctx, storm, "exec", "-duration", "10m", "-max-ops", fmt.Sprint(n))
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return r, fmt.Errorf("storm exec -max-ops %d: %w: %s", n, err, ee.Stderr)
		}
		return r, fmt.Errorf("storm exec -max-ops %d: %w", n, err)
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return r, fmt.Errorf("storm exec printed %q, not its JSON result: %w", out, err)
	}
	if r.Ops < n {
		return r, fmt.Errorf("storm exec did %d of %d execs in 10 minutes", r.Ops, n)
	}
	return r, nil
}

// startSleepers starts n `sleep 86400` processes (a full-size P6 runs
// longer than ten minutes: they must outlive it) and returns the function
// that kills and reaps them (also after a partial start).
func startSleepers(n int) (stop func() error, err error) {
	var cmds []*exec.Cmd
	stop = func() error {
		var errs []error
		for _, c := range cmds {
			if err := c.Process.Kill(); err != nil && !errors.Is(err, syscall.ESRCH) && err.Error() != "os: process already finished" {
				errs = append(errs, fmt.Errorf("killing sleeper %d: %w", c.Process.Pid, err))
			}
		}
		for _, c := range cmds {
			_ = c.Wait() // "signal: killed" is the expected outcome
		}
		cmds = nil
		return errors.Join(errs...)
	}
	for i := 0; i < n; i++ {
		c := exec.Command(sleeperPath, "86400")
		// If the suite dies, its sleepers die with it.
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			return stop, fmt.Errorf("starting live process %d of %d (%s): %w (check `ulimit -u` and /proc/sys/kernel/pid_max)", i+1, n, sleeperPath, err)
		}
		cmds = append(cmds, c)
	}
	return stop, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// RSSRows judges the memory goal (≤ 48 MiB) with the live processes and at
// every checkpoint, and flatness: growth over the second half of the storm
// at most 5 % of the RSS in the middle (bounded caches stop growing).
func RSSRows(r RSSResult, shortLivedLabel string) []Row {
	const goalKiB = 48 * 1024
	g := AtMost("≤ 48 MiB", goalKiB)
	mib := func(k uint64) string { return fmt.Sprintf("%.1f MiB", float64(k)/1024) }
	split := func(m sidebyside.Memory) string {
		if m.AnonKiB == 0 && m.FileKiB == 0 {
			return mib(m.RSSKiB)
		}
		return fmt.Sprintf("%s (anon %.1f, file %.1f)", mib(m.RSSKiB), float64(m.AnonKiB)/1024, float64(m.FileKiB)/1024)
	}
	bin := r.Binary
	if bin == "" {
		bin = "sensor"
	}
	var rows []Row
	if r.Idle.RSSKiB > 0 {
		rows = append(rows, Row{Item: "P6", What: bin + " RSS idle (as deployed: no event stream, 4 MiB ring, default catalog)",
			Goal: Info().Text, Measured: split(r.Idle), Met: MetInfo})
	}
	rows = append(rows, Row{Item: "P6", What: fmt.Sprintf("%s RSS with %s live processes tracked (process table %.0f)", bin, Thousands(uint64(r.Live)), r.TableWithLive),
		Goal: g.Text, Measured: split(r.WithLive), Met: g.Judge(float64(r.WithLive.RSSKiB))})
	if len(r.Checkpoints) == 0 {
		return append(rows, Row{Item: "P6", What: bin + " RSS after " + shortLivedLabel + " short-lived processes",
			Goal: g.Text, Measured: "not measured", Met: MetNo})
	}
	var maxRSS uint64
	var cps []string
	for _, c := range r.Checkpoints {
		maxRSS = max(maxRSS, c.RSSKiB)
		cps = append(cps, fmt.Sprintf("%dk: %.1f", c.ShortLived/1000, float64(c.RSSKiB)/1024))
	}
	last := r.Checkpoints[len(r.Checkpoints)-1]
	rows = append(rows, Row{Item: "P6", What: fmt.Sprintf("%s RSS after %s short-lived processes (the %s live ones still running), max over checkpoints",
		bin, shortLivedLabel, Thousands(uint64(r.Live))), Goal: g.Text,
		Measured: fmt.Sprintf("%s (last %s, peak VmHWM %s)", mib(maxRSS),
			split(sidebyside.Memory{RSSKiB: last.RSSKiB, AnonKiB: last.AnonKiB, FileKiB: last.FileKiB}), mib(last.PeakKiB)),
		Met: g.Judge(float64(maxRSS))})
	mid := r.Checkpoints[(len(r.Checkpoints)-1)/2]
	growth := 100 * (float64(last.RSSKiB) - float64(mid.RSSKiB)) / float64(mid.RSSKiB)
	rows = append(rows,
		Row{Item: "P6", What: fmt.Sprintf("RSS flat: growth from %s to %s short-lived processes (second half)", Thousands(mid.ShortLived), Thousands(last.ShortLived)),
			Goal: "≤ 5 %", Measured: fmt.Sprintf("%+.1f %%", growth), Met: AtMost("", 5).Judge(growth)},
		Row{Item: "P6", What: "RSS at the checkpoints (short-lived processes: MiB)", Goal: Info().Text,
			Measured: strings.Join(cps, ", "), Met: MetInfo})
	return rows
}

// Thousands prints n with a comma between groups of three digits.
func Thousands(n uint64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

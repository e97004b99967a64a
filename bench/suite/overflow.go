package suite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/vigil-sec/vigil/bench/sidebyside"
)

// OverflowStorm is one exec storm into a ring too small for it: what the
// sensor counted as dropped, and what the kernel produced minus what the
// sensor delivered, over the storm (after the sensor drained).
type OverflowStorm struct {
	Execs         uint64  `json:"execs"`
	KernelRecords float64 `json:"kernel_records"`
	Delivered     float64 `json:"delivered"`
	Drops         float64 `json:"drops"`
}

// Exact is true when every record the kernel produced was either delivered
// or counted as a drop.
func (s OverflowStorm) Exact() bool { return s.Drops == s.KernelRecords-s.Delivered }

// Overflow runs `vigil sensor --ring-size 4KiB` (no event stream, the
// pipeline as `vigil up` runs it) and storms exec d long, storms times, to
// force ring overflows, and reads the sensor's counters around each storm.
func Overflow(ctx context.Context, log *slog.Logger, vigil, storm, work string, d time.Duration, storms int) (_ []OverflowStorm, err error) {
	s, err := sidebyside.StartSensor(ctx, log, vigil, work, "4KiB", false, nil)
	if err != nil {
		return nil, fmt.Errorf("starting the sensor with a 4 KiB ring: %w", err)
	}
	defer func() {
		if serr := s.Stop(); serr != nil {
			err = errors.Join(err, serr)
		}
	}()
	var out []OverflowStorm
	for i := 0; i < storms; i++ {
		// Quiet readings at both ends: records of other processes still in
		// the ring, or produced between reading the kernel's counter and
		// the sensor's, would otherwise look like a difference.
		before, err := quiet(ctx, s)
		if err != nil {
			return out, err
		}
		r, err := sidebyside.RunStorm(ctx, storm, "exec", d)
		if err != nil {
			return out, err
		}
		after, err := quiet(ctx, s)
		if err != nil {
			return out, err
		}
		delta := func(k string) float64 { return after.Metrics[k] - before.Metrics[k] }
		o := OverflowStorm{Execs: r.Ops, KernelRecords: delta(sidebyside.MetricKernelRecords),
			Delivered: delta(sidebyside.MetricDelivered), Drops: delta(sidebyside.MetricDrops)}
		log.Info("overflow storm", "n", i+1, "execs", o.Execs, "kernel", o.KernelRecords, "delivered", o.Delivered, "drops", o.Drops)
		out = append(out, o)
	}
	return out, nil
}

// OverflowRow judges forced overflows: met when every storm dropped
// something (the overflow really happened) and every drop was counted.
func OverflowRow(storms []OverflowStorm) Row {
	r := Row{Item: "P3", What: "forced overflow (4 KiB ring, exec storm): drops counted = kernel records − delivered",
		Goal: "counted exactly"}
	if len(storms) == 0 {
		r.Measured, r.Met = "not measured", MetNo
		return r
	}
	exact, forced := 0, 0
	var drops, diff float64
	for _, s := range storms {
		if s.Exact() {
			exact++
		}
		if s.Drops > 0 {
			forced++
		}
		drops += s.Drops
		diff += s.KernelRecords - s.Delivered
	}
	r.Measured = fmt.Sprintf("%d/%d storms exact; drops %.0f, kernel−delivered %.0f; %d/%d storms overflowed",
		exact, len(storms), drops, diff, forced, len(storms))
	r.Met = MetNo
	if exact == len(storms) && forced == len(storms) {
		r.Met = MetYes
	}
	return r
}

const (
	quietPoll    = 50 * time.Millisecond
	quietTimeout = 10 * time.Second
)

// quiet waits until two readings in a row show the same kernel, delivered
// and drop counters (no process on the machine produced a record in
// between) and the sensor has read everything the kernel produced, and
// returns that reading. On a
// machine that never goes quiet it returns the last drained reading after
// quietTimeout; the row then shows whatever difference that leaves.
func quiet(ctx context.Context, s *sidebyside.Sensor) (sidebyside.SensorState, error) {
	prev, err := s.Drained(ctx)
	if err != nil {
		return prev, err
	}
	deadline := time.Now().Add(quietTimeout)
	same := func(a, b sidebyside.SensorState) bool {
		for _, k := range []string{sidebyside.MetricKernelRecords, sidebyside.MetricDelivered, sidebyside.MetricDrops} {
			if a.Metrics[k] != b.Metrics[k] {
				return false
			}
		}
		return true
	}
	// The BPF programs wake the reader only once enough bytes are pending
	// (or its read deadline passes), so a stable reading may still have
	// records in the ring: those count only once they are read.
	caughtUp := func(a sidebyside.SensorState) bool {
		m := a.Metrics
		return m[sidebyside.MetricDelivered]+m[sidebyside.MetricDrops] >= m[sidebyside.MetricKernelRecords]
	}
	for time.Now().Before(deadline) {
		if err := sleepCtx(ctx, quietPoll); err != nil {
			return prev, err
		}
		cur, err := s.State(ctx)
		if err != nil {
			return cur, err
		}
		if same(prev, cur) && caughtUp(cur) {
			return cur, nil
		}
		prev = cur
	}
	return prev, nil
}

package simulate

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vigil-sec/vigil/internal/store"
)

// AlertLister reads the alerts the hub holds whose last occurrence is at or
// after since (the hub's alert list, any cluster of the subscription).
type AlertLister func(ctx context.Context, since time.Time) ([]store.Alert, error)

// Options configure a simulation run.
type Options struct {
	// Wait bounds how long to wait, after the last step, for expected
	// alerts that have not arrived yet.
	Wait time.Duration
	// Poll is how often the hub is asked for new alerts (default 100ms);
	// latencies are measured to the hub's ingest time, so Poll only
	// matters for alerts whose ingest time the hub does not report.
	Poll time.Duration
	// Progress receives one line per step (nil: none).
	Progress io.Writer
}

// Result is one expected alert of one step.
type Result struct {
	Scenario    string `json:"scenario"`
	Step        string `json:"step"`
	RuleID      string `json:"ruleId"`
	DisplayName string `json:"displayName"`
	Seen        bool   `json:"seen"`
	// LatencyMs is from the start of the step to the alert being stored
	// at the hub (its ingest time), in milliseconds; absent when not seen.
	LatencyMs *float64 `json:"latencyMs,omitempty"`
	// EventToHubMs is from the triggering event (the alert's start time,
	// as the kernel saw it) to the alert being stored at the hub: the
	// detection and delivery pipeline alone, without the time the step's
	// own tool took to get there.
	EventToHubMs *float64 `json:"eventToHubMs,omitempty"`
	AlertID      string   `json:"alertId,omitempty"`
	// StepError is set when delivering the step's command failed.
	StepError string `json:"stepError,omitempty"`
}

// Report is the outcome of a run.
type Report struct {
	Results []Result `json:"results"`
	// Missing names the expected alerts that did not arrive.
	Missing []string `json:"missing,omitempty"`
	// P50Ms, P99Ms and MaxMs summarise the step-to-hub latencies of the
	// seen alerts; EventToHub* the event-to-hub ones.
	P50Ms           float64 `json:"p50Ms"`
	P99Ms           float64 `json:"p99Ms"`
	MaxMs           float64 `json:"maxMs"`
	EventToHubP50Ms float64 `json:"eventToHubP50Ms"`
	EventToHubP99Ms float64 `json:"eventToHubP99Ms"`
	EventToHubMaxMs float64 `json:"eventToHubMaxMs"`
}

// OK reports whether every expected alert arrived.
func (r Report) OK() bool { return len(r.Missing) == 0 && len(r.Results) > 0 }

// observed is an alert of this run as first seen at the hub.
type observed struct {
	al        store.Alert
	firstSeen time.Time // when this process first saw it
}

// watcher polls the hub for the run's alerts.
type watcher struct {
	list  AlertLister
	scope Scope
	since time.Time

	mu      sync.Mutex
	byID    map[string]*observed
	lastErr error
}

func (w *watcher) inScope(a store.Alert) bool {
	if w.scope.Namespace != "" && a.Entities.Namespace == w.scope.Namespace {
		return true
	}
	c := a.Entities.Container
	return c != nil && slices.Contains(w.scope.ContainerIDs, c.ID)
}

func (w *watcher) poll(ctx context.Context) {
	as, err := w.list(ctx, w.since)
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			w.lastErr = err
		}
		return
	}
	w.lastErr = nil
	for _, a := range as {
		if !w.inScope(a) {
			continue
		}
		if o, ok := w.byID[a.ID]; ok {
			// Keep the first ingest time: later records are aggregated
			// updates of the same alert.
			if !a.IngestedAt.IsZero() && (o.al.IngestedAt.IsZero() || a.IngestedAt.Before(o.al.IngestedAt)) {
				o.al.IngestedAt = a.IngestedAt
			}
			continue
		}
		w.byID[a.ID] = &observed{al: a, firstSeen: now}
	}
}

func (w *watcher) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		w.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// match finds the alert for an expectation of a step started at start:
// the earliest alert of the rule that began at or after the step (with a
// second of slack for clock granularity), else the earliest of the rule
// (raised by an earlier step and folded into one alert).
func (w *watcher) match(ruleID string, start time.Time) (*observed, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var best, any *observed
	for _, o := range w.byID {
		if o.al.AlertType != ruleID {
			continue
		}
		if any == nil || o.al.StartTime.Before(any.al.StartTime) {
			any = o
		}
		if !o.al.StartTime.Before(start.Add(-time.Second)) && (best == nil || o.al.StartTime.Before(best.al.StartTime)) {
			best = o
		}
	}
	if best != nil {
		return best, true
	}
	return any, any != nil
}

// Run starts the runner's workloads, runs the plan's steps one after the
// other, waits up to opts.Wait for the expected alerts and reports each.
// The runner is always closed before Run returns, also when ctx is
// cancelled (Ctrl-C) or a step fails.
func Run(ctx context.Context, r Runner, plan []Step, list AlertLister, opts Options) (rep Report, err error) {
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	if opts.Poll <= 0 {
		opts.Poll = 100 * time.Millisecond
	}
	defer func() {
		fmt.Fprintln(progress, "cleaning up the simulation's workloads ...")
		if cerr := r.Close(); cerr != nil {
			if err == nil {
				err = cerr
			} else {
				err = fmt.Errorf("%w; also: %w", err, cerr)
			}
		}
	}()
	// Prove the hub is readable before anything runs: a run whose alerts
	// cannot be checked is no proof.
	since := time.Now().Add(-2 * time.Second)
	if _, err := list(ctx, since); err != nil {
		return Report{}, fmt.Errorf("read alerts from the hub before the simulation: %w", err)
	}
	fmt.Fprintln(progress, "starting the victim (web server with a web shell) and the attacker ...")
	t0 := time.Now()
	if err := r.Start(ctx); err != nil {
		if ctx.Err() != nil {
			return Report{}, fmt.Errorf("simulation interrupted while starting its workloads: %w", context.Cause(ctx))
		}
		return Report{}, fmt.Errorf("start the simulation: %w", err)
	}
	fmt.Fprintf(progress, "workloads ready in %v\n", time.Since(t0).Round(time.Millisecond))

	w := &watcher{list: list, scope: r.Scope(), since: since, byID: map[string]*observed{}}
	wctx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); w.run(wctx, opts.Poll) }()
	defer func() { stopWatch(); <-watchDone }()

	starts := make([]time.Time, len(plan))
	stepErrs := make([]string, len(plan))
	for i, st := range plan {
		if ctx.Err() != nil {
			return Report{}, fmt.Errorf("simulation interrupted before step %d (%s: %s): %w", i+1, st.Scenario, st.Name, context.Cause(ctx))
		}
		starts[i] = time.Now()
		out, derr := r.Deliver(ctx, st.Command)
		took := time.Since(starts[i]).Round(time.Millisecond)
		if derr != nil {
			if ctx.Err() != nil {
				return Report{}, fmt.Errorf("simulation interrupted during step %d (%s: %s): %w", i+1, st.Scenario, st.Name, context.Cause(ctx))
			}
			stepErrs[i] = derr.Error()
			fmt.Fprintf(progress, "[%d/%d] %-10s %s: FAILED (%v)\n", i+1, len(plan), st.Scenario, st.Name, derr)
			continue
		}
		fmt.Fprintf(progress, "[%d/%d] %-10s %s (%v)%s\n", i+1, len(plan), st.Scenario, st.Name, took, outputHint(out))
	}

	// Wait for whatever has not arrived yet.
	deadline := time.Now().Add(opts.Wait)
	pending := func() int {
		n := 0
		for i, st := range plan {
			for _, e := range st.Expect {
				if _, ok := w.match(e.RuleID, starts[i]); !ok {
					n++
				}
			}
		}
		return n
	}
	announced := false
	for {
		n := pending()
		if n == 0 || time.Now().After(deadline) {
			break
		}
		if !announced {
			fmt.Fprintf(progress, "waiting up to %v for %d expected alert(s) at the hub ...\n", opts.Wait, n)
			announced = true
		}
		select {
		case <-ctx.Done():
			return Report{}, fmt.Errorf("simulation interrupted while waiting for alerts: %w", context.Cause(ctx))
		case <-time.After(opts.Poll):
		}
	}
	stopWatch()
	<-watchDone
	w.poll(context.WithoutCancel(ctx)) // one last look

	var lat, pipe []float64
	for i, st := range plan {
		for _, e := range st.Expect {
			res := Result{Scenario: st.Scenario, Step: st.Name, RuleID: e.RuleID, DisplayName: e.DisplayName, StepError: stepErrs[i]}
			if o, ok := w.match(e.RuleID, starts[i]); ok {
				at := o.al.IngestedAt
				if at.IsZero() {
					at = o.firstSeen
				}
				ms := math.Max(0, float64(at.Sub(starts[i]).Microseconds())/1000)
				res.Seen, res.LatencyMs, res.AlertID = true, &ms, o.al.ID
				lat = append(lat, ms)
				if !o.al.StartTime.IsZero() {
					p := math.Max(0, float64(at.Sub(o.al.StartTime).Microseconds())/1000)
					res.EventToHubMs = &p
					pipe = append(pipe, p)
				}
			} else {
				rep.Missing = append(rep.Missing, fmt.Sprintf("%s (%s) from %s: %s", e.DisplayName, e.RuleID, st.Scenario, st.Name))
			}
			rep.Results = append(rep.Results, res)
		}
	}
	rep.P50Ms, rep.P99Ms, rep.MaxMs = percentile(lat, 50), percentile(lat, 99), percentile(lat, 100)
	rep.EventToHubP50Ms, rep.EventToHubP99Ms, rep.EventToHubMaxMs = percentile(pipe, 50), percentile(pipe, 99), percentile(pipe, 100)
	w.mu.Lock()
	lastErr := w.lastErr
	w.mu.Unlock()
	if len(rep.Missing) > 0 && lastErr != nil {
		return rep, fmt.Errorf("reading alerts from the hub failed: %w", lastErr)
	}
	return rep, nil
}

func outputHint(out string) string {
	out = strings.TrimSpace(out)
	if out == "" {
		return ""
	}
	line, _, _ := strings.Cut(out, "\n")
	if len(line) > 60 {
		line = line[:60] + "..."
	}
	return ": " + line
}

// percentile is the nearest-rank percentile of xs (0 for none).
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

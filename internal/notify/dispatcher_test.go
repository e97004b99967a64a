package notify

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sec/vigil/internal/store"
)

// metric reads one output's sample of a metric from the registry.
func metric(t *testing.T, reg *prometheus.Registry, name, output string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "output" && l.GetValue() == output {
					if m.Counter != nil {
						return m.Counter.GetValue()
					}
					return m.Gauge.GetValue()
				}
			}
		}
	}
	t.Fatalf("metric %s{output=%q} not exported", name, output)
	return 0
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newDispatcher(t *testing.T, queue int) (*Dispatcher, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	d, err := NewDispatcher(DispatcherOptions{QueueSize: queue, Registerer: reg, Hostname: "hub-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d.Close(ctx)
	})
	return d, reg
}

func TestDispatchNeverBlocksAndCountsDropsWhenAnOutputIsStuck(t *testing.T) {
	arrived := make(chan string, 100)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- r.Header.Get("X-Vigil-Alert-Id")
		<-release
	}))
	t.Cleanup(srv.Close)
	released := false
	t.Cleanup(func() {
		if !released {
			close(release)
		}
	})

	d, reg := newDispatcher(t, 2)
	if err := d.Configure([]store.Output{{Name: "stuck", Type: "webhook", Enabled: true,
		Config: map[string]string{"url": srv.URL, "retries": "0", "timeout": "30s"}}}); err != nil {
		t.Fatal(err)
	}
	d.Dispatch(sampleAlert("first", "High"))
	receive(t, arrived) // the worker is now blocked on the receiver

	start := time.Now()
	for i := range 9 {
		d.Dispatch(sampleAlert("more-"+string(rune('a'+i)), "High"))
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Fatalf("Dispatch blocked for %v behind a stuck receiver", took)
	}
	// One in flight, two queued, seven dropped.
	if got := metric(t, reg, "vigil_hub_output_dropped_total", "stuck"); got != 7 {
		t.Fatalf("dropped = %v, want 7", got)
	}
	if got := metric(t, reg, "vigil_hub_output_queue_length", "stuck"); got != 2 {
		t.Fatalf("queue length = %v, want 2", got)
	}

	close(release)
	released = true
	eventually(t, "the in-flight and queued alerts are sent", func() bool {
		return metric(t, reg, "vigil_hub_output_sent_total", "stuck") == 3
	})
	if got := metric(t, reg, "vigil_hub_output_failed_total", "stuck"); got != 0 {
		t.Fatalf("failed = %v", got)
	}
}

func TestEachOutputGetsOnlyAlertsAtOrAboveItsMinimumSeverity(t *testing.T) {
	pager, all := newRecorder(t), newRecorder(t)
	d, reg := newDispatcher(t, 10)
	err := d.Configure([]store.Output{
		{Name: "pager", Type: "webhook", MinSeverity: "Medium", Enabled: true, Config: map[string]string{"url": pager.srv.URL}},
		{Name: "archive", Type: "webhook", Enabled: true, Config: map[string]string{"url": all.srv.URL}},
		{Name: "off", Type: "webhook", Enabled: false, Config: map[string]string{"url": all.srv.URL}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(d.Outputs(), ","); got != "archive,pager" {
		t.Fatalf("outputs = %s (a disabled output must not run)", got)
	}
	d.Dispatch(sampleAlert("low", "Low"), sampleAlert("medium", "Medium"), sampleAlert("high", "High"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	ids := func(r *recorder) string {
		bodies, _ := r.requests()
		var out []string
		for _, b := range bodies {
			var a store.Alert
			json.Unmarshal(b, &a)
			out = append(out, a.ID)
		}
		return strings.Join(out, ",")
	}
	if got := ids(pager); got != "medium,high" {
		t.Errorf("pager got %s, want medium,high", got)
	}
	if got := ids(all); got != "low,medium,high" {
		t.Errorf("archive got %s, want low,medium,high", got)
	}
	if got := metric(t, reg, "vigil_hub_output_sent_total", "pager"); got != 2 {
		t.Errorf("pager sent = %v", got)
	}
	// After Close, Dispatch is a no-op rather than a panic.
	d.Dispatch(sampleAlert("late", "High"))
}

func TestFailedDeliveriesAreCountedPerOutput(t *testing.T) {
	rec := newRecorder(t, 400)
	d, reg := newDispatcher(t, 10)
	if err := d.Configure([]store.Output{{Name: "bad", Type: "webhook", Enabled: true, Config: map[string]string{"url": rec.srv.URL}}}); err != nil {
		t.Fatal(err)
	}
	d.Dispatch(sampleAlert("x", "High"))
	eventually(t, "the failure is counted", func() bool {
		return metric(t, reg, "vigil_hub_output_failed_total", "bad") == 1
	})
	if got := metric(t, reg, "vigil_hub_output_sent_total", "bad"); got != 0 {
		t.Fatalf("sent = %v", got)
	}
}

func TestAnInvalidConfigurationChangesNothing(t *testing.T) {
	rec := newRecorder(t)
	d, _ := newDispatcher(t, 10)
	good := store.Output{Name: "good", Type: "webhook", Enabled: true, Config: map[string]string{"url": rec.srv.URL}}
	if err := d.Configure([]store.Output{good}); err != nil {
		t.Fatal(err)
	}
	bad := store.Output{Name: "broken", Type: "syslog", Enabled: true, Config: map[string]string{}}
	err := d.Configure([]store.Output{good, bad})
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Output != "broken" || ce.Setting != "address" {
		t.Fatalf("err = %v, want a ConfigError for broken.address", err)
	}
	if got := strings.Join(d.Outputs(), ","); got != "good" {
		t.Fatalf("outputs after a failed Configure = %s", got)
	}
	if err := d.Configure(nil); err != nil {
		t.Fatal(err)
	}
	if len(d.Outputs()) != 0 {
		t.Fatalf("outputs after removing all = %v", d.Outputs())
	}
	// A removed output's worker drained; new alerts go nowhere.
	d.Dispatch(sampleAlert("none", "High"))
}

func TestReconfiguringAnOutputSendsToItsNewAddress(t *testing.T) {
	oldRec, newRec := newRecorder(t), newRecorder(t)
	d, _ := newDispatcher(t, 10)
	out := store.Output{Name: "hook", Type: "webhook", Enabled: true, Config: map[string]string{"url": oldRec.srv.URL}}
	if err := d.Configure([]store.Output{out}); err != nil {
		t.Fatal(err)
	}
	d.Dispatch(sampleAlert("before", "High"))
	eventually(t, "the old receiver gets the alert", func() bool { b, _ := oldRec.requests(); return len(b) == 1 })
	out.Config = map[string]string{"url": newRec.srv.URL}
	if err := d.Configure([]store.Output{out}); err != nil {
		t.Fatal(err)
	}
	d.Dispatch(sampleAlert("after", "High"))
	eventually(t, "the new receiver gets the alert", func() bool { b, _ := newRec.requests(); return len(b) == 1 })
	if b, _ := oldRec.requests(); len(b) != 1 {
		t.Fatalf("old receiver got %d alerts", len(b))
	}
}

func TestCloseWaitsForQueuedAlertsUntilItsDeadline(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	reg := prometheus.NewRegistry()
	d, err := NewDispatcher(DispatcherOptions{QueueSize: 10, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Configure([]store.Output{{Name: "slow", Type: "webhook", Enabled: true, Config: map[string]string{"url": srv.URL, "retries": "0", "timeout": "1m"}}}); err != nil {
		t.Fatal(err)
	}
	d.Dispatch(sampleAlert("a", "High"), sampleAlert("b", "High"))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := d.Close(ctx); err == nil {
		t.Fatal("Close reported success with undelivered alerts")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Close took %v past its deadline", took)
	}
	if got := metric(t, reg, "vigil_hub_output_failed_total", "slow"); got != 2 {
		t.Fatalf("failed = %v, want 2 (in flight + queued)", got)
	}
}

func TestMetricsRegisterOnceOnARegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := NewDispatcher(DispatcherOptions{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewDispatcher(DispatcherOptions{Registerer: reg}); err == nil {
		t.Fatal("a second dispatcher registered the same metrics")
	}
}

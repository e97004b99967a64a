package ship

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/outbox"
	"github.com/vigil-sec/vigil/internal/store"
)

// TestMain doubles as the child process of the SIGKILL test: with
// VIGIL_SHIP_CHILD set, the test binary acts as a sensor that appends and
// ships alerts instead of running tests.
func TestMain(m *testing.M) {
	switch os.Getenv("VIGIL_SHIP_CHILD") {
	case "":
		os.Exit(m.Run())
	case "append":
		os.Exit(childAppend())
	case "drain":
		os.Exit(childDrain())
	default:
		fmt.Fprintln(os.Stderr, "unknown VIGIL_SHIP_CHILD mode")
		os.Exit(2)
	}
}

func testAlert(id, typ string) alert.Alert {
	return alert.Alert{
		ID: id, AlertType: typ, DisplayName: "Test alert", Severity: alert.SeverityHigh, Status: alert.StatusActive,
		StartTime: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), EndTime: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC),
		Count: 1, Entities: alert.Entities{Node: "node-1", Process: &alert.Process{Path: "/bin/sh", CommandLine: "sh -c 'echo VIGIL-TEST-ALERT-7f3b'"}},
	}
}

func openOutbox(t testing.TB, dir string) *outbox.Outbox {
	t.Helper()
	ob, err := outbox.Open(dir, outbox.Options{})
	if err != nil {
		t.Fatalf("open outbox: %v", err)
	}
	t.Cleanup(func() { ob.Close() })
	return ob
}

func testConfig(url string, ca []byte) Config {
	return Config{URL: url, Token: testToken, Cluster: testCluster, Node: "node-1", CAPEM: ca,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		BackoffBase: 5 * time.Millisecond, BackoffMax: 50 * time.Millisecond, StopTimeout: 5 * time.Second}
}

func newShipper(t testing.TB, cfg Config, ob *outbox.Outbox) *Shipper {
	t.Helper()
	s, err := New(cfg, ob)
	if err != nil {
		t.Fatalf("new shipper: %v", err)
	}
	return s
}

// run starts s.Run and returns a function that stops it and waits.
func run(t testing.TB, s *Shipper) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Run did not return within 20 s of being stopped")
		}
	}
	t.Cleanup(stop)
	return stop
}

func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func metric(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return 0
}

func TestEveryAlertArrivesExactlyOnceAfterTheHubWasUnreachable(t *testing.T) {
	ca := newCA(t, "vigil test CA")
	hub := startHub(t, ca)
	hub.setMode(hub503)
	ob := openOutbox(t, t.TempDir())
	logs := &logBuffer{}
	reg := prometheus.NewRegistry()
	cfg := testConfig(hub.url(), ca.pem)
	cfg.BatchSize, cfg.Logger, cfg.Registerer = 20, logs.logger(), reg
	s := newShipper(t, cfg, ob)
	stop := run(t, s)

	want := map[string]bool{}
	next := 0
	appendSome := func(n int) {
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("outage-%04d", next)
			next++
			if err := ob.Append(testAlert(id, "vigil.node/TestAlert")); err != nil {
				t.Fatal(err)
			}
			want[id] = true
		}
	}
	failures := func(reason string) float64 {
		return metric(t, reg, "vigil_ship_failures_total", map[string]string{"reason": reason})
	}

	// 1. The hub answers 503.
	appendSome(50)
	waitFor(t, "retries against a hub answering 503", 10*time.Second, func() bool { return failures(ReasonServer) >= 3 })
	// 2. The hub drops connections without answering.
	hub.setMode(hubReset)
	appendSome(50)
	base := failures(ReasonNetwork)
	waitFor(t, "retries against a hub resetting connections", 10*time.Second, func() bool { return failures(ReasonNetwork) >= base+3 })
	// 3. The hub is down: connections are refused.
	hub.stop()
	appendSome(50)
	base = failures(ReasonNetwork)
	waitFor(t, "retries against a stopped hub", 10*time.Second, func() bool { return failures(ReasonNetwork) >= base+3 })

	st := s.Status()
	if st.Backlog != 150 || st.ConsecutiveFailures < 9 || !st.LastSuccess.IsZero() || st.LastErrorReason != ReasonNetwork ||
		!strings.Contains(st.LastError, "cannot reach the hub at "+hub.addr) {
		t.Fatalf("status during the outage = %+v", st)
	}
	if len(hub.ids()) != 0 {
		t.Fatalf("the hub committed %d alerts while failing", len(hub.ids()))
	}

	// 4. Back, but the first commits' answers are lost: the shipper must
	// resend, and the hub's dedupe makes that harmless.
	hub.setMode(hubCommitReset)
	hub.restart()
	waitFor(t, "a commit whose answer is lost", 10*time.Second, func() bool { return len(hub.ids()) > 0 })
	hub.setMode(hubOK)
	appendSome(50)
	waitFor(t, "the backlog to drain", 20*time.Second, func() bool {
		return s.Status().Backlog == 0 && len(hub.ids()) == len(want)
	})
	stop()

	got := hub.ids()
	dups := 0
	for id, n := range got {
		if !want[id] {
			t.Errorf("hub committed %s, which was never appended", id)
		}
		dups += n - 1
	}
	for id := range want {
		if got[id] == 0 {
			t.Errorf("alert %s was lost", id)
		}
	}
	if dups == 0 {
		t.Error("no alert was received twice although the hub dropped the answer to a committed batch; the retry path was not exercised")
	}
	st = s.Status()
	if st.Sent < 200 || st.ConsecutiveFailures != 0 || st.LastSuccess.IsZero() || st.Backlog != 0 {
		t.Fatalf("status after recovery = %+v", st)
	}
	if metric(t, reg, "vigil_ship_alerts_sent_total", nil) < 200 {
		t.Errorf("vigil_ship_alerts_sent_total = %v", metric(t, reg, "vigil_ship_alerts_sent_total", nil))
	}
	out := logs.String()
	// One streak of failures: one warning, not one per attempt (they are
	// repeated only every 30 s).
	if n := strings.Count(out, "cannot deliver alerts to the hub"); n != 1 {
		t.Errorf("logged %d first-failure warnings during one outage, want 1:\n%s", n, out)
	}
	if strings.Count(out, "\n") > 10 {
		t.Errorf("the outage was logged on %d lines (not rate-limited):\n%s", strings.Count(out, "\n"), out)
	}
	if !strings.Contains(out, "delivering alerts to the hub again") {
		t.Errorf("recovery not logged:\n%s", out)
	}
}

func TestRepeatedFailuresAreLoggedOncePerIntervalWithTheirCount(t *testing.T) {
	ca := newCA(t, "vigil test CA")
	hub := startHub(t, ca)
	hub.setMode(hub503)
	ob := openOutbox(t, t.TempDir())
	logs := &logBuffer{}
	cfg := testConfig(hub.url(), ca.pem)
	cfg.Logger, cfg.LogEvery, cfg.BackoffMax = logs.logger(), 200*time.Millisecond, 10*time.Millisecond
	s := newShipper(t, cfg, ob)
	ob.Append(testAlert("x", "vigil.node/TestAlert"))
	stop := run(t, s)
	time.Sleep(700 * time.Millisecond)
	stop()
	attempts := s.Status().ConsecutiveFailures
	out := logs.String()
	first, again := strings.Count(out, "msg=\"cannot deliver"), strings.Count(out, "msg=\"still cannot deliver")
	if first != 1 || again < 1 || again > 4 || attempts < 10 {
		t.Fatalf("%d attempts gave %d first and %d repeated warnings, want 1 and 1..4:\n%s", attempts, first, again, out)
	}
	if !strings.Contains(out, "failedAttempts=") || !strings.Contains(out, "queued=1") {
		t.Fatalf("repeated warnings do not carry the count and the backlog:\n%s", out)
	}
}

func TestAPermanentlyRejectedBatchGoesToTheDeadLetterFileAndIsNotRetried(t *testing.T) {
	ca := newCA(t, "vigil test CA")
	hub := startHub(t, ca)
	hub.setMode(hubRejectPoison)
	dir := t.TempDir()
	ob := openOutbox(t, dir)
	logs := &logBuffer{}
	reg := prometheus.NewRegistry()
	cfg := testConfig(hub.url(), ca.pem)
	cfg.BatchSize, cfg.Logger, cfg.Registerer = 1, logs.logger(), reg
	s := newShipper(t, cfg, ob)
	for i := 0; i < 5; i++ {
		ob.Append(testAlert(fmt.Sprintf("good-%d", i), "vigil.node/TestAlert"))
	}
	ob.Append(testAlert("bad-0", "poison"))
	for i := 5; i < 10; i++ {
		ob.Append(testAlert(fmt.Sprintf("good-%d", i), "vigil.node/TestAlert"))
	}
	stop := run(t, s)
	waitFor(t, "the good alerts to arrive", 10*time.Second, func() bool { return len(hub.ids()) == 10 && s.Status().Backlog == 0 })
	time.Sleep(100 * time.Millisecond) // give a wrong retry loop the chance to show
	stop()

	hub.mu.Lock()
	poison := hub.poisonSeen
	hub.mu.Unlock()
	if poison != 1 {
		t.Fatalf("the hub saw the rejected batch %d times, want once", poison)
	}
	if _, ok := hub.ids()["bad-0"]; ok {
		t.Fatal("the poison alert was committed")
	}
	data, err := os.ReadFile(filepath.Join(dir, DeadLetterFile))
	if err != nil {
		t.Fatalf("dead-letter file: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 1 {
		t.Fatalf("dead-letter file has %d lines, want 1", len(lines))
	}
	var dl DeadLetter
	if err := json.Unmarshal([]byte(lines[0]), &dl); err != nil {
		t.Fatal(err)
	}
	var a alert.Alert
	if len(dl.Alerts) != 1 || json.Unmarshal(dl.Alerts[0], &a) != nil || a.ID != "bad-0" {
		t.Fatalf("dead letter holds %s", lines[0])
	}
	if dl.Status != 400 || dl.HubCode != "InvalidAlert" || !strings.Contains(dl.HubMessage, "unknown severity") || dl.BatchID == "" {
		t.Fatalf("dead letter does not record what the hub said: %+v", dl)
	}
	if st := s.Status(); st.DeadLettered != 1 || st.Sent != 10 || st.LastErrorReason != ReasonRejected {
		t.Fatalf("status = %+v", st)
	}
	if v := metric(t, reg, "vigil_ship_dead_lettered_alerts_total", nil); v != 1 {
		t.Fatalf("vigil_ship_dead_lettered_alerts_total = %v", v)
	}
	if v := metric(t, reg, "vigil_ship_failures_total", map[string]string{"reason": ReasonRejected}); v != 1 {
		t.Fatalf("vigil_ship_failures_total{reason=rejected} = %v", v)
	}
	out := logs.String()
	for _, want := range []string{"dead-letter", "unknown severity", filepath.Join(dir, DeadLetterFile), "versions match"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log does not say %q:\n%s", want, out)
		}
	}
}

func TestTheHubIsTrustedOnlyWhenItsCertificateIsSignedByThePinnedCA(t *testing.T) {
	hubCA := newCA(t, "hub CA")
	otherCA := newCA(t, "some other CA")
	hub := startHub(t, hubCA)
	cases := []struct {
		name      string
		ca        []byte
		delivered bool
		wantErr   string
	}{
		{"pinned to the hub's CA", hubCA.pem, true, ""},
		{"pinned to another CA", otherCA.pem, false, "is not signed by the pinned CA"},
		{"no CA given: system roots", nil, false, "is not signed by a CA this system trusts"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ob := openOutbox(t, t.TempDir())
			s := newShipper(t, testConfig(hub.url(), tc.ca), ob)
			id := fmt.Sprintf("pin-%d", i)
			ob.Append(testAlert(id, "vigil.node/TestAlert"))
			run(t, s)
			if tc.delivered {
				waitFor(t, "delivery", 10*time.Second, func() bool { return hub.ids()[id] > 0 && s.Status().Backlog == 0 })
				return
			}
			waitFor(t, "a failed attempt", 10*time.Second, func() bool { return s.Status().ConsecutiveFailures >= 2 })
			st := s.Status()
			if st.LastErrorReason != ReasonTLS || !strings.Contains(st.LastError, tc.wantErr) || st.Backlog != 1 {
				t.Fatalf("status = %+v, want a tls error saying %q and the alert still queued", st, tc.wantErr)
			}
			if hub.ids()[id] > 0 {
				t.Fatal("the alert reached a hub whose certificate is not trusted")
			}
		})
	}
}

func TestRetryAfterFromTheHubIsHonoured(t *testing.T) {
	ca := newCA(t, "vigil test CA")
	hub := startHub(t, ca)
	hub.setMode(hub429Once)
	ob := openOutbox(t, t.TempDir())
	s := newShipper(t, testConfig(hub.url(), ca.pem), ob) // backoff max 50 ms
	ob.Append(testAlert("throttled", "vigil.node/TestAlert"))
	run(t, s)
	waitFor(t, "delivery", 10*time.Second, func() bool { return hub.ids()["throttled"] > 0 })
	hub.mu.Lock()
	reqs := append([]time.Time(nil), hub.requests...)
	hub.mu.Unlock()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2 (429 then 200)", len(reqs))
	}
	if gap := reqs[1].Sub(reqs[0]); gap < 950*time.Millisecond {
		t.Fatalf("retried %v after a 429 with Retry-After: 1", gap)
	}
}

func TestARejectedTokenKeepsAlertsQueuedAndSaysWhatToDo(t *testing.T) {
	ca := newCA(t, "vigil test CA")
	hub := startHub(t, ca)
	dir := t.TempDir()
	ob := openOutbox(t, dir)
	cfg := testConfig(hub.url(), ca.pem)
	cfg.Token = "vgl_revoked"
	s := newShipper(t, cfg, ob)
	for i := 0; i < 3; i++ {
		ob.Append(testAlert(fmt.Sprintf("auth-%d", i), "vigil.node/TestAlert"))
	}
	run(t, s)
	waitFor(t, "retries", 10*time.Second, func() bool { return hub.requestCount() >= 3 })
	st := s.Status()
	if st.LastErrorReason != ReasonAuth || !strings.Contains(st.LastError, "issue a sensor token for cluster "+testCluster) ||
		st.Backlog != 3 || st.DeadLettered != 0 {
		t.Fatalf("status = %+v", st)
	}
	if _, err := os.Stat(filepath.Join(dir, DeadLetterFile)); err == nil {
		t.Fatal("alerts were dead-lettered because of a token problem")
	}
}

func TestA200ThatIsNotTheHubsAcknowledgementDoesNotDropAlerts(t *testing.T) {
	ca := newCA(t, "vigil test CA")
	hub := startHub(t, ca)
	hub.setMode(hubBare200)
	ob := openOutbox(t, t.TempDir())
	s := newShipper(t, testConfig(hub.url(), ca.pem), ob)
	ob.Append(testAlert("portal", "vigil.node/TestAlert"))
	run(t, s)
	waitFor(t, "retries", 10*time.Second, func() bool { return hub.requestCount() >= 2 })
	st := s.Status()
	if st.Backlog != 1 || st.Sent != 0 || st.LastErrorReason != ReasonOther || !strings.Contains(st.LastError, "not the hub's acknowledgement") {
		t.Fatalf("status = %+v", st)
	}
	hub.setMode(hubOK)
	waitFor(t, "delivery once the real hub answers", 10*time.Second, func() bool { return hub.ids()["portal"] == 1 && s.Status().Backlog == 0 })
}

func TestABatchTheHubFindsTooLargeIsSplitNotDropped(t *testing.T) {
	ca := newCA(t, "vigil test CA")
	hub := startHub(t, ca)
	hub.setMode(hub413Over10)
	ob := openOutbox(t, t.TempDir())
	cfg := testConfig(hub.url(), ca.pem)
	cfg.BatchSize = 100
	s := newShipper(t, cfg, ob)
	for i := 0; i < 35; i++ {
		ob.Append(testAlert(fmt.Sprintf("big-%d", i), "vigil.node/TestAlert"))
	}
	run(t, s)
	waitFor(t, "delivery", 10*time.Second, func() bool { return len(hub.ids()) == 35 && s.Status().Backlog == 0 })
	if st := s.Status(); st.DeadLettered != 0 {
		t.Fatalf("status = %+v", st)
	}
	hub.mu.Lock()
	defer hub.mu.Unlock()
	for _, n := range hub.batchSizes {
		if n > 10 {
			t.Fatalf("the hub committed a batch of %d although it refuses more than 10", n)
		}
	}
}

func TestStoppingDeliversWhatIsQueuedWithinTheDeadline(t *testing.T) {
	ca := newCA(t, "vigil test CA")
	hub := startHub(t, ca)
	ob := openOutbox(t, t.TempDir())
	cfg := testConfig(hub.url(), ca.pem)
	cfg.BatchSize = 50
	s := newShipper(t, cfg, ob)
	for i := 0; i < 120; i++ {
		ob.Append(testAlert(fmt.Sprintf("stop-%d", i), "vigil.node/TestAlert"))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(hub.ids()); n != 120 || s.Status().Backlog != 0 {
		t.Fatalf("after a graceful stop the hub has %d of 120 alerts, backlog %d", n, s.Status().Backlog)
	}
}

func TestStoppingWhileTheHubIsDownReturnsPromptlyAndKeepsTheAlerts(t *testing.T) {
	ca := newCA(t, "vigil test CA")
	hub := startHub(t, ca)
	hub.stop()
	ob := openOutbox(t, t.TempDir())
	cfg := testConfig(hub.url(), ca.pem)
	cfg.BackoffBase, cfg.BackoffMax = time.Second, 10*time.Second
	s := newShipper(t, cfg, ob)
	ob.Append(testAlert("kept", "vigil.node/TestAlert"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	waitFor(t, "a failed attempt", 10*time.Second, func() bool { return s.Status().ConsecutiveFailures > 0 })
	start := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(cfg.StopTimeout + 2*time.Second):
		t.Fatal("Run did not return after being stopped")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("stopping took %v", d)
	}
	if s.Status().Backlog != 1 {
		t.Fatal("the undelivered alert left the outbox")
	}
}

func TestHealthIsReportedOnAnInterval(t *testing.T) {
	ca := newCA(t, "vigil test CA")
	hub := startHub(t, ca)
	ob := openOutbox(t, t.TempDir())
	reg := prometheus.NewRegistry()
	cfg := testConfig(hub.url(), ca.pem)
	cfg.Registerer = reg
	s := newShipper(t, cfg, ob)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	healthDone := make(chan struct{})
	go func() {
		defer close(healthDone)
		s.RunHealth(ctx, 20*time.Millisecond, func() store.SensorHealth {
			return store.SensorHealth{SourceMode: "ebpf", Drops: 7, Missing: []string{"file"}, SensorVersion: "test"}
		})
	}()
	waitFor(t, "two health reports", 10*time.Second, func() bool {
		hub.mu.Lock()
		defer hub.mu.Unlock()
		return len(hub.health) >= 2
	})
	hub.mu.Lock()
	h := hub.health[0]
	hub.mu.Unlock()
	if h["clusterId"] != testCluster || h["node"] != "node-1" || h["sourceMode"] != "ebpf" || h["drops"] != 7.0 ||
		h["reportedAt"] == "" || h["reportedAt"] == nil {
		t.Fatalf("health report = %v", h)
	}
	cancel()
	<-healthDone // no report of the loop may race the one below

	hub.stop()
	err := s.SendHealth(context.Background(), store.SensorHealth{SourceMode: "ebpf"})
	if err == nil || !strings.Contains(err.Error(), "cannot reach the hub") {
		t.Fatalf("health to a stopped hub: %v", err)
	}
	if v := metric(t, reg, "vigil_ship_health_failures_total", map[string]string{"reason": ReasonNetwork}); v != 1 {
		t.Fatalf("vigil_ship_health_failures_total{reason=network} = %v", v)
	}
}

func TestBackoffIsFullJitterUnderAnExponentialCeiling(t *testing.T) {
	s := &Shipper{cfg: Config{BackoffBase: 200 * time.Millisecond, BackoffMax: 30 * time.Second}}
	for _, tc := range []struct {
		attempt int
		ceil    time.Duration
	}{{1, 200 * time.Millisecond}, {2, 400 * time.Millisecond}, {5, 3200 * time.Millisecond}, {9, 30 * time.Second}, {64, 30 * time.Second}} {
		low, high := false, false
		for i := 0; i < 500; i++ {
			d := s.backoff(tc.attempt, 0)
			if d < 0 || d > tc.ceil {
				t.Fatalf("attempt %d waited %v, outside [0, %v]", tc.attempt, d, tc.ceil)
			}
			low = low || d < tc.ceil/4
			high = high || d > tc.ceil*3/4
		}
		if !low || !high {
			t.Errorf("attempt %d: waits do not spread over [0, %v]", tc.attempt, tc.ceil)
		}
	}
	if d := s.backoff(1, 3*time.Second); d != 3*time.Second {
		t.Fatalf("Retry-After 3s gave %v", d)
	}
}

func TestConfigurationMistakesAreRefusedWithWhatToDo(t *testing.T) {
	ob := openOutbox(t, t.TempDir())
	base := testConfig("https://hub.example:8443", nil)
	cases := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"plain http to a remote hub", func(c *Config) { c.URL = "http://hub.example" }, "use https://hub.example"},
		{"no token", func(c *Config) { c.Token = "" }, "no sensor token"},
		{"no cluster", func(c *Config) { c.Cluster = "" }, "ARM id"},
		{"CA without a certificate", func(c *Config) { c.CAPEM = []byte("not a pem") }, "no PEM certificate"},
		{"missing CA file", func(c *Config) { c.CAFile = "/nonexistent/ca.pem" }, "read the hub CA file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.edit(&cfg)
			_, err := New(cfg, ob)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error saying %q", err, tc.want)
			}
		})
	}
	cfg := base
	cfg.URL = "http://127.0.0.1:1"
	if _, err := New(cfg, ob); err != nil {
		t.Fatalf("plain http to loopback refused: %v", err)
	}
}

// TestKillingTheSensorWithSIGKILLLosesNoAppendedAlert runs the sensor side
// (outbox + shipper) as a real child process, kills it with SIGKILL while
// it appends and ships, restarts it, and checks that every alert whose
// Append had returned reaches the hub (Append hands the record to the
// kernel, so a process crash cannot lose it; "synced" marks Sync'd ones).
func TestKillingTheSensorWithSIGKILLLosesNoAppendedAlert(t *testing.T) {
	ca := newCA(t, "vigil test CA")
	hub := startHub(t, ca)
	dir := t.TempDir()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	child := func(mode string, round int) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "VIGIL_SHIP_CHILD="+mode, "VIGIL_SHIP_DIR="+dir, "VIGIL_SHIP_URL="+hub.url(),
			"VIGIL_SHIP_CA="+caFile, "VIGIL_SHIP_ROUND="+strconv.Itoa(round))
		cmd.Stderr = os.Stderr
		return cmd
	}
	var want []string
	synced := 0
	for round := 0; round < 3; round++ {
		// Round 1 runs against a failing hub, so its alerts are only in
		// the outbox when the process dies.
		if round == 1 {
			hub.setMode(hub503)
		} else {
			hub.setMode(hubOK)
		}
		cmd := child("append", round)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		appended, syncedN := 0, 0
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 2 {
				continue
			}
			n, _ := strconv.Atoi(f[1])
			switch f[0] {
			case "appended":
				appended = n
			case "synced":
				syncedN = n
			}
			if syncedN >= 300 {
				break
			}
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child did not die of SIGKILL: %v", round, err)
		}
		if syncedN < 300 {
			t.Fatalf("round %d: child synced only %d alerts before its output ended", round, syncedN)
		}
		for i := 0; i < appended; i++ {
			want = append(want, childID(round, i))
		}
		synced += syncedN
		t.Logf("round %d: killed after %d appended (%d synced); hub has %d alerts", round, appended, syncedN, len(hub.ids()))
	}
	hub.setMode(hubOK)
	drain := child("drain", 0)
	drain.Stderr = nil
	if out, err := drain.CombinedOutput(); err != nil {
		t.Fatalf("restarted sensor could not drain the outbox: %v\n%s", err, out)
	}
	got := hub.ids()
	lost := 0
	for _, id := range want {
		if got[id] == 0 {
			lost++
			if lost < 10 {
				t.Errorf("alert %s was appended before the kill but never reached the hub", id)
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d appended alerts lost (%d of them synced)", lost, len(want), synced)
	}
}

func childID(round, i int) string { return fmt.Sprintf("kill-r%d-%06d", round, i) }

// childAppend appends alerts as fast as shipping allows and reports its
// progress on stdout until it is killed.
func childAppend() int {
	dir, round := os.Getenv("VIGIL_SHIP_DIR"), os.Getenv("VIGIL_SHIP_ROUND")
	r, _ := strconv.Atoi(round)
	ob, s, err := childShipper(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go s.Run(context.Background())
	for i := 0; ; i++ {
		if err := ob.Append(testAlert(childID(r, i), "vigil.node/TestAlert")); err != nil {
			fmt.Fprintln(os.Stderr, "append:", err)
			return 1
		}
		fmt.Printf("appended %d\n", i+1)
		if (i+1)%25 == 0 {
			if err := ob.Sync(); err != nil {
				fmt.Fprintln(os.Stderr, "sync:", err)
				return 1
			}
			fmt.Printf("synced %d\n", i+1)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// childDrain is the restarted sensor: it ships the outbox empty and exits.
func childDrain() int {
	ob, s, err := childShipper(os.Getenv("VIGIL_SHIP_DIR"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(60 * time.Second)
	for s.Status().Backlog > 0 {
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "backlog still %d after 60 s: %+v\n", s.Status().Backlog, s.Status())
			return 1
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if err := ob.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "close:", err)
		return 1
	}
	return 0
}

func childShipper(dir string) (*outbox.Outbox, *Shipper, error) {
	// Small segments: the kills land across rotations and deletions.
	ob, err := outbox.Open(dir, outbox.Options{SegmentBytes: 16 << 10})
	if err != nil {
		return nil, nil, err
	}
	cfg := testConfig(os.Getenv("VIGIL_SHIP_URL"), nil)
	cfg.CAFile = os.Getenv("VIGIL_SHIP_CA")
	cfg.BatchSize = 50
	s, err := New(cfg, ob)
	return ob, s, err
}

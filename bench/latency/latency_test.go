package latency

import (
	"context"
	"fmt"
	"github.com/vigil-sec/vigil/internal/testutil/syncbuf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/bench/suite"
	"github.com/vigil-sec/vigil/internal/hubclient"
	"github.com/vigil-sec/vigil/internal/testenv"
	"github.com/vigil-sec/vigil/internal/testutil/runc"
)

const (
	testAlertType = "vigil.node/TestAlert"
	marker        = "VIGIL-TEST-ALERT-7f3b"
	// poll is how often the hub's alert list is read.
	poll = 10 * time.Millisecond
	// alertTimeout bounds the wait for one alert: far above the goal
	// (500 ms), so a slow alert is measured, not lost.
	alertTimeout = 30 * time.Second
	upTimeout    = 90 * time.Second
)

// BenchmarkExecInAContainerToAlertAtTheHub runs one runc container per
// iteration whose init is `sh -c 'echo VIGIL-TEST-ALERT-7f3b <run> <n>'`
// and measures from the moment the container's process exists until the
// hub's alert list (GET .../providers/Vigil.Security/alerts, polled every
// 10 ms) shows the test alert of that container. Distinct containers have
// distinct container ids, so each exec is its own alert.
func BenchmarkExecInAContainerToAlertAtTheHub(b *testing.B) {
	testenv.RequireRoot(b)
	img := runc.NewImage(b)
	client := startUp(b)
	ctx := context.Background()
	run := fmt.Sprintf("p5-%d-%d", os.Getpid(), time.Now().UnixNano()%1_000_000)

	var lat, fromEvent []time.Duration
	n := 0
	for b.Loop() {
		n++
		// The trailing '.' keeps run-0001 from matching run-00012.
		tag := fmt.Sprintf("%s-%05d.", run, n)
		c := img.NewContainer(b, runc.Options{Args: []string{"sh", "-c", "echo " + marker + " " + tag}, Timeout: time.Minute})
		if err := c.Start(ctx); err != nil {
			b.Fatalf("container %d: %v", n, err)
		}
		// Start returns once the container's init exists; it execs sh at
		// once, so this is the exec's time to within a few milliseconds
		// (and never after it: the latency is not flattered).
		execAt := time.Now()
		a, seenAt := waitForAlert(ctx, b, client, tag, execAt)
		lat = append(lat, seenAt.Sub(execAt))
		if !a.Properties.StartTime.IsZero() {
			fromEvent = append(fromEvent, seenAt.Sub(a.Properties.StartTime))
		}
		if res, err := c.Wait(); err != nil || res.ExitCode != 0 {
			b.Fatalf("container %d: exit %d, %v: %s", n, res.ExitCode, err, res.Stderr)
		}
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(suite.Percentile(lat, 0.50)), "p50-ms")
	b.ReportMetric(ms(suite.Percentile(lat, 0.99)), "p99-ms")
	b.ReportMetric(ms(suite.Percentile(lat, 1)), "max-ms")
	// The same from the alert's own start time (the kernel's exec
	// timestamp): a cross-check of execAt.
	b.ReportMetric(ms(suite.Percentile(fromEvent, 0.99)), "p99-from-event-ms")
}

// waitForAlert polls the hub until the test alert whose command line holds
// tag is listed, and returns it with the time it was first seen.
func waitForAlert(ctx context.Context, b *testing.B, client *hubclient.Client, tag string, since time.Time) (hubclient.Alert, time.Time) {
	deadline := since.Add(alertTimeout)
	for {
		alerts, _, err := client.ListAlerts(ctx, hubclient.AlertListOptions{AlertType: testAlertType, Text: tag, Top: 10})
		seen := time.Now()
		if err != nil {
			b.Fatalf("listing alerts at the hub: %v", err)
		}
		for _, a := range alerts {
			if p := a.Properties.Entities.Process; p != nil && strings.Contains(p.CommandLine, tag) {
				return a, seen
			}
		}
		if seen.After(deadline) {
			b.Fatalf("the test alert for %q did not reach the hub's API within %v", tag, alertTimeout)
		}
		time.Sleep(poll)
	}
}

// startUp runs `vigil up` (hub and sensor for this host) on 127.0.0.1:0
// with a private data directory and CLI configuration, waits for its
// sensor, and returns a client signed in as vigil up's admin. The process
// is stopped with SIGINT when the benchmark ends.
func startUp(b *testing.B) *hubclient.Client {
	b.Helper()
	dir := b.TempDir()
	bin := vigilBinary(b, dir)
	cliPath := filepath.Join(dir, "cli.json")
	var out, errb syncbuf.Buffer
	up := exec.Command(bin, "up", "--data-dir", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0")
	up.Env = append(os.Environ(), "VIGIL_CONFIG="+cliPath)
	up.Stdout, up.Stderr = &out, &errb
	up.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := up.Start(); err != nil {
		b.Fatalf("starting vigil up: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- up.Wait() }()
	b.Cleanup(func() {
		_ = up.Process.Signal(syscall.SIGINT)
		select {
		case err := <-exited:
			if err != nil {
				b.Errorf("vigil up did not stop cleanly on SIGINT: %v\n%s", err, errb.String())
			}
		case <-time.After(30 * time.Second):
			_ = up.Process.Kill()
			<-exited
			b.Errorf("vigil up did not stop within 30s of SIGINT; killed")
		}
	})
	deadline := time.Now().Add(upTimeout)
	for !strings.Contains(errb.String(), "sensor running") {
		select {
		case err := <-exited:
			b.Fatalf("vigil up exited before its sensor ran (%v):\n%s", err, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("vigil up did not start its sensor within %v:\nstdout %s\nstderr %s", upTimeout, out.String(), errb.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	cfg, err := hubclient.LoadConfig(cliPath)
	if err != nil {
		b.Fatalf("vigil up did not sign the CLI in at %s: %v\n%s", cliPath, err, out.String())
	}
	client, err := hubclient.New(cfg)
	if err != nil {
		b.Fatalf("hub client for %s: %v", cfg.Hub, err)
	}
	return client
}

func vigilBinary(b *testing.B, dir string) string {
	if p := os.Getenv("VIGIL_BENCH_VIGIL"); p != "" {
		return p
	}
	p := filepath.Join(dir, "vigil")
	out, err := exec.Command("go", "build", "-o", p, "github.com/vigil-sec/vigil/cmd/vigil").CombinedOutput()
	if err != nil {
		b.Fatalf("go build ./cmd/vigil: %v\n%s", err, out)
	}
	return p
}

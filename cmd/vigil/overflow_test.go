package main

import (
	"bufio"
	"context"
	"github.com/vigil-sec/vigil/internal/testutil/syncbuf"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/hubclient"
	"github.com/vigil-sec/vigil/internal/testenv"
)

// A ring buffer overflow is never silent: a real sensor process with a
// 4 KiB ring loses events in an exec storm, counts them, keeps running,
// and the hub turns its health report into an alert whose count is the
// sensor's own loss counter.
func TestARingOverflowIsCountedAndBecomesAnAlertAtTheHubWhileTheSensorKeepsRunning(t *testing.T) {
	testenv.RequireRoot(t)
	bin := buildVigil(t)
	dir := t.TempDir()
	owner, err := auth.GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	h := startHubProcess(t, bin, filepath.Join(dir, "hub"), "", owner)
	sensorToken, clusterID := registerSensor(t, h, owner)
	tokenFile := filepath.Join(dir, "sensor.token")
	if err := os.WriteFile(tokenFile, []byte(sensorToken), 0o600); err != nil {
		t.Fatal(err)
	}
	metrics := freeLoopbackAddr(t)
	var stderr syncbuf.Buffer
	_, exited := startSensorProcess(t, bin, metrics, &stderr, "--source", "ebpf", "--ring-size", "4KiB", "--file-events=false",
		"--hub-url", h.url, "--hub-token-file", tokenFile,
		"--hub-ca", filepath.Join(dir, "hub", "tls", "ca.crt"), "--cluster-id", clusterID,
		"--outbox-dir", filepath.Join(dir, "outbox"), "--health-interval", "1s", "--node", "overflow-node")

	// An exec storm from several workers: far more records per reader
	// wake-up than a 4 KiB ring holds.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 300 {
				_ = exec.Command("/bin/true").Run()
			}
		}()
	}
	wg.Wait()

	// The sensor still runs and has settled its books.
	var drops float64
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("the sensor exited after the overflow: %v\n%s", err, stderr.String())
		default:
		}
		m := scrape(t, "http://"+metrics+"/metrics")
		drops = m["vigil_sensor_drops_total"]
		if drops > 0 && m["vigil_sensor_ring_pending_bytes"] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no drops counted after the storm (metrics %v): a 4 KiB ring should overflow", m)
		}
		time.Sleep(200 * time.Millisecond)
	}

	c, err := hubclient.New(hubclient.Config{Hub: h.url, Token: owner, CAPEM: string(h.ca)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		alerts, _, err := c.ListAlerts(context.Background(), hubclient.AlertListOptions{Subscription: "default"})
		if err != nil {
			t.Fatal(err)
		}
		var got *hubclient.Alert
		for i := range alerts {
			if alerts[i].Properties.AlertType == "vigil.sensor/EventsDropped" {
				got = &alerts[i]
			}
		}
		// The counter may still grow by the odd event after the storm:
		// the alert follows the latest report.
		now := scrape(t, "http://"+metrics+"/metrics")["vigil_sensor_drops_total"]
		if got != nil && float64(got.Properties.Count) == now {
			if got.Properties.Entities.Node != "overflow-node" {
				t.Errorf("the alert names node %q, want overflow-node", got.Properties.Entities.Node)
			}
			t.Logf("sensor counted %.0f lost events; the hub's alert says %d", now, got.Properties.Count)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no vigil.sensor/EventsDropped alert with count %.0f at the hub (found %+v); sensor log:\n%s", now, got, stderr.String())
		}
	}
}

// startSensorProcess runs `vigil sensor --metrics-addr metrics args...` with
// its stderr in logs and waits until it is healthy; it is stopped with
// SIGTERM (or killed) at the end of the test. exited receives its end.
func startSensorProcess(t *testing.T, bin, metrics string, logs io.Writer, args ...string) (*exec.Cmd, chan error) {
	t.Helper()
	cmd := daemonCommand(bin, append([]string{"sensor", "--metrics-addr", metrics}, args...)...)
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState != nil {
			return
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the sensor exited at start: %v\n%s", err, logs)
		default:
		}
		if resp, err := http.Get("http://" + metrics + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return cmd, exited
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sensor was not healthy within 60s:\n%s", logs)
		}
	}
}

// freeLoopbackAddr returns a 127.0.0.1 address with a port free right now.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// scrape reads the unlabelled samples of a Prometheus text exposition.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.ContainsRune(name, '{') {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = v
		}
	}
	return out
}

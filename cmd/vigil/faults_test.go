package main

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

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/hubclient"
	"github.com/vigil-sec/vigil/internal/testenv"
)

// R1 and R2 with real processes: the hub goes away, the sensor keeps
// detecting and queues its alerts on disk, is killed with SIGKILL and
// restarted, and when the hub is back every alert arrives exactly once.
// VIGIL_FAULT_OUTAGE sets how long the hub stays away (default 5s; the long
// version: VIGIL_FAULT_OUTAGE=10m).
func TestAlertsRaisedWhileTheHubIsAwayAndTheSensorIsKilledArriveExactlyOnce(t *testing.T) {
	testenv.RequireRoot(t)
	outage := 5 * time.Second
	if v := os.Getenv("VIGIL_FAULT_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("VIGIL_FAULT_OUTAGE=%q: %v", v, err)
		}
		outage = d
	}
	bin := buildVigil(t)
	dir := t.TempDir()
	owner, err := auth.GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	hubAddr, hubData := freeLoopbackAddr(t), filepath.Join(dir, "hub")
	h := startHubProcessAt(t, bin, hubAddr, hubData, "", owner)
	token, clusterID := registerSensor(t, h, owner)
	tokenFile := filepath.Join(dir, "sensor.token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	// Distinct executables give distinct alerts (alerts aggregate by path).
	shells := make([]string, 20)
	for i := range shells {
		shells[i] = filepath.Join(dir, fmt.Sprintf("sh-%02d", i))
		data, err := os.ReadFile("/bin/dash")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(shells[i], data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	metrics := freeLoopbackAddr(t)
	var logs syncbuf.Buffer
	startSensor := func() (*exec.Cmd, chan error) {
		return startSensorProcess(t, bin, metrics, &logs, "--source", "ebpf", "--file-events=false", "--no-snapshot",
			"--hub-url", h.url, "--hub-token-file", tokenFile,
			"--hub-ca", filepath.Join(hubData, "tls", "ca.crt"), "--cluster-id", clusterID,
			"--outbox-dir", filepath.Join(dir, "outbox"), "--health-interval", "1s", "--node", "fault-node")
	}
	trigger := func(shells []string) {
		for _, sh := range shells {
			if out, err := exec.Command(sh, "-c", "exit 0", "sh", "VIGIL-TEST-ALERT-7f3b").CombinedOutput(); err != nil {
				t.Fatalf("%s: %v %s", sh, err, out)
			}
		}
	}
	waitQueued := func(n float64) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if got := scrape(t, "http://"+metrics+"/metrics")["vigil_outbox_depth_records"]; got >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the outbox holds %v alerts, want %v:\n%s", scrape(t, "http://"+metrics+"/metrics")["vigil_outbox_depth_records"], n, logs.String())
			}
		}
	}

	sensor, exited := startSensor()
	h.stop(t) // the hub goes away
	trigger(shells[:10])
	waitQueued(10)
	if err := sensor.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	_, _ = startSensor()
	trigger(shells[10:])
	waitQueued(20)
	if !strings.Contains(logs.String(), "cannot deliver alerts to the hub") {
		t.Errorf("the sensor did not say it could not reach the hub:\n%s", logs.String())
	}
	time.Sleep(outage)

	h = startHubProcessAt(t, bin, hubAddr, hubData, "", owner)
	c, err := hubclient.New(hubclient.Config{Hub: h.url, Token: owner, CAPEM: string(h.ca)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	count := func() map[string]int {
		alerts, _, err := c.ListAlerts(context.Background(), hubclient.AlertListOptions{AlertType: "vigil.node/TestAlert", Subscription: "default"})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for _, a := range alerts {
			if p := a.Properties.Entities.Process; p != nil && strings.HasPrefix(p.Path, dir) {
				got[filepath.Base(p.Path)] += a.Properties.Count
			}
		}
		return got
	}
	var got map[string]int
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		got = count()
		if len(got) == len(shells) && scrape(t, "http://"+metrics+"/metrics")["vigil_outbox_depth_records"] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the hub came back it holds alerts for %d of %d executables: %v\nsensor log:\n%s", len(got), len(shells), got, logs.String())
		}
	}
	time.Sleep(2 * time.Second) // any late duplicate would land now
	got = count()
	for _, sh := range shells {
		if n := got[filepath.Base(sh)]; n != 1 {
			t.Errorf("alert of %s arrived with count %d, want exactly once", filepath.Base(sh), n)
		}
	}
}

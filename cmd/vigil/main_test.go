package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/testenv"
)

// The README's run command: `vigil sensor --events-out ...` prints every
// event as a JSON line, serves metrics, and shuts down cleanly on SIGTERM
// with everything flushed.
func TestSensorCommandWritesEventsAndStopsCleanly(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	bin := buildVigil(t)
	eventsPath := filepath.Join(dir, "events.jsonl")
	alertsPath := filepath.Join(dir, "alerts.jsonl")
	cmd := daemonCommand(bin, "sensor", "--events-out", eventsPath, "--alerts-out", alertsPath,
		"--metrics-addr", "127.0.0.1:0", "--log-format", "json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	// The log names the metrics address once the sensor is up.
	addrRe := regexp.MustCompile(`http://(127\.0\.0\.1:\d+)/metrics`)
	addrCh := make(chan string, 1)
	var logBuf strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			logBuf.WriteString(sc.Text() + "\n")
			if m := addrRe.FindStringSubmatch(sc.Text()); m != nil && !sent {
				addrCh <- m[1]
				sent = true
			}
		}
	}()
	var addr string
	select {
	case addr = <-addrCh:
	case <-time.After(60 * time.Second):
		t.Fatalf("sensor did not start; log:\n%s", logBuf.String())
	}
	waitHealthy(t, "http://"+addr+"/healthz")

	marker := fmt.Sprintf("readme-marker-%d", time.Now().UnixNano())
	if err := exec.Command("/bin/sh", "-c", "exit 0", "sh", marker).Run(); err != nil {
		t.Fatal(err)
	}
	found := waitForLine(t, eventsPath, func(ev *event.Event) bool {
		return ev.Kind == event.KindExec && strings.Contains(strings.Join(ev.Process.Args, " "), marker)
	})
	if found.Process.Exe == "" || found.Container == nil || found.Source != "ebpf" {
		t.Fatalf("exec event incomplete: %+v", found)
	}

	// The harmless test alert proves rules and alert delivery end to end.
	if err := exec.Command("/bin/sh", "-c", "exit 0", "sh", "VIGIL-TEST-ALERT-7f3b").Run(); err != nil {
		t.Fatal(err)
	}
	al := waitForAlert(t, alertsPath, "vigil.node/TestAlert")
	if al["severity"] != "High" || al["status"] != "Active" {
		t.Fatalf("test alert = %v", al)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sensor exited with %v after SIGTERM; log:\n%s", err, logBuf.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("sensor did not stop within 20s of SIGTERM")
	}
	// Every line in the file is a complete JSON object (nothing torn on exit).
	f, err := os.Open(eventsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	lines := 0
	for sc.Scan() {
		lines++
		var ev event.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %d is not a JSON event: %v", lines, err)
		}
	}
	if lines < 2 {
		t.Fatalf("only %d lines written", lines)
	}
}

func waitForAlert(t *testing.T, path, alertType string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		data, _ := os.ReadFile(path)
		for _, line := range strings.Split(string(data), "\n") {
			var al map[string]any
			if json.Unmarshal([]byte(line), &al) == nil && al["alertType"] == alertType {
				return al
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s alert in %s within 20s", alertType, path)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitHealthy(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not healthy within 30s (last error %v)", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitForLine(t *testing.T, path string, pred func(*event.Event) bool) *event.Event {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		data, _ := os.ReadFile(path)
		for _, line := range strings.Split(string(data), "\n") {
			var ev event.Event
			if json.Unmarshal([]byte(line), &ev) == nil && pred(&ev) {
				return &ev
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching event in %s within 20s", path)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

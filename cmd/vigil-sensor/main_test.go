package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/testenv"
)

// The sensor binary stays lean: it links no Kubernetes client library
// (client-go's clientset, informers, clientcmd, apimachinery's scheme) and
// nothing of the control plane, whose init functions and pages would cost
// every node tens of MiB (issue 8, P6).
func TestTheSensorBinaryLinksNoKubernetesClientAndNoControlPlane(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	// Each is a package path or a path prefix of packages.
	forbidden := []string{"k8s.io", "github.com/vigil-sec/vigil/internal/cli", "github.com/vigil-sec/vigil/internal/hub",
		"github.com/vigil-sec/vigil/internal/agent", "github.com/vigil-sec/vigil/internal/portal", "github.com/vigil-sec/vigil/internal/audit",
		"github.com/vigil-sec/vigil/internal/extcatalog", "github.com/vigil-sec/vigil/internal/store/sqlite",
		"github.com/vigil-sec/vigil/internal/store/postgres", "modernc.org/sqlite", "github.com/jackc/pgx", "github.com/chromedp"}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		for _, f := range forbidden {
			if p := sc.Text(); p == f || strings.HasPrefix(p, f+"/") {
				t.Errorf("vigil-sensor links %s", sc.Text())
			}
		}
	}
}

// vigil-sensor is `vigil sensor`: run as its own program it raises the
// harmless test alert and stops cleanly on SIGTERM.
func TestTheSensorBinaryRaisesTheTestAlertAndStopsOnSIGTERM(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "vigil-sensor")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	alerts := filepath.Join(dir, "alerts.jsonl")
	cmd := exec.Command(bin, "--alerts-out", alerts, "--file-events=false", "--no-snapshot", "--kube-metadata", "off", "--log-format", "json")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if err := exec.Command("/bin/sh", "-c", "exit 0", "sh", "VIGIL-TEST-ALERT-7f3b").Run(); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(alerts); strings.Contains(string(b), "vigil.node/TestAlert") {
			var al map[string]any
			if err := json.Unmarshal([]byte(strings.SplitN(string(b), "\n", 2)[0]), &al); err != nil || al["status"] != "Active" {
				t.Fatalf("alert line %q: %v", b, err)
			}
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("vigil-sensor exited: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no test alert within 60s; log:\n%s", logs.String())
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("vigil-sensor exited with %v after SIGTERM; log:\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("vigil-sensor did not stop within 20s of SIGTERM")
	}
}

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/testenv"
	"github.com/vigil-sec/vigil/internal/testutil/syncbuf"
)

// The README's first command: `vigil up` runs a hub and a sensor for this
// host; a suspicious exec on the host then shows in `vigil alerts list -o
// json` from another process, signed in by vigil up itself.
func TestVigilUpShowsAHostExecAsAnAlertInTheCLI(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	bin := buildVigil(t)
	env := append(os.Environ(), "VIGIL_CONFIG="+filepath.Join(dir, "cli.json"))
	var out, errb syncbuf.Buffer
	up := daemonCommand(bin, "up", "--data-dir", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0", "--file-events=false")
	up.Env, up.Stdout, up.Stderr = env, &out, &errb
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- up.Wait() }()
	defer func() {
		_ = up.Process.Signal(syscall.SIGINT)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("vigil up did not stop cleanly on SIGINT: %v\n%s", err, errb.String())
			}
		case <-time.After(30 * time.Second):
			_ = up.Process.Kill()
			t.Errorf("vigil up did not stop within 30s of SIGINT")
		}
	}()

	// The sensor is up once it logs it; the exec comes after.
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(errb.String(), "sensor running") {
		if time.Now().After(deadline) {
			t.Fatalf("vigil up did not start its sensor within 60s:\nstdout %s\nstderr %s", out.String(), errb.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "Admin token:") {
		t.Fatalf("vigil up printed no admin token:\n%s", out.String())
	}
	if err := exec.Command("/bin/sh", "-c", "exit 0", "sh", "VIGIL-TEST-ALERT-7f3b").Run(); err != nil {
		t.Fatal(err)
	}
	for {
		list := exec.Command(bin, "alerts", "list", "-o", "json", "--query", "[?alertType=='vigil.node/TestAlert']")
		list.Env = env
		b, err := list.Output()
		if err != nil {
			t.Fatalf("vigil alerts list: %v\n%s", err, b)
		}
		var got []map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("vigil alerts list -o json printed %q: %v", b, err)
		}
		if len(got) > 0 {
			if got[0]["severity"] == "" || got[0]["status"] != "Active" {
				t.Errorf("test alert = %v, want an Active alert with a severity", got[0])
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the test alert did not reach the hub within 60s; vigil up stderr:\n%s", errb.String())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// The vigil binary the package's end-to-end tests run, built once.
var vigilBin struct {
	once sync.Once
	dir  string
	path string
	err  error
	out  []byte
}

func TestMain(m *testing.M) {
	code := m.Run()
	if vigilBin.dir != "" {
		os.RemoveAll(vigilBin.dir)
	}
	os.Exit(code)
}

// daemonCommand is exec.Command for a long-running vigil child (hub,
// sensor, up) that dies with the test binary even when the test is killed
// (a timeout), so nothing is left running.
func daemonCommand(bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// buildVigil returns the path of a vigil binary built from this package.
func buildVigil(t testing.TB) string {
	t.Helper()
	vigilBin.once.Do(func() {
		vigilBin.dir, vigilBin.err = os.MkdirTemp("", "vigil-e2e-")
		if vigilBin.err != nil {
			return
		}
		vigilBin.path = filepath.Join(vigilBin.dir, "vigil")
		vigilBin.out, vigilBin.err = exec.Command("go", "build", "-o", vigilBin.path, ".").CombinedOutput()
	})
	if vigilBin.err != nil {
		t.Fatalf("go build: %v\n%s", vigilBin.err, vigilBin.out)
	}
	return vigilBin.path
}

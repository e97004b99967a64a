// Package testenv decides whether tests that need machine-wide privileges
// (root, eBPF, runc, cgroups) can run. Outside CI they skip with the reason;
// in CI (CI=true) a missing prerequisite fails the test instead, so such
// tests can never silently skip there.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Require skips (outside CI) or fails (in CI) the test unless ok holds.
func Require(t testing.TB, ok bool, reason string) {
	t.Helper()
	if ok {
		return
	}
	if InCI() {
		t.Fatalf("prerequisite missing in CI: %s", reason)
	}
	t.Skipf("prerequisite missing: %s (runs in CI, where CI=true makes this a failure)", reason)
}

// RequireRoot requires uid 0.
func RequireRoot(t testing.TB) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "must run as root")
}

// RequireBinary requires an executable on PATH and returns its path.
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Require(t, err == nil, name+" not found on PATH (.ci/run installs it)")
	return p
}

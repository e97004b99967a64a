package detect

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func init() {
	// SIGHUP's default action kills the process; the test binary listens
	// for it from the start, as the sensor does, so a signal sent before
	// HandleSIGHUP registers cannot kill the test run.
	signal.Ignore(syscall.SIGHUP)
}

func TestReloaderKeepsLastGoodEngineAndPicksUpChanges(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "rules.yaml")
	writeFile(t, file, goodRule)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var mu sync.Mutex
	reloads := 0
	r, err := NewReloader(func() (*RuleSet, error) { return LoadFiles(dir) }, log,
		WithDebounce(50*time.Millisecond), OnReload(func(*Engine) { mu.Lock(); reloads++; mu.Unlock() }))
	if err != nil {
		t.Fatal(err)
	}
	first := r.Engine()

	t.Run("an invalid file keeps the last good engine and names the problem", func(t *testing.T) {
		writeFile(t, file, goodRule+"  conditon: x\n")
		err := r.Reload()
		if err == nil || !strings.Contains(err.Error(), "rules.yaml:7:3: unknown key 'conditon'") {
			t.Fatalf("Reload error = %v, want the unknown key with its position", err)
		}
		if r.Engine() != first {
			t.Error("engine was replaced by an invalid rule set")
		}
		writeFile(t, file, strings.Replace(goodRule, `proc.exe == "/bin/good"`, `proc.exee == "/bin/good"`, 1))
		if err := r.Reload(); err == nil || !strings.Contains(err.Error(), "undefined field 'exee'") {
			t.Fatalf("Reload error = %v, want the compile error", err)
		}
		if r.Engine() != first {
			t.Error("engine was replaced by a rule set that does not compile")
		}
	})

	t.Run("a valid change is picked up by the file watcher", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Watch(ctx, dir) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Watch: %v", err)
			}
		}()
		time.Sleep(100 * time.Millisecond) // let the watcher start
		writeFile(t, filepath.Join(dir, "extra.yaml"), ruleYAML("test/Extra", "exec", `proc.exe == "/bin/extra"`))
		writeFile(t, file, goodRule)
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if got := matchIDs(r.Engine(), execEv("/bin/extra")); slices.Equal(got, []string{"test/Extra"}) {
				mu.Lock()
				n := reloads
				mu.Unlock()
				if n < 1 {
					t.Errorf("OnReload called %d times", n)
				}
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("the watcher did not install the new rule within 5s")
	})

	t.Run("a first load that fails is an error", func(t *testing.T) {
		_, err := NewReloader(func() (*RuleSet, error) { return LoadFiles(filepath.Join(dir, "missing")) }, log)
		if err == nil {
			t.Fatal("NewReloader succeeded on a missing directory")
		}
	})
}

// `kill -HUP <sensor>` is how operators reload rules by hand.
func TestSIGHUPReloadsTheRules(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "rules.yaml")
	writeFile(t, file, goodRule)
	r, err := NewReloader(func() (*RuleSet, error) { return LoadFiles(dir) }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.HandleSIGHUP(ctx) }()
	defer func() { cancel(); <-done }()

	writeFile(t, filepath.Join(dir, "extra.yaml"), ruleYAML("test/Hup", "exec", `proc.exe == "/bin/hup"`))
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		// Signal until the handler has registered and reloaded: a signal
		// that arrives before signal.Notify is ignored (see init).
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		if got := matchIDs(r.Engine(), execEv("/bin/hup")); slices.Equal(got, []string{"test/Hup"}) {
			return
		}
	}
	t.Fatal("SIGHUP did not install the new rule within 5s")
}

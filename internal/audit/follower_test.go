package audit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// running is a Follower running in the background over a real file.
type running struct {
	t      *testing.T
	f      *Follower
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
	lines  []string
}

func startFollower(t *testing.T, cfg FollowerConfig) *running {
	t.Helper()
	cfg.Poll = 5 * time.Millisecond
	f, err := NewFollower(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{t: t, f: f, cancel: cancel, done: make(chan error, 1)}
	go func() {
		r.done <- f.Run(ctx, func(line []byte) {
			r.mu.Lock()
			r.lines = append(r.lines, string(line))
			r.mu.Unlock()
		})
	}()
	t.Cleanup(func() { r.stop() })
	return r
}

func (r *running) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	if err := <-r.done; err != nil {
		r.t.Errorf("follower: %v", err)
	}
}

// waitLines waits until exactly want was handed on (in order), failing on
// anything else after the deadline.
func (r *running) waitLines(want ...string) {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.mu.Lock()
		got := slices.Clone(r.lines)
		r.mu.Unlock()
		if slices.Equal(got, want) {
			// Nothing more may arrive (no duplicates).
			time.Sleep(50 * time.Millisecond)
			r.mu.Lock()
			got = slices.Clone(r.lines)
			r.mu.Unlock()
			if !slices.Equal(got, want) {
				r.t.Fatalf("lines %q, want exactly %q", got, want)
			}
			return
		}
		if time.Now().After(deadline) || len(got) > len(want) {
			r.t.Fatalf("lines %q, want %q", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func appendTo(t *testing.T, path string, lines ...string) {
	t.Helper()
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	for _, l := range lines {
		if _, err := fmt.Fprintln(fh, l); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTheFollowerFollowsTheLogAcrossRotationByRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	appendTo(t, path, "l1", "l2")
	m := NewMetrics(nil)
	r := startFollower(t, FollowerConfig{Path: path, Metrics: m})
	r.waitLines("l1", "l2")

	// The API server's writer renames the file, finishes its last write
	// into the renamed file, and opens a new one.
	old, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, filepath.Join(dir, "audit-2026-11-25T10-00-00.000.log")); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(old, "l3")
	old.Close()
	appendTo(t, path, "l4", "l5")
	r.waitLines("l1", "l2", "l3", "l4", "l5")
	if n := value(t, m.Reopened.WithLabelValues("rename")); n != 1 {
		t.Errorf("rename reopen count %v, want 1", n)
	}
}

func TestTheFollowerStartsOverWhenTheLogIsTruncated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	appendTo(t, path, "first-long-line-1", "first-long-line-2")
	m := NewMetrics(nil)
	r := startFollower(t, FollowerConfig{Path: path, Metrics: m})
	r.waitLines("first-long-line-1", "first-long-line-2")
	// copytruncate: the file is emptied in place and written again.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	appendTo(t, path, "l3")
	r.waitLines("first-long-line-1", "first-long-line-2", "l3")
	if n := value(t, m.Reopened.WithLabelValues("truncate")); n != 1 {
		t.Errorf("truncate reopen count %v, want 1", n)
	}
}

func TestARestartResumesAtTheSavedPositionWithoutDuplicatesOrLosses(t *testing.T) {
	dir := t.TempDir()
	path, state := filepath.Join(dir, "audit.log"), filepath.Join(dir, "state", "pos.json")
	if err := os.Mkdir(filepath.Dir(state), 0o700); err != nil {
		t.Fatal(err)
	}
	appendTo(t, path, "l1", "l2", "l3")
	r := startFollower(t, FollowerConfig{Path: path, StateFile: state})
	r.waitLines("l1", "l2", "l3")
	r.stop()

	appendTo(t, path, "l4", "l5")
	r2 := startFollower(t, FollowerConfig{Path: path, StateFile: state})
	r2.waitLines("l4", "l5")
	r2.stop()

	t.Run("after a rotation while stopped the rest of the rotated file comes first", func(t *testing.T) {
		appendTo(t, path, "l6")
		if err := os.Rename(path, path+".1"); err != nil {
			t.Fatal(err)
		}
		appendTo(t, path, "l7")
		r3 := startFollower(t, FollowerConfig{Path: path, StateFile: state})
		r3.waitLines("l6", "l7")
	})
}

func TestWithoutASavedPositionFromEndSkipsTheHistory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	appendTo(t, path, "old1", "old2")
	r := startFollower(t, FollowerConfig{Path: path, FromEnd: true})
	time.Sleep(30 * time.Millisecond)
	appendTo(t, path, "new")
	r.waitLines("new")
}

func TestAHugeLineIsSkippedWithBoundedMemoryAndTheNextLineStillArrives(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	m := NewMetrics(nil)
	r := startFollower(t, FollowerConfig{Path: path, MaxLine: 4096, Metrics: m})
	huge := strings.Repeat("x", 1<<20)
	appendTo(t, path, "before", huge, "after")
	r.waitLines("before", "after")
	if n := value(t, m.Skipped.WithLabelValues(SkipOversize)); n != 1 {
		t.Errorf("oversize count %v, want 1", n)
	}
	r.stop()
	if c := cap(r.f.pending); c > 2*4096 {
		t.Errorf("the follower buffered %d bytes for a 1 MiB line with a 4 KiB limit", c)
	}
}

func TestALineWrittenInTwoPartsIsHandedOnOnceWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	r := startFollower(t, FollowerConfig{Path: path})
	fmt.Fprint(fh, `{"kind":"Event",`)
	time.Sleep(30 * time.Millisecond)
	fmt.Fprint(fh, `"verb":"get"}`+"\n")
	r.waitLines(`{"kind":"Event","verb":"get"}`)
}

func TestTheFollowerWaitsForTheLogToAppear(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	r := startFollower(t, FollowerConfig{Path: path})
	time.Sleep(20 * time.Millisecond)
	appendTo(t, path, "l1")
	r.waitLines("l1")
}

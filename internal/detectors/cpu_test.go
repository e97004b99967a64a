package detectors

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/testenv"
)

// writeStat writes a /proc/<pid>/stat line with the given CPU ticks and start.
func writeStat(t *testing.T, root string, pid int, comm string, utime, stime, start uint64) {
	t.Helper()
	dir := filepath.Join(root, itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// fields 3..22: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime priority nice threads itrealvalue starttime
	line := fmt.Sprintf("%d (%s) R 1 1 1 0 -1 4194304 0 0 0 0 %d %d 0 0 20 0 1 0 %d 1000 10 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
		pid, comm, utime, stime, start)
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestParseCPUStat(t *testing.T) {
	for _, tc := range []struct {
		name        string
		comm        string
		ticks, strt uint64
	}{
		{"a plain comm", "xmrig", 1234 + 56, 98765},
		{"a comm with spaces and parentheses cannot shift the fields", "a) R 1 (b", 7 + 8, 42},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeStat(t, root, 77, tc.comm, tc.ticks-tc.ticks/2, tc.ticks/2, tc.strt)
			b, _ := os.ReadFile(filepath.Join(root, "77", "stat"))
			ticks, start, err := parseCPUStat(b)
			if err != nil || ticks != tc.ticks || start != tc.strt {
				t.Fatalf("parseCPUStat = %d, %d, %v; want %d, %d", ticks, start, err, tc.ticks, tc.strt)
			}
		})
	}
	t.Run("a truncated line is an error", func(t *testing.T) {
		if _, _, err := parseCPUStat([]byte("1 (x) R 1 1")); err == nil {
			t.Fatal("no error for a truncated stat line")
		}
	})
}

// TestSustainedCPUOnFakeProc drives the sampler over a synthetic procfs.
func TestSustainedCPUOnFakeProc(t *testing.T) {
	const start = 5000 // ticks
	cases := []struct {
		name string
		// ticksPerSec of CPU time the process accrues; host marks it a
		// host process; reuse replaces the pid's process midway.
		ticksPerSec uint64
		host, reuse bool
		want        int
	}{
		{name: "a container process at 100% of a core for the window raises one alert", ticksPerSec: 100, want: 1},
		{name: "a multi-threaded process at 190% raises one alert", ticksPerSec: 190, want: 1},
		{name: "a container process at 50% raises nothing", ticksPerSec: 50, want: 0},
		{name: "a host process is not sampled", ticksPerSec: 100, host: true, want: 0},
		{name: "a reused pid is not blamed on the process the exec described", ticksPerSec: 100, reuse: true, want: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			s, c, k := newTestSet(t, Options{ProcRoot: root, CPUInterval: 5 * time.Second, CPUWindow: 60 * time.Second})
			g := gen{c}
			cid := "c1"
			if tc.host {
				cid = ""
			}
			ev := g.exec(cid, 4242, "/usr/local/bin/pause", "pause", "--threads", "2")
			ev.Process.StartTime = start * event.TickNS
			s.Observe(ev)
			var used uint64
			for i := 0; i <= 20; i++ { // 100 s at 5 s
				st := uint64(start)
				if tc.reuse && i >= 3 {
					st = start + 999
				}
				writeStat(t, root, 4242, "pause", used, 0, st)
				s.cpu.sample()
				c.advance(5 * time.Second)
				used += tc.ticksPerSec * 5
			}
			as := k.ofType(AlertTypeCPU)
			if len(as) != tc.want {
				t.Fatalf("cpu alerts = %d, want %d (stats %+v)", len(as), tc.want, s.Stats())
			}
			if tc.reuse && s.Stats().CPUProcesses != 0 {
				t.Errorf("the reused pid is still followed")
			}
			if tc.want == 0 {
				return
			}
			a := as[0]
			if a.DisplayName != "Process with sustained high CPU usage detected in a container" || a.Severity != alert.SeverityMedium ||
				!slices.Equal(a.Tactics, []string{"Impact"}) || !slices.Equal(a.Techniques, []string{"T1496"}) {
				t.Errorf("alert = %q %s %v %v", a.DisplayName, a.Severity, a.Tactics, a.Techniques)
			}
			if a.Entities.Process.Path != "/usr/local/bin/pause" || a.Entities.Container.ID != "c1" {
				t.Errorf("entities = %+v", a.Entities)
			}
			if !strings.Contains(a.Description, "mining") || !a.StartTime.After(ev.Time) {
				t.Errorf("description %q or start time %v (exec at %v) is off", a.Description, a.StartTime, ev.Time)
			}
			want := itoa(int(tc.ticksPerSec))
			if got := a.Entities.Facts["cpuPercent"]; got != want {
				t.Errorf("cpuPercent = %q, want %q", got, want)
			}
		})
	}
}

// procStart reads a live process's start time (clock ticks since boot).
func procStart(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("reading stat of pid %d: %v", pid, err)
	}
	_, start, err := parseCPUStat(b)
	if err != nil {
		t.Fatal(err)
	}
	return start
}

// TestSustainedCPULive runs a real busy loop and a real sleeper, both
// declared to be in containers, and the real sampler on /proc.
func TestSustainedCPULive(t *testing.T) {
	sh := testenv.RequireBinary(t, "sh")
	start := func(script string) *exec.Cmd {
		cmd := exec.Command(sh, "-c", script)
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting %q: %v", script, err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		return cmd
	}
	busy := start("while :; do :; done")
	idle := start("sleep 60")

	k := &sink{}
	// The threshold is below 80% so a loaded 2-core CI machine running
	// other tests in parallel still gives the loop enough CPU; the idle
	// process (~0%) is far below it either way.
	s := New(Options{CPUInterval: 250 * time.Millisecond, CPUWindow: 2 * time.Second, CPUThreshold: 50}, k.raise)
	for _, cmd := range []*exec.Cmd{busy, idle} {
		pid := cmd.Process.Pid
		s.Observe(&event.Event{Kind: event.KindExec, Time: time.Now(), Process: event.Process{
			PID: pid, StartTime: procStart(t, pid) * event.TickNS, Exe: sh, Args: cmd.Args,
		}, Container: &event.Container{ID: "live-cpu-" + itoa(pid), Runtime: "runc"}})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	deadline := time.Now().Add(15 * time.Second)
	for len(k.ofType(AlertTypeCPU)) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // more windows pass: still one alert
	as := k.ofType(AlertTypeCPU)
	if len(as) != 1 {
		t.Fatalf("cpu alerts = %d, want exactly 1 (stats %+v)", len(as), s.Stats())
	}
	if got := as[0].Entities.Process.PID; got != busy.Process.Pid {
		t.Fatalf("alert is about pid %d, want the busy loop %d", got, busy.Process.Pid)
	}
	t.Logf("busy loop measured at %s%% of a core", as[0].Entities.Facts["cpuPercent"])

	// Once the busy loop is killed the sampler stops following it.
	_ = busy.Process.Kill()
	_ = busy.Wait()
	deadline = time.Now().Add(5 * time.Second)
	for s.Stats().CPUProcesses != 1 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := s.Stats().CPUProcesses; n != 1 {
		t.Fatalf("followed processes after the loop died = %d, want 1 (the sleeper)", n)
	}
}

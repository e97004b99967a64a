package proctree

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigil-sec/vigil/internal/event"
)

// bootNS is CLOCK_BOOTTIME, the clock process start times use.
func bootNS(t *testing.T) uint64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		t.Fatalf("clock_gettime(CLOCK_BOOTTIME): %v", err)
	}
	return uint64(ts.Nano())
}

func TestLiveProc(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}

	t.Run("seeding the real procfs finds this test process and its parent chain up to pid 1", func(t *testing.T) {
		tb := New(Options{})
		before := bootNS(t)
		began := time.Now()
		n, err := tb.SeedFromProc()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("seeded %d processes from /proc in %v", n, time.Since(began))
		if n < 2 || tb.Len() != n {
			t.Fatalf("seeded %d, Len %d", n, tb.Len())
		}
		in, ok := tb.LookupPID(os.Getpid())
		if !ok {
			t.Fatal("test process not seeded")
		}
		p := in.Process
		if p.Exe != self || !slices.Equal(p.Args, os.Args) || p.Cwd != cwd || p.PPID != os.Getppid() ||
			p.UID != uint32(os.Getuid()) || p.GID != uint32(os.Getgid()) {
			t.Fatalf("seeded self = %+v\nwant exe %s args %q cwd %s ppid %d", p, self, os.Args, cwd, os.Getppid())
		}
		// The start time converts ticks to boot-clock ns: it lies between
		// boot and now, within the test binary's lifetime.
		if p.StartTime > before || before-p.StartTime > uint64(time.Hour) {
			t.Fatalf("start time %d ns is not within the last hour before %d ns since boot", p.StartTime, before)
		}
		if _, ok := tb.Lookup(event.MakeKey(os.Getpid(), p.StartTime)); !ok {
			t.Fatal("self not found by its key")
		}
		chain := []int{os.Getpid()}
		for k := in.Parent; k != (event.Key{}); {
			pin, ok := tb.Lookup(k)
			if !ok {
				t.Fatalf("ancestor %v of the chain %v is not in the table", k, chain)
			}
			chain = append(chain, pin.Process.PID)
			k = pin.Parent
			if len(chain) > 64 {
				t.Fatalf("parent chain does not end: %v", chain)
			}
		}
		if chain[1] != os.Getppid() || chain[len(chain)-1] != 1 {
			t.Fatalf("parent chain %v does not go from our parent %d to pid 1", chain, os.Getppid())
		}
		// An event of ours gets that chain as ancestry.
		ev := &event.Event{Kind: event.KindConnect, Process: event.Process{PID: os.Getpid(), StartTime: p.StartTime}}
		tb.Apply(ev)
		want := min(len(chain)-1, DefaultAncestryDepth)
		if len(ev.Ancestry) != want || ev.Ancestry[0].PID != os.Getppid() || ev.Process.Exe != self {
			t.Fatalf("ancestry of our own event = %+v, want %d levels starting at %d", ev.Ancestry, want, os.Getppid())
		}
	})

	t.Run("a child started after the first seed is found after a re-seed", func(t *testing.T) {
		sleep, err := exec.LookPath("sleep")
		if err != nil {
			t.Fatalf("sleep not found: %v", err)
		}
		sleepExe, err := filepath.EvalSymlinks(sleep)
		if err != nil {
			t.Fatal(err)
		}
		tb := New(Options{})
		if _, err := tb.SeedFromProc(); err != nil {
			t.Fatal(err)
		}
		cmd := startSleep(t, sleep)
		if _, ok := tb.LookupPID(cmd.Process.Pid); ok {
			t.Fatal("child found before it was seeded or reported")
		}
		waitExe(t, cmd.Process.Pid, sleepExe)
		if _, err := tb.SeedFromProc(); err != nil {
			t.Fatal(err)
		}
		in, ok := tb.LookupPID(cmd.Process.Pid)
		if !ok {
			t.Fatal("child not found after re-seed")
		}
		selfIn, _ := tb.LookupPID(os.Getpid())
		if in.Process.Exe != sleepExe || !slices.Equal(in.Process.Args, []string{sleep, "30"}) ||
			in.Parent != selfIn.Process.Key() {
			t.Fatalf("child = %+v parent %v; want %s under %v", in.Process, in.Parent, sleepExe, selfIn.Process.Key())
		}
	})

	t.Run("a process started after seeding is read from procfs on its first event", func(t *testing.T) {
		sleep, err := exec.LookPath("sleep")
		if err != nil {
			t.Fatalf("sleep not found: %v", err)
		}
		sleepExe, err := filepath.EvalSymlinks(sleep)
		if err != nil {
			t.Fatal(err)
		}
		tb := New(Options{})
		if _, err := tb.SeedFromProc(); err != nil {
			t.Fatal(err)
		}
		cmd := startSleep(t, sleep)
		waitExe(t, cmd.Process.Pid, sleepExe)
		ev := &event.Event{Kind: event.KindConnect, Process: event.Process{PID: cmd.Process.Pid}}
		tb.Apply(ev)
		if ev.Process.Exe != sleepExe || ev.Process.StartTime == 0 || ev.Parent == nil || ev.Parent.PID != os.Getpid() {
			t.Fatalf("event of a missed process = %+v parent %+v", ev.Process, ev.Parent)
		}
	})
}

func startSleep(t *testing.T, sleep string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(sleep, "30")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", sleep, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// waitExe waits until the child has exec'd (its exe link shows want).
func waitExe(t *testing.T, pid int, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if exe, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "exe")); exe == want {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("pid %d did not exec %s within 5s", pid, want)
}

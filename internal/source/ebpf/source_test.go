package ebpf

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

func marker(t *testing.T) string {
	return fmt.Sprintf("vigil-%s-%d-%d", strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()), os.Getpid(), time.Now().UnixNano())
}

func realPath(t *testing.T, p string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func execWith(mark string) func(*event.Event) bool {
	return func(e *event.Event) bool { return e.Kind == event.KindExec && hasArg(e, mark) }
}

func TestProcessEvents(t *testing.T) {
	c := startSource(t, Config{})

	t.Run("exec carries full argv, resolved exe, cwd, uid, cgroup and parent", func(t *testing.T) {
		dir := realPath(t, t.TempDir())
		mark := marker(t)
		script := "true " + mark
		cmd := exec.Command("/bin/sh", "-c", script)
		cmd.Dir = dir
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		ev := c.waitFor(t, "exec", execWith(mark))
		p := ev.Process
		if want := []string{"/bin/sh", "-c", script}; !reflect.DeepEqual(p.Args, want) {
			t.Errorf("Args = %q, want %q", p.Args, want)
		}
		if want := realPath(t, "/bin/sh"); p.Exe != want {
			t.Errorf("Exe = %q, want %q (symlinks resolved)", p.Exe, want)
		}
		if p.Cwd != dir {
			t.Errorf("Cwd = %q, want %q", p.Cwd, dir)
		}
		if p.PID != cmd.Process.Pid || p.PPID != os.Getpid() || p.UID != 0 || p.EUID != 0 {
			t.Errorf("pid/ppid/uid = %d/%d/%d, want %d/%d/0", p.PID, p.PPID, p.UID, cmd.Process.Pid, os.Getpid())
		}
		var st syscall.Stat_t
		if err := syscall.Stat(p.Exe, &st); err != nil {
			t.Fatal(err)
		}
		if p.ExeInode != st.Ino || uint64(p.ExeDev) != st.Dev {
			t.Errorf("exe inode/dev = %d/%d, want %d/%d", p.ExeInode, p.ExeDev, st.Ino, st.Dev)
		}
		if !strings.HasPrefix(p.Cgroup, "/") || p.CgroupID == 0 {
			t.Errorf("cgroup = %q (id %d), want an absolute cgroup path and id", p.Cgroup, p.CgroupID)
		}
		if p.StartTime == 0 || p.Comm != "sh" || ev.Source != "ebpf" || time.Since(ev.Time).Abs() > time.Minute {
			t.Errorf("start/comm/source/time = %d/%q/%q/%v", p.StartTime, p.Comm, ev.Source, ev.Time)
		}
		if p.ExeUpperLayer || p.ExeMemfd || p.ExeDeleted || p.ArgsTruncated {
			t.Errorf("plain exec flagged: %+v", p)
		}
	})

	t.Run("argv longer than the cap is truncated and flagged", func(t *testing.T) {
		mark := marker(t)
		long := strings.Repeat("x", 5000)
		if err := exec.Command("/bin/true", mark, long).Run(); err != nil {
			t.Fatal(err)
		}
		ev := c.waitFor(t, "exec", execWith(mark))
		if !ev.Process.ArgsTruncated || len(ev.Process.Args) != 3 || len(ev.Process.Args[2]) >= len(long) {
			t.Errorf("args truncated=%v, %d args", ev.Process.ArgsTruncated, len(ev.Process.Args))
		}
	})

	t.Run("exit reports the exit code of sh -c 'exit 3'", func(t *testing.T) {
		cmd := exec.Command("/bin/sh", "-c", "exit 3; "+marker(t))
		_ = cmd.Run()
		pid := cmd.Process.Pid
		ev := c.waitFor(t, "exit", func(e *event.Event) bool { return e.Kind == event.KindExit && e.Process.PID == pid })
		if ev.Exit.Code != 3 || ev.Exit.Signal != 0 {
			t.Errorf("exit = %+v, want code 3", ev.Exit)
		}
	})

	t.Run("exit of a killed process reports the signal", func(t *testing.T) {
		cmd := exec.Command("/bin/sh", "-c", "kill -KILL $$; "+marker(t))
		_ = cmd.Run()
		pid := cmd.Process.Pid
		ev := c.waitFor(t, "exit", func(e *event.Event) bool { return e.Kind == event.KindExit && e.Process.PID == pid })
		if ev.Exit.Signal != int(syscall.SIGKILL) {
			t.Errorf("exit = %+v, want signal 9", ev.Exit)
		}
	})

	t.Run("fork is reported for new processes but not for threads", func(t *testing.T) {
		before := threadCount(t)
		if peak := spawnThreads(t, before+4); peak <= before {
			t.Fatalf("test could not create new threads (%d before, %d during)", before, peak)
		}
		cmd := exec.Command("/bin/true", marker(t))
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		child := cmd.Process.Pid
		ev := c.waitFor(t, "fork", func(e *event.Event) bool { return e.Kind == event.KindFork && e.Fork.ChildPID == child })
		if ev.Parent == nil || ev.Parent.PID != os.Getpid() || ev.Process.PID != child || ev.Process.PPID != os.Getpid() {
			t.Errorf("fork event = %+v parent %+v", ev.Process, ev.Parent)
		}
		if ev := c.find(func(e *event.Event) bool { return e.Kind == event.KindFork && e.Process.PID == os.Getpid() }); ev != nil {
			t.Errorf("a thread of the test process was reported as a fork: %+v", ev.Process)
		}
	})
}

func threadCount(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// spawnThreads makes the Go runtime clone at least n-existing new OS
// threads: n goroutines each hold a locked thread at the same time, then
// exit locked, which destroys their threads. It returns the thread count
// while they were all held.
func spawnThreads(t *testing.T, n int) int {
	var held, release sync.WaitGroup
	held.Add(n)
	release.Add(1)
	var done sync.WaitGroup
	for i := 0; i < n; i++ {
		done.Add(1)
		go func() {
			defer done.Done()
			runtime.LockOSThread()
			held.Done()
			release.Wait()
		}()
	}
	held.Wait()
	peak := threadCount(t)
	release.Done()
	done.Wait()
	return peak
}

func TestDriftFlags(t *testing.T) {
	c := startSource(t, Config{})

	t.Run("overlay upper-layer executable is flagged, lower-layer one is not", func(t *testing.T) {
		// Not t.TempDir(): the subtest name's comma would break the overlay options.
		base, err := os.MkdirTemp("", "vigil-ovl-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(base) })
		lower, upper, work, merged := filepath.Join(base, "l"), filepath.Join(base, "u"), filepath.Join(base, "w"), filepath.Join(base, "m")
		for _, d := range []string{lower, upper, work, merged} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		copyFile(t, "/bin/true", filepath.Join(lower, "lowertrue"))
		copyFile(t, "/bin/true", filepath.Join(upper, "uppertrue"))
		opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)
		if err := syscall.Mount("overlay", merged, "overlay", 0, opts); err != nil {
			t.Fatalf("mount overlay: %v", err)
		}
		t.Cleanup(func() { _ = syscall.Unmount(merged, syscall.MNT_DETACH) })

		for _, tc := range []struct {
			bin   string
			upper bool
		}{{"lowertrue", false}, {"uppertrue", true}} {
			mark := marker(t)
			if err := exec.Command(filepath.Join(merged, tc.bin), mark).Run(); err != nil {
				t.Fatal(err)
			}
			ev := c.waitFor(t, "exec of "+tc.bin, execWith(mark))
			if ev.Process.ExeUpperLayer != tc.upper {
				t.Errorf("%s: ExeUpperLayer = %v, want %v", tc.bin, ev.Process.ExeUpperLayer, tc.upper)
			}
			if want := filepath.Join(merged, tc.bin); ev.Process.Exe != want {
				t.Errorf("Exe = %q, want %q", ev.Process.Exe, want)
			}
		}
	})

	t.Run("executable run from a memfd is flagged", func(t *testing.T) {
		mark := marker(t)
		runHelperCmd(t, "memfd", "", mark)
		ev := c.waitFor(t, "memfd exec", helperExec(mark))
		if !ev.Process.ExeMemfd || ev.Process.ExeDeleted {
			t.Errorf("memfd=%v deleted=%v exe=%q, want memfd only", ev.Process.ExeMemfd, ev.Process.ExeDeleted, ev.Process.Exe)
		}
		if !strings.Contains(ev.Process.Exe, "memfd:vigil-test") {
			t.Errorf("Exe = %q, want the memfd name", ev.Process.Exe)
		}
	})

	t.Run("executable unlinked before exec is flagged deleted", func(t *testing.T) {
		mark := marker(t)
		runHelperCmd(t, "deleted", filepath.Join(t.TempDir(), "gone"), mark)
		ev := c.waitFor(t, "deleted exec", helperExec(mark))
		if !ev.Process.ExeDeleted || ev.Process.ExeMemfd {
			t.Errorf("deleted=%v memfd=%v, want deleted only", ev.Process.ExeDeleted, ev.Process.ExeMemfd)
		}
	})
}

// helperExec matches the helper's second exec (of the copied /bin/true),
// not the exec of the test binary itself.
func helperExec(mark string) func(*event.Event) bool {
	return func(e *event.Event) bool {
		return e.Kind == event.KindExec && hasArg(e, mark) && len(e.Process.Args) > 0 && e.Process.Args[0] == "true"
	}
}

func runHelperCmd(t *testing.T, mode, file, mark string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, mark)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "VIGIL_HELPER_FILE="+file)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helper %s: %v: %s", mode, err, out)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestFileEvents(t *testing.T) {
	dir := realPath(t, t.TempDir())
	secret := filepath.Join(dir, "secret")
	if err := os.Mkdir(secret, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{filepath.Join(secret, "token"), filepath.Join(dir, "plain"), filepath.Join(dir, "script")} {
		if err := os.WriteFile(f, []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := startSource(t, Config{FileEvents: true, SensitivePrefixes: []string{secret + "/"}})
	sh := func(t *testing.T, script string) int {
		t.Helper()
		cmd := exec.Command("/bin/sh", "-c", script)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", script, err, out)
		}
		return cmd.Process.Pid
	}
	fileEv := func(kind event.Kind, path string) func(*event.Event) bool {
		return func(e *event.Event) bool { return e.Kind == kind && e.File != nil && e.File.Path == path }
	}

	t.Run("creating a file through a relative path emits open with its absolute path", func(t *testing.T) {
		sh(t, "echo hi > created")
		ev := c.waitFor(t, "open", fileEv(event.KindOpen, filepath.Join(dir, "created")))
		if f := ev.File; !f.Create || !f.Write || !f.Trunc || f.Result < 0 || f.Sensitive || f.Mode != 0o666 {
			t.Errorf("open = %+v, want create+write+trunc with mode 0666 (the shell's), success", f)
		}
	})

	t.Run("a failed read of a sensitive path is reported with the path asked for and the error", func(t *testing.T) {
		sh(t, "cat secret/missing 2>/dev/null; exit 0")
		ev := c.waitFor(t, "failed sensitive open", fileEv(event.KindOpen, filepath.Join(secret, "missing")))
		if f := ev.File; !f.Sensitive || f.Write || f.Result != -int(syscall.ENOENT) {
			t.Errorf("open = %+v, want a sensitive read failing with ENOENT", f)
		}
	})

	t.Run("chmod +x emits chmod", func(t *testing.T) {
		sh(t, "chmod +x script")
		ev := c.waitFor(t, "chmod", fileEv(event.KindChmod, filepath.Join(dir, "script")))
		if ev.File.Mode&0o111 == 0 || ev.File.Result != 0 {
			t.Errorf("chmod = %+v", ev.File)
		}
	})

	t.Run("reading a sensitive prefix emits open, an ordinary read does not", func(t *testing.T) {
		sh(t, "cat "+filepath.Join(dir, "plain")+" secret/token >/dev/null")
		ev := c.waitFor(t, "sensitive open", fileEv(event.KindOpen, filepath.Join(secret, "token")))
		if !ev.File.Sensitive || ev.File.Write {
			t.Errorf("open = %+v, want sensitive read", ev.File)
		}
		settle()
		if ev := c.find(fileEv(event.KindOpen, filepath.Join(dir, "plain"))); ev != nil {
			t.Errorf("ordinary read reported: %+v", ev.File)
		}
	})

	t.Run("reading a sensitive file through a symlink in another top-level directory emits open with the resolved path", func(t *testing.T) {
		// The BPF side drops read-only opens whose first path component
		// no sensitive prefix has (here: only "tmp" has); the link lives
		// under /var, so this checks it judges the resolved path.
		linkDir, err := os.MkdirTemp("/var/tmp", "vigil-link-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(linkDir) })
		link := filepath.Join(linkDir, "innocent")
		if err := os.Symlink(filepath.Join(secret, "token"), link); err != nil {
			t.Fatal(err)
		}
		pid := sh(t, "exec cat "+link+" >/dev/null")
		ev := c.waitFor(t, "sensitive open through the symlink", func(e *event.Event) bool {
			return fileEv(event.KindOpen, filepath.Join(secret, "token"))(e) && e.Process.PID == pid
		})
		if !ev.File.Sensitive || ev.File.Write {
			t.Errorf("open = %+v, want sensitive read", ev.File)
		}
	})

	t.Run("rename and unlink are reported with both paths", func(t *testing.T) {
		sh(t, "echo x > a && mv a b && rm b")
		ev := c.waitFor(t, "rename", fileEv(event.KindRename, filepath.Join(dir, "a")))
		if ev.File.NewPath != filepath.Join(dir, "b") || ev.File.Result != 0 {
			t.Errorf("rename = %+v", ev.File)
		}
		c.waitFor(t, "unlink", fileEv(event.KindUnlink, filepath.Join(dir, "b")))
	})

	t.Run("memfd_create is reported with its name", func(t *testing.T) {
		runHelperCmd(t, "memfd", "", marker(t))
		ev := c.waitFor(t, "memfd", func(e *event.Event) bool {
			return e.Kind == event.KindMemfd && e.Syscall.Name2 == "vigil-test"
		})
		if ev.Syscall.Name != "memfd_create" || ev.Syscall.Result < 0 {
			t.Errorf("memfd = %+v", ev.Syscall)
		}
	})

	t.Run("unshare of a user namespace is reported", func(t *testing.T) {
		unshare, err := exec.LookPath("unshare")
		if err != nil {
			t.Fatalf("unshare(1) not found (util-linux): %v", err)
		}
		pid := sh(t, "exec "+unshare+" -U true")
		ev := c.waitFor(t, "unshare", func(e *event.Event) bool { return e.Kind == event.KindUnshare && e.Process.PID == pid })
		if !strings.Contains(ev.Syscall.Namespace, "user") || ev.Syscall.Result != 0 {
			t.Errorf("unshare = %+v", ev.Syscall)
		}
	})

	t.Run("the sensor's own file activity is not reported", func(t *testing.T) {
		own := filepath.Join(dir, "own")
		if err := os.WriteFile(own, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		sh(t, "true") // a later event: everything before it has been read
		settle()
		if ev := c.find(fileEv(event.KindOpen, own)); ev != nil {
			t.Errorf("own open reported: %+v", ev.Process)
		}
	})

	if missing := c.src.Missing(); slices.Contains(missing, event.KindOpen) {
		t.Errorf("Missing() = %v with file events on", missing)
	}
}

func TestMissingKindsWithoutFileEvents(t *testing.T) {
	c := startSource(t, Config{})
	missing := c.src.Missing()
	for _, k := range []event.Kind{event.KindOpen, event.KindMount, event.KindConnect} {
		if !slices.Contains(missing, k) {
			t.Errorf("Missing() = %v lacks %s", missing, k)
		}
	}
	if slices.Contains(missing, event.KindExec) {
		t.Errorf("Missing() = %v includes exec", missing)
	}
}

func TestDropsAreCountedExactly(t *testing.T) {
	c := startStalled(t, Config{RingBytes: 4096})
	const n = 200
	for i := 0; i < n; i++ {
		if err := exec.Command("/bin/true").Run(); err != nil {
			t.Fatal(err)
		}
	}
	c.run()
	deadline := time.Now().Add(10 * time.Second)
	var st Stats
	for time.Now().Before(deadline) {
		st = c.src.Stats()
		if st.RingPending == 0 && st.KernelSeen == st.Delivered+st.KernelDropped {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.KernelSeen-st.Delivered != st.KernelDropped {
		t.Fatalf("seen %d - delivered %d != dropped %d", st.KernelSeen, st.Delivered, st.KernelDropped)
	}
	if st.KernelDropped == 0 {
		t.Fatalf("no drops with a 4 KiB ring and %d execs unread: %+v", n, st)
	}
	t.Logf("stats: %+v", st)
}

// Every program loads against the shared ring whatever its size: the
// file and network objects declare the ring at the default size and must
// adopt the one created at run time (--ring-size).
func TestEveryEventKindLoadsWithANonDefaultRingSize(t *testing.T) {
	for _, size := range []int{4096, 16 << 20} {
		t.Run(fmt.Sprintf("%d bytes", size), func(t *testing.T) {
			c := startSource(t, Config{RingBytes: size, FileEvents: true, NetworkEvents: true})
			for _, k := range []event.Kind{event.KindOpen, event.KindConnect, event.KindDNS, event.KindExec} {
				if slices.Contains(c.src.Missing(), k) {
					t.Errorf("with a %d-byte ring, %s events are missing (Missing() = %v)", size, k, c.src.Missing())
				}
			}
		})
	}
}

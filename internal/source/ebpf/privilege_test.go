package ebpf

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vigil-sec/vigil/internal/bpf"
	"github.com/vigil-sec/vigil/internal/event"
)

// Privilege helper modes: the source ignores the sensor's own process, so
// the privileged syscalls are made by a re-executed test binary.
//
//	ptrace attach|seize|poke PID   trace PID (poke: write a stack word back unchanged), detach
//	finit_module FILE PARAMS       finit_module on FILE; prints the errno it got
//	init_module FILE PARAMS        init_module with FILE's bytes; prints the errno it got
//	setns                          setns into its own network namespace
//	mount SOURCE TARGET FLAGS      mount a tmpfs (run it in a private mount namespace);
//	                               prints the errno it got, 0 for success
func runPrivilegeHelper(mode string, args []string) (handled bool, err error) {
	switch mode {
	case "ptrace", "finit_module", "init_module", "setns", "mount":
	default:
		return false, nil
	}
	// ptrace and setns act on the calling thread: keep it for the process.
	runtime.LockOSThread()
	switch mode {
	case "ptrace":
		return true, helperPtrace(args)
	case "finit_module", "init_module":
		return true, helperModule(mode, args)
	case "setns":
		fd, err := unix.Open("/proc/self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return true, err
		}
		defer unix.Close(fd)
		return true, unix.Setns(fd, unix.CLONE_NEWNET)
	case "mount":
		if len(args) != 3 {
			return true, fmt.Errorf("mount: want SOURCE TARGET FLAGS, got %q", args)
		}
		flags, err := strconv.ParseUint(args[2], 0, 64)
		if err != nil {
			return true, err
		}
		err = unix.Mount(args[0], args[1], "tmpfs", uintptr(flags), "size=1m")
		fmt.Println(errnoOf(err))
		if err == nil {
			return true, unix.Unmount(args[1], 0)
		}
		return true, nil
	}
	return true, nil
}

func errnoOf(err error) int {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return int(errno)
	}
	return 0
}

func helperPtrace(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("ptrace: want REQUEST PID, got %q", args)
	}
	pid, err := strconv.Atoi(args[1])
	if err != nil {
		return err
	}
	var ws unix.WaitStatus
	switch args[0] {
	case "seize":
		if err := unix.PtraceSeize(pid); err != nil {
			return fmt.Errorf("PTRACE_SEIZE %d: %w", pid, err)
		}
		if err := unix.PtraceInterrupt(pid); err != nil {
			return fmt.Errorf("PTRACE_INTERRUPT %d: %w", pid, err)
		}
	case "attach", "poke":
		if err := unix.PtraceAttach(pid); err != nil {
			return fmt.Errorf("PTRACE_ATTACH %d: %w", pid, err)
		}
	default:
		return fmt.Errorf("ptrace: unknown request %q", args[0])
	}
	if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil {
		return fmt.Errorf("waiting for %d to stop: %w", pid, err)
	}
	if args[0] == "poke" {
		addr, err := stackTop(pid)
		if err != nil {
			return err
		}
		word := make([]byte, 8)
		if _, err := unix.PtracePeekData(pid, addr, word); err != nil {
			return fmt.Errorf("PTRACE_PEEKDATA: %w", err)
		}
		if _, err := unix.PtracePokeData(pid, addr, word); err != nil {
			return fmt.Errorf("PTRACE_POKEDATA: %w", err)
		}
	}
	if err := unix.PtraceDetach(pid); err != nil {
		return fmt.Errorf("PTRACE_DETACH %d: %w", pid, err)
	}
	return nil
}

// stackTop returns the address of the last word of pid's stack mapping.
func stackTop(pid int) (uintptr, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasSuffix(line, "[stack]") {
			continue
		}
		_, end, ok := strings.Cut(strings.Fields(line)[0], "-")
		if !ok {
			break
		}
		top, err := strconv.ParseUint(end, 16, 64)
		if err != nil {
			return 0, err
		}
		return uintptr(top - 8), nil
	}
	return 0, fmt.Errorf("no [stack] mapping for pid %d", pid)
}

func helperModule(mode string, args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("%s: want FILE PARAMS, got %q", mode, args)
	}
	var err error
	if mode == "finit_module" {
		fd, oerr := unix.Open(args[0], unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if oerr != nil {
			return oerr
		}
		defer unix.Close(fd)
		err = unix.FinitModule(fd, args[1], 0)
	} else {
		image, rerr := os.ReadFile(args[0])
		if rerr != nil {
			return rerr
		}
		err = unix.InitModule(image, args[1])
	}
	if err == nil {
		return fmt.Errorf("%s: the kernel accepted %s as a module", mode, args[0])
	}
	fmt.Println(errnoOf(err))
	return nil
}

// privHelper runs the test binary in a privilege helper mode and returns
// its pid and trimmed standard output.
func privHelper(t *testing.T, cmd *exec.Cmd) (int, string) {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper %q: %v: %s", cmd.Args, err, stderr.String())
	}
	return cmd.Process.Pid, strings.TrimSpace(string(out))
}

func helperCmd(t *testing.T, mode string, args ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	return cmd
}

func syscallFrom(kind event.Kind, pid int) func(*event.Event) bool {
	return func(e *event.Event) bool { return e.Kind == kind && e.Process.PID == pid && e.Syscall != nil }
}

// startTarget starts `sleep 30` as a ptrace target and kills it at cleanup.
func startTarget(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd.Process.Pid
}

func tracepointExists(name string) bool {
	for _, dir := range []string{"/sys/kernel/tracing/events/syscalls", "/sys/kernel/debug/tracing/events/syscalls"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return true
		}
	}
	return false
}

func TestPrivilegeEvents(t *testing.T) {
	c := startSource(t, Config{FileEvents: true})

	for _, tc := range []struct {
		name    string
		request string
		want    int64
	}{
		{"PTRACE_ATTACH from another process names the request and the target", "attach", unix.PTRACE_ATTACH},
		{"PTRACE_SEIZE from another process names the request and the target", "seize", unix.PTRACE_SEIZE},
		{"PTRACE_POKEDATA into a traced process is reported", "poke", unix.PTRACE_POKEDATA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := startTarget(t)
			pid, _ := privHelper(t, helperCmd(t, "ptrace", tc.request, strconv.Itoa(target)))
			ev := c.waitFor(t, "ptrace", func(e *event.Event) bool {
				return syscallFrom(event.KindPtrace, pid)(e) && e.Syscall.Request == tc.want
			})
			if s := ev.Syscall; s.Name != "ptrace" || s.TargetPID != target || s.Result != 0 {
				t.Errorf("ptrace = %+v, want name ptrace, target %d, result 0", s, target)
			}
			if ev.Process.Comm == "" || ev.Process.PPID != os.Getpid() {
				t.Errorf("actor = %+v, want the helper (child of %d)", ev.Process, os.Getpid())
			}
		})
	}

	t.Run("PTRACE_PEEKDATA and PTRACE_DETACH are not reported", func(t *testing.T) {
		target := startTarget(t)
		pid, _ := privHelper(t, helperCmd(t, "ptrace", "poke", strconv.Itoa(target)))
		c.waitFor(t, "ptrace poke", func(e *event.Event) bool {
			return syscallFrom(event.KindPtrace, pid)(e) && e.Syscall.Request == unix.PTRACE_POKEDATA
		})
		settle()
		if ev := c.find(func(e *event.Event) bool {
			return syscallFrom(event.KindPtrace, pid)(e) &&
				(e.Syscall.Request == unix.PTRACE_PEEKDATA || e.Syscall.Request == unix.PTRACE_DETACH)
		}); ev != nil {
			t.Errorf("read-only/detach request reported: %+v", ev.Syscall)
		}
	})

	t.Run("a refused finit_module of a non-module file is reported with its path and error", func(t *testing.T) {
		if !tracepointExists("sys_enter_finit_module") {
			// A kernel without CONFIG_MODULES has no module syscalls to trace
			// (finit_module is ENOSYS): the source must say it cannot see them.
			if missing := c.src.Missing(); !slices.Contains(missing, event.KindModule) {
				t.Errorf("no module syscall tracepoints, yet Missing() = %v lacks %q", missing, event.KindModule)
			}
			_, out := privHelper(t, helperCmd(t, "finit_module", "/proc/self/exe", ""))
			if out != strconv.Itoa(int(unix.ENOSYS)) {
				t.Errorf("finit_module errno = %s on a kernel without module syscall tracepoints, want ENOSYS", out)
			}
			return
		}
		junk := filepath.Join(realPath(t, t.TempDir()), "notamodule.ko")
		if err := os.WriteFile(junk, bytes.Repeat([]byte("vigil junk "), 64), 0o644); err != nil {
			t.Fatal(err)
		}
		pid, out := privHelper(t, helperCmd(t, "finit_module", junk, "vigil_test=1"))
		errno, err := strconv.Atoi(out)
		if err != nil || errno == 0 {
			t.Fatalf("helper printed %q, want the errno of the refused call", out)
		}
		ev := c.waitFor(t, "module", syscallFrom(event.KindModule, pid))
		if s := ev.Syscall; s.Name != "finit_module" || s.Module != junk || s.Args != "vigil_test=1" || s.Result != -errno {
			t.Errorf("module = %+v, want finit_module of %s with params, result %d", s, junk, -errno)
		}
	})

	t.Run("a refused init_module is reported with its params and error", func(t *testing.T) {
		if !tracepointExists("sys_enter_init_module") {
			if missing := c.src.Missing(); !slices.Contains(missing, event.KindModule) {
				t.Errorf("no module syscall tracepoints, yet Missing() = %v lacks %q", missing, event.KindModule)
			}
			return
		}
		junk := filepath.Join(t.TempDir(), "junk")
		if err := os.WriteFile(junk, bytes.Repeat([]byte("vigil junk "), 64), 0o644); err != nil {
			t.Fatal(err)
		}
		pid, out := privHelper(t, helperCmd(t, "init_module", junk, "vigil_test=2"))
		errno, err := strconv.Atoi(out)
		if err != nil || errno == 0 {
			t.Fatalf("helper printed %q, want the errno of the refused call", out)
		}
		ev := c.waitFor(t, "module", syscallFrom(event.KindModule, pid))
		if s := ev.Syscall; s.Name != "init_module" || s.Args != "vigil_test=2" || s.Module != "" || s.Result != -errno {
			t.Errorf("module = %+v, want init_module with params, result %d", s, -errno)
		}
	})

	t.Run("setns into a network namespace names the namespace type and file", func(t *testing.T) {
		pid, _ := privHelper(t, helperCmd(t, "setns"))
		ev := c.waitFor(t, "setns", syscallFrom(event.KindSetns, pid))
		s := ev.Syscall
		if s.Name != "setns" || s.Flags != unix.CLONE_NEWNET || s.Namespace != "net" || s.Result != 0 {
			t.Errorf("setns = %+v, want name setns, flags CLONE_NEWNET, namespaces net, result 0", s)
		}
		own, err := os.Readlink("/proc/self/ns/net") // the helper stayed in this namespace
		if err != nil {
			t.Fatal(err)
		}
		if s.Target != own {
			t.Errorf("setns target = %q, want the namespace %q", s.Target, own)
		}
	})

	t.Run("nsenter into a new network namespace is reported", func(t *testing.T) {
		for _, bin := range []string{"unshare", "nsenter"} {
			if _, err := exec.LookPath(bin); err != nil {
				t.Fatalf("%s(1) not found (util-linux): %v", bin, err)
			}
		}
		holder := exec.Command("unshare", "-n", "sleep", "30")
		if err := holder.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = holder.Process.Kill()
			_ = holder.Wait()
		})
		// unshare execs sleep once the namespace exists.
		nsLink := fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid)
		c.waitFor(t, "exec of sleep in the new namespace", func(e *event.Event) bool {
			return e.Kind == event.KindExec && e.Process.PID == holder.Process.Pid
		})
		want, err := os.Readlink(nsLink)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("nsenter", "-t", strconv.Itoa(holder.Process.Pid), "-n", "true")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nsenter: %v: %s", err, out)
		}
		ev := c.waitFor(t, "setns", syscallFrom(event.KindSetns, cmd.Process.Pid))
		if s := ev.Syscall; s.Result != 0 || s.Target != want || s.Namespace != "net" {
			t.Errorf("setns = %+v, want a successful setns into the network namespace %s", s, want)
		}
	})

	t.Run("a tmpfs mount in a private namespace names source, target, type and flags", func(t *testing.T) {
		dir := realPath(t, t.TempDir())
		if err := os.Mkdir(filepath.Join(dir, "mnt"), 0o755); err != nil {
			t.Fatal(err)
		}
		source := fmt.Sprintf("vigiltest-%d", os.Getpid())
		const flags = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV
		cmd := helperCmd(t, "mount", source, "mnt", strconv.Itoa(flags)) // relative target
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
		pid, out := privHelper(t, cmd)
		if out != "0" {
			t.Fatalf("mount failed in the helper: errno %s", out)
		}
		ev := c.waitFor(t, "mount", func(e *event.Event) bool {
			return syscallFrom(event.KindMount, pid)(e) && e.Syscall.Source == source
		})
		want := event.Syscall{Name: "mount", Source: source, Target: filepath.Join(dir, "mnt"), FSType: "tmpfs", Flags: flags}
		if *ev.Syscall != want {
			t.Errorf("mount = %+v, want %+v", *ev.Syscall, want)
		}
	})

	t.Run("a mount that fails is reported with its error", func(t *testing.T) {
		dir := realPath(t, t.TempDir())
		source := fmt.Sprintf("vigiltest-fail-%d", os.Getpid())
		missing := filepath.Join(dir, "absent")
		cmd := helperCmd(t, "mount", source, missing, "0")
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
		pid, out := privHelper(t, cmd)
		if out != strconv.Itoa(int(unix.ENOENT)) {
			t.Fatalf("mount onto a missing directory: errno %s, want ENOENT", out)
		}
		ev := c.waitFor(t, "mount", func(e *event.Event) bool {
			return syscallFrom(event.KindMount, pid)(e) && e.Syscall.Source == source
		})
		if s := ev.Syscall; s.Result != -int(unix.ENOENT) || s.Target != missing || s.FSType != "tmpfs" {
			t.Errorf("mount = %+v, want result -ENOENT on %s", s, missing)
		}
	})

	t.Run("mount(8) under unshare -m is reported and does not leak to the host", func(t *testing.T) {
		if _, err := exec.LookPath("unshare"); err != nil {
			t.Fatalf("unshare(1) not found (util-linux): %v", err)
		}
		// Not t.TempDir(): the subtest name's parentheses would need shell quoting.
		tmp, err := os.MkdirTemp("", "vigil-m8-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(tmp) })
		dir := realPath(t, tmp)
		source := fmt.Sprintf("vigiltest-m8-%d", os.Getpid())
		script := fmt.Sprintf("mount -t tmpfs %s %s && umount %s", source, dir, dir)
		if out, err := exec.Command("unshare", "-m", "sh", "-c", script).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", script, err, out)
		}
		ev := c.waitFor(t, "mount", func(e *event.Event) bool {
			return e.Kind == event.KindMount && e.Syscall != nil && e.Syscall.Source == source
		})
		if s := ev.Syscall; ev.Process.Comm != "mount" || s.Target != dir || s.FSType != "tmpfs" || s.Result != 0 {
			t.Errorf("mount by %q = %+v, want mount(8) of tmpfs on %s", ev.Process.Comm, s, dir)
		}
		mi, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(mi, []byte(source)) {
			t.Errorf("the test mount %s leaked into the host mount namespace", source)
		}
	})
}

func TestDecodeSetnsRecord(t *testing.T) {
	for _, tc := range []struct {
		name   string
		s1     string
		inum   uint32
		nstype uint64
		want   event.Syscall
	}{
		{"a namespace file is named like readlink of /proc/PID/ns", "net", 4026531840, unix.CLONE_NEWNET,
			event.Syscall{Name: "setns", Target: "net:[4026531840]", Flags: unix.CLONE_NEWNET, Namespace: "net"}},
		{"nstype 0 still names the namespace from its file", "mnt", 4026531841, 0,
			event.Syscall{Name: "setns", Target: "mnt:[4026531841]"}},
		{"a descriptor that is not a namespace file keeps its path", "/some/pidfd", 0, unix.CLONE_NEWNET | unix.CLONE_NEWUTS,
			event.Syscall{Name: "setns", Target: "/some/pidfd", Flags: unix.CLONE_NEWNET | unix.CLONE_NEWUTS, Namespace: "uts,net"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r bpf.FileFileRec
			r.Hdr.Type = bpf.RecSetns
			r.Sc, r.Arg, r.TargetPid = 18, tc.nstype, tc.inum
			n := putData(r.Data[:], tc.s1)
			r.Len1 = uint16(n)
			r.Hdr.Size = uint32(fileFixedSize + n)
			raw := encode(t, &r, fileFixedSize+n)
			var h bpf.RecHdr
			var ev event.Event
			if err := decodeHdr(raw, &h); err != nil {
				t.Fatal(err)
			}
			if err := (&decoder{}).decode(&h, raw, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Kind != event.KindSetns || *ev.Syscall != tc.want {
				t.Errorf("decoded %s %+v, want %+v", ev.Kind, *ev.Syscall, tc.want)
			}
		})
	}
}

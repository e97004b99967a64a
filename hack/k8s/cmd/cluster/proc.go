package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// startDaemon starts a component detached from this process (own session,
// output appended to .cluster/logs/<name>.log) and records its pid.
func (e *env) startDaemon(name, bin string, args []string) (int, error) {
	if err := os.MkdirAll(e.path("logs"), 0o755); err != nil {
		return 0, fmt.Errorf("create log dir: %w", err)
	}
	if err := os.MkdirAll(e.path("run"), 0o755); err != nil {
		return 0, fmt.Errorf("create run dir: %w", err)
	}
	logf, err := os.OpenFile(e.logFile(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("open log of %s: %w", name, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "==== %s: %s %s\n", time.Now().UTC().Format(time.RFC3339), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = e.state
	cmd.Env = append(os.Environ(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	if err := writeFile(e.pidFile(name), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return pid, err
	}
	return pid, nil
}

func (e *env) pidFile(name string) string { return e.path("run", name+".pid") }

// componentBin is the executable a component runs from.
func (e *env) componentBin(name string) string {
	if name == "containerd" {
		return "/usr/bin/containerd"
	}
	return e.bin(name)
}

// componentPID returns the pid of a running component, or 0.
func (e *env) componentPID(name string) int {
	b, err := os.ReadFile(e.pidFile(name))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	if !alive(pid) {
		return 0
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || strings.TrimSuffix(exe, " (deleted)") != e.componentBin(name) {
		return 0 // the pid was reused by something else
	}
	return pid
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// state is the field after the parenthesised command name.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}

// stopPID sends SIGTERM, waits up to grace for the process to exit, then
// sends SIGKILL. It reports whether the process had to be killed.
func stopPID(pid int, grace time.Duration) (killed bool) {
	if !alive(pid) {
		return false
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 100 && alive(pid); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// proc is a process found in /proc.
type proc struct {
	pid     int
	exe     string
	cmdline string
}

// strayProcs finds processes this cluster started that are not tracked by a
// pid file any more: anything running from the binary cache, and
// containerd, its shims and runc working on this cluster's state directory.
func (e *env) strayProcs() []proc {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var out []proc
	for _, de := range entries {
		pid, err := strconv.Atoi(de.Name())
		if err != nil || pid == self || pid == os.Getppid() || !alive(pid) {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			continue
		}
		exe = strings.TrimSuffix(exe, " (deleted)")
		cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		cmdline := strings.TrimSpace(string(bytes.ReplaceAll(cl, []byte{0}, []byte{' '})))
		ours := strings.HasPrefix(exe, filepath.Join(e.cache, "bin")+"/")
		if !ours {
			switch filepath.Base(exe) {
			case "containerd", "containerd-shim-runc-v2", "containerd-shim", "runc":
				ours = strings.Contains(cmdline, e.state+"/")
			}
		}
		if ours {
			out = append(out, proc{pid: pid, exe: exe, cmdline: cmdline})
		}
	}
	return out
}

// run runs a command, returning its combined output in the error when it fails.
func run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// flock takes an exclusive lock on path, creating it, and returns the unlock.
func flock(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create lock dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

package runc

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func sh(script string) []string { return []string{"sh", "-c", script} }

func TestContainerRunsCommandsAndReportsExitCode(t *testing.T) {
	img := NewImage(t)
	tests := []struct {
		name       string
		opts       Options
		wantCode   int
		wantStdout []string
		wantStderr string
	}{
		{
			name:       "a container runs id and cat /etc/passwd as root",
			opts:       Options{Args: sh("id; cat /etc/passwd")},
			wantStdout: []string{"uid=0(root) gid=0(root)", "www-data:x:33:33:www-data:/var/www:/bin/sh"},
		},
		{
			name:     "a container's exit code is reported",
			opts:     Options{Args: sh("exit 7")},
			wantCode: 7,
		},
		{
			name:       "stderr is captured apart from stdout",
			opts:       Options{Args: sh("echo out; echo err >&2; exit 3")},
			wantCode:   3,
			wantStdout: []string{"out"},
			wantStderr: "err",
		},
		{
			name:       "env and working directory are applied",
			opts:       Options{Args: sh(`echo "$GREETING"; pwd`), Env: []string{"GREETING=hello"}, Cwd: "/tmp"},
			wantStdout: []string{"hello\n/tmp"},
		},
		{
			name:       "a container can run as an unprivileged user",
			opts:       Options{Args: sh("id -u; id -g; touch /root/x"), User: 33, Group: 33},
			wantCode:   1,
			wantStdout: []string{"33\n33\n"},
			wantStderr: "Permission denied",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := img.NewContainer(t, tc.opts)
			res, err := c.Run(context.Background())
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.ExitCode != tc.wantCode {
				t.Errorf("exit code = %d, want %d (stdout %q, stderr %q)", res.ExitCode, tc.wantCode, res.Stdout, res.Stderr)
			}
			for _, want := range tc.wantStdout {
				if !strings.Contains(res.Stdout, want) {
					t.Errorf("stdout %q does not contain %q", res.Stdout, want)
				}
			}
			if tc.wantStderr != "" && !strings.Contains(res.Stderr, tc.wantStderr) {
				t.Errorf("stderr %q does not contain %q", res.Stderr, tc.wantStderr)
			}
			if tc.wantStderr == "" && strings.Contains(res.Stdout, "err") {
				t.Errorf("stdout %q mixes in stderr", res.Stdout)
			}
		})
	}
}

func TestContainerIsInItsOwnCgroup(t *testing.T) {
	img := NewImage(t)

	t.Run("the container sees its unique cgroupsPath for the memory controller", func(t *testing.T) {
		t.Parallel()
		c := img.NewContainer(t, Options{Args: []string{"cat", "/proc/self/cgroup"}})
		res, err := c.Run(context.Background())
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("Run = %+v, %v", res, err)
		}
		if !strings.HasPrefix(c.CgroupPath, "/"+NamePrefix) {
			t.Errorf("CgroupPath %q does not start with /%s", c.CgroupPath, NamePrefix)
		}
		if !hasCgroupLine(res.Stdout, "memory", c.CgroupPath) {
			t.Errorf("/proc/self/cgroup in the container has no memory line with %s:\n%s", c.CgroupPath, res.Stdout)
		}
	})

	t.Run("the host sees the init process in the container's cgroup while it runs", func(t *testing.T) {
		t.Parallel()
		c := img.NewContainer(t, Options{Args: []string{"sleep", "60"}})
		if err := c.Start(context.Background()); err != nil {
			t.Fatalf("Start: %v", err)
		}
		pid := c.InitPID()
		if pid <= 0 {
			t.Fatalf("InitPID = %d after Start", pid)
		}
		cg, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
		if err != nil {
			t.Fatalf("read cgroup of init pid %d: %v", pid, err)
		}
		if !hasCgroupLine(string(cg), "memory", c.CgroupPath) {
			t.Errorf("/proc/%d/cgroup has no memory line with %s:\n%s", pid, c.CgroupPath, cg)
		}
		// runc start returns once init was told to exec; the exec itself
		// may still be under way for a moment.
		got := ""
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
			if got = strings.TrimSpace(string(comm)); got == "sleep" || time.Now().After(deadline) {
				break
			}
		}
		if got != "sleep" {
			t.Errorf("InitPID %d runs %q, want sleep", pid, got)
		}
		procs, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", c.CgroupPath, "cgroup.procs"))
		if err != nil {
			t.Fatalf("read memory cgroup.procs of the container: %v", err)
		}
		if !strings.Contains("\n"+string(procs), "\n"+strconv.Itoa(pid)+"\n") {
			t.Errorf("memory cgroup.procs %q does not list init pid %d", procs, pid)
		}
		if err := c.Kill(); err != nil {
			t.Fatalf("Kill: %v", err)
		}
		res, err := c.Wait()
		if err != nil {
			t.Fatalf("Wait after Kill: %v", err)
		}
		if res.ExitCode != 128+int(syscall.SIGKILL) {
			t.Errorf("exit code after SIGKILL = %d, want %d", res.ExitCode, 128+int(syscall.SIGKILL))
		}
	})
}

// hasCgroupLine reports whether a /proc/<pid>/cgroup text has a v1 line for
// controller whose path is path ("N:cpu,cpuacct:/path").
func hasCgroupLine(procCgroup, controller, path string) bool {
	for _, line := range strings.Split(procCgroup, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || parts[2] != path {
			continue
		}
		for _, ctrl := range strings.Split(parts[1], ",") {
			if ctrl == controller {
				return true
			}
		}
	}
	return false
}

func TestContainerNetwork(t *testing.T) {
	img := NewImage(t)
	tests := []struct {
		name        string
		hostNetwork bool
		wantConnect bool
	}{
		{name: "a host-network container reaches a loopback listener on the host", hostNetwork: true, wantConnect: true},
		{name: "a container with its own network namespace cannot reach the host's loopback", hostNetwork: false, wantConnect: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatalf("listen on loopback: %v", err)
			}
			defer ln.Close()
			port := ln.Addr().(*net.TCPAddr).Port
			got := make(chan string, 1)
			go func() {
				conn, err := ln.Accept()
				if err != nil {
					return // listener closed
				}
				defer conn.Close()
				_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				line, _ := bufio.NewReader(conn).ReadString('\n')
				got <- line
			}()

			c := img.NewContainer(t, Options{
				Args:        sh("echo hello-from-container | nc 127.0.0.1 " + strconv.Itoa(port)),
				HostNetwork: tc.hostNetwork,
				Timeout:     20 * time.Second,
			})
			res, err := c.Run(context.Background())
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if tc.wantConnect {
				if res.ExitCode != 0 {
					t.Errorf("nc exit code = %d, stderr %q", res.ExitCode, res.Stderr)
				}
				select {
				case line := <-got:
					if line != "hello-from-container\n" {
						t.Errorf("listener received %q, want the container's line", line)
					}
				case <-time.After(10 * time.Second):
					t.Errorf("listener saw no connection from the container")
				}
				return
			}
			if res.ExitCode == 0 {
				t.Errorf("nc to the host's loopback succeeded from a private network namespace (stdout %q)", res.Stdout)
			}
			select {
			case line := <-got:
				t.Errorf("listener received %q from a container without host network", line)
			case <-time.After(200 * time.Millisecond):
			}
		})
	}
}

func TestOverlay(t *testing.T) {
	img := NewImage(t)

	t.Run("a file written to the upper dir is visible and the lower layer is untouched", func(t *testing.T) {
		c := img.NewContainer(t, Options{
			Args:    sh("cat /dropped.txt && /bin/dropped.sh && echo written > /tmp/new.txt && rm /etc/hostname"),
			Overlay: true,
		})
		if c.UpperDir == "" {
			t.Fatalf("UpperDir is empty for an overlay container")
		}
		if err := os.WriteFile(filepath.Join(c.UpperDir, "dropped.txt"), []byte("from-upper\n"), 0o644); err != nil {
			t.Fatalf("write to upper dir: %v", err)
		}
		if err := os.MkdirAll(filepath.Join(c.UpperDir, "bin"), 0o755); err != nil {
			t.Fatalf("create upper bin: %v", err)
		}
		if err := os.WriteFile(filepath.Join(c.UpperDir, "bin/dropped.sh"), []byte("#!/bin/sh\necho drifted\n"), 0o755); err != nil {
			t.Fatalf("write script to upper dir: %v", err)
		}
		res, err := c.Run(context.Background())
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("Run = %+v, %v", res, err)
		}
		if res.Stdout != "from-upper\ndrifted\n" {
			t.Errorf("stdout = %q, want the upper file's content then the dropped script's output", res.Stdout)
		}
		for _, name := range []string{"dropped.txt", "bin/dropped.sh", "tmp/new.txt"} {
			if _, err := os.Lstat(filepath.Join(img.Root, name)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("image (lower layer) has %s: %v", name, err)
			}
		}
		if _, err := os.Stat(filepath.Join(img.Root, "etc/hostname")); err != nil {
			t.Errorf("file removed in the container is gone from the lower layer: %v", err)
		}
		if b, err := os.ReadFile(filepath.Join(c.UpperDir, "tmp/new.txt")); err != nil || string(b) != "written\n" {
			t.Errorf("container write not in upper dir: %q, %v", b, err)
		}
	})
}

func TestTimeoutKillsTheContainer(t *testing.T) {
	img := NewImage(t)
	c := img.NewContainer(t, Options{Args: []string{"sleep", "60"}, Timeout: 300 * time.Millisecond})
	start := time.Now()
	res, err := c.Run(context.Background())
	if err == nil {
		t.Fatalf("Run of a container outliving its timeout returned no error (result %+v)", res)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("Run returned after %v, want soon after the 300ms timeout", d)
	}
	if res.ExitCode != 128+int(syscall.SIGKILL) {
		t.Errorf("exit code = %d, want %d", res.ExitCode, 128+int(syscall.SIGKILL))
	}
}

func TestRuncFailureIsAnError(t *testing.T) {
	img := NewImage(t)
	c := img.NewContainer(t, Options{Args: []string{"/no/such/binary"}})
	_, err := c.Run(context.Background())
	if err == nil {
		t.Fatalf("Run of a missing binary returned no error")
	}
	if !strings.Contains(err.Error(), "no such file") {
		t.Errorf("error %q does not say what was missing", err)
	}
}

func TestCleanupLeavesNothingBehind(t *testing.T) {
	img := NewImage(t)
	var c *Container
	var pid int
	t.Run("a running overlay container is torn down when its test ends", func(t *testing.T) {
		c = img.NewContainer(t, Options{Args: []string{"sleep", "60"}, Overlay: true})
		if err := c.Start(context.Background()); err != nil {
			t.Fatalf("Start: %v", err)
		}
		pid = c.InitPID()
		if len(CgroupDirs(c.CgroupPath)) == 0 {
			t.Fatalf("no cgroup directories for %s while the container runs", c.CgroupPath)
		}
		// The test ends with the container still running.
	})
	if c == nil || pid == 0 {
		t.Fatalf("subtest did not start a container")
	}
	if left := CgroupDirs(c.CgroupPath); len(left) > 0 {
		t.Errorf("cgroup directories left after cleanup: %v", left)
	}
	if m, _ := filepath.Glob("/sys/fs/cgroup/*/" + c.ID); len(m) > 0 {
		t.Errorf("cgroup directories named after the container left: %v", m)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		t.Errorf("container init %d still exists after cleanup (kill 0: %v, comm %q)", pid, err, comm)
	}
	mounts, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatalf("open mountinfo: %v", err)
	}
	defer mounts.Close()
	info, _ := io.ReadAll(mounts)
	if strings.Contains(string(info), c.Rootfs) {
		t.Errorf("overlay rootfs %s still mounted after cleanup", c.Rootfs)
	}
	if _, err := os.Stat(c.Bundle); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("bundle %s still exists after cleanup: %v", c.Bundle, err)
	}
}

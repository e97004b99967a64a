// Package runc runs real containers for tests: an OCI bundle with a
// busybox-static rootfs, run by the host's runc with a unique cgroupsPath,
// optionally on an overlay rootfs (lower = image, upper = container layer).
//
// Everything a container creates (runc state, cgroup directories in every
// v1 controller, overlay mount, temporary directories) is removed by a
// t.Cleanup, also when the test fails. Tests using it need root, runc and
// busybox-static; they skip outside CI and fail in CI when those are missing
// (see internal/testenv).
package runc

import (
	"bytes"
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/vigil-sec/vigil/internal/ocispec"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigil-sec/vigil/internal/testenv"
)

// NamePrefix starts every container ID and cgroupsPath this package creates,
// so leftovers are easy to find under /sys/fs/cgroup/*/.
const NamePrefix = "vigil-test-"

const (
	hostBusybox = "/bin/busybox"
	// startTimeout bounds how long runc may take to create a container.
	startTimeout = 30 * time.Second
	// stopTimeout bounds how long a killed container may take to exit.
	stopTimeout = 10 * time.Second
)

// Image is a minimal container image rootfs: /bin/busybox (a copy of the
// host's busybox-static) with a symlink for every applet, /etc/passwd and
// /etc/group (root 0, www-data 33, nobody 65534) and a world-writable /tmp.
type Image struct {
	// Root is the image's rootfs directory. Tests may add files to it
	// before creating containers.
	Root string
}

// NewImage builds an image in a fresh temporary directory that is removed
// when the test ends. It requires root and busybox-static.
func NewImage(t testing.TB) *Image {
	t.Helper()
	testenv.RequireRoot(t)
	_, err := os.Stat(hostBusybox)
	testenv.Require(t, err == nil, hostBusybox+" not found (apt-get install busybox-static)")
	if err := requireStatic(hostBusybox); err != nil {
		t.Fatalf("%v", err)
	}

	// os.MkdirTemp, not t.TempDir: the path goes into overlay mount options,
	// where test names with ',' or ':' would break parsing.
	dir, err := os.MkdirTemp("", NamePrefix+"image-")
	if err != nil {
		t.Fatalf("create image directory: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove image directory %s: %v", dir, err)
		}
	})
	img := &Image{Root: filepath.Join(dir, "rootfs")}
	if err := img.build(); err != nil {
		t.Fatalf("build busybox image in %s: %v", img.Root, err)
	}
	return img
}

func requireStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("read %s as ELF: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; install busybox-static (apt-get install busybox-static), not busybox", path)
		}
	}
	return nil
}

func (img *Image) build() error {
	dirs := []struct {
		path string
		mode os.FileMode
	}{
		{"", 0o755}, {"bin", 0o755}, {"sbin", 0o755}, {"usr/bin", 0o755}, {"usr/sbin", 0o755},
		{"etc", 0o755}, {"proc", 0o555}, {"sys", 0o555}, {"dev", 0o755}, {"root", 0o700},
		{"var/www", 0o755}, {"tmp", 0o1777 | os.ModeSticky},
	}
	for _, d := range dirs {
		p := filepath.Join(img.Root, d.path)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", p, err)
		}
		// Chmod after MkdirAll: the umask would drop the sticky and
		// world-write bits of /tmp.
		if err := os.Chmod(p, d.mode); err != nil {
			return fmt.Errorf("chmod %s: %w", p, err)
		}
	}
	if err := copyFile(hostBusybox, filepath.Join(img.Root, "bin/busybox"), 0o755); err != nil {
		return err
	}
	out, err := exec.Command(hostBusybox, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("list busybox applets with %s --list-full: %w", hostBusybox, err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "bin/busybox" {
			continue
		}
		link := filepath.Join(img.Root, applet)
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			return fmt.Errorf("create directory for applet %s: %w", applet, err)
		}
		if err := os.Symlink("/bin/busybox", link); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("link applet %s: %w", applet, err)
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n" +
			"www-data:x:33:33:www-data:/var/www:/bin/sh\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":    "root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n",
		"etc/hosts":    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
		"etc/hostname": "vigil-test\n",
	}
	for name, content := range files {
		p := filepath.Join(img.Root, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("close %s: %w", dst, err)
	}
	return nil
}

// Options configures a container.
type Options struct {
	// Args is the command run as the container's init (required), e.g.
	// []string{"sh", "-c", "id"}. It is resolved through PATH inside the
	// container.
	Args []string
	// Env is the process environment; PATH is added when it is missing.
	Env []string
	// Cwd is the working directory inside the container (default "/").
	Cwd string
	// User and Group are the uid and gid the process runs as (default 0).
	// The image has www-data (33) and nobody (65534). A non-root user has
	// no capabilities.
	User, Group uint32
	// HostNetwork shares the host's network namespace, so the container
	// reaches listeners on the host's 127.0.0.1. Otherwise the container
	// gets a new network namespace with only loopback up.
	HostNetwork bool
	// Overlay mounts the rootfs as overlay(lower = image rootfs, upper =
	// Container.UpperDir). Files written to UpperDir before Start appear in
	// the container without touching the image. Without Overlay the
	// container runs directly on the image rootfs, and its writes change it.
	Overlay bool
	// Timeout, when positive, kills the container that long after Start.
	Timeout time.Duration
	// ReadOnlyBinds are host directories bind-mounted read-only at the same
	// path in the container (e.g. /usr, to run the host's compiler inside a
	// container). They hide what the image has at those paths.
	ReadOnlyBinds []string
}

// Result is how a container ended.
type Result struct {
	// ExitCode is the container process's exit status; a process killed by
	// signal N reports 128+N (runc's convention).
	ExitCode int
	Stdout   string
	Stderr   string // the container's stderr, with any runc error messages
}

// Container is one runc container, created by Image.NewContainer. Run it
// once with Run, or Start then Wait.
type Container struct {
	// ID is the runc container ID (NamePrefix + random hex).
	ID string
	// Bundle is the OCI bundle directory holding config.json.
	Bundle string
	// Rootfs is the container's root filesystem: the overlay mount point
	// with Overlay, else the image's Root.
	Rootfs string
	// UpperDir is the overlay's upper (container) layer; empty without
	// Overlay.
	UpperDir string
	// CgroupPath is the cgroupsPath given to runc, e.g. "/vigil-test-1a2b…".
	// Under cgroup v1 the container is in /sys/fs/cgroup/<controller><CgroupPath>
	// for every controller, and /proc/<pid>/cgroup shows CgroupPath.
	CgroupPath string

	t        testing.TB
	runcBin  string
	stateDir string
	pidFile  string
	opts     Options
	mounted  bool // the overlay rootfs is mounted

	mu      sync.Mutex
	started bool
	cmd     *exec.Cmd
	cancel  context.CancelFunc
	pid     int
	stdout  bytes.Buffer
	stderr  bytes.Buffer
	done    chan struct{} // closed when runc run has exited
	result  Result
	waitErr error
}

// NewContainer prepares a container from the image: a bundle with a
// generated config.json (namespaces pid, mount, ipc, uts and, unless
// HostNetwork, network; no user namespace; a unique cgroupsPath; the
// runc/Docker default capabilities, masked and read-only paths) and, with
// Overlay, the mounted overlay rootfs. It registers a cleanup that kills and
// deletes the container, checks that its cgroups are gone, unmounts the
// overlay and removes the bundle. It requires root and runc.
func (img *Image) NewContainer(t testing.TB, opts Options) *Container {
	t.Helper()
	testenv.RequireRoot(t)
	runcBin := testenv.RequireBinary(t, "runc")
	if len(opts.Args) == 0 {
		t.Fatalf("runc.Options.Args is empty: give the command the container runs")
	}

	suffix := make([]byte, 8)
	if _, err := rand.Read(suffix); err != nil {
		t.Fatalf("generate container id: %v", err)
	}
	id := NamePrefix + hex.EncodeToString(suffix)
	bundle, err := os.MkdirTemp("", id+"-")
	if err != nil {
		t.Fatalf("create bundle directory: %v", err)
	}
	c := &Container{
		ID:         id,
		Bundle:     bundle,
		Rootfs:     img.Root,
		CgroupPath: "/" + id,
		t:          t,
		runcBin:    runcBin,
		stateDir:   filepath.Join(bundle, "runc-state"),
		pidFile:    filepath.Join(bundle, "init.pid"),
		opts:       opts,
		done:       make(chan struct{}),
	}
	t.Cleanup(c.cleanup)

	if opts.Overlay {
		if err := c.mountOverlay(img.Root); err != nil {
			t.Fatalf("%v", err)
		}
	}
	spec := buildSpec(c.Rootfs, c.CgroupPath, "vigil-test", opts)
	for _, dir := range opts.ReadOnlyBinds {
		spec.Mounts = append(spec.Mounts, ociMount{Destination: dir, Type: "bind", Source: dir,
			Options: []string{"rbind", "ro", "nosuid", "nodev"}})
	}
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		t.Fatalf("encode OCI config: %v", err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
		t.Fatalf("write OCI config: %v", err)
	}
	return c
}

func (c *Container) mountOverlay(lower string) error {
	c.UpperDir = filepath.Join(c.Bundle, "upper")
	work := filepath.Join(c.Bundle, "work")
	rootfs := filepath.Join(c.Bundle, "rootfs")
	for _, d := range []string{c.UpperDir, work, rootfs} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("create overlay directory %s: %w", d, err)
		}
	}
	for _, p := range []string{lower, c.UpperDir, work} {
		if strings.ContainsAny(p, ",:") {
			return fmt.Errorf("overlay path %q contains ',' or ':'; set TMPDIR to a plain path", p)
		}
	}
	data := "lowerdir=" + lower + ",upperdir=" + c.UpperDir + ",workdir=" + work
	if err := unix.Mount("overlay", rootfs, "overlay", 0, data); err != nil {
		return fmt.Errorf("mount overlay (%s) on %s: %w (needs root and the overlay filesystem)", data, rootfs, err)
	}
	c.Rootfs = rootfs
	c.mounted = true
	return nil
}

// Start runs the container in the background (`runc run`, with runc as its
// parent and reaper) and returns once its init process exists; InitPID then
// reports it. The container's stdio goes to buffers that Wait returns.
// Cancelling ctx, or Options.Timeout elapsing, kills the container.
func (c *Container) Start(ctx context.Context) error {
	c.mu.Lock()
	if c.started {
		c.mu.Unlock()
		return fmt.Errorf("container %s was already started; create a new one with NewContainer", c.ID)
	}
	c.started = true
	if c.opts.Timeout > 0 {
		ctx, c.cancel = context.WithTimeout(ctx, c.opts.Timeout)
	} else {
		ctx, c.cancel = context.WithCancel(ctx)
	}
	cmd := exec.CommandContext(ctx, c.runcBin, "--root", c.stateDir, "run",
		"--bundle", c.Bundle, "--pid-file", c.pidFile, c.ID)
	cmd.Stdout = &c.stdout
	cmd.Stderr = &c.stderr
	// Killing runc itself would leave the container running: kill the
	// container, whose exit makes runc run return.
	cmd.Cancel = func() error {
		if err := c.kill(); err != nil {
			return cmd.Process.Kill()
		}
		return nil
	}
	cmd.WaitDelay = stopTimeout
	c.cmd = cmd
	if err := cmd.Start(); err != nil {
		c.mu.Unlock()
		c.cancel()
		close(c.done)
		return fmt.Errorf("start %s run for container %s: %w", c.runcBin, c.ID, err)
	}
	c.mu.Unlock()

	go func() {
		err := cmd.Wait()
		c.mu.Lock()
		c.result = Result{ExitCode: cmd.ProcessState.ExitCode(), Stdout: c.stdout.String(), Stderr: c.stderr.String()}
		var exitErr *exec.ExitError
		switch {
		case ctx.Err() != nil:
			c.waitErr = fmt.Errorf("container %s was killed: %w (raise Options.Timeout if it needs longer)", c.ID, context.Cause(ctx))
		case err != nil && !errors.As(err, &exitErr):
			c.waitErr = fmt.Errorf("wait for runc run of container %s: %w", c.ID, err)
		}
		c.mu.Unlock()
		c.cancel() // release the timeout's timer
		close(c.done)
	}()

	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if pid, ok := c.readPIDFile(); ok {
			c.mu.Lock()
			c.pid = pid
			c.mu.Unlock()
			return nil
		}
		select {
		case <-c.done:
			// runc may have run a short-lived container to completion
			// between two polls: the pid file tells it from a failure.
			if pid, ok := c.readPIDFile(); ok {
				c.mu.Lock()
				c.pid = pid
				c.mu.Unlock()
				return nil
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			c.waitErr = fmt.Errorf("runc failed to create container %s (exit %d): %s",
				c.ID, c.result.ExitCode, strings.TrimSpace(c.result.Stderr))
			return c.waitErr
		case <-deadline.C:
			c.cancel()
			<-c.done
			return fmt.Errorf("runc did not create container %s within %v; stderr: %s",
				c.ID, startTimeout, strings.TrimSpace(c.stderr.String()))
		case <-tick.C:
		}
	}
}

func (c *Container) readPIDFile() (int, bool) {
	b, err := os.ReadFile(c.pidFile)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false // runc writes it atomically, but be safe
	}
	return pid, true
}

// Wait waits for a started container to exit and returns its result. The
// error is non-nil when runc failed or the container was killed because
// its context ended; the Result is filled in as far as known either way.
func (c *Container) Wait() (Result, error) {
	c.mu.Lock()
	started := c.started
	c.mu.Unlock()
	if !started {
		return Result{}, fmt.Errorf("container %s was not started; call Start first", c.ID)
	}
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.result, c.waitErr
}

// Run starts the container and waits for it to exit.
func (c *Container) Run(ctx context.Context) (Result, error) {
	if err := c.Start(ctx); err != nil {
		res, _ := c.Wait()
		return res, err
	}
	return c.Wait()
}

// InitPID is the host PID of the container's init process (the process
// running Options.Args), or 0 before Start succeeded.
func (c *Container) InitPID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pid
}

// Kill sends SIGKILL to the container's processes; Wait then returns.
func (c *Container) Kill() error {
	if err := c.kill(); err != nil {
		return fmt.Errorf("kill container %s: %w", c.ID, err)
	}
	return nil
}

func (c *Container) kill() error {
	return c.runc("kill", c.ID, "KILL")
}

func (c *Container) runc(args ...string) error {
	full := append([]string{"--root", c.stateDir}, args...)
	out, err := exec.Command(c.runcBin, full...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", c.runcBin, strings.Join(full, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// cleanup kills and deletes the container, verifies its cgroups are gone,
// unmounts the overlay and removes the bundle.
func (c *Container) cleanup() {
	t := c.t
	c.mu.Lock()
	started, cancel := c.started, c.cancel
	c.mu.Unlock()
	if started {
		cancel() // kills the container if it still runs
		select {
		case <-c.done:
		case <-time.After(2 * stopTimeout):
			t.Errorf("container %s did not exit %v after being killed", c.ID, 2*stopTimeout)
		}
	}
	// runc run deletes the container when it exits; delete -f covers a
	// runc that died or a create that half-failed.
	if _, err := os.Stat(filepath.Join(c.stateDir, c.ID)); err == nil {
		if err := c.runc("delete", "-f", c.ID); err != nil {
			t.Errorf("delete container: %v", err)
		}
	}
	if left := ocispec.RemoveCgroups(c.CgroupPath); len(left) > 0 {
		t.Errorf("container %s left cgroup directories that could not be removed: %v", c.ID, left)
	}
	if c.mounted {
		if err := ocispec.Unmount(c.Rootfs); err != nil {
			// Do not remove the bundle: RemoveAll would descend into the
			// still-mounted overlay and delete the image through it.
			t.Errorf("unmount overlay rootfs %s: %v; bundle %s left in place", c.Rootfs, err, c.Bundle)
			return
		}
	}
	if err := os.RemoveAll(c.Bundle); err != nil {
		t.Errorf("remove bundle %s: %v", c.Bundle, err)
	}
}

// CgroupDirs lists the cgroup directories that exist for cgroupPath (see
// ocispec.CgroupDirs).
func CgroupDirs(cgroupPath string) []string { return ocispec.CgroupDirs(cgroupPath) }

package simulate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/vigil-sec/vigil/internal/ocispec"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// container is one runc container of a local simulation: an overlay rootfs
// (lower = the simulation's image, upper = the container's own layer, so
// files written at run time live on the upper layer as in a real
// container), its own network namespace (joined by path), a cgroupsPath
// equal to its id, so the sensor attributes its processes to the container
// id.
type container struct {
	id       string
	bundle   string
	rootfs   string
	upper    string
	stateDir string
	runcBin  string

	mounted bool
	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	output  *lockedBuffer
}

// containerSpec is what a simulation container runs.
type containerSpec struct {
	Args     []string
	Env      []string
	Cwd      string
	UID, GID uint32
	Netns    string // network namespace path to join
	Hostname string
	// ROBinds are host paths bind-mounted read-only at the same place.
	ROBinds []string
	// FileBinds maps container paths to host files bind-mounted read-only.
	FileBinds map[string]string
}

// newContainer prepares the bundle of a container: mounts the overlay
// rootfs over image and writes config.json. remove undoes it.
func newContainer(runcBin, workDir, id, image string, spec containerSpec) (*container, error) {
	bundle := filepath.Join(workDir, id)
	c := &container{
		id: id, bundle: bundle, runcBin: runcBin,
		stateDir: filepath.Join(workDir, "runc-state"),
		done:     make(chan struct{}),
		output:   &lockedBuffer{},
	}
	c.upper = filepath.Join(bundle, "upper")
	work := filepath.Join(bundle, "work")
	c.rootfs = filepath.Join(bundle, "rootfs")
	for _, d := range []string{c.upper, work, c.rootfs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return c, fmt.Errorf("create container directory %s: %w", d, err)
		}
	}
	for _, p := range []string{image, c.upper, work} {
		if strings.ContainsAny(p, ",:") {
			return c, fmt.Errorf("overlay path %q contains ',' or ':'; set TMPDIR to a plain directory", p)
		}
	}
	data := "lowerdir=" + image + ",upperdir=" + c.upper + ",workdir=" + work
	if err := unix.Mount("overlay", c.rootfs, "overlay", 0, data); err != nil {
		return c, fmt.Errorf("mount the overlay root filesystem of %s (%s): %w (needs root and overlayfs)", id, data, err)
	}
	c.mounted = true
	for dst := range spec.FileBinds {
		// Mount points for single files must exist in the rootfs.
		p := filepath.Join(c.rootfs, dst)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return c, fmt.Errorf("create mount point for %s: %w", dst, err)
		}
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			return c, fmt.Errorf("create mount point for %s: %w", dst, err)
		}
	}
	b, err := json.MarshalIndent(ociConfig(c.rootfs, "/"+id, spec), "", "  ")
	if err != nil {
		return c, fmt.Errorf("encode OCI config of %s: %w", id, err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		return c, fmt.Errorf("write OCI config of %s: %w", id, err)
	}
	return c, nil
}

// start runs the container in the background (`runc run`) and returns
// once its init process exists.
func (c *container) start(ctx context.Context) error {
	pidFile := filepath.Join(c.bundle, "init.pid")
	// Not bound to ctx: the container is stopped by remove, which also runs
	// after ctx was cancelled (Ctrl-C).
	cmd := exec.Command(c.runcBin, "--root", c.stateDir, "run", "--bundle", c.bundle, "--pid-file", pidFile, c.id)
	cmd.Stdout, cmd.Stderr = c.output, c.output
	// Its own process group: a Ctrl-C in the terminal reaches vigil, which
	// cleans up in order, not runc directly.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		close(c.done)
		return fmt.Errorf("start %s run for %s: %w", c.runcBin, c.id, err)
	}
	c.mu.Lock()
	c.cmd = cmd
	c.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		close(c.done)
	}()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				return nil
			}
		}
		select {
		case <-c.done:
			return fmt.Errorf("runc could not start container %s: %s", c.id, strings.TrimSpace(c.output.String()))
		case <-deadline.C:
			return fmt.Errorf("runc did not start container %s within 30s: %s", c.id, strings.TrimSpace(c.output.String()))
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-tick.C:
		}
	}
}

// exited reports whether the container's init has exited.
func (c *container) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// remove kills and deletes the container, removes its cgroups, unmounts
// the overlay and deletes the bundle. It reports everything it could not
// remove.
func (c *container) remove() error {
	var errs []error
	c.mu.Lock()
	cmd := c.cmd
	c.mu.Unlock()
	if cmd != nil {
		_ = c.runc("kill", c.id, "KILL")
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-c.done
		}
	}
	if _, err := os.Stat(filepath.Join(c.stateDir, c.id)); err == nil {
		if err := c.runc("delete", "-f", c.id); err != nil {
			errs = append(errs, err)
		}
	}
	if left := ocispec.RemoveCgroups("/" + c.id); len(left) > 0 {
		errs = append(errs, fmt.Errorf("cgroup directories of %s could not be removed: %v", c.id, left))
	}
	if c.mounted {
		if err := ocispec.Unmount(c.rootfs); err != nil {
			// Never RemoveAll through a mounted overlay: it would delete
			// the image.
			return errors.Join(append(errs, fmt.Errorf("unmount %s: %w; bundle %s left in place", c.rootfs, err, c.bundle))...)
		}
		c.mounted = false
	}
	if err := os.RemoveAll(c.bundle); err != nil {
		errs = append(errs, fmt.Errorf("remove bundle %s: %w", c.bundle, err))
	}
	return errors.Join(errs...)
}

func (c *container) runc(args ...string) error {
	full := append([]string{"--root", c.stateDir}, args...)
	out, err := exec.Command(c.runcBin, full...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", c.runcBin, strings.Join(full, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// The OCI spec subset lives in internal/ocispec (shared with the tests' runc containers).
type (
	ociSpec         = ocispec.Spec
	ociProcess      = ocispec.Process
	ociUser         = ocispec.User
	ociCapabilities = ocispec.Capabilities
	ociRlimit       = ocispec.Rlimit
	ociRoot         = ocispec.Root
	ociMount        = ocispec.Mount
	ociLinux        = ocispec.Linux
	ociResources    = ocispec.Resources
	ociDeviceRule   = ocispec.DeviceRule
	ociNamespace    = ocispec.Namespace
)

// defaultCapabilities are the capabilities container engines grant by
// default (granted to root only: a non-root user has none).
var defaultCapabilities = ocispec.DefaultCapabilities()

func ociConfig(rootfs, cgroupsPath string, s containerSpec) ociSpec {
	cwd := s.Cwd
	if cwd == "" {
		cwd = "/"
	}
	mounts := []ociMount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
	}
	for _, d := range s.ROBinds {
		mounts = append(mounts, ociMount{Destination: d, Type: "bind", Source: d, Options: []string{"rbind", "ro", "nosuid", "nodev"}})
	}
	for dst, src := range s.FileBinds {
		mounts = append(mounts, ociMount{Destination: dst, Type: "bind", Source: src, Options: []string{"bind", "ro", "nosuid", "nodev"}})
	}
	return ociSpec{
		OCIVersion: "1.0.2",
		Process: ociProcess{
			User: ociUser{UID: s.UID, GID: s.GID},
			Args: s.Args, Env: s.Env, Cwd: cwd,
			Capabilities: ociCapabilities{Bounding: defaultCapabilities, Effective: defaultCapabilities, Permitted: defaultCapabilities},
			Rlimits:      []ociRlimit{{Type: "RLIMIT_NOFILE", Hard: 4096, Soft: 4096}},
		},
		Root:     ociRoot{Path: rootfs},
		Hostname: s.Hostname,
		Mounts:   mounts,
		Linux: ociLinux{
			CgroupsPath: cgroupsPath,
			Resources:   ociResources{Devices: []ociDeviceRule{{Allow: false, Access: "rwm"}}},
			Namespaces: []ociNamespace{{Type: "pid"}, {Type: "ipc"}, {Type: "uts"}, {Type: "mount"},
				{Type: "network", Path: s.Netns}},
			MaskedPaths: []string{"/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

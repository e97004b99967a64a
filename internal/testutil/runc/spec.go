package runc

import (
	"strings"

	"github.com/vigil-sec/vigil/internal/ocispec"
)

// The OCI spec subset lives in internal/ocispec (shared with the attack simulation).
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

// defaultCapabilities is the capability set container engines (Docker,
// containerd) grant by default, so test workloads behave like real ones.
func defaultCapabilities() []string { return ocispec.DefaultCapabilities() }

// buildSpec returns the OCI config for a container with the given options.
func buildSpec(rootfs, cgroupsPath, hostname string, o Options) ociSpec {
	env := o.Env
	if !hasEnv(env, "PATH") {
		env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	}
	cwd := o.Cwd
	if cwd == "" {
		cwd = "/"
	}
	namespaces := []ociNamespace{{Type: "pid"}, {Type: "ipc"}, {Type: "uts"}, {Type: "mount"}}
	if !o.HostNetwork {
		// A new network namespace with no path: runc brings up only loopback.
		namespaces = append(namespaces, ociNamespace{Type: "network"})
	}
	return ociSpec{
		OCIVersion: "1.0.2",
		Process: ociProcess{
			User: ociUser{UID: o.User, GID: o.Group},
			Args: o.Args,
			Env:  env,
			Cwd:  cwd,
			// Like Docker: capabilities are granted to root only (no ambient
			// set), so a non-root user really is unprivileged.
			Capabilities: ociCapabilities{
				Bounding:  defaultCapabilities(),
				Effective: defaultCapabilities(),
				Permitted: defaultCapabilities(),
			},
			Rlimits: []ociRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
		},
		Root:     ociRoot{Path: rootfs, Readonly: false},
		Hostname: hostname,
		Mounts: []ociMount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		},
		Linux: ociLinux{
			CgroupsPath: cgroupsPath,
			Resources:   ociResources{Devices: []ociDeviceRule{{Allow: false, Access: "rwm"}}},
			Namespaces:  namespaces,
			MaskedPaths: []string{
				"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
			},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

func hasEnv(env []string, name string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, name+"=") {
			return true
		}
	}
	return false
}

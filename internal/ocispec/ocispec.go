// Package ocispec is the subset of the OCI runtime spec (v1.0.2, the version
// runc 1.1 implements) that vigil's own containers use: the attack
// simulation's victim and attacker, and the tests' workloads. Field names
// and JSON tags follow github.com/opencontainers/runtime-spec/specs-go; only
// what vigil writes is declared, so no extra module is needed.
package ocispec

// Version is the spec version written into config.json.
const Version = "1.0.2"

// Spec is config.json.
type Spec struct {
	OCIVersion string  `json:"ociVersion"`
	Process    Process `json:"process"`
	Root       Root    `json:"root"`
	Hostname   string  `json:"hostname,omitempty"`
	Mounts     []Mount `json:"mounts"`
	Linux      Linux   `json:"linux"`
}

// Process is the container's init process.
type Process struct {
	Terminal        bool         `json:"terminal"`
	User            User         `json:"user"`
	Args            []string     `json:"args"`
	Env             []string     `json:"env,omitempty"`
	Cwd             string       `json:"cwd"`
	Capabilities    Capabilities `json:"capabilities"`
	Rlimits         []Rlimit     `json:"rlimits,omitempty"`
	NoNewPrivileges bool         `json:"noNewPrivileges"`
}

// User is the process's numeric identity.
type User struct {
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
}

// Capabilities are the process's capability sets.
type Capabilities struct {
	Bounding    []string `json:"bounding"`
	Effective   []string `json:"effective"`
	Permitted   []string `json:"permitted"`
	Inheritable []string `json:"inheritable,omitempty"`
	Ambient     []string `json:"ambient,omitempty"`
}

// Rlimit is one resource limit.
type Rlimit struct {
	Type string `json:"type"`
	Hard uint64 `json:"hard"`
	Soft uint64 `json:"soft"`
}

// Root is the root filesystem.
type Root struct {
	Path     string `json:"path"`
	Readonly bool   `json:"readonly"`
}

// Mount is one mount.
type Mount struct {
	Destination string   `json:"destination"`
	Type        string   `json:"type"`
	Source      string   `json:"source"`
	Options     []string `json:"options,omitempty"`
}

// Linux holds the Linux-specific settings.
type Linux struct {
	CgroupsPath   string      `json:"cgroupsPath"`
	Resources     Resources   `json:"resources"`
	Namespaces    []Namespace `json:"namespaces"`
	MaskedPaths   []string    `json:"maskedPaths"`
	ReadonlyPaths []string    `json:"readonlyPaths"`
}

// Resources are the cgroup resource settings.
type Resources struct {
	Devices []DeviceRule `json:"devices"`
}

// DeviceRule is one device cgroup rule.
type DeviceRule struct {
	Allow  bool   `json:"allow"`
	Access string `json:"access"`
}

// Namespace is one namespace to create, or to join when Path is set.
type Namespace struct {
	Type string `json:"type"`
	Path string `json:"path,omitempty"`
}

// DefaultCapabilities is the capability set container engines (Docker,
// containerd) grant root in a container by default.
func DefaultCapabilities() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
		"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
		"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
	}
}

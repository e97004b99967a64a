// Package event defines the one event vocabulary shared by vigil's sources
// (eBPF, proc connector, replay), the process tree, container attribution,
// rules and alerts. Its JSON form is the stable schema documented in
// docs/events.md; fields are only ever added, never renamed.
package event

import (
	"fmt"
	"time"
)

// Kind names what happened. Rules are indexed by Kind.
type Kind string

// Process lifecycle.
const (
	KindExec Kind = "exec" // a process replaced its image (execve/execveat succeeded)
	KindFork Kind = "fork" // a new process (thread group) was created
	KindExit Kind = "exit" // a process (whole thread group) exited
)

// Network.
const (
	KindConnect Kind = "connect" // outbound connect (TCP: once the outcome is known; UDP: at connect/sendmsg)
	KindBind    Kind = "bind"    // a socket was bound to a local address
	KindListen  Kind = "listen"  // a TCP socket started listening
	KindAccept  Kind = "accept"  // an inbound TCP connection was established on a listener
	KindDNS     Kind = "dns"     // a DNS query left the process
)

// File and privilege.
const (
	KindOpen     Kind = "open"     // open for write/create/truncate, or a read of a sensitive path
	KindChmod    Kind = "chmod"    // a mode change that adds an execute bit
	KindUnlink   Kind = "unlink"   // a file or directory was removed
	KindRename   Kind = "rename"   // a file was renamed or moved
	KindMemfd    Kind = "memfd"    // memfd_create
	KindPtrace   Kind = "ptrace"   // ptrace attach/seize/poke
	KindModule   Kind = "module"   // a kernel module load was requested (init_module/finit_module)
	KindSetns    Kind = "setns"    // setns(2)
	KindUnshare  Kind = "unshare"  // unshare(2) creating new namespaces
	KindMount    Kind = "mount"    // mount(2)
	KindHealth   Kind = "health"   // the sensor reports on itself (drops, degraded mode)
	KindSnapshot Kind = "snapshot" // a process that existed when the sensor started (seeded from /proc)
)

// Kubernetes control plane.
const (
	// KindAudit is one request to the Kubernetes API server, read from its
	// audit log or received from its audit webhook (audit.k8s.io/v1 Event).
	// Process is empty; Audit is set; Container, when set, is the pod the
	// request came from.
	KindAudit Kind = "audit"
)

// AllKinds lists every kind, in documentation order.
var AllKinds = []Kind{
	KindExec, KindFork, KindExit,
	KindConnect, KindBind, KindListen, KindAccept, KindDNS,
	KindOpen, KindChmod, KindUnlink, KindRename, KindMemfd, KindPtrace, KindModule,
	KindSetns, KindUnshare, KindMount,
	KindHealth, KindSnapshot,
	KindAudit,
}

// Event is one observation. Process is always set (for health events it is
// the sensor itself); the detail pointer matching Kind is set.
type Event struct {
	Kind      Kind         `json:"kind"`
	Time      time.Time    `json:"time"`
	Node      string       `json:"node,omitempty"`
	Source    string       `json:"source,omitempty"` // "ebpf", "proc", "replay", "audit-log", "audit-webhook"
	Process   Process      `json:"process"`
	Parent    *ProcessRef  `json:"parent,omitempty"`
	Ancestry  []ProcessRef `json:"ancestry,omitempty"` // parent first, then grandparent, ...
	Container *Container   `json:"container,omitempty"`

	Network *Network `json:"network,omitempty"`
	File    *File    `json:"file,omitempty"`
	Exit    *Exit    `json:"exit,omitempty"`
	Fork    *Fork    `json:"fork,omitempty"`
	Syscall *Syscall `json:"syscall,omitempty"` // ptrace, module, setns, unshare, mount, memfd
	Health  *Health  `json:"health,omitempty"`
	Audit   *Audit   `json:"audit,omitempty"`

	// Facts are derived by vigil's stateful detectors before rules run
	// (e.g. drift.writtenBy=/usr/bin/curl for an exec of a file a download
	// tool wrote in this container). Rules read them as facts["name"].
	Facts []Fact `json:"facts,omitempty"`
}

// Fact is one piece of detector-derived evidence about an event.
type Fact struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Fact returns the value of the named fact and whether it is present.
func (e *Event) Fact(name string) (string, bool) {
	for _, f := range e.Facts {
		if f.Name == name {
			return f.Value, true
		}
	}
	return "", false
}

// SetFact adds or replaces a fact.
func (e *Event) SetFact(name, value string) {
	for i := range e.Facts {
		if e.Facts[i].Name == name {
			e.Facts[i].Value = value
			return
		}
	}
	e.Facts = append(e.Facts, Fact{Name: name, Value: value})
}

// Process describes the process an event belongs to.
type Process struct {
	PID  int `json:"pid"`           // thread-group id (what userspace calls a pid)
	TID  int `json:"tid,omitempty"` // the thread that acted, when it differs from pid
	PPID int `json:"ppid"`
	// StartTime is the process start in nanoseconds since boot
	// (CLOCK_BOOTTIME, the clock /proc/<pid>/stat uses). (PID, StartTime)
	// identifies a process across pid reuse.
	StartTime     uint64   `json:"startTime"`
	UID           uint32   `json:"uid"`
	GID           uint32   `json:"gid"`
	EUID          uint32   `json:"euid"`
	User          string   `json:"user,omitempty"`
	Comm          string   `json:"comm"`
	Exe           string   `json:"exe,omitempty"`
	Args          []string `json:"args,omitempty"`
	ArgsTruncated bool     `json:"argsTruncated,omitempty"`
	Cwd           string   `json:"cwd,omitempty"`
	Cgroup        string   `json:"cgroup,omitempty"`
	CgroupID      uint64   `json:"cgroupID,omitempty"` // kernfs id of Cgroup
	MntNS         uint32   `json:"mntns,omitempty"`
	PidNS         uint32   `json:"pidns,omitempty"`
	NetNS         uint32   `json:"netns,omitempty"`
	ExeInode      uint64   `json:"exeInode,omitempty"`
	ExeDev        uint32   `json:"exeDev,omitempty"`
	// ExeUpperLayer: the executable lives on an overlayfs upper (writable
	// container) layer, i.e. it was not part of the image.
	ExeUpperLayer bool `json:"exeUpperLayer,omitempty"`
	// ExeMemfd: the executable is an anonymous memory file (memfd_create).
	ExeMemfd bool `json:"exeMemfd,omitempty"`
	// ExeDeleted: the executable had no links left when it ran.
	ExeDeleted bool `json:"exeDeleted,omitempty"`
	// StdinSocket / StdoutSocket: at exec, standard input / standard output
	// or error was a TCP or UDP (IPv4/IPv6) socket — the shape of a reverse
	// or bind shell (unix sockets such as journald's stdout stream do not
	// count). Reported by the eBPF source only.
	StdinSocket  bool `json:"stdinSocket,omitempty"`
	StdoutSocket bool `json:"stdoutSocket,omitempty"`
}

// Key identifies a process across pid reuse.
type Key struct {
	PID int
	// Start is the start time truncated to clock ticks (10 ms), the
	// precision /proc offers, so that keys seeded from /proc and keys from
	// the kernel agree.
	Start uint64
}

// TickNS is the precision of process start times in /proc (USER_HZ=100).
const TickNS = 10_000_000

// MakeKey builds a Key from a pid and a start time in ns since boot.
func MakeKey(pid int, startNS uint64) Key { return Key{PID: pid, Start: startNS / TickNS} }

// Key returns the process's identity.
func (p *Process) Key() Key { return MakeKey(p.PID, p.StartTime) }

func (k Key) String() string { return fmt.Sprintf("%d@%d", k.PID, k.Start) }

// ProcessRef is a compact view of an ancestor.
type ProcessRef struct {
	PID       int      `json:"pid"`
	StartTime uint64   `json:"startTime,omitempty"`
	Exe       string   `json:"exe,omitempty"`
	Args      []string `json:"args,omitempty"`
	Comm      string   `json:"comm,omitempty"`
	UID       uint32   `json:"uid"`
	// Exited is set when the ancestor has already exited (a reparented
	// orphan's original parent, for instance).
	Exited bool `json:"exited,omitempty"`
}

// Container attributes an event to a container. Host processes carry
// Container{Host: true}.
type Container struct {
	Host    bool   `json:"host,omitempty"`
	ID      string `json:"id,omitempty"`
	Runtime string `json:"runtime,omitempty"` // containerd, cri-o, docker, podman, runc, ...
	PodUID  string `json:"podUID,omitempty"`
	QOS     string `json:"qos,omitempty"` // guaranteed, burstable, besteffort (kubepods only)
	// Name, Image, Pod and Namespace are filled when a metadata source
	// (CRI, Kubernetes API) knows them.
	Name      string `json:"name,omitempty"`
	Image     string `json:"image,omitempty"`
	Pod       string `json:"pod,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	// Workload is the pod's controlling workload as Kind/Name
	// (Deployment/web, DaemonSet/agent, StatefulSet/db, Job/backup, ...),
	// Labels the pod's labels; both from the Kubernetes API.
	Workload string            `json:"workload,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
}

// Network details for connect/bind/listen/accept/dns.
type Network struct {
	Family   string `json:"family"`   // "ipv4", "ipv6"
	Protocol string `json:"protocol"` // "tcp", "udp"
	SrcIP    string `json:"srcIP,omitempty"`
	SrcPort  uint16 `json:"srcPort,omitempty"`
	DstIP    string `json:"dstIP,omitempty"`
	DstPort  uint16 `json:"dstPort,omitempty"`
	// Result of a connect: 0 on success, else a negative errno-like code
	// (e.g. -111 connection refused, -110 timed out).
	Result   int    `json:"result"`
	ResultOK bool   `json:"resultOK"`
	Error    string `json:"error,omitempty"` // human form of Result ("connection refused")
	// Repeats counts, for connect and accept, the like connections (same
	// process, same destination or same peer address and local port) the
	// sensor folded into the previous report of this one: they fell within
	// its repeat window (--network-repeat-window) and were counted in the
	// kernel instead of being sent.
	Repeats  int    `json:"repeats,omitempty"`
	DNSQuery string `json:"dnsQuery,omitempty"`
	DNSType  string `json:"dnsType,omitempty"` // "A", "AAAA", ...
}

// File details for open/chmod/unlink/rename.
type File struct {
	Path    string `json:"path"`
	NewPath string `json:"newPath,omitempty"` // rename target
	Flags   uint32 `json:"flags,omitempty"`   // open flags (O_*)
	Mode    uint32 `json:"mode,omitempty"`    // chmod / create mode
	Write   bool   `json:"write,omitempty"`   // opened for writing
	Create  bool   `json:"create,omitempty"`
	Trunc   bool   `json:"trunc,omitempty"`
	// Sensitive: a read-only open matched the sensitive-path prefixes.
	Sensitive bool `json:"sensitive,omitempty"`
	Result    int  `json:"result"` // 0 or a negative errno
}

// Exit details.
type Exit struct {
	Code     int  `json:"code"`             // exit status (0-255) when exited normally
	Signal   int  `json:"signal,omitempty"` // terminating signal, if any
	CoreDump bool `json:"coreDump,omitempty"`
}

// Fork details: Process is the child, Parent the creator.
type Fork struct {
	ChildPID int `json:"childPID"`
}

// Syscall details for privilege-relevant calls.
type Syscall struct {
	Name      string `json:"name"` // "ptrace", "finit_module", "setns", ...
	Result    int    `json:"result"`
	TargetPID int    `json:"targetPID,omitempty"` // ptrace
	Request   int64  `json:"request,omitempty"`   // ptrace request
	Flags     uint64 `json:"flags,omitempty"`     // clone/mount/memfd flags
	Module    string `json:"module,omitempty"`    // module name or file
	Args      string `json:"args,omitempty"`      // module parameters
	Source    string `json:"source,omitempty"`    // mount source
	Target    string `json:"target,omitempty"`    // mount target
	FSType    string `json:"fsType,omitempty"`    // mount filesystem type
	Name2     string `json:"memfdName,omitempty"` // memfd name
	Namespace string `json:"namespaces,omitempty"`
}

// Health reports the sensor's own condition.
type Health struct {
	Status  string `json:"status"` // "ok", "degraded", "drops"
	Message string `json:"message"`
	// Drops is the number of events lost since the previous health event
	// (kernel-side reservation failures plus user-space queue overflows).
	Drops uint64 `json:"drops,omitempty"`
	// Missing lists event kinds the current source cannot observe.
	Missing []Kind `json:"missing,omitempty"`
	Mode    string `json:"mode,omitempty"` // "ebpf" or "proc"
}

// Audit is one Kubernetes API request as the API server's audit backend
// recorded it (audit.k8s.io/v1 Event at stage ResponseComplete or Panic),
// flattened to what rules and alerts need.
type Audit struct {
	AuditID string `json:"auditID,omitempty"`
	Stage   string `json:"stage,omitempty"` // ResponseComplete, Panic, ...
	Level   string `json:"level,omitempty"` // Metadata, Request, RequestResponse
	// User is the authenticated user name (system:anonymous for
	// unauthenticated requests, system:serviceaccount:NS:NAME for service
	// accounts), Groups its groups.
	User   string   `json:"user"`
	Groups []string `json:"groups,omitempty"`
	// ServiceAccountNamespace and ServiceAccountName are set when User is a
	// service account.
	ServiceAccountNamespace string `json:"serviceAccountNamespace,omitempty"`
	ServiceAccountName      string `json:"serviceAccountName,omitempty"`
	// ImpersonatedUser is the user the request acted as (Impersonate-User).
	ImpersonatedUser string `json:"impersonatedUser,omitempty"`
	Verb             string `json:"verb"` // get, list, watch, create, update, patch, delete, deletecollection, ...
	// The object the request was about (objectRef).
	APIGroup    string   `json:"apiGroup,omitempty"` // "" is the core group
	APIVersion  string   `json:"apiVersion,omitempty"`
	Resource    string   `json:"resource,omitempty"`
	Subresource string   `json:"subresource,omitempty"`
	Namespace   string   `json:"namespace,omitempty"`
	Name        string   `json:"name,omitempty"`
	RequestURI  string   `json:"requestURI,omitempty"`
	SourceIPs   []string `json:"sourceIPs,omitempty"`
	UserAgent   string   `json:"userAgent,omitempty"`
	// ResponseCode is the HTTP status the API server answered (0 if unknown).
	ResponseCode int `json:"responseCode"`
	// Decision and Reason are the authorizer's verdict (allow, forbid) and
	// explanation, from the authorization.k8s.io annotations.
	Decision string `json:"decision,omitempty"`
	Reason   string `json:"reason,omitempty"`

	// Fields of the request object (only when the audit policy logs
	// Request or RequestResponse for it). For pods and pod templates of
	// workloads (Deployment, DaemonSet, StatefulSet, ReplicaSet, Job,
	// CronJob):
	ObjectKind   string   `json:"objectKind,omitempty"` // kind of the request object (Pod, Deployment, ClusterRoleBinding, ...)
	Privileged   bool     `json:"privileged,omitempty"` // a container or init container runs privileged
	HostPID      bool     `json:"hostPID,omitempty"`
	HostNetwork  bool     `json:"hostNetwork,omitempty"`
	HostIPC      bool     `json:"hostIPC,omitempty"`
	HostPaths    []string `json:"hostPaths,omitempty"`    // hostPath volume paths
	Images       []string `json:"images,omitempty"`       // container and init container images
	Capabilities []string `json:"capabilities,omitempty"` // capabilities added to any container
	// For RoleBindings and ClusterRoleBindings: the role bound and the
	// subjects as Kind:name or Kind:namespace/name.
	RoleRefKind string   `json:"roleRefKind,omitempty"`
	RoleRefName string   `json:"roleRefName,omitempty"`
	Subjects    []string `json:"subjects,omitempty"`
	// WildcardRule: a Role or ClusterRole grants "*" verbs on "*" resources.
	WildcardRule bool `json:"wildcardRule,omitempty"`
}

// Package container attributes processes to containers and pods from their
// cgroup path, caches that attribution per cgroup id, and detects the host's
// cgroup layout so the eBPF sensor knows which hierarchy carries container
// identity (see DetectLayout).
//
// # Parsing rules
//
// Parse walks the path's elements from the root to the leaf. Every element
// that names a container (a runtime scope such as cri-containerd-<id>.scope,
// a /docker/<id> pair, a container below a Kubernetes pod cgroup, ...)
// replaces what was found before, so the innermost container wins: for a
// kind or k3s node running inside Docker (/docker/<node>/kubepods/...) the
// pod's container is reported, not the node. Elements below a container
// (libpod-<id>.scope/container, a container's own systemd units) keep the
// container found above them.
//
// Kubernetes pods are recognised under a "kubepods" element (cgroupfs
// driver) or a "*kubepods.slice" element (systemd driver, including kind's
// kubelet-kubepods.slice). The QoS class comes from the burstable/besteffort
// level; a pod directly below kubepods is Guaranteed. The systemd driver
// escapes the pod UID's dashes as underscores; Parse restores the dashes.
// A bare container id below a pod (cgroupfs driver) is reported as
// containerd: CRI-O names its cgroupfs containers crio-<id>, and dockershim,
// the only other producer of bare ids, was removed in Kubernetes 1.24.
//
// conmon (crio-conmon-<id>, libpod-conmon-<id>) is the runtime's host-side
// monitor process: it runs outside the container's namespaces, with the
// host's filesystem and privileges, so Parse reports it as a host process.
// Attributing it to the container would make the workload appear to run
// host software it cannot reach.
//
// Runtime daemons (/system.slice/containerd.service, docker.service) and
// every other systemd unit (*.slice, *.scope, *.service, ...) that does not
// name a container are host processes, as are "/" and "".
//
// # Plain runc and ctr
//
// A path that matches none of the above and contains no systemd unit is a
// container created directly with a cgroupfs cgroupsPath. Its ID is always
// the last path element. The runtime is "containerd" when the path has
// exactly two elements and the first is a valid containerd namespace name
// (ctr run's default cgroupsPath is /<namespace>/<id>, e.g. /default/myctr,
// /k8s.io/<id>); otherwise it is "runc" (/vigil-test-1234). A runc
// container given a two-element cgroupsPath is therefore labelled
// containerd; its ID is still right. A kernel-side cgroup ID lookup or a
// metadata Enricher can correct the runtime when it matters.
//
// Such a generic path may also be a cgroup that a host tool, a sandbox or a
// service manager created for ordinary host processes (this project's CI
// machines put every session in /process_api/<id>). Every container runtime
// gives its containers their own mount namespace, so Resolver.ResolveProcess
// reports a process in a generic cgroup as a host process when it shares the
// host's mount namespace (WithHostMountNS). Runtime-specific paths
// (kubepods, docker-, crio-, libpod-, cri-containerd-) are never demoted
// this way: a pod process that joined the host's mount namespace with
// nsenter is still the pod's.
package container

import (
	"strings"

	"github.com/vigil-sec/vigil/internal/event"
)

// Runtime names reported in event.Container.Runtime.
const (
	RuntimeContainerd = "containerd"
	RuntimeCRIO       = "cri-o"
	RuntimeDocker     = "docker"
	RuntimePodman     = "podman"
	RuntimeRunc       = "runc"
	RuntimeLXC        = "lxc"
)

// Kubernetes QoS classes reported in event.Container.QOS.
const (
	QOSGuaranteed = "guaranteed"
	QOSBurstable  = "burstable"
	QOSBestEffort = "besteffort"
)

// candidate is the innermost container found so far.
type candidate struct {
	found   bool
	host    bool // a host-side helper (conmon)
	id      string
	runtime string
}

// kubeState tracks the Kubernetes pod hierarchy.
type kubeState struct {
	in        bool   // below a kubepods root
	qos       string // from the QoS level
	pod       bool   // below the pod level
	podUID    string // raw, as written in the path
	systemd   bool   // pod UID is underscore-escaped
	container bool   // the pod's container element was seen
}

// Parse attributes a cgroup path, as seen from the hierarchy root (the path
// in /proc/<pid>/cgroup or a kernfs walk), to a container. Host processes
// yield Container{Host: true}. Parse never fails: unknown layouts are
// attributed by the rules in the package documentation. It does not
// allocate except to restore dashes in a systemd pod UID.
func Parse(path string) event.Container {
	c, _ := parse(path)
	return c
}

// parse is Parse that also reports whether only the generic plain-runc/ctr
// rule matched (no runtime-specific naming): such a cgroup may just as well
// be one a host tool created, which the Resolver settles by mount namespace.
func parse(path string) (c event.Container, generic bool) {
	var (
		cand     candidate
		kube     kubeState
		sawUnit  bool
		depth    int
		first    string
		prev     string
		lastElem string
	)
	rest := path
	for rest != "" {
		var seg string
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			seg, rest = rest[:i], rest[i+1:]
		} else {
			seg, rest = rest, ""
		}
		if seg == "" || seg == "." {
			continue
		}
		depth++
		if depth == 1 {
			first = seg
		}
		lastElem = seg
		cur := prev
		prev = seg

		base, isUnit := unitBase(seg)
		if isUnit {
			sawUnit = true
		}

		// A kubepods root starts a new, inner attribution.
		if seg == "kubepods" || (strings.HasSuffix(seg, ".slice") && (base == "kubepods" || strings.HasSuffix(base, "-kubepods"))) {
			kube = kubeState{in: true}
			cand = candidate{}
			continue
		}
		if kube.in && !kube.pod {
			if kubePodLevel(&kube, seg, base, cur) {
				continue
			}
		} else if kube.in && kube.pod && !kube.container {
			kube.container = true
			cand = podContainer(seg, base)
			continue
		}

		if c, ok := runtimeElement(seg, base, isUnit, cur); ok {
			cand = c
			kube = kubeState{} // a container nested in a pod's container is not the pod's
		}
	}

	switch {
	case cand.found && cand.host:
		return event.Container{Host: true}, false
	case cand.found:
		c := event.Container{ID: cand.id, Runtime: cand.runtime}
		if kube.in && kube.pod {
			c.PodUID, c.QOS = kube.uid(), kube.qos
		}
		return c, false
	case kube.in && kube.pod:
		// The pod-level cgroup itself: no container, but the pod is known.
		return event.Container{PodUID: kube.uid(), QOS: kube.qos}, false
	case kube.in, depth == 0, sawUnit:
		return event.Container{Host: true}, false
	}
	// Plain runc or ctr with a cgroupfs cgroupsPath.
	runtime := RuntimeRunc
	switch {
	case first == "docker":
		runtime = RuntimeDocker
	case depth == 2 && validNamespace(first):
		runtime = RuntimeContainerd
	}
	return event.Container{ID: lastElem, Runtime: runtime}, runtime != RuntimeDocker
}

// kubePodLevel consumes the QoS and pod levels below a kubepods root. It
// reports whether seg was one of them.
func kubePodLevel(k *kubeState, seg, base, prev string) bool {
	// cgroupfs driver: /kubepods/<qos>/pod<uid>, /kubepods/pod<uid>.
	if base == seg {
		if k.qos == "" && (seg == QOSBurstable || seg == QOSBestEffort) && (prev == "kubepods") {
			k.qos = seg
			return true
		}
		if len(seg) > 3 && strings.HasPrefix(seg, "pod") {
			k.pod, k.podUID = true, seg[3:]
			if k.qos == "" {
				k.qos = QOSGuaranteed
			}
			return true
		}
		return false
	}
	// systemd driver: kubepods-<qos>.slice, kubepods[-<qos>]-pod<uid>.slice.
	if !strings.HasSuffix(seg, ".slice") {
		return false
	}
	if i := strings.LastIndex(base, "-pod"); i >= 0 && i+4 < len(base) && strings.Contains(base[:i+1], "kubepods") {
		parent := base[:i]
		switch {
		case strings.HasSuffix(parent, "-"+QOSBurstable):
			k.qos = QOSBurstable
		case strings.HasSuffix(parent, "-"+QOSBestEffort):
			k.qos = QOSBestEffort
		case k.qos == "":
			k.qos = QOSGuaranteed
		}
		k.pod, k.podUID, k.systemd = true, base[i+4:], true
		return true
	}
	switch {
	case strings.HasSuffix(base, "kubepods-"+QOSBurstable):
		k.qos = QOSBurstable
		return true
	case strings.HasSuffix(base, "kubepods-"+QOSBestEffort):
		k.qos = QOSBestEffort
		return true
	}
	return false
}

// uid returns the pod UID with dashes.
func (k *kubeState) uid() string {
	if k.systemd && strings.IndexByte(k.podUID, '_') >= 0 {
		return strings.ReplaceAll(k.podUID, "_", "-")
	}
	return k.podUID
}

// podContainer attributes the element directly below a pod cgroup. Every
// element there is a container (the pause/sandbox container included).
func podContainer(seg, base string) candidate {
	if c, ok := runtimePrefix(base); ok {
		return c
	}
	if isHex64(base) {
		return candidate{found: true, id: base, runtime: RuntimeContainerd}
	}
	// An unknown runtime's naming: the element still is the container.
	return candidate{found: true, id: base}
}

// runtimeElement recognises a container element outside a pod: a runtime's
// systemd scope, Docker's /docker/<id>, Podman's cgroupfs libpod-<id>, LXC.
func runtimeElement(seg, base string, isUnit bool, prev string) (candidate, bool) {
	switch {
	case isUnit && strings.HasSuffix(seg, ".scope"), !isUnit && strings.HasPrefix(seg, "libpod-"):
		if c, ok := runtimePrefix(base); ok {
			return c, true
		}
	case prev == "docker" && isHex64(seg):
		return candidate{found: true, id: seg, runtime: RuntimeDocker}, true
	case strings.HasPrefix(seg, "lxc.payload.") && len(seg) > len("lxc.payload."):
		return candidate{found: true, id: seg[len("lxc.payload."):], runtime: RuntimeLXC}, true
	case strings.HasPrefix(seg, "lxc.monitor."):
		return candidate{found: true, host: true}, true
	case prev == "lxc":
		return candidate{found: true, id: seg, runtime: RuntimeLXC}, true
	}
	return candidate{}, false
}

// runtimePrefix recognises the names runtimes give container cgroups with
// the systemd driver (<prefix><id>.scope, passed here without ".scope") and,
// for CRI-O and Podman, with cgroupfs (<prefix><id>). The conmon prefixes
// are tried before the container prefixes they extend.
func runtimePrefix(base string) (candidate, bool) {
	prefixes := [...]struct {
		prefix  string
		runtime string // "" marks a host-side helper (conmon)
	}{
		{"cri-containerd-", RuntimeContainerd},
		{"crio-conmon-", ""},
		{"crio-", RuntimeCRIO},
		{"docker-", RuntimeDocker},
		{"libpod-conmon-", ""},
		{"libpod-", RuntimePodman},
		{"runc-", RuntimeRunc},
	}
	for _, p := range prefixes {
		if id, ok := strings.CutPrefix(base, p.prefix); ok && id != "" {
			if p.runtime == "" {
				return candidate{found: true, host: true}, true
			}
			return candidate{found: true, id: id, runtime: p.runtime}, true
		}
	}
	return candidate{}, false
}

// unitBase strips a systemd unit suffix. isUnit reports whether seg is a
// systemd unit name.
func unitBase(seg string) (base string, isUnit bool) {
	i := strings.LastIndexByte(seg, '.')
	if i <= 0 {
		return seg, false
	}
	switch seg[i+1:] {
	case "slice", "scope", "service", "socket", "mount", "swap":
		return seg[:i], true
	}
	return seg, false
}

// isHex64 reports whether s is a 64-character lower-case hex id, the form
// of Docker, containerd (CRI) and CRI-O container ids.
func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// validNamespace reports whether s is a valid containerd namespace name:
// alphanumeric labels joined by single '.', '_' or '-'.
func validNamespace(s string) bool {
	if s == "" {
		return false
	}
	sep := true // a separator may not start the name
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			sep = false
		case c == '.' || c == '_' || c == '-':
			if sep {
				return false
			}
			sep = true
		default:
			return false
		}
	}
	return !sep
}

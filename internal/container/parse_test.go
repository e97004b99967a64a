package container

import (
	"reflect"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
)

const (
	ctrID     = "3f9c6b0a8d2e41f7b5c1e0d9a7f6b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6"
	pauseID   = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
	nodeID    = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d"
	podUID    = "6b3f1c2e-8a7d-4e5f-9b0c-1d2e3f4a5b6c"
	podUIDSys = "6b3f1c2e_8a7d_4e5f_9b0c_1d2e3f4a5b6c"
)

func TestParse(t *testing.T) {
	host := event.Container{Host: true}
	tests := []struct {
		name string
		path string
		want event.Container
	}{
		// Kubernetes, cgroupfs driver.
		{"kubelet cgroupfs besteffort container carries pod uid and qos",
			"/kubepods/besteffort/pod" + podUID + "/" + ctrID,
			event.Container{ID: ctrID, Runtime: RuntimeContainerd, PodUID: podUID, QOS: QOSBestEffort}},
		{"kubelet cgroupfs burstable container carries pod uid and qos",
			"/kubepods/burstable/pod" + podUID + "/" + ctrID,
			event.Container{ID: ctrID, Runtime: RuntimeContainerd, PodUID: podUID, QOS: QOSBurstable}},
		{"kubelet cgroupfs guaranteed pod sits directly under kubepods",
			"/kubepods/pod" + podUID + "/" + ctrID,
			event.Container{ID: ctrID, Runtime: RuntimeContainerd, PodUID: podUID, QOS: QOSGuaranteed}},
		{"cri-o cgroupfs container is named crio-id",
			"/kubepods/burstable/pod" + podUID + "/crio-" + ctrID,
			event.Container{ID: ctrID, Runtime: RuntimeCRIO, PodUID: podUID, QOS: QOSBurstable}},
		{"cri-o cgroupfs conmon is a host process",
			"/kubepods/burstable/pod" + podUID + "/crio-conmon-" + ctrID,
			host},
		{"pod level cgroup reports the pod without a container",
			"/kubepods/besteffort/pod" + podUID,
			event.Container{PodUID: podUID, QOS: QOSBestEffort}},
		{"kubepods qos level without a pod is a host cgroup",
			"/kubepods/burstable",
			host},
		{"process in a nested cgroup inside a pod container keeps the container",
			"/kubepods/besteffort/pod" + podUID + "/" + ctrID + "/init.scope",
			event.Container{ID: ctrID, Runtime: RuntimeContainerd, PodUID: podUID, QOS: QOSBestEffort}},

		// Kubernetes, systemd driver.
		{"systemd driver containerd container restores dashes in pod uid",
			"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podUIDSys + ".slice/cri-containerd-" + ctrID + ".scope",
			event.Container{ID: ctrID, Runtime: RuntimeContainerd, PodUID: podUID, QOS: QOSBurstable}},
		{"systemd driver besteffort cri-o container",
			"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + podUIDSys + ".slice/crio-" + ctrID + ".scope",
			event.Container{ID: ctrID, Runtime: RuntimeCRIO, PodUID: podUID, QOS: QOSBestEffort}},
		{"systemd driver cri-dockerd container",
			"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podUIDSys + ".slice/docker-" + ctrID + ".scope",
			event.Container{ID: ctrID, Runtime: RuntimeDocker, PodUID: podUID, QOS: QOSBurstable}},
		{"systemd driver guaranteed pod slice sits directly under kubepods",
			"/kubepods.slice/kubepods-pod" + podUIDSys + ".slice/cri-containerd-" + ctrID + ".scope",
			event.Container{ID: ctrID, Runtime: RuntimeContainerd, PodUID: podUID, QOS: QOSGuaranteed}},
		{"pause sandbox container is attributed to its pod",
			"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + podUIDSys + ".slice/cri-containerd-" + pauseID + ".scope",
			event.Container{ID: pauseID, Runtime: RuntimeContainerd, PodUID: podUID, QOS: QOSBestEffort}},
		{"systemd driver cri-o conmon is a host process",
			"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podUIDSys + ".slice/crio-conmon-" + ctrID + ".scope",
			host},
		{"kind kubelet cgroup root with kubelet-kubepods slices",
			"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + podUIDSys + ".slice/cri-containerd-" + ctrID + ".scope",
			event.Container{ID: ctrID, Runtime: RuntimeContainerd, PodUID: podUID, QOS: QOSBestEffort}},

		// Docker, Podman, runc systemd scopes.
		{"docker cgroupfs container",
			"/docker/" + ctrID,
			event.Container{ID: ctrID, Runtime: RuntimeDocker}},
		{"docker systemd container scope",
			"/system.slice/docker-" + ctrID + ".scope",
			event.Container{ID: ctrID, Runtime: RuntimeDocker}},
		{"podman systemd container under machine slice",
			"/machine.slice/libpod-" + ctrID + ".scope",
			event.Container{ID: ctrID, Runtime: RuntimePodman}},
		{"podman pod member under a libpod pod slice",
			"/machine.slice/machine-libpod_pod_" + pauseID + ".slice/libpod-" + ctrID + ".scope",
			event.Container{ID: ctrID, Runtime: RuntimePodman}},
		{"podman cgroupfs container under libpod_parent",
			"/libpod_parent/libpod-" + ctrID,
			event.Container{ID: ctrID, Runtime: RuntimePodman}},
		{"rootless podman container in the user's systemd instance",
			"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + ctrID + ".scope",
			event.Container{ID: ctrID, Runtime: RuntimePodman}},
		{"podman nested container cgroup keeps the container id",
			"/machine.slice/libpod-" + ctrID + ".scope/container",
			event.Container{ID: ctrID, Runtime: RuntimePodman}},
		{"podman conmon is a host process",
			"/machine.slice/libpod-conmon-" + ctrID + ".scope",
			host},
		{"runc systemd driver scope under system slice",
			"/system.slice/runc-mybox.scope",
			event.Container{ID: "mybox", Runtime: RuntimeRunc}},
		{"runc systemd driver scope under machine slice",
			"/machine.slice/runc-" + ctrID + ".scope",
			event.Container{ID: ctrID, Runtime: RuntimeRunc}},
		{"containerd systemd driver without kubernetes",
			"/system.slice/cri-containerd-" + ctrID + ".scope",
			event.Container{ID: ctrID, Runtime: RuntimeContainerd}},
		{"lxc payload cgroup",
			"/lxc.payload.web1",
			event.Container{ID: "web1", Runtime: RuntimeLXC}},

		// Plain runc and ctr (cgroupfs cgroupsPath).
		{"plain runc single element cgroupsPath is runc with that id",
			"/vigil-test-1234",
			event.Container{ID: "vigil-test-1234", Runtime: RuntimeRunc}},
		{"ctr run default namespace path is containerd with the last element as id",
			"/default/myctr",
			event.Container{ID: "myctr", Runtime: RuntimeContainerd}},
		{"ctr run in the k8s.io namespace is containerd",
			"/k8s.io/" + ctrID,
			event.Container{ID: ctrID, Runtime: RuntimeContainerd}},
		{"deeper custom runc cgroupsPath is runc with the last element as id",
			"/tenants/a/box7",
			event.Container{ID: "box7", Runtime: RuntimeRunc}},
		{"trailing and doubled slashes do not change the id",
			"//vigil-test-1234/",
			event.Container{ID: "vigil-test-1234", Runtime: RuntimeRunc}},

		// Host processes.
		{"root cgroup is host", "/", host},
		{"empty path is host", "", host},
		{"user slice is host", "/user.slice", host},
		{"ssh service is host", "/system.slice/ssh.service", host},
		{"init scope is host", "/init.scope", host},
		{"login session scope is host", "/user.slice/user-0.slice/session-3.scope", host},
		{"containerd daemon itself is host", "/system.slice/containerd.service", host},
		{"docker daemon itself is host", "/system.slice/docker.service", host},
		{"lxc monitor is host", "/lxc.monitor.web1", host},

		// Nesting: innermost wins.
		{"kind node in docker: the pod container wins over the node container",
			"/docker/" + nodeID + "/kubepods/besteffort/pod" + podUID + "/" + ctrID,
			event.Container{ID: ctrID, Runtime: RuntimeContainerd, PodUID: podUID, QOS: QOSBestEffort}},
		{"kind node in systemd docker: the pod container wins",
			"/system.slice/docker-" + nodeID + ".scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod" + podUIDSys + ".slice/cri-containerd-" + ctrID + ".scope",
			event.Container{ID: ctrID, Runtime: RuntimeContainerd, PodUID: podUID, QOS: QOSGuaranteed}},
		{"kind node's own containerd is the node container",
			"/docker/" + nodeID + "/system.slice/containerd.service",
			event.Container{ID: nodeID, Runtime: RuntimeDocker}},
		{"k3s pod level cgroup inside docker is the pod, not the node",
			"/docker/" + nodeID + "/kubepods/burstable/pod" + podUID,
			event.Container{PodUID: podUID, QOS: QOSBurstable}},
		{"docker in a pod container: the inner container wins and is not the pod's",
			"/kubepods/burstable/pod" + podUID + "/" + nodeID + "/docker/" + ctrID,
			event.Container{ID: ctrID, Runtime: RuntimeDocker}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Parse(tc.path); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse(%q)\n got %+v\nwant %+v", tc.path, got, tc.want)
			}
		})
	}
}

func TestValidNamespace(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"plain name is a namespace", "default", true},
		{"dotted name is a namespace", "k8s.io", true},
		{"empty string is not a namespace", "", false},
		{"leading separator is not a namespace", "-x", false},
		{"trailing separator is not a namespace", "x.", false},
		{"doubled separator is not a namespace", "a..b", false},
		{"space is not allowed in a namespace", "a b", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := validNamespace(tc.in); got != tc.want {
				t.Errorf("validNamespace(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

// checkInvariants asserts what every consumer of Parse relies on: a host
// attribution carries nothing else, and a non-host one names a container
// or a pod.
func checkInvariants(t *testing.T, path string, c event.Container) {
	t.Helper()
	if c.Host {
		if !reflect.DeepEqual(c, event.Container{Host: true}) {
			t.Fatalf("Parse(%q) = %+v: host attribution carries container fields", path, c)
		}
		return
	}
	if c.ID == "" && c.PodUID == "" {
		t.Fatalf("Parse(%q) = %+v: neither host nor a container or pod", path, c)
	}
	if strings.Contains(c.ID, "/") {
		t.Fatalf("Parse(%q) = %+v: container id contains a path separator", path, c)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"/", "", "/kubepods/burstable/pod" + podUID + "/" + ctrID,
		"/kubepods.slice/kubepods-pod" + podUIDSys + ".slice/crio-" + ctrID + ".scope",
		"/docker/" + ctrID, "/default/x", "/kubepods-pod.slice", "/-pod.slice", "/kubepods/pod",
		"/a.scope", "/.scope", "/lxc/", "/lxc.payload.", "/machine.slice/libpod-.scope",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		checkInvariants(t, path, Parse(path))
	})
}

func BenchmarkParse(b *testing.B) {
	paths := []struct{ name, path string }{
		{"cgroupfs_kubepods", "/kubepods/burstable/pod" + podUID + "/" + ctrID},
		{"systemd_kubepods", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podUIDSys + ".slice/cri-containerd-" + ctrID + ".scope"},
		{"host_session", "/user.slice/user-0.slice/session-3.scope"},
	}
	for _, p := range paths {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c := Parse(p.path)
				if c.Host {
					_ = c
				}
			}
		})
	}
}

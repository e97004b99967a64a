package kubemeta

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestTheWorkloadIsNamedAfterTheControllerChainKubernetesCreates(t *testing.T) {
	yes := true
	pod := func(name string, labels map[string]string, kind, owner string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
		if kind != "" {
			p.OwnerReferences = []metav1.OwnerReference{
				{Kind: "Node", Name: "not-the-controller"},
				{Kind: kind, Name: owner, Controller: &yes},
			}
		}
		return p
	}
	tests := []struct {
		name string
		pod  *corev1.Pod
		want string
	}{
		{"a Deployment's pod through its ReplicaSet", pod("web-7d9f8c6b5-x2x4z", map[string]string{"pod-template-hash": "7d9f8c6b5"}, "ReplicaSet", "web-7d9f8c6b5"), "Deployment/web"},
		{"a Deployment whose name has dashes", pod("my-api-v2-5c6d7e8f9-abcde", map[string]string{"pod-template-hash": "5c6d7e8f9"}, "ReplicaSet", "my-api-v2-5c6d7e8f9"), "Deployment/my-api-v2"},
		{"a bare ReplicaSet without a template hash", pod("rs-abcde", nil, "ReplicaSet", "rs"), "ReplicaSet/rs"},
		{"a DaemonSet", pod("vigil-sensor-8xk2p", nil, "DaemonSet", "vigil-sensor"), "DaemonSet/vigil-sensor"},
		{"a StatefulSet", pod("db-0", nil, "StatefulSet", "db"), "StatefulSet/db"},
		{"a CronJob's Job", pod("backup-29123456-abcde", nil, "Job", "backup-29123456"), "CronJob/backup"},
		{"a plain Job", pod("migrate-xyz12", nil, "Job", "migrate"), "Job/migrate"},
		{"a pod nobody controls", pod("debug", nil, "", ""), "Pod/debug"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := workloadOf(tc.pod); got != tc.want {
				t.Errorf("workloadOf = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestContainerIDsLoseTheirRuntimePrefix(t *testing.T) {
	for in, want := range map[string]string{
		"containerd://0123abcd": "0123abcd",
		"cri-o://ffee":          "ffee",
		"0123abcd":              "0123abcd",
		"":                      "",
	} {
		if got := stripRuntime(in); got != want {
			t.Errorf("stripRuntime(%q) = %q, want %q", in, got, want)
		}
	}
}

package kubemeta

import (
	"testing"
)

func TestTheWorkloadIsNamedAfterTheControllerChainKubernetesCreates(t *testing.T) {
	yes := true
	mk := func(name string, labels map[string]string, kind, owner string) *pod {
		p := &pod{}
		p.Metadata.Name, p.Metadata.Labels = name, labels
		if kind != "" {
			p.Metadata.OwnerReferences = []ownerReference{
				{Kind: "Node", Name: "not-the-controller"},
				{Kind: kind, Name: owner, Controller: &yes},
			}
		}
		return p
	}
	tests := []struct {
		name string
		pod  *pod
		want string
	}{
		{"a Deployment's pod through its ReplicaSet", mk("web-7d9f8c6b5-x2x4z", map[string]string{"pod-template-hash": "7d9f8c6b5"}, "ReplicaSet", "web-7d9f8c6b5"), "Deployment/web"},
		{"a Deployment whose name has dashes", mk("my-api-v2-5c6d7e8f9-abcde", map[string]string{"pod-template-hash": "5c6d7e8f9"}, "ReplicaSet", "my-api-v2-5c6d7e8f9"), "Deployment/my-api-v2"},
		{"a bare ReplicaSet without a template hash", mk("rs-abcde", nil, "ReplicaSet", "rs"), "ReplicaSet/rs"},
		{"a DaemonSet", mk("vigil-sensor-8xk2p", nil, "DaemonSet", "vigil-sensor"), "DaemonSet/vigil-sensor"},
		{"a StatefulSet", mk("db-0", nil, "StatefulSet", "db"), "StatefulSet/db"},
		{"a CronJob's Job", mk("backup-29123456-abcde", nil, "Job", "backup-29123456"), "CronJob/backup"},
		{"a plain Job", mk("migrate-xyz12", nil, "Job", "migrate"), "Job/migrate"},
		{"a pod nobody controls", mk("debug", nil, "", ""), "Pod/debug"},
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

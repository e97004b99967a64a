package kube

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestManifestsSplitIntoObjectsAndAreOrderedForApplying(t *testing.T) {
	objs, err := ParseObjects([]byte(`---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: s, namespace: ns1}
---
# only a comment
---
apiVersion: v1
kind: Secret
metadata: {name: s, namespace: ns1}
---
apiVersion: v1
kind: Namespace
metadata: {name: ns1}
`))
	if err != nil {
		t.Fatal(err)
	}
	SortForApply(objs)
	var got []string
	for _, o := range objs {
		got = append(got, o.GetKind())
	}
	if strings.Join(got, ",") != "Namespace,Secret,DaemonSet" {
		t.Fatalf("apply order %v, want Namespace,Secret,DaemonSet", got)
	}
	if Describe(objs[2]) != "DaemonSet ns1/s" || Describe(objs[0]) != "Namespace ns1" {
		t.Fatalf("descriptions %q, %q", Describe(objs[2]), Describe(objs[0]))
	}
}

func TestADocumentWithoutKindIsAnErrorNamingIt(t *testing.T) {
	_, err := ParseObjects([]byte("apiVersion: v1\nkind: Secret\nmetadata: {name: a}\n---\nmetadata: {name: b}\n"))
	if err == nil || !strings.Contains(err.Error(), "document 2") {
		t.Fatalf("error %v, want one naming document 2", err)
	}
}

func TestPodProblemsNameTheContainerAndTheReason(t *testing.T) {
	cases := []struct {
		name string
		pod  corev1.Pod
		want string
	}{
		{"image not on the node", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: "agent",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull", Message: `Container image "x:y" is not present with pull policy of Never`}}}}}},
			"container agent ErrImageNeverPull: Container image \"x:y\" is not present"},
		{"crash loop with the last exit", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: "sensor",
			State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 2, Message: "bad flag"}}}}}},
			"container sensor CrashLoopBackOff (last exit 2 bad flag)"},
		{"unschedulable", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Message: "0/1 nodes are available"}}}},
			"not scheduled: 0/1 nodes are available"},
		{"still creating is not a problem", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: "a",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}}}, ""},
		{"ready", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := PodProblem(&c.pod)
			if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
				t.Fatalf("PodProblem = %q, want %q", got, c.want)
			}
		})
	}
}

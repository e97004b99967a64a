package kubemeta

import (
	"context"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/testutil/kcluster"
)

// On a real cluster: a Deployment's pod on this node is described by the
// cache — pod, namespace, labels, workload, and its container's name and
// image — as soon as kubelet reports the container, and a container of an
// unknown pod stays incomplete.
func TestAPodOfThisNodeIsDescribedFromTheAPIServer(t *testing.T) {
	c := kcluster.Require(t)
	ns := c.Namespace(t, "kubemeta")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	client, err := KubeconfigClient(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cache, err := New(Config{Client: client, Node: c.NodeName, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	go cache.Run(ctx)

	replicas, zero := int32(1), int64(0)
	labels := map[string]string{"app": "web", "tier": "front"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: &zero,
					Containers: []corev1.Container{{
						Name: "app", Image: kcluster.BusyboxImage, ImagePullPolicy: corev1.PullNever,
						Command: []string{"sleep", "3600"},
					}},
				},
			},
		},
	}
	if _, err := c.Client.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	var pod *corev1.Pod
	for deadline := time.Now().Add(90 * time.Second); pod == nil; time.Sleep(250 * time.Millisecond) {
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			t.Fatal(err)
		}
		for i := range pods.Items {
			if p := &pods.Items[i]; len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].ContainerID != "" {
				pod = p
			}
		}
		if pod == nil && time.Now().After(deadline) {
			t.Fatalf("the deployment's pod did not start within 90s: %+v", pods.Items)
		}
	}

	ct := event.Container{PodUID: string(pod.UID), ID: stripRuntime(pod.Status.ContainerStatuses[0].ContainerID), Runtime: "containerd"}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if !cache.Wait(wctx, &ct) {
		t.Fatalf("the pod's metadata did not arrive within 30s: %+v", ct)
	}
	want := event.Container{PodUID: string(pod.UID), ID: ct.ID, Runtime: "containerd",
		Pod: pod.Name, Namespace: ns, Name: "app", Image: kcluster.BusyboxImage, Workload: "Deployment/web"}
	got := ct
	got.Labels = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("described as\n %+v\nwant\n %+v", got, want)
	}
	if ct.Labels["app"] != "web" || ct.Labels["tier"] != "front" || ct.Labels["pod-template-hash"] == "" {
		t.Errorf("labels = %v, want the pod's labels", ct.Labels)
	}

	// Enrich (non-blocking) gives the same now, and the cache says so.
	again := event.Container{PodUID: string(pod.UID), ID: ct.ID}
	cache.Enrich(&again)
	if again.Pod != pod.Name || again.Name != "app" || !cache.Complete(&again) {
		t.Errorf("Enrich = %+v (complete %v)", again, cache.Complete(&again))
	}
	// An attribution filled before kubelet reported the container (pod
	// known, container name not yet) is not complete once it was reported:
	// it must be filled again, not taken for the pod's sandbox.
	early := event.Container{PodUID: string(pod.UID), ID: ct.ID, Pod: pod.Name, Namespace: ns}
	if cache.Complete(&early) {
		t.Errorf("an attribution without the container's name counts as complete although the cache knows the name")
	}
	// The pod's sandbox (not a listed container) is complete with the pod named.
	sandbox := event.Container{PodUID: string(pod.UID), ID: "f00d"}
	cache.Enrich(&sandbox)
	if sandbox.Pod != pod.Name || sandbox.Name != "" || !cache.Complete(&sandbox) {
		t.Errorf("sandbox = %+v (complete %v), want the pod named and no container name", sandbox, cache.Complete(&sandbox))
	}
	// A pod this node does not have stays incomplete; Wait gives up with ctx.
	unknown := event.Container{PodUID: "00000000-0000-0000-0000-000000000000", ID: "beef"}
	short, scancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer scancel()
	if cache.Wait(short, &unknown) || unknown.Pod != "" {
		t.Errorf("an unknown pod was described: %+v", unknown)
	}
	if !cache.Synced() {
		t.Error("Synced() is false after the pod was seen")
	}
}

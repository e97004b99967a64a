package audit

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-sec/vigil/internal/testutil/kcluster"
)

func TestThePodIndexNamesARunningPodByItsAddressAndForgetsItWhenDeleted(t *testing.T) {
	c := kcluster.Require(t)
	ns := c.Namespace(t, "vigil-audit-podip")
	c.CreatePod(t, kcluster.BusyboxPod(ns, "caller", "sleep", "3600"))
	pod := c.WaitPodRunning(t, ns, "caller", 2*time.Minute)
	if pod.Status.PodIP == "" {
		t.Fatal("the running pod has no address")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	idx := NewPodIndex(c.Client, nil)
	go idx.Run(ctx)

	deadline := time.Now().Add(30 * time.Second)
	for {
		got, ok := idx.Lookup(pod.Status.PodIP)
		if ok {
			if got.Pod != "caller" || got.Namespace != ns || got.PodUID != string(pod.UID) {
				t.Fatalf("Lookup(%s) = %+v, want pod %s/caller", pod.Status.PodIP, got, ns)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the index never learned pod %s/caller at %s", ns, pod.Status.PodIP)
		}
		time.Sleep(100 * time.Millisecond)
	}
	zero := int64(0)
	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, "caller", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	for {
		if _, ok := idx.Lookup(pod.Status.PodIP); !ok {
			return
		}
		if time.Now().After(deadline.Add(60 * time.Second)) {
			t.Fatalf("the deleted pod's address %s still names it", pod.Status.PodIP)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

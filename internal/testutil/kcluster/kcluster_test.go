package kcluster

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestABusyboxPodRunsOnTheNodeAndKubectlExecReachesIt(t *testing.T) {
	c := Require(t)
	ns := c.Namespace(t, "kcluster")
	c.CreatePod(t, BusyboxPod(ns, "probe", "sleep", "3600"))
	pod := c.WaitPodRunning(t, ns, "probe", 2*time.Minute)

	if pod.Spec.NodeName != c.NodeName {
		t.Errorf("pod scheduled to node %q, want the cluster's node %q", pod.Spec.NodeName, c.NodeName)
	}
	ip, err := netip.ParseAddr(pod.Status.PodIP)
	if err != nil || !netip.MustParsePrefix("10.244.0.0/16").Contains(ip) {
		t.Errorf("pod IP %q is not from the CNI bridge's 10.244.0.0/16", pod.Status.PodIP)
	}
	out := c.Exec(t, ns, "probe", "sh", "-c", `echo "hello $0"; cat /var/run/secrets/kubernetes.io/serviceaccount/namespace`, "from-exec")
	if want := "hello from-exec\n" + ns; out != want {
		t.Errorf("exec printed %q, want %q (the argument, then the pod's namespace from its service-account volume)", out, want)
	}
}

func TestExecReportsTheCommandsExitStatusAndStderr(t *testing.T) {
	c := Require(t)
	ns := c.Namespace(t, "kcluster")
	c.CreatePod(t, BusyboxPod(ns, "probe", "sleep", "3600"))
	c.WaitPodRunning(t, ns, "probe", 2*time.Minute)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := c.ExecCommand(ctx, ns, "probe", "sh", "-c", "echo out; echo oops >&2; exit 3")
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 3 || res.Stdout != "out\n" || !strings.Contains(res.Stderr, "oops") {
		t.Errorf("exec returned %+v, want exit 3, stdout \"out\\n\", stderr with \"oops\"", res)
	}
	if _, err := c.ExecCommand(ctx, ns, "no-such-pod", "true"); err == nil || !strings.Contains(err.Error(), "no-such-pod") {
		t.Errorf("exec into a missing pod: error %v, want one naming the pod", err)
	}
}

func TestPodsReachTheAPIServerThroughTheKubernetesService(t *testing.T) {
	c := Require(t)
	ns := c.Namespace(t, "kcluster")
	c.CreatePod(t, BusyboxPod(ns, "probe", "sleep", "3600"))
	c.WaitPodRunning(t, ns, "probe", 2*time.Minute)

	// In-cluster clients (the agent) dial $KUBERNETES_SERVICE_HOST, a
	// ClusterIP that only kube-proxy's rules make reachable.
	out := c.Exec(t, ns, "probe", "sh", "-c", `echo "$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT"; echo | nc -w 5 "$KUBERNETES_SERVICE_HOST" "$KUBERNETES_SERVICE_PORT" >/dev/null && echo connected`)
	if want := "10.96.0.1:443\nconnected\n"; out != want {
		t.Errorf("pod's connection to the API server's service printed %q, want %q", out, want)
	}
}

func TestWaitPodRunningSaysWhichImageIsMissingAndHowToImportIt(t *testing.T) {
	c := Require(t)
	ns := c.Namespace(t, "kcluster")
	pod := BusyboxPod(ns, "missing", "sleep", "3600")
	pod.Spec.Containers[0].Image = "vigil.local/not-imported:1"
	c.CreatePod(t, pod)

	_, err := c.waitPodRunning(ns, "missing", time.Minute)
	if err == nil || !strings.Contains(err.Error(), "vigil.local/not-imported:1") || !strings.Contains(err.Error(), "hack/image") {
		t.Fatalf("waiting for a pod whose image was never imported: error %v, want one naming the image and hack/image", err)
	}
}

func TestVigilsImageRunsTheVigilBinaryInAPod(t *testing.T) {
	c := Require(t)
	ref := c.VigilImage(t)
	if !strings.HasPrefix(ref, "vigil.local/vigil:") {
		t.Fatalf("image reference %q, want vigil.local/vigil:<version>", ref)
	}
	ns := c.Namespace(t, "kcluster")
	pod := BusyboxPod(ns, "vigil", "/vigil", "--help")
	pod.Spec.Containers[0].Image = ref
	c.CreatePod(t, pod)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := poll(ctx, func(ctx context.Context) (bool, error) {
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, "vigil", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if p.Status.Phase == corev1.PodFailed {
			t.Fatalf("vigil pod failed: %s", containerStates(p))
		}
		return p.Status.Phase == corev1.PodSucceeded, nil
	}); err != nil {
		t.Fatalf("vigil pod did not finish: %v", err)
	}
	logs, err := c.Client.CoreV1().Pods(ns).GetLogs("vigil", &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("read the vigil pod's log: %v", err)
	}
	if !strings.Contains(string(logs), "Usage:") || !strings.Contains(string(logs), "vigil [command]") {
		t.Errorf("vigil --help in the pod printed %q, want its usage", logs)
	}
}

package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-sec/vigil/deploy"
	"github.com/vigil-sec/vigil/internal/clio"
	"github.com/vigil-sec/vigil/internal/hubclient"
	"github.com/vigil-sec/vigil/internal/kube"
	"github.com/vigil-sec/vigil/internal/testutil/kcluster"
)

// e2eCluster is the test cluster hack/cluster runs on this machine
// (internal/testutil/kcluster) with vigil's kube client and the node's IP,
// where the test hub listens so that pods reach it.
type e2eCluster struct {
	*kcluster.Cluster
	kubeconfig string
	kc         *kube.Client
	nodeIP     string
}

// requireCluster skips the test without a cluster (fails it in CI).
func requireCluster(t *testing.T) *e2eCluster {
	t.Helper()
	c := kcluster.Require(t)
	kc, err := kube.NewClient(c.Config, "")
	if err != nil {
		t.Fatal(err)
	}
	node, err := c.Client.CoreV1().Nodes().Get(context.Background(), c.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ip := ""
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			ip = a.Address
		}
	}
	if ip == "" {
		t.Fatalf("node %s has no InternalIP", node.Name)
	}
	return &e2eCluster{Cluster: c, kubeconfig: c.Kubeconfig, kc: kc, nodeIP: ip}
}

// e2eImages are vigil's image (built from this tree by hack/image once per
// test binary, or $VIGIL_E2E_IMAGE when it was just built) and busybox.
func e2eImages(t *testing.T, c *e2eCluster) (vigilRef, busyboxRef string) {
	t.Helper()
	if v := os.Getenv("VIGIL_E2E_IMAGE"); v != "" {
		return v, kcluster.BusyboxImage
	}
	return c.VigilImage(t), kcluster.BusyboxImage
}

// step runs one e2e step as a subtest, logging its duration; a failed
// step stops the test (later steps depend on it).
func step(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	if !softStep(t, name, f) {
		t.FailNow()
	}
}

// softStep is a step later steps do not depend on: its failure is reported
// and the test goes on.
func softStep(t *testing.T, name string, f func(t *testing.T)) bool {
	t.Helper()
	start := time.Now()
	ok := t.Run(name, f)
	t.Logf("step %q: %v in %s", name, map[bool]string{true: "PASS", false: "FAIL"}[ok], time.Since(start).Round(100*time.Millisecond))
	return ok
}

func waitFor(t *testing.T, what string, timeout time.Duration, f func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, msg := f()
		if ok {
			return
		}
		if msg != "" {
			last = msg
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last: %s)", what, timeout, last)
		}
		time.Sleep(time.Second)
	}
}

// TestTheControlPlaneOnARealCluster is issue 5's proof: connect → Connected;
// extension → Succeeded with sensor pods Running; a suspicious command in a
// pod → alert at the hub naming namespace, pod, container and image; a
// DaemonSet deleted by hand comes back; verify passes; preflight from the
// cluster passes and against a wrong address names the failure; extension
// delete → DaemonSet gone; agent stopped → Offline; an extension asked for
// meanwhile is installed once the agent is back (Connected); disconnect
// leaves nothing.
func TestTheControlPlaneOnARealCluster(t *testing.T) {
	c := requireCluster(t)
	vigilImage, busybox := e2eImages(t, c)
	h := startCPHub(t, cpHubOptions{Listen: net.JoinHostPort(c.nodeIP, "0"), OfflineAfter: 8 * time.Second})
	cpLogin(t, h)
	ctx := context.Background()
	name := "e2e-" + randomSuffix()
	kflags := []string{"--kubeconfig", c.kubeconfig}
	ext := []string{"--cluster-name", name, "--resource-group", "e2e", "--cluster-type", "connectedClusters", "--name", "vigil-sensor"}
	t.Cleanup(func() {
		// Whatever happened, leave the cluster clean.
		_, _, _ = vigil(t, append([]string{"disconnect", "--name", name, "--resource-group", "e2e", "--yes"}, kflags...)...)
	})

	step(t, "connect reaches Connected", func(t *testing.T) {
		out, errs, code := vigil(t, append([]string{"connect", "--name", name, "--resource-group", "e2e", "--location", "lab", "--tags", "env=ci",
			"--yes", "--agent-image", vigilImage, "--image-pull-policy", "Never", "--hub-url-from-cluster", h.URL, "--agent-interval", "3s", "--timeout", "3m"}, kflags...)...)
		t.Logf("connect:\n%s%s", errs, out)
		if code != 0 || !strings.Contains(out, "Connected") {
			t.Fatalf("connect exit %d", code)
		}
		got := strings.TrimSpace(mustVigil(t, "cluster", "show", "--name", name, "--resource-group", "e2e", "--query", "connectivityStatus", "-o", "tsv"))
		if got != "Connected" {
			t.Fatalf("connectivityStatus %q", got)
		}
	})

	step(t, "extension create reaches Succeeded with sensor pods Running", func(t *testing.T) {
		out, errs, code := vigil(t, append(append([]string{"extension", "create"}, ext...), "--extension-type", "vigil.sensor", "--timeout", "4m", "-o", "json")...)
		t.Logf("extension create:\n%s%s", errs, out)
		if code != 0 {
			t.Fatalf("extension create exit %d", code)
		}
		var v extensionView
		if err := json.Unmarshal([]byte(out), &v); err != nil || v.ProvisioningState != "Succeeded" {
			t.Fatalf("extension %+v (%v), want Succeeded", v, err)
		}
		pods, err := c.kc.Kube.CoreV1().Pods("vigil-system").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=vigil-sensor"})
		if err != nil || len(pods.Items) == 0 {
			t.Fatalf("sensor pods: %v (%d)", err, len(pods.Items))
		}
		for _, p := range pods.Items {
			if p.Status.Phase != corev1.PodRunning {
				t.Fatalf("sensor pod %s is %s", p.Name, p.Status.Phase)
			}
		}
	})

	step(t, "extension update rolls out the new settings", func(t *testing.T) {
		out, errs, code := vigil(t, append(append([]string{"extension", "update"}, ext...), "--configuration-settings", "logLevel=debug", "--timeout", "3m", "-o", "json")...)
		t.Logf("extension update:\n%s", errs)
		var v extensionView
		if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.ProvisioningState != "Succeeded" || v.Generation != 2 || v.AppliedGeneration != 2 {
			t.Fatalf("extension update exit %d: %s", code, out)
		}
		ds, err := c.kc.Kube.AppsV1().DaemonSets("vigil-system").Get(ctx, "vigil-sensor", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if args := strings.Join(ds.Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(args, "--log-level=debug") {
			t.Fatalf("DaemonSet args after the update: %s", args)
		}
	})

	softStep(t, "a suspicious command in a pod raises an alert naming namespace pod container and image", func(t *testing.T) {
		ns := c.Namespace(t, "e2e-alert")
		c.CreatePod(t, kcluster.BusyboxPod(ns, "web", "sleep", "3600"))
		pod := c.WaitPodRunning(t, ns, "web", 2*time.Minute)
		// The sensor watches the whole node, where other tests may run the
		// same command: the alert wanted is the one about this container.
		_, containerID, _ := strings.Cut(pod.Status.ContainerStatuses[0].ContainerID, "://")
		since := time.Now().Add(-time.Second)
		c.Exec(t, ns, "web", "sh", "-c", "echo "+TestAlertMarker)
		cl, err := hubclient.New(hubclient.Config{Hub: h.URL, Token: h.Owner, CAPEM: readFile(t, h.CAFile)})
		if err != nil {
			t.Fatal(err)
		}
		var found *hubclient.Alert
		waitFor(t, "test alert at the hub", 2*time.Minute, func() (bool, string) {
			as, _, err := cl.ListAlerts(ctx, hubclient.AlertListOptions{AlertType: testAlertType, Since: since, Top: 50})
			if err != nil {
				return false, err.Error()
			}
			// kubectl's own argv carries the marker too (an alert about that
			// process on the node): wait for the one about the shell in the pod.
			for i := range as {
				ct := as[i].Properties.Entities.Container
				if strings.Contains(as[i].Properties.ResourceID, name) && ct != nil && ct.ID == containerID {
					found = &as[i]
					return true, ""
				}
			}
			return false, fmt.Sprintf("%d test alerts, none from a container of cluster %s", len(as), name)
		})
		e := found.Properties.Entities
		t.Logf("alert %s: node %q namespace %q pod %q container %+v process %+v", found.Name, e.Node, e.Namespace, e.Pod, e.Container, e.Process)
		var missing []string
		if e.Namespace != ns {
			missing = append(missing, fmt.Sprintf("namespace %q (want %q)", e.Namespace, ns))
		}
		if e.Pod != "web" {
			missing = append(missing, fmt.Sprintf("pod %q (want web)", e.Pod))
		}
		if containerName(e) != "web" {
			missing = append(missing, fmt.Sprintf("container %q (want web)", containerName(e)))
		}
		if containerImage(e) != busybox {
			missing = append(missing, fmt.Sprintf("image %q (want %s)", containerImage(e), busybox))
		}
		if len(missing) > 0 {
			// For the diagnosis: does a later update of the same alert carry it?
			time.Sleep(15 * time.Second)
			if again, err := cl.GetAlert(ctx, "", found.Name); err == nil {
				t.Logf("the same alert 15 s later: pod %q container %+v", again.Properties.Entities.Pod, again.Properties.Entities.Container)
			}
			t.Fatalf("the alert arrived but lacks the Kubernetes enrichment: %s", strings.Join(missing, "; "))
		}
	})

	step(t, "a DaemonSet deleted by hand is re-created and reported", func(t *testing.T) {
		if err := c.kc.Kube.AppsV1().DaemonSets("vigil-system").Delete(ctx, "vigil-sensor", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "DaemonSet re-created and the hub told", 90*time.Second, func() (bool, string) {
			msg := strings.TrimSpace(mustVigil(t, append(append([]string{"extension", "show"}, ext...), "--query", "statuses[].message", "-o", "json")...))
			_, err := c.kc.Kube.AppsV1().DaemonSets("vigil-system").Get(ctx, "vigil-sensor", metav1.GetOptions{})
			return err == nil && strings.Contains(msg, "re-created"), msg
		})
	})

	step(t, "verify passes", func(t *testing.T) {
		waitFor(t, "extension Succeeded again", 3*time.Minute, func() (bool, string) {
			st := strings.TrimSpace(mustVigil(t, append(append([]string{"extension", "show"}, ext...), "--query", "provisioningState", "-o", "tsv")...))
			return st == "Succeeded", st
		})
		out, errs, code := vigil(t, append([]string{"verify", "--name", name, "--resource-group", "e2e"}, kflags...)...)
		t.Logf("verify:\n%s%s", out, errs)
		if code != 0 || strings.Count(out, "✓") != 4 {
			t.Fatalf("verify exit %d", code)
		}
	})

	step(t, "verify --simulate runs the attack simulation in the cluster and every alert arrives", func(t *testing.T) {
		out, errs, code := vigil(t, append([]string{"verify", "--name", name, "--resource-group", "e2e", "--simulate", "--no-alert"}, kflags...)...)
		t.Logf("verify --simulate:\n%s%s", out, errs)
		if code != 0 || !strings.Contains(out, "✓ the attack simulation raises every expected alert") {
			t.Fatalf("verify --simulate exit %d", code)
		}
	})

	step(t, "preflight from the cluster passes", func(t *testing.T) {
		out, errs, code := vigil(t, append([]string{"preflight", "--in-cluster"}, kflags...)...)
		t.Logf("preflight --in-cluster:\n%s%s", out, errs)
		if code != 0 || !strings.Contains(out, "✓ authenticated request (agent token)") {
			t.Fatalf("preflight --in-cluster exit %d", code)
		}
	})

	step(t, "preflight against a wrong hub address names the failure", func(t *testing.T) {
		ln, err := net.Listen("tcp", net.JoinHostPort(c.nodeIP, "0"))
		if err != nil {
			t.Fatal(err)
		}
		wrong := ln.Addr().String()
		ln.Close()
		out, _, code := vigil(t, "preflight", "--hub", "https://"+wrong, "--ca", h.CAFile, "--token", h.Owner, "--timeout", "3s")
		t.Logf("preflight:\n%s", out)
		if code != clio.ExitUnreachable || !strings.Contains(out, "✗ TCP "+wrong) || !strings.Contains(out, "nothing listens there") {
			t.Fatalf("preflight against %s exit %d", wrong, code)
		}
	})

	step(t, "extension delete removes the DaemonSet", func(t *testing.T) {
		mustVigil(t, append(append([]string{"extension", "delete"}, ext...), "--yes")...)
		waitFor(t, "DaemonSet vigil-sensor gone", 90*time.Second, func() (bool, string) {
			_, err := c.kc.Kube.AppsV1().DaemonSets("vigil-system").Get(ctx, "vigil-sensor", metav1.GetOptions{})
			return apierrors.IsNotFound(err), fmt.Sprint(err)
		})
		// verify now fails, and says how to fix it.
		out, _, code := vigil(t, append([]string{"verify", "--name", name, "--resource-group", "e2e"}, kflags...)...)
		t.Logf("verify without the sensor:\n%s", out)
		if code == 0 || !strings.Contains(out, "✗ sensor extension is Succeeded") || !strings.Contains(out, "fix: vigil extension create") {
			t.Fatalf("verify without a sensor exit %d", code)
		}
	})

	step(t, "a stopped agent turns the cluster Offline", func(t *testing.T) {
		sc, err := c.kc.Kube.AppsV1().Deployments("vigil-system").GetScale(ctx, "vigil-agent", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sc.Spec.Replicas = 0
		if _, err := c.kc.Kube.AppsV1().Deployments("vigil-system").UpdateScale(ctx, "vigil-agent", sc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "Offline", 60*time.Second, func() (bool, string) {
			st := strings.TrimSpace(mustVigil(t, "cluster", "show", "--name", name, "--resource-group", "e2e", "--query", "connectivityStatus", "-o", "tsv"))
			return st == "Offline", st
		})
	})

	step(t, "an extension asked for while Offline is installed once the agent is back and the cluster Connected", func(t *testing.T) {
		out, errs, code := vigil(t, append(append([]string{"extension", "create"}, ext...), "--extension-type", "vigil.sensor", "--no-wait", "-o", "json")...)
		if code != 0 {
			t.Fatalf("extension create while Offline exit %d:\n%s%s", code, errs, out)
		}
		sc, err := c.kc.Kube.AppsV1().Deployments("vigil-system").GetScale(ctx, "vigil-agent", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sc.Spec.Replicas = 1
		if _, err := c.kc.Kube.AppsV1().Deployments("vigil-system").UpdateScale(ctx, "vigil-agent", sc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "Connected again", 90*time.Second, func() (bool, string) {
			st := strings.TrimSpace(mustVigil(t, "cluster", "show", "--name", name, "--resource-group", "e2e", "--query", "connectivityStatus", "-o", "tsv"))
			return st == "Connected", st
		})
		waitFor(t, "the extension Succeeded", 3*time.Minute, func() (bool, string) {
			st := strings.TrimSpace(mustVigil(t, append(append([]string{"extension", "show"}, ext...), "--query", "provisioningState", "-o", "tsv")...))
			return st == "Succeeded", st
		})
	})

	step(t, "disconnect leaves nothing", func(t *testing.T) {
		out, errs, code := vigil(t, append([]string{"disconnect", "--name", name, "--resource-group", "e2e", "--yes"}, kflags...)...)
		t.Logf("disconnect:\n%s%s", errs, out)
		if code != 0 {
			t.Fatalf("disconnect exit %d", code)
		}
		if _, err := c.kc.Kube.CoreV1().Namespaces().Get(ctx, "vigil-system", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("namespace vigil-system: %v, want gone", err)
		}
		for _, n := range []string{"vigil-agent", "vigil-sensor"} {
			if _, err := c.kc.Kube.RbacV1().ClusterRoles().Get(ctx, n, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("ClusterRole %s: %v, want gone", n, err)
			}
			if _, err := c.kc.Kube.RbacV1().ClusterRoleBindings().Get(ctx, n, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("ClusterRoleBinding %s: %v, want gone", n, err)
			}
		}
		expectExit(t, clio.ExitNotFound, nil, "cluster", "show", "--name", name, "--resource-group", "e2e")
		// Idempotent.
		mustVigil(t, append([]string{"disconnect", "--name", name, "--resource-group", "e2e", "--yes"}, kflags...)...)
	})
}

// TestConnectStopsWithTheReasonWhenTheAgentCannotWork covers the two
// failures users meet most: the image is not on the node, and the hub is
// not reachable from the cluster's pods.
func TestConnectStopsWithTheReasonWhenTheAgentCannotWork(t *testing.T) {
	c := requireCluster(t)
	vigilImage, _ := e2eImages(t, c)
	h := startCPHub(t, cpHubOptions{Listen: net.JoinHostPort(c.nodeIP, "0")})
	cpLogin(t, h)
	kflags := []string{"--kubeconfig", c.kubeconfig}
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"an image that is not on the node", []string{"--agent-image", "vigil.local/vigil:does-not-exist", "--hub-url-from-cluster", h.URL}, clio.ExitGeneral, "ErrImageNeverPull"},
		{"a hub the pods cannot reach", []string{"--agent-image", vigilImage, "--hub-url-from-cluster", "https://" + net.JoinHostPort(c.nodeIP, "1")}, clio.ExitUnreachable, "cannot reach the hub"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name := "e2e-fail-" + randomSuffix()
			t.Cleanup(func() {
				_, _, _ = vigil(t, append([]string{"disconnect", "--name", name, "--resource-group", "e2e", "--yes"}, kflags...)...)
			})
			start := time.Now()
			out, errs, code := vigil(t, append(append([]string{"connect", "--name", name, "--resource-group", "e2e", "--yes", "--image-pull-policy", "Never",
				"--agent-interval", "3s", "--timeout", "2m"}, tc.args...), kflags...)...)
			t.Logf("connect (%s):\n%s%s", time.Since(start).Round(100*time.Millisecond), errs, out)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d, want %d with %q", code, tc.code, tc.want)
			}
		})
	}
}

// TestEveryChartObjectIsAcceptedByTheAPIServer validates the Helm chart's
// rendering (agent, sensor and hub) with a server-side dry-run.
func TestEveryChartObjectIsAcceptedByTheAPIServer(t *testing.T) {
	c := requireCluster(t)
	vals := deploy.Merge(map[string]any{
		"namespace": "default", // exists; the dry-run of namespaced objects needs their namespace
		"clusterId": "/subscriptions/default/resourceGroups/rg/providers/Vigil.Kubernetes/connectedClusters/x",
		"hub":       map[string]any{"url": "https://hub:8443", "caPEM": "x"},
		"agent":     map[string]any{"token": "a"},
		"sensor":    map[string]any{"enabled": true, "token": "s", "rulesYAML": "[]"},
		"audit":     map[string]any{"enabled": true, "token": "a"},
		"hubServer": map[string]any{"enabled": true},
	}, nil)
	data, err := deploy.Render(vals, "Helm")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := kube.ParseObjects(data)
	if err != nil {
		t.Fatal(err)
	}
	kube.SortForApply(objs)
	var nonNS = objs[:0]
	for _, o := range objs {
		if o.GetKind() != "Namespace" {
			nonNS = append(nonNS, o)
		}
	}
	out, err := c.kc.Apply(context.Background(), nonNS, kube.ApplyOptions{FieldManager: "vigil-chart-test", DryRun: true})
	if err != nil {
		t.Fatalf("dry-run apply: %v", err)
	}
	if len(out) != len(nonNS) || len(out) < 15 {
		t.Fatalf("%d of %d objects accepted", len(out), len(nonNS))
	}
}

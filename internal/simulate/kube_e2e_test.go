package simulate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-sec/vigil/internal/testenv"
	"github.com/vigil-sec/vigil/internal/testutil/kcluster"
	"github.com/vigil-sec/vigil/internal/testutil/syncbuf"
)

// kubeSimulate runs `vigil simulate ... --kubeconfig` against the test
// cluster.
func (h *hub) kubeSimulate(t *testing.T, c *kcluster.Cluster, ns string, args ...string) simulateRun {
	t.Helper()
	args = append([]string{"simulate"}, append(args, "--kubeconfig", c.Kubeconfig, "--image", c.VigilImage(t),
		"--namespace", ns, "-o", "json")...)
	cmd := exec.Command(vigil(t), args...)
	cmd.Env = h.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := simulateRun{stderr: errb.String(), code: cmd.ProcessState.ExitCode(), id: ns}
	if err != nil && r.code < 0 {
		t.Fatalf("vigil simulate: %v\n%s", err, errb.String())
	}
	if out.Len() > 0 {
		if err := json.Unmarshal(out.Bytes(), &r.report); err != nil {
			t.Fatalf("vigil simulate -o json printed %q: %v\nstderr: %s", out.String(), err, r.stderr)
		}
	}
	return r
}

// The whole simulation on the real cluster: the victim and attacker pods,
// the eBPF sensor on the node (a host process adding pod metadata from the
// API server, as the vigil.sensor DaemonSet does) shipping to a real hub.
// Every expected alert arrives, carries the run's namespace and the
// victim's pod, and the namespace is gone afterwards.
func TestSimulateAllOnAClusterRaisesEveryExpectedAlertWithThePodsNamespace(t *testing.T) {
	c := kcluster.Require(t)
	testenv.RequireRoot(t)
	c.VigilImage(t)
	// The sensor's DaemonSet learns the API service's address from its
	// KUBERNETES_SERVICE_HOST; a host sensor is told with --kubernetes-api.
	api, err := c.Client.CoreV1().Services("default").Get(context.Background(), "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sensorArgs := []string{"--kube-metadata", "on", "--kubeconfig", c.Kubeconfig, "--node", c.NodeName, "--kubernetes-api", api.Spec.ClusterIP}
	h := startHub(t, true, sensorArgs...)
	ns := kubeNamespace(t)
	start := time.Now()
	r := h.kubeSimulate(t, c, ns, "all", "--wait", "30s")
	t.Logf("vigil simulate all on the cluster took %v", time.Since(start).Round(time.Millisecond))
	t.Logf("stderr:\n%s", r.stderr)
	requireEveryAlert(t, r)
	requireNamespaceGone(t, c, ns)

	for _, res := range r.report.Results {
		if res.RuleID != "vigil.node/WebShell" || res.AlertID == "" {
			continue
		}
		cmd := exec.Command(vigil(t), "alerts", "show", res.AlertID, "-o", "json")
		cmd.Env = h.env
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("vigil alerts show %s: %v", res.AlertID, err)
		}
		var al struct {
			Entities struct {
				Namespace string `json:"namespace"`
				Pod       any    `json:"pod"`
			} `json:"entities"`
		}
		if err := json.Unmarshal(b, &al); err != nil {
			t.Fatal(err)
		}
		pod, _ := json.Marshal(al.Entities.Pod)
		if al.Entities.Namespace != ns || !strings.Contains(string(pod), "victim") {
			t.Errorf("the web shell alert has namespace %q and pod %s, want %s and the victim pod", al.Entities.Namespace, pod, ns)
		}
		t.Logf("web shell alert: namespace %s, pod %s", al.Entities.Namespace, pod)
	}
}

// Without a sensor the cluster run fails naming the missing alerts, and
// still deletes its namespace.
func TestOnAClusterWithoutASensorSimulateFailsAndDeletesItsNamespace(t *testing.T) {
	c := kcluster.Require(t)
	testenv.RequireRoot(t)
	h := startHub(t, false)
	ns := kubeNamespace(t)
	r := h.kubeSimulate(t, c, ns, "webshell", "ti", "--wait", "3s")
	if r.code == 0 {
		t.Fatalf("vigil simulate succeeded without a sensor:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "did not reach the hub") || !strings.Contains(r.stderr, "vigil.node/WebShell") {
		t.Errorf("the error does not say which alerts are missing:\n%s", r.stderr)
	}
	requireNamespaceGone(t, c, ns)
}

// Ctrl-C during a step: vigil simulate exits non-zero, says it was
// interrupted, and the namespace is gone.
func TestInterruptingAClusterSimulationDeletesItsNamespace(t *testing.T) {
	c := kcluster.Require(t)
	testenv.RequireRoot(t)
	h := startHub(t, false)
	ns := kubeNamespace(t)
	cmd := exec.Command(vigil(t), "simulate", "all", "--kubeconfig", c.Kubeconfig, "--image", c.VigilImage(t), "--namespace", ns, "--wait", "60s")
	cmd.Env = h.env
	var errb syncbuf.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waitFor(t, "the run reaching step 4", &errb, regexp.MustCompile(`\[4/\d+\]`), 3*time.Minute)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("vigil simulate did not exit within 3 minutes of SIGINT:\n%s", errb.String())
	}
	if cmd.ProcessState.ExitCode() == 0 {
		t.Errorf("an interrupted simulation exited 0:\n%s", errb.String())
	}
	if !strings.Contains(errb.String(), "interrupted") {
		t.Errorf("the interrupted run does not say so:\n%s", errb.String())
	}
	requireNamespaceGone(t, c, ns)
}

package simulate_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/vigil-sec/vigil/internal/simulate"
	"github.com/vigil-sec/vigil/internal/testutil/kcluster"
)

// kubeNamespace is a fresh vigil-simulation-* name: tests never touch the
// default vigil-simulation namespace a user's run may hold.
func kubeNamespace(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return simulate.KubeNamespace + "-test-" + hex.EncodeToString(b)
}

func requireNamespaceGone(t *testing.T, c *kcluster.Cluster, ns string) {
	t.Helper()
	_, err := c.Client.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("namespace %s still exists after the run (err %v)", ns, err)
	}
}

func newKubeRunner(t *testing.T, c *kcluster.Cluster, ns string) *simulate.KubeRunner {
	t.Helper()
	r, err := simulate.NewKubeRunner(simulate.KubeConfig{Config: c.Config, Image: c.VigilImage(t), Namespace: ns, ReadyTimeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	// A safety net only: the tests call Close themselves and check it.
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// The pods' plumbing the steps rely on: the web shell runs commands as uid
// 33, the metadata stub and the test domain are answered inside the
// simulation, the pod's real token reaches the real API server's address;
// and Close deletes the namespace.
func TestAClusterRunDrivesTheWebShellThroughTheAttackerAndDeletesItsNamespace(t *testing.T) {
	c := kcluster.Require(t)
	ns := kubeNamespace(t)
	r := newKubeRunner(t, c, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("pods ready in %v", time.Since(start).Round(time.Millisecond))
	if got := r.Scope().Namespace; got != ns {
		t.Errorf("Scope().Namespace = %q, want %q", got, ns)
	}
	plan, err := simulate.Plan([]string{simulate.ScenarioLateral, simulate.ScenarioTI}, r.Tools(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, command, want string
	}{
		{"the web shell runs as the unprivileged web user", "id", "uid=33"},
		{"the service-account token is the pod's real one", "/bin/cat /var/run/secrets/kubernetes.io/serviceaccount/namespace", ns},
		{"the metadata stub answers on the attacker", plan[0].Command, "vigil-simulation-fake-imds-token"},
		{"the stub DNS answers the test domain", "/bin/nslookup c2.vigil-simulation.test 10.77.0.20", "198.51.100.77"},
		{"the threat-intel test address is the attacker", plan[2].Command, "threat-intel test beacon"},
		{"the API server address is the kubernetes service", "echo $KUBERNETES_SERVICE_HOST", "10.96.0.1"},
	}
	for _, tc := range cases {
		out, err := r.Deliver(ctx, tc.command)
		if err != nil {
			t.Errorf("%s: deliver %q: %v", tc.name, tc.command, err)
			continue
		}
		if !strings.Contains(out, tc.want) {
			t.Errorf("%s: %q printed %q, want it to contain %q", tc.name, tc.command, out, tc.want)
		}
	}
	start = time.Now()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("namespace deleted in %v", time.Since(start).Round(time.Millisecond))
	requireNamespaceGone(t, c, ns)
}

// Ctrl-C while the pods start: Start returns and Close still removes the
// namespace.
func TestInterruptingAClusterRunWhileItStartsDeletesItsNamespace(t *testing.T) {
	c := kcluster.Require(t)
	ns := kubeNamespace(t)
	r := newKubeRunner(t, c, ns)
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() {
		// Cancel once the attacker pod exists.
		for ctx.Err() == nil {
			if _, err := c.Client.CoreV1().Pods(ns).Get(context.Background(), "attacker", metav1.GetOptions{}); err == nil {
				cancel(errors.New("interrupted by the test"))
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	err := r.Start(ctx)
	cancel(nil)
	if err == nil {
		t.Fatal("Start succeeded although it was interrupted")
	}
	t.Logf("Start: %v", err)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	requireNamespaceGone(t, c, ns)
}

// A namespace that is not the simulation's is refused before anything is
// created: the run deletes its namespace at the end.
func TestAClusterRunRefusesANamespaceThatIsNotTheSimulations(t *testing.T) {
	for _, ns := range []string{"default", "kube-system", "vigil-simulationx"} {
		_, err := simulate.NewKubeRunner(simulate.KubeConfig{Config: &rest.Config{Host: "https://127.0.0.1:1"}, Image: "vigil.local/vigil:x", Namespace: ns})
		if err == nil || !strings.Contains(err.Error(), "must be vigil-simulation") {
			t.Errorf("NewKubeRunner with namespace %s: %v, want a refusal naming vigil-simulation", ns, err)
		}
	}
}

// Without an image the run says which to give.
func TestAClusterRunWithoutAnImageSaysWhichToGive(t *testing.T) {
	_, err := simulate.NewKubeRunner(simulate.KubeConfig{Config: &rest.Config{Host: "https://127.0.0.1:1"}})
	if err == nil || !strings.Contains(err.Error(), "--image") {
		t.Fatalf("NewKubeRunner without an image: %v, want a hint at --image", err)
	}
}

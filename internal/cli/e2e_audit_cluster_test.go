package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-sec/vigil/internal/extcatalog"
	"github.com/vigil-sec/vigil/internal/hubclient"
	"github.com/vigil-sec/vigil/internal/testutil/kcluster"
)

// The audit address and client of the test cluster's webhook backend
// (hack/k8s/cmd/cluster: auditWebhookIP, auditWebhookClient).
const (
	clusterAuditWebhookIP     = "10.96.0.46"
	clusterAuditWebhookClient = "kube-apiserver-audit-webhook"
)

// TestTheAuditExtensionRaisesAlertsAtTheHubFromTheLogAndFromTheWebhook is
// issue 9's proof on the project's cluster, whose API server writes an audit
// log and sends the same events to a webhook backend: the cluster is
// connected, the vigil.audit extension is installed by the agent with
// source=log, then replaced by one with source=webhook (the API server's
// configured address, its client certificate checked). Each time, from
// inside a pod, the pod's own service-account token asks what it may do and
// lists secrets across namespaces (curl's user agent), and kubectl creates a
// privileged hostPath pod and a cluster-admin binding: the alerts arrive at
// the hub naming the pod and the service account — and the cluster's own
// components, busy the whole time, raise none.
func TestTheAuditExtensionRaisesAlertsAtTheHubFromTheLogAndFromTheWebhook(t *testing.T) {
	c := requireCluster(t)
	vigilImage, _ := e2eImages(t, c)
	pki := filepath.Join(c.RepoRoot, ".cluster", "pki")
	logPath := filepath.Join(c.RepoRoot, ".cluster", "audit", "audit.log")
	if p, err := filepath.EvalSymlinks(logPath); err == nil {
		logPath = p // the kubelet mounts the real directory
	}
	for _, f := range []string{logPath, filepath.Join(pki, "audit-webhook.crt")} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("the test cluster lacks %s (audit log and webhook backend): restart it with this checkout's hack/cluster (down, then up)", f)
		}
	}
	h := startCPHub(t, cpHubOptions{Listen: net.JoinHostPort(c.nodeIP, "0")})
	cpLogin(t, h)
	ctx := context.Background()
	name := "e2e-audit-" + randomSuffix()
	kflags := []string{"--kubeconfig", c.kubeconfig}
	t.Cleanup(func() {
		_, _, _ = vigil(t, append([]string{"disconnect", "--name", name, "--resource-group", "e2e", "--yes"}, kflags...)...)
	})
	cl, err := hubclient.New(hubclient.Config{Hub: h.URL, Token: h.Owner, CAPEM: readFile(t, h.CAFile)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Second)

	step(t, "connect", func(t *testing.T) {
		out, errs, code := vigil(t, append([]string{"connect", "--name", name, "--resource-group", "e2e", "--location", "lab", "--yes",
			"--agent-image", vigilImage, "--image-pull-policy", "Never", "--hub-url-from-cluster", h.URL, "--agent-interval", "3s", "--timeout", "3m"}, kflags...)...)
		if code != 0 {
			t.Fatalf("connect exit %d:\n%s%s", code, errs, out)
		}
	})

	node := "kubernetes.io/hostname=" + c.NodeName
	sources := []struct {
		source    string
		settings  []string
		protected []string
	}{
		{"log", []string{"source=log", "auditLogPath=" + logPath, "nodeSelector=" + node}, nil},
		{"webhook", []string{"source=webhook", "webhookClusterIP=" + clusterAuditWebhookIP, "nodeSelector=" + node,
			"webhookClientCA=" + readFile(t, filepath.Join(pki, "ca.crt")), "webhookClientNames=" + clusterAuditWebhookClient},
			[]string{extcatalog.ProtectedWebhookTLSCert + "=" + readFile(t, filepath.Join(pki, "audit-webhook.crt")),
				extcatalog.ProtectedWebhookTLSKey + "=" + readFile(t, filepath.Join(pki, "audit-webhook.key"))}},
	}
	for _, s := range sources {
		ext := []string{"--cluster-name", name, "--resource-group", "e2e", "--cluster-type", "connectedClusters", "--name", "vigil-audit-" + s.source}
		step(t, "the vigil.audit extension with source="+s.source+" reaches Succeeded", func(t *testing.T) {
			args := append(append([]string{"extension", "create"}, ext...), "--extension-type", extcatalog.AuditType, "--timeout", "4m")
			for _, kv := range s.settings {
				args = append(args, "--configuration-settings", kv)
			}
			for _, kv := range s.protected {
				args = append(args, "--configuration-protected-settings", kv)
			}
			out, errs, code := vigil(t, args...)
			t.Logf("extension create:\n%s%s", errs, out)
			if code != 0 || !strings.Contains(out, "Succeeded") {
				t.Fatalf("extension create exit %d", code)
			}
		})
		step(t, "an attack from a pod and by kubectl raises the alerts at the hub (source="+s.source+")", func(t *testing.T) {
			auditAttack(t, c, cl, name, vigilImage)
		})
		step(t, "the extension with source="+s.source+" is deleted", func(t *testing.T) {
			mustVigil(t, append(append([]string{"extension", "delete"}, ext...), "--yes")...)
			waitFor(t, "DaemonSet vigil-audit gone", 90*time.Second, func() (bool, string) {
				_, err := c.kc.Kube.AppsV1().DaemonSets("vigil-system").Get(ctx, "vigil-audit", metav1.GetOptions{})
				return apierrors.IsNotFound(err), fmt.Sprint(err)
			})
		})
	}

	step(t, "the cluster's own components raised no alert", func(t *testing.T) {
		as, _, err := cl.ListAlerts(ctx, hubclient.AlertListOptions{Cluster: name, Since: start, Top: 1000})
		if err != nil {
			t.Fatal(err)
		}
		byType := map[string]int{}
		for _, a := range as {
			byType[a.Properties.AlertType]++
		}
		t.Logf("%d alerts of cluster %s in %s: %v", len(as), name, time.Since(start).Round(time.Second), byType)
		for _, a := range as {
			for _, u := range a.Properties.Entities.Extra["user"] {
				if kcluster.IsClusterComponent(u) || strings.HasPrefix(u, "system:serviceaccount:vigil-system:") {
					t.Errorf("the control plane's or vigil's own request raised %s (user %s, %v %v)", a.Properties.AlertType, u,
						a.Properties.Entities.Extra["verb"], a.Properties.Entities.Extra["resource"])
				}
			}
		}
	})
}

// auditAttack performs the attack and waits for its alerts at the hub.
func auditAttack(t *testing.T, c *e2eCluster, cl *hubclient.Client, cluster, vigilImage string) {
	ctx := context.Background()
	since := time.Now().Add(-time.Second)
	a := c.RunAuditAttack(t, vigilImage)
	var got map[string]hubclient.Alert
	waitFor(t, "the attack's alerts at the hub", 90*time.Second, func() (bool, string) {
		as, _, err := cl.ListAlerts(ctx, hubclient.AlertListOptions{Cluster: cluster, Since: since, Top: 1000})
		if err != nil {
			return false, err.Error()
		}
		got = map[string]hubclient.Alert{}
		for _, al := range as {
			if a.Ours(al.Properties.Entities.Namespace, al.Properties.Entities.Extra) {
				got[al.Properties.AlertType] = al
			}
		}
		missing := slices.DeleteFunc(slices.Clone(a.Want), func(w string) bool { _, ok := got[w]; return ok })
		return len(missing) == 0, fmt.Sprintf("missing %v", missing)
	})
	for _, typ := range a.FromPod {
		e := got[typ].Properties.Entities
		if e.Pod != a.Pod || e.Namespace != a.Namespace || !slices.Equal(e.Extra["serviceAccount"], []string{a.Namespace + "/default"}) {
			t.Errorf("%s names pod %s/%s and service account %v; want %s/%s and %s/default", typ, e.Namespace, e.Pod, e.Extra["serviceAccount"], a.Namespace, a.Pod, a.Namespace)
		}
		if !slices.Equal(e.Extra["userAgent"], []string{"curl/8.5.0"}) || len(e.Extra["sourceIPs"]) == 0 {
			t.Errorf("%s lacks the request's user agent or source address: %v", typ, e.Extra)
		}
	}
}

package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/testenv"
)

// k8sBin is where the project's cluster tooling (hack/cluster) keeps the
// Kubernetes binaries; $VIGIL_K8S_BIN overrides it.
func k8sBin() string {
	if d := os.Getenv("VIGIL_K8S_BIN"); d != "" {
		return d
	}
	return "/var/cache/vigil/k8s/v1.35.4/bin"
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// daemon runs a process until the test ends (SIGTERM, then SIGKILL).
func daemon(t *testing.T, logFile string, name string, args ...string) {
	t.Helper()
	out, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	// Pdeathsig: the daemons die with the test binary even when it is
	// killed (a test timeout) before its cleanups run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		out.Close()
	})
}

// TestARealAPIServersAuditLogAndWebhookRaiseTheAttackAlerts runs a private
// etcd and kube-apiserver (127.0.0.1, ephemeral ports, a temp dir) with the
// audit log and the audit webhook pointed at vigil, then does what an
// intruder in a pod and a careless administrator do: a pod's bound
// service-account token is used with curl's user agent to ask what it may
// do and to list every secret; a privileged pod with the host's root is
// created; a service account is bound to cluster-admin. Both sources must
// raise the alerts, naming the pod and service account; the API server's
// own start-up traffic must raise nothing.
func TestARealAPIServersAuditLogAndWebhookRaiseTheAttackAlerts(t *testing.T) {
	bin := k8sBin()
	_, errA := os.Stat(filepath.Join(bin, "kube-apiserver"))
	_, errE := os.Stat(filepath.Join(bin, "etcd"))
	testenv.Require(t, errA == nil && errE == nil, "kube-apiserver and etcd in "+bin+" (hack/cluster up downloads them; or set VIGIL_K8S_BIN)")
	dir := t.TempDir()

	// vigil: the rules, one pipeline per source.
	eng := catalog(t)
	rulesFn := func() *detect.Engine { return eng }
	logSink, hookSink := &collected{}, &collected{}
	var seenMu sync.Mutex
	seen := map[string]int{} // audit IDs the follower handed on
	logPipe, err := NewPipeline(PipelineConfig{Rules: rulesFn, Sinks: []AlertSink{logSink}, Node: "apiserver-test",
		OnEvent: func(ev *event.Event) {
			seenMu.Lock()
			seen[ev.Audit.AuditID]++
			seenMu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	hookPipe, err := NewPipeline(PipelineConfig{Rules: rulesFn, Sinks: []AlertSink{hookSink}, Node: "apiserver-test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go hookPipe.Run(ctx)
	auditLog := filepath.Join(dir, "audit.log")
	fw, err := NewFollower(FollowerConfig{Path: auditLog, StateFile: filepath.Join(dir, "audit.pos"), Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = fw.Run(ctx, logPipe.HandleLine) }()

	// The webhook, over HTTPS with a bearer token.
	ca := newTestCA(t, "vigil-audit-test-ca")
	hook, err := NewWebhook(WebhookConfig{Token: "audit-webhook-token", Deliver: hookPipe.Offer})
	if err != nil {
		t.Fatal(err)
	}
	hookSrv := httptest.NewUnstartedServer(hook)
	hookSrv.TLS = ServerTLS(ca.issue(t, "vigil-audit", true), nil)
	hookSrv.StartTLS()
	defer hookSrv.Close()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hookCfg := write("audit-webhook.kubeconfig", fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: vigil
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: api-server
  user:
    token: audit-webhook-token
contexts:
- name: default
  context: {cluster: vigil, user: api-server}
current-context: default
`, hookSrv.URL, b64(caPEM)))
	policy := write("audit-policy.yaml", `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    verbs: [watch]
  - level: Metadata
    resources:
      - group: ""
        resources: [secrets, configmaps, serviceaccounts/token]
      - group: authentication.k8s.io
        resources: [tokenreviews]
  - level: Request
    verbs: [create, update, patch]
    resources:
      - group: ""
        resources: [pods, replicationcontrollers]
      - group: apps
        resources: [deployments, daemonsets, statefulsets, replicasets]
      - group: batch
        resources: [jobs, cronjobs]
      - group: rbac.authorization.k8s.io
        resources: [roles, clusterroles, rolebindings, clusterrolebindings]
  - level: Metadata
`)
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	saKeyFile := write("sa.key", string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)})))
	pubDER, _ := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	saPubFile := write("sa.pub", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})))
	tokens := write("tokens.csv", "admin-token-1,admin,admin-uid,system:masters\n")

	etcdClient, etcdPeer, apiPort := freePort(t), freePort(t), freePort(t)
	daemon(t, filepath.Join(dir, "etcd.log"), filepath.Join(bin, "etcd"), "--name=audit-test", "--data-dir="+filepath.Join(dir, "etcd"),
		fmt.Sprintf("--listen-client-urls=http://127.0.0.1:%d", etcdClient), fmt.Sprintf("--advertise-client-urls=http://127.0.0.1:%d", etcdClient),
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", etcdPeer), fmt.Sprintf("--initial-advertise-peer-urls=http://127.0.0.1:%d", etcdPeer),
		fmt.Sprintf("--initial-cluster=audit-test=http://127.0.0.1:%d", etcdPeer), "--listen-metrics-urls=", "--log-level=warn")
	daemon(t, filepath.Join(dir, "apiserver.log"), filepath.Join(bin, "kube-apiserver"),
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", etcdClient), "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", apiPort), "--cert-dir="+filepath.Join(dir, "certs"), "--token-auth-file="+tokens,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local", "--service-account-key-file="+saPubFile,
		"--service-account-signing-key-file="+saKeyFile, "--service-cluster-ip-range=10.250.0.0/16", "--authorization-mode=RBAC",
		"--allow-privileged=true", "--endpoint-reconciler-type=none", "--profiling=false",
		"--audit-policy-file="+policy, "--audit-log-path="+auditLog, "--audit-log-maxsize=1",
		"--audit-webhook-config-file="+hookCfg, "--audit-webhook-batch-max-wait=500ms")

	admin, err := kubernetes.NewForConfig(&rest.Config{Host: fmt.Sprintf("https://127.0.0.1:%d", apiPort), BearerToken: "admin-token-1",
		TLSClientConfig: rest.TLSClientConfig{Insecure: true}, UserAgent: "kubectl/v1.35.4 (linux/amd64) kubernetes/test",
		QPS: 2000, Burst: 2000})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		body, err := admin.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && string(body) == "ok" {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "apiserver.log"))
			t.Fatalf("kube-apiserver not ready: %v\n%s", err, tail(log, 4000))
		}
		time.Sleep(250 * time.Millisecond)
	}
	// The API server's own start-up (bootstrap roles and bindings, priority
	// levels, ...) raised nothing.
	time.Sleep(2 * time.Second)
	if n := len(logSink.all()) + len(hookSink.all()); n != 0 {
		t.Fatalf("the API server's start-up raised %d alerts: %v %v", n, types(logSink.all()), types(hookSink.all()))
	}

	// The workload: a service account allowed to read secrets, its pod
	// (never scheduled: there is no node), and a token bound to the pod.
	_, err = admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{})
	must(t, err)
	_, err = admin.CoreV1().ServiceAccounts("shop").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "api"}}, metav1.CreateOptions{})
	must(t, err)
	_, err = admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "secret-reader"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list"}}}}, metav1.CreateOptions{})
	must(t, err)
	_, err = admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "api-secret-reader"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "secret-reader"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "api", Namespace: "shop"}}}, metav1.CreateOptions{})
	must(t, err)
	pod, err := admin.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "api-0"},
		Spec: corev1.PodSpec{ServiceAccountName: "api", Containers: []corev1.Container{{Name: "api", Image: "vigil.local/busybox:1"}}}}, metav1.CreateOptions{})
	must(t, err)
	tr, err := admin.CoreV1().ServiceAccounts("shop").CreateToken(ctx, "api", &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
		BoundObjectRef: &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}}}, metav1.CreateOptions{})
	must(t, err)

	// The intruder in the pod, with curl's user agent.
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 10 * time.Second}
	curl := func(method, path, body string) int {
		req, _ := http.NewRequest(method, fmt.Sprintf("https://127.0.0.1:%d%s", apiPort, path), strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tr.Status.Token)
		req.Header.Set("User-Agent", "curl/8.5.0")
		req.Header.Set("Content-Type", "application/json")
		res, err := insecure.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		_, _ = io.Copy(io.Discard, res.Body)
		return res.StatusCode
	}
	if code := curl(http.MethodPost, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
		`{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{"resourceAttributes":{"verb":"list","resource":"secrets"}}}`); code != http.StatusCreated {
		t.Fatalf("SelfSubjectAccessReview: %d", code)
	}
	if code := curl(http.MethodGet, "/api/v1/secrets", ""); code != http.StatusOK {
		t.Fatalf("list secrets: %d", code)
	}
	// The administrator: a privileged pod with the host's root, and a
	// cluster-admin binding for the workload's service account.
	priv := true
	_, err = admin.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "evil"},
		Spec: corev1.PodSpec{ServiceAccountName: "api", HostPID: true,
			Containers: []corev1.Container{{Name: "shell", Image: "vigil.local/busybox:1", SecurityContext: &corev1.SecurityContext{Privileged: &priv},
				VolumeMounts: []corev1.VolumeMount{{Name: "host", MountPath: "/host"}}}},
			Volumes: []corev1.Volume{{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}}}, metav1.CreateOptions{})
	must(t, err)
	_, err = admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "pwn"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "api", Namespace: "shop"}}}, metav1.CreateOptions{})
	must(t, err)

	want := []string{"vigil.cluster/K8sSelfSubjectReview", "vigil.cluster/K8sSecretsAccessByServiceAccount", "vigil.cluster/K8sClientToolFromPod",
		"vigil.cluster/K8sPrivilegedPodCreated", "vigil.cluster/K8sSensitiveHostPathMount", "vigil.cluster/K8sHostNamespacePod",
		"vigil.cluster/K8sClusterAdminBinding"}
	for _, src := range []struct {
		name string
		sink *collected
	}{{"audit log", logSink}, {"audit webhook", hookSink}} {
		t.Run(src.name, func(t *testing.T) {
			deadline := time.Now().Add(30 * time.Second)
			for {
				got := types(src.sink.all())
				missing := false
				for _, w := range want {
					if !slices.Contains(got, w) {
						missing = true
					}
				}
				if !missing {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("alerts %v, want %v", got, want)
				}
				time.Sleep(100 * time.Millisecond)
			}
			for _, al := range src.sink.all() {
				if !slices.Contains(want, al.AlertType) {
					t.Errorf("unexpected alert %s (%s)", al.AlertType, al.Entities.Extra["resource"])
				}
				if al.AlertType == "vigil.cluster/K8sSelfSubjectReview" || al.AlertType == "vigil.cluster/K8sSecretsAccessByServiceAccount" {
					if al.Entities.Pod != "api-0" || al.Entities.Namespace != "shop" || !slices.Equal(al.Entities.Extra["serviceAccount"], []string{"shop/api"}) {
						t.Errorf("%s names pod %s/%s, service account %v; want shop/api-0 and shop/api", al.AlertType, al.Entities.Namespace, al.Entities.Pod, al.Entities.Extra["serviceAccount"])
					}
				}
			}
		})
	}

	t.Run("the log rotated by the API server is followed without losses or duplicates", func(t *testing.T) {
		// --audit-log-maxsize=1: the API server renames audit.log once it
		// holds 1 MB and opens a new one. Enough requests for a rotation:
		for i := 0; i < 3000; i++ {
			if _, err := admin.CoreV1().ConfigMaps("shop").List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
				t.Fatal(err)
			}
		}
		rotated, _ := filepath.Glob(filepath.Join(dir, "audit-*.log"))
		if len(rotated) == 0 {
			t.Fatal("the API server did not rotate its audit log")
		}
		// Every final-stage event on disk, in the rotated files and the
		// current one, was handed on exactly once.
		onDisk := map[string]bool{}
		for _, p := range append(rotated, auditLog) {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
				if ev, err := ParseEvent(line, SourceLog); err == nil {
					onDisk[ev.Audit.AuditID] = true
				}
			}
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			seenMu.Lock()
			missing, dup := 0, 0
			for id := range onDisk {
				switch seen[id] {
				case 0:
					missing++
				case 1:
				default:
					dup++
				}
			}
			seenMu.Unlock()
			if missing == 0 && dup == 0 {
				t.Logf("%d audit events in %d rotated files and the current one, each handed on once", len(onDisk), len(rotated))
				return
			}
			if dup > 0 || time.Now().After(deadline) {
				t.Fatalf("of %d audit events on disk, %d were not handed on and %d more than once", len(onDisk), missing, dup)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

func (c *collected) all() []alert.Alert {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.writes)
}

func types(als []alert.Alert) []string {
	var out []string
	for _, a := range als {
		if !slices.Contains(out, a.AlertType) {
			out = append(out, a.AlertType)
		}
	}
	slices.Sort(out)
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(bytes.TrimSpace(b))
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

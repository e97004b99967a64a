package kubemeta

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/vigil-sec/vigil/internal/testutil/kcluster"
)

func quietCache(t *testing.T, client *Client, node string) *Cache {
	t.Helper()
	c, err := New(Config{Client: client, Node: node, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeKubeconfig(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// What the sensor cannot use is refused when it starts, naming the part of
// the kubeconfig and what to give instead.
func TestAKubeconfigTheSensorCannotUseIsRefusedWithWhatToGiveInstead(t *testing.T) {
	const head = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
`
	cases := []struct {
		name, body string
		want       []string
	}{
		{"an exec credential plugin", head + "users:\n- name: u\n  user:\n    exec: {command: aws, apiVersion: client.authentication.k8s.io/v1}\n",
			[]string{`user "u"`, "exec plugin", "not support", "token, tokenFile or client certificate"}},
		{"an auth-provider plugin", head + "users:\n- name: u\n  user:\n    auth-provider: {name: oidc}\n",
			[]string{"auth-provider", "not support", "token"}},
		{"basic authentication", head + "users:\n- name: u\n  user: {username: admin, password: secret}\n",
			[]string{"basic authentication", "not support"}},
		{"a client certificate without its key", head + "users:\n- name: u\n  user: {client-certificate-data: " + base64.StdEncoding.EncodeToString([]byte("x")) + "}\n",
			[]string{"without its key", "give both"}},
		{"a user the context names but the file lacks", head + "users:\n- name: other\n  user: {token: abc}\n",
			[]string{`user "u"`, "not among its users"}},
		{"no current context", strings.Replace(head, "current-context: x", "", 1) + "users:\n- name: u\n  user: {token: abc}\n",
			[]string{"no current-context", "kubectl config use-context"}},
		{"a token file that does not exist", head + "users:\n- name: u\n  user: {tokenFile: missing-token}\n",
			[]string{"tokenFile", "missing-token"}},
		{"a server that is not a URL", strings.Replace(head, `"https://127.0.0.1:6443"`, `"127.0.0.1:6443"`, 1) + "users:\n- name: u\n  user: {token: abc}\n",
			[]string{"not an http(s) URL"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeKubeconfig(t, t.TempDir(), tc.body)
			_, err := KubeconfigClient(path)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range append(tc.want, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if _, err := KubeconfigClient(filepath.Join(t.TempDir(), "none")); err == nil || !strings.Contains(err.Error(), "kubeconfig") {
		t.Errorf("a missing kubeconfig: %v", err)
	}
}

// Kubelet rotates a bound service account token by swapping the file under
// a symlink: the next request carries the new token.
func TestARotatedTokenFileIsReadAgain(t *testing.T) {
	dir := t.TempDir()
	write := func(name, tok string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	swap := func(target string) {
		tmp := filepath.Join(dir, "token.tmp")
		if err := os.Symlink(target, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "token")); err != nil {
			t.Fatal(err)
		}
	}
	write("v1", "first-token")
	write("v2", "second-token-longer")
	swap("v1")
	ts := &tokenSource{path: filepath.Join(dir, "token")}
	for _, step := range []struct{ target, want string }{{"v1", "first-token"}, {"v2", "second-token-longer"}, {"v1", "first-token"}} {
		swap(step.target)
		if got, err := ts.get(); err != nil || got != step.want {
			t.Fatalf("after pointing the token at %s: %q, %v; want %q", step.target, got, err, step.want)
		}
	}
	// A moment without the file (between kubelet's renames) keeps the last token.
	if err := os.Remove(filepath.Join(dir, "token")); err != nil {
		t.Fatal(err)
	}
	if got, err := ts.get(); err != nil || got != "first-token" {
		t.Fatalf("without the file: %q, %v; want the last token", got, err)
	}
}

// clusterFiles writes the test cluster's CA, client certificate and key
// (the admin kubeconfig's -data fields) into dir.
func clusterFiles(t *testing.T, c *kcluster.Cluster, dir string) (server string) {
	t.Helper()
	b, err := os.ReadFile(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	var kc kubeconfig
	if err := yaml.Unmarshal(b, &kc); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		"ca.crt":     kc.Clusters[0].Cluster.CertificateAuthorityData,
		"client.crt": kc.Users[0].User.ClientCertificateData,
		"client.key": kc.Users[0].User.ClientKeyData,
	} {
		raw, err := base64.StdEncoding.DecodeString(data)
		if err != nil || len(raw) == 0 {
			t.Fatalf("the cluster's kubeconfig lacks %s as -data (%v)", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return kc.Clusters[0].Cluster.Server
}

// A kubeconfig that names its certificate files relative to itself (as
// kubeadm and kind write them) reaches the real API server and lists this
// node's pods.
func TestAKubeconfigWithCertificateFilesBesideItListsThisNodesPods(t *testing.T) {
	c := kcluster.Require(t)
	dir := t.TempDir()
	server := clusterFiles(t, c, dir)
	path := writeKubeconfig(t, dir, `apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster: {server: "`+server+`", certificate-authority: ca.crt}
users:
- name: me
  user: {client-certificate: client.crt, client-key: client.key}
contexts:
- name: lab
  context: {cluster: lab, user: me}
current-context: lab
`)
	client, err := KubeconfigClient(path)
	if err != nil {
		t.Fatal(err)
	}
	cache := quietCache(t, client, c.NodeName)
	rv, err := cache.list(t.Context(), false)
	if err != nil {
		t.Fatalf("listing the node's pods: %v", err)
	}
	if rv == "" || !cache.Synced() {
		t.Fatalf("list gave resource version %q, synced %v", rv, cache.Synced())
	}
}

// In a pod: the service account token and CA from their files and the API
// server from KUBERNETES_SERVICE_HOST/PORT. When kubelet rotates the token
// (here: to one of a service account without rights) the next request
// carries the new one, and a refusal says which rights the sensor needs.
func TestAnInClusterSensorFollowsItsRotatedServiceAccountToken(t *testing.T) {
	c := kcluster.Require(t)
	ns := c.Namespace(t, "kubemeta-sa")
	ctx := t.Context()
	token := func(sa string) string {
		t.Helper()
		if _, err := c.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		exp := int64(600)
		tr, err := c.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	sensorTok, nobodyTok := token("sensor"), token("nobody")
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-sensor"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "view"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "sensor", Namespace: ns}},
	}
	if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Client.RbacV1().ClusterRoleBindings().Delete(context.Background(), crb.Name, metav1.DeleteOptions{})
	})

	dir := t.TempDir()
	server := clusterFiles(t, c, dir)
	u, err := url.Parse(server)
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(u.Host)
	env := map[string]string{"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}
	setToken := func(tok string) {
		t.Helper()
		tmp := filepath.Join(dir, "token.new")
		if err := os.WriteFile(tmp, []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "token")); err != nil {
			t.Fatal(err)
		}
	}
	setToken(sensorTok)
	client, err := inClusterClient(func(k string) string { return env[k] }, dir)
	if err != nil {
		t.Fatal(err)
	}
	cache := quietCache(t, client, c.NodeName)
	// The RBAC binding takes effect within moments.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if _, err = cache.list(ctx, false); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("listing with the service account's token: %v", err)
		}
	}
	setToken(nobodyTok)
	_, err = cache.list(ctx, false)
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "get, list and watch on pods") {
		t.Fatalf("with the rotated token of a service account without rights: %v; want 403 naming the rights", err)
	}
	setToken(sensorTok)
	if _, err := cache.list(ctx, false); err != nil {
		t.Fatalf("after rotating back: %v", err)
	}

	if _, err := inClusterClient(func(string) string { return "" }, dir); err == nil || !strings.Contains(err.Error(), "KUBERNETES_SERVICE_HOST") {
		t.Errorf("outside a pod: %v", err)
	}
}

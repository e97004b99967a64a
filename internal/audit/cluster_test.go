package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/testenv"
	"github.com/vigil-sec/vigil/internal/testutil/kcluster"
)

func (c *collected) snapshot() []alert.Alert {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]alert.Alert(nil), c.writes...)
}

// On the project's own cluster, whose API server writes an audit log
// (hack/cluster up): from inside a real pod, the pod's service-account token
// is used with wget (as curl) to ask what it may do and to list secrets
// across namespaces; an administrator creates a privileged hostPath pod and
// a cluster-admin binding. The audit log raises each alert, naming the pod
// and the service account — and the cluster's own controllers, scheduler and
// kubelet, busy meanwhile, raise none.
func TestTheClustersAuditLogRaisesAlertsForAnAttackFromAPodAndNoneForItsControllers(t *testing.T) {
	c := kcluster.Require(t)
	logPath := filepath.Join(c.RepoRoot, ".cluster", "audit", "audit.log")
	_, err := os.Stat(logPath)
	testenv.Require(t, err == nil, "the test cluster writes no audit log at "+logPath+": restart it with this checkout's hack/cluster (down, then up)")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	idx := NewPodIndex(c.Client, nil)
	go idx.Run(ctx)
	p, sink := newTestPipeline(t, idx.Lookup)
	f, err := NewFollower(FollowerConfig{Path: logPath, FromEnd: true, Poll: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	followed := make(chan error, 1)
	go func() { followed <- f.Run(ctx, p.HandleLine) }()
	defer func() { cancel(); <-followed }()

	ns := c.Namespace(t, "vigil-audit-e2e")
	suffix := strings.TrimPrefix(ns, "vigil-audit-e2e-")
	// The workload's service account may read secrets cluster-wide (a
	// common over-grant the attacker abuses).
	reader, binding, admin := "vigil-e2e-secret-reader-"+suffix, "vigil-e2e-secret-reader-"+suffix, "vigil-e2e-pwn-"+suffix
	must(t, errOf(c.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: reader},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list"}}}}, metav1.CreateOptions{})))
	must(t, errOf(c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: binding},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: reader},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "default", Namespace: ns}}}, metav1.CreateOptions{})))
	t.Cleanup(func() {
		bg := context.Background()
		_ = c.Client.RbacV1().ClusterRoleBindings().Delete(bg, binding, metav1.DeleteOptions{})
		_ = c.Client.RbacV1().ClusterRoleBindings().Delete(bg, admin, metav1.DeleteOptions{})
		_ = c.Client.RbacV1().ClusterRoles().Delete(bg, reader, metav1.DeleteOptions{})
	})
	// The workload runs vigil's image: its `simulate kube-api` calls the API
	// with the pod's own token (busybox wget cannot complete TLS with it).
	web := kcluster.BusyboxPod(ns, "web", "sleep", "3600")
	web.Spec.Containers[0].Image = c.VigilImage(t)
	c.CreatePod(t, web)
	pod := c.WaitPodRunning(t, ns, "web", 2*time.Minute)
	start := time.Now()

	// The intruder in the pod, with curl's user agent.
	call := func(method, path, body string) {
		t.Helper()
		args := []string{"/vigil", "simulate", "kube-api", "--user-agent", "curl/8.5.0", method, path}
		if body != "" {
			args = append(args, body)
		}
		out := c.Exec(t, ns, "web", args...)
		if !strings.HasPrefix(out, "200 ") && !strings.HasPrefix(out, "201 ") {
			t.Fatalf("%s %s from the pod: %s", method, path, out)
		}
	}
	call("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
		`{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{"resourceAttributes":{"verb":"list","resource":"secrets"}}}`)
	call("GET", "/api/v1/secrets", "")

	// The administrator: a privileged pod with the host's root and PID
	// namespace, and a cluster-admin binding for the workload.
	priv, zero := true, int64(0)
	must(t, errOf(c.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "evil"},
		Spec: corev1.PodSpec{HostPID: true, TerminationGracePeriodSeconds: &zero,
			Containers: []corev1.Container{{Name: "shell", Image: kcluster.BusyboxImage, ImagePullPolicy: corev1.PullNever, Command: []string{"sleep", "3600"},
				SecurityContext: &corev1.SecurityContext{Privileged: &priv}, VolumeMounts: []corev1.VolumeMount{{Name: "host", MountPath: "/host"}}}},
			Volumes: []corev1.Volume{{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}}}, metav1.CreateOptions{})))
	must(t, errOf(c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: admin},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "default", Namespace: ns}}}, metav1.CreateOptions{})))

	fromPod := []string{"vigil.cluster/K8sSelfSubjectReview", "vigil.cluster/K8sSecretsAccessByServiceAccount", "vigil.cluster/K8sClientToolFromPod"}
	want := append(fromPod, "vigil.cluster/K8sPrivilegedPodCreated", "vigil.cluster/K8sSensitiveHostPathMount",
		"vigil.cluster/K8sHostNamespacePod", "vigil.cluster/K8sClusterAdminBinding")
	ours := func(al alert.Alert) bool {
		return al.Entities.Namespace == ns || slices.Contains(al.Entities.Extra["objectNamespace"], ns) ||
			slices.ContainsFunc(al.Entities.Extra["subjects"], func(s string) bool { return strings.Contains(s, ns) })
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var got []string
		for _, al := range sink.snapshot() {
			if ours(al) {
				got = append(got, al.AlertType)
			}
		}
		missing := slices.DeleteFunc(slices.Clone(want), func(w string) bool { return slices.Contains(got, w) })
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s the audit log raised %v for the test's namespace; missing %v", time.Since(start).Round(time.Second), got, missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, al := range sink.snapshot() {
		if slices.Contains(fromPod, al.AlertType) && ours(al) {
			if al.Entities.Pod != pod.Name || !slices.Equal(al.Entities.Extra["serviceAccount"], []string{ns + "/default"}) {
				t.Errorf("%s names pod %q and service account %v; want %s/%s and %s/default", al.AlertType, al.Entities.Pod, al.Entities.Extra["serviceAccount"], ns, pod.Name, ns)
			}
		}
	}
	// The cluster's own components were busy the whole time (scheduling,
	// kubelet status, controllers): none of their requests is an alert.
	for _, al := range sink.snapshot() {
		for _, u := range al.Entities.Extra["user"] {
			if strings.HasPrefix(u, "system:") && !strings.HasPrefix(u, "system:serviceaccount:") ||
				strings.HasPrefix(u, "system:serviceaccount:kube-system:") {
				t.Errorf("the control plane's own request raised %s (user %s, %s %v)", al.AlertType, u, al.Entities.Extra["verb"], al.Entities.Extra["resource"])
			}
		}
	}
}

// errOf keeps only the error of a create.
func errOf[T any](_ T, err error) error { return err }

// The whole audit history of the project's cluster — every request its
// controllers, scheduler, kubelet and kube-proxy made since it started,
// minutes of it by the time the tests run — raises no alert for them. (The
// attacks other tests perform in their own namespaces do; they come from
// test users and pods, not from the cluster's components.)
func TestTheClustersOwnComponentsRaiseNoAlertInItsWholeAuditHistory(t *testing.T) {
	c := kcluster.Require(t)
	logPath := filepath.Join(c.RepoRoot, ".cluster", "audit", "audit.log")
	data, err := os.ReadFile(logPath)
	testenv.Require(t, err == nil, fmt.Sprintf("the test cluster writes no audit log at %s (%v): restart it with this checkout's hack/cluster (down, then up)", logPath, err))
	p, sink := newTestPipeline(t, nil)
	var first, last time.Time
	n := 0
	for line := range bytes.Lines(data) {
		if !bytes.HasSuffix(line, []byte("\n")) {
			break // the API server is writing it
		}
		n++
		var ts struct {
			StageTimestamp time.Time `json:"stageTimestamp"`
		}
		if json.Unmarshal(line, &ts) == nil && !ts.StageTimestamp.IsZero() {
			if first.IsZero() {
				first = ts.StageTimestamp
			}
			last = ts.StageTimestamp
		}
		p.HandleLine(bytes.TrimSuffix(line, []byte("\n")))
	}
	p.Flush(true)
	t.Logf("%d audit events over %s, %d alert writes", n, last.Sub(first).Round(time.Second), len(sink.snapshot()))
	if n == 0 {
		t.Fatal("the audit log is empty")
	}
	for _, al := range sink.snapshot() {
		for _, u := range al.Entities.Extra["user"] {
			if strings.HasPrefix(u, "system:") && !strings.HasPrefix(u, "system:serviceaccount:") ||
				strings.HasPrefix(u, "system:serviceaccount:kube-system:") {
				t.Errorf("the cluster's own request raised %s (user %s, %v %v)", al.AlertType, u, al.Entities.Extra["verb"], al.Entities.Extra["resource"])
			}
		}
	}
}

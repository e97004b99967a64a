package kcluster

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AuditAttack is the control-plane attack the audit tests perform and the
// alerts it must raise.
type AuditAttack struct {
	// Namespace is the attack's own namespace, Pod the workload the
	// intruder works from (service account Namespace/default).
	Namespace, Pod string
	// FromPod are the alert types about the pod's own requests, which must
	// name the pod and its service account; Want are all of them.
	FromPod, Want []string
}

// Ours reports whether an alert with these entities is about the attack:
// its namespace, the namespace of the object it concerns, or a binding's
// subject in it.
func (a AuditAttack) Ours(namespace string, extra map[string][]string) bool {
	return namespace == a.Namespace || slices.Contains(extra["objectNamespace"], a.Namespace) ||
		slices.ContainsFunc(extra["subjects"], func(s string) bool { return strings.Contains(s, a.Namespace) })
}

// IsClusterComponent reports whether an audit user is the cluster's own:
// a control-plane component, a node, or a kube-system service account.
func IsClusterComponent(user string) bool {
	return strings.HasPrefix(user, "system:") && !strings.HasPrefix(user, "system:serviceaccount:") ||
		strings.HasPrefix(user, "system:serviceaccount:kube-system:")
}

// RunAuditAttack performs, in a new namespace, what an intruder in a pod and
// a careless administrator do: the workload's service account may read
// secrets cluster-wide (the over-grant abused); from inside the pod (vigil's
// image: `vigil simulate kube-api` uses the pod's own token) it asks what it
// may do with a SelfSubjectAccessReview and lists secrets across
// namespaces, with curl's user agent; kubectl creates a privileged pod with
// the host's PID namespace and root filesystem, and binds the workload's
// service account to cluster-admin. Everything is removed when the test ends.
func (c *Cluster) RunAuditAttack(t testing.TB, vigilImage string) AuditAttack {
	t.Helper()
	ctx := context.Background()
	ns := c.Namespace(t, "e2e-audit")
	reader, admin := "e2e-secret-reader-"+ns, "e2e-pwn-"+ns
	t.Cleanup(func() {
		bg := context.Background()
		_ = c.Client.RbacV1().ClusterRoleBindings().Delete(bg, reader, metav1.DeleteOptions{})
		_ = c.Client.RbacV1().ClusterRoleBindings().Delete(bg, admin, metav1.DeleteOptions{})
		_ = c.Client.RbacV1().ClusterRoles().Delete(bg, reader, metav1.DeleteOptions{})
	})
	if _, err := c.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: reader},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: reader},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: reader},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "default", Namespace: ns}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	web := BusyboxPod(ns, "web", "sleep", "3600")
	web.Spec.Containers[0].Image = vigilImage
	c.CreatePod(t, web)
	c.WaitPodRunning(t, ns, "web", 2*time.Minute)

	call := func(method, path, body string) {
		t.Helper()
		args := []string{"/vigil", "simulate", "kube-api", "--user-agent", "curl/8.5.0", method, path}
		if body != "" {
			args = append(args, body)
		}
		if out := c.Exec(t, ns, "web", args...); !strings.HasPrefix(out, "200 ") && !strings.HasPrefix(out, "201 ") {
			t.Fatalf("%s %s from the pod: %s", method, path, out)
		}
	}
	call("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
		`{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{"resourceAttributes":{"verb":"list","resource":"secrets"}}}`)
	call("GET", "/api/v1/secrets", "")

	c.RunKubectl(t, "run", "evil", "-n", ns, "--image", BusyboxImage, "--image-pull-policy", "Never", "--restart", "Never",
		"--privileged", "--overrides", `{"spec":{"hostPID":true,"terminationGracePeriodSeconds":0,"containers":[{"name":"evil","image":"`+BusyboxImage+
			`","imagePullPolicy":"Never","command":["sleep","3600"],"securityContext":{"privileged":true},"volumeMounts":[{"name":"host","mountPath":"/host"}]}],`+
			`"volumes":[{"name":"host","hostPath":{"path":"/"}}]}}`)
	c.RunKubectl(t, "create", "clusterrolebinding", admin, "--clusterrole", "cluster-admin", "--serviceaccount", ns+":default")

	fromPod := []string{"vigil.cluster/K8sSelfSubjectReview", "vigil.cluster/K8sSecretsAccessByServiceAccount", "vigil.cluster/K8sClientToolFromPod"}
	return AuditAttack{Namespace: ns, Pod: "web", FromPod: fromPod,
		Want: append(slices.Clone(fromPod), "vigil.cluster/K8sPrivilegedPodCreated", "vigil.cluster/K8sSensitiveHostPathMount",
			"vigil.cluster/K8sHostNamespacePod", "vigil.cluster/K8sClusterAdminBinding")}
}

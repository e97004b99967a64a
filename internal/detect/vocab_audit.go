package detect

import "github.com/vigil-sec/vigil/internal/event"

// typeAudit is the CEL object type of the audit variable.
const typeAudit = "vigil.Audit"

// auditView is the rule-facing view of a Kubernetes audit event (kind
// audit). For other kinds every field is its zero value.
type auditView struct{ a *event.Audit }

// auditFields is the vocabulary of the audit object.
func auditFields() map[string]field[*auditView] {
	return map[string]field[*auditView]{
		"auditID":                 fstr("the API server's id of the request", func(v *auditView) string { return v.a.AuditID }),
		"stage":                   fstr("audit stage (ResponseComplete, Panic)", func(v *auditView) string { return v.a.Stage }),
		"level":                   fstr("audit level the policy logged the request at (Metadata, Request, RequestResponse)", func(v *auditView) string { return v.a.Level }),
		"user":                    fstr("authenticated user name (system:anonymous when unauthenticated, system:serviceaccount:NS:NAME for service accounts)", func(v *auditView) string { return v.a.User }),
		"groups":                  fl("the user's groups", func(v *auditView) []string { return v.a.Groups }),
		"serviceAccountNamespace": fstr("namespace of the service account that made the request (\"\" if the user is not a service account)", func(v *auditView) string { return v.a.ServiceAccountNamespace }),
		"serviceAccountName":      fstr("name of the service account that made the request (\"\" if the user is not a service account)", func(v *auditView) string { return v.a.ServiceAccountName }),
		"impersonatedUser":        fstr("user the request impersonated (Impersonate-User), if any", func(v *auditView) string { return v.a.ImpersonatedUser }),
		"verb":                    fstr("request verb (get, list, watch, create, update, patch, delete, deletecollection)", func(v *auditView) string { return v.a.Verb }),
		"apiGroup":                fstr("API group of the resource (\"\" for the core group)", func(v *auditView) string { return v.a.APIGroup }),
		"apiVersion":              fstr("API version of the resource", func(v *auditView) string { return v.a.APIVersion }),
		"resource":                fstr("resource (pods, secrets, clusterrolebindings, ...)", func(v *auditView) string { return v.a.Resource }),
		"subresource":             fstr("subresource (exec, attach, log, status, ...)", func(v *auditView) string { return v.a.Subresource }),
		"namespace":               fstr("namespace of the object (\"\" for cluster-scoped objects and cross-namespace lists)", func(v *auditView) string { return v.a.Namespace }),
		"name":                    fstr("name of the object (\"\" for list and create without a name)", func(v *auditView) string { return v.a.Name }),
		"requestURI":              fstr("request path and query", func(v *auditView) string { return v.a.RequestURI }),
		"sourceIPs":               fl("client addresses, the connecting one last", func(v *auditView) []string { return v.a.SourceIPs }),
		"sourceIP":                fstr("the first client address (X-Forwarded-For origin or the connecting address)", func(v *auditView) string { return first(v.a.SourceIPs) }),
		"userAgent":               fstr("client's User-Agent (attacker-controlled)", func(v *auditView) string { return v.a.UserAgent }),
		"responseCode":            fn("HTTP status of the response (0 if unknown)", func(v *auditView) int64 { return int64(v.a.ResponseCode) }),
		"allowed":                 fb("the request succeeded: response code 2xx", func(v *auditView) bool { return v.a.ResponseCode >= 200 && v.a.ResponseCode < 300 }),
		"decision":                fstr("authorizer decision (allow, forbid)", func(v *auditView) string { return v.a.Decision }),
		"reason":                  fstr("authorizer reason (e.g. the RBAC binding that allowed it)", func(v *auditView) string { return v.a.Reason }),
		"objectKind":              fstr("kind of the request object (Pod, Deployment, ClusterRoleBinding, ...; needs audit level Request)", func(v *auditView) string { return v.a.ObjectKind }),
		"privileged":              fb("a container of the pod (template) runs privileged (needs audit level Request)", func(v *auditView) bool { return v.a.Privileged }),
		"hostPID":                 fb("the pod (template) shares the host's PID namespace", func(v *auditView) bool { return v.a.HostPID }),
		"hostNetwork":             fb("the pod (template) uses the host's network namespace", func(v *auditView) bool { return v.a.HostNetwork }),
		"hostIPC":                 fb("the pod (template) shares the host's IPC namespace", func(v *auditView) bool { return v.a.HostIPC }),
		"hostPaths":               fl("hostPath volume paths of the pod (template)", func(v *auditView) []string { return v.a.HostPaths }),
		"images":                  fl("container and init container images of the pod (template)", func(v *auditView) []string { return v.a.Images }),
		"capabilities":            fl("Linux capabilities added to any container of the pod (template)", func(v *auditView) []string { return v.a.Capabilities }),
		"roleRefKind":             fstr("kind of the role a (Cluster)RoleBinding binds (Role, ClusterRole)", func(v *auditView) string { return v.a.RoleRefKind }),
		"roleRefName":             fstr("name of the role a (Cluster)RoleBinding binds", func(v *auditView) string { return v.a.RoleRefName }),
		"subjects":                fl("subjects of a binding as Kind:name or Kind:namespace/name", func(v *auditView) []string { return v.a.Subjects }),
		"wildcardRule":            fb("a Role or ClusterRole in the request grants every verb on every resource (*)", func(v *auditView) bool { return v.a.WildcardRule }),
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

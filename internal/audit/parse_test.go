package audit

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// A pod's service account (bound token, Kubernetes 1.30+ extra fields)
// creating a SelfSubjectAccessReview with curl, as the API server logs it
// at level Metadata.
const ssarLine = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"0f3c1d1e-2b3a-4c5d-9e8f-7a6b5c4d3e2f","stage":"ResponseComplete","requestURI":"/apis/authorization.k8s.io/v1/selfsubjectaccessreviews","verb":"create","user":{"username":"system:serviceaccount:shop:api","uid":"5d6c7b8a-1234-4e5f-8a9b-0c1d2e3f4a5b","groups":["system:serviceaccounts","system:serviceaccounts:shop","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["JTI=0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"],"authentication.kubernetes.io/node-name":["vm"],"authentication.kubernetes.io/node-uid":["3c2b1a09-8f7e-6d5c-4b3a-291807f6e5d4"],"authentication.kubernetes.io/pod-name":["api-6b7c8d9e0-p4q5r"],"authentication.kubernetes.io/pod-uid":["9e8d7c6b-5a49-3827-1605-f4e3d2c1b0a9"]}},"sourceIPs":["10.244.0.17"],"userAgent":"curl/8.5.0","objectRef":{"resource":"selfsubjectaccessreviews","apiGroup":"authorization.k8s.io","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestReceivedTimestamp":"2026-11-25T10:00:01.123456Z","stageTimestamp":"2026-11-25T10:00:01.130001Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"system:basic-user\" of ClusterRole \"system:basic-user\" to Group \"system:authenticated\""}}`

// kubectl run with a privileged container, the host's root and PID
// namespace, logged at level Request (the request object is included).
const privPodLine = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods?fieldManager=kubectl-run","verb":"create","user":{"username":"kubernetes-admin","groups":["kubeadm:cluster-admins","system:authenticated"]},"sourceIPs":["192.0.2.10"],"userAgent":"kubectl/v1.35.4 (linux/amd64) kubernetes/abc1234","objectRef":{"resource":"pods","namespace":"default","name":"evil","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"evil","namespace":"default","creationTimestamp":null},"spec":{"volumes":[{"name":"host","hostPath":{"path":"/","type":""}},{"name":"kube-api-access","projected":{"sources":[{"serviceAccountToken":{"path":"token"}}]}}],"initContainers":[{"name":"init","image":"vigil.local/busybox:1","securityContext":{"capabilities":{"add":["SYS_ADMIN","NET_ADMIN"]}}}],"containers":[{"name":"shell","image":"vigil.local/busybox:1","resources":{},"securityContext":{"privileged":true,"capabilities":{"add":["SYS_ADMIN"]}}}],"hostPID":true,"restartPolicy":"Never"},"status":{}},"requestReceivedTimestamp":"2026-11-25T10:01:00.000001Z","stageTimestamp":"2026-11-25T10:01:00.020002Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"kubeadm:cluster-admins\" of ClusterRole \"cluster-admin\" to Group \"kubeadm:cluster-admins\"","pod-security.kubernetes.io/enforce-policy":"privileged:latest"}}`

const cronJobLine = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"c0ffee00-1111-4222-8333-444455556666","stage":"ResponseComplete","requestURI":"/apis/batch/v1/namespaces/ops/cronjobs","verb":"create","user":{"username":"alice@example.com","groups":["ops","system:authenticated"]},"impersonatedUser":{"username":"system:serviceaccount:ops:runner"},"sourceIPs":["198.51.100.7","10.0.0.4"],"userAgent":"kubectl/v1.35.4","objectRef":{"resource":"cronjobs","namespace":"ops","name":"sweep","apiGroup":"batch","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"CronJob","apiVersion":"batch/v1","metadata":{"name":"sweep"},"spec":{"schedule":"*/5 * * * *","jobTemplate":{"spec":{"template":{"spec":{"hostNetwork":true,"hostIPC":true,"containers":[{"name":"s","image":"registry.example.com/sweep:1"}],"volumes":[{"name":"d","hostPath":{"path":"/var/run/docker.sock"}}],"restartPolicy":"OnFailure"}}}}}},"requestReceivedTimestamp":"2026-11-25T10:02:00Z","stageTimestamp":"2026-11-25T10:02:00.01Z"}`

const bindingLine = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"b1b2b3b4-0000-4000-8000-000000000001","stage":"ResponseComplete","requestURI":"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings?fieldManager=kubectl-create","verb":"create","user":{"username":"kubernetes-admin","groups":["kubeadm:cluster-admins","system:authenticated"]},"sourceIPs":["192.0.2.10"],"userAgent":"kubectl/v1.35.4 (linux/amd64) kubernetes/abc1234","objectRef":{"resource":"clusterrolebindings","name":"pwn","apiGroup":"rbac.authorization.k8s.io","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"ClusterRoleBinding","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"pwn"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},"subjects":[{"kind":"ServiceAccount","name":"default","namespace":"default"},{"kind":"User","apiGroup":"rbac.authorization.k8s.io","name":"mallory"}]},"requestReceivedTimestamp":"2026-11-25T10:03:00Z","stageTimestamp":"2026-11-25T10:03:00.005Z"}`

func TestParsingRealAuditEventsKeepsWhatRulesAndAlertsNeed(t *testing.T) {
	cases := []struct {
		name  string
		line  string
		check func(t *testing.T, ev *event.Event)
	}{
		{"a service account's SelfSubjectAccessReview names its pod from the bound token", ssarLine, func(t *testing.T, ev *event.Event) {
			a := ev.Audit
			want := event.Audit{AuditID: "0f3c1d1e-2b3a-4c5d-9e8f-7a6b5c4d3e2f", Stage: "ResponseComplete", Level: "Metadata",
				User: "system:serviceaccount:shop:api", ServiceAccountNamespace: "shop", ServiceAccountName: "api",
				Verb: "create", APIGroup: "authorization.k8s.io", APIVersion: "v1", Resource: "selfsubjectaccessreviews",
				RequestURI: "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", UserAgent: "curl/8.5.0", ResponseCode: 201, Decision: "allow"}
			if a.AuditID != want.AuditID || a.Stage != want.Stage || a.Level != want.Level || a.User != want.User ||
				a.ServiceAccountNamespace != want.ServiceAccountNamespace || a.ServiceAccountName != want.ServiceAccountName ||
				a.Verb != want.Verb || a.APIGroup != want.APIGroup || a.APIVersion != want.APIVersion || a.Resource != want.Resource ||
				a.RequestURI != want.RequestURI || a.UserAgent != want.UserAgent || a.ResponseCode != want.ResponseCode || a.Decision != want.Decision {
				t.Errorf("audit = %+v\nwant  %+v", *a, want)
			}
			if !strings.Contains(a.Reason, "system:basic-user") {
				t.Errorf("authorization reason %q lost", a.Reason)
			}
			if !slices.Equal(a.SourceIPs, []string{"10.244.0.17"}) || !slices.Contains(a.Groups, "system:serviceaccounts:shop") {
				t.Errorf("source IPs %v, groups %v", a.SourceIPs, a.Groups)
			}
			if c := ev.Container; c == nil || c.Pod != "api-6b7c8d9e0-p4q5r" || c.Namespace != "shop" || c.PodUID != "9e8d7c6b-5a49-3827-1605-f4e3d2c1b0a9" {
				t.Errorf("container = %+v, want the pod named by the bound token", ev.Container)
			}
			if ev.Node != "vm" {
				t.Errorf("node %q, want the token's node vm", ev.Node)
			}
			if !ev.Time.Equal(time.Date(2026, 11, 25, 10, 0, 1, 130001000, time.UTC)) {
				t.Errorf("time %v, want the stage timestamp", ev.Time)
			}
		}},
		{"a privileged pod with the host's root and PID namespace", privPodLine, func(t *testing.T, ev *event.Event) {
			a := ev.Audit
			if a.ObjectKind != "Pod" || !a.Privileged || !a.HostPID || a.HostNetwork || a.HostIPC {
				t.Errorf("kind %q privileged %v hostPID %v hostNetwork %v hostIPC %v", a.ObjectKind, a.Privileged, a.HostPID, a.HostNetwork, a.HostIPC)
			}
			if !slices.Equal(a.HostPaths, []string{"/"}) {
				t.Errorf("host paths %v, want [/]", a.HostPaths)
			}
			if !slices.Equal(a.Images, []string{"vigil.local/busybox:1", "vigil.local/busybox:1"}) {
				t.Errorf("images %v", a.Images)
			}
			if !slices.Equal(a.Capabilities, []string{"SYS_ADMIN", "NET_ADMIN"}) {
				t.Errorf("capabilities %v, want each once", a.Capabilities)
			}
			if ev.Container != nil {
				t.Errorf("an administrator's request is not from a pod: %+v", ev.Container)
			}
			if a.Namespace != "default" || a.Name != "evil" || a.Level != "Request" {
				t.Errorf("object %s/%s level %s", a.Namespace, a.Name, a.Level)
			}
		}},
		{"a cron job's pod template is read through the job template", cronJobLine, func(t *testing.T, ev *event.Event) {
			a := ev.Audit
			if !a.HostNetwork || !a.HostIPC || a.HostPID || !slices.Equal(a.HostPaths, []string{"/var/run/docker.sock"}) {
				t.Errorf("hostNetwork %v hostIPC %v hostPID %v hostPaths %v", a.HostNetwork, a.HostIPC, a.HostPID, a.HostPaths)
			}
			if a.ImpersonatedUser != "system:serviceaccount:ops:runner" || a.User != "alice@example.com" || a.ServiceAccountName != "" {
				t.Errorf("user %q impersonating %q (sa %q)", a.User, a.ImpersonatedUser, a.ServiceAccountName)
			}
			if !slices.Equal(a.SourceIPs, []string{"198.51.100.7", "10.0.0.4"}) || a.APIGroup != "batch" {
				t.Errorf("source IPs %v group %q", a.SourceIPs, a.APIGroup)
			}
		}},
		{"a cluster role binding keeps its role and subjects", bindingLine, func(t *testing.T, ev *event.Event) {
			a := ev.Audit
			if a.RoleRefKind != "ClusterRole" || a.RoleRefName != "cluster-admin" {
				t.Errorf("roleRef %s/%s", a.RoleRefKind, a.RoleRefName)
			}
			if !slices.Equal(a.Subjects, []string{"ServiceAccount:default/default", "User:mallory"}) {
				t.Errorf("subjects %v", a.Subjects)
			}
			if a.Privileged || len(a.HostPaths) > 0 {
				t.Errorf("a binding has no pod fields: %+v", a)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev, err := ParseEvent([]byte(c.line), SourceLog)
			if err != nil {
				t.Fatalf("ParseEvent: %v", err)
			}
			if ev.Kind != event.KindAudit || ev.Source != SourceLog || ev.Audit == nil {
				t.Fatalf("kind %q source %q audit %v", ev.Kind, ev.Source, ev.Audit)
			}
			c.check(t, ev)
		})
	}
}

func TestBadAuditInputIsSkippedWithTheReason(t *testing.T) {
	received := strings.Replace(ssarLine, `"stage":"ResponseComplete"`, `"stage":"RequestReceived"`, 1)
	beta := strings.Replace(ssarLine, `"apiVersion":"audit.k8s.io/v1"`, `"apiVersion":"audit.k8s.io/v1beta1"`, 1)
	cases := []struct {
		name, line, reason string
	}{
		{"a truncated line", ssarLine[:len(ssarLine)/2], SkipMalformed},
		{"not JSON", "I1125 10:00:00.000000 1 trace.go:236] Trace[1]", SkipMalformed},
		{"an unknown version", beta, SkipVersion},
		{"the RequestReceived stage of a request judged at ResponseComplete", received, SkipStage},
		{"a JSON object that is not an audit event", `{"kind":"Pod","apiVersion":"audit.k8s.io/v1"}`, SkipMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev, err := ParseEvent([]byte(c.line), SourceLog)
			var se *SkipError
			if !errors.As(err, &se) {
				t.Fatalf("ParseEvent = %v, %v; want a *SkipError", ev, err)
			}
			if se.Reason != c.reason {
				t.Errorf("reason %q, want %q (%v)", se.Reason, c.reason, err)
			}
		})
	}
}

func TestAWebhookEventListYieldsItsGoodItemsAndCountsTheBadOnes(t *testing.T) {
	item := func(line string) string {
		// Items of an EventList carry no kind and apiVersion.
		return strings.Replace(line, `{"kind":"Event","apiVersion":"audit.k8s.io/v1",`, `{`, 1)
	}
	received := strings.Replace(item(bindingLine), `"stage":"ResponseComplete"`, `"stage":"RequestReceived"`, 1)
	body := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` +
		item(ssarLine) + `,` + received + `,"not an event",` + item(privPodLine) + `]}`
	evs, skipped, err := ParseEventList([]byte(body), SourceWebhook)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Audit.Resource != "selfsubjectaccessreviews" || evs[1].Audit.Resource != "pods" {
		t.Fatalf("events %v, want the SSAR and the pod", evs)
	}
	if evs[0].Source != SourceWebhook {
		t.Errorf("source %q", evs[0].Source)
	}
	if len(skipped) != 2 {
		t.Fatalf("skipped %v, want the RequestReceived stage and the string", skipped)
	}
	if _, _, err := ParseEventList([]byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1beta1","items":[]}`), SourceWebhook); err == nil || !strings.Contains(err.Error(), "--audit-webhook-version") {
		t.Errorf("a v1beta1 list: %v, want an error telling which version to configure", err)
	}
}

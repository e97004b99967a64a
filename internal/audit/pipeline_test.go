package audit

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/rules"
)

// collected keeps every alert written to it, as the hub would (upsert by ID).
type collected struct {
	mu     sync.Mutex
	writes []alert.Alert
}

func (c *collected) Write(al *alert.Alert) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, *al)
	return nil
}

func (c *collected) byType(t string) []alert.Alert {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []alert.Alert
	for _, a := range c.writes {
		if a.AlertType == t {
			out = append(out, a)
		}
	}
	return out
}

func catalog(t *testing.T) *detect.Engine {
	t.Helper()
	rs, err := detect.LoadFS(rules.FS, "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	eng, err := detect.Compile(rs)
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

func newTestPipeline(t *testing.T, lookup PodLookup) (*Pipeline, *collected) {
	t.Helper()
	eng := catalog(t)
	sink := &collected{}
	p, err := NewPipeline(PipelineConfig{Rules: func() *detect.Engine { return eng }, Sinks: []AlertSink{sink}, LookupPod: lookup, Node: "control-plane-1"})
	if err != nil {
		t.Fatal(err)
	}
	return p, sink
}

func TestAnAuditAlertNamesTheUserTheRequestAndThePod(t *testing.T) {
	p, sink := newTestPipeline(t, nil)
	p.HandleLine([]byte(ssarLine))
	als := sink.byType("vigil.cluster/K8sSelfSubjectReview")
	if len(als) != 1 {
		t.Fatalf("alerts %v, want one self-subject review alert", sink.writes)
	}
	al := als[0]
	if al.DisplayName != "Suspicious Kubernetes service account operation detected" || al.Severity != alert.SeverityMedium {
		t.Errorf("alert %q/%s", al.DisplayName, al.Severity)
	}
	en := al.Entities
	if en.Pod != "api-6b7c8d9e0-p4q5r" || en.Namespace != "shop" || en.Node != "vm" {
		t.Errorf("pod %s/%s node %s", en.Namespace, en.Pod, en.Node)
	}
	if en.Process != nil {
		t.Errorf("an audit alert has no process: %+v", en.Process)
	}
	if en.Network == nil || en.Network.IP != "10.244.0.17" {
		t.Errorf("network %+v, want the source address", en.Network)
	}
	want := map[string][]string{
		"user":           {"system:serviceaccount:shop:api"},
		"serviceAccount": {"shop/api"},
		"verb":           {"create"},
		"resource":       {"authorization.k8s.io/selfsubjectaccessreviews"},
		"userAgent":      {"curl/8.5.0"},
		"sourceIPs":      {"10.244.0.17"},
		"responseCode":   {"201"},
		"auditID":        {"0f3c1d1e-2b3a-4c5d-9e8f-7a6b5c4d3e2f"},
	}
	for k, v := range want {
		if !slices.Equal(en.Extra[k], v) {
			t.Errorf("extra[%s] = %v, want %v", k, en.Extra[k], v)
		}
	}
}

func TestRepeatsByTheSameUserFromTheSamePodFoldIntoOneAlert(t *testing.T) {
	p, sink := newTestPipeline(t, nil)
	for range 5 {
		p.HandleLine([]byte(ssarLine))
	}
	other := strings.ReplaceAll(ssarLine, "system:serviceaccount:shop:api", "system:serviceaccount:shop:worker")
	p.HandleLine([]byte(other))
	if n := len(sink.byType("vigil.cluster/K8sSelfSubjectReview")); n != 2 {
		t.Fatalf("%d writes before the flush, want one per user", n)
	}
	p.Flush(true)
	als := sink.byType("vigil.cluster/K8sSelfSubjectReview")
	if len(als) != 3 {
		t.Fatalf("%d writes after the flush, want the first two and one update", len(als))
	}
	upd := als[2]
	if upd.ID != als[0].ID || upd.Count != 5 {
		t.Errorf("update id %s count %d, want id %s count 5", upd.ID, upd.Count, als[0].ID)
	}
	if als[1].ID == als[0].ID {
		t.Error("two users share an alert ID")
	}
}

func TestABindingToARoleThatGrantsEverythingIsAnAdminBinding(t *testing.T) {
	p, sink := newTestPipeline(t, nil)
	role := strings.NewReplacer(
		`"objectRef":{"resource":"clusterrolebindings","name":"pwn"`, `"objectRef":{"resource":"clusterroles","name":"ops-all"`,
		`"requestObject":{"kind":"ClusterRoleBinding","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"pwn"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},"subjects":[{"kind":"ServiceAccount","name":"default","namespace":"default"},{"kind":"User","apiGroup":"rbac.authorization.k8s.io","name":"mallory"}]}`,
		`"requestObject":{"kind":"ClusterRole","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"ops-all"},"rules":[{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}]}`,
	).Replace(bindingLine)
	bindOps := strings.Replace(bindingLine, `"kind":"ClusterRole","name":"cluster-admin"`, `"kind":"ClusterRole","name":"ops-all"`, 1)
	bindView := strings.Replace(bindingLine, `"kind":"ClusterRole","name":"cluster-admin"`, `"kind":"ClusterRole","name":"view"`, 1)

	p.HandleLine([]byte(bindOps))
	if n := len(sink.byType("vigil.cluster/K8sClusterAdminBinding")); n != 0 {
		t.Fatalf("a binding to a role not known to grant everything raised %d alerts", n)
	}
	p.HandleLine([]byte(role))
	if n := len(sink.byType("vigil.cluster/K8sHighPrivilegesRole")); n != 1 {
		t.Fatalf("the wildcard role raised %d high-privilege alerts, want 1", n)
	}
	p.HandleLine([]byte(bindView))
	p.HandleLine([]byte(bindOps))
	als := sink.byType("vigil.cluster/K8sClusterAdminBinding")
	if len(als) != 1 {
		t.Fatalf("admin binding alerts %d, want 1 (the binding to the wildcard role)", len(als))
	}
	if got := als[0].Entities.Extra["roleRef"]; !slices.Equal(got, []string{"ClusterRole/ops-all"}) {
		t.Errorf("roleRef %v", got)
	}
}

func TestARequestFromAPodAddressIsAttributedToThatPod(t *testing.T) {
	pods := map[string]*event.Container{"10.244.0.33": {Pod: "scanner-5c4d3b2a1-zz9yx", Namespace: "tools", PodUID: "u-1", Workload: "Deployment/scanner"}}
	p, sink := newTestPipeline(t, func(ip string) (*event.Container, bool) { c, ok := pods[ip]; return c, ok })
	// A legacy (unbound) token: no pod name in the user's extra.
	line := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a-1","stage":"ResponseComplete","requestURI":"/api/v1/secrets","verb":"list","user":{"username":"system:serviceaccount:tools:scanner","groups":["system:serviceaccounts","system:serviceaccounts:tools","system:authenticated"]},"sourceIPs":["10.244.0.33"],"userAgent":"curl/8.5.0","objectRef":{"resource":"secrets","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-25T10:05:00Z","stageTimestamp":"2026-11-25T10:05:00.1Z"}`
	p.HandleLine([]byte(line))
	als := sink.byType("vigil.cluster/K8sSecretsAccessByServiceAccount")
	if len(als) != 1 {
		t.Fatalf("alerts %v", sink.writes)
	}
	en := als[0].Entities
	if en.Pod != "scanner-5c4d3b2a1-zz9yx" || en.Namespace != "tools" || en.Container == nil || en.Container.Workload != "Deployment/scanner" {
		t.Errorf("entities pod %s/%s container %+v", en.Namespace, en.Pod, en.Container)
	}
	if en.Node != "control-plane-1" {
		t.Errorf("node %q, want the collector's node for a request whose token names none", en.Node)
	}
}

func TestQueuedWebhookEventsAreJudgedBeforeThePipelineStops(t *testing.T) {
	p, sink := newTestPipeline(t, nil)
	evs, _, err := ParseEventList([]byte(eventList(3)), SourceWebhook)
	if err != nil {
		t.Fatal(err)
	}
	if n := p.Offer(evs); n != 3 {
		t.Fatalf("queued %d", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p.Run(ctx)
	als := sink.byType("vigil.cluster/K8sSelfSubjectReview")
	if len(als) != 2 || als[1].Count != 3 {
		t.Fatalf("writes %+v, want the alert and its final count 3", als)
	}
}

func TestASecondPrivilegedPodByTheSameUserIsAnAlertOfItsOwn(t *testing.T) {
	p, sink := newTestPipeline(t, nil)
	p.HandleLine([]byte(privPodLine))
	p.HandleLine([]byte(privPodLine)) // the same request again folds
	otherName := strings.ReplaceAll(privPodLine, `"name":"evil"`, `"name":"evil-2"`)
	otherNS := strings.ReplaceAll(strings.ReplaceAll(privPodLine, `"namespace":"default"`, `"namespace":"shop"`), "/namespaces/default/", "/namespaces/shop/")
	p.HandleLine([]byte(otherName))
	p.HandleLine([]byte(otherNS))
	p.Flush(true)
	ids := map[string]int{}
	for _, a := range sink.byType("vigil.cluster/K8sPrivilegedPodCreated") {
		ids[a.ID] = a.Count
	}
	if len(ids) != 3 {
		t.Fatalf("%d alerts (%v), want one per pod: evil (twice), evil-2, and evil in another namespace", len(ids), ids)
	}
	if !slices.Contains(slices.Collect(maps.Values(ids)), 2) {
		t.Errorf("the repeated request did not fold: counts %v", ids)
	}
}

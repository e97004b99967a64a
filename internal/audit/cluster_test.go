package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

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
// is used with curl's user agent to ask what it may do and to list secrets
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

	start := time.Now()
	a := c.RunAuditAttack(t, c.VigilImage(t))
	deadline := time.Now().Add(60 * time.Second)
	for {
		var got []string
		for _, al := range sink.snapshot() {
			if a.Ours(al.Entities.Namespace, al.Entities.Extra) {
				got = append(got, al.AlertType)
			}
		}
		missing := slices.DeleteFunc(slices.Clone(a.Want), func(w string) bool { return slices.Contains(got, w) })
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s the audit log raised %v for the test's namespace; missing %v", time.Since(start).Round(time.Second), got, missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, al := range sink.snapshot() {
		if slices.Contains(a.FromPod, al.AlertType) && a.Ours(al.Entities.Namespace, al.Entities.Extra) {
			if al.Entities.Pod != a.Pod || !slices.Equal(al.Entities.Extra["serviceAccount"], []string{a.Namespace + "/default"}) {
				t.Errorf("%s names pod %q and service account %v; want %s/%s and %s/default", al.AlertType, al.Entities.Pod, al.Entities.Extra["serviceAccount"], a.Namespace, a.Pod, a.Namespace)
			}
		}
	}
	// The cluster's own components were busy the whole time (scheduling,
	// kubelet status, controllers): none of their requests is an alert.
	for _, al := range sink.snapshot() {
		for _, u := range al.Entities.Extra["user"] {
			if kcluster.IsClusterComponent(u) {
				t.Errorf("the control plane's own request raised %s (user %s, %s %v)", al.AlertType, u, al.Entities.Extra["verb"], al.Entities.Extra["resource"])
			}
		}
	}
}

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
			if kcluster.IsClusterComponent(u) {
				t.Errorf("the cluster's own request raised %s (user %s, %v %v)", al.AlertType, u, al.Entities.Extra["verb"], al.Entities.Extra["resource"])
			}
		}
	}
}

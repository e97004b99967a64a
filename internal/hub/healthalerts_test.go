package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/seal"

	"github.com/vigil-sec/vigil/internal/store"
)

func TestLossesInAHealthReportBecomeOneAlertPerNodeThatFollowsTheCounter(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		var mu sync.Mutex
		var published []store.Alert
		e := newEnv(t, open, func(c *Config) {
			c.Sinks = []AlertSink{SinkFunc(func(a store.Alert) { mu.Lock(); published = append(published, a); mu.Unlock() })}
		})
		sensor := e.cluster("s1", "g1", "a")
		cid := clusterPath("s1", "g1", "a")
		report := func(node string, drops, outbox int) {
			t.Helper()
			e.must(204, "POST", "/ingest/v1/health", sensor, map[string]any{"clusterId": cid, "node": node, "sourceMode": "ebpf", "drops": drops, "outboxDropped": outbox})
		}
		list := func(typ string) []map[string]any {
			t.Helper()
			r := e.must(200, "GET", "/subscriptions/s1/providers/Vigil.Security/alerts", e.owner, nil)
			var out []map[string]any
			for _, v := range r.json(t)["value"].([]any) {
				a := v.(map[string]any)
				if a["properties"].(map[string]any)["alertType"] == typ {
					out = append(out, a["properties"].(map[string]any))
				}
			}
			return out
		}

		report("n1", 0, 0)
		if got := list(AlertEventsDropped); len(got) != 0 {
			t.Fatalf("a report without losses raised %v", got)
		}
		report("n1", 5, 0)
		report("n1", 12, 0)
		got := list(AlertEventsDropped)
		if len(got) != 1 {
			t.Fatalf("events-dropped alerts = %d, want one for node n1", len(got))
		}
		if c := got[0]["count"]; c != float64(12) {
			t.Errorf("count = %v, want 12 (the sensor's loss counter)", c)
		}
		if got[0]["severity"] != "Medium" {
			t.Errorf("severity = %v", got[0]["severity"])
		}
		report("n2", 1, 3)
		if got := list(AlertEventsDropped); len(got) != 2 {
			t.Errorf("events-dropped alerts after node n2 lost events = %d, want 2", len(got))
		}
		out := list(AlertAlertsDropped)
		if len(out) != 1 || out[0]["count"] != float64(3) || out[0]["severity"] != "High" {
			t.Fatalf("alerts-dropped = %v, want one High alert with count 3", out)
		}
		mu.Lock()
		n := len(published)
		mu.Unlock()
		if n < 3 {
			t.Errorf("%d health alerts reached the outputs, want every change published", n)
		}
		// Repeating the last report changes nothing and publishes nothing.
		report("n2", 1, 3)
		mu.Lock()
		defer mu.Unlock()
		if len(published) != n {
			t.Errorf("a repeated report published %d more alerts", len(published)-n)
		}
	})
}

func TestAnAuditCollectorsLossesAreItsOwnAlertAndItsHealthSitsBesideTheSensors(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := newEnv(t, open)
		token := e.cluster("s1", "g1", "a")
		cid := clusterPath("s1", "g1", "a")
		e.must(204, "POST", "/ingest/v1/health", token, map[string]any{"clusterId": cid, "node": "cp-1", "sourceMode": "ebpf"})
		e.must(204, "POST", "/ingest/v1/health", token, map[string]any{"clusterId": cid, "node": "cp-1", "sourceMode": "audit-webhook", "drops": 40, "outboxDropped": 2})
		r := e.must(200, "GET", "/subscriptions/s1/providers/Vigil.Security/alerts", e.owner, nil)
		types := map[string]map[string]any{}
		for _, v := range r.json(t)["value"].([]any) {
			p := v.(map[string]any)["properties"].(map[string]any)
			types[p["alertType"].(string)] = p
		}
		lost := types[AlertAuditEventsDropped]
		if lost == nil || lost["count"] != float64(40) || !strings.Contains(lost["description"].(string), "audit-webhook") {
			t.Fatalf("alerts %v, want %s with count 40 naming the source", slices.Collect(maps.Keys(types)), AlertAuditEventsDropped)
		}
		if types[AlertAuditAlertsDropped] == nil || types[AlertEventsDropped] != nil {
			t.Errorf("alerts %v, want %s and no sensor loss alert", slices.Collect(maps.Keys(types)), AlertAuditAlertsDropped)
		}
		hs, err := e.st.ListSensorHealth(t.Context(), store.ClusterRef{Subscription: "s1", ResourceGroup: "g1", Name: "a"})
		if err != nil {
			t.Fatal(err)
		}
		if len(hs) != 2 || hs[0].Component != store.ComponentAudit || hs[1].Component != store.ComponentSensor || hs[1].SourceMode != "ebpf" {
			t.Errorf("health of node cp-1 = %+v, want the audit collector's beside the sensor's", hs)
		}
		if r := e.do("POST", "/ingest/v1/health", token, map[string]any{"clusterId": cid, "node": "cp-1", "sourceMode": "syslog"}); r.code != 400 || !strings.Contains(string(r.body), "audit-log") {
			t.Errorf("an unknown source mode = %d %s, want 400 listing the accepted ones", r.code, r.body)
		}
	})
}

func TestAClusterOverItsIngestRateIsToldWhenToRetryAndOtherClustersAreNotSlowed(t *testing.T) {
	e := newEnv(t, openSQLite, func(c *Config) { c.IngestRate, c.IngestBurst = 1, 3 })
	busy := e.cluster("s1", "g1", "busy")
	calm := e.cluster("s1", "g1", "calm")
	for i := range 3 {
		e.must(200, "POST", "/ingest/v1/alerts", busy, batch("s1", "g1", "busy", testAlert(fmt.Sprintf("b%d", i))))
	}
	r := e.do("POST", "/ingest/v1/alerts", busy, batch("s1", "g1", "busy", testAlert("b3")))
	if r.code != 429 || r.errCode() != "TooManyRequests" || r.hdr.Get("Retry-After") == "" {
		t.Fatalf("4th batch within a second = %d %s (Retry-After %q), want 429 TooManyRequests with Retry-After", r.code, r.body, r.hdr.Get("Retry-After"))
	}
	if _, err := e.st.GetAlert(context.Background(), "b3"); err == nil {
		t.Fatal("a refused batch was stored")
	}
	e.must(200, "POST", "/ingest/v1/alerts", calm, batch("s1", "g1", "calm", testAlert("c0")))
	e.clock.Advance(2 * time.Second)
	e.must(200, "POST", "/ingest/v1/alerts", busy, batch("s1", "g1", "busy", testAlert("b3")))
}

func TestAnAgentRenewsItsCredentialAndTheOldOneWorksForTheGracePeriod(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := newEnv(t, open)
		e.cluster("s1", "g1", "c1")
		old := e.agent("s1", "g1", "c1")
		cid := clusterPath("s1", "g1", "c1")
		r := e.must(201, "POST", "/ingest/v1/renewToken", old, nil)
		body := r.json(t)
		secret, _ := body["token"].(string)
		if secret == "" || secret == old {
			t.Fatalf("renewal returned %s", r.body)
		}
		exp, err := time.Parse(time.RFC3339Nano, body["expiresAt"].(string))
		if err != nil || exp.Sub(e.clock.Now()) < 89*24*time.Hour {
			t.Errorf("new token expires %v (%v), want in 90 days", exp, err)
		}
		hb := map[string]any{"clusterId": cid, "agentVersion": "t"}
		e.must(204, "POST", "/ingest/v1/heartbeat", secret, hb)
		e.must(204, "POST", "/ingest/v1/heartbeat", old, hb) // grace
		e.clock.Advance(RenewGrace + time.Second)
		if r := e.do("POST", "/ingest/v1/heartbeat", old, hb); r.code != 401 {
			t.Errorf("the old credential after the grace period = %d %s, want 401", r.code, r.body)
		}
		e.must(204, "POST", "/ingest/v1/heartbeat", secret, hb)
		// The renewed token is bound to the same cluster only, and people
		// and sensors cannot use the renewal.
		e.cluster("s1", "g1", "c2")
		if r := e.do("POST", "/ingest/v1/heartbeat", secret, map[string]any{"clusterId": clusterPath("s1", "g1", "c2")}); r.code != 403 {
			t.Errorf("renewed token heartbeating for another cluster = %d", r.code)
		}
		sensor := e.cluster("s1", "g1", "c3")
		for _, tok := range []string{e.owner, sensor} {
			if r := e.do("POST", "/ingest/v1/renewToken", tok, nil); r.code != 403 {
				t.Errorf("renewal with a non-agent token = %d %s, want 403", r.code, r.body)
			}
		}
	})
}

func TestASensorExtensionCreatedWithoutATokenGetsItsOwnIngestToken(t *testing.T) {
	sealer, err := seal.NewFromKey(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, openSQLite, func(c *Config) { c.Sealer = sealer })
	e.must(201, "PUT", clusterPath("s1", "g1", "c1"), e.owner, map[string]any{})
	ext := clusterPath("s1", "g1", "c1") + "/providers/Vigil.KubernetesConfiguration/extensions/vigil-sensor"
	e.must(201, "PUT", ext, e.owner, map[string]any{"properties": map[string]any{"extensionType": "vigil.sensor"}})
	agent := e.agent("s1", "g1", "c1")
	var got struct {
		Properties struct {
			Settings map[string]string `json:"configurationProtectedSettings"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(e.must(200, "GET", ext, agent, nil).body, &got); err != nil {
		t.Fatal(err)
	}
	token := got.Properties.Settings[SensorTokenSetting]
	if token == "" {
		t.Fatalf("the agent sees no %s in the extension's protected settings: %+v", SensorTokenSetting, got)
	}
	// It is a working sensor token of this cluster.
	e.must(204, "POST", "/ingest/v1/health", token, map[string]any{"clusterId": clusterPath("s1", "g1", "c1"), "node": "n", "sourceMode": "ebpf"})
	// An update keeps it; a token given explicitly is kept as given.
	e.must(200, "PUT", ext, e.owner, map[string]any{"properties": map[string]any{"extensionType": "vigil.sensor", "configurationSettings": map[string]string{"logLevel": "debug"}}})
	if err := json.Unmarshal(e.must(200, "GET", ext, agent, nil).body, &got); err != nil || got.Properties.Settings[SensorTokenSetting] != token {
		t.Errorf("after an update the token is %q, want the one issued first", got.Properties.Settings[SensorTokenSetting])
	}
}

func TestAnAppliedExtensionIsDeletedOnlyOnceItsAgentRemovedIt(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := newEnv(t, open)
		e.cluster("s1", "g1", "c1")
		agent := e.agent("s1", "g1", "c1")
		cid := clusterPath("s1", "g1", "c1")
		ext := cid + "/providers/Vigil.KubernetesConfiguration/extensions/x"
		report := func(gen int, state string) resp {
			return e.do("POST", "/ingest/v1/extensionStatus", agent, map[string]any{"clusterId": cid, "name": "x", "generation": gen, "provisioningState": state})
		}
		// Never applied: deleted at once.
		e.must(201, "PUT", ext, e.owner, map[string]any{"properties": map[string]any{"extensionType": "vigil.audit"}})
		e.must(200, "DELETE", ext, e.owner, nil)
		e.must(404, "GET", ext, e.owner, nil)

		// Applied: Deleting until the agent confirms.
		e.must(201, "PUT", ext, e.owner, map[string]any{"properties": map[string]any{"extensionType": "vigil.audit"}})
		if r := report(1, "Succeeded"); r.code != 204 {
			t.Fatalf("report = %d %s", r.code, r.body)
		}
		r := e.must(202, "DELETE", ext, e.owner, nil)
		props := r.json(t)["properties"].(map[string]any)
		if props["provisioningState"] != "Deleting" || props["generation"] != float64(2) {
			t.Fatalf("DELETE of an applied extension = %s, want Deleting at generation 2", r.body)
		}
		e.must(202, "DELETE", ext, e.owner, nil) // again: still Deleting, same generation
		if got := e.must(200, "GET", ext, agent, nil).json(t)["properties"].(map[string]any); got["provisioningState"] != "Deleting" || got["generation"] != float64(2) {
			t.Fatalf("the agent reads %v, want Deleting at generation 2", got)
		}
		if r := report(1, "Deleted"); r.code != 409 {
			t.Errorf("Deleted for an old generation = %d, want 409", r.code)
		}
		if r := report(2, "Deleted"); r.code != 204 {
			t.Fatalf("Deleted = %d %s", r.code, r.body)
		}
		e.must(404, "GET", ext, e.owner, nil)
		if r := report(2, "Deleted"); r.code != 204 {
			t.Errorf("a repeated Deleted = %d, want 204", r.code)
		}
		// force deletes an applied extension at once (a cluster gone for good).
		e.must(201, "PUT", ext, e.owner, map[string]any{"properties": map[string]any{"extensionType": "vigil.audit"}})
		report(1, "Succeeded")
		e.must(200, "DELETE", ext+"?force=true", e.owner, nil)
		e.must(404, "GET", ext, e.owner, nil)
	})
}

func TestAnExtensionItsAgentDoesNotApplyFor48HoursGoesFailed(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := newEnv(t, open)
		e.cluster("s1", "g1", "c1")
		agent := e.agent("s1", "g1", "c1")
		cid := clusterPath("s1", "g1", "c1")
		base := cid + "/providers/Vigil.KubernetesConfiguration/extensions/"
		e.must(201, "PUT", base+"waiting", e.owner, map[string]any{"properties": map[string]any{"extensionType": "vigil.audit"}})
		e.must(201, "PUT", base+"applied", e.owner, map[string]any{"properties": map[string]any{"extensionType": "vigil.audit"}})
		e.must(204, "POST", "/ingest/v1/extensionStatus", agent, map[string]any{"clusterId": cid, "name": "applied", "generation": 1, "provisioningState": "Succeeded"})
		e.clock.Advance(47 * time.Hour)
		if _, _, err := e.srv.SweepOnce(t.Context()); err != nil {
			t.Fatal(err)
		}
		state := func(name string) (string, []any) {
			p := e.must(200, "GET", base+name, e.owner, nil).json(t)["properties"].(map[string]any)
			st, _ := p["statuses"].([]any)
			return p["provisioningState"].(string), st
		}
		if s, _ := state("waiting"); s != "Creating" {
			t.Fatalf("after 47 h the undelivered extension is %s, want still Creating", s)
		}
		e.clock.Advance(2 * time.Hour)
		if _, _, err := e.srv.SweepOnce(t.Context()); err != nil {
			t.Fatal(err)
		}
		s, st := state("waiting")
		if s != "Failed" || len(st) != 1 || st[0].(map[string]any)["code"] != "NotDelivered" {
			t.Fatalf("after 49 h the undelivered extension is %s %v, want Failed with a NotDelivered status", s, st)
		}
		if s, _ := state("applied"); s != "Succeeded" {
			t.Errorf("the applied extension is %s after the sweep, want Succeeded", s)
		}
		// Delivered late: the agent's report for the generation wins.
		e.must(204, "POST", "/ingest/v1/extensionStatus", agent, map[string]any{"clusterId": cid, "name": "waiting", "generation": 1, "provisioningState": "Succeeded"})
		if s, _ := state("waiting"); s != "Succeeded" {
			t.Errorf("after the agent applied it late the extension is %s, want Succeeded", s)
		}
	})
}

func TestAnAlertListsTheOtherAlertsAboutItsPodWithinMinutes(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := newEnv(t, open)
		sensor := e.cluster("s1", "g1", "c1")
		onPod := func(pod, start string) func(m map[string]any) {
			return func(m map[string]any) {
				m["startTime"], m["endTime"] = start, start
				m["entities"].(map[string]any)["pod"] = pod
			}
		}
		e.must(200, "POST", "/ingest/v1/alerts", sensor, batch("s1", "g1", "c1",
			testAlert("runtime", onPod("web-0", "2026-11-01T12:00:00Z")),
			testAlert("audit", onPod("web-0", "2026-11-01T12:04:00Z"), func(m map[string]any) { m["alertType"] = "vigil.cluster/K8sSelfSubjectReview" }),
			testAlert("other-pod", onPod("db-0", "2026-11-01T12:01:00Z")),
			testAlert("hours-later", onPod("web-0", "2026-11-01T15:00:00Z"))))
		get := func(id string) []string {
			var out struct {
				Properties struct {
					Related []struct{ Name, AlertType string } `json:"relatedAlerts"`
				} `json:"properties"`
			}
			if err := json.Unmarshal(e.must(200, "GET", "/subscriptions/s1/providers/Vigil.Security/alerts/"+id, e.owner, nil).body, &out); err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, r := range out.Properties.Related {
				names = append(names, r.Name)
			}
			return names
		}
		if got := get("runtime"); len(got) != 1 || got[0] != "audit" {
			t.Errorf("the runtime alert's related alerts = %v, want [audit]", got)
		}
		if got := get("audit"); len(got) != 1 || got[0] != "runtime" {
			t.Errorf("the audit alert's related alerts = %v, want [runtime]", got)
		}
		if got := get("hours-later"); len(got) != 0 {
			t.Errorf("an alert hours later lists %v as related", got)
		}
	})
}

func TestAClusterWhoseAgentCredentialExpiredIsExpired(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := newEnv(t, open)
		for _, name := range []string{"lapsed", "renewed"} {
			e.cluster("s1", "g1", name)
		}
		exp := e.clock.Now().Add(time.Hour).Format(time.RFC3339Nano)
		lapsed := e.token(map[string]any{"name": "agent-lapsed", "kind": "agent", "clusterId": clusterPath("s1", "g1", "lapsed"), "expiresAt": exp})
		renewed := e.token(map[string]any{"name": "agent-renewed", "kind": "agent", "clusterId": clusterPath("s1", "g1", "renewed"), "expiresAt": exp})
		for tok, name := range map[string]string{lapsed: "lapsed", renewed: "renewed"} {
			e.must(204, "POST", "/ingest/v1/heartbeat", tok, map[string]any{"clusterId": clusterPath("s1", "g1", name)})
		}
		fresh := e.must(201, "POST", "/ingest/v1/renewToken", renewed, nil).json(t)["token"].(string)
		e.clock.Advance(2 * time.Hour)
		e.must(204, "POST", "/ingest/v1/heartbeat", fresh, map[string]any{"clusterId": clusterPath("s1", "g1", "renewed")})
		if _, _, err := e.srv.SweepOnce(t.Context()); err != nil {
			t.Fatal(err)
		}
		status := func(name string) string {
			return e.must(200, "GET", clusterPath("s1", "g1", name), e.owner, nil).json(t)["properties"].(map[string]any)["connectivityStatus"].(string)
		}
		if got := status("lapsed"); got != "Expired" {
			t.Errorf("a cluster whose only agent credential expired is %s, want Expired", got)
		}
		if got := status("renewed"); got != "Connected" {
			t.Errorf("a cluster whose agent renewed its credential is %s, want Connected", got)
		}
	})
}

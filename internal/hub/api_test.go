package hub

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/seal"
	"github.com/vigil-sec/vigil/internal/store"
)

func TestResourceGroupsClustersAndExtensionsCanBeCreatedReadListedPatchedAndDeleted(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := newEnv(t, open)
		o := e.owner
		e.must(201, "PUT", "/subscriptions/s1/resourceGroups/g1?api-version="+APIVersion, o, map[string]any{"location": "eu", "tags": map[string]string{"a": "b"}})
		e.must(200, "PUT", "/subscriptions/s1/resourceGroups/g1", o, map[string]any{"location": "eu"})
		g := e.must(200, "GET", "/subscriptions/s1/resourceGroups/g1", o, nil).json(t)
		if g["id"] != "/subscriptions/s1/resourceGroups/g1" || g["location"] != "eu" {
			t.Fatalf("resource group: %v", g)
		}
		c := clusterPath("s1", "g1", "c1")
		r := e.must(201, "PUT", c, o, map[string]any{"location": "eu", "tags": map[string]string{"env": "prod"}, "properties": map[string]any{"distribution": "k3s"}}).json(t)
		props := r["properties"].(map[string]any)
		if r["id"] != c || r["type"] != "Vigil.Kubernetes/connectedClusters" || props["connectivityStatus"] != store.Connecting || props["distribution"] != "k3s" {
			t.Fatalf("cluster: %v", r)
		}
		// A GET body can be sent back as is (read-only properties are ignored).
		got := e.must(200, "GET", c, o, nil)
		e.must(200, "PUT", c, o, got.body)
		// A cluster in a new resource group creates the group on demand.
		e.must(201, "PUT", clusterPath("s1", "g2", "c2"), o, map[string]any{})
		e.must(200, "GET", "/subscriptions/s1/resourceGroups/g2", o, nil)
		if n := len(e.must(200, "GET", "/subscriptions/s1/resourceGroups", o, nil).json(t)["value"].([]any)); n != 2 {
			t.Fatalf("%d resource groups, want 2", n)
		}
		if n := len(e.must(200, "GET", "/subscriptions/s1/providers/Vigil.Kubernetes/connectedClusters", o, nil).json(t)["value"].([]any)); n != 2 {
			t.Fatalf("%d clusters in subscription, want 2", n)
		}
		if n := len(e.must(200, "GET", "/subscriptions/s1/resourceGroups/g1/providers/Vigil.Kubernetes/connectedClusters", o, nil).json(t)["value"].([]any)); n != 1 {
			t.Fatalf("%d clusters in g1, want 1", n)
		}
		p := e.must(200, "PATCH", c, o, map[string]any{"tags": map[string]string{"owner": "sre"}}).json(t)
		if tags := p["tags"].(map[string]any); len(tags) != 1 || tags["owner"] != "sre" {
			t.Fatalf("patched tags: %v", p["tags"])
		}
		ext := c + "/providers/Vigil.KubernetesConfiguration/extensions/vigil-sensor"
		x := e.must(201, "PUT", ext, o, map[string]any{"properties": map[string]any{"extensionType": "vigil.sensor", "version": "1", "configurationSettings": map[string]string{"k": "v"}}}).json(t)
		if x["properties"].(map[string]any)["provisioningState"] != store.ProvisioningCreating {
			t.Fatalf("extension: %v", x)
		}
		if r := e.do("PUT", ext, o, map[string]any{"properties": map[string]any{"extensionType": "vigil.audit"}}); r.code != 409 {
			t.Fatalf("changing the extension type = %d %s, want 409", r.code, r.body)
		}
		if n := len(e.must(200, "GET", c+"/providers/Vigil.KubernetesConfiguration/extensions", o, nil).json(t)["value"].([]any)); n != 1 {
			t.Fatalf("%d extensions", n)
		}
		if r := e.do("PUT", clusterPath("s1", "g1", "nope")+"/providers/Vigil.KubernetesConfiguration/extensions/x", o, map[string]any{"properties": map[string]any{"extensionType": "vigil.sensor"}}); r.code != 404 || !strings.Contains(string(r.body), "vigil connect") {
			t.Fatalf("extension on a missing cluster = %d %s", r.code, r.body)
		}
		if r := e.do("DELETE", "/subscriptions/s1/resourceGroups/g1", o, nil); r.code != 409 || r.errCode() != "ResourceGroupNotEmpty" {
			t.Fatalf("deleting a non-empty group = %d %s", r.code, r.body)
		}
		e.must(200, "DELETE", ext, o, nil)
		e.must(204, "DELETE", ext, o, nil)
		e.must(404, "GET", ext, o, nil)
		e.must(200, "DELETE", c, o, nil)
		r404 := e.must(404, "GET", c, o, nil)
		if r404.errCode() != "ResourceNotFound" || !strings.Contains(string(r404.body), "vigil cluster list") {
			t.Fatalf("404 does not say what to do: %s", r404.body)
		}
		e.must(200, "DELETE", "/subscriptions/s1/resourceGroups/g1", o, nil)
		e.must(404, "GET", "/subscriptions/s1/resourceGroups/g1", o, nil)
	})
}

func TestRequestsAreValidatedWithMessagesThatNameTheProblem(t *testing.T) {
	e := newEnv(t, openSQLite)
	c := clusterPath("s1", "g1", "c1")
	cases := []struct {
		name, method, path string
		body               any
		code               int
		want               string
	}{
		{"unknown api-version", "GET", "/subscriptions/s1/resourceGroups?api-version=2020-01-01", nil, 400, "api-version=" + APIVersion},
		{"unknown field", "PUT", c, `{"location":"x","tag":{}}`, 400, "unknown field"},
		{"wrong type", "PUT", c, `{"location":5}`, 400, "field location must be a string"},
		{"not JSON", "PUT", c, `{`, 400, "JSON"},
		{"trailing data", "PUT", c, `{}{}`, 400, "after the JSON object"},
		{"bad name", "PUT", clusterPath("s1", "g1", "-x"), `{}`, 400, "cluster name"},
		{"bad distribution", "PUT", c, `{"properties":{"distribution":"K 3 S"}}`, 400, "distribution"},
		{"unknown route", "GET", "/nope", nil, 404, "/openapi.json"},
		{"wrong method", "POST", c, `{}`, 405, "allowed"},
		{"extension without type", "PUT", c + "/providers/Vigil.KubernetesConfiguration/extensions/e", `{"properties":{}}`, 400, "extensionType is required"},
		{"bad plan tier", "PUT", "/subscriptions/s1/providers/Vigil.Security/pricings/Containers", `{"properties":{"pricingTier":"Gold"}}`, 400, "Standard"},
		{"bad plan component", "PUT", "/subscriptions/s1/providers/Vigil.Security/pricings/Containers", `{"properties":{"pricingTier":"Standard","components":{"x":true}}}`, 400, "runtimeDetection"},
		{"bad severity filter", "GET", "/subscriptions/s1/providers/Vigil.Security/alerts?severity=Critical", nil, 400, "Informational"},
		{"bad $top", "GET", "/subscriptions/s1/providers/Vigil.Security/alerts?$top=5000", nil, 400, "1 to 1000"},
		{"bad $skipToken", "GET", "/subscriptions/s1/providers/Vigil.Security/alerts?$skipToken=garbage", nil, 400, "without it"},
		{"bad since", "GET", "/subscriptions/s1/providers/Vigil.Security/alerts?since=yesterday", nil, 400, "RFC 3339"},
		{"suppression on unknown field", "PUT", "/subscriptions/s1/providers/Vigil.Security/alertsSuppressionRules/r", `{"properties":{"match":{"foo":"x"}}}`, 400, "entities.process.path"},
		{"suppression already expired", "PUT", "/subscriptions/s1/providers/Vigil.Security/alertsSuppressionRules/r", `{"properties":{"match":{"alertType":"x"},"expires":"2001-01-01T00:00:00Z"}}`, 400, "in the past"},
		{"bad output", "PUT", outputsPath + "/o", `{"properties":{"type":"webhook","config":{"url":"ftp://x"}}}`, 400, "http(s) URL"},
		{"token with bad role", "POST", tokensPath, `{"name":"x","role":"God","scope":"/"}`, 400, "Reader, Contributor or Owner"},
		{"token with bad scope", "POST", tokensPath, `{"name":"x","role":"Reader","scope":"/foo"}`, 400, "scope"},
		{"sensor token for a missing cluster", "POST", tokensPath, `{"name":"x","kind":"sensor","clusterId":"` + clusterPath("s1", "g1", "ghost") + `"}`, 404, "does not exist"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, e.owner, tc.body)
			if r.code != tc.code || !strings.Contains(string(r.body), tc.want) {
				t.Fatalf("%s %s = %d %s; want %d mentioning %q", tc.method, tc.path, r.code, r.body, tc.code, tc.want)
			}
			if !strings.HasPrefix(r.hdr.Get("Content-Type"), "application/json") || r.errCode() == "" {
				t.Fatalf("error is not ARM JSON: %s %s", r.hdr.Get("Content-Type"), r.body)
			}
		})
	}
}

func TestProtectedSettingsAreSealedAtRestAndOnlyTheClustersAgentReadsThem(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	sealer, err := seal.NewFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, openSQLite, func(c *Config) { c.Sealer = sealer })
	c := clusterPath("s1", "g1", "c1")
	e.must(201, "PUT", c, e.owner, map[string]any{})
	ext := c + "/providers/Vigil.KubernetesConfiguration/extensions/s"
	r := e.must(201, "PUT", ext, e.owner, map[string]any{"properties": map[string]any{"extensionType": "example.backup", "configurationProtectedSettings": map[string]string{"password": "hunter2-secret"}}})
	if bytes.Contains(r.body, []byte("hunter2")) {
		t.Fatalf("PUT response returns the protected setting: %s", r.body)
	}
	for _, path := range []string{ext, c + "/providers/Vigil.KubernetesConfiguration/extensions"} {
		if b := e.must(200, "GET", path, e.owner, nil).body; bytes.Contains(b, []byte("hunter2")) || bytes.Contains(b, []byte("password")) {
			t.Fatalf("GET %s returns protected settings: %s", path, b)
		}
	}
	stored, err := e.st.GetExtension(context.Background(), store.ClusterRef{Subscription: "s1", ResourceGroup: "g1", Name: "c1"}, "s")
	if err != nil {
		t.Fatal(err)
	}
	if len(stored.ProtectedSettings) == 0 || bytes.Contains(stored.ProtectedSettings, []byte("hunter2")) {
		t.Fatalf("stored protected settings are not sealed: %q", stored.ProtectedSettings)
	}
	if m, err := sealer.Open(stored.ProtectedSettings); err != nil || m["password"] != "hunter2-secret" {
		t.Fatalf("sealed blob does not open to the settings: %v %v", m, err)
	}
	// A GET-then-PUT round trip keeps the stored secret.
	e.must(200, "PUT", ext, e.owner, e.must(200, "GET", ext, e.owner, nil).body)
	again, _ := e.st.GetExtension(context.Background(), stored.Cluster, "s")
	if !bytes.Equal(again.ProtectedSettings, stored.ProtectedSettings) {
		t.Fatal("a PUT without protected settings wiped the stored ones")
	}
	// The agent of the extension's own cluster reads them (it must apply
	// them); an agent of another cluster and a sensor of this one do not.
	agent := e.agent("s1", "g1", "c1")
	for _, path := range []string{ext, c + "/providers/Vigil.KubernetesConfiguration/extensions"} {
		if b := e.must(200, "GET", path, agent, nil).body; !bytes.Contains(b, []byte(`"configurationProtectedSettings":{"password":"hunter2-secret"}`)) {
			t.Errorf("the cluster's own agent GET %s does not get the protected settings: %s", path, b)
		}
	}
	e.must(201, "PUT", clusterPath("s1", "g1", "c2"), e.owner, map[string]any{})
	other := e.agent("s1", "g1", "c2")
	if r := e.do("GET", ext, other, nil); r.code != 403 || bytes.Contains(r.body, []byte("hunter2")) {
		t.Errorf("another cluster's agent GET = %d %s, want 403 without the secret", r.code, r.body)
	}
	// Without a sealer the hub refuses protected settings instead of storing them in the clear.
	e2 := newEnv(t, openSQLite)
	e2.must(201, "PUT", c, e2.owner, map[string]any{})
	if r := e2.do("PUT", ext, e2.owner, map[string]any{"properties": map[string]any{"extensionType": "example.backup", "configurationProtectedSettings": map[string]string{"a": "b"}}}); r.code != 400 || r.errCode() != "ProtectedSettingsUnavailable" {
		t.Fatalf("protected settings without a sealer = %d %s", r.code, r.body)
	}
}

func TestThePlanIsOffUntilAnOwnerTurnsItOn(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := newEnv(t, open)
		p := "/subscriptions/s1/providers/Vigil.Security/pricings/Containers"
		if got := e.must(200, "GET", p, e.owner, nil).json(t)["properties"].(map[string]any); got["pricingTier"] != "Free" {
			t.Fatalf("default plan: %v", got)
		}
		contributor := e.userToken("Contributor", "/subscriptions/s1")
		if r := e.do("PUT", p, contributor, map[string]any{"properties": map[string]any{"pricingTier": "Standard"}}); r.code != 403 {
			t.Fatalf("contributor turned the plan on: %d", r.code)
		}
		got := e.must(200, "PUT", p, e.owner, map[string]any{"properties": map[string]any{"pricingTier": "Standard", "components": map[string]bool{"auditDetection": false}}}).json(t)["properties"].(map[string]any)
		comps := got["components"].(map[string]any)
		if got["pricingTier"] != "Standard" || comps["runtimeDetection"] != true || comps["auditDetection"] != false || got["updatedBy"] != "token/bootstrap" {
			t.Fatalf("plan after PUT: %v", got)
		}
		if e.must(200, "GET", p, contributor, nil).json(t)["properties"].(map[string]any)["pricingTier"] != "Standard" {
			t.Fatal("plan not stored")
		}
	})
}

func TestIngestingTheSameBatchTwiceStoresEachAlertOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		sink := &recordingSink{}
		e := newEnv(t, open, func(c *Config) { c.Sinks = []AlertSink{sink} })
		sensor := e.cluster("s1", "g1", "c1")
		b := batch("s1", "g1", "c1", testAlert("a1"), testAlert("a2"), testAlert("a3"))
		first := e.must(200, "POST", "/ingest/v1/alerts", sensor, b).json(t)
		if first["accepted"] != 3.0 || first["inserted"] != 3.0 {
			t.Fatalf("first delivery: %v", first)
		}
		second := e.must(200, "POST", "/ingest/v1/alerts", sensor, b).json(t)
		if second["accepted"] != 3.0 || second["inserted"] != 0.0 || second["unchanged"] != 3.0 {
			t.Fatalf("replay: %v", second)
		}
		list := e.must(200, "GET", "/subscriptions/s1/providers/Vigil.Security/alerts", e.owner, nil).json(t)["value"].([]any)
		if len(list) != 3 {
			t.Fatalf("%d alerts stored, want 3", len(list))
		}
		if got := len(sink.all()); got != 3 {
			t.Fatalf("sinks got %d alerts; the replay must publish nothing (want 3)", got)
		}
		// Aggregation: a later record of a1 with a higher count updates it.
		grown := testAlert("a1", func(m map[string]any) { m["count"] = 5; m["endTime"] = "2026-11-01T12:01:00Z" })
		r := e.must(200, "POST", "/ingest/v1/alerts", sensor, batch("s1", "g1", "c1", grown)).json(t)
		if r["updated"] != 1.0 {
			t.Fatalf("grown alert: %v", r)
		}
		a := e.must(200, "GET", "/subscriptions/s1/providers/Vigil.Security/alerts/a1", e.owner, nil).json(t)["properties"].(map[string]any)
		if a["count"] != 5.0 || a["resourceId"] != clusterPath("s1", "g1", "c1") || a["status"] != "Active" {
			t.Fatalf("a1 after update: %v", a)
		}
		// The same id twice in one batch is folded, not doubled.
		dup := e.must(200, "POST", "/ingest/v1/alerts", sensor, batch("s1", "g1", "c1", testAlert("d1"), testAlert("d1", func(m map[string]any) { m["count"] = 2 }))).json(t)
		if dup["accepted"] != 2.0 || dup["inserted"] != 1.0 {
			t.Fatalf("batch with a repeated id: %v", dup)
		}
		if got, _ := e.st.GetAlert(context.Background(), "d1"); got.Count != 2 {
			t.Fatalf("folded count = %d, want 2", got.Count)
		}
	})
}

type recordingSink struct {
	mu     sync.Mutex
	alerts []store.Alert
}

func (s *recordingSink) Publish(a store.Alert) {
	s.mu.Lock()
	s.alerts = append(s.alerts, a)
	s.mu.Unlock()
}

func (s *recordingSink) all() []store.Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]store.Alert(nil), s.alerts...)
}

func TestPagingThroughAlertsWithNextLinkVisitsEveryAlertOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := newEnv(t, open)
		sensor := e.cluster("s1", "g1", "c1")
		var alerts []map[string]any
		base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		for i := range 25 {
			sev := "Low"
			if i%5 == 0 {
				sev = "High"
			}
			end := base.Add(time.Duration(i) * time.Minute).Format(time.RFC3339)
			alerts = append(alerts, testAlert(fmt.Sprintf("p%02d", i), func(m map[string]any) { m["severity"] = sev; m["endTime"] = end; m["startTime"] = end }))
		}
		e.must(200, "POST", "/ingest/v1/alerts", sensor, batch("s1", "g1", "c1", alerts...))
		seen := map[string]bool{}
		next := "/subscriptions/s1/providers/Vigil.Security/alerts?$top=7&api-version=" + APIVersion
		pages := 0
		var prevEnd string
		for next != "" {
			page := e.must(200, "GET", next, e.owner, nil).json(t)
			pages++
			for _, v := range page["value"].([]any) {
				a := v.(map[string]any)
				name := a["name"].(string)
				if seen[name] {
					t.Fatalf("alert %s returned twice", name)
				}
				seen[name] = true
				end := a["properties"].(map[string]any)["endTime"].(string)
				if prevEnd != "" && end > prevEnd {
					t.Fatalf("not newest first: %s after %s", end, prevEnd)
				}
				prevEnd = end
			}
			next, _ = page["nextLink"].(string)
			if next != "" {
				u, err := url.Parse(next)
				if err != nil || u.Query().Get("$top") != "7" || u.Query().Get("$skipToken") == "" {
					t.Fatalf("nextLink %q does not keep the filters", next)
				}
			}
		}
		if len(seen) != 25 || pages != 4 {
			t.Fatalf("paged %d alerts in %d pages, want 25 in 4", len(seen), pages)
		}
		// Filters.
		high := e.must(200, "GET", "/subscriptions/s1/providers/Vigil.Security/alerts?severity=high", e.owner, nil).json(t)["value"].([]any)
		if len(high) != 5 {
			t.Fatalf("severity=high: %d alerts, want 5", len(high))
		}
		since := base.Add(20 * time.Minute).Format(time.RFC3339)
		if n := len(e.must(200, "GET", "/subscriptions/s1/providers/Vigil.Security/alerts?since="+since, e.owner, nil).json(t)["value"].([]any)); n != 5 {
			t.Fatalf("since: %d alerts, want 5", n)
		}
		if n := len(e.must(200, "GET", "/subscriptions/s1/providers/Vigil.Security/alerts?cluster="+url.QueryEscape(clusterPath("s1", "g1", "c1"))+"&status=Active", e.owner, nil).json(t)["value"].([]any)); n != 25 {
			t.Fatalf("cluster id filter: %d alerts", n)
		}
		if n := len(e.must(200, "GET", "/subscriptions/s1/providers/Vigil.Security/alerts?cluster=other", e.owner, nil).json(t)["value"].([]any)); n != 0 {
			t.Fatalf("cluster=other: %d alerts", n)
		}
		if n := len(e.must(200, "GET", "/subscriptions/s2/providers/Vigil.Security/alerts", e.owner, nil).json(t)["value"].([]any)); n != 0 {
			t.Fatalf("another subscription sees %d alerts", n)
		}
	})
}

func TestAlertStatusChangesRecordWhoAndWhen(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := newEnv(t, open)
		sensor := e.cluster("s1", "g1", "c1")
		e.must(200, "POST", "/ingest/v1/alerts", sensor, batch("s1", "g1", "c1", testAlert("x1")))
		a := "/subscriptions/s1/providers/Vigil.Security/alerts/x1"
		got := e.must(200, "PATCH", a, e.owner, map[string]any{"properties": map[string]string{"status": "Dismissed"}}).json(t)["properties"].(map[string]any)
		if got["status"] != "Dismissed" || got["statusChangedBy"] != "token/bootstrap" || got["statusChangedAt"] == nil {
			t.Fatalf("after PATCH: %v", got)
		}
		// A replay of the alert does not reopen it.
		e.must(200, "POST", "/ingest/v1/alerts", sensor, batch("s1", "g1", "c1", testAlert("x1")))
		if s := e.must(200, "GET", a, e.owner, nil).json(t)["properties"].(map[string]any)["status"]; s != "Dismissed" {
			t.Fatalf("replay reopened the alert: %v", s)
		}
		c := e.userToken("Contributor", clusterPath("s1", "g1", "c1"))
		got = e.must(200, "POST", a+"/resolve", c, nil).json(t)["properties"].(map[string]any)
		if got["status"] != "Resolved" || got["statusChangedBy"] != "token/Contributor@"+clusterPath("s1", "g1", "c1") {
			t.Fatalf("after resolve: %v", got)
		}
		e.must(200, "POST", a+"/activate", e.owner, nil)
		e.must(404, "POST", a+"/explode", e.owner, nil)
		e.must(400, "PATCH", a, e.owner, map[string]any{"properties": map[string]string{"status": "Gone"}})
		e.must(404, "GET", "/subscriptions/s2/providers/Vigil.Security/alerts/x1", e.owner, nil)
		e.must(404, "GET", "/subscriptions/s1/providers/Vigil.Security/alerts/none", e.owner, nil)
	})
}

func TestSuppressionRulesDismissMatchingAlertsOnIngestUntilTheyExpire(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		sink := &recordingSink{}
		e := newEnv(t, open)
		e.srv.AddSink(sink) // subscribed after start, as the portal does
		sensor := e.cluster("s1", "g1", "c1")
		ci := func(m map[string]any) { m["entities"].(map[string]any)["namespace"] = "ci" }
		e.must(200, "POST", "/ingest/v1/alerts", sensor, batch("s1", "g1", "c1", testAlert("old-ci", ci), testAlert("old-web")))
		rule := "/subscriptions/s1/providers/Vigil.Security/alertsSuppressionRules/ci-tests"
		body := map[string]any{"properties": map[string]any{"match": map[string]string{"alertType": "vigil.node/TestAlert", "entities.namespace": "ci"},
			"reason": "CI runs the test alert", "expires": e.clock.Now().Add(time.Hour).Format(time.RFC3339)}}
		pv := e.must(200, "POST", rule+"/preview", e.owner, body).json(t)
		if pv["matchingAlerts"] != 1.0 || pv["activeMatchingAlerts"] != 1.0 {
			t.Fatalf("preview: %v", pv)
		}
		if r := e.do("GET", rule, e.owner, nil); r.code != 404 {
			t.Fatalf("preview stored the rule: %d", r.code)
		}
		reader := e.userToken("Reader", "/subscriptions/s1")
		e.must(403, "PUT", rule, reader, body)
		e.must(201, "PUT", rule, e.owner, body)
		got := e.must(200, "GET", rule, reader, nil).json(t)["properties"].(map[string]any)
		if got["state"] != "Enabled" || got["createdBy"] != "token/bootstrap" {
			t.Fatalf("rule: %v", got)
		}
		before := len(sink.all())
		e.must(200, "POST", "/ingest/v1/alerts", sensor, batch("s1", "g1", "c1", testAlert("new-ci", ci), testAlert("new-web")))
		a := e.must(200, "GET", "/subscriptions/s1/providers/Vigil.Security/alerts/new-ci", e.owner, nil).json(t)["properties"].(map[string]any)
		if a["status"] != "Dismissed" || a["statusChangedBy"] != "suppression/ci-tests" {
			t.Fatalf("matching alert not suppressed: %v", a)
		}
		if s := e.must(200, "GET", "/subscriptions/s1/providers/Vigil.Security/alerts/new-web", e.owner, nil).json(t)["properties"].(map[string]any)["status"]; s != "Active" {
			t.Fatalf("non-matching alert status %v", s)
		}
		if s := e.must(200, "GET", "/subscriptions/s1/providers/Vigil.Security/alerts/old-ci", e.owner, nil).json(t)["properties"].(map[string]any)["status"]; s != "Active" {
			t.Fatalf("a rule changed an alert ingested before it: %v", s)
		}
		published := map[string]bool{}
		for _, a := range sink.all()[before:] {
			published[a.ID] = true
		}
		if published["new-ci"] || !published["new-web"] {
			t.Fatalf("published %v: want new-web and not the suppressed new-ci", published)
		}
		// Expired rules no longer apply.
		e.clock.Advance(2 * time.Hour)
		if st := e.must(200, "GET", rule, e.owner, nil).json(t)["properties"].(map[string]any)["state"]; st != "Expired" {
			t.Fatalf("state after expiry: %v", st)
		}
		e.must(200, "POST", "/ingest/v1/alerts", sensor, batch("s1", "g1", "c1", testAlert("late-ci", ci)))
		if s := e.must(200, "GET", "/subscriptions/s1/providers/Vigil.Security/alerts/late-ci", e.owner, nil).json(t)["properties"].(map[string]any)["status"]; s != "Active" {
			t.Fatalf("an expired rule suppressed an alert: %v", s)
		}
		if n := len(e.must(200, "GET", "/subscriptions/s1/providers/Vigil.Security/alertsSuppressionRules", e.owner, nil).json(t)["value"].([]any)); n != 1 {
			t.Fatalf("%d rules listed", n)
		}
		e.must(200, "DELETE", rule, e.owner, nil)
		e.must(204, "DELETE", rule, e.owner, nil)
	})
}

func gz(t testing.TB, v any) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(v); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	return buf.Bytes()
}

func TestIngestRejectsBadBatchesWithTheFieldAndIndexAndAcceptsGzip(t *testing.T) {
	e := newEnv(t, openSQLite, func(c *Config) { c.MaxBatchBytes = 64 << 10; c.MaxBatchAlerts = 10 })
	sensor := e.cluster("s1", "g1", "c1")
	ok := testAlert("ok")
	cases := []struct {
		name string
		body any
		hdr  []string
		code int
		want string
	}{
		{"not JSON", `{"cluster":`, nil, 400, "JSON"},
		{"empty", ``, nil, 400, "empty"},
		{"null", `null`, nil, 400, "null"},
		{"no cluster", map[string]any{"alerts": []any{}}, nil, 400, "cluster is required"},
		{"bad cluster id", map[string]any{"cluster": "/subscriptions/s1", "alerts": []any{}}, nil, 400, "not a connected cluster id"},
		{"no alerts field", map[string]any{"cluster": clusterPath("s1", "g1", "c1")}, nil, 400, "alerts is required"},
		{"wrong type in alert 1", batch("s1", "g1", "c1", ok, testAlert("b", func(m map[string]any) { m["count"] = "many" })), nil, 400, "alerts[1]: field count must be"},
		{"bad severity in alert 0", batch("s1", "g1", "c1", testAlert("b", func(m map[string]any) { m["severity"] = "Critical" })), nil, 400, "alerts[0]: field severity"},
		{"missing id", batch("s1", "g1", "c1", ok, ok, testAlert("")), nil, 400, "alerts[2]: field id"},
		{"slash in id", batch("s1", "g1", "c1", testAlert("a/b")), nil, 400, "alerts[0]: field id"},
		{"end before start", batch("s1", "g1", "c1", testAlert("b", func(m map[string]any) { m["endTime"] = "2026-01-01T00:00:00Z" })), nil, 400, "before startTime"},
		{"zero count", batch("s1", "g1", "c1", testAlert("b", func(m map[string]any) { m["count"] = 0 })), nil, 400, "count is 0"},
		{"bad time", batch("s1", "g1", "c1", testAlert("b", func(m map[string]any) { m["startTime"] = "noon" })), nil, 400, "alerts[0]"},
		{"trailing data", `{"cluster":"` + clusterPath("s1", "g1", "c1") + `","alerts":[]} x`, nil, 400, "after the JSON value"},
		{"too many alerts", batch("s1", "g1", "c1", ok, ok, ok, ok, ok, ok, ok, ok, ok, ok, ok), nil, 413, "at most 10"},
		{"too many bytes", batch("s1", "g1", "c1", testAlert("big", func(m map[string]any) { m["description"] = strings.Repeat("x", 70<<10) })), nil, 413, "split"},
		{"gzip bomb", gz(t, batch("s1", "g1", "c1", testAlert("big", func(m map[string]any) { m["description"] = strings.Repeat("x", 200<<10) }))), []string{"Content-Encoding", "gzip"}, 413, "split"},
		{"not gzip", []byte("plain"), []string{"Content-Encoding", "gzip"}, 400, "gzip"},
		{"wrong content type", `{}`, []string{"Content-Type", "text/plain"}, 415, "application/json"},
		{"gzip accepted", gz(t, batch("s1", "g1", "c1", testAlert("gz1"))), []string{"Content-Encoding", "gzip"}, 200, `"inserted":1`},
		{"unknown fields tolerated", batch("s1", "g1", "c1", testAlert("new1", func(m map[string]any) { m["futureField"] = 1 })), nil, 200, `"inserted":1`},
		{"empty batch", batch("s1", "g1", "c1"), nil, 200, `"accepted":0`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", "/ingest/v1/alerts", sensor, tc.body, tc.hdr...)
			if r.code != tc.code || !strings.Contains(string(r.body), tc.want) {
				t.Fatalf("= %d %s; want %d mentioning %q", r.code, r.body, tc.code, tc.want)
			}
		})
	}
}

func TestSensorTokensMayOnlyIngestForTheirOwnCluster(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := newEnv(t, open)
		sensorA := e.cluster("s1", "g1", "a")
		e.cluster("s1", "g1", "b")
		r := e.do("POST", "/ingest/v1/alerts", sensorA, batch("s1", "g1", "b", testAlert("forged")))
		if r.code != 403 || !strings.Contains(string(r.body), "bound to cluster") {
			t.Fatalf("cross-cluster ingest = %d %s, want 403", r.code, r.body)
		}
		if _, err := e.st.GetAlert(context.Background(), "forged"); err == nil {
			t.Fatal("the forged alert was stored")
		}
		r = e.do("POST", "/ingest/v1/health", sensorA, map[string]any{"clusterId": clusterPath("s1", "g1", "b"), "node": "n", "sourceMode": "ebpf"})
		if r.code != 403 {
			t.Fatalf("cross-cluster health = %d", r.code)
		}
		e.must(204, "POST", "/ingest/v1/health", sensorA, map[string]any{"clusterId": clusterPath("s1", "g1", "a"), "node": "n", "sourceMode": "proc", "missing": []string{"network"}})
		h, err := e.st.ListSensorHealth(context.Background(), store.ClusterRef{Subscription: "s1", ResourceGroup: "g1", Name: "a"})
		if err != nil || len(h) != 1 || h[0].SourceMode != "proc" {
			t.Fatalf("health stored: %+v %v", h, err)
		}
		// A sensor token can read nothing and touch nothing in the control plane.
		for _, rq := range []struct{ method, path string }{
			{"GET", "/subscriptions/s1/providers/Vigil.Security/alerts"},
			{"GET", "/subscriptions/s1/providers/Vigil.Security/alerts/forged"},
			{"GET", clusterPath("s1", "g1", "a")},
			{"GET", clusterPath("s1", "g1", "a") + "/providers/Vigil.KubernetesConfiguration/extensions"},
			{"PUT", clusterPath("s1", "g1", "a")},
			{"DELETE", clusterPath("s1", "g1", "a")},
			{"GET", "/subscriptions/s1/resourceGroups"},
			{"GET", tokensPath},
			{"POST", tokensPath},
			{"GET", outputsPath},
			{"POST", "/ingest/v1/extensionStatus"},
		} {
			if r := e.do(rq.method, rq.path, sensorA, map[string]any{}); r.code != 403 {
				t.Errorf("sensor %s %s = %d %s, want 403", rq.method, rq.path, r.code, r.body)
			}
		}
		// Users cannot ingest, not even the Owner of everything.
		if r := e.do("POST", "/ingest/v1/alerts", e.owner, batch("s1", "g1", "a", testAlert("u"))); r.code != 403 {
			t.Fatalf("owner ingest = %d", r.code)
		}
		// Deleting the cluster deletes its sensor token.
		e.must(200, "DELETE", clusterPath("s1", "g1", "a"), e.owner, nil)
		if r := e.do("POST", "/ingest/v1/alerts", sensorA, batch("s1", "g1", "a")); r.code != 401 {
			t.Fatalf("ingest with the deleted cluster's token = %d", r.code)
		}
	})
}

func TestAgentsHeartbeatReadTheirDesiredExtensionsAndReportStatus(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := newEnv(t, open)
		e.cluster("s1", "g1", "a")
		e.cluster("s1", "g1", "b")
		agent := e.agent("s1", "g1", "a")
		ca, cb := clusterPath("s1", "g1", "a"), clusterPath("s1", "g1", "b")
		e.must(201, "PUT", ca+"/providers/Vigil.KubernetesConfiguration/extensions/vigil-sensor", e.owner, map[string]any{"properties": map[string]any{"extensionType": "vigil.sensor"}})
		e.must(201, "PUT", cb+"/providers/Vigil.KubernetesConfiguration/extensions/vigil-sensor", e.owner, map[string]any{"properties": map[string]any{"extensionType": "vigil.sensor"}})
		e.must(204, "POST", "/ingest/v1/heartbeat", agent, map[string]any{"clusterId": ca, "agentVersion": "1.2.3", "kubernetesVersion": "v1.31", "nodeCount": 3})
		c := e.must(200, "GET", ca, e.owner, nil).json(t)["properties"].(map[string]any)
		if c["connectivityStatus"] != store.Connected || c["agentVersion"] != "1.2.3" || c["totalNodeCount"] != 3.0 || c["lastConnectivityTime"] == nil {
			t.Fatalf("cluster after heartbeat: %v", c)
		}
		list := e.must(200, "GET", ca+"/providers/Vigil.KubernetesConfiguration/extensions", agent, nil).json(t)["value"].([]any)
		if len(list) != 1 {
			t.Fatalf("agent sees %d extensions", len(list))
		}
		gen := list[0].(map[string]any)["properties"].(map[string]any)["generation"].(float64)
		e.must(204, "POST", "/ingest/v1/extensionStatus", agent, map[string]any{"clusterId": ca, "name": "vigil-sensor", "generation": gen, "provisioningState": "Succeeded",
			"statuses": []map[string]any{{"code": "Applied", "level": "Information", "time": "2026-11-01T00:00:00Z"}}})
		x := e.must(200, "GET", ca+"/providers/Vigil.KubernetesConfiguration/extensions/vigil-sensor", e.owner, nil).json(t)["properties"].(map[string]any)
		if x["provisioningState"] != "Succeeded" || x["appliedGeneration"] != gen {
			t.Fatalf("extension after report: %v", x)
		}
		for _, rq := range []struct {
			method, path string
			body         any
		}{
			{"GET", cb + "/providers/Vigil.KubernetesConfiguration/extensions", nil},
			{"GET", ca, nil},
			{"PUT", ca + "/providers/Vigil.KubernetesConfiguration/extensions/x", map[string]any{"properties": map[string]any{"extensionType": "vigil.sensor"}}},
			{"POST", "/ingest/v1/heartbeat", map[string]any{"clusterId": cb}},
			{"POST", "/ingest/v1/extensionStatus", map[string]any{"clusterId": cb, "name": "vigil-sensor", "generation": 1, "provisioningState": "Succeeded"}},
			{"POST", "/ingest/v1/alerts", batch("s1", "g1", "a")},
			{"GET", "/subscriptions/s1/providers/Vigil.Security/alerts", nil},
		} {
			if r := e.do(rq.method, rq.path, agent, rq.body); r.code != 403 {
				t.Errorf("agent %s %s = %d %s, want 403", rq.method, rq.path, r.code, r.body)
			}
		}
	})
}

func TestTokensAreRefusedWhenMissingMalformedUnknownRevokedOrExpired(t *testing.T) {
	e := newEnv(t, openSQLite)
	path := "/subscriptions/s1/resourceGroups"
	reader := e.userToken("Reader", "/")
	e.must(200, "GET", path, reader, nil)
	expiring := e.token(map[string]any{"name": "short", "role": "Reader", "scope": "/", "expiresAt": e.clock.Now().Add(time.Minute).Format(time.RFC3339Nano)})
	e.must(200, "GET", path, expiring, nil)
	unknown := "vgl_" + strings.Repeat("A", 43)
	for name, tok := range map[string]string{"none": "", "malformed": "letmein", "unknown": unknown} {
		r := e.do("GET", path, tok, nil)
		if r.code != 401 || r.hdr.Get("WWW-Authenticate") == "" || r.errCode() != "AuthenticationFailed" {
			t.Errorf("%s token = %d %s %q", name, r.code, r.body, r.hdr.Get("WWW-Authenticate"))
		}
	}
	// Revoke through the API: listed as Revoked, refused from then on.
	var id string
	for _, v := range e.must(200, "GET", tokensPath, e.owner, nil).json(t)["value"].([]any) {
		tk := v.(map[string]any)
		if strings.Contains(string(mustJSON(tk)), "vgl_") {
			t.Fatalf("token list shows a secret: %v", tk)
		}
		if tk["properties"].(map[string]any)["displayName"] == "Reader@/" {
			id = tk["name"].(string)
		}
	}
	rv := e.must(200, "DELETE", tokensPath+"/"+id, e.owner, nil).json(t)
	if rv["properties"].(map[string]any)["state"] != "Revoked" {
		t.Fatalf("revoked token: %v", rv)
	}
	if r := e.do("GET", path, reader, nil); r.code != 401 || !strings.Contains(string(r.body), "revoked") {
		t.Fatalf("revoked token = %d %s", r.code, r.body)
	}
	e.must(404, "DELETE", tokensPath+"/tok-nope", e.owner, nil)
	e.clock.Advance(2 * time.Minute)
	if r := e.do("GET", path, expiring, nil); r.code != 401 || !strings.Contains(string(r.body), "expired") {
		t.Fatalf("expired token = %d %s", r.code, r.body)
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func TestOwnersManageTokensOnlyWithinTheirScope(t *testing.T) {
	e := newEnv(t, openSQLite)
	e.cluster("s1", "g1", "c1")
	e.cluster("s2", "g1", "c9")
	subOwner := e.userToken("Owner", "/subscriptions/s1")
	contributor := e.userToken("Contributor", "/")
	e.must(403, "POST", tokensPath, contributor, map[string]any{"name": "x", "role": "Reader", "scope": "/subscriptions/s1"})
	e.must(403, "GET", tokensPath, contributor, nil)
	e.must(201, "POST", tokensPath, subOwner, map[string]any{"name": "r1", "role": "Reader", "scope": "/subscriptions/s1/resourceGroups/g1"})
	e.must(201, "POST", tokensPath, subOwner, map[string]any{"name": "sensor", "kind": "sensor", "clusterId": clusterPath("s1", "g1", "c1")})
	e.must(403, "POST", tokensPath, subOwner, map[string]any{"name": "r2", "role": "Reader", "scope": "/subscriptions/s2"})
	e.must(403, "POST", tokensPath, subOwner, map[string]any{"name": "root", "role": "Owner", "scope": "/"})
	e.must(403, "POST", tokensPath, subOwner, map[string]any{"name": "s9", "kind": "sensor", "clusterId": clusterPath("s2", "g1", "c9")})
	var names []string
	for _, v := range e.must(200, "GET", tokensPath, subOwner, nil).json(t)["value"].([]any) {
		names = append(names, v.(map[string]any)["properties"].(map[string]any)["displayName"].(string))
	}
	for _, n := range names {
		if n == "bootstrap" || n == "sensor-c9" || n == "Contributor@/" {
			t.Fatalf("subscription owner sees token %q outside its scope: %v", n, names)
		}
	}
	if len(names) != 4 { // sensor-c1, Owner@/subscriptions/s1, r1, sensor
		t.Fatalf("subscription owner sees %v", names)
	}
}

func TestConnectivitySweepMarksSilentClustersOfflineThenExpired(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := newEnv(t, open, func(c *Config) {
			c.OfflineAfter, c.ExpireAfter, c.SweepEvery = 5*time.Minute, 24*time.Hour, 50*time.Millisecond
		})
		e.cluster("s1", "g1", "live")
		e.cluster("s1", "g1", "silent")
		live, silent := e.agent("s1", "g1", "live"), e.agent("s1", "g1", "silent")
		beat := func(tok, name string) {
			e.must(204, "POST", "/ingest/v1/heartbeat", tok, map[string]any{"clusterId": clusterPath("s1", "g1", name), "nodeCount": 1})
		}
		status := func(name string) string {
			return e.must(200, "GET", clusterPath("s1", "g1", name), e.owner, nil).json(t)["properties"].(map[string]any)["connectivityStatus"].(string)
		}
		beat(live, "live")
		beat(silent, "silent")
		ctx := context.Background()
		if n, ran, err := e.srv.SweepOnce(ctx); err != nil || !ran || n != 0 {
			t.Fatalf("first sweep: %d %v %v", n, ran, err)
		}
		e.clock.Advance(4 * time.Minute)
		beat(live, "live")
		e.clock.Advance(2 * time.Minute)
		if n, _, err := e.srv.SweepOnce(ctx); err != nil || n != 1 {
			t.Fatalf("sweep after 6 min: changed %d, %v; want 1", n, err)
		}
		if status("silent") != store.Offline || status("live") != store.Connected {
			t.Fatalf("after 6 min: silent %s, live %s", status("silent"), status("live"))
		}
		e.clock.Advance(25 * time.Hour)
		if _, _, err := e.srv.SweepOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if status("silent") != store.Expired {
			t.Fatalf("after a day: silent %s", status("silent"))
		}
		// A heartbeat brings it back.
		beat(silent, "silent")
		if status("silent") != store.Connected {
			t.Fatalf("after a heartbeat: %s", status("silent"))
		}
		// Run sweeps in the background, every SweepEvery, until cancelled.
		e.clock.Advance(10 * time.Minute)
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- e.srv.Run(runCtx) }()
		deadline := time.Now().Add(10 * time.Second)
		for status("silent") != store.Offline {
			if time.Now().After(deadline) {
				t.Fatalf("Run did not sweep: silent is %s 10 minutes after its heartbeat", status("silent"))
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not stop when its context ended")
		}
	})
}

func TestRecommendationsNameWhatToFix(t *testing.T) {
	e := newEnv(t, openSQLite)
	e.cluster("s1", "g1", "bare")
	e.cluster("s1", "g1", "ok")
	e.cluster("s1", "g1", "standalone")
	e.must(200, "PUT", clusterPath("s1", "g1", "standalone"), e.owner, map[string]any{"properties": map[string]any{"distribution": "standalone"}})
	e.must(201, "PUT", clusterPath("s1", "g1", "ok")+"/providers/Vigil.KubernetesConfiguration/extensions/vigil-sensor", e.owner, map[string]any{"properties": map[string]any{"extensionType": "vigil.sensor"}})
	// An audit collector is no sensor without eBPF.
	e.must(204, "POST", "/ingest/v1/health", e.cluster("s1", "g1", "ok"), map[string]any{"clusterId": clusterPath("s1", "g1", "ok"), "node": "cp-1", "sourceMode": "audit-log"})
	recs := func(tok string) map[string]string {
		out := map[string]string{}
		for _, v := range e.must(200, "GET", "/subscriptions/s1/providers/Vigil.Security/recommendations", tok, nil).json(t)["value"].([]any) {
			p := v.(map[string]any)["properties"].(map[string]any)
			out[p["displayName"].(string)+" "+p["resourceId"].(string)] = p["remediation"].(string)
		}
		return out
	}
	got := recs(e.owner)
	want := []string{
		"Enable the Containers plan /subscriptions/s1/providers/Vigil.Security/pricings/Containers",
		"Connected clusters should have the vigil sensor extension installed " + clusterPath("s1", "g1", "bare"),
	}
	for _, w := range want {
		if got[w] == "" {
			t.Fatalf("missing recommendation %q in %v", w, got)
		}
	}
	if len(got) != 2 {
		t.Fatalf("unexpected recommendations: %v", got)
	}
	if !strings.Contains(got[want[1]], "vigil extension create --cluster-name bare") {
		t.Fatalf("remediation: %s", got[want[1]])
	}
	// A reader scoped to one cluster sees only that cluster's recommendations.
	scoped := recs(e.userToken("Reader", clusterPath("s1", "g1", "ok")))
	if len(scoped) != 0 {
		t.Fatalf("cluster-scoped reader sees %v", scoped)
	}
}

func TestOutputsAreManagedByOwnersAndReloadTheDispatcher(t *testing.T) {
	var mu sync.Mutex
	var changes [][]store.Output
	e := newEnv(t, openSQLite, func(c *Config) {
		c.OutputsChanged = func(os []store.Output) { mu.Lock(); changes = append(changes, os); mu.Unlock() }
	})
	o := outputsPath + "/sidekick"
	body := map[string]any{"properties": map[string]any{"type": "webhook", "minSeverity": "medium", "config": map[string]string{"url": "http://127.0.0.1:1/", "format": "falco"}}}
	subOwner := e.userToken("Owner", "/subscriptions/s1")
	e.must(403, "PUT", o, subOwner, body)
	got := e.must(201, "PUT", o, e.owner, body).json(t)["properties"].(map[string]any)
	if got["minSeverity"] != "Medium" || got["enabled"] != true {
		t.Fatalf("output: %v", got)
	}
	e.must(200, "GET", o, e.owner, nil)
	if n := len(e.must(200, "GET", outputsPath, e.owner, nil).json(t)["value"].([]any)); n != 1 {
		t.Fatalf("%d outputs", n)
	}
	e.must(200, "DELETE", o, e.owner, nil)
	e.must(404, "GET", o, e.owner, nil)
	mu.Lock()
	defer mu.Unlock()
	if len(changes) != 2 || len(changes[0]) != 1 || changes[0][0].Config["format"] != "falco" || len(changes[1]) != 0 {
		t.Fatalf("OutputsChanged calls: %+v; want the one output, then none", changes)
	}
}

func TestHealthReadinessAndMetricsAreServed(t *testing.T) {
	e := newEnv(t, openSQLite)
	e.must(200, "GET", "/healthz", "", nil)
	e.must(200, "GET", "/readyz", "", nil)
	sensor := e.cluster("s1", "g1", "c1")
	e.must(200, "POST", "/ingest/v1/alerts", sensor, batch("s1", "g1", "c1", testAlert("m1"), testAlert("m2")))
	e.must(200, "POST", "/ingest/v1/alerts", sensor, batch("s1", "g1", "c1", testAlert("m1")))
	body := string(e.must(200, "GET", "/metrics", "", nil).body)
	for _, want := range []string{
		`vigil_hub_ingest_alerts_total{result="inserted"} 2`,
		`vigil_hub_ingest_alerts_total{result="unchanged"} 1`,
		`vigil_hub_ingest_batches_total{outcome="committed"} 2`,
		`vigil_hub_http_requests_total{code="200",route="POST /ingest/v1/alerts"} 2`,
		`vigil_hub_http_request_duration_seconds_bucket{route="POST /ingest/v1/alerts"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// /readyz fails when the database is gone.
	_ = e.st.Close()
	if r := e.do("GET", "/readyz", "", nil); r.code != 503 || !strings.Contains(string(r.body), "database") {
		t.Fatalf("readyz with a closed store = %d %s", r.code, r.body)
	}
}

func TestAlertsCarryingNULCharactersAreStoredNotRefused(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := newEnv(t, open)
		sensor := e.cluster("s1", "g1", "c1")
		body := []byte(`{"cluster":"` + clusterPath("s1", "g1", "c1") + `","alerts":[{"id":"nul1","alertType":"t","severity":"High","startTime":"2026-11-01T00:00:00Z","endTime":"2026-11-01T00:00:00Z","count":1,"entities":{"process":{"commandLine":"a\u0000b","uid":0}}}]}`)
		e.must(200, "POST", "/ingest/v1/alerts", sensor, body)
		got := e.must(200, "GET", "/subscriptions/s1/providers/Vigil.Security/alerts/nul1", e.owner, nil).json(t)
		cmd := got["properties"].(map[string]any)["entities"].(map[string]any)["process"].(map[string]any)["commandLine"]
		if cmd != "a\ufffdb" {
			t.Fatalf("command line stored as %q", cmd)
		}
		if r := e.do("PUT", clusterPath("s1", "g1", "c1"), e.owner, `{"location":"a\u0000"}`); r.code != 400 {
			t.Fatalf("NUL in a management body = %d %s", r.code, r.body)
		}
	})
}

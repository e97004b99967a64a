package hub

import (
	"sort"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/store"
)

// TestEveryRoleScopeAndTokenKindIsRefusedWhatItMayNotDoOverHTTP runs a
// representative set of routes for every principal: user roles Reader (R),
// Contributor (C), Owner (O) at scopes / (root), subscription s1 (s),
// resource group g1 (g), cluster c1 (c); and c1's sensor and agent tokens.
// The allowed principals of each route are written out by hand; all others
// must get 403.
func TestEveryRoleScopeAndTokenKindIsRefusedWhatItMayNotDoOverHTTP(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := newEnv(t, open)
		c1, c2 := clusterPath("s1", "g1", "c1"), clusterPath("s1", "g2", "c2")
		sensor := e.cluster("s1", "g1", "c1")
		sensor2 := e.cluster("s1", "g2", "c2")
		e.must(200, "POST", "/ingest/v1/alerts", sensor, batch("s1", "g1", "c1", testAlert("a-c1")))
		e.must(200, "POST", "/ingest/v1/alerts", sensor2, batch("s1", "g2", "c2", testAlert("a-c2")))
		scopes := map[string]string{"root": "/", "s": "/subscriptions/s1", "g": "/subscriptions/s1/resourceGroups/g1", "c": c1}
		tokens := map[string]string{"sensor": sensor, "agent": e.agent("s1", "g1", "c1")}
		for short, scope := range scopes {
			for _, role := range []string{"Reader", "Contributor", "Owner"} {
				tokens[role[:1]+short] = e.userToken(role, scope)
			}
		}
		users := "Rroot Croot Oroot Rs Cs Os Rg Cg Og Rc Cc Oc"
		writersC1 := "Croot Oroot Cs Os Cg Og Cc Oc"
		readersSub := "Rroot Croot Oroot Rs Cs Os"
		ext := map[string]any{"properties": map[string]any{"extensionType": "vigil.sensor"}}
		routes := []struct {
			method, path string
			body         any
			allowed      string
		}{
			{"GET", c1, nil, users},
			{"PUT", c1, map[string]any{}, writersC1},
			{"PATCH", c1, map[string]any{"tags": map[string]string{"x": "y"}}, writersC1},
			{"GET", c2, nil, readersSub},
			{"DELETE", c2 + "/providers/Vigil.KubernetesConfiguration/extensions/none", nil, "Croot Oroot Cs Os"},
			{"PUT", c1 + "/providers/Vigil.KubernetesConfiguration/extensions/vigil-sensor", ext, writersC1},
			{"GET", c1 + "/providers/Vigil.KubernetesConfiguration/extensions", nil, users + " agent"},
			{"GET", "/subscriptions/s1/resourceGroups", nil, users},
			{"GET", "/subscriptions/s1/resourceGroups/g2", nil, readersSub},
			{"GET", "/subscriptions/s1/providers/Vigil.Kubernetes/connectedClusters", nil, users},
			{"GET", "/subscriptions/s1/providers/Vigil.Security/pricings/Containers", nil, readersSub},
			{"PUT", "/subscriptions/s1/providers/Vigil.Security/pricings/Containers", map[string]any{"properties": map[string]any{"pricingTier": "Standard"}}, "Oroot Os"},
			{"GET", "/subscriptions/s1/providers/Vigil.Security/alerts", nil, users},
			{"GET", "/subscriptions/s1/providers/Vigil.Security/alerts?resourceGroup=g2", nil, readersSub},
			{"GET", "/subscriptions/s1/providers/Vigil.Security/alerts/a-c2", nil, readersSub},
			{"PATCH", "/subscriptions/s1/providers/Vigil.Security/alerts/a-c1", map[string]any{"properties": map[string]string{"status": "Resolved"}}, writersC1},
			{"POST", "/subscriptions/s1/providers/Vigil.Security/alerts/a-c2/dismiss", nil, "Croot Oroot Cs Os"},
			{"GET", "/subscriptions/s1/providers/Vigil.Security/recommendations", nil, users},
			{"PUT", "/subscriptions/s1/providers/Vigil.Security/alertsSuppressionRules/r", map[string]any{"properties": map[string]any{"match": map[string]string{"alertType": "x"}}}, "Croot Oroot Cs Os"},
			{"GET", "/subscriptions/s1/providers/Vigil.Security/alertsSuppressionRules", nil, readersSub},
			{"GET", tokensPath, nil, "Oroot Os Og Oc"},
			{"POST", tokensPath, map[string]any{"name": "n", "role": "Reader", "scope": c1}, "Oroot Os Og Oc"},
			{"PUT", outputsPath + "/o", map[string]any{"properties": map[string]any{"type": "syslog", "config": map[string]string{"address": "127.0.0.1:514"}}}, "Oroot"},
			{"GET", outputsPath, nil, "Oroot"},
			{"POST", "/ingest/v1/alerts", batch("s1", "g1", "c1", testAlert("a-c1")), "sensor"},
			{"POST", "/ingest/v1/health", map[string]any{"clusterId": c1, "node": "n", "sourceMode": "ebpf"}, "sensor"},
			{"POST", "/ingest/v1/heartbeat", map[string]any{"clusterId": c1}, "sensor agent"},
			{"POST", "/ingest/v1/extensionStatus", map[string]any{"clusterId": c1, "name": "vigil-sensor", "generation": 1, "provisioningState": "Succeeded"}, "agent"},
		}
		names := make([]string, 0, len(tokens))
		for n := range tokens {
			names = append(names, n)
		}
		sort.Strings(names)
		decisions := 0
		for _, rt := range routes {
			allowed := map[string]bool{}
			for _, n := range strings.Fields(rt.allowed) {
				if tokens[n] == "" {
					t.Fatalf("unknown principal %q in the table", n)
				}
				allowed[n] = true
			}
			for _, n := range names {
				r := e.do(rt.method, rt.path, tokens[n], rt.body)
				decisions++
				switch {
				case allowed[n] && (r.code < 200 || r.code > 299):
					t.Errorf("%s %s by %s = %d %s, want success", rt.method, rt.path, n, r.code, r.body)
				case !allowed[n] && (r.code != 403 || r.errCode() != "AuthorizationFailed"):
					t.Errorf("%s %s by %s = %d %s, want 403 AuthorizationFailed", rt.method, rt.path, n, r.code, r.body)
				}
			}
		}
		t.Logf("%d authorization decisions over HTTP", decisions)
	})
}

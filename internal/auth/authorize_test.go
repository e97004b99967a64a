package auth

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/store"
)

// Resources the matrix acts on, named for readability.
var resources = map[string]string{
	"hub":          "/",
	"sub1":         "/subscriptions/s1",
	"sub10":        "/subscriptions/s10",
	"sub2":         "/subscriptions/s2",
	"rg1":          "/subscriptions/s1/resourceGroups/g1",
	"rg2":          "/subscriptions/s1/resourceGroups/g2",
	"c1":           "/subscriptions/s1/resourceGroups/g1/providers/Vigil.Kubernetes/connectedClusters/c1",
	"S1-c1":        "/subscriptions/S1/resourceGroups/g1/providers/Vigil.Kubernetes/connectedClusters/c1",
	"G1":           "/subscriptions/s1/resourceGroups/G1",
	"c1ext":        "/subscriptions/s1/resourceGroups/g1/providers/Vigil.Kubernetes/connectedClusters/c1/providers/Vigil.KubernetesConfiguration/extensions/sensor",
	"c10":          "/subscriptions/s1/resourceGroups/g1/providers/Vigil.Kubernetes/connectedClusters/c10",
	"c2":           "/subscriptions/s1/resourceGroups/g2/providers/Vigil.Kubernetes/connectedClusters/c2",
	"plan1":        "/subscriptions/s1/providers/Vigil.Security/pricings/Containers",
	"suppression1": "/subscriptions/s1/providers/Vigil.Security/alertsSuppressionRules/r",
}

// covered lists, per scope, exactly the resources it covers (written out by
// hand so the test does not reuse the code under test).
var covered = map[string][]string{
	"/":                                   {"hub", "sub1", "sub10", "sub2", "rg1", "rg2", "c1", "S1-c1", "G1", "c1ext", "c10", "c2", "plan1", "suppression1"},
	"/subscriptions/s1":                   {"sub1", "rg1", "rg2", "c1", "G1", "c1ext", "c10", "c2", "plan1", "suppression1"},
	"/subscriptions/s1/resourceGroups/g1": {"rg1", "c1", "c1ext", "c10"},
	"/subscriptions/s1/resourceGroups/g1/providers/Vigil.Kubernetes/connectedClusters/c1": {"c1", "c1ext"},
}

// granted lists, per role, exactly the actions it has.
var granted = map[Role][]Action{
	Reader:      {ActionRead, ActionReadExtensions},
	Contributor: {ActionRead, ActionReadExtensions, ActionWrite},
	Owner:       {ActionRead, ActionReadExtensions, ActionWrite, ActionAdmin},
}

func contains[T comparable](xs []T, x T) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

func assertDecision(t *testing.T, p Principal, a Action, res string, want bool) {
	t.Helper()
	err := Authorize(p, a, res)
	if want && err != nil {
		t.Errorf("%s %s/%s at %s: %s on %s refused: %v", p.Kind, p.Role, p.Name, p.Scope, a, res, err)
	}
	if !want {
		var ae *Error
		if err == nil {
			t.Errorf("%s %s at %s: %s on %s ALLOWED, must be refused", p.Kind, p.Role, p.Scope, a, res)
		} else if !errors.As(err, &ae) || ae.Status != http.StatusForbidden || ae.Message == "" {
			t.Errorf("%s on %s refused without a 403 reason: %#v", a, res, err)
		}
	}
}

func TestEveryRoleAtEveryScopeMayDoExactlyItsActionsOnResourcesInsideItsScope(t *testing.T) {
	n := 0
	for scope, cov := range covered {
		for role, acts := range granted {
			p := Principal{TokenID: "t", Name: fmt.Sprintf("%s@%s", role, scope), Kind: store.TokenUser, Role: role, Scope: scope}
			for resName, res := range resources {
				for _, a := range Actions {
					want := contains(cov, resName) && contains(acts, a)
					assertDecision(t, p, a, res, want)
					n++
				}
			}
		}
	}
	if n != len(covered)*len(granted)*len(resources)*len(Actions) {
		t.Fatalf("matrix incomplete: %d decisions", n)
	}
}

func TestSensorAndAgentTokensMayOnlyDoTheirFewThingsForTheirOwnCluster(t *testing.T) {
	c1 := store.ClusterRef{Subscription: "s1", ResourceGroup: "g1", Name: "c1"}
	kinds := map[string][]Action{
		store.TokenSensor: {ActionIngest, ActionHeartbeat},
		store.TokenAgent:  {ActionHeartbeat, ActionReadExtensions, ActionReportStatus},
	}
	own := []string{"c1", "c1ext"}
	for kind, acts := range kinds {
		p := Principal{TokenID: "t", Name: kind + "-c1", Kind: kind, Cluster: c1}
		for resName, res := range resources {
			for _, a := range Actions {
				assertDecision(t, p, a, res, contains(own, resName) && contains(acts, a))
			}
		}
	}
}

func TestUserTokensMayNotIngestOrHeartbeatEvenAsOwnerOfEverything(t *testing.T) {
	p := Principal{Name: "root", Kind: store.TokenUser, Role: Owner, Scope: "/"}
	for _, a := range []Action{ActionIngest, ActionHeartbeat, ActionReportStatus} {
		assertDecision(t, p, a, resources["c1"], false)
	}
}

func TestPrincipalsWithoutRoleKindOrClusterAreRefused(t *testing.T) {
	for _, p := range []Principal{
		{Name: "norole", Kind: store.TokenUser, Scope: "/"},
		{Name: "noscope", Kind: store.TokenUser, Role: Owner},
		{Name: "nokind", Role: Owner, Scope: "/"},
		{Name: "sensor-without-cluster", Kind: store.TokenSensor},
		{Name: "agent-without-cluster", Kind: store.TokenAgent},
	} {
		for _, a := range Actions {
			assertDecision(t, p, a, resources["c1"], false)
		}
	}
}

func TestRefusalsSayWhatToDo(t *testing.T) {
	p := Principal{Name: "ci", Kind: store.TokenUser, Role: Reader, Scope: "/subscriptions/s1"}
	err := Authorize(p, ActionWrite, resources["c1"])
	if err == nil || !strings.Contains(err.Error(), "needs Contributor") || !strings.Contains(err.Error(), "ask an Owner") {
		t.Fatalf("reader writing: %v", err)
	}
	err = Authorize(p, ActionRead, resources["sub2"])
	if err == nil || !strings.Contains(err.Error(), "scope covers") {
		t.Fatalf("reading outside scope: %v", err)
	}
	s := Principal{Name: "sensor-c1", Kind: store.TokenSensor, Cluster: store.ClusterRef{Subscription: "s1", ResourceGroup: "g1", Name: "c1"}}
	err = Authorize(s, ActionIngest, resources["c2"])
	if err == nil || !strings.Contains(err.Error(), "bound to cluster") {
		t.Fatalf("cross-cluster ingest: %v", err)
	}
}

func TestListScopeNarrowsToTheTokensScopeInsideTheListedOne(t *testing.T) {
	cases := []struct {
		scope, list, want string
		ok                bool
	}{
		{"/", "/subscriptions/s1", "/subscriptions/s1", true},
		{"/subscriptions/s1", "/subscriptions/s1", "/subscriptions/s1", true},
		{"/subscriptions/s1/resourceGroups/g1", "/subscriptions/s1", "/subscriptions/s1/resourceGroups/g1", true},
		{resources["c1"], "/subscriptions/s1", resources["c1"], true},
		{"/subscriptions/s2", "/subscriptions/s1", "", false},
		{"/subscriptions/s1/resourceGroups/g2", "/subscriptions/s1/resourceGroups/g1", "", false},
	}
	for _, c := range cases {
		p := Principal{Name: "x", Kind: store.TokenUser, Role: Reader, Scope: c.scope}
		got, err := ListScope(p, ActionRead, c.list)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ListScope(%s, %s) = %q, %v; want %q ok=%v", c.scope, c.list, got, err, c.want, c.ok)
		}
	}
	s := Principal{Name: "s", Kind: store.TokenSensor, Cluster: store.ClusterRef{Subscription: "s1", ResourceGroup: "g1", Name: "c1"}}
	if _, err := ListScope(s, ActionRead, "/subscriptions/s1"); err == nil {
		t.Fatal("a sensor token may list alerts")
	}
}

func TestScopesAndClusterIDsAreValidatedWithUsefulErrors(t *testing.T) {
	for _, ok := range []string{"/", "/subscriptions/s", "/subscriptions/s/resourceGroups/g", resources["c1"]} {
		if err := ValidScope(ok); err != nil {
			t.Errorf("ValidScope(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "subscriptions/s", "/subscriptions", "/subscriptions/s/", "/subscriptions//resourceGroups/g", "/subscriptions/s/resourceGroups", "/foo/bar", resources["c1ext"]} {
		if err := ValidScope(bad); err == nil {
			t.Errorf("ValidScope(%q) accepted", bad)
		}
	}
	ref, err := ParseClusterID("/SUBSCRIPTIONS/s1/RESOURCEGROUPS/g1/providers/vigil.kubernetes/connectedclusters/c1")
	if err != nil || ref != (store.ClusterRef{Subscription: "s1", ResourceGroup: "g1", Name: "c1"}) {
		t.Fatalf("ParseClusterID = %+v, %v", ref, err)
	}
	if ClusterID(ref) != resources["c1"] {
		t.Fatalf("ClusterID round trip: %s", ClusterID(ref))
	}
	if got, err := CanonicalScope("/SUBSCRIPTIONS/S1/resourcegroups/g1"); err != nil || got != "/subscriptions/S1/resourceGroups/g1" {
		t.Fatalf("CanonicalScope = %q, %v", got, err)
	}
}

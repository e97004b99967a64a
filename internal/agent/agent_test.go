package agent

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/client-go/rest"

	"github.com/vigil-sec/vigil/internal/hubclient"
	"github.com/vigil-sec/vigil/internal/hubclient/hubtest"
	"github.com/vigil-sec/vigil/internal/kube"
	"github.com/vigil-sec/vigil/internal/store"
)

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// noCluster is a client of an API server that does not run: the agent's
// hub side is tested without a cluster.
func noCluster(t *testing.T) *kube.Client {
	t.Helper()
	kc, err := kube.NewClient(&rest.Config{Host: "https://" + closedAddr(t)}, "")
	if err != nil {
		t.Fatal(err)
	}
	return kc
}

func writeToken(t *testing.T, tok string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAnUnreachableHubIsLoggedWithItsURLAndCounted(t *testing.T) {
	hubURL := "https://" + closedAddr(t)
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	a, err := New(Config{HubURL: hubURL, TokenFile: writeToken(t, "vgl_x"), ClusterID: "/subscriptions/default/resourceGroups/rg1/providers/Vigil.Kubernetes/connectedClusters/prod",
		Image: "vigil.local/vigil:test", Kube: noCluster(t), Logger: slog.New(slog.NewTextHandler(&logs, nil)), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Heartbeat(context.Background()); err == nil {
		t.Fatal("heartbeat to a stopped hub succeeded")
	}
	if err := a.Reconcile(context.Background()); err == nil {
		t.Fatal("reconcile against a stopped hub succeeded")
	}
	if !strings.Contains(logs.String(), "cannot reach the hub") || !strings.Contains(logs.String(), hubURL) {
		t.Fatalf("log does not say the hub at %s is unreachable:\n%s", hubURL, logs.String())
	}
	if n := counterValue(t, a.m.hubErrors.WithLabelValues("heartbeat", "unreachable")); n != 1 {
		t.Fatalf("vigil_agent_hub_errors_total{op=heartbeat,reason=unreachable} = %v, want 1", n)
	}
	if n := counterValue(t, a.m.hubErrors.WithLabelValues("list-extensions", "unreachable")); n != 1 {
		t.Fatalf("list-extensions failures = %v, want 1", n)
	}
}

func TestAHeartbeatConnectsTheClusterAndARevokedTokenIsCountedAsUnauthorized(t *testing.T) {
	h := hubtest.Start(t)
	cid := h.CreateCluster("default", "rg1", "prod")
	secret, id := h.Token(hubclient.TokenCreate{Name: "agent", Kind: store.TokenAgent, ClusterID: cid})
	var logs bytes.Buffer
	a, err := New(Config{HubURL: h.URL, TokenFile: writeToken(t, secret), CAFile: h.CAFile, ClusterID: cid, Version: "1.2.3",
		Image: "vigil.local/vigil:test", Kube: noCluster(t), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Heartbeat(context.Background()); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	c, err := h.Client(h.Owner).GetCluster(context.Background(), "default", "rg1", "prod")
	if err != nil {
		t.Fatal(err)
	}
	if c.Properties.ConnectivityStatus != store.Connected || c.Properties.AgentVersion != "1.2.3" {
		t.Fatalf("after a heartbeat the cluster is %s with agent %q, want Connected with 1.2.3", c.Properties.ConnectivityStatus, c.Properties.AgentVersion)
	}
	if _, err := h.Client(h.Owner).RevokeToken(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if err := a.Heartbeat(context.Background()); err == nil {
		t.Fatal("heartbeat with a revoked token succeeded")
	}
	if n := counterValue(t, a.m.hubErrors.WithLabelValues("heartbeat", "unauthorized")); n != 1 {
		t.Fatalf("unauthorized heartbeat failures = %v, want 1", n)
	}
}

func TestBadConfigurationIsRefusedWithWhatToPass(t *testing.T) {
	kc := noCluster(t)
	tok := writeToken(t, "vgl_x")
	cid := "/subscriptions/default/resourceGroups/rg1/providers/Vigil.Kubernetes/connectedClusters/prod"
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"cleartext to a remote hub", Config{HubURL: "http://10.1.2.3:8443", TokenFile: tok, ClusterID: cid, Image: "i:t", Kube: kc}, "https"},
		{"a cluster id that is not an ARM id", Config{HubURL: "https://hub:8443", TokenFile: tok, ClusterID: "prod", Image: "i:t", Kube: kc}, "--cluster-id"},
		{"no token file", Config{HubURL: "https://hub:8443", ClusterID: cid, Image: "i:t", Kube: kc}, "--hub-token-file"},
		{"no image", Config{HubURL: "https://hub:8443", TokenFile: tok, ClusterID: cid, Kube: kc}, "--sensor-image"},
		{"a CA file that is missing", Config{HubURL: "https://hub:8443", TokenFile: tok, CAFile: "/nonexistent/ca.crt", ClusterID: cid, Image: "i:t", Kube: kc}, "--hub-ca"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New: %v, want an error naming %q", err, c.want)
			}
		})
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestHealthzSaysWhenTheHubLastAnsweredAndMetricsCountFailures(t *testing.T) {
	hubURL := "https://" + closedAddr(t)
	reg := prometheus.NewRegistry()
	a, err := New(Config{HubURL: hubURL, TokenFile: writeToken(t, "vgl_x"), ClusterID: "/subscriptions/default/resourceGroups/rg1/providers/Vigil.Kubernetes/connectedClusters/prod",
		Image: "vigil.local/vigil:test", Kube: noCluster(t), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	_ = a.Heartbeat(context.Background())
	srv := httptest.NewServer(a.Handler(reg))
	defer srv.Close()
	get := func(path string) string {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 {
			t.Fatalf("GET %s: %d", path, res.StatusCode)
		}
		return string(b)
	}
	if h := get("/healthz"); !strings.Contains(h, "last heartbeat accepted: never") || !strings.Contains(h, hubURL) {
		t.Fatalf("/healthz does not say the hub never answered and why:\n%s", h)
	}
	if m := get("/metrics"); !strings.Contains(m, `vigil_agent_hub_errors_total{op="heartbeat",reason="unreachable"} 1`) {
		t.Fatalf("/metrics lacks the failed heartbeat:\n%s", m)
	}
}

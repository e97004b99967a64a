// Package hubtest runs a real hub for tests of its clients: internal/hub
// over a SQLite store in a temporary directory, served with the hub's own
// TLS identity (internal/pki) on 127.0.0.1, with helpers to register
// clusters, create tokens and ingest alerts through the real endpoints.
package hubtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/hub"
	"github.com/vigil-sec/vigil/internal/hubclient"
	"github.com/vigil-sec/vigil/internal/pki"
	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/store/sqlite"
)

// Hub is a running hub.
type Hub struct {
	// URL is the hub's base URL (https://127.0.0.1:PORT).
	URL string
	// CAPEM is the hub's CA certificate; CAFile holds it on disk.
	CAPEM  []byte
	CAFile string
	// Owner is the bootstrap Owner token at scope "/".
	Owner string
	// Store is the hub's store.
	Store store.Store

	t   testing.TB
	srv *http.Server
}

// Start starts a hub; it stops when the test ends.
func Start(t testing.TB) *Hub {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "hub.db"))
	if err != nil {
		t.Fatalf("open hub store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	h, err := hub.New(hub.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, st)
	if err != nil {
		t.Fatalf("hub.New: %v", err)
	}
	owner, err := auth.Bootstrap(ctx, st, "", time.Now())
	if err != nil || owner == "" {
		t.Fatalf("bootstrap owner token: %q, %v", owner, err)
	}
	bundle, err := pki.EnsureServer(filepath.Join(dir, "tls"), nil)
	if err != nil {
		t.Fatalf("hub TLS identity: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	// Handshake failures are expected in tests of CA pinning: keep them quiet.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go func() {
		if err := srv.Serve(tls.NewListener(ln, bundle.TLSConfig())); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("hub server: %v", err)
		}
	}()
	t.Cleanup(func() { _ = srv.Close() })
	return &Hub{
		URL:    "https://" + ln.Addr().String(),
		CAPEM:  bundle.CAPEM,
		CAFile: filepath.Join(dir, "tls", pki.CACertFile),
		Owner:  owner,
		Store:  st,
		t:      t,
		srv:    srv,
	}
}

// Stop stops serving (the port refuses connections afterwards).
func (h *Hub) Stop() { _ = h.srv.Close() }

// Client is a client of the hub with token, pinning the hub's CA.
func (h *Hub) Client(token string) *hubclient.Client {
	h.t.Helper()
	c, err := hubclient.New(hubclient.Config{Hub: h.URL, Token: token, CAPEM: string(h.CAPEM)})
	if err != nil {
		h.t.Fatalf("hubclient.New: %v", err)
	}
	h.t.Cleanup(c.CloseIdleConnections)
	return c
}

// CreateCluster registers a connected cluster and returns its ARM id.
func (h *Hub) CreateCluster(sub, rg, name string) string {
	h.t.Helper()
	p, err := hubclient.ClusterPath(sub, rg, name)
	if err != nil {
		h.t.Fatal(err)
	}
	body := map[string]any{"location": "local", "properties": map[string]any{"distribution": "kubeadm"}}
	if err := h.Client(h.Owner).Do(context.Background(), http.MethodPut, p, nil, body, nil); err != nil {
		h.t.Fatalf("create cluster %s: %v", p, err)
	}
	return p
}

// Token creates a token with the Owner token and returns its secret and id.
func (h *Hub) Token(in hubclient.TokenCreate) (secret, id string) {
	h.t.Helper()
	t, err := h.Client(h.Owner).CreateToken(context.Background(), in)
	if err != nil {
		h.t.Fatalf("create token %+v: %v", in, err)
	}
	if t.Properties.Secret == "" {
		h.t.Fatalf("create token %+v: no secret in the response", in)
	}
	return t.Properties.Secret, t.Name
}

// Ingest sends alerts for clusterID through POST /ingest/v1/alerts with a
// sensor token of that cluster (created on first use per call).
func (h *Hub) Ingest(clusterID string, alerts ...alert.Alert) {
	h.t.Helper()
	sensor, _ := h.Token(hubclient.TokenCreate{Name: "sensor-" + filepath.Base(clusterID), Kind: store.TokenSensor, ClusterID: clusterID})
	batch := map[string]any{"cluster": clusterID, "node": "node-1", "batchId": "batch-" + time.Now().Format("150405.000000000"), "alerts": alerts}
	b, err := json.Marshal(batch)
	if err != nil {
		h.t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, h.URL+"/ingest/v1/alerts", bytes.NewReader(b))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+sensor)
	tlsCfg, err := pki.ClientTLS(h.CAPEM)
	if err != nil {
		h.t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	res, err := hc.Do(req)
	if err != nil {
		h.t.Fatalf("ingest: %v", err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		h.t.Fatalf("ingest = %d: %s", res.StatusCode, out)
	}
}

// Alert returns a valid alert for tests: id, type, severity and entities
// as given, first seen an hour ago, last seen at end.
func Alert(id, alertType, severity, namespace, pod string, end time.Time) alert.Alert {
	return alert.Alert{
		ID: id, AlertType: alertType, DisplayName: "Test " + alertType, Description: "raised by a test",
		Severity: severity, Status: alert.StatusActive, StartTime: end.Add(-time.Hour), EndTime: end, Count: 1,
		Entities: alert.Entities{Node: "node-1", Namespace: namespace, Pod: pod,
			Process: &alert.Process{Path: "/bin/sh", CommandLine: "sh -c echo VIGIL-TEST-ALERT-7f3b"}},
	}
}

package portal

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/hub"
	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/store/sqlite"
)

// env is a real hub (real SQLite file) with the portal mounted, served on
// 127.0.0.1, with two registered clusters and a sensor token for the first.
type env struct {
	t      testing.TB
	st     store.Store
	hub    *hub.Server
	portal *Portal
	ts     *httptest.Server
	owner  string
	prod   store.ClusterRef // has the sensor token
	dev    store.ClusterRef
	sensor string
}

var batchSeq atomic.Int64

func newEnv(t testing.TB, tlsServer bool) *env {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatalf("open sqlite store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := hub.New(hub.Config{Logger: log}, st)
	if err != nil {
		t.Fatalf("hub.New: %v", err)
	}
	p, err := New(Config{Store: st, Authenticator: srv.Authenticator(), Logger: log})
	if err != nil {
		t.Fatalf("portal.New: %v", err)
	}
	p.Register(srv)
	owner, err := auth.Bootstrap(ctx, st, "", time.Now())
	if err != nil {
		t.Fatalf("bootstrap owner token: %v", err)
	}
	var ts *httptest.Server
	if tlsServer {
		ts = httptest.NewTLSServer(srv)
	} else {
		ts = httptest.NewServer(srv)
	}
	t.Cleanup(func() {
		p.Close()
		ts.Close()
	})
	e := &env{t: t, st: st, hub: srv, portal: p, ts: ts, owner: owner,
		prod: store.ClusterRef{Subscription: "default", ResourceGroup: "rg-prod", Name: "prod-aks"},
		dev:  store.ClusterRef{Subscription: "default", ResourceGroup: "rg-dev", Name: "dev-k3s"},
	}
	for _, c := range []store.ClusterRef{e.prod, e.dev} {
		e.apiJSON(owner, http.MethodPut, auth.ClusterID(c), map[string]any{"location": "westeurope", "tags": map[string]string{"env": c.Name},
			"properties": map[string]any{"distribution": "kubeadm"}}, http.StatusCreated)
	}
	var tok struct {
		Properties struct {
			Token string `json:"token"`
		} `json:"properties"`
	}
	body := e.apiJSON(owner, http.MethodPost, "/providers/Vigil.Hub/tokens", map[string]any{"name": "sensor-prod", "kind": "sensor", "clusterId": auth.ClusterID(e.prod)}, http.StatusCreated)
	if err := json.Unmarshal(body, &tok); err != nil || tok.Properties.Token == "" {
		t.Fatalf("sensor token: %v %s", err, body)
	}
	e.sensor = tok.Properties.Token
	return e
}

// apiJSON calls the hub API with a token and checks the status.
func (e *env) apiJSON(token, method, path string, body any, want int) []byte {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, out)
	}
	return out
}

// userToken creates a user token with role at scope (the bootstrap Owner
// creates it through the API).
func (e *env) userToken(name, role, scope string) string {
	e.t.Helper()
	body := e.apiJSON(e.owner, http.MethodPost, "/providers/Vigil.Hub/tokens", map[string]any{"name": name, "role": role, "scope": scope}, http.StatusCreated)
	var tok struct {
		Name       string `json:"name"`
		Properties struct {
			Token string `json:"token"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(body, &tok); err != nil {
		e.t.Fatal(err)
	}
	return tok.Properties.Token
}

// testAlert returns a realistic alert for the prod cluster.
func testAlert(id, severity, name string, at time.Time) alert.Alert {
	return alert.Alert{
		ID: id, AlertType: "vigil.node/" + strings.ReplaceAll(name, " ", ""), DisplayName: name,
		Description: "A process named like a system binary mines digital currency.",
		Severity:    severity, Status: alert.StatusActive, StartTime: at.Add(-time.Minute), EndTime: at, Count: 3,
		Tactics: []string{"Impact"}, Techniques: []string{"T1496"},
		RemediationSteps: []string{"Delete the pod and rotate its service account token.", "Find how the binary got into the container."},
		Entities: alert.Entities{
			Node: "node-1", Namespace: "payments", Pod: "api-7d9f",
			Container: &event.Container{ID: "c0ffee", Name: "api", Image: "registry.example/payments-api:1.4", Runtime: "containerd"},
			Process:   &alert.Process{Path: "/tmp/.x/pause", CommandLine: "pause --donate-level 1 -o pool.example:3333", PID: 4242, UID: 1000, User: "app"},
			Parent:    &alert.Process{Path: "/bin/sh", CommandLine: "sh -c /tmp/.x/pause --donate-level 1", PID: 4200},
			Ancestry: []event.ProcessRef{
				{PID: 4200, Exe: "/bin/sh", Args: []string{"sh", "-c", "/tmp/.x/pause --donate-level 1"}, Comm: "sh", UID: 1000},
				{PID: 4100, Exe: "/usr/bin/python3", Args: []string{"python3", "app.py"}, Comm: "python3", UID: 1000},
				{PID: 1, Exe: "/usr/bin/tini", Args: []string{"tini", "--"}, Comm: "tini"},
			},
			Network: &alert.Network{IP: "203.0.113.7", Port: 3333, Domain: "pool.example"},
		},
	}
}

// ingest sends alerts through /ingest/v1/alerts with the sensor token, the
// path real sensors take.
func (e *env) ingest(as ...alert.Alert) {
	e.t.Helper()
	e.apiJSON(e.sensor, http.MethodPost, "/ingest/v1/alerts", map[string]any{
		"cluster": auth.ClusterID(e.prod), "node": "node-1", "batchId": fmt.Sprintf("batch-%d", batchSeq.Add(1)), "alerts": as,
	}, http.StatusOK)
}

// browser is an HTTP client with a cookie jar that does not follow redirects.
type browser struct {
	e *env
	c *http.Client
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	c := e.ts.Client()
	c = &http.Client{Transport: c.Transport, Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &browser{e: e, c: c}
}

type page struct {
	code int
	body string
	hdr  http.Header
	loc  string
}

func (b *browser) do(req *http.Request) page {
	b.e.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{code: resp.StatusCode, body: string(body), hdr: resp.Header, loc: resp.Header.Get("Location")}
}

func (b *browser) get(path string) page {
	req, _ := http.NewRequest(http.MethodGet, b.e.ts.URL+path, nil)
	return b.do(req)
}

// post submits a form as a browser does (same Origin).
func (b *browser) post(path string, form url.Values) page {
	return b.postFrom(path, form, b.e.ts.URL)
}

func (b *browser) postFrom(path string, form url.Values, origin string) page {
	req, _ := http.NewRequest(http.MethodPost, b.e.ts.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	return b.do(req)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t testing.TB, body string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("page has no CSRF field:\n%s", body)
	}
	return m[1]
}

// signIn signs in with token and returns the session's CSRF token.
func (b *browser) signIn(token string) string {
	b.e.t.Helper()
	pg := b.get("/portal/signin")
	got := b.post("/portal/signin", url.Values{"token": {token}, "csrf": {csrfOf(b.e.t, pg.body)}})
	if got.code != http.StatusSeeOther || got.loc != "/portal/alerts" {
		b.e.t.Fatalf("sign-in: status %d location %q:\n%s", got.code, got.loc, got.body)
	}
	alerts := b.get("/portal/alerts")
	if alerts.code != http.StatusOK {
		b.e.t.Fatalf("alerts page after sign-in: %d\n%s", alerts.code, alerts.body)
	}
	return csrfOf(b.e.t, alerts.body)
}

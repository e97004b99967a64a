package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/store/postgres"
	"github.com/vigil-sec/vigil/internal/store/sqlite"
	"github.com/vigil-sec/vigil/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// opener opens a fresh, real store for one test.
type opener struct {
	name string
	open func(t testing.TB) store.Store
}

func openSQLite(t testing.TB) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func openPostgres(t testing.TB) store.Store {
	t.Helper()
	st, err := postgres.Open(context.Background(), pgtest.NewDatabase(t))
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

var openers = []opener{{"sqlite", openSQLite}, {"postgres", openPostgres}}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a hub on a real store behind a real HTTP server on 127.0.0.1.
type env struct {
	t     testing.TB
	st    store.Store
	srv   *Server
	ts    *httptest.Server
	clock *clock
	owner string // bootstrap Owner token at "/"
}

func newEnv(t testing.TB, open func(testing.TB) store.Store, mutate ...func(*Config)) *env {
	t.Helper()
	st := open(t)
	c := &clock{t: time.Now().UTC().Truncate(time.Millisecond)}
	cfg := Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: c.Now}
	for _, m := range mutate {
		m(&cfg)
	}
	srv, err := New(cfg, st)
	if err != nil {
		t.Fatalf("hub.New: %v", err)
	}
	owner, err := auth.Bootstrap(context.Background(), st, "", c.Now())
	if err != nil || owner == "" {
		t.Fatalf("bootstrap: %q %v", owner, err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return &env{t: t, st: st, srv: srv, ts: ts, clock: c, owner: owner}
}

// forEachStore runs f against every store implementation.
func forEachStore(t *testing.T, f func(t *testing.T, open func(testing.TB) store.Store)) {
	for _, o := range openers {
		t.Run(o.name, func(t *testing.T) { f(t, o.open) })
	}
}

type resp struct {
	code int
	body []byte
	hdr  http.Header
}

func (r resp) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not a JSON object (%d): %s", r.code, r.body)
	}
	return m
}

func (r resp) errCode() string {
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	_ = json.Unmarshal(r.body, &e)
	return e.Error.Code
}

// do sends a request; body may be nil, []byte (sent as is) or a value (JSON).
func (e *env) do(method, path, token string, body any, hdr ...string) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	u := path
	if !strings.HasPrefix(u, "http") {
		u = e.ts.URL + path
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{code: res.StatusCode, body: b, hdr: res.Header}
}

// must asserts the status code.
func (e *env) must(code int, method, path, token string, body any) resp {
	e.t.Helper()
	r := e.do(method, path, token, body)
	if r.code != code {
		e.t.Fatalf("%s %s = %d, want %d: %s", method, path, r.code, code, r.body)
	}
	return r
}

func clusterPath(sub, rg, name string) string {
	return "/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/Vigil.Kubernetes/connectedClusters/" + name
}

// token creates a token through the API with the Owner token.
func (e *env) token(body map[string]any) string {
	e.t.Helper()
	r := e.must(201, "POST", tokensPath, e.owner, body)
	secret, _ := r.json(e.t)["properties"].(map[string]any)["token"].(string)
	if secret == "" {
		e.t.Fatalf("no secret in %s", r.body)
	}
	return secret
}

func (e *env) userToken(role, scope string) string {
	return e.token(map[string]any{"name": role + "@" + scope, "role": role, "scope": scope})
}

// cluster registers a cluster and returns a sensor token for it.
func (e *env) cluster(sub, rg, name string) (sensor string) {
	e.t.Helper()
	p := clusterPath(sub, rg, name)
	if r := e.do("PUT", p, e.owner, map[string]any{"location": "here"}); r.code != 201 && r.code != 200 {
		e.t.Fatalf("PUT cluster: %d %s", r.code, r.body)
	}
	return e.token(map[string]any{"name": "sensor-" + name, "kind": "sensor", "clusterId": p})
}

func (e *env) agent(sub, rg, name string) string {
	return e.token(map[string]any{"name": "agent-" + name, "kind": "agent", "clusterId": clusterPath(sub, rg, name)})
}

// testAlert returns a valid alert with id.
func testAlert(id string, mutate ...func(m map[string]any)) map[string]any {
	a := map[string]any{
		"id": id, "alertType": "vigil.node/TestAlert", "displayName": "Test alert", "description": "d",
		"severity": "Low", "startTime": "2026-11-01T12:00:00Z", "endTime": "2026-11-01T12:00:05Z", "count": 1,
		"entities": map[string]any{"node": "n1", "namespace": "default", "process": map[string]any{"path": "/bin/sh", "uid": 0}},
	}
	for _, m := range mutate {
		m(a)
	}
	return a
}

func batch(sub, rg, cluster string, alerts ...map[string]any) map[string]any {
	if alerts == nil {
		alerts = []map[string]any{}
	}
	return map[string]any{"cluster": clusterPath(sub, rg, cluster), "node": "n1", "batchId": "b", "alerts": alerts}
}

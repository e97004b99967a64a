// Package portal is vigil's web portal, served by the hub beside its API
// under /portal/: security alerts (filters, paging, a severity chart, live
// updates over Server-Sent Events), alert details with the process tree and
// the dismiss/resolve/"suppress similar" actions, clusters with their
// extensions and sensor health, recommendations with a Fix button, the
// Containers plan and settings (API tokens, outputs).
//
// Pages are server-rendered html/template with embedded static CSS and a
// little plain JavaScript; there is no build step. Sign-in takes an API
// token, validated by the hub's Authenticator; the session cookie holds a
// random id only. Reads are filtered with auth.ListScope/auth.Authorize as
// the API filters them, and every change is checked with auth.Authorize and
// then performed by the hub's own API handler in-process (same validation,
// same audit fields), with the signed-in token.
package portal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/hub"
	"github.com/vigil-sec/vigil/internal/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// ContentSecurityPolicy is sent with every portal response.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"

// Config configures a Portal. Store and Authenticator are required; API is
// the hub's handler that performs changes (Register sets it).
type Config struct {
	Store         store.Store
	Authenticator *auth.Authenticator
	// API is the hub's API handler; changes are sent to it in-process with
	// the signed-in token, so they take the API's code path. Register sets
	// it to the hub server.
	API    http.Handler
	Logger *slog.Logger
	// Registerer receives the portal's metrics (default: none registered).
	Registerer prometheus.Registerer
	// SessionTTL is how long a sign-in lasts (default 8 hours);
	// IdleTimeout ends a session unused for that long (default 1 hour).
	SessionTTL, IdleTimeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Portal serves the web portal. It is an http.Handler for /portal/.
type Portal struct {
	cfg      Config
	log      *slog.Logger
	mux      *http.ServeMux
	pages    map[string]*template.Template
	assets   map[string]string // file name -> content hash
	sessions *sessions
	events   *broker
	m        *metrics

	closeOnce sync.Once
}

type metrics struct {
	signins   *prometheus.CounterVec
	sessions  prometheus.GaugeFunc
	streams   prometheus.GaugeFunc
	dropped   prometheus.Counter
	published prometheus.Counter
	changes   *prometheus.CounterVec
}

// New returns a portal. Call Register to mount it on a hub, or serve it
// yourself under /portal/ (then set Config.API).
func New(cfg Config) (*Portal, error) {
	if cfg.Store == nil {
		return nil, errors.New("portal: no store: pass the hub's store in portal.Config.Store")
	}
	if cfg.Authenticator == nil {
		return nil, errors.New("portal: no authenticator: pass hub.Server.Authenticator() in portal.Config.Authenticator")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 8 * time.Hour
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = time.Hour
	}
	p := &Portal{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux()}
	p.sessions = newSessions(cfg.Now, cfg.SessionTTL, cfg.IdleTimeout)
	p.events = newBroker()
	if err := p.loadAssets(); err != nil {
		return nil, err
	}
	if err := p.loadTemplates(); err != nil {
		return nil, err
	}
	p.m = &metrics{
		signins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_portal_signins_total", Help: "Portal sign-in attempts by result (ok, refused).",
		}, []string{"result"}),
		sessions: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vigil_portal_sessions", Help: "Portal sessions signed in now.",
		}, func() float64 { return float64(p.sessions.count()) }),
		streams: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vigil_portal_event_streams", Help: "Open live-update (Server-Sent Events) streams.",
		}, func() float64 { return float64(p.events.count()) }),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_portal_events_dropped_total", Help: "Live alert updates dropped because a browser read too slowly.",
		}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_portal_events_published_total", Help: "Committed alerts the portal received for live updates.",
		}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_portal_changes_total", Help: "Changes made through the portal by kind and result (ok, refused, failed).",
		}, []string{"kind", "result"}),
	}
	p.events.dropped = p.m.dropped
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{p.m.signins, p.m.sessions, p.m.streams, p.m.dropped, p.m.published, p.m.changes} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("register portal metrics: %w (create one Portal per registry)", err)
			}
		}
	}
	p.routes()
	return p, nil
}

// Register mounts the portal on the hub server: /portal/ (pages, static
// assets, events), GET / (a redirect to /portal/), and subscribes the live
// updates to the hub's committed alerts. It sets Config.API to the hub
// unless one was given.
func (p *Portal) Register(s *hub.Server) {
	if p.cfg.API == nil {
		p.cfg.API = s
	}
	s.Mount("/portal/", p)
	s.Mount("GET /{$}", http.RedirectHandler("/portal/", http.StatusFound))
	s.AddSink(p)
}

// Publish hands a committed alert to the live-update streams (it never
// blocks; a slow browser loses updates, counted in
// vigil_portal_events_dropped_total). It makes Portal a hub.AlertSink.
func (p *Portal) Publish(a store.Alert) {
	p.m.published.Inc()
	p.events.publish(a)
}

// Close ends every live-update stream (so that http.Server.Shutdown does
// not wait for them); use it with http.Server.RegisterOnShutdown.
func (p *Portal) Close() {
	p.closeOnce.Do(p.events.close)
}

// ServeHTTP serves the portal with its security headers.
func (p *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin") // "no-referrer" would make browsers send Origin: null on form posts
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	p.mux.ServeHTTP(w, r)
}

func (p *Portal) routes() {
	m := p.mux
	m.HandleFunc("GET /portal/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/portal/alerts", http.StatusFound)
	})
	m.HandleFunc("GET /portal/static/{file}", p.static)
	m.HandleFunc("GET /portal/signin", p.signinPage)
	m.HandleFunc("POST /portal/signin", p.signin)
	m.HandleFunc("POST /portal/signout", p.withSession(p.signout))
	m.HandleFunc("GET /portal/alerts", p.withSession(p.alertsPage))
	m.HandleFunc("GET /portal/alerts/{id}", p.withSession(p.alertPage))
	m.HandleFunc("POST /portal/alerts/{id}/status", p.withSession(p.alertStatus))
	m.HandleFunc("GET /portal/alerts/{id}/suppress", p.withSession(p.suppressPage))
	m.HandleFunc("POST /portal/alerts/{id}/suppress", p.withSession(p.suppress))
	m.HandleFunc("GET /portal/clusters", p.withSession(p.clustersPage))
	m.HandleFunc("GET /portal/clusters/{sub}/{rg}/{name}", p.withSession(p.clusterPage))
	m.HandleFunc("GET /portal/recommendations", p.withSession(p.recommendationsPage))
	m.HandleFunc("POST /portal/recommendations/fix", p.withSession(p.fixRecommendation))
	m.HandleFunc("GET /portal/plan", p.withSession(p.planPage))
	m.HandleFunc("POST /portal/plan", p.withSession(p.putPlan))
	m.HandleFunc("GET /portal/settings", p.withSession(p.settingsPage))
	m.HandleFunc("POST /portal/settings/tokens", p.withSession(p.createToken))
	m.HandleFunc("POST /portal/settings/tokens/{id}/revoke", p.withSession(p.revokeToken))
	m.HandleFunc("POST /portal/settings/outputs", p.withSession(p.putOutput))
	m.HandleFunc("POST /portal/settings/outputs/{name}/delete", p.withSession(p.deleteOutput))
	m.HandleFunc("GET /portal/events", p.withSession(p.eventsStream))
	m.HandleFunc("/portal/", func(w http.ResponseWriter, r *http.Request) {
		p.errorPage(w, r, nil, http.StatusNotFound, "There is no portal page at "+r.URL.Path+": use the navigation above.")
	})
}

// ---- static assets

func (p *Portal) loadAssets() error {
	p.assets = map[string]string{}
	return fs.WalkDir(staticFS, "static", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := staticFS.ReadFile(name)
		if err != nil {
			return fmt.Errorf("read embedded asset %s: %w", name, err)
		}
		sum := sha256.Sum256(b)
		p.assets[path.Base(name)] = hex.EncodeToString(sum[:6])
		return nil
	})
}

// assetURL is the versioned URL of a static asset (cached for a year).
func (p *Portal) assetURL(name string) (string, error) {
	v, ok := p.assets[name]
	if !ok {
		return "", fmt.Errorf("no embedded asset %q", name)
	}
	return "/portal/static/" + name + "?v=" + v, nil
}

func (p *Portal) static(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	v, ok := p.assets[name]
	if !ok {
		http.Error(w, "no such asset", http.StatusNotFound)
		return
	}
	b, err := staticFS.ReadFile("static/" + name)
	if err != nil {
		http.Error(w, "no such asset", http.StatusNotFound)
		return
	}
	switch path.Ext(name) {
	case ".css":
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	case ".js":
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	case ".svg":
		w.Header().Set("Content-Type", "image/svg+xml")
	}
	if r.URL.Query().Get("v") == v {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "public, max-age=300")
	}
	w.Header().Set("ETag", `"`+v+`"`)
	if r.Header.Get("If-None-Match") == `"`+v+`"` {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	_, _ = w.Write(b)
}

// ---- the in-process API

// apiResult is the hub API's answer to a change.
type apiResult struct {
	status int
	body   []byte
}

// errMessage returns the API's error message ("" on success).
func (a apiResult) errMessage() string {
	if a.status < 400 {
		return ""
	}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(a.body, &e) == nil && e.Error.Message != "" {
		return e.Error.Message
	}
	return fmt.Sprintf("the hub answered %d %s", a.status, http.StatusText(a.status))
}

type recorder struct {
	h      http.Header
	status int
	buf    bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.buf.Write(b)
}

// api sends a request to the hub's API handler with the session's token.
func (p *Portal) api(ctx context.Context, s *session, method, apiPath string, body any) (apiResult, error) {
	if p.cfg.API == nil {
		return apiResult{}, errors.New("the portal has no API handler: mount it with Portal.Register(hubServer) or set portal.Config.API")
	}
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return apiResult{}, fmt.Errorf("encode %s %s body: %w", method, apiPath, err)
		}
		rd = bytes.NewReader(b)
	}
	u := url.URL{Path: apiPath, RawQuery: "api-version=" + hub.APIVersion}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return apiResult{}, fmt.Errorf("build %s %s: %w", method, apiPath, err)
	}
	req.Header.Set("Authorization", "Bearer "+s.secret)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.RemoteAddr = "portal"
	rec := &recorder{h: http.Header{}}
	p.cfg.API.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return apiResult{status: rec.status, body: rec.buf.Bytes()}, nil
}

// change performs an API change for the session and records the outcome:
// it returns the user-facing error message ("" when it succeeded).
func (p *Portal) change(ctx context.Context, s *session, kind, method, apiPath string, body any) (apiResult, string) {
	res, err := p.api(ctx, s, method, apiPath, body)
	if err != nil {
		p.m.changes.WithLabelValues(kind, "failed").Inc()
		p.log.Error("portal change failed", "kind", kind, "path", apiPath, "err", err)
		return res, "The change could not be made: " + err.Error()
	}
	if msg := res.errMessage(); msg != "" {
		result := "refused"
		if res.status >= 500 {
			result = "failed"
		}
		p.m.changes.WithLabelValues(kind, result).Inc()
		return res, msg
	}
	p.m.changes.WithLabelValues(kind, "ok").Inc()
	p.log.Info("portal change", "kind", kind, "method", method, "path", apiPath, "by", s.principal.String())
	return res, ""
}

// ---- helpers for handlers

func isTLS(r *http.Request) bool { return r.TLS != nil }

// sameOrigin checks the Origin (or, without one, the Referer) of a
// state-changing request names this server.
func sameOrigin(r *http.Request) error {
	scheme := "http"
	if isTLS(r) {
		scheme = "https"
	}
	want := scheme + "://" + r.Host
	if o := r.Header.Get("Origin"); o != "" {
		if o != want {
			return fmt.Errorf("the request came from %s, not from this portal (%s): submit the form from the portal itself", o, want)
		}
		return nil
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		u, err := url.Parse(ref)
		if err != nil || u.Scheme+"://"+u.Host != want {
			return fmt.Errorf("the request came from another site (%s): submit the form from the portal itself", ref)
		}
	}
	return nil
}

// redirectFlash stores a one-time message and redirects (303) to target.
func (p *Portal) redirectFlash(w http.ResponseWriter, r *http.Request, s *session, target, kind, msg string) {
	if s != nil && msg != "" {
		s.setFlash(kind, msg)
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// clusterPath is the portal path of a cluster page.
func clusterPath(c store.ClusterRef) string {
	return "/portal/clusters/" + url.PathEscape(c.Subscription) + "/" + url.PathEscape(c.ResourceGroup) + "/" + url.PathEscape(c.Name)
}

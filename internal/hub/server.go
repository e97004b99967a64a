// Package hub is vigil's hub server: the ARM-shaped management API
// (resource groups, connected clusters, extensions, the Containers plan,
// alerts, suppression rules, recommendations, tokens and outputs), the
// ingest endpoints sensors and agents call, /healthz, /readyz, /metrics and
// /openapi.json, and the background connectivity sweep.
package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/store"
)

// APIVersion is the management API version. Requests may omit api-version;
// any other value is refused with 400 InvalidApiVersion.
const APIVersion = "2026-11-01"

// AlertSink receives alerts after they were committed (new or updated
// Active alerts from ingest). Publish must not block: a sink queues or
// drops on its own (the notify dispatcher, the portal's live updates).
type AlertSink interface {
	Publish(store.Alert)
}

// SinkFunc adapts a function to AlertSink, e.g.
// hub.SinkFunc(func(a store.Alert) { dispatcher.Dispatch(a) }).
type SinkFunc func(store.Alert)

// Publish calls f(a).
func (f SinkFunc) Publish(a store.Alert) { f(a) }

// Sealer encrypts an extension's protected settings before they are
// stored, and opens them for the one reader allowed to see them: the agent
// of the extension's own cluster (internal/seal.Sealer satisfies it).
type Sealer interface {
	Seal(settings map[string]string) ([]byte, error)
	Open(blob []byte) (map[string]string, error)
}

// Config configures a Server. Zero values take the defaults named.
type Config struct {
	Logger *slog.Logger
	// Registry receives the hub's metrics and is served at /metrics
	// (default: a new registry).
	Registry *prometheus.Registry
	// Sealer encrypts extension protected settings; without one, requests
	// carrying protected settings are refused.
	Sealer Sealer
	// Sinks receive committed alerts.
	Sinks []AlertSink
	// OutputsChanged is called with every output after one was created,
	// changed or deleted (e.g. notify.Dispatcher.Configure).
	OutputsChanged func(outputs []store.Output)
	// OfflineAfter without a heartbeat a Connected cluster becomes Offline
	// (default 15 minutes); ExpireAfter it becomes Expired (default 30 days).
	OfflineAfter, ExpireAfter time.Duration
	// UndeliveredAfter an extension whose desired state the agent has not
	// applied goes Failed (default 48 hours).
	UndeliveredAfter time.Duration
	// SweepEvery is the connectivity sweep period (default 30 s).
	SweepEvery time.Duration
	// TouchEvery limits how often a token's last use is written (default 1 minute).
	TouchEvery time.Duration
	// MaxBatchAlerts (default 1000) and MaxBatchBytes (default 8 MiB,
	// after decompression) bound one ingest batch.
	MaxBatchAlerts int
	MaxBatchBytes  int64
	// IngestRate limits each cluster's ingest requests (alert batches and
	// health reports) per second, with bursts of IngestBurst (defaults 100
	// and 400; a negative rate disables the limit). Refused requests get
	// 429 with Retry-After.
	IngestRate  float64
	IngestBurst int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Server is the hub's HTTP API. It is an http.Handler.
type Server struct {
	cfg    Config
	st     store.Store
	log    *slog.Logger
	authn  *auth.Authenticator
	mux    *http.ServeMux
	routes []*route
	m      *metrics
	limit  *clusterLimiter

	sinksMu sync.RWMutex
	sinks   []AlertSink
}

// AddSink subscribes a sink to committed alerts (e.g. the portal's live
// updates), in addition to Config.Sinks.
func (s *Server) AddSink(sink AlertSink) {
	s.sinksMu.Lock()
	s.sinks = append(s.sinks, sink)
	s.sinksMu.Unlock()
}

func (s *Server) currentSinks() []AlertSink {
	s.sinksMu.RLock()
	defer s.sinksMu.RUnlock()
	return s.sinks
}

type metrics struct {
	requests       *prometheus.CounterVec
	latency        *prometheus.HistogramVec
	ingestAlerts   *prometheus.CounterVec
	ingestBatches  *prometheus.CounterVec
	heartbeats     prometheus.Counter
	sweeps         *prometheus.CounterVec
	sweepChanged   prometheus.Counter
	publishedAlert prometheus.Counter
}

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_hub_http_requests_total", Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "vigil_hub_http_request_duration_seconds", Help: "HTTP request latency by route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route"}),
		ingestAlerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_hub_ingest_alerts_total", Help: "Alerts ingested by result (inserted, updated, unchanged, suppressed).",
		}, []string{"result"}),
		ingestBatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_hub_ingest_batches_total", Help: "Ingest batches by outcome (committed, rejected, failed).",
		}, []string{"outcome"}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_hub_heartbeats_total", Help: "Heartbeats recorded.",
		}),
		sweeps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_hub_connectivity_sweeps_total", Help: "Connectivity sweep attempts by outcome (ran, skipped: another replica ran it, failed).",
		}, []string{"outcome"}),
		sweepChanged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_hub_connectivity_changes_total", Help: "Clusters whose connectivity status the sweep changed.",
		}),
		publishedAlert: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_hub_alerts_published_total", Help: "Committed alerts handed to alert sinks.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.ingestAlerts, m.ingestBatches, m.heartbeats, m.sweeps, m.sweepChanged, m.publishedAlert} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register hub metrics: %w (create one Server per registry)", err)
		}
	}
	return m, nil
}

// New returns a hub server over st.
func New(cfg Config, st store.Store) (*Server, error) {
	if st == nil {
		return nil, errors.New("hub: no store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.OfflineAfter <= 0 {
		cfg.OfflineAfter = 15 * time.Minute
	}
	if cfg.ExpireAfter <= 0 {
		cfg.ExpireAfter = 30 * 24 * time.Hour
	}
	if cfg.ExpireAfter < cfg.OfflineAfter {
		return nil, fmt.Errorf("hub: expire-after %s is shorter than offline-after %s: a cluster must go Offline before it expires", cfg.ExpireAfter, cfg.OfflineAfter)
	}
	if cfg.UndeliveredAfter <= 0 {
		cfg.UndeliveredAfter = 48 * time.Hour
	}
	if cfg.SweepEvery <= 0 {
		cfg.SweepEvery = 30 * time.Second
	}
	if cfg.MaxBatchAlerts <= 0 {
		cfg.MaxBatchAlerts = 1000
	}
	if cfg.MaxBatchBytes <= 0 {
		cfg.MaxBatchBytes = 8 << 20
	}
	if cfg.IngestRate == 0 {
		cfg.IngestRate = 100
	}
	if cfg.IngestBurst <= 0 {
		cfg.IngestBurst = 400
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, st: st, log: cfg.Logger, m: m,
		authn: auth.NewAuthenticator(st, cfg.Logger, cfg.Now, cfg.TouchEvery),
		mux:   http.NewServeMux(),
		limit: newClusterLimiter(cfg.IngestRate, cfg.IngestBurst),
		sinks: append([]AlertSink(nil), cfg.Sinks...),
	}
	s.routes = s.routeTable()
	for _, rt := range s.routes {
		s.mux.Handle(rt.method+" "+rt.path, s.wrap(rt))
	}
	return s, nil
}

// Mount serves h for requests matching pattern (http.ServeMux syntax, e.g.
// "/portal/" or "GET /{$}") beside the API routes, e.g. the portal. A
// pattern that overlaps an API route panics, as http.ServeMux does.
func (s *Server) Mount(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
}

// Authenticator returns the bearer-token authenticator the API uses, so a
// mounted handler (the portal) authenticates and authorizes exactly as the
// API does.
func (s *Server) Authenticator() *auth.Authenticator { return s.authn }

// Handler returns the server's http.Handler (the Server itself).
func (s *Server) Handler() http.Handler { return s }

// Routes lists the registered patterns ("GET /path/{param}").
func (s *Server) Routes() []string {
	out := make([]string, 0, len(s.routes))
	for _, rt := range s.routes {
		out = append(out, rt.method+" "+rt.path)
	}
	sort.Strings(out)
	return out
}

// Run does the hub's background work until ctx ends: the connectivity
// sweep every SweepEvery, under store.RunExclusive so that one replica of
// several sweeps at a time.
func (s *Server) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.SweepEvery)
	defer t.Stop()
	for {
		if _, _, err := s.SweepOnce(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("connectivity sweep failed; retrying next period", "err", err, "every", s.cfg.SweepEvery)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// SweepOnce runs one connectivity sweep if no other replica runs one now.
// It reports how many clusters changed and whether it ran.
func (s *Server) SweepOnce(ctx context.Context) (int, bool, error) {
	var changed int
	ran, err := s.st.RunExclusive(ctx, "connectivity-sweep", func(ctx context.Context) error {
		now := s.cfg.Now()
		n, err := s.st.SweepConnectivity(ctx, now.Add(-s.cfg.OfflineAfter), now.Add(-s.cfg.ExpireAfter))
		changed = n
		if err != nil {
			return err
		}
		// Expired also when the agent's credential ran out (not renewed).
		n, err = s.st.ExpireByCredential(ctx, now)
		changed += n
		if err != nil {
			return err
		}
		failed, err := s.st.FailUndelivered(ctx, now.Add(-s.cfg.UndeliveredAfter), store.ExtensionStatus{
			Code: "NotDelivered", Level: "Error", DisplayStatus: store.ProvisioningFailed, Time: now.UTC(),
			Message: fmt.Sprintf("the desired state could not be delivered to the cluster for %s: its agent did not apply it (is the cluster Connected? `vigil cluster show`); it is applied once the agent is back", s.cfg.UndeliveredAfter),
		})
		if failed > 0 {
			s.log.Warn("extensions failed: their desired state was not delivered", "extensions", failed, "after", s.cfg.UndeliveredAfter)
		}
		return err
	})
	switch {
	case err != nil:
		s.m.sweeps.WithLabelValues("failed").Inc()
		return 0, ran, fmt.Errorf("connectivity sweep: %w", err)
	case !ran:
		s.m.sweeps.WithLabelValues("skipped").Inc()
	default:
		s.m.sweeps.WithLabelValues("ran").Inc()
		s.m.sweepChanged.Add(float64(changed))
		if changed > 0 {
			s.log.Info("connectivity sweep changed clusters", "changed", changed)
		}
	}
	return changed, ran, nil
}

// ServeHTTP serves the API. Unknown paths and methods get ARM-style errors.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := s.mux.Handler(r)
	if pattern != "" {
		s.mux.ServeHTTP(w, r) // sets the path values
		return
	}
	// Find out whether the path exists for another method (405) or not at all (404).
	probe := &statusProbe{header: http.Header{}}
	h.ServeHTTP(probe, r)
	start := time.Now()
	if probe.code == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", probe.header.Get("Allow"))
		writeError(w, apiErr(http.StatusMethodNotAllowed, "MethodNotAllowed",
			"%s is not supported on %s; allowed: %s (see /openapi.json)", r.Method, r.URL.Path, probe.header.Get("Allow")))
		s.observe("unmatched", http.StatusMethodNotAllowed, start)
		return
	}
	writeError(w, apiErr(http.StatusNotFound, "NotFound", "no API route matches %s %s; the routes are listed in /openapi.json", r.Method, r.URL.Path))
	s.observe("unmatched", http.StatusNotFound, start)
}

type statusProbe struct {
	header http.Header
	code   int
}

func (p *statusProbe) Header() http.Header         { return p.header }
func (p *statusProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *statusProbe) WriteHeader(code int)        { p.code = code }

func (s *Server) observe(route string, code int, start time.Time) {
	s.m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	s.m.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
}

// statusWriter records the status code written.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// handlerFunc is an API handler: it writes its response and returns nil,
// or returns an error that wrap turns into an ARM error response.
type handlerFunc func(w http.ResponseWriter, r *http.Request, p auth.Principal) error

// wrap adds metrics, api-version checking and authentication to a route.
func (s *Server) wrap(rt *route) http.Handler {
	label := rt.method + " " + rt.path
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if sw.code == 0 {
				sw.code = http.StatusOK
			}
			s.observe(label, sw.code, start)
		}()
		if rt.arm {
			if v := r.URL.Query().Get("api-version"); v != "" && v != APIVersion {
				writeError(sw, apiErr(http.StatusBadRequest, "InvalidApiVersion",
					"api-version %q is not supported; use api-version=%s or omit it", v, APIVersion))
				return
			}
		}
		var p auth.Principal
		if rt.token != tokenNone {
			var err error
			p, err = s.authn.Authenticate(r.Context(), r.Header.Get("Authorization"))
			if err != nil {
				s.fail(sw, r, err)
				return
			}
		}
		if err := rt.h(sw, r, p); err != nil {
			s.fail(sw, r, err)
		}
	})
}

// apiError is an error response.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.message }

func apiErr(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *apiError {
	return apiErr(http.StatusBadRequest, "InvalidRequestContent", format, args...)
}

// fail writes err as an ARM error. Store failures other than not-found and
// conflict are 503 (retryable) and logged; their details are not returned.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	var au *auth.Error
	switch {
	case errors.As(err, &ae):
		writeError(w, ae)
	case errors.As(err, &au):
		if au.Status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vigil"`)
		}
		writeError(w, &apiError{status: au.Status, code: au.Code, message: au.Message})
	case errors.Is(err, context.Canceled):
		writeError(w, apiErr(499, "RequestCanceled", "the client went away"))
	default:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, apiErr(http.StatusServiceUnavailable, "ServiceUnavailable",
			"the hub could not complete the request (storage unavailable or failing); retry later, and check the hub's log and /readyz"))
	}
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, map[string]any{"error": map[string]string{"code": e.code, "message": e.message}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

// notFound maps store.ErrNotFound to a 404 with msg; other errors pass.
func notFound(err error, format string, args ...any) error {
	if errors.Is(err, store.ErrNotFound) {
		return apiErr(http.StatusNotFound, "ResourceNotFound", format, args...)
	}
	return err
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request, _ auth.Principal) error {
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "status": "ok"})
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request, _ auth.Principal) error {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	if err := s.st.Ping(ctx); err != nil {
		s.log.Warn("readiness: store unreachable", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ok": false, "status": "store unreachable",
			"message": "the hub cannot reach its database: " + err.Error() + "; check --db and the database server"})
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "status": "ready"})
	return nil
}

func (s *Server) metricsHandler() handlerFunc {
	h := promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{Registry: s.cfg.Registry})
	return func(w http.ResponseWriter, r *http.Request, _ auth.Principal) error {
		h.ServeHTTP(w, r)
		return nil
	}
}

// authorize returns nil or the 403 explaining the refusal.
func authorize(p auth.Principal, a auth.Action, id string) error {
	return auth.Authorize(p, a, id)
}

// splitList splits a comma-separated query value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

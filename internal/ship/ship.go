// Package ship delivers the sensor's alerts from the outbox to the hub
// (POST /ingest/v1/alerts, see the ingest protocol) and reports the
// sensor's health (POST /ingest/v1/health).
//
// Delivery is at-least-once: a batch is acknowledged in the outbox only
// after the hub answered 200, which it sends only after its store
// committed; anything else leaves the batch queued. Network errors, 5xx,
// 408 and 429 are retried with exponential backoff and full jitter
// (honouring Retry-After). A batch the hub rejects permanently (another 4xx)
// is written to the dead-letter file in the outbox directory, counted and
// logged, and the shipper moves on. 401 and 403 are not the batch's fault
// (the token is wrong, revoked or for another cluster): they are retried at
// the longest backoff and logged as errors, so that alerts are not thrown
// away while an operator fixes the token.
//
// Every failure to reach the hub is a slog warning (the first one, then one
// every 30 s with the count), a vigil_ship_failures_total{reason} increment
// and visible in Status.
package ship

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sec/vigil/internal/outbox"
	"github.com/vigil-sec/vigil/internal/store"
)

// Paths of the ingest protocol.
const (
	AlertsPath = "/ingest/v1/alerts"
	HealthPath = "/ingest/v1/health"
)

// Defaults and limits of Config.
const (
	DefaultBatchSize      = 500
	MaxBatchSize          = 1000 // the hub's limit per batch
	DefaultMaxBatchBytes  = 4 << 20
	MaxBatchBytes         = 7 << 20 // alerts' JSON; the hub accepts 8 MiB bodies
	DefaultBackoffBase    = 200 * time.Millisecond
	DefaultBackoffMax     = 30 * time.Second
	DefaultRequestTimeout = 30 * time.Second
	DefaultStopTimeout    = 10 * time.Second
	DefaultLogEvery       = 30 * time.Second
	// DeadLetterFile is the dead-letter file's name in the outbox directory.
	DeadLetterFile = "dead-letter.jsonl"
	// DeadLetterMaxBytes: a larger dead-letter file is renamed to
	// DeadLetterFile+".1" (replacing an older one) before the next write.
	DeadLetterMaxBytes = 64 << 20
	maxRetryAfter      = 10 * time.Minute
)

// Config configures a Shipper.
type Config struct {
	// URL is the hub's base URL, e.g. https://hub.example:8443. http:// is
	// accepted only for a loopback host.
	URL string
	// Token is the sensor token (Authorization: Bearer).
	Token string
	// Cluster is the connected cluster's ARM id; Node this node's name.
	Cluster string
	Node    string
	// CAPEM, or else the file CAFile, holds the CA certificate(s) the hub's
	// certificate must be signed by: exactly these are trusted (pinning).
	// With neither, the system's roots are trusted.
	CAPEM  []byte
	CAFile string
	// BatchSize is the most alerts per request (default 500, at most 1000).
	BatchSize int
	// MaxBatchBytes bounds the alerts' JSON per request (default 4 MiB).
	MaxBatchBytes int
	// BackoffBase and BackoffMax shape the retry backoff (200 ms, 30 s).
	BackoffBase, BackoffMax time.Duration
	// RequestTimeout bounds one request (default 30 s).
	RequestTimeout time.Duration
	// StopTimeout is how long Run keeps delivering after its context is
	// cancelled (default 10 s); what is left stays in the outbox.
	StopTimeout time.Duration
	// LogEvery is the interval of repeated failure warnings (default 30 s).
	LogEvery time.Duration
	// DisableGzip sends uncompressed bodies.
	DisableGzip bool
	// UserAgent defaults to "vigil-sensor".
	UserAgent string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer, if set, receives the shipper's metrics.
	Registerer prometheus.Registerer
}

// Status is what the sensor can show about delivery.
type Status struct {
	Hub                 string    `json:"hub"`
	LastSuccess         time.Time `json:"lastSuccess,omitzero"`
	LastError           string    `json:"lastError,omitempty"`
	LastErrorAt         time.Time `json:"lastErrorAt,omitzero"`
	LastErrorReason     string    `json:"lastErrorReason,omitempty"`
	ConsecutiveFailures int       `json:"consecutiveFailures"`
	// Backlog is the number of alerts queued in the outbox, BacklogBytes their size.
	Backlog      uint64 `json:"backlog"`
	BacklogBytes int64  `json:"backlogBytes"`
	Sent         uint64 `json:"sent"`         // alerts the hub acknowledged
	DeadLettered uint64 `json:"deadLettered"` // alerts the hub rejected permanently
	// OutboxDropped counts alerts lost because the outbox was full.
	OutboxDropped uint64 `json:"outboxDropped"`
}

// Shipper moves alerts from an outbox to the hub.
type Shipper struct {
	cfg    Config
	ob     *outbox.Outbox
	client *http.Client
	base   *url.URL
	pinned bool
	log    *slog.Logger

	mu        sync.Mutex
	st        Status
	batchSize int // lowered after 413
	alertsLog failureLog
	healthLog failureLog

	failures       *prometheus.CounterVec
	healthFailures *prometheus.CounterVec
	sentAlerts     prometheus.Counter
	sentBatches    prometheus.Counter
	deadAlerts     prometheus.Counter
	deadBatches    prometheus.Counter
	healthSent     prometheus.Counter
	requestSeconds prometheus.Histogram
	lastSuccess    prometheus.Gauge
}

// New checks cfg and builds a Shipper over ob.
func New(cfg Config, ob *outbox.Outbox) (*Shipper, error) {
	if cfg.URL == "" {
		return nil, errors.New("ship: no hub URL; set the hub address (https://host:port)")
	}
	u, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("ship: hub URL %q is not a URL like https://hub.example:8443: %v", cfg.URL, err)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return nil, fmt.Errorf("ship: hub URL %s uses plain http to a non-loopback host; alerts and the token must travel over https — use https://%s", cfg.URL, u.Host)
		}
	default:
		return nil, fmt.Errorf("ship: hub URL %s: scheme %q is not https", cfg.URL, u.Scheme)
	}
	if cfg.Token == "" {
		return nil, errors.New("ship: no sensor token; create one on the hub for this cluster and pass it to the sensor")
	}
	if cfg.Cluster == "" {
		return nil, errors.New("ship: no cluster id; pass the connected cluster's ARM id (/subscriptions/.../connectedClusters/NAME)")
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	cfg.BatchSize = min(cfg.BatchSize, MaxBatchSize)
	if cfg.MaxBatchBytes <= 0 {
		cfg.MaxBatchBytes = DefaultMaxBatchBytes
	}
	cfg.MaxBatchBytes = min(cfg.MaxBatchBytes, MaxBatchBytes)
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = DefaultBackoffBase
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = DefaultBackoffMax
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	if cfg.LogEvery <= 0 {
		cfg.LogEvery = DefaultLogEvery
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "vigil-sensor"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	pem := cfg.CAPEM
	if pem == nil && cfg.CAFile != "" {
		if pem, err = os.ReadFile(cfg.CAFile); err != nil {
			return nil, fmt.Errorf("ship: read the hub CA file: %w (pass the PEM file of the CA that issued the hub's certificate)", err)
		}
	}
	if pem != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ship: the hub CA %s holds no PEM certificate; pass the CA certificate in PEM form (-----BEGIN CERTIFICATE-----)", caName(cfg))
		}
		tlsConf.RootCAs = pool // only this CA: no system roots
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: cfg.RequestTimeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   2,
		ForceAttemptHTTP2:     true,
	}
	s := &Shipper{
		cfg:  cfg,
		ob:   ob,
		base: u,
		client: &http.Client{Transport: tr, Timeout: cfg.RequestTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		pinned:    pem != nil,
		log:       cfg.Logger.With("component", "ship", "hub", u.String()),
		batchSize: cfg.BatchSize,
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_ship_failures_total", Help: "Failed attempts to deliver alerts to the hub, by reason.",
		}, []string{"reason"}),
		healthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_ship_health_failures_total", Help: "Failed health reports to the hub, by reason.",
		}, []string{"reason"}),
		sentAlerts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_ship_alerts_sent_total", Help: "Alerts the hub acknowledged (committed).",
		}),
		sentBatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_ship_batches_sent_total", Help: "Alert batches the hub acknowledged.",
		}),
		deadAlerts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_ship_dead_lettered_alerts_total", Help: "Alerts the hub rejected permanently, written to the dead-letter file.",
		}),
		deadBatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_ship_dead_lettered_batches_total", Help: "Batches the hub rejected permanently, written to the dead-letter file.",
		}),
		healthSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_ship_health_reports_total", Help: "Health reports the hub accepted.",
		}),
		requestSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "vigil_ship_request_seconds", Help: "Duration of alert batch requests to the hub, whatever their outcome.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_ship_last_success_timestamp_seconds", Help: "Unix time of the last batch the hub acknowledged.",
		}),
	}
	s.st.Hub = u.String()
	for _, r := range allReasons {
		s.failures.WithLabelValues(r)
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{s.failures, s.healthFailures, s.sentAlerts, s.sentBatches,
			s.deadAlerts, s.deadBatches, s.healthSent, s.requestSeconds, s.lastSuccess} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("ship: register metrics: %w", err)
			}
		}
	}
	return s, nil
}

func caName(cfg Config) string {
	if cfg.CAFile != "" {
		return cfg.CAFile
	}
	return "(given PEM)"
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Failure reasons (the reason label of vigil_ship_failures_total).
const (
	ReasonNetwork  = "network"   // connect/DNS/reset
	ReasonTimeout  = "timeout"   // no answer in time
	ReasonTLS      = "tls"       // certificate not trusted, wrong name, not TLS
	ReasonServer   = "http_5xx"  // hub error, retried
	ReasonThrottle = "http_429"  // retried, honouring Retry-After
	ReasonTimedOut = "http_408"  // retried
	ReasonAuth     = "auth"      // 401/403: token problem, retried slowly
	ReasonRejected = "rejected"  // other 4xx: dead-lettered
	ReasonTooLarge = "too_large" // 413: batch split
	ReasonOther    = "http_other"
	ReasonOutbox   = "outbox" // reading the outbox failed
)

var allReasons = []string{ReasonNetwork, ReasonTimeout, ReasonTLS, ReasonServer, ReasonThrottle,
	ReasonTimedOut, ReasonAuth, ReasonRejected, ReasonTooLarge, ReasonOther, ReasonOutbox}

// Status reports delivery state; safe to call at any time.
func (s *Shipper) Status() Status {
	s.mu.Lock()
	st := s.st
	s.mu.Unlock()
	obs := s.ob.Stats()
	st.Backlog, st.BacklogBytes, st.OutboxDropped = obs.Records, obs.Bytes, obs.Dropped
	return st
}

type outcome int

const (
	delivered outcome = iota
	retry
	permanent
	tooLarge
)

type result struct {
	outcome    outcome
	reason     string
	err        error // what went wrong, for logs and Status
	status     int
	hubCode    string
	hubMessage string
	retryAfter time.Duration
	accepted   int
}

type batch struct {
	id   string
	recs []outbox.Record
	body []byte // uncompressed JSON
}

func (s *Shipper) newBatch(recs []outbox.Record) (*batch, error) {
	b := &batch{id: newUUID(), recs: recs}
	var buf bytes.Buffer
	head, err := json.Marshal(struct {
		Cluster string `json:"cluster"`
		Node    string `json:"node"`
		BatchID string `json:"batchId"`
	}{s.cfg.Cluster, s.cfg.Node, b.id})
	if err != nil {
		return nil, fmt.Errorf("encode batch header: %w", err)
	}
	buf.Write(head[:len(head)-1])
	buf.WriteString(`,"alerts":[`)
	for i, r := range recs {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(r.Data)
	}
	buf.WriteString("]}")
	b.body = buf.Bytes()
	return b, nil
}

// Run delivers alerts until ctx is cancelled, then keeps delivering for up
// to StopTimeout without retrying; whatever is left stays in the outbox.
func (s *Shipper) Run(ctx context.Context) error {
	// Requests outlive ctx by up to StopTimeout so that stopping does not
	// abort a batch the hub is committing.
	hard, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHard()
	stopHard := context.AfterFunc(ctx, func() {
		time.AfterFunc(s.cfg.StopTimeout, cancelHard)
	})
	defer stopHard()

	var cur *batch
	attempt := 0
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	for {
		stopping := ctx.Err() != nil
		if hard.Err() != nil {
			return s.stopped()
		}
		if cur == nil {
			recs, err := s.ob.PeekBytes(s.currentBatchSize(), s.cfg.MaxBatchBytes)
			if errors.Is(err, outbox.ErrClosed) {
				return fmt.Errorf("ship: the outbox was closed while the shipper ran; stop the shipper before closing the outbox: %w", err)
			}
			if err != nil {
				s.failed(result{reason: ReasonOutbox, err: fmt.Errorf("read the outbox: %w", err)})
				if stopping || !sleep(ctx, s.backoff(attempt+1, 0)) {
					return s.stopped()
				}
				attempt++
				continue
			}
			if len(recs) == 0 {
				if stopping {
					return s.stopped()
				}
				select {
				case <-ctx.Done():
				case <-s.ob.Notify():
				case <-poll.C:
				}
				continue
			}
			if cur, err = s.newBatch(recs); err != nil {
				return err
			}
		}
		res := s.send(hard, cur)
		switch res.outcome {
		case delivered, permanent:
			if res.outcome == delivered {
				s.succeeded(cur, res)
			} else {
				s.deadLetter(cur, res)
			}
			err := s.ob.Ack(cur.recs[len(cur.recs)-1].Seq)
			id := cur.id
			cur, attempt = nil, 0
			if errors.Is(err, outbox.ErrClosed) {
				return fmt.Errorf("ship: the outbox was closed while the shipper ran; stop the shipper before closing the outbox: %w", err)
			}
			if err != nil {
				// The batch will be read and sent again (the hub
				// deduplicates it); do not spin while the disk fails.
				s.log.Error("the hub has the batch but the outbox could not record that; it will be sent again",
					"batchId", id, "err", err)
				if !stopping && !sleep(ctx, s.cfg.BackoffMax) {
					continue
				}
			}
		case tooLarge:
			s.failed(res)
			s.mu.Lock()
			s.batchSize = max(1, len(cur.recs)/2)
			s.mu.Unlock()
			s.log.Warn("the hub refused a batch as too large (413); sending smaller batches",
				"alerts", len(cur.recs), "bytes", len(cur.body), "newBatchSize", max(1, len(cur.recs)/2))
			cur = nil
		case retry:
			s.failed(res)
			attempt++
			if stopping {
				return s.stopped()
			}
			wait := s.backoff(attempt, res.retryAfter)
			if res.reason == ReasonAuth {
				wait = s.cfg.BackoffMax
			}
			if !sleep(ctx, wait) {
				continue // stopping: one more try without backoff, within StopTimeout
			}
		}
	}
}

func (s *Shipper) currentBatchSize() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.batchSize
}

// stopped logs what remains queued when Run returns.
func (s *Shipper) stopped() error {
	st := s.ob.Stats()
	if st.Records > 0 {
		s.log.Info("shipper stopped; undelivered alerts stay in the outbox and are sent on the next start",
			"queued", st.Records, "bytes", st.Bytes)
	}
	return nil
}

// sleep waits d or until ctx is done; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// backoff is the wait before retry number attempt (1-based): full jitter
// over base·2^(attempt-1) capped at max, or Retry-After when the hub gave one.
func (s *Shipper) backoff(attempt int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, maxRetryAfter)
	}
	ceil := s.cfg.BackoffMax
	if attempt < 31 {
		if c := s.cfg.BackoffBase << (attempt - 1); c > 0 && c < ceil {
			ceil = c
		}
	}
	return time.Duration(mrand.Int64N(int64(ceil) + 1))
}

// send posts one batch and classifies the answer.
func (s *Shipper) send(ctx context.Context, b *batch) result {
	body := b.body
	gz := !s.cfg.DisableGzip
	if gz {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		zw.Write(body)
		zw.Close()
		body = buf.Bytes()
	}
	start := time.Now()
	resp, err := s.post(ctx, AlertsPath, body, gz)
	defer func() { s.requestSeconds.Observe(time.Since(start).Seconds()) }()
	if err != nil {
		return s.transportError(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	res := result{status: resp.StatusCode}
	res.hubCode, res.hubMessage = hubError(data)
	switch c := resp.StatusCode; {
	case c == http.StatusOK:
		// Only the hub's acknowledgement counts: a bare 200 from a proxy
		// or a captive portal must not make the sensor forget alerts.
		var ack struct {
			Accepted *int `json:"accepted"`
		}
		if json.Unmarshal(data, &ack) != nil || ack.Accepted == nil {
			res.outcome, res.reason = retry, ReasonOther
			res.err = fmt.Errorf("the answer from %s was 200 but not the hub's acknowledgement (%q); check that the hub URL points at the vigil hub and not at a proxy or portal (alerts stay queued and are retried)",
				s.base.Host, truncate(data, 200))
			return res
		}
		res.accepted = *ack.Accepted
		res.outcome = delivered
	case c == http.StatusRequestTimeout:
		res.outcome, res.reason = retry, ReasonTimedOut
	case c == http.StatusTooManyRequests:
		res.outcome, res.reason = retry, ReasonThrottle
	case c >= 500:
		res.outcome, res.reason = retry, ReasonServer
	case c == http.StatusUnauthorized || c == http.StatusForbidden:
		res.outcome, res.reason = retry, ReasonAuth
	case c == http.StatusRequestEntityTooLarge && len(b.recs) > 1:
		res.outcome, res.reason = tooLarge, ReasonTooLarge
	case c >= 400:
		res.outcome, res.reason = permanent, ReasonRejected
	default:
		res.outcome, res.reason = retry, ReasonOther
	}
	if res.outcome == retry {
		res.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"))
	}
	if res.outcome != delivered {
		res.err = s.statusError(res)
	}
	return res
}

func (s *Shipper) post(ctx context.Context, path string, body []byte, gz bool) (*http.Response, error) {
	u := s.base.JoinPath(path).String()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("build request to %s: %w", u, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}
	req.Header.Set("Authorization", "Bearer "+s.cfg.Token)
	req.Header.Set("User-Agent", s.cfg.UserAgent)
	return s.client.Do(req)
}

// statusError says what the hub answered and what to do about it.
func (s *Shipper) statusError(res result) error {
	said := res.hubMessage
	if res.hubCode != "" {
		said = res.hubCode + ": " + said
	}
	if said == "" {
		said = http.StatusText(res.status)
	}
	var todo string
	switch res.reason {
	case ReasonAuth:
		todo = "the sensor token is missing, wrong, revoked or belongs to another cluster; issue a sensor token for cluster " + s.cfg.Cluster + " on the hub and restart the sensor with it (alerts stay queued meanwhile)"
	case ReasonServer, ReasonTimedOut:
		todo = "the hub is failing; check the hub's logs and its database (alerts stay queued and are retried)"
	case ReasonThrottle:
		todo = "the hub is overloaded and asked the sensor to slow down (alerts stay queued and are retried)"
	case ReasonRejected:
		todo = "the hub will never accept this batch; it was moved to the dead-letter file. Make the sensor and hub versions match, and report the hub's message if they already do"
	case ReasonTooLarge:
		todo = "sending smaller batches"
	default:
		todo = "check that the hub URL points at the hub itself (no redirects)"
	}
	return fmt.Errorf("hub answered %d (%s): %s", res.status, said, todo)
}

func hubError(body []byte) (code, message string) {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && (e.Error.Code != "" || e.Error.Message != "") {
		return e.Error.Code, e.Error.Message
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 512 {
		msg = msg[:512] + "…"
	}
	return "", msg
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// transportError classifies a failure to get any answer from the hub and
// says what to do.
func (s *Shipper) transportError(err error) result {
	res := result{outcome: retry, reason: ReasonNetwork}
	host := s.base.Host
	var unknown x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var recErr tls.RecordHeaderError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &unknown):
		res.reason = ReasonTLS
		subj, issuer := "", ""
		if unknown.Cert != nil {
			subj, issuer = unknown.Cert.Subject.String(), unknown.Cert.Issuer.String()
		}
		if s.pinned {
			res.err = fmt.Errorf("the hub's certificate at %s (subject %q, issuer %q) is not signed by the pinned CA %s; give the sensor the CA that issued the hub's certificate, or find what intercepts TLS between this node and the hub: %w",
				host, subj, issuer, caName(s.cfg), err)
		} else {
			res.err = fmt.Errorf("the hub's certificate at %s (subject %q, issuer %q) is not signed by a CA this system trusts; give the sensor the hub's CA file: %w",
				host, subj, issuer, err)
		}
	case errors.As(err, &hostErr):
		res.reason = ReasonTLS
		res.err = fmt.Errorf("the hub's certificate is not valid for %s; use a hub URL whose host name is in the certificate, or reissue the certificate: %w", host, err)
	case errors.As(err, &invalid):
		res.reason = ReasonTLS
		res.err = fmt.Errorf("the hub's certificate at %s is invalid (expired or not yet valid?); renew it on the hub: %w", host, err)
	case errors.As(err, &recErr):
		res.reason = ReasonTLS
		res.err = fmt.Errorf("%s does not speak TLS (is it a plain-http port?); use the hub's https address: %w", host, err)
	case errors.As(err, &dnsErr):
		res.err = fmt.Errorf("cannot resolve the hub's host name %s; check the hub URL and this node's DNS: %w", s.base.Hostname(), err)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || isTimeout(err):
		res.reason = ReasonTimeout
		res.err = fmt.Errorf("the hub at %s did not answer in time; check the network path and the hub's load (vigil preflight names the failing endpoint): %w", host, err)
	case errors.Is(err, context.Canceled):
		res.err = fmt.Errorf("request to the hub at %s cancelled while stopping: %w", host, err)
	default:
		res.err = fmt.Errorf("cannot reach the hub at %s; check that it runs and that this node may connect to it (firewall, proxy; vigil preflight names the failing endpoint): %w", host, err)
	}
	if res.err == nil {
		res.err = err
	}
	return res
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (s *Shipper) succeeded(b *batch, res result) {
	now := time.Now()
	s.sentAlerts.Add(float64(len(b.recs)))
	s.sentBatches.Inc()
	s.lastSuccess.Set(float64(now.UnixNano()) / 1e9)
	s.mu.Lock()
	s.st.LastSuccess = now
	s.st.ConsecutiveFailures = 0
	s.st.Sent += uint64(len(b.recs))
	recovered, since := s.alertsLog.reset()
	s.mu.Unlock()
	if recovered > 0 {
		s.log.Info("delivering alerts to the hub again", "failedAttempts", recovered, "unreachableFor", now.Sub(since).Round(time.Second))
	}
	if res.accepted != 0 && res.accepted != len(b.recs) {
		s.log.Warn("the hub acknowledged a batch but counted a different number of alerts", "batchId", b.id, "sent", len(b.recs), "accepted", res.accepted)
	}
}

func (s *Shipper) failed(res result) {
	s.failures.WithLabelValues(res.reason).Inc()
	now := time.Now()
	s.mu.Lock()
	s.st.LastError, s.st.LastErrorAt, s.st.LastErrorReason = res.err.Error(), now, res.reason
	s.st.ConsecutiveFailures++
	first, n, since, ok := s.alertsLog.note(now, s.cfg.LogEvery)
	s.mu.Unlock()
	if !ok {
		return
	}
	st := s.ob.Stats()
	level := slog.LevelWarn
	if res.reason == ReasonAuth || res.reason == ReasonTLS || res.reason == ReasonOutbox {
		level = slog.LevelError // needs an operator
	}
	if first {
		s.log.Log(context.Background(), level, "cannot deliver alerts to the hub; they stay queued in the outbox and are retried",
			"reason", res.reason, "err", res.err, "queued", st.Records)
		return
	}
	s.log.Log(context.Background(), level, "still cannot deliver alerts to the hub; they stay queued in the outbox and are retried",
		"reason", res.reason, "err", res.err, "failedAttempts", n, "failingFor", now.Sub(since).Round(time.Second),
		"queued", st.Records, "droppedByFullOutbox", st.Dropped)
}

// failureLog rate-limits failure warnings: the first, then one per interval.
type failureLog struct {
	count   int
	since   time.Time
	lastLog time.Time
}

// note records a failure; it reports whether to log now, whether this is
// the first failure, and the count and start of the failure streak.
func (f *failureLog) note(now time.Time, every time.Duration) (first bool, count int, since time.Time, log bool) {
	f.count++
	if f.count == 1 {
		f.since, f.lastLog = now, now
		return true, 1, now, true
	}
	if now.Sub(f.lastLog) >= every {
		f.lastLog = now
		return false, f.count, f.since, true
	}
	return false, f.count, f.since, false
}

func (f *failureLog) reset() (count int, since time.Time) {
	count, since = f.count, f.since
	*f = failureLog{}
	return count, since
}

// deadLetter writes a permanently rejected batch to the dead-letter file.
func (s *Shipper) deadLetter(b *batch, res result) {
	s.failures.WithLabelValues(res.reason).Inc()
	s.deadAlerts.Add(float64(len(b.recs)))
	s.deadBatches.Inc()
	s.mu.Lock()
	s.st.DeadLettered += uint64(len(b.recs))
	s.st.LastError, s.st.LastErrorAt, s.st.LastErrorReason = res.err.Error(), time.Now(), res.reason
	s.mu.Unlock()
	path, err := s.writeDeadLetter(b, res)
	if err != nil {
		s.log.Error("the hub rejected a batch of alerts permanently and writing it to the dead-letter file failed; the alerts are lost",
			"status", res.status, "hubCode", res.hubCode, "hubMessage", res.hubMessage, "alerts", len(b.recs), "batchId", b.id, "err", err)
		return
	}
	s.log.Error("the hub rejected a batch of alerts permanently; it was written to the dead-letter file and will not be retried. Make the sensor and hub versions match; if they do, report the hub's message with the file",
		"status", res.status, "hubCode", res.hubCode, "hubMessage", res.hubMessage, "alerts", len(b.recs), "batchId", b.id, "file", path)
}

// DeadLetter is one line of the dead-letter file.
type DeadLetter struct {
	Time       time.Time         `json:"time"`
	Hub        string            `json:"hub"`
	Status     int               `json:"status"`
	HubCode    string            `json:"hubCode,omitempty"`
	HubMessage string            `json:"hubMessage,omitempty"`
	BatchID    string            `json:"batchId"`
	Cluster    string            `json:"cluster"`
	Node       string            `json:"node"`
	Alerts     []json.RawMessage `json:"alerts"`
}

func (s *Shipper) writeDeadLetter(b *batch, res result) (string, error) {
	path := s.ob.Dir() + string(os.PathSeparator) + DeadLetterFile
	dl := DeadLetter{Time: time.Now().UTC(), Hub: s.base.String(), Status: res.status, HubCode: res.hubCode,
		HubMessage: res.hubMessage, BatchID: b.id, Cluster: s.cfg.Cluster, Node: s.cfg.Node}
	for _, r := range b.recs {
		dl.Alerts = append(dl.Alerts, r.Data)
	}
	line, err := json.Marshal(dl)
	if err != nil {
		return path, fmt.Errorf("encode dead letter: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Size() > DeadLetterMaxBytes {
		if err := os.Rename(path, path+".1"); err != nil {
			return path, fmt.Errorf("rotate dead-letter file %s: %w", path, err)
		}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return path, fmt.Errorf("open dead-letter file %s: %w", path, err)
	}
	defer f.Close()
	if _, err := f.Write(append(line, '\n')); err != nil {
		return path, fmt.Errorf("write dead-letter file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return path, fmt.Errorf("sync dead-letter file %s: %w", path, err)
	}
	return path, nil
}

// healthBody is the wire form of a health report: the store's type plus
// the cluster's ARM id.
type healthBody struct {
	store.SensorHealth
	ClusterID string `json:"clusterId"`
}

// SendHealth posts one health report. Node, ReportedAt and OutboxDropped
// are filled in when h leaves them zero.
func (s *Shipper) SendHealth(ctx context.Context, h store.SensorHealth) error {
	if h.Node == "" {
		h.Node = s.cfg.Node
	}
	if h.ReportedAt.IsZero() {
		h.ReportedAt = time.Now().UTC()
	}
	if h.OutboxDropped == 0 {
		h.OutboxDropped = s.ob.Dropped()
	}
	body, err := json.Marshal(healthBody{SensorHealth: h, ClusterID: s.cfg.Cluster})
	if err != nil {
		return fmt.Errorf("encode health report: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	resp, err := s.post(ctx, HealthPath, body, false)
	var res result
	if err != nil {
		res = s.transportError(err)
	} else {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode/100 == 2 {
			s.healthSent.Inc()
			s.mu.Lock()
			n, since := s.healthLog.reset()
			s.mu.Unlock()
			if n > 0 {
				s.log.Info("health reports reach the hub again", "failedAttempts", n, "failingFor", time.Since(since).Round(time.Second))
			}
			return nil
		}
		res = result{status: resp.StatusCode, reason: ReasonOther}
		res.hubCode, res.hubMessage = hubError(data)
		switch c := resp.StatusCode; {
		case c >= 500:
			res.reason = ReasonServer
		case c == 401 || c == 403:
			res.reason = ReasonAuth
		case c == 429:
			res.reason = ReasonThrottle
		case c == 408:
			res.reason = ReasonTimedOut
		case c >= 400:
			res.reason = ReasonRejected
		}
		res.err = s.statusError(res)
		if res.reason == ReasonRejected {
			res.err = fmt.Errorf("hub rejected the health report with %d (%s %s); make the sensor and hub versions match", res.status, res.hubCode, res.hubMessage)
		}
	}
	s.healthFailures.WithLabelValues(res.reason).Inc()
	s.mu.Lock()
	first, n, since, log := s.healthLog.note(time.Now(), s.cfg.LogEvery)
	s.mu.Unlock()
	if log {
		if first {
			s.log.Warn("cannot report health to the hub", "reason", res.reason, "err", res.err)
		} else {
			s.log.Warn("still cannot report health to the hub", "reason", res.reason, "err", res.err,
				"failedAttempts", n, "failingFor", time.Since(since).Round(time.Second))
		}
	}
	return res.err
}

// RunHealth reports health every interval (and once at start) until ctx
// is cancelled. A failed report is not retried: the next one replaces it.
func (s *Shipper) RunHealth(ctx context.Context, interval time.Duration, health func() store.SensorHealth) {
	if interval <= 0 {
		interval = 30 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		_ = s.SendHealth(ctx, health())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

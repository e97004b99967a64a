package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/pki"
	"github.com/vigil-sec/vigil/internal/store"
)

// Webhook payload formats.
const (
	FormatJSON  = "json"  // the vigil alert (store.Alert JSON)
	FormatFalco = "falco" // a Falco alert, as falcosidekick accepts it
)

// Webhook defaults and limits.
const (
	defaultWebhookTimeout = 10 * time.Second
	defaultRetries        = 3
	defaultBackoff        = time.Second
	maxBackoff            = 30 * time.Second
	maxRetryAfter         = time.Minute
)

// WebhookConfig configures a webhook output.
type WebhookConfig struct {
	URL     string
	Format  string            // json (default) or falco
	Headers map[string]string // sent with every request (e.g. Authorization)
	// Timeout of one attempt (default 10s).
	Timeout time.Duration
	// Retries after the first attempt on a network error, 408, 429 or 5xx
	// (default 3; 0 disables retries).
	Retries int
	// Backoff before the first retry (default 1s); it doubles per retry up
	// to 30s, with jitter (each wait is 50–100% of the nominal one). A
	// Retry-After header (seconds) lengthens a wait, up to one minute.
	Backoff time.Duration
	// TLS for https URLs (nil: system roots).
	TLS *tls.Config
}

// Webhook POSTs alerts as JSON.
type Webhook struct {
	name   string
	cfg    WebhookConfig
	target string // redacted URL for messages
	client *http.Client
	log    *slog.Logger
}

// NewWebhook returns a webhook notifier.
func NewWebhook(name string, cfg WebhookConfig, log *slog.Logger) (*Webhook, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &ConfigError{Output: name, Setting: "url", Problem: "not an http(s) URL: give the receiver's full address, e.g. https://falcosidekick.example.com:2801/"}
	}
	switch cfg.Format {
	case "":
		cfg.Format = FormatJSON
	case FormatJSON, FormatFalco:
	default:
		return nil, &ConfigError{Output: name, Setting: "format", Problem: fmt.Sprintf("%q is not a webhook format: use json (vigil's alert) or falco (for falcosidekick)", cfg.Format)}
	}
	for k := range cfg.Headers {
		if !validHeaderName(k) {
			return nil, &ConfigError{Output: name, Setting: "header." + k, Problem: "not a valid HTTP header name"}
		}
		if strings.ContainsAny(cfg.Headers[k], "\r\n") {
			return nil, &ConfigError{Output: name, Setting: "header." + k, Problem: "the value must be on one line"}
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultWebhookTimeout
	}
	if cfg.Retries < 0 {
		cfg.Retries = 0
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = defaultBackoff
	}
	if log == nil {
		log = slog.Default()
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.TLS != nil {
		tr.TLSClientConfig = cfg.TLS.Clone()
	}
	return &Webhook{
		name:   name,
		cfg:    cfg,
		target: redactURL(u),
		client: &http.Client{Transport: tr},
		log:    log.With("output", name),
	}, nil
}

func newWebhookFromConfig(name string, m map[string]string, opts Options) (Notifier, error) {
	s := newSettings(name, m)
	cfg := WebhookConfig{Headers: map[string]string{}}
	cfg.URL = s.str("url", "")
	if cfg.URL == "" {
		return nil, s.errorf("url", "missing: set it to the receiver's address, e.g. https://falcosidekick.example.com:2801/")
	}
	cfg.Format = strings.ToLower(s.str("format", FormatJSON))
	var err error
	if cfg.Timeout, err = s.duration("timeout", defaultWebhookTimeout, 100*time.Millisecond, 5*time.Minute); err != nil {
		return nil, err
	}
	if cfg.Retries, err = s.integer("retries", defaultRetries, 0, 20); err != nil {
		return nil, err
	}
	if cfg.Backoff, err = s.duration("backoff", defaultBackoff, time.Millisecond, maxBackoff); err != nil {
		return nil, err
	}
	ca, err := s.readFile("caFile")
	if err != nil {
		return nil, err
	}
	if ca != nil {
		if cfg.TLS, err = pki.ClientTLS(ca); err != nil {
			return nil, s.errorf("caFile", "%v", err)
		}
	}
	for k, v := range m {
		if h, ok := strings.CutPrefix(k, "header."); ok {
			s.used[k] = true
			if h == "" {
				return nil, s.errorf(k, "missing header name: write header.<Name>, e.g. header.Authorization")
			}
			cfg.Headers[h] = v
		}
	}
	if err := s.unknown("url", "format", "timeout", "retries", "backoff", "caFile", "header.<Name>"); err != nil {
		return nil, err
	}
	return NewWebhook(name, cfg, opts.Logger)
}

// Name implements Notifier.
func (w *Webhook) Name() string { return w.name }

// Notify POSTs the alert, retrying transient failures.
func (w *Webhook) Notify(ctx context.Context, a store.Alert) error {
	var (
		body []byte
		err  error
	)
	if w.cfg.Format == FormatFalco {
		body, err = json.Marshal(ToFalco(a))
	} else {
		body, err = json.Marshal(a)
	}
	if err != nil {
		return fmt.Errorf("webhook %q: encode alert %s: %w", w.name, a.ID, err)
	}
	attempts := w.cfg.Retries + 1
	var lastErr error
	for attempt := 1; ; attempt++ {
		retryAfter, err := w.post(ctx, a.ID, body)
		if err == nil {
			return nil
		}
		lastErr = err
		var perm *permanentError
		if errors.As(err, &perm) || attempt >= attempts || ctx.Err() != nil {
			break
		}
		wait := backoff(w.cfg.Backoff, attempt)
		if retryAfter > wait {
			wait = min(retryAfter, maxRetryAfter)
		}
		w.log.Warn("webhook delivery failed, retrying", "alert", a.ID, "attempt", attempt, "of", attempts, "retryIn", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("webhook %q: alert %s not delivered: %w (last error: %v)", w.name, a.ID, ctx.Err(), lastErr)
		case <-t.C:
		}
	}
	var perm *permanentError
	if errors.As(lastErr, &perm) {
		return fmt.Errorf("webhook %q: alert %s rejected: %w", w.name, a.ID, lastErr)
	}
	return fmt.Errorf("webhook %q: alert %s not delivered after %d attempts: %w", w.name, a.ID, attempts, lastErr)
}

// permanentError is a response that retrying cannot fix (4xx other than
// 408/429).
type permanentError struct{ msg string }

func (e *permanentError) Error() string { return e.msg }

// post makes one attempt. It returns the server's Retry-After, if any.
func (w *Webhook) post(ctx context.Context, alertID string, body []byte) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, &permanentError{msg: fmt.Sprintf("build request to %s: %v", w.target, err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "vigil-hub")
	req.Header.Set("X-Vigil-Alert-Id", alertID)
	for k, v := range w.cfg.Headers {
		req.Header.Set(k, v)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		// Do's error repeats the URL, which may hold a secret.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return 0, fmt.Errorf("POST %s: no response within %s (raise the timeout setting if the receiver is slow)", w.target, w.cfg.Timeout)
		}
		return 0, fmt.Errorf("POST %s: %w", w.target, err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // lets the connection be reused
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return 0, nil
	}
	msg := fmt.Sprintf("POST %s: %s", w.target, resp.Status)
	if s := strings.TrimSpace(oneLine(string(snippet))); s != "" {
		msg += ": " + s
	}
	switch {
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		return parseRetryAfter(resp.Header.Get("Retry-After")), errors.New(msg)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return 0, &permanentError{msg: msg + " (check the credentials in the output's header settings)"}
	default:
		return 0, &permanentError{msg: msg + " (the receiver refused the payload; check the url and format settings)"}
	}
}

// backoff is the wait before retry number attempt (1-based): base doubled
// per retry, capped, with jitter in [50%, 100%].
func backoff(base time.Duration, attempt int) time.Duration {
	d := base
	for i := 1; i < attempt && d < maxBackoff; i++ {
		d *= 2
	}
	d = min(d, maxBackoff)
	half := d / 2
	return half + rand.N(half+1)
}

func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return time.Until(t)
	}
	return 0
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r >= 0x7f || r <= ' ' || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", r) {
			return false
		}
	}
	return true
}

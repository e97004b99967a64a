package audit

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/vigil-sec/vigil/internal/event"
)

// WebhookConfig configures the audit webhook receiver.
type WebhookConfig struct {
	// Token, if set, is the bearer token the API server must send (the
	// `token` of the user in the webhook's kubeconfig).
	Token string
	// ClientNames, if set, accepts a sender presenting a client certificate
	// (verified by the server's TLS configuration against its client CA)
	// whose subject common name or a DNS SAN is one of these; an empty list
	// with RequireClientCert accepts any verified certificate.
	ClientNames []string
	// RequireClientCert accepts a verified client certificate as
	// authentication (see ClientNames).
	RequireClientCert bool
	// MaxBody bounds a request body (default 32 MiB; the API server's
	// default batch is 400 events).
	MaxBody int64
	// Deliver hands the events of one request on; it must not block (the
	// Pipeline's Offer queues or drops with a count). It returns how many
	// were accepted.
	Deliver func(evs []*event.Event) int
	Metrics *Metrics
	Logger  *slog.Logger
}

// Webhook is the http.Handler the API server's audit webhook backend posts
// audit.k8s.io/v1 EventLists to. A request is authenticated by the bearer
// token and/or a client certificate (401 otherwise), bounded in size (413),
// and answered 200 once its events were handed to Deliver. Undecodable
// items are counted and skipped; a body that is not an EventList is 400 —
// the API server logs it and does not retry it.
type Webhook struct {
	cfg   WebhookConfig
	token [sha256.Size]byte
	log   *slog.Logger
	m     *Metrics
}

// NewWebhook checks cfg.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	if cfg.Token == "" && !cfg.RequireClientCert && len(cfg.ClientNames) == 0 {
		return nil, errors.New("audit webhook: no sender authentication; pass a token file (--webhook-token-file) and/or a client CA (--webhook-client-ca)")
	}
	if cfg.Deliver == nil {
		return nil, errors.New("audit webhook: no Deliver function")
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 32 << 20
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	w := &Webhook{cfg: cfg, log: cfg.Logger, m: cfg.Metrics}
	if cfg.Token != "" {
		w.token = sha256.Sum256([]byte(cfg.Token))
	}
	return w, nil
}

func (w *Webhook) reply(rw http.ResponseWriter, code int, msg string) {
	w.m.WebhookRequests.WithLabelValues(strconv.Itoa(code)).Inc()
	if code == http.StatusUnauthorized {
		rw.Header().Set("WWW-Authenticate", `Bearer realm="vigil-audit"`)
	}
	rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rw.WriteHeader(code)
	_, _ = io.WriteString(rw, msg+"\n")
}

// ServeHTTP implements http.Handler.
func (w *Webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		w.reply(rw, http.StatusMethodNotAllowed, "the audit webhook accepts POST of an audit.k8s.io/v1 EventList")
		return
	}
	if !w.authenticated(r) {
		w.log.Warn("rejected an audit webhook request from an unauthenticated sender", "remote", r.RemoteAddr)
		w.reply(rw, http.StatusUnauthorized, "unauthenticated: send the bearer token configured for vigil's audit webhook or a trusted client certificate")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, w.cfg.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			w.m.skip(SkipOversize, 1)
			w.reply(rw, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes: lower the API server's --audit-webhook-batch-max-size", w.cfg.MaxBody))
			return
		}
		w.reply(rw, http.StatusBadRequest, "reading the body: "+err.Error())
		return
	}
	evs, skipped, err := ParseEventList(body, SourceWebhook)
	if err != nil {
		reason := SkipMalformed
		var se *SkipError
		if errors.As(err, &se) {
			reason = se.Reason
		}
		w.m.skip(reason, 1)
		w.log.Warn("rejected an audit webhook body", "remote", r.RemoteAddr, "err", err)
		w.reply(rw, http.StatusBadRequest, err.Error())
		return
	}
	for _, e := range skipped {
		reason := SkipMalformed
		var se *SkipError
		if errors.As(e, &se) {
			reason = se.Reason
		}
		w.m.skip(reason, 1)
	}
	accepted := 0
	if len(evs) > 0 {
		accepted = w.cfg.Deliver(evs)
	}
	w.reply(rw, http.StatusOK, fmt.Sprintf("accepted %d of %d events", accepted, len(evs)+len(skipped)))
}

func (w *Webhook) authenticated(r *http.Request) bool {
	if w.cfg.Token != "" {
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
			if subtle.ConstantTimeCompare(got[:], w.token[:]) == 1 {
				return true
			}
		}
	}
	if (w.cfg.RequireClientCert || len(w.cfg.ClientNames) > 0) && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		leaf := r.TLS.VerifiedChains[0][0]
		if len(w.cfg.ClientNames) == 0 {
			return true
		}
		if slices.Contains(w.cfg.ClientNames, leaf.Subject.CommonName) {
			return true
		}
		for _, n := range leaf.DNSNames {
			if slices.Contains(w.cfg.ClientNames, n) {
				return true
			}
		}
	}
	return false
}

// ServerTLS returns the TLS configuration of the webhook's HTTPS server:
// the server certificate, and, with a client CA, verification of client
// certificates the sender presents (optional at the TLS layer so a
// token-only sender still connects; the handler decides).
func ServerTLS(cert tls.Certificate, clientCAs *x509.CertPool) *tls.Config {
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAs != nil {
		c.ClientCAs = clientCAs
		c.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return c
}

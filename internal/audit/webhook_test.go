package audit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/event"
)

// testCA issues certificates for the webhook tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

func (ca *testCA) issue(t *testing.T, cn string, server bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// eventList is an EventList body with n SelfSubjectAccessReview events.
func eventList(n int) string {
	item := strings.Replace(ssarLine, `{"kind":"Event","apiVersion":"audit.k8s.io/v1",`, `{`, 1)
	items := make([]string, n)
	for i := range items {
		items[i] = item
	}
	return `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` + strings.Join(items, ",") + `]}`
}

type webhookEnv struct {
	srv    *httptest.Server
	ca     *testCA
	m      *Metrics
	mu     sync.Mutex
	events []*event.Event
}

func startWebhook(t *testing.T, cfg WebhookConfig) *webhookEnv {
	t.Helper()
	env := &webhookEnv{ca: newTestCA(t, "vigil-test-ca"), m: NewMetrics(nil)}
	cfg.Metrics = env.m
	if cfg.Deliver == nil {
		cfg.Deliver = func(evs []*event.Event) int {
			env.mu.Lock()
			defer env.mu.Unlock()
			env.events = append(env.events, evs...)
			return len(evs)
		}
	}
	h, err := NewWebhook(cfg)
	if err != nil {
		t.Fatal(err)
	}
	env.srv = httptest.NewUnstartedServer(h)
	env.srv.TLS = ServerTLS(env.ca.issue(t, "vigil-audit", true), env.ca.pool)
	env.srv.StartTLS()
	t.Cleanup(env.srv.Close)
	return env
}

func (env *webhookEnv) client(cert *tls.Certificate) *http.Client {
	c := &tls.Config{RootCAs: env.ca.pool}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: c}, Timeout: 10 * time.Second}
}

func post(t *testing.T, c *http.Client, url, token, body string) (int, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	res.Body.Close()
	return res.StatusCode, nil
}

func TestTheWebhookAcceptsOnlyAnAuthenticatedSender(t *testing.T) {
	env := startWebhook(t, WebhookConfig{Token: "s3cret-token", RequireClientCert: true, ClientNames: []string{"kube-apiserver-audit"}})
	good := env.ca.issue(t, "kube-apiserver-audit", false)
	otherName := env.ca.issue(t, "someone-else", false)
	cases := []struct {
		name  string
		cert  *tls.Certificate
		token string
		want  int
	}{
		{"the configured bearer token", nil, "s3cret-token", http.StatusOK},
		{"a client certificate with the allowed name", &good, "", http.StatusOK},
		{"no credentials", nil, "", http.StatusUnauthorized},
		{"a wrong token", nil, "s3cret-tokem", http.StatusUnauthorized},
		{"a certificate of the right CA with another name", &otherName, "", http.StatusUnauthorized},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env.mu.Lock()
			env.events = nil
			env.mu.Unlock()
			code, err := post(t, env.client(c.cert), env.srv.URL, c.token, eventList(2))
			if err != nil {
				t.Fatal(err)
			}
			if code != c.want {
				t.Fatalf("status %d, want %d", code, c.want)
			}
			env.mu.Lock()
			n := len(env.events)
			env.mu.Unlock()
			if c.want == http.StatusOK && n != 2 {
				t.Errorf("%d events handed on before 200, want 2", n)
			}
			if c.want != http.StatusOK && n != 0 {
				t.Errorf("an unauthenticated request handed on %d events", n)
			}
		})
	}
	t.Run("a certificate of another CA with the allowed name", func(t *testing.T) {
		stranger := newTestCA(t, "stranger").issue(t, "kube-apiserver-audit", false)
		// The client does not offer a certificate the server's CA list
		// does not name (401), or the handshake fails: either way nothing
		// is accepted.
		if code, err := post(t, env.client(&stranger), env.srv.URL, "", eventList(1)); err == nil && code != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401 or a TLS handshake failure", code)
		}
		env.mu.Lock()
		defer env.mu.Unlock()
		if len(env.events) != 0 {
			t.Errorf("a stranger's request handed on %d events", len(env.events))
		}
	})
	if n := value(t, env.m.WebhookRequests.WithLabelValues("200")); n != 2 {
		t.Errorf("200 count %v, want 2", n)
	}
}

func TestTheWebhookRejectsWhatIsNotAnAuditEventList(t *testing.T) {
	env := startWebhook(t, WebhookConfig{Token: "tok", MaxBody: 64 << 10})
	c := env.client(nil)
	cases := []struct {
		name, body string
		want       int
	}{
		{"a body over the limit", eventList(100), http.StatusRequestEntityTooLarge},
		{"not JSON", "hello", http.StatusBadRequest},
		{"an old API version", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1beta1","items":[]}`, http.StatusBadRequest},
		{"an EventList whose items are all bad is still accepted", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[1,"x"]}`, http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, err := post(t, c, env.srv.URL, "tok", tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if code != tc.want {
				t.Errorf("status %d, want %d", code, tc.want)
			}
		})
	}
	res, err := c.Get(env.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", res.StatusCode)
	}
	if n := value(t, env.m.Skipped.WithLabelValues(SkipMalformed)); n != 3 {
		t.Errorf("malformed count %v, want 3 (the bad body and the two bad items)", n)
	}
}

func TestAFloodIsDroppedWithACountInsteadOfStallingTheAPIServer(t *testing.T) {
	m := NewMetrics(nil)
	p, err := NewPipeline(PipelineConfig{Sinks: []AlertSink{discard{}}, QueueSize: 3, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing consumes the queue (p.Run is not running): the pipeline is stuck.
	env := startWebhook(t, WebhookConfig{Token: "tok", Deliver: p.Offer})
	env.m = m
	start := time.Now()
	code, err := post(t, env.client(nil), env.srv.URL, "tok", eventList(10))
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusOK {
		t.Fatalf("status %d, want 200", code)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the webhook answered after %v with a full queue; it must not wait", d)
	}
	if n := value(t, m.Skipped.WithLabelValues(SkipDropped)); n != 7 {
		t.Errorf("dropped %v, want 7", n)
	}
	if m.Lost() != 7 {
		t.Errorf("Lost() = %d, want 7", m.Lost())
	}
}

type discard struct{}

func (discard) Write(*alert.Alert) error { return nil }

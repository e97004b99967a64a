package ship

import (
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/alert"
)

const (
	testToken   = "vgl_test-token-for-the-sensor"
	testCluster = "/subscriptions/sub-1/resourceGroups/rg-1/providers/Vigil.Kubernetes/connectedClusters/c1"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// serverCert issues a certificate for 127.0.0.1 signed by ca.
func (ca *testCA) serverCert(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "vigil test hub"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// Hub behaviours a test can switch between.
const (
	hubOK           = "ok"
	hub503          = "503"
	hubReset        = "reset"         // close the connection without an answer
	hubCommitReset  = "commit-reset"  // commit, then close without an answer (lost ack)
	hubRejectPoison = "reject-poison" // 400 for batches holding an alert whose type is "poison"
	hub401          = "401"
	hub429Once      = "429-once" // one 429 with Retry-After: 1, then ok
	hub413Over10    = "413-over-10"
	hubBare200      = "bare-200" // a 200 that is not the hub's acknowledgement (a proxy, a portal)
)

// testHub is an ingest endpoint like the real hub's: it authenticates,
// decodes (gzip) batches and commits alerts deduplicated by ID, answering
// 200 only after the commit.
type testHub struct {
	t    testing.TB
	cert tls.Certificate
	addr string

	mu         sync.Mutex
	mode       string
	srv        *http.Server
	committed  map[string]int // alert ID → times received in a committed batch
	requests   []time.Time
	batchSizes []int
	health     []map[string]any
	poisonSeen int
	delay      time.Duration
}

func startHub(t testing.TB, ca *testCA) *testHub {
	t.Helper()
	h := &testHub{t: t, cert: ca.serverCert(t), mode: hubOK, committed: map[string]int{}}
	h.listen("127.0.0.1:0")
	t.Cleanup(h.stop)
	return h
}

func (h *testHub) url() string { return "https://" + h.addr }

func (h *testHub) listen(addr string) {
	h.t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 100; i++ {
		if ln, err = net.Listen("tcp", addr); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		h.t.Fatalf("test hub listen on %s: %v", addr, err)
	}
	srv := &http.Server{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{h.cert}},
		ErrorLog: log.New(io.Discard, "", 0), ReadHeaderTimeout: 10 * time.Second}
	h.mu.Lock()
	h.srv, h.addr = srv, ln.Addr().String()
	h.mu.Unlock()
	go srv.ServeTLS(ln, "", "")
}

// stop takes the hub off the network (connections refused).
func (h *testHub) stop() {
	h.mu.Lock()
	srv := h.srv
	h.srv = nil
	h.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// restart brings the hub back on the same address.
func (h *testHub) restart() { h.listen(h.addr) }

func (h *testHub) setMode(m string) {
	h.mu.Lock()
	h.mode = m
	h.mu.Unlock()
}

func (h *testHub) ids() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]int, len(h.committed))
	for k, v := range h.committed {
		out[k] = v
	}
	return out
}

func (h *testHub) requestCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.requests)
}

func hubErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func (h *testHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	mode, delay := h.mode, h.delay
	h.requests = append(h.requests, time.Now())
	h.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	if r.Method != http.MethodPost {
		hubErr(w, 405, "MethodNotAllowed", "POST only")
		return
	}
	if mode == hub401 || r.Header.Get("Authorization") != "Bearer "+testToken {
		hubErr(w, 401, "Unauthorized", "missing or invalid bearer token")
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			hubErr(w, 400, "InvalidBody", "gzip: "+err.Error())
			return
		}
		body = zr
	}
	data, err := io.ReadAll(io.LimitReader(body, 8<<20+1))
	if err != nil {
		hubErr(w, 400, "InvalidBody", err.Error())
		return
	}
	switch r.URL.Path {
	case HealthPath:
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			hubErr(w, 400, "InvalidBody", err.Error())
			return
		}
		h.mu.Lock()
		h.health = append(h.health, m)
		h.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	case AlertsPath:
	default:
		hubErr(w, 404, "NotFound", r.URL.Path)
		return
	}
	var b struct {
		Cluster string        `json:"cluster"`
		Node    string        `json:"node"`
		BatchID string        `json:"batchId"`
		Alerts  []alert.Alert `json:"alerts"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		hubErr(w, 400, "InvalidBody", err.Error())
		return
	}
	if b.Cluster != testCluster {
		hubErr(w, 403, "Forbidden", "token is for another cluster")
		return
	}
	if b.BatchID == "" || len(b.Alerts) == 0 || len(b.Alerts) > 1000 {
		hubErr(w, 400, "InvalidBody", "batchId and 1..1000 alerts are required")
		return
	}
	switch mode {
	case hubBare200:
		w.Write([]byte("<html>Welcome to the guest network</html>"))
		return
	case hub503:
		hubErr(w, 503, "Unavailable", "database is down")
		return
	case hubReset:
		closeConn(w)
		return
	case hub429Once:
		h.setMode(hubOK)
		w.Header().Set("Retry-After", "1")
		hubErr(w, 429, "TooManyRequests", "slow down")
		return
	case hub413Over10:
		if len(b.Alerts) > 10 {
			hubErr(w, 413, "TooLarge", "at most 10 alerts")
			return
		}
	case hubRejectPoison:
		for i, a := range b.Alerts {
			if a.AlertType == "poison" {
				h.mu.Lock()
				h.poisonSeen++
				h.mu.Unlock()
				hubErr(w, 400, "InvalidAlert", "alerts["+strconv.Itoa(i)+"].severity: unknown severity \"Catastrophic\"")
				return
			}
		}
	}
	// Commit: dedupe by ID like the real hub.
	h.mu.Lock()
	for _, a := range b.Alerts {
		h.committed[a.ID]++
	}
	h.batchSizes = append(h.batchSizes, len(b.Alerts))
	h.mu.Unlock()
	if mode == hubCommitReset {
		closeConn(w)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]int{"accepted": len(b.Alerts), "inserted": len(b.Alerts)})
}

// closeConn ends the request without an answer (HTTP/1: connection
// closed; HTTP/2: stream reset).
func closeConn(http.ResponseWriter) { panic(http.ErrAbortHandler) }

// logBuffer collects log records as text for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serve starts a real HTTPS server on 127.0.0.1:0 with cfg, as the hub
// would (http.Server over a TLS listener; httptest would replace a
// GetCertificate-only config with its own certificate).
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, "hello from the hub")
		}),
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String()
}

func get(t *testing.T, url string, cfg *tls.Config) (string, error) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestAClientPinnedToTheHubCAConnectsAndOnePinnedToAnotherCAIsRefused(t *testing.T) {
	b, err := EnsureServer(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, b.TLSConfig())

	pinned, err := ClientTLS(b.CAPEM)
	if err != nil {
		t.Fatal(err)
	}
	body, err := get(t, url, pinned)
	if err != nil {
		t.Fatalf("client pinned to the hub CA: %v", err)
	}
	if body != "hello from the hub" {
		t.Fatalf("body = %q", body)
	}
	// Also by name: localhost is in the certificate.
	if _, err := get(t, strings.Replace(url, "127.0.0.1", "localhost", 1), pinned); err != nil {
		t.Fatalf("client pinned to the hub CA, by name localhost: %v", err)
	}

	other, err := EnsureServer(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := ClientTLS(other.CAPEM)
	if err != nil {
		t.Fatal(err)
	}
	_, err = get(t, url, wrong)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("client pinned to another CA: err = %v, want x509.UnknownAuthorityError", err)
	}
}

func TestTheServerRefusesTLSBelow12(t *testing.T) {
	b, err := EnsureServer(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, b.TLSConfig())
	cfg, err := ClientTLS(b.CAPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS11, tls.VersionTLS11
	if _, err := get(t, url, cfg); err == nil {
		t.Fatal("a TLS 1.1 client connected")
	}
}

func TestASecondStartReusesTheFiles(t *testing.T) {
	dir := t.TempDir()
	first, err := EnsureServer(dir, []string{"hub.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if !first.Generated {
		t.Fatal("first call did not report generating the certificate")
	}
	second, err := EnsureServer(dir, []string{"hub.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if second.Generated {
		t.Fatal("second call re-issued a still valid certificate")
	}
	if string(first.CAPEM) != string(second.CAPEM) || string(first.CertPEM) != string(second.CertPEM) {
		t.Fatal("second call changed the CA or the server certificate")
	}
	if first.CAFingerprint() == "" || first.CAFingerprint() != second.CAFingerprint() {
		t.Fatalf("fingerprints %q vs %q", first.CAFingerprint(), second.CAFingerprint())
	}
}

func TestFilesAndDirectoryHaveRestrictivePermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "tls")
	if _, err := EnsureServer(dir, nil); err != nil {
		t.Fatal(err)
	}
	want := map[string]os.FileMode{
		".":            0o700,
		CAKeyFile:      0o600,
		ServerKeyFile:  0o600,
		CACertFile:     0o644,
		ServerCertFile: 0o644,
	}
	for name, mode := range want {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != mode {
			t.Errorf("%s: mode %o, want %o", name, got, mode)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 4 {
		t.Errorf("directory holds %d entries, want 4 (temporary files left behind?)", len(entries))
	}
}

func TestTheServerCertificateCoversLocalNamesTheHostnameAndExtraSANs(t *testing.T) {
	b, err := EnsureServer(t.TempDir(), []string{"hub.example.com", "10.1.2.3", "fd00::7", " "})
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	for _, name := range []string{"localhost", "hub.example.com", "127.0.0.1", "::1", "10.1.2.3", "fd00::7", host} {
		if err := b.Leaf.VerifyHostname(name); err != nil {
			t.Errorf("certificate does not cover %q: %v", name, err)
		}
	}
	if b.Leaf.NotAfter.Sub(b.Leaf.NotBefore) < ServerValidity {
		t.Errorf("server validity %v", b.Leaf.NotAfter.Sub(b.Leaf.NotBefore))
	}
	if _, ok := b.Leaf.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("server key is %T", b.Leaf.PublicKey)
	}
	ca, err := parseCertPEM(b.CAPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.IsCA || ca.NotAfter.Sub(ca.NotBefore) < CAValidity {
		t.Errorf("CA: isCA=%v validity %v", ca.IsCA, ca.NotAfter.Sub(ca.NotBefore))
	}
	if pk, ok := ca.PublicKey.(*ecdsa.PublicKey); !ok || pk.Curve != elliptic.P256() {
		t.Errorf("CA key is %T, want ECDSA P-256", ca.PublicKey)
	}
}

func TestANewSANReissuesTheServerCertificateButKeepsTheCA(t *testing.T) {
	dir := t.TempDir()
	first, err := EnsureServer(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	second, err := EnsureServer(dir, []string{"vigil.internal"})
	if err != nil {
		t.Fatal(err)
	}
	if !second.Generated || second.Leaf.VerifyHostname("vigil.internal") != nil {
		t.Fatal("adding a SAN did not re-issue a certificate covering it")
	}
	if string(first.CAPEM) != string(second.CAPEM) {
		t.Fatal("re-issuing the server certificate replaced the pinned CA")
	}
}

func TestACertificateExpiringWithin30DaysIsRenewedUnderTheSameCA(t *testing.T) {
	dir := t.TempDir()
	// Issued 340 days ago: expires in 25 days.
	old, err := ensureServer(dir, nil, time.Now().Add(-340*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	renewed, err := EnsureServer(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !renewed.Generated || !renewed.Leaf.NotAfter.After(old.Leaf.NotAfter) {
		t.Fatalf("not renewed: old expires %v, new %v", old.Leaf.NotAfter, renewed.Leaf.NotAfter)
	}
	if string(old.CAPEM) != string(renewed.CAPEM) {
		t.Fatal("renewal replaced the pinned CA")
	}
	// A client that pinned the CA before the renewal still connects.
	url := serve(t, renewed.TLSConfig())
	cfg, err := ClientTLS(old.CAPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := get(t, url, cfg); err != nil {
		t.Fatalf("client pinned before renewal: %v", err)
	}
}

func TestBrokenCAFilesAreReportedNotSilentlyReplaced(t *testing.T) {
	cases := []struct {
		name   string
		damage func(dir string)
		want   string
	}{
		{"missing CA key", func(dir string) { os.Remove(filepath.Join(dir, CAKeyFile)) }, "is missing"},
		{"garbage CA certificate", func(dir string) { os.WriteFile(filepath.Join(dir, CACertFile), []byte("junk"), 0o644) }, "read CA certificate"},
		{"CA key of another CA", func(dir string) {
			other := t.TempDir()
			if _, err := EnsureServer(other, nil); err != nil {
				t.Fatal(err)
			}
			k, _ := os.ReadFile(filepath.Join(other, CAKeyFile))
			os.WriteFile(filepath.Join(dir, CAKeyFile), k, 0o600)
		}, "does not belong"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := EnsureServer(dir, nil); err != nil {
				t.Fatal(err)
			}
			tc.damage(dir)
			_, err := EnsureServer(dir, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestAnInvalidExtraNameIsRejected(t *testing.T) {
	_, err := EnsureServer(t.TempDir(), []string{"https://hub.example.com"})
	if err == nil || !strings.Contains(err.Error(), "https://hub.example.com") {
		t.Fatalf("err = %v", err)
	}
}

func TestAUserProvidedCertificateIsServed(t *testing.T) {
	dir := t.TempDir()
	// A user's own CA and certificate, made independently of EnsureServer.
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "corp CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "hub"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)

	b, err := LoadServer(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.CAPEM) != 0 {
		t.Fatal("a user-provided bundle claims a CA to pin")
	}
	url := serve(t, b.TLSConfig())
	cfg, err := ClientTLS(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := get(t, url, cfg); err != nil {
		t.Fatalf("client trusting the user's CA: %v", err)
	}

	// A key that does not belong to the certificate is refused.
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherDER, _ := x509.MarshalECPrivateKey(otherKey)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: otherDER}), 0o600)
	if _, err := LoadServer(certFile, keyFile); err == nil || !strings.Contains(err.Error(), certFile) {
		t.Fatalf("mismatched key: err = %v", err)
	}
}

func TestPinningNeedsACertificate(t *testing.T) {
	for _, in := range []string{"", "not pem", "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"} {
		if _, err := ClientTLS([]byte(in)); err == nil {
			t.Errorf("ClientTLS(%q) accepted", in)
		}
	}
}

// servedCert connects to url trusting cfg and returns the certificate the
// server presented.
func servedCert(t *testing.T, url string, cfg *tls.Config) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", strings.TrimPrefix(url, "https://"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

func TestARunningServerRenewsItsCertificateWithoutARestart(t *testing.T) {
	dir := t.TempDir()
	// Issued 340 days ago: within the renewal window from the start.
	b, err := ensureServer(dir, []string{"hub.example.com"}, time.Now().Add(-340*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, b.TLSConfig())
	cfg, err := ClientTLS(b.CAPEM)
	if err != nil {
		t.Fatal(err)
	}
	got := servedCert(t, url, cfg)
	if !got.NotAfter.After(b.Leaf.NotAfter) {
		t.Fatalf("served a certificate expiring %v, the old one expires %v: not renewed", got.NotAfter, b.Leaf.NotAfter)
	}
	if got.VerifyHostname("hub.example.com") != nil {
		t.Fatal("the renewed certificate lost the extra name")
	}
	if b.Err() != nil {
		t.Fatal(b.Err())
	}
	// The renewal is on disk for the next start.
	again, err := EnsureServer(dir, []string{"hub.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if again.Generated || !again.Leaf.Equal(got) {
		t.Fatal("the next start did not reuse the renewed certificate")
	}
}

// issue writes a certificate for 127.0.0.1 signed by the CA in caDir to
// certFile/keyFile and returns its serial.
func issue(t *testing.T, caDir, certFile, keyFile string, serial int64) {
	t.Helper()
	caPEM, _ := os.ReadFile(filepath.Join(caDir, CACertFile))
	caKeyPEM, _ := os.ReadFile(filepath.Join(caDir, CAKeyFile))
	ca, err := parseCertPEM(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := parseECKeyPEM(caKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "hub"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestAUserProvidedCertificateIsReloadedWhenItsFilesChange(t *testing.T) {
	caDir := t.TempDir()
	ca, err := EnsureServer(caDir, nil) // only its CA is used here
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	issue(t, caDir, certFile, keyFile, 1001)
	b, err := LoadServer(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, b.TLSConfig())
	cfg, err := ClientTLS(ca.CAPEM)
	if err != nil {
		t.Fatal(err)
	}
	if got := servedCert(t, url, cfg).SerialNumber.Int64(); got != 1001 {
		t.Fatalf("serial %d, want 1001", got)
	}
	// Rotate (as cert-manager would) and make the change visible even on
	// file systems with coarse timestamps.
	issue(t, caDir, certFile, keyFile, 1002)
	later := time.Now().Add(2 * time.Second)
	os.Chtimes(certFile, later, later)
	os.Chtimes(keyFile, later, later)
	if got := servedCert(t, url, cfg).SerialNumber.Int64(); got != 1002 {
		t.Fatalf("serial %d after rotation, want 1002", got)
	}
	if b.Err() != nil {
		t.Fatal(b.Err())
	}
}

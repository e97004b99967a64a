// Package pki gives the hub its TLS identity. On first start EnsureServer
// creates, in the hub's data directory, a private certificate authority
// (ECDSA P-256, valid 10 years) and a server certificate signed by it
// (valid 1 year, renewed automatically when it expires within 30 days or
// no longer covers the names asked for). Sensors, agents and the CLI pin
// that CA (ClientTLS), so no public CA or manual step is needed for a first
// look. Operators who bring their own certificate use LoadServer instead.
package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// File names inside the data directory.
const (
	CACertFile     = "ca.crt"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.crt"
	ServerKeyFile  = "server.key"
)

// Validity periods and the renewal window.
const (
	CAValidity     = 10 * 365 * 24 * time.Hour
	ServerValidity = 365 * 24 * time.Hour
	RenewBefore    = 30 * 24 * time.Hour
	// backdate covers clock skew between the hub and its clients.
	backdate = 5 * time.Minute
	// retryRenewal spaces renewal attempts that keep failing.
	retryRenewal = time.Minute
)

// Bundle is the hub's server identity.
type Bundle struct {
	// CAPEM is the PEM of the CA clients must trust (pin). It is empty for a
	// user-provided certificate (LoadServer): clients then use their system
	// roots or a CA file the operator hands them.
	CAPEM []byte
	// CertPEM is the server certificate (and chain, if the file had one).
	CertPEM []byte
	// Leaf is the parsed server certificate.
	Leaf *x509.Certificate
	// Generated reports that EnsureServer created or renewed the server
	// certificate during this call (false when it reused the files).
	Generated bool
	// Dir is the data directory of a generated bundle (empty for LoadServer).
	Dir string

	// The fields above describe the bundle as it was loaded; the
	// certificate served may since have been renewed or reloaded.
	cert tls.Certificate

	mu        sync.Mutex
	served    *tls.Certificate // what handshakes get now
	notAfter  time.Time        // of served
	extraSANs []string         // generated: to re-issue with the same names
	certFile  string           // loaded: watched for changes
	keyFile   string
	modTime   time.Time // loaded: of certFile/keyFile when last read
	lastErr   error     // the last failed renewal/reload (the old certificate stays)
	lastTry   time.Time // generated: last renewal attempt
}

// TLSConfig is a server configuration presenting the bundle's
// certificate, with TLS 1.2 as the minimum version. It keeps itself
// current while the server runs: a generated certificate is renewed (from
// the same CA) once it is within 30 days of expiry, and a user-provided
// one is reloaded when its files change (e.g. rotated by cert-manager).
// If renewing or reloading fails, the previous certificate is served and
// the error is kept (Err). The certificate comes from GetCertificate: do
// not set Certificates on the returned config (crypto/tls would then serve
// those to clients that connect by IP address).
func (b *Bundle) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return b.current(time.Now()), nil },
	}
}

// Certificate is the server's key pair as loaded, for use in a custom
// tls.Config (prefer TLSConfig, which renews and reloads).
func (b *Bundle) Certificate() tls.Certificate { return b.cert }

// Err is the error of the last failed renewal or reload, if any.
func (b *Bundle) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastErr
}

// current returns the certificate to serve, renewing or reloading it
// first when needed.
func (b *Bundle) current(now time.Time) *tls.Certificate {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.served == nil {
		c := b.cert
		b.served, b.notAfter = &c, b.Leaf.NotAfter
	}
	switch {
	case b.Dir != "" && now.Add(RenewBefore).After(b.notAfter) && now.Sub(b.lastTry) >= retryRenewal:
		b.lastTry = now
		nb, err := ensureServer(b.Dir, b.extraSANs, now)
		if err != nil {
			b.lastErr = fmt.Errorf("renew TLS certificate: %w", err)
			break
		}
		c := nb.cert
		b.served, b.notAfter, b.lastErr = &c, nb.Leaf.NotAfter, nil
	case b.certFile != "":
		mt := newestModTime(b.certFile, b.keyFile)
		if mt.IsZero() || mt.Equal(b.modTime) {
			break
		}
		nb, err := LoadServer(b.certFile, b.keyFile)
		if err != nil {
			// Possibly caught between writing the two files: retry on
			// the next handshake.
			b.lastErr = fmt.Errorf("reload TLS certificate: %w", err)
			break
		}
		c := nb.cert
		b.served, b.notAfter, b.modTime, b.lastErr = &c, nb.Leaf.NotAfter, mt, nil
	}
	return b.served
}

func newestModTime(files ...string) time.Time {
	var t time.Time
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return time.Time{}
		}
		if fi.ModTime().After(t) {
			t = fi.ModTime()
		}
	}
	return t
}

// CAFingerprint is the SHA-256 fingerprint of the CA certificate
// ("AB:CD:..."), for printing next to the CA so an operator can compare it
// out of band. Empty when there is no CA (LoadServer).
func (b *Bundle) CAFingerprint() string {
	if len(b.CAPEM) == 0 {
		return ""
	}
	blk, _ := pem.Decode(b.CAPEM)
	if blk == nil {
		return ""
	}
	return Fingerprint(blk.Bytes)
}

// Fingerprint formats the SHA-256 of a DER certificate as colon-separated
// upper-case hex.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var sb strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			sb.WriteByte(':')
		}
		sb.WriteString(h[i : i+2])
	}
	return sb.String()
}

// EnsureServer returns the hub's generated identity from dir, creating the
// directory (0700), the CA and the server certificate on first use. Later
// calls reuse the files; the server certificate (never the CA, which
// clients pin) is re-issued when it expires within 30 days, is not signed
// by the CA on disk, or does not cover localhost, 127.0.0.1, ::1, this
// host's name and every entry of extraSANs (DNS names or IP addresses).
// Private keys are written 0600, certificates 0644.
func EnsureServer(dir string, extraSANs []string) (*Bundle, error) {
	return ensureServer(dir, extraSANs, time.Now())
}

func ensureServer(dir string, extraSANs []string, now time.Time) (*Bundle, error) {
	dnsNames, ips, err := wantedSANs(extraSANs)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create TLS directory %s: %w (check the --data-dir permissions)", dir, err)
	}
	caCert, caKey, caPEM, err := ensureCA(dir, now)
	if err != nil {
		return nil, err
	}
	b := &Bundle{CAPEM: caPEM, Dir: dir, extraSANs: slices.Clone(extraSANs)}

	certPath, keyPath := filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile)
	if cert, leaf, certPEM, ok := loadReusable(certPath, keyPath, caCert, dnsNames, ips, now); ok {
		b.cert, b.Leaf, b.CertPEM = cert, leaf, certPEM
		return b, nil
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate server key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	cn := "vigil-hub"
	if host != "" {
		cn = host
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"vigil"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(ServerValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("sign server certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode server key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	// Key first: a crash in between leaves a key that does not match the
	// old certificate, which the next start detects and re-issues.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load generated server certificate: %w", err)
	}
	b.cert, b.CertPEM, b.Generated = cert, certPEM, true
	b.Leaf, err = x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse generated server certificate: %w", err)
	}
	return b, nil
}

// ensureCA loads the CA from dir or creates it.
func ensureCA(dir string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		cert, err := parseCertPEM(certPEM)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("read CA certificate %s: %w (restore it from a backup, or move %s and %s away to create a new CA that every client must then re-pin)", certPath, err, CACertFile, CAKeyFile)
		}
		key, err := parseECKeyPEM(keyPEM)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("read CA key %s: %w (restore it from a backup)", keyPath, err)
		}
		if !key.PublicKey.Equal(cert.PublicKey) {
			return nil, nil, nil, fmt.Errorf("CA key %s does not belong to CA certificate %s (restore the matching pair from a backup)", keyPath, certPath)
		}
		if !now.Before(cert.NotAfter) {
			return nil, nil, nil, fmt.Errorf("CA certificate %s expired on %s: move %s and %s away to create a new CA, then re-pin it on every client", certPath, cert.NotAfter.Format(time.DateOnly), CACertFile, CAKeyFile)
		}
		return cert, key, certPEM, nil
	case certErr == nil && errors.Is(keyErr, os.ErrNotExist):
		return nil, nil, nil, fmt.Errorf("CA certificate %s exists but its key %s is missing: restore the key, or move %s away to create a new CA that every client must then re-pin", certPath, keyPath, CACertFile)
	case certErr != nil && !errors.Is(certErr, os.ErrNotExist):
		return nil, nil, nil, fmt.Errorf("read CA certificate: %w", certErr)
	case keyErr != nil && !errors.Is(keyErr, os.ErrNotExist):
		return nil, nil, nil, fmt.Errorf("read CA key: %w", keyErr)
	}
	// No CA yet (a lone key without certificate is replaced).
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, nil, err
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "vigil hub CA " + host, Organization: []string{"vigil"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create CA certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("encode CA key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, nil, nil, err
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("parse generated CA certificate: %w", err)
	}
	return cert, key, certPEM, nil
}

// loadReusable loads the server pair if it is still good enough.
func loadReusable(certPath, keyPath string, ca *x509.Certificate, dnsNames []string, ips []net.IP, now time.Time) (tls.Certificate, *x509.Certificate, []byte, bool) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return tls.Certificate{}, nil, nil, false
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return tls.Certificate{}, nil, nil, false
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, nil, false
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return tls.Certificate{}, nil, nil, false
	}
	if now.Add(RenewBefore).After(leaf.NotAfter) || leaf.CheckSignatureFrom(ca) != nil {
		return tls.Certificate{}, nil, nil, false
	}
	for _, n := range dnsNames {
		if !slices.Contains(leaf.DNSNames, n) {
			return tls.Certificate{}, nil, nil, false
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
			return tls.Certificate{}, nil, nil, false
		}
	}
	return cert, leaf, certPEM, true
}

// wantedSANs are the names the server certificate must cover.
func wantedSANs(extra []string) ([]string, []net.IP, error) {
	dnsNames := []string{"localhost"}
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	names := slices.Clone(extra)
	if host, err := os.Hostname(); err == nil && host != "" {
		names = append(names, host)
	}
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if ip := net.ParseIP(n); ip != nil {
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
			continue
		}
		if strings.ContainsAny(n, " /:@") {
			return nil, nil, fmt.Errorf("TLS name %q is neither a DNS name nor an IP address: give a host name (hub.example.com) or an address (10.0.0.5)", n)
		}
		n = strings.ToLower(n)
		if !slices.Contains(dnsNames, n) {
			dnsNames = append(dnsNames, n)
		}
	}
	return dnsNames, ips, nil
}

// LoadServer loads a user-provided certificate (PEM, optionally followed
// by its chain) and private key. It fails when the pair does not match or
// the certificate has expired. The bundle's TLSConfig reloads the files
// when they change.
func LoadServer(certFile, keyFile string) (*Bundle, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate %s with key %s: %w (both must be PEM and belong together)", certFile, keyFile, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parse TLS certificate %s: %w", certFile, err)
	}
	if now := time.Now(); now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("TLS certificate %s expired on %s: renew it, or omit --tls-cert to let the hub issue its own", certFile, leaf.NotAfter.Format(time.DateOnly))
	}
	modTime := newestModTime(certFile, keyFile)
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read TLS certificate: %w", err)
	}
	return &Bundle{CertPEM: certPEM, Leaf: leaf, cert: cert, certFile: certFile, keyFile: keyFile, modTime: modTime}, nil
}

// ClientTLS is a client configuration that trusts exactly the CA(s) in
// caPEM and nothing else (no system roots): a server presenting a
// certificate from any other CA is refused. Host names are verified as
// usual. TLS 1.2 is the minimum version.
func ClientTLS(caPEM []byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	rest := bytes.TrimSpace(caPEM)
	n := 0
	for len(rest) > 0 {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse pinned CA certificate: %w", err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, errors.New("no CA certificate in the PEM given to pin: pass the hub's ca.crt (vigil hub prints its path and fingerprint)")
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, nil
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(blk.Bytes)
}

func parseECKeyPEM(b []byte) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	switch blk.Type {
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(blk.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, err
		}
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("key is %T, want ECDSA", k)
		}
		return ek, nil
	default:
		return nil, fmt.Errorf("unexpected PEM block %q", blk.Type)
	}
}

func randomSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate certificate serial: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

// writeFileAtomic writes data to path via a temporary file in the same
// directory and a rename, so a reader never sees a half-written file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

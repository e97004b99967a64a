package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// cert is a certificate with its key, PEM-encoded.
type cert struct {
	certPEM, keyPEM []byte
	cert            *x509.Certificate
	key             crypto.Signer
}

type certSpec struct {
	name     string // file name under pki/
	cn       string
	orgs     []string
	dnsNames []string
	ips      []string
	server   bool
	client   bool
}

// writePKI generates the cluster CA, the serving and client certificates of
// every component, the service-account key pair and an admin token, and
// writes the kubeconfigs that use them.
func (e *env) writePKI() error {
	dir := e.path("pki")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	ca, err := newCA("vigil test cluster CA")
	if err != nil {
		return err
	}
	if err := ca.write(dir, "ca"); err != nil {
		return err
	}
	specs := []certSpec{
		{name: "apiserver", cn: "kube-apiserver", server: true,
			dnsNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", e.nodeName},
			ips:      []string{"127.0.0.1", e.nodeIP, kubeServiceIP}},
		{name: "apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client", orgs: []string{"system:masters"}, client: true},
		{name: "admin", cn: "vigil-admin", orgs: []string{"system:masters"}, client: true},
		{name: "kube-controller-manager", cn: "system:kube-controller-manager", client: true},
		{name: "kube-scheduler", cn: "system:kube-scheduler", client: true},
		{name: "kubelet", cn: "system:node:" + e.nodeName, orgs: []string{"system:nodes"}, client: true},
		{name: "kube-proxy", cn: "system:kube-proxy", client: true},
		// The audit webhook backend: vigil audit's serving certificate (for
		// the Service the vigil.audit extension creates at auditWebhookIP)
		// and the client certificate the API server presents to it.
		{name: "audit-webhook", cn: "vigil-audit-webhook", server: true,
			dnsNames: []string{"vigil-audit-webhook.vigil-system.svc", "vigil-audit-webhook.vigil-system.svc.cluster.local"},
			ips:      []string{auditWebhookIP}},
		{name: "audit-webhook-client", cn: auditWebhookClient, client: true},
	}
	certs := map[string]*cert{}
	for _, s := range specs {
		c, err := ca.sign(s)
		if err != nil {
			return err
		}
		if err := c.write(dir, s.name); err != nil {
			return err
		}
		certs[s.name] = c
	}

	// Service-account token signing key pair.
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("generate service-account key: %w", err)
	}
	saPriv := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)})
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return fmt.Errorf("encode service-account public key: %w", err)
	}
	if err := writeFile(filepath.Join(dir, "sa.key"), saPriv, 0o600); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		return err
	}

	// A static admin bearer token, for curl and tools that want no client cert.
	tok := make([]byte, 24)
	if _, err := rand.Read(tok); err != nil {
		return fmt.Errorf("generate admin token: %w", err)
	}
	token := hex.EncodeToString(tok)
	if err := writeFile(e.path("admin.token"), []byte(token+"\n"), 0o600); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "tokens.csv"), []byte(token+`,vigil-admin-token,vigil-admin-token,"system:masters"`+"\n"), 0o600); err != nil {
		return err
	}

	server := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	kcs := map[string]string{
		e.kubeconfig(): "admin",
		e.path("kubeconfigs", "kube-controller-manager"): "kube-controller-manager",
		e.path("kubeconfigs", "kube-scheduler"):          "kube-scheduler",
		e.path("kubeconfigs", "kubelet"):                 "kubelet",
		e.path("kubeconfigs", "kube-proxy"):              "kube-proxy",
	}
	for path, name := range kcs {
		if err := writeKubeconfig(path, server, ca, certs[name], name); err != nil {
			return err
		}
	}
	// --audit-webhook-config-file: where the API server sends its audit
	// events (batched) besides the log; nothing listens there until a
	// vigil.audit extension with source=webhook runs.
	return writeKubeconfig(e.path("config", "audit-webhook.kubeconfig"), "https://"+auditWebhookIP+":443", ca, certs["audit-webhook-client"], "kube-apiserver")
}

func newCA(cn string) (*cert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          keyID(&key.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	return newCert(der, key)
}

func (ca *cert) sign(s certSpec) (*cert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key for %s: %w", s.name, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: s.cn, Organization: s.orgs},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		DNSNames:     s.dnsNames,
	}
	for _, ip := range s.ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	if s.server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if s.client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %s: %w", s.name, err)
	}
	return newCert(der, key)
}

func newCert(der []byte, key *ecdsa.PrivateKey) (*cert, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse generated certificate: %w", err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return &cert{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
		cert:    c,
		key:     key,
	}, nil
}

func (c *cert) write(dir, name string) error {
	if err := writeFile(filepath.Join(dir, name+".crt"), c.certPEM, 0o644); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, name+".key"), c.keyPEM, 0o600)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return n
}

func keyID(pub *ecdsa.PublicKey) []byte {
	b, _ := x509.MarshalPKIXPublicKey(pub)
	sum := sha256.Sum256(b)
	return sum[:20]
}

func writeKubeconfig(path, server string, ca, c *cert, user string) error {
	b64 := base64.StdEncoding.EncodeToString
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: vigil
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: vigil
  context:
    cluster: vigil
    user: %s
current-context: vigil
`, server, b64(ca.certPEM), user, b64(c.certPEM), b64(c.keyPEM), user)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	return writeFile(path, []byte(kc), 0o600)
}

func writeFile(path string, b []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	if err := os.WriteFile(path, b, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

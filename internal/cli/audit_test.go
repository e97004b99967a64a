package cli

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/alert"
)

// rawAuditCases reads the raw audit.k8s.io/v1 events of the audit rule
// cases (internal/audit/testdata), by case name.
func rawAuditCases(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../audit/testdata/rule-cases.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var c struct {
			Case  string          `json:"case"`
			Audit json.RawMessage `json:"audit"`
		}
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatal(err)
		}
		out[c.Case] = string(c.Audit)
	}
	return out
}

// auditProc is `vigil audit` running as a real process.
type auditProc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	alerts []alert.Alert
	stderr strings.Builder
	addr   chan string
	done   chan struct{}
}

func startAuditProc(t *testing.T, args ...string) *auditProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"audit"}, args...)...)
	cmd.Env = append(os.Environ(), "VIGIL_CLI_TEST_MAIN=1", "KUBERNETES_SERVICE_HOST=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &auditProc{cmd: cmd, addr: make(chan string, 1), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var al alert.Alert
			if err := json.Unmarshal(sc.Bytes(), &al); err != nil {
				t.Errorf("--alerts-out - wrote a line that is not an alert: %q", sc.Text())
				continue
			}
			p.mu.Lock()
			p.alerts = append(p.alerts, al)
			p.mu.Unlock()
		}
	}()
	addrRe := regexp.MustCompile(`serving the audit webhook"? addr=(\S+)`)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if m := addrRe.FindStringSubmatch(sc.Text()); m != nil {
				p.addr <- m[1]
			}
		}
	}()
	go func() {
		wg.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
			_ = cmd.Wait()
		}
	})
	return p
}

// waitAlerts waits until every wanted alert type was written.
func (p *auditProc) waitAlerts(t *testing.T, want ...string) []alert.Alert {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		p.mu.Lock()
		var types []string
		for _, a := range p.alerts {
			types = append(types, a.AlertType)
		}
		als := slices.Clone(p.alerts)
		errs := p.stderr.String()
		p.mu.Unlock()
		missing := false
		for _, w := range want {
			if !slices.Contains(types, w) {
				missing = true
			}
		}
		if !missing {
			return als
		}
		if time.Now().After(deadline) {
			t.Fatalf("alerts %v, want at least %v; stderr:\n%s", types, want, errs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *auditProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.done
	if err := p.cmd.Wait(); err != nil {
		p.mu.Lock()
		defer p.mu.Unlock()
		t.Fatalf("vigil audit exited with %v; stderr:\n%s", err, p.stderr.String())
	}
}

func appendLines(t *testing.T, path string, lines ...string) {
	t.Helper()
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	for _, l := range lines {
		if _, err := io.WriteString(fh, l+"\n"); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVigilAuditOnAGrowingAuditLogRaisesTheExpectedAlerts(t *testing.T) {
	raw := rawAuditCases(t)
	dir := t.TempDir()
	logPath, state := filepath.Join(dir, "audit.log"), filepath.Join(dir, "state", "audit.pos")
	// History the collector reads at its first start.
	appendLines(t, logPath, raw["an administrator's kubectl is not from a pod"])
	p := startAuditProc(t, "--log", logPath, "--log-state", state, "--alerts-out", "-", "--pod-lookup", "off", "--node", "cp-1")

	appendLines(t, logPath,
		raw["a pod's service account asking what it may do with curl is suspicious"],
		`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"trunc`, // a truncated line
		raw["a pod's service account listing secrets cluster-wide with curl"],
		raw["kubectl creating a privileged pod with the host's root and PID namespace"],
		raw["kubectl create clusterrolebinding to cluster-admin for a service account"],
		raw["a user creating a deployment in its team namespace"],
	)
	als := p.waitAlerts(t, "vigil.cluster/K8sSelfSubjectReview", "vigil.cluster/K8sSecretsAccessByServiceAccount",
		"vigil.cluster/K8sPrivilegedPodCreated", "vigil.cluster/K8sSensitiveHostPathMount", "vigil.cluster/K8sHostNamespacePod",
		"vigil.cluster/K8sClusterAdminBinding", "vigil.cluster/K8sClientToolFromPod")
	for _, a := range als {
		if a.AlertType == "vigil.cluster/K8sSelfSubjectReview" {
			if a.Entities.Pod != "api-6b7c8d9e0-p4q5r" || !slices.Equal(a.Entities.Extra["user"], []string{"system:serviceaccount:shop:api"}) {
				t.Errorf("the self-subject review alert does not name the pod and service account: %+v", a.Entities)
			}
		}
		if a.AlertType == "vigil.cluster/K8sKubeSystemWorkloadCreated" || a.AlertType == "vigil.cluster/K8sExecIntoPod" {
			t.Errorf("unexpected alert %s", a.AlertType)
		}
	}
	p.stop(t)

	// A restart resumes after the last line: nothing is raised again, and
	// what was appended while stopped is judged.
	appendLines(t, logPath, raw["kubectl exec into a pod"])
	p2 := startAuditProc(t, "--log", logPath, "--log-state", state, "--alerts-out", "-", "--pod-lookup", "off", "--node", "cp-1")
	als = p2.waitAlerts(t, "vigil.cluster/K8sExecIntoPod")
	time.Sleep(300 * time.Millisecond)
	p2.stop(t)
	p2.mu.Lock()
	defer p2.mu.Unlock()
	for _, a := range p2.alerts {
		if a.AlertType != "vigil.cluster/K8sExecIntoPod" {
			t.Errorf("after the restart %s was raised again", a.AlertType)
		}
	}
	_ = als
}

// writeTestPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate for the API server, in PEM files under dir.
func writeTestPKI(t *testing.T, dir string) (caFile, certFile, keyFile string, client tls.Certificate, pool *x509.CertPool) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	issue := func(cn string, server bool) ([]byte, *ecdsa.PrivateKey) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tm := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		if server {
			tm.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			tm.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tm, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile = write("ca.crt", "CERTIFICATE", caDER)
	sDER, sKey := issue("vigil-audit", true)
	certFile = write("tls.crt", "CERTIFICATE", sDER)
	skDER, _ := x509.MarshalECPrivateKey(sKey)
	keyFile = write("tls.key", "EC PRIVATE KEY", skDER)
	cDER, cKey := issue("kube-apiserver", false)
	client = tls.Certificate{Certificate: [][]byte{cDER}, PrivateKey: cKey}
	return
}

func TestVigilAuditServesTheWebhookToAnAuthenticatedAPIServerOnly(t *testing.T) {
	raw := rawAuditCases(t)
	dir := t.TempDir()
	caFile, certFile, keyFile, clientCert, pool := writeTestPKI(t, dir)
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("webhook-token-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startAuditProc(t, "--webhook-listen", "127.0.0.1:0", "--webhook-token-file", tokenFile, "--tls-cert", certFile, "--tls-key", keyFile,
		"--webhook-client-ca", caFile, "--webhook-client-name", "kube-apiserver", "--alerts-out", "-", "--pod-lookup", "off")
	var addr string
	select {
	case addr = <-p.addr:
	case <-time.After(20 * time.Second):
		p.mu.Lock()
		defer p.mu.Unlock()
		t.Fatalf("vigil audit did not start the webhook; stderr:\n%s", p.stderr.String())
	}
	item := func(c string) string {
		return strings.Replace(raw[c], `{"kind":"Event","apiVersion":"audit.k8s.io/v1",`, `{`, 1)
	}
	body := fmt.Sprintf(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[%s,%s]}`,
		item("a pod's service account asking what it may do with curl is suspicious"), item("a new mutating webhook configuration"))
	send := func(cert *tls.Certificate, token string) int {
		cfg := &tls.Config{RootCAs: pool}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
		req, _ := http.NewRequest(http.MethodPost, "https://"+addr+"/", strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := send(nil, "not-the-token"); code != http.StatusUnauthorized {
		t.Fatalf("a wrong token got %d, want 401", code)
	}
	if code := send(&clientCert, ""); code != http.StatusOK {
		t.Fatalf("the API server's client certificate got %d, want 200", code)
	}
	if code := send(nil, "webhook-token-1"); code != http.StatusOK {
		t.Fatalf("the bearer token got %d, want 200", code)
	}
	p.waitAlerts(t, "vigil.cluster/K8sSelfSubjectReview", "vigil.cluster/K8sAdmissionWebhookCreated")
	p.stop(t)
	// The final flush carries the aggregated count of the two deliveries.
	p.mu.Lock()
	defer p.mu.Unlock()
	last := map[string]int{}
	for _, a := range p.alerts {
		last[a.AlertType] = a.Count
	}
	if last["vigil.cluster/K8sSelfSubjectReview"] != 2 {
		t.Errorf("self-subject review count %d after two deliveries, want 2", last["vigil.cluster/K8sSelfSubjectReview"])
	}
}

func TestVigilAuditRefusesAnUnusableConfiguration(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no source", []string{"--alerts-out", "-"}, "exactly one source"},
		{"two sources", []string{"--log", "x", "--webhook-listen", ":0", "--alerts-out", "-"}, "exactly one source"},
		{"no output", []string{"--log", filepath.Join(dir, "a.log")}, "nothing to report to"},
		{"a webhook without TLS", []string{"--webhook-listen", "127.0.0.1:0", "--alerts-out", filepath.Join(dir, "al"), "--pod-lookup", "off"}, "--tls-cert"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], append([]string{"audit"}, c.args...)...)
			cmd.Env = append(os.Environ(), "VIGIL_CLI_TEST_MAIN=1")
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("vigil audit %v succeeded; want an error", c.args)
			}
			if !strings.Contains(string(out), c.want) {
				t.Errorf("output %q does not say %q", out, c.want)
			}
		})
	}
}

func TestAuditAlertsReachTheHubNamingThePodAndServiceAccount(t *testing.T) {
	raw := rawAuditCases(t)
	dir := t.TempDir()
	env := append(os.Environ(), "VIGIL_CLI_TEST_MAIN=1", "VIGIL_CONFIG="+filepath.Join(dir, "cli.json"), "KUBERNETES_SERVICE_HOST=")
	data := filepath.Join(dir, "data")
	up := exec.Command(os.Args[0], "up", "--no-sensor", "--data-dir", data, "--listen", "127.0.0.1:0", "--cluster-name", "audithost")
	up.Env = env
	var upOut syncBuf
	up.Stdout, up.Stderr = &upOut, &upOut
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	upDone := make(chan error, 1)
	go func() { upDone <- up.Wait() }()
	t.Cleanup(func() {
		_ = up.Process.Signal(syscall.SIGINT)
		select {
		case <-upDone:
		case <-time.After(30 * time.Second):
			_ = up.Process.Kill()
			<-upDone
		}
	})
	var url string
	urlRe := regexp.MustCompile(`API:\s+(https://127\.0\.0\.1:\d+)`)
	for deadline := time.Now().Add(60 * time.Second); ; {
		if m := urlRe.FindStringSubmatch(upOut.String()); m != nil && strings.Contains(upOut.String(), "The CLI is signed in") {
			url = m[1]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("vigil up did not start:\n%s", upOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	logPath := filepath.Join(dir, "audit.log")
	appendLines(t, logPath, raw["a pod's service account asking what it may do with curl is suspicious"], `{"kind":"Event","apiVersion":"audit.k8s.io/v1","stage":"ResponseComp`)
	p := startAuditProc(t, "--health-interval", "1s", "--log", logPath, "--log-state", filepath.Join(dir, "audit.pos"), "--pod-lookup", "off", "--node", "cp-1",
		"--hub-url", url, "--hub-token-file", filepath.Join(data, "sensor-audithost.token"), "--hub-ca", filepath.Join(data, "tls", "ca.crt"),
		"--cluster-id", "/subscriptions/default/resourceGroups/local/providers/Vigil.Kubernetes/connectedClusters/audithost",
		"--outbox-dir", filepath.Join(dir, "outbox"))
	defer p.stop(t)

	for deadline := time.Now().Add(30 * time.Second); ; {
		cmd := exec.Command(os.Args[0], "alerts", "list", "-o", "json", "--alert-type", "vigil.cluster/K8sSelfSubjectReview")
		cmd.Env = env
		out, err := cmd.Output()
		if err == nil {
			var als []alert.Alert
			if err := json.Unmarshal(out, &als); err != nil {
				t.Fatalf("vigil alerts list -o json: %v\n%s", err, out)
			}
			if len(als) > 0 {
				en := als[0].Entities
				if en.Pod != "api-6b7c8d9e0-p4q5r" || en.Namespace != "shop" {
					t.Errorf("the hub's alert names pod %s/%s, want shop/api-6b7c8d9e0-p4q5r", en.Namespace, en.Pod)
				}
				if !slices.Equal(en.Extra["serviceAccount"], []string{"shop/api"}) || !slices.Equal(en.Extra["userAgent"], []string{"curl/8.5.0"}) {
					t.Errorf("the hub's alert lost the request details: %v", en.Extra)
				}
				// The truncated line is a lost audit event: the collector's
				// health report turns it into a loss alert at the hub.
				waitAlert(t, env, "vigil.audit/AuditEventsDropped", 30*time.Second)
				p.mu.Lock()
				defer p.mu.Unlock()
				if strings.Contains(p.stderr.String(), "level=ERROR") || strings.Contains(p.stderr.String(), "level=WARN") {
					t.Errorf("vigil audit complained while shipping:\n%s", p.stderr.String())
				}
				return
			}
		}
		if time.Now().After(deadline) {
			p.mu.Lock()
			defer p.mu.Unlock()
			t.Fatalf("the audit alert did not reach the hub (last list: %v %s); vigil audit stderr:\n%s", err, out, p.stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitAlert waits until the hub (the CLI's signed-in one) lists an alert of
// the type, and returns it.
func waitAlert(t *testing.T, env []string, alertType string, timeout time.Duration) alert.Alert {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; {
		cmd := exec.Command(os.Args[0], "alerts", "list", "-o", "json", "--alert-type", alertType)
		cmd.Env = env
		out, err := cmd.Output()
		var als []alert.Alert
		if err == nil && json.Unmarshal(out, &als) == nil && len(als) > 0 {
			return als[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s alert at the hub within %s (last list: %v %s)", alertType, timeout, err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// syncBuf is a goroutine-safe output buffer.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

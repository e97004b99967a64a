package cli

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/hubclient"
	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/testenv"
)

// TestMain lets a test run this package's CLI as a real process (with its
// own environment, e.g. HTTPS_PROXY, which net/http reads once per process).
func TestMain(m *testing.M) {
	if os.Getenv("VIGIL_CLI_TEST_MAIN") == "1" {
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// connectProxy is a real HTTP CONNECT proxy that records the targets.
type connectProxy struct {
	mu      sync.Mutex
	targets []string
}

func (p *connectProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	p.mu.Lock()
	p.targets = append(p.targets, r.Host)
	p.mu.Unlock()
	up, err := net.DialTimeout("tcp", r.Host, 5*time.Second)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		http.Error(w, "no hijack", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
	down, _, err := hj.Hijack()
	if err != nil {
		up.Close()
		return
	}
	go func() { _, _ = io.Copy(up, down); up.Close() }()
	go func() { _, _ = io.Copy(down, up); down.Close() }()
}

func (p *connectProxy) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.targets...)
}

// nonLoopbackIP is this machine's first non-loopback IPv4 address (net/http
// never proxies loopback destinations), or "".
func nonLoopbackIP() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	return ""
}

func TestTheAgentReachesTheHubThroughHTTPSProxyWithThePinnedCA(t *testing.T) {
	ip := nonLoopbackIP()
	testenv.Require(t, ip != "", "a non-loopback IPv4 address on this machine (net/http never proxies loopback)")
	h := startCPHub(t, cpHubOptions{Listen: net.JoinHostPort(ip, "0")})
	cid := registerCluster(t, h, "rg1", "prod")
	c, err := hubclient.New(hubclient.Config{Hub: h.URL, Token: h.Owner, CAPEM: readFile(t, h.CAFile)})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.CreateToken(context.Background(), hubclient.TokenCreate{Name: "agent", Kind: store.TokenAgent, ClusterID: cid})
	if err != nil {
		t.Fatal(err)
	}
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(tok.Properties.Secret), 0o600); err != nil {
		t.Fatal(err)
	}
	px := &connectProxy{}
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	psrv := &http.Server{Handler: px, ReadHeaderTimeout: 5 * time.Second}
	go psrv.Serve(pl)
	t.Cleanup(func() { psrv.Close() })

	cmd := exec.Command(os.Args[0], "agent", "--once", "--hub-url", h.URL, "--hub-token-file", tokFile, "--hub-ca", h.CAFile,
		"--cluster-id", cid, "--sensor-image", "vigil.local/vigil:test", "--kubeconfig", deadKubeconfig(t), "--metrics-addr", "")
	cmd.Env = append(os.Environ(), "VIGIL_CLI_TEST_MAIN=1", "HTTPS_PROXY=http://"+pl.Addr().String(), "NO_PROXY=", "no_proxy=")
	out, _ := cmd.CombinedOutput() // reconcile fails: the kubeconfig's API server does not run
	hubHost := strings.TrimPrefix(h.URL, "https://")
	found := false
	for _, tgt := range px.seen() {
		found = found || tgt == hubHost
	}
	if !found {
		t.Fatalf("the proxy saw %v, not a CONNECT to the hub %s\nagent output:\n%s", px.seen(), hubHost, out)
	}
	cl, err := c.GetCluster(context.Background(), "", "rg1", "prod")
	if err != nil {
		t.Fatal(err)
	}
	if cl.Properties.ConnectivityStatus != store.Connected {
		t.Fatalf("after the agent's heartbeat through the proxy the cluster is %s\nagent output:\n%s", cl.Properties.ConnectivityStatus, out)
	}
}

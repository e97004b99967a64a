package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"
)

// up starts the cluster, or does nothing when it is already healthy.
func (e *env) up(ctx context.Context) error {
	unlock, err := flock(lockPath)
	if err != nil {
		return err
	}
	defer unlock()

	if problems := e.health(ctx); len(problems) == 0 {
		e.progress("cluster already up: node %s Ready, kubeconfig %s", e.nodeName, e.kubeconfig())
		return nil
	} else if e.anythingRunning() {
		e.progress("cluster is partly up (%s): tearing it down to start clean", strings.Join(problems, "; "))
		if err := e.teardown(ctx); err != nil {
			return fmt.Errorf("tear down the unhealthy cluster: %w", err)
		}
	}

	if err := e.ensurePackages(ctx); err != nil {
		return err
	}
	if err := e.ensureBinaries(ctx); err != nil {
		return err
	}
	if err := os.RemoveAll(e.state); err != nil {
		return fmt.Errorf("remove old state %s: %w", e.state, err)
	}
	for _, d := range []string{"logs", "run", "config", "etcd", "kubelet", "pod-logs", "cni/net.d", "cni/ipam", "containerd/root", "containerd/state", "containerd/opt", "containerd/runc", "audit"} {
		if err := os.MkdirAll(e.path(d), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", e.path(d), err)
		}
	}
	if err := e.recordHostState(); err != nil {
		return err
	}
	e.progress("state in %s, node %s at %s", e.state, e.nodeName, e.nodeIP)
	if err := e.writePKI(); err != nil {
		return fmt.Errorf("generate certificates: %w", err)
	}
	if err := e.writeConfigs(); err != nil {
		return err
	}
	if err := writeFile(e.path("config", "audit-policy.yaml"), []byte(auditPolicy), 0o644); err != nil {
		return err
	}

	if err := guardServiceCIDR(); err != nil {
		return err
	}
	if err := e.startAndWait(ctx, "etcd", e.etcdArgs(), 60*time.Second, e.etcdHealthy); err != nil {
		return err
	}
	if err := e.startAndWait(ctx, "kube-apiserver", e.apiserverArgs(), 90*time.Second, func(ctx context.Context) error {
		_, err := e.apiGet(ctx, "/readyz")
		return err
	}); err != nil {
		return err
	}
	for _, c := range []struct {
		name string
		args []string
	}{{"kube-controller-manager", e.controllerManagerArgs()}, {"kube-scheduler", e.schedulerArgs()}} {
		if _, err := e.startDaemon(c.name, e.bin(c.name), c.args); err != nil {
			return err
		}
		e.progress("%s started", c.name)
	}
	if err := e.startAndWait(ctx, "containerd", []string{"--config", e.path("config", "containerd.toml")}, 60*time.Second, func(ctx context.Context) error {
		_, err := e.ctr(ctx, "version")
		return err
	}); err != nil {
		return err
	}
	if err := e.importBaseImages(ctx); err != nil {
		return err
	}
	if err := e.startAndWait(ctx, "kubelet", e.kubeletArgs(), 120*time.Second, e.nodeReady); err != nil {
		return err
	}
	// The kubelet sets kernel.panic=10 and kernel.panic_on_oops=1 once at
	// start. On a shared test machine an oops must not reboot it: put them back.
	if hs, ok := e.loadHostState(); ok {
		e.restoreSysctls(hs, []string{"kernel/panic", "kernel/panic_on_oops"})
	}
	if err := e.startAndWait(ctx, "kube-proxy", []string{"--config", e.path("config", "kube-proxy.yaml"), "--v=1"}, 60*time.Second, func(ctx context.Context) error {
		// Dial the kubernetes service's ClusterIP only once kube-proxy has
		// programmed it: before, the dial would leave the host by the default route.
		out, err := exec.CommandContext(ctx, "iptables", "-t", "nat", "-S", "KUBE-SERVICES").Output()
		if err != nil || !strings.Contains(string(out), "-d "+kubeServiceIP+"/32") {
			return fmt.Errorf("kube-proxy has not programmed the kubernetes service (%s) yet", kubeServiceIP)
		}
		c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", net.JoinHostPort(kubeServiceIP, "443"))
		if err != nil {
			return err
		}
		return c.Close()
	}); err != nil {
		return err
	}
	if err := e.wait(ctx, "controller-manager: default service account and root CA config map", 90*time.Second, "kube-controller-manager", func(ctx context.Context) error {
		if _, err := e.apiGet(ctx, "/api/v1/namespaces/default/serviceaccounts/default"); err != nil {
			return err
		}
		_, err := e.apiGet(ctx, "/api/v1/namespaces/default/configmaps/kube-root-ca.crt")
		return err
	}); err != nil {
		return err
	}
	if err := e.wait(ctx, "scheduler healthy", 60*time.Second, "kube-scheduler", func(ctx context.Context) error {
		return e.localHealthz(ctx, schedPort)
	}); err != nil {
		return err
	}
	e.progress("cluster up: node %s Ready, Kubernetes %s, kubeconfig %s, images %s %s", e.nodeName, k8sVersion, e.kubeconfig(), pauseRef, busyboxRef)
	fmt.Fprintf(os.Stderr, "  export KUBECONFIG=%s   # logs in %s; vigil image: hack/image\n", e.kubeconfig(), e.path("logs"))
	return nil
}

// lockPath serialises up and down machine-wide: two clusters could not
// coexist anyway (ports, bridge, cgroups).
const lockPath = "/run/lock/vigil-cluster.lock"

// startAndWait starts a component and waits until ready returns nil, failing
// early with the end of its log when it exits.
func (e *env) startAndWait(ctx context.Context, name string, args []string, timeout time.Duration, ready func(context.Context) error) error {
	if _, err := e.startDaemon(name, e.componentBin(name), args); err != nil {
		return err
	}
	e.progress("%s started, waiting until it is ready", name)
	return e.wait(ctx, name+" ready", timeout, name, ready)
}

// wait polls ready until it succeeds, the timeout passes or the component
// dies.
func (e *env) wait(ctx context.Context, what string, timeout time.Duration, component string, ready func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		last = ready(cctx)
		cancel()
		if last == nil {
			e.progress("%s", what)
			return nil
		}
		if component != "" && e.componentPID(component) == 0 {
			return fmt.Errorf("%s exited while waiting for %q; the end of %s:\n%s", component, what, e.logFile(component), tail(e.logFile(component), 25))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not ready after %s: %v; the end of %s:\n%s", what, timeout, last, e.logFile(component), tail(e.logFile(component), 25))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func (e *env) etcdHealthy(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/health", etcdClientPort), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), `"health":"true"`) {
		return fmt.Errorf("etcd health: %s", b)
	}
	return nil
}

// localHealthz checks a component's /healthz on 127.0.0.1 (anonymous access
// to /healthz is always allowed).
func (e *env) localHealthz(ctx context.Context, port int) error {
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // self-signed serving cert of a local component
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/healthz", port), nil)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz: %s", resp.Status)
	}
	return nil
}

// apiClient is an HTTP client authenticated as the cluster admin.
func (e *env) apiClient() (*http.Client, error) {
	caPEM, err := os.ReadFile(e.path("pki", "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("read cluster CA: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	kp, err := tls.LoadX509KeyPair(e.path("pki", "admin.crt"), e.path("pki", "admin.key"))
	if err != nil {
		return nil, fmt.Errorf("load admin credential: %w", err)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{kp}}}}, nil
}

// apiGet GETs a path from the API server as admin; non-2xx is an error.
func (e *env) apiGet(ctx context.Context, path string) ([]byte, error) {
	c, err := e.apiClient()
	if err != nil {
		return nil, err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d%s", apiPort, path), nil)
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return b, fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return b, nil
}

func (e *env) nodeReady(ctx context.Context) error {
	b, err := e.apiGet(ctx, "/api/v1/nodes/"+e.nodeName)
	if err != nil {
		return err
	}
	var node struct {
		Status struct {
			Conditions []struct {
				Type, Status, Reason, Message string
			}
		}
	}
	if err := json.Unmarshal(b, &node); err != nil {
		return fmt.Errorf("decode node: %w", err)
	}
	for _, c := range node.Status.Conditions {
		if c.Type == "Ready" {
			if c.Status == "True" {
				return nil
			}
			return fmt.Errorf("node %s not Ready: %s: %s", e.nodeName, c.Reason, c.Message)
		}
	}
	return errors.New("node " + e.nodeName + " has no Ready condition yet")
}

// health lists what is wrong with the running cluster; empty means healthy.
func (e *env) health(ctx context.Context) []string {
	var problems []string
	for _, c := range components {
		if e.componentPID(c) == 0 {
			problems = append(problems, c+" not running")
		}
	}
	if len(problems) > 0 {
		return problems
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := e.apiGet(cctx, "/readyz"); err != nil {
		return append(problems, "API server not ready: "+err.Error())
	}
	if err := e.nodeReady(cctx); err != nil {
		problems = append(problems, err.Error())
	}
	return problems
}

func (e *env) anythingRunning() bool {
	for _, c := range components {
		if e.componentPID(c) != 0 {
			return true
		}
	}
	if len(e.strayProcs()) > 0 {
		return true
	}
	_, err := os.Stat(e.state)
	return err == nil
}

// status prints the state of every component and reports whether the
// cluster is healthy.
func (e *env) status(ctx context.Context, w io.Writer) (bool, error) {
	for _, c := range components {
		if pid := e.componentPID(c); pid != 0 {
			fmt.Fprintf(w, "%-24s running (pid %d), log %s\n", c, pid, e.logFile(c))
		} else {
			fmt.Fprintf(w, "%-24s not running\n", c)
		}
	}
	problems := e.health(ctx)
	if len(problems) == 0 {
		fmt.Fprintf(w, "cluster healthy: node %s Ready, API https://127.0.0.1:%d, kubeconfig %s\n", e.nodeName, apiPort, e.kubeconfig())
		return true, nil
	}
	fmt.Fprintf(w, "cluster not healthy: %s (run hack/cluster up)\n", strings.Join(problems, "; "))
	return false, nil
}

// guardServiceChain holds the rule that keeps ClusterIP traffic on the host.
const guardServiceChain = "VIGIL-SVC-GUARD"

// guardServiceCIDR rejects traffic to a service address kube-proxy has not
// translated (no such Service, or kube-proxy not running yet): without it,
// such packets leave by the default route to whatever the network has at
// that address. The API server's audit webhook backend, for one, sends to
// auditWebhookIP whether or not a vigil.audit extension serves it. The rule
// sits in the filter table's OUTPUT and FORWARD chains, which see packets
// after kube-proxy's DNAT, so translated service traffic passes.
func guardServiceCIDR() error {
	_, _ = run("iptables", "-N", guardServiceChain) // exists already: fine
	if _, err := run("iptables", "-F", guardServiceChain); err != nil {
		return err
	}
	if _, err := run("iptables", "-A", guardServiceChain, "-d", serviceCIDR, "-j", "REJECT", "--reject-with", "icmp-net-unreachable"); err != nil {
		return err
	}
	for _, chain := range []string{"OUTPUT", "FORWARD"} {
		if _, err := run("iptables", "-C", chain, "-j", guardServiceChain); err == nil {
			continue
		}
		if _, err := run("iptables", "-I", chain, "1", "-j", guardServiceChain); err != nil {
			return err
		}
	}
	return nil
}

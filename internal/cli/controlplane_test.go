package cli

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/clio"
	"github.com/vigil-sec/vigil/internal/hubclient"
)

// cpLogin signs the CLI in to h as its Owner and registers cluster prod in rg1.
func cpLogin(t *testing.T, h *cpHub) {
	t.Helper()
	useConfig(t)
	mustVigil(t, "login", "--hub", h.URL, "--token", h.Owner, "--ca", h.CAFile)
}

func registerCluster(t *testing.T, h *cpHub, group, name string) string {
	t.Helper()
	c, err := hubclient.New(hubclient.Config{Hub: h.URL, Token: h.Owner, CAPEM: readFile(t, h.CAFile)})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := c.PutCluster(context.Background(), "", group, name, hubclient.ClusterCreate{Location: "lab"})
	if err != nil {
		t.Fatalf("register cluster: %v", err)
	}
	return cl.ID
}

func TestCreatingTheSensorExtensionIssuesItsTokenAndNeverShowsIt(t *testing.T) {
	h := startCPHub(t, cpHubOptions{})
	cpLogin(t, h)
	registerCluster(t, h, "rg1", "prod")
	base := []string{"--cluster-name", "prod", "--resource-group", "rg1", "--cluster-type", "connectedClusters", "--name", "vigil-sensor"}
	out := mustVigil(t, append(append([]string{"extension", "create"}, base...), "--extension-type", "vigil.sensor",
		"--configuration-settings", "logLevel=debug", "--configuration-settings", "rules.disable=vigil.node/PackageManagerInContainer", "--no-wait", "-o", "json")...)
	var v extensionView
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("create output is not JSON: %v\n%s", err, out)
	}
	if v.ProvisioningState != "Creating" || v.Version != "0.1.0" || v.ConfigurationSettings["logLevel"] != "debug" {
		t.Fatalf("created extension %+v, want Creating at version 0.1.0 with logLevel debug", v)
	}
	// The hub holds a sealed sensor token; no output ever shows it.
	tokens, err := h.Store.ListTokens(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sensorTokens := 0
	for _, tk := range tokens {
		if tk.Kind == "sensor" {
			sensorTokens++
		}
	}
	if sensorTokens != 1 {
		t.Fatalf("%d sensor tokens at the hub after create, want 1", sensorTokens)
	}
	show := mustVigil(t, append(append([]string{"extension", "show"}, base...), "-o", "json")...)
	if strings.Contains(show, "vgl_") || strings.Contains(show, "hubToken") {
		t.Fatalf("show reveals the protected setting:\n%s", show)
	}
	// update replaces the given keys and keeps the others.
	mustVigil(t, append(append([]string{"extension", "update"}, base...), "--configuration-settings", "logLevel=warn", "--no-wait")...)
	q := mustVigil(t, append(append([]string{"extension", "show"}, base...), "--query", "configurationSettings", "-o", "json")...)
	var settings map[string]string
	if err := json.Unmarshal([]byte(q), &settings); err != nil {
		t.Fatal(err)
	}
	if settings["logLevel"] != "warn" || settings["rules.disable"] != "vigil.node/PackageManagerInContainer" {
		t.Fatalf("settings after update %v, want logLevel=warn and rules.disable kept", settings)
	}
	list := mustVigil(t, "extension", "list", "--cluster-name", "prod", "--resource-group", "rg1", "-o", "tsv", "--query", "[].name")
	if strings.TrimSpace(list) != "vigil-sensor" {
		t.Fatalf("list = %q, want vigil-sensor", list)
	}
	mustVigil(t, append(append([]string{"extension", "delete"}, base...), "--yes")...)
	mustVigil(t, append(append([]string{"extension", "delete"}, base...), "--yes")...) // idempotent
	expectExit(t, clio.ExitNotFound, []string{"not found"}, append([]string{"extension", "show"}, base...)...)
}

func TestBadExtensionInputIsRefusedBeforeAnythingIsCreated(t *testing.T) {
	h := startCPHub(t, cpHubOptions{})
	cpLogin(t, h)
	registerCluster(t, h, "rg1", "prod")
	base := []string{"extension", "create", "--cluster-name", "prod", "--resource-group", "rg1", "--name", "s"}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"an unknown type names the catalog", []string{"--extension-type", "acme.miner"}, "vigil.sensor"},
		{"an unknown setting names the known ones", []string{"--extension-type", "vigil.sensor", "--configuration-settings", "colour=blue"}, "logLevel"},
		{"a bad setting value says what is accepted", []string{"--extension-type", "vigil.sensor", "--configuration-settings", "source=kprobe"}, "auto, ebpf or proc"},
		{"an unknown version lists the versions", []string{"--extension-type", "vigil.sensor", "--version", "9.9.9"}, "0.1.0"},
		{"a setting without = is refused", []string{"--extension-type", "vigil.sensor", "--configuration-settings", "logLevel"}, "key=value"},
		{"another cluster type is refused", []string{"--extension-type", "vigil.sensor", "--cluster-type", "managedClusters"}, "connectedClusters"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			expectExit(t, clio.ExitUsage, []string{c.want}, append(append([]string{}, base...), c.args...)...)
		})
	}
	es, err := h.Store.ListTokens(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range es {
		if tk.Kind == "sensor" {
			t.Fatalf("a sensor token was issued although every create was refused")
		}
	}
}

func TestThePlanCanBeTurnedOnWithTheSensorComponentAndOff(t *testing.T) {
	h := startCPHub(t, cpHubOptions{})
	cpLogin(t, h)
	out := mustVigil(t, "plan", "set", "--plan", "containers", "--components", "sensor=on,audit=off", "-o", "json")
	var v planView
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	if v.PricingTier != "Standard" || !v.Components["sensor"] || v.Components["audit"] {
		t.Fatalf("plan %+v, want Standard with sensor on and audit off", v)
	}
	mustVigil(t, "plan", "set", "--plan", "containers", "--enabled=false")
	if got := strings.TrimSpace(mustVigil(t, "plan", "show", "--query", "pricingTier", "-o", "tsv")); got != "Free" {
		t.Fatalf("tier after turning the plan off = %q, want Free", got)
	}
	expectExit(t, clio.ExitUsage, []string{"containers"}, "plan", "set", "--plan", "servers")
	expectExit(t, clio.ExitUsage, []string{"sensor or audit"}, "plan", "set", "--plan", "containers", "--components", "gpu=on")
}

func TestTheInstallSensorRecommendationIsFixedByCreatingTheExtension(t *testing.T) {
	h := startCPHub(t, cpHubOptions{})
	cpLogin(t, h)
	registerCluster(t, h, "rg1", "prod")
	names := mustVigil(t, "recommendations", "list", "--query", "[?fixable].name", "-o", "tsv")
	var install string
	for _, n := range strings.Fields(names) {
		if strings.HasPrefix(n, "installSensor-") {
			install = n
		}
	}
	if install == "" {
		t.Fatalf("no installSensor recommendation for a cluster without sensor; fixable: %q", names)
	}
	mustVigil(t, "recommendations", "fix", install, "--no-wait")
	ext := mustVigil(t, "extension", "show", "-c", "prod", "-g", "rg1", "-n", "vigil-sensor", "--query", "extensionType", "-o", "tsv")
	if strings.TrimSpace(ext) != "vigil.sensor" {
		t.Fatalf("after fix the extension type is %q", ext)
	}
	if after := mustVigil(t, "recommendations", "list", "--query", "[].name", "-o", "tsv"); strings.Contains(after, install) {
		t.Fatalf("recommendation %s still listed after the fix:\n%s", install, after)
	}
	expectExit(t, clio.ExitNotFound, []string{"recommendations list"}, "recommendations", "fix", "installSensor-nothing")
}

func TestPreflightNamesTheStepThatFails(t *testing.T) {
	good := startCPHub(t, cpHubOptions{})
	other := startCPHub(t, cpHubOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	plain := &http.Server{Handler: http.NotFoundHandler()}
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go plain.Serve(pl)
	t.Cleanup(func() { plain.Close() })
	useConfig(t)
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"nothing listening is a TCP failure", []string{"--hub", "https://" + closed, "--ca", good.CAFile, "--token", good.Owner},
			[]string{"✗ TCP " + closed, "nothing listens there"}},
		{"a name that does not resolve is a DNS failure", []string{"--hub", "https://no-such-hub.invalid:8443", "--ca", good.CAFile, "--token", good.Owner},
			[]string{"✗ DNS no-such-hub.invalid", "cannot resolve"}},
		{"another hub's CA is a TLS failure", []string{"--hub", good.URL, "--ca", other.CAFile, "--token", good.Owner},
			[]string{"✗ TLS", "not signed by the pinned CA"}},
		{"plain HTTP on the port is a TLS failure", []string{"--hub", "https://" + pl.Addr().String(), "--ca", good.CAFile, "--token", good.Owner},
			[]string{"✗ TLS", "plain HTTP"}},
		{"an unknown token fails the authenticated request", []string{"--hub", good.URL, "--ca", good.CAFile, "--token", "vgl_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
			[]string{"✗ authenticated request"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, errs, code := vigil(t, append([]string{"preflight", "--timeout", "3s"}, c.args...)...)
			if code != clio.ExitUnreachable {
				t.Fatalf("exit %d, want %d\n%s%s", code, clio.ExitUnreachable, out, errs)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not name %q:\n%s", w, out)
				}
			}
		})
	}
	t.Run("a healthy hub passes every step", func(t *testing.T) {
		out := mustVigil(t, "preflight", "--hub", good.URL, "--ca", good.CAFile, "--token", good.Owner)
		if strings.Contains(out, "✗") || !strings.Contains(out, "✓ authenticated request") {
			t.Fatalf("preflight of a healthy hub:\n%s", out)
		}
	})
}

// deadKubeconfig is a kubeconfig whose API server does not run.
func deadKubeconfig(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := `apiVersion: v1
kind: Config
current-context: lab
contexts:
- name: lab
  context: {cluster: lab, user: admin}
clusters:
- name: lab
  cluster: {server: "https://` + addr + `", insecure-skip-tls-verify: true}
users:
- name: admin
  user: {token: abc}
`
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConnectShowsTheClusterAndChangesNothingUntilConfirmed(t *testing.T) {
	h := startCPHub(t, cpHubOptions{})
	cpLogin(t, h)
	kcfg := deadKubeconfig(t)
	// stdin is empty: no answer.
	expectExit(t, clio.ExitUsage, []string{"Kube context: lab", "API server:", "--yes"}, "connect", "--name", "prod", "--resource-group", "rg1", "--kubeconfig", kcfg)
	// With --yes, an API server that does not answer stops connect before the hub is touched.
	expectExit(t, clio.ExitGeneral, []string{"does not answer", "kubectl cluster-info"}, "connect", "--name", "prod", "--resource-group", "rg1", "--kubeconfig", kcfg, "--yes")
	expectExit(t, clio.ExitNotFound, nil, "cluster", "show", "--name", "prod", "--resource-group", "rg1")
	// A context that is not in the kubeconfig is a usage error naming it.
	expectExit(t, clio.ExitUsage, []string{`"staging"`, "get-contexts"}, "connect", "--name", "prod", "--resource-group", "rg1", "--kubeconfig", kcfg, "--kube-context", "staging", "--yes")
}

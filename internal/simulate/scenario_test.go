package simulate

import (
	"bytes"
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/rules"
)

func catalogNames(t *testing.T) map[string]string {
	t.Helper()
	rs, err := detect.LoadFS(rules.FS, "*.yaml")
	if err != nil {
		t.Fatalf("load the default catalog: %v", err)
	}
	m := map[string]string{}
	for _, r := range rs.Rules() {
		m[r.ID] = r.Name
	}
	return m
}

// A step may only expect a rule that exists: a renamed or removed rule
// would otherwise make every simulation fail for the wrong reason.
func TestEveryExpectedAlertIsARuleOfTheDefaultCatalog(t *testing.T) {
	names := catalogNames(t)
	for _, tools := range []Tools{{NetScan: "/opt/vigil-sim/netscan simulate netscan"}, {Curl: "/usr/bin/curl", Nmap: "/usr/bin/nmap"}} {
		plan, err := Plan([]string{ScenarioAll}, tools, func(id string) string { return names[id] })
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range plan {
			for _, e := range st.Expect {
				if _, ok := names[e.RuleID]; !ok {
					t.Errorf("%s / %s expects %s, which is not in rules/*.yaml", st.Scenario, st.Name, e.RuleID)
				}
				if e.DisplayName != names[e.RuleID] {
					t.Errorf("%s: display name %q, want the rule's %q", e.RuleID, e.DisplayName, names[e.RuleID])
				}
			}
		}
	}
}

func TestPlanningScenarios(t *testing.T) {
	bare := Tools{NetScan: "/opt/vigil-sim/netscan simulate netscan"}
	expected := func(plan []Step) []string {
		var ids []string
		for _, st := range plan {
			for _, e := range st.Expect {
				ids = append(ids, e.RuleID)
			}
		}
		return ids
	}
	cases := []struct {
		name      string
		scenarios []string
		tools     Tools
		want      []string // rule ids that must be expected
		notWant   []string
		wantErr   string
	}{
		{name: "all runs every scenario in order and expects each rule once", scenarios: []string{"all"}, tools: bare,
			want: []string{"vigil.node/WebShell", "vigil.node/NetworkFanOut", "vigil.node/ImdsCall", "vigil.node/ThreatIntelDomain",
				"vigil.node/ThreatIntelIP", "vigil.node/TestAlert", "vigil.node/DriftDetection", "vigil.node/CPUOptimization"},
			notWant: []string{"vigil.node/NetworkScanningTool"}},
		{name: "with nmap on the host the scan expects the scanner rule", scenarios: []string{"recon"},
			tools: Tools{Nmap: "/usr/bin/nmap", NetScan: bare.NetScan}, want: []string{"vigil.node/NetworkScanningTool"},
			notWant: []string{"vigil.node/NetworkFanOut"}},
		{name: "secrets alone expects the token read it repeats from recon", scenarios: []string{"secrets"}, tools: bare,
			want: []string{"vigil.node/ServiceAccountTokenAccess", "vigil.node/SecretReconnaissance"}},
		{name: "a scenario named twice runs once", scenarios: []string{"ti", "ti"}, tools: bare,
			want: []string{"vigil.node/ThreatIntelDomain", "vigil.node/ThreatIntelIP"}},
		{name: "an unknown scenario is refused with the valid names", scenarios: []string{"mining"}, tools: bare, wantErr: "use one of webshell, recon"},
		{name: "no scenario is refused", scenarios: nil, tools: bare, wantErr: "no scenario given"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			plan, err := Plan(c.scenarios, c.tools, nil)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("Plan(%q) error = %v, want one containing %q", c.scenarios, err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ids := expected(plan)
			seen := map[string]bool{}
			for _, id := range ids {
				if seen[id] {
					t.Errorf("%s is expected twice: repeats fold into one alert, so only its first step can check it", id)
				}
				seen[id] = true
			}
			for _, w := range c.want {
				if !seen[w] {
					t.Errorf("plan for %q does not expect %s; it expects %v", c.scenarios, w, ids)
				}
			}
			for _, w := range c.notWant {
				if seen[w] {
					t.Errorf("plan for %q expects %s", c.scenarios, w)
				}
			}
		})
	}
}

// The order of `all` is the documented one: the web shell first (every
// later step also runs through it), the test alert last.
func TestAllRunsTheScenariosInTheirDocumentedOrder(t *testing.T) {
	plan, err := Plan([]string{"all"}, Tools{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, st := range plan {
		if len(order) == 0 || order[len(order)-1] != st.Scenario {
			order = append(order, st.Scenario)
		}
	}
	if !slices.Equal(order, Scenarios()) {
		t.Fatalf("all runs %v, want %v", order, Scenarios())
	}
}

// The bearer token must really be read by the shell: in single quotes
// $(cat ...) would be sent literally.
func TestDownloadCommandsLetTheShellExpandTheToken(t *testing.T) {
	for _, tools := range []Tools{{Curl: "/usr/bin/curl"}, {}} {
		cmd := tools.httpGet("https://kubernetes.default.svc/x", "-", "Authorization: Bearer $(cat /t)")
		if !strings.Contains(cmd, `"Authorization: Bearer $(cat /t)"`) {
			t.Errorf("%s: the header is not double-quoted", cmd)
		}
	}
}

func TestTheStandInScannerRefusesAnythingButPrivateNetworks(t *testing.T) {
	for _, cidr := range []string{"8.8.8.0/24", "1.1.1.1/32", "2001:4860::/32"} {
		err := NetScan(context.Background(), &bytes.Buffer{}, cidr, "443")
		if err == nil || !strings.Contains(err.Error(), "only scans private") {
			t.Errorf("NetScan(%s) = %v, want a refusal", cidr, err)
		}
	}
	if err := NetScan(context.Background(), &bytes.Buffer{}, "10.0.0.0/8", "443"); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("a /8 scan = %v, want the target bound", err)
	}
}

func TestTheStandInScannerReportsTheOpenPortItFinds(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	var out bytes.Buffer
	if err := NetScan(context.Background(), &out, "127.0.0.1/32", strconv.Itoa(port)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "127.0.0.1:"+strconv.Itoa(port)) || !strings.Contains(out.String(), "scanned 1 targets") {
		t.Fatalf("scanner output %q does not name the open port %d", out.String(), port)
	}
}

func TestPercentileIsNearestRank(t *testing.T) {
	xs := []float64{50, 10, 40, 20, 30}
	for _, c := range []struct{ p, want float64 }{{50, 30}, {99, 50}, {100, 50}, {1, 10}} {
		if got := percentile(xs, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if percentile(nil, 99) != 0 {
		t.Error("percentile of nothing should be 0")
	}
}

func TestWithBusyboxShTheStepsNameAppletsByPath(t *testing.T) {
	cases := []struct{ in, want string }{
		{"id; whoami; uname -a", "/bin/id; /bin/whoami; /bin/uname -a"},
		{"env | grep -E 'AWS_' || true", "/bin/env | /bin/grep -E 'AWS_' || true"},
		{`wget -q --header "A: $(cat /t)" -O - 'http://x/'`, `/bin/wget -q --header "A: $(/bin/cat /t)" -O - 'http://x/'`},
		{"/usr/bin/curl -s x && chmod +x /tmp/k && /tmp/k", "/usr/bin/curl -s x && /bin/chmod +x /tmp/k && /tmp/k"},
		{"echo VIGIL-TEST-ALERT-7f3b", "echo VIGIL-TEST-ALERT-7f3b"},
		{"cat /etc/id", "/bin/cat /etc/id"},
	}
	for _, c := range cases {
		if got := absoluteApplets(c.in); got != c.want {
			t.Errorf("absoluteApplets(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

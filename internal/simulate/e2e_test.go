package simulate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/vigil-sec/vigil/internal/testutil/syncbuf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/simulate"
	"github.com/vigil-sec/vigil/internal/testenv"
)

// These tests run the real thing: the vigil binary built from this tree, a
// hub (`vigil up --no-sensor`) on a private port with SQLite in a temporary
// directory, the eBPF sensor shipping to it as a separate process, and
// `vigil simulate --local` with runc containers and network namespaces.

var (
	buildOnce sync.Once
	vigilBin  string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// requireLocal skips (outside CI) or fails (CI=true) without root, runc,
// ip and a static busybox.
func requireLocal(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "runc")
	testenv.RequireBinary(t, "ip")
	_, err := os.Stat("/bin/busybox")
	testenv.Require(t, err == nil, "/bin/busybox not found (apt-get install busybox-static)")
}

func vigil(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "vigil-sim-test-bin-")
		if buildErr != nil {
			return
		}
		vigilBin = filepath.Join(buildDir, "vigil")
		out, err := exec.Command("go", "build", "-o", vigilBin, "github.com/vigil-sec/vigil/cmd/vigil").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/vigil: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return vigilBin
}

// daemon starts a long-running vigil process stopped with SIGINT at the
// end of the test.
func daemon(t *testing.T, env []string, args ...string) (*syncbuf.Buffer, *syncbuf.Buffer) {
	t.Helper()
	var out, errb syncbuf.Buffer
	cmd := exec.Command(vigil(t), args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("vigil %s did not stop within 30s of SIGINT", args[0])
		}
	})
	return &out, &errb
}

func waitFor(t *testing.T, what string, buf *syncbuf.Buffer, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(buf.String()); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %v:\n%s", what, timeout, buf.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hub is a running hub (and maybe a sensor) plus the CLI environment
// signed in to it.
type hub struct {
	env     []string
	dir     string
	tempDir string // for the simulation's run directories
}

func startHub(t *testing.T, withSensor bool, sensorArgs ...string) *hub {
	t.Helper()
	dir := t.TempDir()
	h := &hub{dir: dir, env: append(os.Environ(), "VIGIL_CONFIG="+filepath.Join(dir, "cli.json"))}
	var err error
	// Not t.TempDir: overlay mount options must not contain ',' or ':'.
	if h.tempDir, err = os.MkdirTemp("", "vigil-sim-test-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(h.tempDir) })
	data := filepath.Join(dir, "data")
	out, _ := daemon(t, h.env, "up", "--no-sensor", "--data-dir", data, "--listen", "127.0.0.1:0", "--cluster-name", "simhost")
	url := waitFor(t, "vigil up printing its API URL", out, regexp.MustCompile(`API:\s+(https://127\.0\.0\.1:\d+)`), 60*time.Second)[1]
	waitFor(t, "vigil up signing the CLI in", out, regexp.MustCompile(`The CLI is signed in`), 10*time.Second)
	if withSensor {
		_, serr := daemon(t, h.env, append([]string{"sensor", "--hub-url", url, "--hub-token-file", filepath.Join(data, "sensor-simhost.token"),
			"--hub-ca", filepath.Join(data, "tls", "ca.crt"),
			"--cluster-id", "/subscriptions/default/resourceGroups/local/providers/Vigil.Kubernetes/connectedClusters/simhost"},
			append([]string{"--outbox-dir", filepath.Join(dir, "outbox")}, sensorArgs...)...)...)
		waitFor(t, "the sensor starting", serr, regexp.MustCompile(`sensor running`), 90*time.Second)
	}
	return h
}

// simulateRun is one `vigil simulate` invocation.
type simulateRun struct {
	report simulate.Report
	stderr string
	code   int
	id     string
}

func (h *hub) simulate(t *testing.T, args ...string) simulateRun {
	t.Helper()
	args = append([]string{"simulate"}, append(args, "--local", "-o", "json", "--temp-dir", h.tempDir)...)
	cmd := exec.Command(vigil(t), args...)
	cmd.Env = h.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := simulateRun{stderr: errb.String(), code: cmd.ProcessState.ExitCode()}
	if err != nil && r.code < 0 {
		t.Fatalf("vigil simulate: %v\n%s", err, errb.String())
	}
	if m := regexp.MustCompile(`simulation (vigil-sim-[0-9a-f]+):`).FindStringSubmatch(r.stderr); m != nil {
		r.id = m[1]
	}
	if out.Len() > 0 {
		if err := json.Unmarshal(out.Bytes(), &r.report); err != nil {
			t.Fatalf("vigil simulate -o json printed %q: %v\nstderr: %s", out.String(), err, r.stderr)
		}
	}
	return r
}

func requireNoLeftovers(t *testing.T, id, tempDir string) {
	t.Helper()
	if id == "" {
		t.Fatal("vigil simulate did not print its run id")
	}
	if left := simulate.Leftovers(id, tempDir); len(left) > 0 {
		t.Errorf("simulation %s left behind: %v", id, left)
	}
}

func logLatencies(t *testing.T, rep simulate.Report) {
	t.Helper()
	for _, r := range rep.Results {
		lat, pipe := "-", "-"
		if r.LatencyMs != nil {
			lat = fmt.Sprintf("%.0f ms", *r.LatencyMs)
		}
		if r.EventToHubMs != nil {
			pipe = fmt.Sprintf("%.0f ms", *r.EventToHubMs)
		}
		t.Logf("%-10s %-62s %-40s seen=%-5v step->hub %-7s event->hub %s", r.Scenario, r.Step, r.RuleID, r.Seen, lat, pipe)
	}
	t.Logf("latency step -> hub: p50 %.0f ms, p99 %.0f ms, max %.0f ms", rep.P50Ms, rep.P99Ms, rep.MaxMs)
	t.Logf("latency event -> hub: p50 %.0f ms, p99 %.0f ms, max %.0f ms", rep.EventToHubP50Ms, rep.EventToHubP99Ms, rep.EventToHubMaxMs)
}

// latencyGoalMs is the goal for an alert to be stored at the hub (p99),
// asserted on the detection and delivery pipeline (event -> hub). The
// step -> hub latency also holds the step's own tool's run time (the scan
// stand-in needs ~1 s for its burst) and the machine's load; it is logged.
const latencyGoalMs = 500

func requireEveryAlert(t *testing.T, r simulateRun) {
	t.Helper()
	logLatencies(t, r.report)
	if r.code != 0 {
		t.Fatalf("vigil simulate exited %d:\n%s", r.code, r.stderr)
	}
	if len(r.report.Results) < 19 {
		t.Fatalf("the report has %d expected alerts, want every scenario's (19):\n%s", len(r.report.Results), r.stderr)
	}
	for _, res := range r.report.Results {
		if !res.Seen {
			t.Errorf("%s (%s) from %s: %s did not arrive", res.DisplayName, res.RuleID, res.Scenario, res.Step)
		}
	}
	if r.report.EventToHubP99Ms > latencyGoalMs || r.report.EventToHubP99Ms <= 0 {
		t.Errorf("p99 latency from event to hub is %.0f ms, the goal is %d ms", r.report.EventToHubP99Ms, latencyGoalMs)
	}
	if r.report.P99Ms > latencyGoalMs {
		t.Logf("NOTE: p99 latency from step start to hub is %.0f ms, above the %d ms goal", r.report.P99Ms, latencyGoalMs)
	}
}

func TestSimulateAllLocalRaisesEveryExpectedAlertAtTheHub(t *testing.T) {
	requireLocal(t)
	h := startHub(t, true)
	cases := []struct {
		name      string
		args      []string
		busyboxSh bool
	}{
		{"with the host's shell running the web shell's commands", nil, false},
		// A host without dash or bash: busybox sh, applets named by path.
		{"with only busybox sh in the victim", []string{"--busybox-shell"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := h.simulate(t, append([]string{"all", "--wait", "30s"}, c.args...)...)
			if said := strings.Contains(r.stderr, "uses busybox sh"); said != c.busyboxSh {
				t.Errorf("the run says it uses busybox sh: %v, want %v:\n%s", said, c.busyboxSh, r.stderr)
			}
			requireEveryAlert(t, r)
			requireNoLeftovers(t, r.id, h.tempDir)
		})
	}
}

// The scenarios with a genuine nginx + php-fpm victim (Debian packages,
// the host's /usr bind-mounted read-only): the web shell's commands run
// below php-fpm below nginx, and the alert shows that genealogy.
func TestTheScenariosAreDetectedWithARealNginxAndPHPFPMVictim(t *testing.T) {
	requireLocal(t)
	_, errN := os.Stat("/usr/sbin/nginx")
	fpm, _ := filepath.Glob("/usr/sbin/php-fpm*")
	testenv.Require(t, errN == nil && len(fpm) > 0, "nginx and php-fpm not installed (apt-get install -y nginx php-fpm)")
	h := startHub(t, true)
	r := h.simulate(t, "all", "--victim", "nginx-php", "--wait", "30s")
	requireEveryAlert(t, r)
	requireNoLeftovers(t, r.id, h.tempDir)

	var webshell string
	for _, res := range r.report.Results {
		if res.RuleID == "vigil.node/WebShell" {
			webshell = res.AlertID
		}
	}
	if webshell == "" {
		t.Fatal("no web shell alert to inspect")
	}
	cmd := exec.Command(vigil(t), "alerts", "show", webshell, "-o", "json")
	cmd.Env = h.env
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("vigil alerts show %s: %v", webshell, err)
	}
	var al struct {
		Entities struct {
			Process  struct{ CommandLine string } `json:"process"`
			Ancestry []struct{ Exe string }       `json:"ancestry"`
		} `json:"entities"`
	}
	if err := json.Unmarshal(b, &al); err != nil {
		t.Fatal(err)
	}
	var chain []string
	for _, a := range al.Entities.Ancestry {
		chain = append(chain, filepath.Base(a.Exe))
	}
	joined := strings.Join(chain, " <- ")
	if !strings.HasPrefix(joined, filepath.Base(fpm[len(fpm)-1])) || !strings.Contains(joined, "nginx") {
		t.Errorf("the web shell alert's process %q has ancestry %s, want php-fpm first and nginx above it", al.Entities.Process.CommandLine, joined)
	}
	t.Logf("web shell alert: %q <- %s", al.Entities.Process.CommandLine, joined)
}

// Without a sensor nothing can raise the alerts: the check must fail and
// say which alerts are missing, or the simulation would prove nothing.
func TestWithTheSensorStoppedSimulateFailsNamingTheMissingAlerts(t *testing.T) {
	requireLocal(t)
	h := startHub(t, false)
	r := h.simulate(t, "all", "--wait", "3s")
	if r.code == 0 {
		t.Fatalf("vigil simulate succeeded without a sensor:\n%s", r.stderr)
	}
	if len(r.report.Results) < 19 {
		t.Fatalf("the report has %d expected alerts, want 19:\n%s", len(r.report.Results), r.stderr)
	}
	for _, res := range r.report.Results {
		if res.Seen {
			t.Errorf("%s reported as seen without a sensor", res.RuleID)
		}
		if !strings.Contains(r.stderr, res.RuleID) {
			t.Errorf("the error does not name the missing %s:\n%s", res.RuleID, r.stderr)
		}
	}
	if !strings.Contains(r.stderr, "did not reach the hub") {
		t.Errorf("the error does not say what went wrong:\n%s", r.stderr)
	}
	requireNoLeftovers(t, r.id, h.tempDir)
}

// Ctrl-C at any point removes everything the run created.
func TestInterruptingSimulateLeavesNothingBehind(t *testing.T) {
	requireLocal(t)
	h := startHub(t, false)
	cases := []struct {
		name  string
		after *regexp.Regexp // SIGINT once stderr matches
	}{
		{"while the workloads start", regexp.MustCompile(`starting the victim`)},
		{"during a step", regexp.MustCompile(`\[5/\d+\]|\[4/\d+\]`)},
		{"while waiting for alerts", regexp.MustCompile(`waiting up to`)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(vigil(t), "simulate", "all", "--local", "--wait", "60s", "--temp-dir", h.tempDir)
			cmd.Env = h.env
			var errb syncbuf.Buffer
			cmd.Stderr = &errb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			waitFor(t, "the run reaching the point to interrupt", &errb, c.after, 60*time.Second)
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			select {
			case <-done:
			case <-ctx.Done():
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("vigil simulate did not exit within 60s of SIGINT:\n%s", errb.String())
			}
			if cmd.ProcessState.ExitCode() == 0 {
				t.Errorf("an interrupted simulation exited 0:\n%s", errb.String())
			}
			m := regexp.MustCompile(`simulation (vigil-sim-[0-9a-f]+):`).FindStringSubmatch(errb.String())
			if m == nil {
				t.Fatalf("no run id in:\n%s", errb.String())
			}
			requireNoLeftovers(t, m[1], h.tempDir)
			if !strings.Contains(errb.String(), "interrupted") {
				t.Errorf("the interrupted run does not say so:\n%s", errb.String())
			}
		})
	}
}

// A user's feed given to the sensor with --threat-intel is matched against
// real connections: listing the attacker's address makes the drift step's
// download from it an alert.
func TestAThreatIntelFeedGivenToTheSensorRaisesAlertsForItsAddresses(t *testing.T) {
	requireLocal(t)
	feed := filepath.Join(t.TempDir(), "feed.txt")
	if err := os.WriteFile(feed, []byte("# the simulation's attacker\n10.77.0.20\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := startHub(t, true, "--threat-intel", feed)
	r := h.simulate(t, "drift", "--wait", "30s")
	if r.code != 0 {
		t.Fatalf("vigil simulate drift exited %d:\n%s", r.code, r.stderr)
	}
	requireNoLeftovers(t, r.id, h.tempDir)
	deadline := time.Now().Add(30 * time.Second)
	for {
		cmd := exec.Command(vigil(t), "alerts", "list", "-o", "json", "--query",
			"[?alertType=='vigil.node/ThreatIntelIP' && entities.container.id=='"+r.id+"-victim'].entities.network.ip")
		cmd.Env = h.env
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("vigil alerts list: %v", err)
		}
		if strings.Contains(string(b), "10.77.0.20") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ThreatIntelIP alert for the listed 10.77.0.20 within 30s; alerts list printed %s", b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

package sensor

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/testenv"
	"github.com/vigil-sec/vigil/internal/testutil/runc"
	"github.com/vigil-sec/vigil/rules"
)

// These tests run real runc containers under the real eBPF sensor with the
// default rule catalog and the stateful detectors, and check the alerts a
// user would receive: the alert type, its severity, the container it names
// and the process (executable path and command line) it blames.

// alertWait bounds how long an expected alert may take to arrive.
const alertWait = 20 * time.Second

// alertCollector is an AlertSink that keeps every alert (and aggregated
// update) for assertions.
type alertCollector struct {
	mu     sync.Mutex
	alerts []*alert.Alert
	notify chan struct{}
}

func newAlertCollector() *alertCollector { return &alertCollector{notify: make(chan struct{}, 1)} }

func (c *alertCollector) Write(al *alert.Alert) error {
	cp := *al
	c.mu.Lock()
	c.alerts = append(c.alerts, &cp)
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
	return nil
}

// waitFor returns the first alert matching pred, or nil after d.
func (c *alertCollector) waitFor(d time.Duration, pred func(*alert.Alert) bool) *alert.Alert {
	deadline := time.After(d)
	seen := 0
	for {
		c.mu.Lock()
		for ; seen < len(c.alerts); seen++ {
			if pred(c.alerts[seen]) {
				al := c.alerts[seen]
				c.mu.Unlock()
				return al
			}
		}
		c.mu.Unlock()
		select {
		case <-c.notify:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			return nil
		}
	}
}

func (c *alertCollector) all(pred func(*alert.Alert) bool) []*alert.Alert {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*alert.Alert
	for _, al := range c.alerts {
		if pred(al) {
			out = append(out, al)
		}
	}
	return out
}

func alertIn(id string) func(*alert.Alert) bool {
	return func(al *alert.Alert) bool {
		return al.Entities.Container != nil && al.Entities.Container.ID == id
	}
}

// summary is one line per alert: type, severity, process and command line.
func summary(als []*alert.Alert) string {
	var b strings.Builder
	for _, al := range als {
		path, cmd := "", ""
		if p := al.Entities.Process; p != nil {
			path, cmd = p.Path, p.CommandLine
		}
		fmt.Fprintf(&b, "\n  %s %s count=%d path=%s cmdline=%q facts=%v", al.AlertType, al.Severity, al.Count, path, cmd, al.Entities.Facts)
	}
	if b.Len() == 0 {
		return " none"
	}
	return b.String()
}

// liveRig is a running sensor with the default catalog and detectors, and
// what it reported.
type liveRig struct {
	events *collector
	alerts *alertCollector
}

func startDetectingSensor(t *testing.T) *liveRig {
	t.Helper()
	testenv.RequireRoot(t)
	rs, err := detect.LoadFS(rules.FS, "*.yaml")
	if err != nil {
		t.Fatalf("load the default catalog: %v", err)
	}
	eng, err := detect.Compile(rs)
	if err != nil {
		t.Fatalf("compile the default catalog: %v", err)
	}
	ac := newAlertCollector()
	_, col := startSensor(t, Config{
		Mode:       ModeEBPF,
		Rules:      func() *detect.Engine { return eng },
		Detectors:  true,
		AlertSinks: []AlertSink{ac},
	})
	return &liveRig{events: col, alerts: ac}
}

// watch dumps the container's events and alerts when the test fails.
func (r *liveRig) watch(t *testing.T, c *runc.Container) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		dumpEvents(t, r.events, func(ev *event.Event) bool {
			return ev.Container != nil && ev.Container.ID == c.ID
		})
		for _, al := range r.alerts.all(alertIn(c.ID)) {
			b, _ := json.Marshal(al)
			t.Logf("alert: %s", b)
		}
	})
}

// run runs the container to completion.
func run(t *testing.T, c *runc.Container) runc.Result {
	t.Helper()
	res, err := c.Run(context.Background())
	if err != nil {
		t.Fatalf("run container: %v (stdout %q stderr %q)", err, res.Stdout, res.Stderr)
	}
	return res
}

// wantAlert is an alert a behaviour must raise.
type wantAlert struct {
	rule     string // AlertType
	severity string
	path     string // Entities.Process.Path
	cmdline  []string
}

// expect waits for the alert and checks its severity, container and
// process. It returns the alert.
func (r *liveRig) expect(t *testing.T, c *runc.Container, w wantAlert) *alert.Alert {
	t.Helper()
	al := r.alerts.waitFor(alertWait, func(al *alert.Alert) bool {
		return al.AlertType == w.rule && alertIn(c.ID)(al) &&
			al.Entities.Process != nil && al.Entities.Process.Path == w.path
	})
	if al == nil {
		t.Fatalf("no %s alert for %s in container %s within %s; the container's alerts:%s",
			w.rule, w.path, c.ID, alertWait, summary(r.alerts.all(alertIn(c.ID))))
	}
	if al.Severity != w.severity {
		t.Errorf("%s severity = %s, want %s", w.rule, al.Severity, w.severity)
	}
	if al.Entities.Container.Runtime != "runc" || al.Entities.Container.Host {
		t.Errorf("%s container = %+v, want the runc container", w.rule, al.Entities.Container)
	}
	if w.cmdline != nil {
		if want := alert.CommandLine(w.cmdline, false); al.Entities.Process.CommandLine != want {
			t.Errorf("%s command line = %q, want %q", w.rule, al.Entities.Process.CommandLine, want)
		}
	}
	return al
}

// copyBusybox installs a copy of the host's busybox-static (a real,
// harmless executable) at path with mode 0755.
func copyBusybox(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("read busybox: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(path) // an applet symlink of the image
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatalf("install busybox copy: %v", err)
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// The default catalog, live: each behaviour is performed by a real
// container and must reach the alert sinks with the container and the
// process that did it.
func TestDefaultCatalogAlertsOnRealContainerBehaviour(t *testing.T) {
	rig := startDetectingSensor(t)

	t.Run("the test alert marker raises a High test alert", func(t *testing.T) {
		const marker = "VIGIL-TEST-ALERT-7f3b"
		cases := []struct {
			name string
			opts runc.Options
			want wantAlert
		}{
			{
				// The documented command: echo is a shell builtin, so the
				// shell itself carries the marker.
				name: "documented sh -c echo",
				opts: runc.Options{Args: []string{"sh", "-c", "echo " + marker}},
				want: wantAlert{rule: "vigil.node/TestAlert", severity: alert.SeverityHigh, path: "/bin/busybox",
					cmdline: []string{"sh", "-c", "echo " + marker}},
			},
			{
				// A real exec of echo; the marker comes from the environment
				// so only echo's argv carries it.
				name: "echo executed by path",
				opts: runc.Options{Args: []string{"sh", "-c", `/bin/echo "$MARK"; exit 0`}, Env: []string{"MARK=" + marker}},
				want: wantAlert{rule: "vigil.node/TestAlert", severity: alert.SeverityHigh, path: "/bin/busybox",
					cmdline: []string{"/bin/echo", marker}},
			},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c := runc.NewImage(t).NewContainer(t, withTimeout(tc.opts))
				rig.watch(t, c)
				if res := run(t, c); !strings.Contains(res.Stdout, marker) {
					t.Fatalf("container printed %q, want the marker", res.Stdout)
				}
				rig.expect(t, c, tc.want)
			})
		}
	})

	t.Run("a miner started with pool arguments raises mining alerts whatever its name", func(t *testing.T) {
		minerArgs := []string{"-o", "stratum+tcp://127.0.0.1:3333", "-u", "wallet", "--donate-level", "1"}
		cases := []struct {
			name string
			path string // where the miner is dropped in the container layer
			want []wantAlert
		}{
			{
				name: "named xmrig",
				path: "/usr/local/bin/xmrig",
				want: []wantAlert{
					{rule: "vigil.node/DigitalCurrencyMining", severity: alert.SeverityHigh},
					{rule: "vigil.node/CryptoCoinMinerArtifacts", severity: alert.SeverityMedium},
					{rule: "vigil.node/DriftDetection", severity: alert.SeverityHigh},
				},
			},
			{
				name: "renamed pause",
				path: "/pause",
				want: []wantAlert{
					{rule: "vigil.node/DigitalCurrencyMining", severity: alert.SeverityHigh},
					{rule: "vigil.node/ProcessMasquerade", severity: alert.SeverityHigh},
					{rule: "vigil.node/DriftDetection", severity: alert.SeverityHigh},
				},
			},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				argv := append([]string{tc.path}, minerArgs...)
				// The container runs the miner directly, as its entrypoint.
				// It is busybox, which only says "applet not found": the
				// exec is what is judged, no pool is contacted.
				c := runc.NewImage(t).NewContainer(t, withTimeout(runc.Options{Args: argv, Overlay: true}))
				rig.watch(t, c)
				copyBusybox(t, filepath.Join(c.UpperDir, tc.path))
				if res := run(t, c); res.ExitCode != 127 {
					t.Fatalf("miner stand-in exit code %d, want 127 (applet not found); stderr %q", res.ExitCode, res.Stderr)
				}
				for _, w := range tc.want {
					w.path, w.cmdline = tc.path, argv
					rig.expect(t, c, w)
				}
			})
		}
	})

	t.Run("a command run by a CGI script below a web server raises a web shell alert", func(t *testing.T) {
		cases := []struct {
			name string
			// httpd installs the web server at /usr/sbin/httpd in the image.
			httpd func(t *testing.T, root string)
		}{
			{
				// A distribution's httpd: an executable whose name is httpd
				// (a busybox copy, so it behaves as busybox httpd).
				name:  "httpd executable",
				httpd: func(t *testing.T, root string) { copyBusybox(t, filepath.Join(root, "usr/sbin/httpd")) },
			},
			{
				// busybox httpd as shipped in busybox images: the executable
				// is /bin/busybox, reached through the httpd applet link.
				name:  "busybox httpd applet",
				httpd: func(t *testing.T, root string) {},
			},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				img := runc.NewImage(t)
				tc.httpd(t, img.Root)
				writeFile(t, filepath.Join(img.Root, "var/www/cgi-bin/x.sh"),
					"#!/bin/sh\necho 'Content-Type: text/plain'\necho\n/usr/bin/id\n", 0o755)
				// Server and client share the container's own network
				// namespace (only loopback). busybox wget -T crashes in
				// busybox 1.35 (Debian 12): no -T.
				script := "/usr/sbin/httpd -f -p 127.0.0.1:8080 -h /var/www & " +
					"for i in 1 2 3 4 5 6 7 8 9 10; do " +
					"/usr/bin/wget -q -O- http://127.0.0.1:8080/cgi-bin/x.sh && exit 0; /bin/sleep 0.2; done; exit 1"
				c := img.NewContainer(t, withTimeout(runc.Options{Args: []string{"sh", "-c", script}, User: 33, Group: 33}))
				rig.watch(t, c)
				if res := run(t, c); res.ExitCode != 0 || !strings.Contains(res.Stdout, "uid=33(www-data)") {
					t.Fatalf("CGI request failed: exit %d stdout %q stderr %q", res.ExitCode, res.Stdout, res.Stderr)
				}
				al := rig.expect(t, c, wantAlert{rule: "vigil.node/WebShell", severity: alert.SeverityMedium,
					path: "/bin/busybox", cmdline: []string{"/usr/bin/id"}})
				if al.Entities.Process.UID != 33 {
					t.Errorf("web shell process uid = %d, want 33 (www-data)", al.Entities.Process.UID)
				}
			})
		}
	})

	t.Run("a binary written inside the container and executed raises drift alerts", func(t *testing.T) {
		const dropped = "/tmp/busybox"
		argv := []string{dropped, "true"}
		script := "/bin/cp /bin/busybox " + dropped + " && /bin/chmod +x " + dropped + " && " + strings.Join(argv, " ") + "; exit $?"
		cases := []struct {
			name    string
			overlay bool
		}{
			// On an overlay rootfs the file is also on the upper layer.
			{name: "on an overlay rootfs", overlay: true},
			// On a plain rootfs only the write observed after start tells.
			{name: "on a plain rootfs", overlay: false},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c := runc.NewImage(t).NewContainer(t, withTimeout(runc.Options{Args: []string{"sh", "-c", script}, Overlay: tc.overlay}))
				rig.watch(t, c)
				if res := run(t, c); res.ExitCode != 0 {
					t.Fatalf("container exit %d, stderr %q", res.ExitCode, res.Stderr)
				}
				drift := rig.expect(t, c, wantAlert{rule: "vigil.node/DriftDetection", severity: alert.SeverityHigh, path: dropped, cmdline: argv})
				rig.expect(t, c, wantAlert{rule: "vigil.node/ExecutionFromTempDir", severity: alert.SeverityMedium, path: dropped, cmdline: argv})
				for name, want := range map[string]string{"drift.writtenAfterStart": "true", "drift.writtenBy": "/bin/busybox"} {
					if got := drift.Entities.Facts[name]; got != want {
						t.Errorf("drift alert fact %s = %q, want %q (facts %v)", name, got, want, drift.Entities.Facts)
					}
				}
				ev := rig.events.waitFor(t, alertWait, "exec of the dropped binary", func(ev *event.Event) bool {
					return ev.Kind == event.KindExec && ev.Container != nil && ev.Container.ID == c.ID && ev.Process.Exe == dropped
				})
				if v, _ := ev.Fact("drift.writtenAfterStart"); v != "true" {
					t.Errorf("exec event fact drift.writtenAfterStart = %q, want true", v)
				}
				if v, _ := ev.Fact("drift.writtenBy"); v != "/bin/busybox" {
					t.Errorf("exec event fact drift.writtenBy = %q, want /bin/busybox (cp)", v)
				}
				if ev.Process.ExeUpperLayer != tc.overlay {
					t.Errorf("exec event upper layer = %v, want %v", ev.Process.ExeUpperLayer, tc.overlay)
				}
			})
		}
	})

	t.Run("a shell reading the service account token raises a token access alert", func(t *testing.T) {
		const token = "/var/run/secrets/kubernetes.io/serviceaccount/token"
		img := runc.NewImage(t)
		writeFile(t, filepath.Join(img.Root, token), "eyJhbGciOiJSUzI1NiJ9.vigil-test.sig\n", 0o644)
		// The path comes from the environment, so only cat's argv and open
		// name it (the container's shell would otherwise match too, and
		// its alert would absorb cat's: same rule, container and exe).
		c := img.NewContainer(t, withTimeout(runc.Options{
			Args: []string{"sh", "-c", `/bin/cat "$TOKEN" >/dev/null; exit $?`}, Env: []string{"TOKEN=" + token}}))
		rig.watch(t, c)
		if res := run(t, c); res.ExitCode != 0 {
			t.Fatalf("container exit %d, stderr %q", res.ExitCode, res.Stderr)
		}
		rig.expect(t, c, wantAlert{rule: "vigil.node/ServiceAccountTokenAccess", severity: alert.SeverityMedium,
			path: "/bin/busybox", cmdline: []string{"/bin/cat", token}})
	})

	t.Run("a download tool contacting the metadata address raises a metadata service alert", func(t *testing.T) {
		testenv.RequireBinary(t, "nsenter")
		testenv.RequireBinary(t, "ip")
		// 169.254.169.254 is given to the container's own loopback (its
		// network namespace, created for this test, has nothing else), and
		// a stub listener answers there: no packet leaves the namespace.
		// The URL uses the decimal form of the address so the command line
		// does not name it: only the connect event can raise the alert.
		const url = "http://2852039166/latest/meta-data/"
		script := "while [ ! -e /tmp/imds-ready ]; do /bin/sleep 0.05; done; " +
			`(printf 'HTTP/1.0 200 OK\r\n\r\nvigil-imds-stub\n' | /usr/bin/nc -l -p 80 >/dev/null) & /bin/sleep 0.3; ` +
			"/usr/bin/wget -q -O- " + url + "; exit $?"
		img := runc.NewImage(t)
		c := img.NewContainer(t, withTimeout(runc.Options{Args: []string{"sh", "-c", script}}))
		rig.watch(t, c)
		if err := c.Start(context.Background()); err != nil {
			t.Fatalf("start container: %v", err)
		}
		out, err := exec.Command("nsenter", "-t", strconv.Itoa(c.InitPID()), "-n",
			"ip", "addr", "add", "169.254.169.254/32", "dev", "lo").CombinedOutput()
		if err != nil {
			_ = c.Kill()
			t.Fatalf("add the metadata address to the container's loopback: %v: %s", err, out)
		}
		writeFile(t, filepath.Join(c.Rootfs, "tmp/imds-ready"), "", 0o644)
		res, err := c.Wait()
		if err != nil || res.ExitCode != 0 || !strings.Contains(res.Stdout, "vigil-imds-stub") {
			t.Fatalf("metadata request failed: %v exit %d stdout %q stderr %q", err, res.ExitCode, res.Stdout, res.Stderr)
		}
		al := rig.expect(t, c, wantAlert{rule: "vigil.node/ImdsCall", severity: alert.SeverityMedium,
			path: "/bin/busybox", cmdline: []string{"/usr/bin/wget", "-q", "-O-", url}})
		if n := al.Entities.Network; n == nil || n.IP != "169.254.169.254" || n.Port != 80 {
			t.Errorf("metadata alert network = %+v, want 169.254.169.254:80", n)
		}
	})

	t.Run("a burst of discovery commands raises a reconnaissance alert", func(t *testing.T) {
		cmds := [][]string{{"/usr/bin/id"}, {"/usr/bin/whoami"}, {"/bin/uname", "-a"}, {"/bin/hostname"},
			{"/bin/ps"}, {"/bin/mount"}, {"/usr/bin/env"}}
		var script []string
		for _, cmd := range cmds {
			script = append(script, strings.Join(cmd, " ")+" >/dev/null")
		}
		c := runc.NewImage(t).NewContainer(t, withTimeout(runc.Options{Args: []string{"sh", "-c", strings.Join(script, "; ") + "; exit 0"}}))
		rig.watch(t, c)
		run(t, c)
		// The fifth distinct discovery command (ps) crosses the threshold.
		al := rig.expect(t, c, wantAlert{rule: "vigil.node/ReconnaissanceBurst", severity: alert.SeverityLow,
			path: "/bin/busybox", cmdline: cmds[4]})
		if n, err := strconv.Atoi(al.Entities.Facts["recon.burst"]); err != nil || n < 5 {
			t.Errorf("recon.burst fact = %q, want at least 5", al.Entities.Facts["recon.burst"])
		}
	})

	t.Run("unshare from inside a container raises a namespace creation alert", func(t *testing.T) {
		argv := []string{"/usr/bin/unshare", "-U", "/bin/true"}
		c := runc.NewImage(t).NewContainer(t, withTimeout(runc.Options{Args: []string{"sh", "-c", strings.Join(argv, " ") + "; exit 0"}}))
		rig.watch(t, c)
		run(t, c)
		al := rig.expect(t, c, wantAlert{rule: "vigil.node/NamespaceCreation", severity: alert.SeverityLow,
			path: "/bin/busybox", cmdline: argv})
		if sc := al.Entities.Syscall; sc == nil || !strings.Contains(sc.Namespace, "user") {
			t.Errorf("namespace alert syscall = %+v, want a user namespace", sc)
		}
	})

	t.Run("ordinary work in a container raises no Medium or High alert", func(t *testing.T) {
		const done = "vigil-benign-done"
		script := "i=0; while [ $i -lt 5 ]; do /bin/date >/dev/null; /bin/sleep 0.1; /bin/echo hello >/dev/null; " +
			"/bin/true; i=$((i+1)); done; /bin/echo " + done + "; exit 0"
		c := runc.NewImage(t).NewContainer(t, withTimeout(runc.Options{Args: []string{"sh", "-c", script}}))
		rig.watch(t, c)
		if res := run(t, c); res.ExitCode != 0 {
			t.Fatalf("container exit %d, stderr %q", res.ExitCode, res.Stderr)
		}
		// Rules run on each event before it reaches the sinks and first
		// alerts are delivered at once, so when the last command's exec
		// has arrived every alert the work could raise has too.
		rig.events.waitFor(t, alertWait, "exec of the last command", func(ev *event.Event) bool {
			return ev.Kind == event.KindExec && ev.Container != nil && ev.Container.ID == c.ID &&
				strings.Join(ev.Process.Args, " ") == "/bin/echo "+done
		})
		if n := len(rig.events.all(func(ev *event.Event) bool {
			return ev.Kind == event.KindExec && ev.Container != nil && ev.Container.ID == c.ID
		})); n < 20 {
			t.Fatalf("only %d exec events from the container, want at least 20: the work was not observed", n)
		}
		serious := rig.alerts.all(func(al *alert.Alert) bool {
			return alertIn(c.ID)(al) && (al.Severity == alert.SeverityMedium || al.Severity == alert.SeverityHigh)
		})
		if len(serious) > 0 {
			t.Fatalf("benign work raised alerts:%s", summary(serious))
		}
		if low := rig.alerts.all(alertIn(c.ID)); len(low) > 0 {
			t.Logf("low-severity alerts on benign work:%s", summary(low))
		}
	})
}

// withTimeout bounds a test container's life.
func withTimeout(o runc.Options) runc.Options {
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	return o
}

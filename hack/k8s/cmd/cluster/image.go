package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ctr runs containerd's ctr against this cluster's containerd, in the
// namespace the CRI (the kubelet) uses.
func (e *env) ctr(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", e.containerdSock(), "--namespace", "k8s.io"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// importImage imports an OCI archive into the cluster's containerd unless
// the same manifest is already there under ref.
func (e *env) importImage(ctx context.Context, archive, ref, digest string) (imported bool, err error) {
	out, err := e.ctr(ctx, "images", "ls", "name=="+ref)
	if err != nil {
		return false, err
	}
	if strings.Contains(out, digest) {
		return false, nil
	}
	if _, err := e.ctr(ctx, "images", "import", archive); err != nil {
		return false, fmt.Errorf("import %s into the cluster's containerd: %w", archive, err)
	}
	out, err = e.ctr(ctx, "images", "ls", "name=="+ref)
	if err != nil {
		return false, err
	}
	if !strings.Contains(out, digest) {
		return false, fmt.Errorf("imported %s but containerd does not list %s with digest %s:\n%s", archive, ref, digest, out)
	}
	return true, nil
}

// importBaseImages builds and imports the pause (sandbox) and busybox images.
func (e *env) importBaseImages(ctx context.Context) error {
	dir := e.path("images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	pause := imageSpec{
		ref:        pauseRef,
		entries:    append(baseEntries(), layerEntry{name: "pause", mode: 0o755, src: e.bin("pause")}),
		entrypoint: []string{"/pause"},
	}
	bb, err := e.busyboxSpec()
	if err != nil {
		return err
	}
	for _, spec := range []imageSpec{pause, bb} {
		archive := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(spec.ref)+".tar")
		digest, err := writeOCIArchive(archive, spec)
		if err != nil {
			return fmt.Errorf("build image %s: %w", spec.ref, err)
		}
		if _, err := e.importImage(ctx, archive, spec.ref, digest); err != nil {
			return err
		}
		e.progress("image %s imported (%s)", spec.ref, digest[:19])
	}
	return nil
}

func (e *env) busyboxSpec() (imageSpec, error) {
	entries, err := busyboxEntries()
	if err != nil {
		return imageSpec{}, err
	}
	return imageSpec{
		ref:     busyboxRef,
		entries: append(baseEntries(), entries...),
		cmd:     []string{"sh"},
		env:     []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	}, nil
}

// imageCmd implements hack/image: build vigil's image (or busybox's) as an
// OCI archive and import it into the cluster. The reference is the only
// thing printed on stdout.
func (e *env) imageCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	out := fs.String("out", "", "also keep the OCI archive at this path")
	noImport := fs.Bool("no-import", false, "only build the archive (needs --out); do not import it into the cluster")
	fs.SetOutput(io.Discard)
	which := "vigil"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		which, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: usage: hack/image [vigil|busybox] [--out FILE] [--no-import]", err)
	}
	if *noImport && *out == "" {
		return fmt.Errorf("--no-import without --out would build nothing anyone can use: add --out FILE")
	}
	if !*noImport && e.componentPID("containerd") == 0 {
		return fmt.Errorf("the cluster's containerd is not running: run hack/cluster up first (or build only, with --no-import --out FILE)")
	}
	unlock, err := flock("/run/lock/vigil-cluster-image.lock")
	if err != nil {
		return err
	}
	defer unlock()

	tmp, err := os.MkdirTemp("", "vigil-image-")
	if err != nil {
		return fmt.Errorf("create temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)

	var spec imageSpec
	switch which {
	case "busybox":
		if spec, err = e.busyboxSpec(); err != nil {
			return err
		}
	case "vigil":
		if spec, err = e.vigilSpec(ctx, tmp); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown image %q: hack/image builds vigil or busybox", which)
	}
	archive := *out
	if archive == "" {
		archive = filepath.Join(tmp, "image.tar")
	} else if archive, err = filepath.Abs(archive); err != nil {
		return fmt.Errorf("resolve --out: %w", err)
	}
	digest, err := writeOCIArchive(archive, spec)
	if err != nil {
		return fmt.Errorf("build image %s: %w", spec.ref, err)
	}
	if !*noImport {
		imported, err := e.importImage(ctx, archive, spec.ref, digest)
		if err != nil {
			return err
		}
		if imported {
			e.progress("imported %s (%s) into the cluster", spec.ref, digest[:19])
		} else {
			e.progress("%s (%s) already in the cluster", spec.ref, digest[:19])
		}
	}
	if *out != "" {
		e.progress("OCI archive at %s", archive)
	}
	fmt.Println(spec.ref)
	return nil
}

// vigilSpec builds ./cmd/vigil and ./cmd/vigil-sensor statically and
// describes vigil's image: /vigil as the entrypoint, /vigil-sensor (the
// sensor alone, what the sensor DaemonSet runs: it links no Kubernetes
// client libraries and needs far less memory), plus busybox for debugging
// (about 1 MB).
func (e *env) vigilSpec(ctx context.Context, tmp string) (imageSpec, error) {
	version := "dev"
	if out, err := exec.CommandContext(ctx, "git", "-C", e.repo, "describe", "--always", "--dirty").Output(); err == nil && strings.TrimSpace(string(out)) != "" {
		version = strings.TrimSpace(string(out))
	}
	binDir := filepath.Join(tmp, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return imageSpec{}, fmt.Errorf("create %s: %w", binDir, err)
	}
	e.progress("building ./cmd/vigil and ./cmd/vigil-sensor (CGO_ENABLED=0)")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", binDir+"/", "./cmd/vigil", "./cmd/vigil-sensor")
	cmd.Dir = e.repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return imageSpec{}, fmt.Errorf("go build ./cmd/vigil ./cmd/vigil-sensor: %w:\n%s", err, out)
	}
	bb, err := busyboxEntries()
	if err != nil {
		return imageSpec{}, err
	}
	entries := append(baseEntries(), bb...)
	entries = append(entries,
		layerEntry{name: "vigil", mode: 0o755, src: filepath.Join(binDir, "vigil")},
		layerEntry{name: "vigil-sensor", mode: 0o755, src: filepath.Join(binDir, "vigil-sensor")})
	return imageSpec{
		ref:        "vigil.local/vigil:" + version,
		entries:    entries,
		entrypoint: []string{"/vigil"},
		env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	}, nil
}

package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// layerEntry is one file, directory or symlink of an image layer.
type layerEntry struct {
	name     string // path in the image, without leading slash
	mode     int64
	src      string // regular file: copied from this host path
	linkname string // symlink target
	dir      bool
	data     []byte // regular file content when src is empty
}

// imageSpec describes a single-layer image.
type imageSpec struct {
	ref        string
	entries    []layerEntry
	entrypoint []string
	cmd        []string
	env        []string
}

// epoch is every file's mtime, so the same inputs give the same digests.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// writeOCIArchive writes an OCI image-layout tarball holding spec and
// returns the manifest digest. containerd names the image after the index
// annotation io.containerd.image.name.
func writeOCIArchive(path string, spec imageSpec) (string, error) {
	layerFile, err := os.CreateTemp(filepath.Dir(path), ".layer-*")
	if err != nil {
		return "", fmt.Errorf("create layer file: %w", err)
	}
	defer os.Remove(layerFile.Name())
	defer layerFile.Close()
	lh := sha256.New()
	lsize, err := writeLayer(io.MultiWriter(layerFile, lh), spec.entries)
	if err != nil {
		return "", err
	}
	layerDigest := "sha256:" + hex.EncodeToString(lh.Sum(nil))

	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config": map[string]any{
			"Entrypoint": spec.entrypoint,
			"Cmd":        spec.cmd,
			"Env":        spec.env,
			"WorkingDir": "/",
		},
		"rootfs":  map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
		"history": []map[string]any{{"created_by": "vigil hack/image", "created": epoch.Format(time.RFC3339)}},
	})
	if err != nil {
		return "", fmt.Errorf("encode image config: %w", err)
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        descriptor("application/vnd.oci.image.config.v1+json", digestOf(config), int64(len(config))),
		"layers":        []any{descriptor("application/vnd.oci.image.layer.v1.tar", layerDigest, lsize)},
	})
	if err != nil {
		return "", fmt.Errorf("encode image manifest: %w", err)
	}
	manifestDigest := digestOf(manifest)
	md := descriptor("application/vnd.oci.image.manifest.v1+json", manifestDigest, int64(len(manifest)))
	md["annotations"] = map[string]string{
		"io.containerd.image.name":          spec.ref,
		"org.opencontainers.image.ref.name": spec.ref[strings.LastIndexByte(spec.ref, ':')+1:],
	}
	md["platform"] = map[string]string{"architecture": runtime.GOARCH, "os": "linux"}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     []any{md},
	})
	if err != nil {
		return "", fmt.Errorf("encode image index: %w", err)
	}

	tmp := path + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", tmp, err)
	}
	defer os.Remove(tmp)
	defer out.Close()
	tw := tar.NewWriter(out)
	add := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Mode: 0o755, ModTime: epoch, Typeflag: tar.TypeDir}); err != nil {
			return "", fmt.Errorf("write %s: %w", tmp, err)
		}
	}
	if err := add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return "", fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := add("index.json", index); err != nil {
		return "", fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := add(blobPath(digestOf(config)), config); err != nil {
		return "", fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := add(blobPath(manifestDigest), manifest); err != nil {
		return "", fmt.Errorf("write %s: %w", tmp, err)
	}
	if _, err := layerFile.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("rewind layer: %w", err)
	}
	if err := tw.WriteHeader(&tar.Header{Name: blobPath(layerDigest), Mode: 0o644, Size: lsize, ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
		return "", fmt.Errorf("write %s: %w", tmp, err)
	}
	if _, err := io.Copy(tw, layerFile); err != nil {
		return "", fmt.Errorf("write layer into %s: %w", tmp, err)
	}
	if err := tw.Close(); err != nil {
		return "", fmt.Errorf("finish %s: %w", tmp, err)
	}
	if err := out.Close(); err != nil {
		return "", fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("rename %s: %w", tmp, err)
	}
	return manifestDigest, nil
}

func writeLayer(w io.Writer, entries []layerEntry) (int64, error) {
	cw := &countingWriter{w: w}
	tw := tar.NewWriter(cw)
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	for _, en := range entries {
		h := &tar.Header{Name: en.name, Mode: en.mode, ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case en.dir:
			h.Typeflag, h.Name = tar.TypeDir, en.name+"/"
		case en.linkname != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, en.linkname
		default:
			h.Typeflag = tar.TypeReg
		}
		var src *os.File
		if h.Typeflag == tar.TypeReg {
			if en.src != "" {
				f, err := os.Open(en.src)
				if err != nil {
					return 0, fmt.Errorf("open %s for the image: %w", en.src, err)
				}
				defer f.Close()
				st, err := f.Stat()
				if err != nil {
					return 0, fmt.Errorf("stat %s: %w", en.src, err)
				}
				h.Size, src = st.Size(), f
			} else {
				h.Size = int64(len(en.data))
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return 0, fmt.Errorf("write layer entry %s: %w", en.name, err)
		}
		if src != nil {
			if _, err := io.Copy(tw, src); err != nil {
				return 0, fmt.Errorf("copy %s into the layer: %w", en.src, err)
			}
		} else if len(en.data) > 0 {
			if _, err := tw.Write(en.data); err != nil {
				return 0, fmt.Errorf("write %s into the layer: %w", en.name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return 0, fmt.Errorf("finish layer: %w", err)
	}
	return cw.n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func descriptor(mediaType, digest string, size int64) map[string]any {
	return map[string]any{"mediaType": mediaType, "digest": digest, "size": size}
}

func digestOf(b []byte) string {
	var h hash.Hash = sha256.New()
	h.Write(b)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

func blobPath(digest string) string { return "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:") }

// baseEntries are the directories and files every image gets.
func baseEntries() []layerEntry {
	return []layerEntry{
		{name: "bin", dir: true, mode: 0o755},
		{name: "etc", dir: true, mode: 0o755},
		{name: "tmp", dir: true, mode: 0o1777},
		{name: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")},
		{name: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnogroup:x:65534:\n")},
	}
}

// busyboxEntries installs busybox-static as /bin/busybox with a symlink per
// applet (sh, ls, cat, nc, ...).
func busyboxEntries() ([]layerEntry, error) {
	const bb = "/bin/busybox"
	out, err := run(bb, "--list-full")
	if err != nil {
		return nil, fmt.Errorf("list busybox applets (apt-get install busybox-static): %w", err)
	}
	entries := []layerEntry{
		{name: "bin/busybox", mode: 0o755, src: bb},
		{name: "sbin", dir: true, mode: 0o755},
		{name: "usr", dir: true, mode: 0o755},
		{name: "usr/bin", dir: true, mode: 0o755},
		{name: "usr/sbin", dir: true, mode: 0o755},
	}
	for _, applet := range strings.Fields(out) {
		applet = strings.TrimPrefix(applet, "/")
		if applet == "bin/busybox" || strings.Count(applet, "/") == 0 {
			continue
		}
		entries = append(entries, layerEntry{name: applet, mode: 0o777, linkname: bb})
	}
	return entries, nil
}

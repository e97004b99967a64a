package ocispec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Unmount unmounts path, retrying while it is busy for a second, then
// detaching it so nothing new can use it. Not mounted is not an error.
func Unmount(path string) error {
	var err error
	for range 50 {
		err = unix.Unmount(path, 0)
		if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) { // EINVAL: not mounted
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	if derr := unix.Unmount(path, unix.MNT_DETACH); derr != nil {
		return fmt.Errorf("%w; lazy unmount: %w", err, derr)
	}
	return nil
}

// CgroupDirs lists the cgroup directories that exist for cgroupPath: one
// per v1 hierarchy under /sys/fs/cgroup/<hierarchy>, the cgroup2 unified
// hierarchy, or /sys/fs/cgroup itself on a pure cgroup v2 host.
func CgroupDirs(cgroupPath string) []string {
	var dirs []string
	candidates := []string{filepath.Join("/sys/fs/cgroup", cgroupPath)}
	if m, err := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", strings.TrimPrefix(cgroupPath, "/"))); err == nil {
		candidates = append(candidates, m...)
	}
	for _, d := range candidates {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// RemoveCgroups removes the cgroup directories of cgroupPath and returns
// those still present after retrying for a second: a cgroup can stay busy
// for a moment after its last process exited.
func RemoveCgroups(cgroupPath string) []string {
	var left []string
	for range 50 {
		left = left[:0]
		for _, d := range CgroupDirs(cgroupPath) {
			if err := syscall.Rmdir(d); err != nil && !errors.Is(err, os.ErrNotExist) {
				left = append(left, d)
			}
		}
		if len(left) == 0 {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return left
}

package container

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"
	"github.com/vigil-sec/vigil/internal/testenv"
)

// procCgroups618 is /proc/cgroups of the Debian 12 / kernel 6.18 machines.
const procCgroups618 = `#subsys_name	hierarchy	num_cgroups	enabled
cpuset	3	1	1
cpu	1	1	1
cpuacct	2	1	1
blkio	7	1	1
memory	4	21	1
devices	5	1	1
freezer	6	1	1
net_cls	0	1	1
perf_event	0	1	1
net_prio	0	1	1
hugetlb	0	1	1
pids	8	1	1
`

const hybridMountinfo = `22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDetectLayoutFromFiles(t *testing.T) {
	tests := []struct {
		name    string
		mounts  string
		cgroups string
		want    Layout
	}{
		{"hybrid host attributes by the v1 memory controller",
			hybridMountinfo, procCgroups618,
			Layout{Mode: ModeHybrid, Cgroup2Path: "/sys/fs/cgroup/unified", Controller: "memory", SubsysIndex: 4, IndexSource: IndexFromProcCgroup, V1Root: "/sys/fs/cgroup/memory"}},
		{"unified host attributes by the cgroup2 id",
			"30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n",
			"#subsys_name\thierarchy\tnum_cgroups\tenabled\n",
			Layout{Mode: ModeUnified, Cgroup2Path: "/sys/fs/cgroup", SubsysIndex: -1}},
		{"unified host with only the named systemd v1 hierarchy is still unified",
			"30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n40 30 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n",
			procCgroups618,
			Layout{Mode: ModeUnified, Cgroup2Path: "/sys/fs/cgroup", SubsysIndex: -1}},
		{"legacy host in /proc/mounts format without memory falls back to pids",
			"cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,cpu,cpuacct 0 0\ncgroup /sys/fs/cgroup/pids cgroup rw,nosuid,pids 0 0\n",
			procCgroups618,
			Layout{Mode: ModeLegacy, Controller: "pids", SubsysIndex: 11, IndexSource: IndexFromProcCgroup, V1Root: "/sys/fs/cgroup/pids"}},
		{"legacy host with neither memory, pids nor cpu uses the first mounted controller",
			"cgroup /sys/fs/cgroup/freezer cgroup rw,freezer 0 0\ncgroup /sys/fs/cgroup/devices cgroup rw,devices 0 0\n",
			procCgroups618,
			Layout{Mode: ModeLegacy, Controller: "devices", SubsysIndex: 5, IndexSource: IndexFromProcCgroup, V1Root: "/sys/fs/cgroup/devices"}},
		{"a disabled controller is not chosen",
			"cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n",
			strings.Replace(procCgroups618, "memory\t4\t21\t1", "memory\t0\t1\t0", 1),
			Layout{Mode: ModeLegacy, Controller: "cpu", SubsysIndex: 1, IndexSource: IndexFromProcCgroup, V1Root: "/sys/fs/cgroup/cpu"}},
		{"escaped mount points are unescaped",
			"41 31 0:38 / /sys/fs/cgroup/my\\040unified rw - cgroup2 cgroup2 rw\n35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
			procCgroups618,
			Layout{Mode: ModeHybrid, Cgroup2Path: "/sys/fs/cgroup/my unified", Controller: "memory", SubsysIndex: 4, IndexSource: IndexFromProcCgroup, V1Root: "/sys/fs/cgroup/memory"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			got, err := DetectLayoutBTF(writeFile(t, dir, "mounts", tc.mounts), writeFile(t, dir, "cgroups", tc.cgroups), nil)
			if err != nil {
				t.Fatalf("DetectLayout: %v", err)
			}
			if got != tc.want {
				t.Errorf("DetectLayout\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}

	t.Run("a host without any cgroup mount is an error", func(t *testing.T) {
		dir := t.TempDir()
		_, err := DetectLayoutBTF(writeFile(t, dir, "mounts", "proc /proc proc rw 0 0\n"), writeFile(t, dir, "cgroups", procCgroups618), nil)
		if err == nil {
			t.Fatal("DetectLayout succeeded without cgroup mounts")
		}
	})
	t.Run("a missing controller table is an error when v1 is mounted", func(t *testing.T) {
		dir := t.TempDir()
		_, err := DetectLayoutBTF(writeFile(t, dir, "mounts", hybridMountinfo), filepath.Join(dir, "absent"), nil)
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("DetectLayout error = %v, want a wrapped not-exist error", err)
		}
	})
}

func TestProcCgroupPath(t *testing.T) {
	const content = "9:name=systemd:/\n8:pids:/\n4:memory:/vigil-test-ab:c\n2:cpu,cpuacct:/kubepods/burstable\n0::/system.slice/x.service\n"
	dir := t.TempDir()
	writeFile(t, dir, "1234/cgroup", content)
	tests := []struct {
		name   string
		layout Layout
		want   string
	}{
		{"memory controller path is returned, colons included", Layout{Mode: ModeHybrid, Controller: "memory", SubsysIndex: 4}, "/vigil-test-ab:c"},
		{"a controller co-mounted with another is found", Layout{Mode: ModeLegacy, Controller: "cpuacct", SubsysIndex: 2}, "/kubepods/burstable"},
		{"unified layout returns the cgroup2 path", Layout{Mode: ModeUnified, SubsysIndex: -1}, "/system.slice/x.service"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ProcCgroupPath(dir, 1234, tc.layout)
			if err != nil {
				t.Fatalf("ProcCgroupPath: %v", err)
			}
			if got != tc.want {
				t.Errorf("ProcCgroupPath = %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("an unmounted controller is an error", func(t *testing.T) {
		if _, err := ProcCgroupPath(dir, 1234, Layout{Mode: ModeHybrid, Controller: "freezer"}); err == nil {
			t.Fatal("ProcCgroupPath found a freezer entry that does not exist")
		}
	})
	t.Run("a vanished process is an error", func(t *testing.T) {
		if _, err := ProcCgroupPath(dir, 999999, Layout{Mode: ModeUnified}); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("ProcCgroupPath error = %v, want a wrapped not-exist error", err)
		}
	})
}

// TestLiveLayout checks the layout of this machine and attributes a real
// process moved into a fresh v1 cgroup, as runc with a cgroupfs
// cgroupsPath would place it.
func TestLiveLayout(t *testing.T) {
	testenv.RequireRoot(t)
	_, statErr := os.Stat("/sys/fs/cgroup/memory/cgroup.procs")
	testenv.Require(t, statErr == nil, "hybrid cgroups with the v1 memory controller at /sys/fs/cgroup/memory")

	layout, err := DetectLayout("", "")
	if err != nil {
		t.Fatalf("DetectLayout: %v", err)
	}
	rows, err := DetectLayoutBTF(DefaultMountInfo, DefaultCgroups, nil)
	if err != nil {
		t.Fatalf("DetectLayout from /proc files: %v", err)
	}
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatalf("load kernel BTF: %v", err)
	}
	kernelIdx, err := KernelSubsysIndex(spec, "memory")
	if err != nil {
		t.Fatalf("KernelSubsysIndex: %v", err)
	}

	t.Run("this hybrid host attributes by the memory controller", func(t *testing.T) {
		want := Layout{Mode: ModeHybrid, Cgroup2Path: "/sys/fs/cgroup/unified", Controller: "memory",
			SubsysIndex: kernelIdx, IndexSource: IndexFromBTF, V1Root: "/sys/fs/cgroup/memory"}
		if layout != want {
			t.Errorf("DetectLayout\n got %+v\nwant %+v", layout, want)
		}
	})
	t.Run("the /proc/cgroups row order equals the kernel enum cgroup_subsys_id", func(t *testing.T) {
		if rows.SubsysIndex != kernelIdx || rows.IndexSource != IndexFromProcCgroup {
			t.Errorf("row-order index %d (%s), kernel BTF memory_cgrp_id = %d", rows.SubsysIndex, rows.IndexSource, kernelIdx)
		}
		subsys, err := readSubsystems(DefaultCgroups)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range subsys {
			idx, err := KernelSubsysIndex(spec, s.name)
			if err != nil || idx != s.row {
				t.Errorf("/proc/cgroups row %d is %s, kernel enum value %d (%v)", s.row, s.name, idx, err)
			}
		}
	})

	t.Run("a process moved into a fresh v1 cgroup is attributed to runc with that id", func(t *testing.T) {
		var b [6]byte
		if _, err := rand.Read(b[:]); err != nil {
			t.Fatal(err)
		}
		name := "vigil-test-" + hex.EncodeToString(b[:])
		dir := filepath.Join(layout.V1Root, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatalf("create cgroup %s: %v", dir, err)
		}
		cmd := exec.Command("sleep", "30")
		if err := cmd.Start(); err != nil {
			_ = os.Remove(dir)
			t.Fatalf("start sleep: %v", err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			// The cgroup is removable once its last task is reaped.
			deadline := time.Now().Add(5 * time.Second)
			for {
				err := os.Remove(dir)
				if err == nil || errors.Is(err, os.ErrNotExist) {
					return
				}
				if time.Now().After(deadline) {
					t.Errorf("remove cgroup %s: %v", dir, err)
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
		pid := cmd.Process.Pid
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			t.Fatalf("move pid %d into %s: %v", pid, dir, err)
		}

		path, err := ProcCgroupPath("", pid, layout)
		if err != nil {
			t.Fatalf("ProcCgroupPath: %v", err)
		}
		if path != "/"+name {
			t.Fatalf("ProcCgroupPath = %q, want %q", path, "/"+name)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(dir, &st); err != nil {
			t.Fatalf("stat %s: %v", dir, err)
		}
		// The kernfs id of a cgroup is its directory's inode number.
		c := NewResolver(16).Resolve(st.Ino, path)
		if c == nil || c.Host || c.ID != name || c.Runtime != RuntimeRunc {
			t.Errorf("Resolve(%d, %q) = %+v, want runc container %s", st.Ino, path, c, name)
		}
	})
}

func TestDetectLayoutPrefersKernelBTF(t *testing.T) {
	spec, err := btf.LoadKernelSpec()
	testenv.Require(t, err == nil, "kernel BTF at /sys/kernel/btf/vmlinux")
	memIdx, err := KernelSubsysIndex(spec, "memory")
	testenv.Require(t, err == nil, "kernel built with the memory controller")

	// A 6.12+ kernel built without v1 cpuset omits the cpuset row, so the
	// memory row moves up by one while the enum value does not.
	noCpuset := strings.Replace(procCgroups618, "cpuset\t3\t1\t1\n", "", 1)
	dir := t.TempDir()
	mounts, cgroups := writeFile(t, dir, "mounts", hybridMountinfo), writeFile(t, dir, "cgroups", noCpuset)

	t.Run("without BTF the row order is used", func(t *testing.T) {
		l, err := DetectLayoutBTF(mounts, cgroups, nil)
		if err != nil {
			t.Fatal(err)
		}
		if l.SubsysIndex != 3 || l.IndexSource != IndexFromProcCgroup {
			t.Errorf("SubsysIndex = %d (%s), want row 3 from /proc/cgroups", l.SubsysIndex, l.IndexSource)
		}
	})
	t.Run("with BTF the kernel enum value wins over a shifted row", func(t *testing.T) {
		l, err := DetectLayoutBTF(mounts, cgroups, spec)
		if err != nil {
			t.Fatal(err)
		}
		if l.SubsysIndex != memIdx || l.IndexSource != IndexFromBTF {
			t.Errorf("SubsysIndex = %d (%s), want memory_cgrp_id %d from BTF", l.SubsysIndex, l.IndexSource, memIdx)
		}
	})
}

func BenchmarkDetectLayout(b *testing.B) {
	for b.Loop() {
		if _, err := DetectLayout("", ""); err != nil {
			b.Fatal(err)
		}
	}
}

package container

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// Layout modes.
const (
	ModeUnified = "unified" // cgroup2 only: the v2 cgroup id identifies containers
	ModeHybrid  = "hybrid"  // v1 controllers plus cgroup2 without them
	ModeLegacy  = "legacy"  // v1 only
)

// Where Layout.SubsysIndex came from.
const (
	IndexFromBTF        = "btf"           // enum cgroup_subsys_id in the kernel's BTF
	IndexFromProcCgroup = "/proc/cgroups" // row order of /proc/cgroups
)

// Layout describes which cgroup hierarchy carries container identity on this
// host, for the eBPF sensor and for reading /proc/<pid>/cgroup.
//
// On unified hosts bpf_get_current_cgroup_id() names the container. On
// hybrid and legacy hosts every process sits in the cgroup2 root (or there
// is no cgroup2), so the sensor must read the task's cgroup in one v1
// controller's hierarchy: task->cgroups->subsys[SubsysIndex]->cgroup.
type Layout struct {
	Mode string
	// Cgroup2Path is the cgroup2 mount point ("" on legacy hosts).
	Cgroup2Path string
	// Controller is the v1 controller whose hierarchy attributes
	// processes: memory if mounted, else pids, else cpu, else the first
	// mounted one. Empty on unified hosts.
	Controller string
	// SubsysIndex is Controller's value in the kernel's enum
	// cgroup_subsys_id, i.e. the index into task->cgroups->subsys[]; -1 on
	// unified hosts.
	SubsysIndex int
	// IndexSource says how SubsysIndex was determined (IndexFromBTF or
	// IndexFromProcCgroup); empty on unified hosts.
	IndexSource string
	// V1Root is the mount point of Controller's hierarchy, e.g.
	// /sys/fs/cgroup/memory. Empty on unified hosts.
	V1Root string
}

// Default sources for DetectLayout.
const (
	DefaultMountInfo = "/proc/self/mountinfo"
	DefaultMounts    = "/proc/mounts"
	DefaultCgroups   = "/proc/cgroups"
)

// DetectLayout reads the mount table (mountinfo or /proc/mounts format;
// "" means /proc/self/mountinfo, falling back to /proc/mounts) and the
// controller table ("" means /proc/cgroups) and decides the Layout of the
// running kernel. Pass the host's files (e.g. /host/proc/1/mountinfo) when
// running in a container.
//
// The subsystem index rule: the kernel prints /proc/cgroups by iterating
// its subsystems in enum cgroup_subsys_id order, so a controller's row
// number (0-based, header excluded) is its enum value; this was verified on
// kernel 6.18 against vmlinux.h and kernel BTF (cpuset=0 ... memory=4 ...
// pids=11, every row). Since Linux 6.12 ("cgroup: Do not report
// unavailable v1 controllers in /proc/cgroups") rows of controllers built
// without v1 support (e.g. cpuset with CONFIG_CPUSETS_V1=n) are skipped,
// which shifts the rows after them. DetectLayout therefore takes the index
// from the running kernel's BTF when it is available and uses the row
// order only as the fallback; Layout.IndexSource records which applied.
func DetectLayout(mountsPath, cgroupsPath string) (Layout, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		slog.Debug("no kernel BTF; cgroup subsystem index from /proc/cgroups row order", "error", err)
		spec = nil
	}
	return DetectLayoutBTF(mountsPath, cgroupsPath, spec)
}

// DetectLayoutBTF is DetectLayout with the kernel BTF given explicitly:
// spec (when not nil) supplies SubsysIndex, else the /proc/cgroups row
// order does. Use it to describe a kernel other than the running one, or
// with a nil spec to apply the row-order rule alone.
func DetectLayoutBTF(mountsPath, cgroupsPath string, spec *btf.Spec) (Layout, error) {
	var kernel func(string) (int, error)
	if spec != nil {
		kernel = func(ctrl string) (int, error) { return KernelSubsysIndex(spec, ctrl) }
	}
	if mountsPath == "" {
		mountsPath = DefaultMountInfo
		if _, err := os.Stat(mountsPath); err != nil {
			mountsPath = DefaultMounts
		}
	}
	if cgroupsPath == "" {
		cgroupsPath = DefaultCgroups
	}
	return detectLayout(mountsPath, cgroupsPath, kernel)
}

func detectLayout(mountsPath, cgroupsPath string, kernel func(string) (int, error)) (Layout, error) {
	mounts, err := readMounts(mountsPath)
	if err != nil {
		return Layout{}, err
	}

	var cg2 []mount
	var v1 []mount
	for _, m := range mounts {
		switch m.fstype {
		case "cgroup2":
			cg2 = append(cg2, m)
		case "cgroup":
			v1 = append(v1, m)
		}
	}
	l := Layout{SubsysIndex: -1}
	if m, ok := pickCgroup2(cg2); ok {
		l.Cgroup2Path = m.point
	}

	var subsys []subsystem
	if len(v1) > 0 {
		subsys, err = readSubsystems(cgroupsPath)
		if err != nil {
			return Layout{}, err
		}
	}
	// Controllers mounted on a v1 hierarchy, in /proc/cgroups order.
	var mounted []subsystem
	roots := make(map[string]mount)
	for _, s := range subsys {
		if !s.enabled {
			continue
		}
		for _, m := range v1 {
			if !m.hasOption(s.name) {
				continue
			}
			if prev, ok := roots[s.name]; !ok || (prev.root != "/" && m.root == "/") {
				roots[s.name] = m
			}
		}
		if _, ok := roots[s.name]; ok {
			mounted = append(mounted, s)
		}
	}

	switch {
	case len(mounted) == 0 && l.Cgroup2Path == "":
		return Layout{}, fmt.Errorf("no cgroup2 mount and no v1 controller mount in %s: mount cgroup2 at /sys/fs/cgroup or pass the mount table of the host", mountsPath)
	case len(mounted) == 0:
		l.Mode = ModeUnified
		return l, nil
	case l.Cgroup2Path == "":
		l.Mode = ModeLegacy
	default:
		l.Mode = ModeHybrid
	}

	chosen := mounted[0]
	found := false
	for _, want := range []string{"memory", "pids", "cpu"} {
		for _, s := range mounted {
			if s.name == want {
				chosen, found = s, true
				break
			}
		}
		if found {
			break
		}
	}
	l.Controller = chosen.name
	l.V1Root = roots[chosen.name].point
	l.SubsysIndex, l.IndexSource = chosen.row, IndexFromProcCgroup
	if kernel != nil {
		idx, err := kernel(chosen.name)
		switch {
		case err != nil:
			slog.Warn("kernel BTF lacks the cgroup subsystem; using /proc/cgroups row order", "controller", chosen.name, "index", chosen.row, "error", err)
		default:
			if idx != chosen.row {
				slog.Info("cgroup subsystem index differs between kernel BTF and /proc/cgroups rows; using BTF",
					"controller", chosen.name, "btf", idx, "row", chosen.row)
			}
			l.SubsysIndex, l.IndexSource = idx, IndexFromBTF
		}
	}
	return l, nil
}

// KernelSubsysIndex returns controller's value in enum cgroup_subsys_id of
// the given kernel BTF. The v1 name "blkio" is the kernel's io controller.
func KernelSubsysIndex(spec *btf.Spec, controller string) (int, error) {
	var enum *btf.Enum
	if err := spec.TypeByName("cgroup_subsys_id", &enum); err != nil {
		return -1, fmt.Errorf("find enum cgroup_subsys_id in kernel BTF: %w", err)
	}
	name := controller
	if name == "blkio" {
		name = "io"
	}
	want := name + "_cgrp_id"
	for _, v := range enum.Values {
		if v.Name == want {
			return int(v.Value), nil
		}
	}
	return -1, fmt.Errorf("controller %q (%s) not in kernel enum cgroup_subsys_id: the kernel was built without it", controller, want)
}

// ProcCgroupPath returns the cgroup path process pid has in the hierarchy
// the layout attributes by: Layout.Controller's v1 hierarchy, or cgroup2 on
// unified hosts. procRoot "" means /proc.
func ProcCgroupPath(procRoot string, pid int, layout Layout) (string, error) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	file := filepath.Join(procRoot, strconv.Itoa(pid), "cgroup")
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read cgroups of pid %d: %w", pid, err)
	}
	for line := range strings.Lines(string(data)) {
		line = strings.TrimRight(line, "\n")
		// hierarchy-id:controller-list:path; the path may contain ':'.
		id, rest, ok1 := strings.Cut(line, ":")
		ctrls, path, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 {
			continue
		}
		if layout.Controller == "" {
			if id == "0" && ctrls == "" {
				return path, nil
			}
			continue
		}
		for c := range strings.SplitSeq(ctrls, ",") {
			if c == layout.Controller {
				return path, nil
			}
		}
	}
	if layout.Controller == "" {
		return "", fmt.Errorf("%s has no cgroup2 entry (0::): the layout says unified but the process is not in a cgroup2 hierarchy; re-detect the layout", file)
	}
	return "", fmt.Errorf("%s has no entry for controller %q: the controller is not mounted as cgroup v1; re-detect the layout", file, layout.Controller)
}

// mount is one cgroup-relevant entry of the mount table.
type mount struct {
	point  string
	root   string // root of the mount within its filesystem ("/" for /proc/mounts)
	fstype string
	opts   string // mount and superblock options, comma-separated
}

func (m mount) hasOption(name string) bool {
	for o := range strings.SplitSeq(m.opts, ",") {
		if o == name {
			return true
		}
	}
	return false
}

// readMounts parses mountinfo or /proc/mounts format.
func readMounts(path string) ([]mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open mount table: %w", err)
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if sep := indexOf(fields, "-"); sep >= 6 && len(fields) > sep+3 {
			// mountinfo: id parent maj:min root point opts [optional...] - fstype source superopts
			out = append(out, mount{
				root:   unescapeOctal(fields[3]),
				point:  unescapeOctal(fields[4]),
				fstype: fields[sep+1],
				opts:   fields[5] + "," + fields[sep+3],
			})
			continue
		}
		if len(fields) >= 4 {
			// /proc/mounts: source point fstype opts freq passno
			out = append(out, mount{root: "/", point: unescapeOctal(fields[1]), fstype: fields[2], opts: fields[3]})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mount table %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("mount table %s is empty or not in mountinfo or /proc/mounts format", path)
	}
	return out, nil
}

func indexOf(fields []string, s string) int {
	for i, f := range fields {
		if f == s {
			return i
		}
	}
	return -1
}

// unescapeOctal undoes the kernel's \ooo escaping of spaces, tabs,
// newlines and backslashes in mount table paths.
func unescapeOctal(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// pickCgroup2 prefers the conventional mount points, then any mount of the
// filesystem root.
func pickCgroup2(ms []mount) (mount, bool) {
	for _, want := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		for _, m := range ms {
			if m.point == want && m.root == "/" {
				return m, true
			}
		}
	}
	for _, m := range ms {
		if m.root == "/" {
			return m, true
		}
	}
	if len(ms) > 0 {
		return ms[0], true
	}
	return mount{}, false
}

// subsystem is one row of /proc/cgroups.
type subsystem struct {
	name    string
	row     int // 0-based row number, header excluded
	enabled bool
}

func readSubsystems(path string) ([]subsystem, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read cgroup controller table (needed for v1 cgroup mounts): %w", err)
	}
	var out []subsystem
	for line := range strings.Lines(string(data)) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		out = append(out, subsystem{name: f[0], row: len(out), enabled: f[3] == "1"})
	}
	if len(out) == 0 {
		return nil, errors.New("cgroup controller table " + path + " lists no controllers: v1 cgroup mounts exist but the kernel reports no v1 controllers")
	}
	return out, nil
}

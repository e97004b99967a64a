package proc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vigil-sec/vigil/internal/event"
)

// maxCmdline bounds how much of /proc/<pid>/cmdline is kept; longer
// argument lists are cut and marked ArgsTruncated.
const maxCmdline = 32 << 10

// procReader reads process details from a procfs mount.
type procReader struct {
	root string
	// controller selects the cgroup path kept: a v1 controller name
	// ("memory") or "" for the cgroup2 ("0::") line.
	controller string
}

func (r procReader) path(pid int, name string) string {
	return filepath.Join(r.root, strconv.Itoa(pid), name)
}

// statInfo is what /proc/<pid>/stat tells us.
type statInfo struct {
	Comm       string
	PPID       int
	StartTicks uint64 // field 22: start time in clock ticks (USER_HZ=100) since boot
}

// StartNS converts the start time to nanoseconds since boot
// (CLOCK_BOOTTIME), the unit event.Process.StartTime uses.
func (s statInfo) StartNS() uint64 { return s.StartTicks * event.TickNS }

func (r procReader) stat(pid int) (statInfo, error) {
	b, err := os.ReadFile(r.path(pid, "stat"))
	if err != nil {
		return statInfo{}, err
	}
	return parseStat(b)
}

// parseStat parses /proc/<pid>/stat. comm is enclosed in parentheses and
// may itself contain spaces and ')', so fields are counted from the last ')'.
func parseStat(b []byte) (statInfo, error) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return statInfo{}, errors.New("stat: no (comm) field")
	}
	si := statInfo{Comm: string(b[open+1 : end])}
	// After ") ": field 3 (state) onwards.
	fields := strings.Fields(string(b[end+1:]))
	const ppidIdx, startIdx = 4 - 3, 22 - 3
	if len(fields) <= startIdx {
		return statInfo{}, fmt.Errorf("stat: %d fields after comm, need %d", len(fields), startIdx+1)
	}
	ppid, err := strconv.Atoi(fields[ppidIdx])
	if err != nil {
		return statInfo{}, fmt.Errorf("stat: ppid %q: %w", fields[ppidIdx], err)
	}
	start, err := strconv.ParseUint(fields[startIdx], 10, 64)
	if err != nil {
		return statInfo{}, fmt.Errorf("stat: starttime %q: %w", fields[startIdx], err)
	}
	si.PPID, si.StartTicks = ppid, start
	return si, nil
}

// creds are the ids from /proc/<pid>/status.
type creds struct{ UID, EUID, GID uint32 }

func (r procReader) status(pid int) (creds, error) {
	b, err := os.ReadFile(r.path(pid, "status"))
	if err != nil {
		return creds{}, err
	}
	return parseStatus(b)
}

// parseStatus reads the Uid: and Gid: lines (real, effective, saved, fs).
func parseStatus(b []byte) (creds, error) {
	var c creds
	var seenUID, seenGID bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		var ids *[2]*uint32
		switch {
		case strings.HasPrefix(line, "Uid:"):
			ids, seenUID = &[2]*uint32{&c.UID, &c.EUID}, true
		case strings.HasPrefix(line, "Gid:"):
			ids, seenGID = &[2]*uint32{&c.GID, nil}, true
		default:
			continue
		}
		f := strings.Fields(line[4:])
		if len(f) < 2 {
			return creds{}, fmt.Errorf("status: malformed line %q", line)
		}
		for i, dst := range ids {
			if dst == nil {
				continue
			}
			v, err := strconv.ParseUint(f[i], 10, 32)
			if err != nil {
				return creds{}, fmt.Errorf("status: %q: %w", line, err)
			}
			*dst = uint32(v)
		}
	}
	if !seenUID || !seenGID {
		return creds{}, errors.New("status: no Uid:/Gid: lines")
	}
	return c, nil
}

// cmdline reads the argument vector, at most maxCmdline bytes of it.
func (r procReader) cmdline(pid int) (args []string, truncated bool, err error) {
	f, err := os.Open(r.path(pid, "cmdline"))
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCmdline+1))
	if err != nil {
		return nil, false, err
	}
	args, truncated = splitCmdline(b, maxCmdline)
	return args, truncated, nil
}

// splitCmdline splits NUL-separated arguments, keeping at most max bytes.
func splitCmdline(b []byte, max int) (args []string, truncated bool) {
	if len(b) > max {
		b, truncated = b[:max], true
	}
	b = bytes.TrimSuffix(b, []byte{0})
	if len(b) == 0 {
		return nil, truncated
	}
	for _, a := range bytes.Split(b, []byte{0}) {
		args = append(args, string(a))
	}
	return args, truncated
}

// cgroup returns the configured controller's cgroup path.
func (r procReader) cgroup(pid int) (string, error) {
	b, err := os.ReadFile(r.path(pid, "cgroup"))
	if err != nil {
		return "", err
	}
	return parseCgroup(b, r.controller)
}

// parseCgroup picks the path of controller (a v1 controller name such as
// "memory") from /proc/<pid>/cgroup, or the unified "0::" line when
// controller is "" or not mounted as v1.
func parseCgroup(b []byte, controller string) (string, error) {
	var unified string
	var haveUnified bool
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			unified, haveUnified = parts[2], true
			continue
		}
		if controller == "" {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == controller {
				return parts[2], nil
			}
		}
	}
	if haveUnified {
		return unified, nil
	}
	return "", fmt.Errorf("cgroup: neither controller %q nor a 0:: line present", controller)
}

// nsInode reads the inode of /proc/<pid>/ns/<name> ("mnt:[4026531841]").
func (r procReader) nsInode(pid int, name string) (uint32, error) {
	l, err := os.Readlink(filepath.Join(r.root, strconv.Itoa(pid), "ns", name))
	if err != nil {
		return 0, err
	}
	return parseNSLink(l)
}

func parseNSLink(l string) (uint32, error) {
	open, end := strings.IndexByte(l, '['), strings.LastIndexByte(l, ']')
	if open < 0 || end < open {
		return 0, fmt.Errorf("namespace link %q: no [inode]", l)
	}
	v, err := strconv.ParseUint(l[open+1:end], 10, 32)
	if err != nil {
		return 0, fmt.Errorf("namespace link %q: %w", l, err)
	}
	return uint32(v), nil
}

// exe fills the executable fields of p from /proc/<pid>/exe.
func (r procReader) exe(pid int, p *event.Process) error {
	link := r.path(pid, "exe")
	target, err := os.Readlink(link)
	if err != nil {
		return err
	}
	if t, ok := strings.CutSuffix(target, " (deleted)"); ok {
		target, p.ExeDeleted = t, true
	}
	p.Exe = target
	p.ExeMemfd = strings.HasPrefix(target, "/memfd:")
	var st unix.Stat_t
	if err := unix.Stat(link, &st); err == nil {
		p.ExeInode = st.Ino
		p.ExeDev = kernelDev(st.Dev)
	}
	return nil
}

// kernelDev converts a userspace dev_t to the kernel's internal encoding
// (MAJOR<<20 | MINOR, what sb->s_dev holds and the eBPF source reports).
func kernelDev(dev uint64) uint32 {
	return unix.Major(dev)<<20 | unix.Minor(dev)&0xfffff
}

// readProcess fills p (whose PID is set) with everything /proc still knows.
// It stops at the first sign the pid was reused by a process started after
// the event (eventBootNS, ns since boot), and reports what it could not
// read. p.StartTime is only set when the stat read succeeded.
func (r procReader) readProcess(p *event.Process, eventBootNS uint64, full bool) error {
	si, err := r.stat(p.PID)
	if err != nil {
		return fmt.Errorf("read stat of pid %d: %w", p.PID, err)
	}
	if eventBootNS != 0 && si.StartNS() > eventBootNS+reuseSlackNS {
		return fmt.Errorf("pid %d was reused: it started %d ns after the event: %w", p.PID, si.StartNS()-eventBootNS, errReused)
	}
	p.Comm, p.PPID, p.StartTime = si.Comm, si.PPID, si.StartNS()
	var errs []error
	if c, err := r.status(p.PID); err == nil {
		p.UID, p.EUID, p.GID = c.UID, c.EUID, c.GID
	} else {
		errs = append(errs, err)
	}
	if !full {
		return errors.Join(errs...)
	}
	if err := r.exe(p.PID, p); err != nil {
		errs = append(errs, err)
	}
	if args, trunc, err := r.cmdline(p.PID); err == nil {
		p.Args, p.ArgsTruncated = args, trunc
	} else {
		errs = append(errs, err)
	}
	if cwd, err := os.Readlink(r.path(p.PID, "cwd")); err == nil {
		p.Cwd = cwd
	} else {
		errs = append(errs, err)
	}
	if cg, err := r.cgroup(p.PID); err == nil {
		p.Cgroup = cg
	} else {
		errs = append(errs, err)
	}
	for _, ns := range []struct {
		name string
		dst  *uint32
	}{{"mnt", &p.MntNS}, {"pid", &p.PidNS}, {"net", &p.NetNS}} {
		if v, err := r.nsInode(p.PID, ns.name); err == nil {
			*ns.dst = v
		} else {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// reuseSlackNS absorbs the error of converting the event's monotonic time
// to boot time.
const reuseSlackNS = 1_000_000

var errReused = errors.New("pid reused")

package proctree

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vigil-sec/vigil/internal/event"
)

// SeedFromProc loads every process in ProcRoot into the table, linking
// each to its parent by ppid, and returns how many processes it read.
// Processes that vanish while being read are skipped; a process already in
// the table is refreshed but keeps its original parent. Calling it again
// (a re-seed) adds processes started since.
func (t *Table) SeedFromProc() (int, error) {
	des, err := os.ReadDir(t.opts.ProcRoot)
	if err != nil {
		return 0, fmt.Errorf("list processes in %s (is procfs mounted there?): %w", t.opts.ProcRoot, err)
	}
	procs := make([]event.Process, 0, len(des))
	for _, de := range des {
		pid, err := strconv.Atoi(de.Name())
		if err != nil || pid <= 0 {
			continue
		}
		p, err := readProcess(t.opts.ProcRoot, pid, t.opts.CgroupController)
		if err != nil {
			// Gone since the directory was listed: normal.
			continue
		}
		procs = append(procs, p)
	}
	// Parents start before their children: inserting in start order links
	// every child to an entry that already exists.
	slices.SortFunc(procs, func(a, b event.Process) int {
		return cmp.Or(cmp.Compare(a.StartTime, b.StartTime), cmp.Compare(a.PID, b.PID))
	})
	for i := range procs {
		p := procs[i]
		if !validPID(p.PID) {
			continue // not a Linux pid (a fake procfs)
		}
		if e := t.byKey[makePKey(p.PID, p.StartTime)]; e != nil && !e.removed() {
			if e.parent == nil {
				t.link(e, t.livePID(p.PPID))
			}
			if e.parent != nil {
				p.PPID = int(e.parent.pid)
			}
			t.store(e, &p, e.parent)
			t.bump(e)
			continue
		}
		t.insert(p, t.livePID(p.PPID))
	}
	t.log.Debug("process table seeded from procfs", "root", t.opts.ProcRoot, "processes", len(procs), "entries", t.Len())
	return len(procs), nil
}

// readProcess reads one process from procfs. Only stat is required (it
// gives identity and parent); the other files are best effort because
// permissions, kernel threads and exiting processes make them unreadable.
func readProcess(root string, pid int, controller string) (event.Process, error) {
	dir := filepath.Join(root, strconv.Itoa(pid))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return event.Process{}, fmt.Errorf("read process %d stat: %w", pid, err)
	}
	p, err := parseStat(stat)
	if err != nil {
		return event.Process{}, fmt.Errorf("parse %s: %w", filepath.Join(dir, "stat"), err)
	}
	if p.PID != pid {
		return event.Process{}, fmt.Errorf("parse %s: pid %d in a file for pid %d", filepath.Join(dir, "stat"), p.PID, pid)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "status")); err == nil {
		p.UID, p.EUID, p.GID = parseStatusIDs(b)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil {
		p.Args = parseCmdline(b)
	}
	if exe, err := os.Readlink(filepath.Join(dir, "exe")); err == nil {
		p.Exe, p.ExeDeleted = strings.CutSuffix(exe, " (deleted)")
		p.ExeMemfd = strings.HasPrefix(p.Exe, "/memfd:")
	}
	if cwd, err := os.Readlink(filepath.Join(dir, "cwd")); err == nil {
		p.Cwd = cwd
	}
	if b, err := os.ReadFile(filepath.Join(dir, "cgroup")); err == nil {
		p.Cgroup = parseCgroup(b, controller)
	}
	p.MntNS = readNS(dir, "mnt")
	p.PidNS = readNS(dir, "pid")
	p.NetNS = readNS(dir, "net")
	return p, nil
}

// parseStat reads pid, comm, ppid and start time (field 22, clock ticks
// since boot, converted to ns like event.MakeKey expects) from
// /proc/<pid>/stat. comm may contain spaces and parentheses, so it runs to
// the LAST ')'.
func parseStat(b []byte) (event.Process, error) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 1 || end < open {
		return event.Process{}, errors.New("no (comm) field")
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return event.Process{}, fmt.Errorf("pid field: %w", err)
	}
	// Fields after comm start at field 3 (state).
	f := strings.Fields(string(b[end+1:]))
	const ppidField, startField = 4, 22
	if len(f) < startField-2 {
		return event.Process{}, fmt.Errorf("only %d fields after comm, need %d", len(f), startField-2)
	}
	ppid, err := strconv.Atoi(f[ppidField-3])
	if err != nil {
		return event.Process{}, fmt.Errorf("ppid field: %w", err)
	}
	ticks, err := strconv.ParseUint(f[startField-3], 10, 64)
	if err != nil {
		return event.Process{}, fmt.Errorf("starttime field: %w", err)
	}
	return event.Process{PID: pid, PPID: ppid, Comm: string(b[open+1 : end]), StartTime: ticks * event.TickNS}, nil
}

// parseStatusIDs returns real uid, effective uid and real gid.
func parseStatusIDs(b []byte) (uid, euid, gid uint32) {
	for line := range strings.Lines(string(b)) {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || (name != "Uid" && name != "Gid") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 2 {
			continue
		}
		real, err1 := strconv.ParseUint(f[0], 10, 32)
		eff, err2 := strconv.ParseUint(f[1], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		if name == "Uid" {
			uid, euid = uint32(real), uint32(eff)
		} else {
			gid = uint32(real)
		}
	}
	return uid, euid, gid
}

// parseCmdline splits NUL-separated argv. A process that rewrote its argv
// into one space-separated string stays one argument.
func parseCmdline(b []byte) []string {
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil
	}
	return strings.Split(string(b), "\x00")
}

// parseCgroup returns the path of the line for controller ("" = the
// unified "0::" line). Lines are "hierarchy-id:controller,list:path".
func parseCgroup(b []byte, controller string) string {
	for line := range strings.Lines(string(b)) {
		line = strings.TrimRight(line, "\n")
		id, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		ctrls, path, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		if controller == "" {
			if id == "0" && ctrls == "" {
				return path
			}
			continue
		}
		for c := range strings.SplitSeq(ctrls, ",") {
			if c == controller {
				return path
			}
		}
	}
	return ""
}

// readNS returns the inode of a namespace link ("mnt:[4026531841]").
func readNS(dir, ns string) uint32 {
	l, err := os.Readlink(filepath.Join(dir, "ns", ns))
	if err != nil {
		return 0
	}
	_, v, ok := strings.Cut(l, "[")
	if !ok {
		return 0
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(v, "]"), 10, 32)
	if err != nil {
		return 0
	}
	return uint32(n)
}

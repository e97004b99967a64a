package ebpf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/bpf"
	"github.com/vigil-sec/vigil/internal/event"
)

// Fixed-part sizes of the records in internal/bpf/c/process.bpf.c and
// file.bpf.c (the decoder tests compare them with the bpf2go types).
const (
	execFixedSize = bpf.RecHdrSize + 32 // struct exec_rec up to data[]
	forkRecSize   = bpf.RecHdrSize + 16 // struct fork_rec
	exitRecSize   = bpf.RecHdrSize + 8  // struct exit_rec
	fileFixedSize = bpf.RecHdrSize + 40 // struct file_rec up to data[]
)

// exec_rec.flags
const (
	execUpper       = 1
	execMemfd       = 2
	execDeleted     = 4
	execArgvTrunc   = 8
	execExeTrunc    = 16
	execCwdTrunc    = 32
	execCgroupTrunc = 64
	execStdinInet   = 128
	execStdoutInet  = 256
)

// file_rec.rflags
const (
	frecSensitive = 1
)

// Syscall identifiers (enum vigil_sc in file.bpf.c).
var syscallNames = [...]string{
	1: "open", 2: "creat", 3: "openat", 4: "openat2", 5: "chmod", 6: "fchmod", 7: "fchmodat",
	8: "fchmodat2", 9: "unlink", 10: "unlinkat", 11: "rename", 12: "renameat", 13: "renameat2",
	14: "memfd_create", 15: "ptrace", 16: "init_module", 17: "finit_module", 18: "setns",
	19: "unshare", 20: "mount",
}

const (
	oAccmode = 0o3
	oCreat   = 0o100
	oTrunc   = 0o1000
	oTmpfile = 0o20000000
)

var le = binary.LittleEndian // both BPF targets (amd64, arm64) are little-endian

// decodeHdr parses the record header and checks the record's declared size.
func decodeHdr(b []byte, h *bpf.RecHdr) error {
	if len(b) < bpf.RecHdrSize {
		return fmt.Errorf("record of %d bytes is shorter than its %d-byte header", len(b), bpf.RecHdrSize)
	}
	h.Type = le.Uint32(b[0:])
	h.Size = le.Uint32(b[4:])
	h.TS = le.Uint64(b[8:])
	h.PID = le.Uint32(b[16:])
	h.TID = le.Uint32(b[20:])
	h.StartTime = le.Uint64(b[24:])
	h.PPID = le.Uint32(b[32:])
	h.UID = le.Uint32(b[36:])
	h.GID = le.Uint32(b[40:])
	h.EUID = le.Uint32(b[44:])
	h.MntNS = le.Uint32(b[48:])
	h.PidNS = le.Uint32(b[52:])
	h.NetNS = le.Uint32(b[56:])
	h.Pad = le.Uint32(b[60:])
	h.CgroupID = le.Uint64(b[64:])
	copy(h.Comm[:], b[72:88])
	if int(h.Size) > len(b) || h.Size < bpf.RecHdrSize {
		return fmt.Errorf("record type %d declares %d bytes but %d arrived", h.Type, h.Size, len(b))
	}
	return nil
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// fillProcess copies the header's process fields into p.
func fillProcess(h *bpf.RecHdr, p *event.Process) {
	p.PID = int(h.PID)
	if h.TID != h.PID {
		p.TID = int(h.TID)
	}
	p.PPID = int(h.PPID)
	p.StartTime = h.StartTime
	p.UID, p.GID, p.EUID = h.UID, h.GID, h.EUID
	p.Comm = cstring(h.Comm[:])
	p.MntNS, p.PidNS, p.NetNS = h.MntNS, h.PidNS, h.NetNS
	p.CgroupID = h.CgroupID
}

// decoder turns records into events. It is used by one goroutine.
type decoder struct {
	bootWallNS int64 // wall-clock ns at boot: event time = bootWallNS + ts
	cgroups    *cgroupCache
}

func (d *decoder) wallTime(ts uint64) time.Time { return time.Unix(0, d.bootWallNS+int64(ts)) }

// decode parses one process or file record (types 1–3, 20–29) into ev.
func (d *decoder) decode(h *bpf.RecHdr, b []byte, ev *event.Event) error {
	b = b[:h.Size]
	ev.Time = d.wallTime(h.TS)
	ev.Source = "ebpf"
	fillProcess(h, &ev.Process)
	var err error
	switch h.Type {
	case bpf.RecExec:
		err = decodeExec(b, ev)
		if err == nil && ev.Process.CgroupID != 0 && ev.Process.Cgroup != "" && d.cgroups != nil {
			d.cgroups.put(ev.Process.CgroupID, ev.Process.Cgroup)
		}
	case bpf.RecFork:
		err = decodeFork(b, ev)
	case bpf.RecExit:
		err = decodeExit(b, ev)
	case bpf.RecOpen, bpf.RecChmod, bpf.RecUnlink, bpf.RecRename, bpf.RecMemfd, bpf.RecPtrace,
		bpf.RecModule, bpf.RecSetns, bpf.RecUnshare, bpf.RecMount:
		err = decodeFile(h, b, ev)
	default:
		return fmt.Errorf("unknown record type %d", h.Type)
	}
	if err != nil {
		return err
	}
	d.fillCgroup(ev)
	return nil
}

func (d *decoder) fillCgroup(ev *event.Event) {
	if ev.Process.Cgroup == "" && ev.Process.CgroupID != 0 && d.cgroups != nil {
		ev.Process.Cgroup = d.cgroups.get(ev.Process.CgroupID)
	}
}

// sections splits data into consecutive pieces of the given lengths.
func sections(data []byte, lens ...int) ([][]byte, error) {
	out := make([][]byte, len(lens))
	off := 0
	for i, n := range lens {
		if off+n > len(data) {
			return nil, fmt.Errorf("record section %d (%d bytes at %d) overruns its %d-byte payload", i, n, off, len(data))
		}
		out[i] = data[off : off+n]
		off += n
	}
	return out, nil
}

func decodeExec(b []byte, ev *event.Event) error {
	if len(b) < execFixedSize {
		return fmt.Errorf("exec record of %d bytes is shorter than %d", len(b), execFixedSize)
	}
	o := bpf.RecHdrSize
	ino := le.Uint64(b[o:])
	dev := le.Uint32(b[o+8:])
	flags := le.Uint32(b[o+12:])
	exeLen := int(le.Uint16(b[o+16:]))
	argvLen := int(le.Uint16(b[o+18:]))
	cwdLen := int(le.Uint16(b[o+20:]))
	cgLen := int(le.Uint16(b[o+22:]))
	secs, err := sections(b[execFixedSize:], exeLen, argvLen, cwdLen, cgLen)
	if err != nil {
		return fmt.Errorf("exec record: %w", err)
	}
	p := &ev.Process
	ev.Kind = event.KindExec
	p.Exe = string(secs[0])
	p.Args = splitArgv(secs[1])
	p.ArgsTruncated = flags&execArgvTrunc != 0
	p.Cwd = string(secs[2])
	p.Cgroup = string(secs[3])
	p.ExeInode = ino
	p.ExeDev = userDev(dev)
	p.ExeUpperLayer = flags&execUpper != 0
	p.ExeMemfd = flags&execMemfd != 0
	p.ExeDeleted = flags&execDeleted != 0
	p.StdinSocket = flags&execStdinInet != 0
	p.StdoutSocket = flags&execStdoutInet != 0
	return nil
}

// userDev converts a kernel dev_t (major<<20 | minor) to the encoding
// stat(2) reports (st_dev), so ExeDev compares with what user space sees.
func userDev(k uint32) uint32 {
	major, minor := k>>20, k&0xfffff
	return (minor & 0xff) | (major&0xfff)<<8 | (minor&^0xff)<<12
}

// splitArgv splits NUL-separated arguments; a final unterminated piece (a
// truncated argument) is kept.
func splitArgv(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	b = bytes.TrimSuffix(b, []byte{0})
	parts := bytes.Split(b, []byte{0})
	args := make([]string, len(parts))
	for i, a := range parts {
		args[i] = string(a)
	}
	return args
}

func decodeFork(b []byte, ev *event.Event) error {
	if len(b) < forkRecSize {
		return fmt.Errorf("fork record of %d bytes is shorter than %d", len(b), forkRecSize)
	}
	o := bpf.RecHdrSize
	ev.Kind = event.KindFork
	ev.Fork = &event.Fork{ChildPID: ev.Process.PID}
	ev.Parent = &event.ProcessRef{
		PID:       int(le.Uint32(b[o:])),
		StartTime: le.Uint64(b[o+8:]),
	}
	return nil
}

func decodeExit(b []byte, ev *event.Event) error {
	if len(b) < exitRecSize {
		return fmt.Errorf("exit record of %d bytes is shorter than %d", len(b), exitRecSize)
	}
	ev.Kind = event.KindExit
	ev.Exit = exitStatus(le.Uint32(b[bpf.RecHdrSize:]))
	return nil
}

// exitStatus decodes a wait status as the kernel stores it.
func exitStatus(st uint32) *event.Exit {
	sig := int(st & 0x7f)
	if sig == 0 {
		return &event.Exit{Code: int(st>>8) & 0xff}
	}
	return &event.Exit{Signal: sig, CoreDump: st&0x80 != 0}
}

var fileKinds = map[uint32]event.Kind{
	bpf.RecOpen: event.KindOpen, bpf.RecChmod: event.KindChmod, bpf.RecUnlink: event.KindUnlink,
	bpf.RecRename: event.KindRename, bpf.RecMemfd: event.KindMemfd, bpf.RecPtrace: event.KindPtrace,
	bpf.RecModule: event.KindModule, bpf.RecSetns: event.KindSetns, bpf.RecUnshare: event.KindUnshare,
	bpf.RecMount: event.KindMount,
}

func decodeFile(h *bpf.RecHdr, b []byte, ev *event.Event) error {
	if len(b) < fileFixedSize {
		return fmt.Errorf("file record of %d bytes is shorter than %d", len(b), fileFixedSize)
	}
	o := bpf.RecHdrSize
	result := int(int64(le.Uint64(b[o:])))
	flags := le.Uint64(b[o+8:])
	arg := le.Uint64(b[o+16:])
	target := int(le.Uint32(b[o+24:]))
	sc := int(le.Uint16(b[o+28:]))
	rflags := le.Uint16(b[o+30:])
	secs, err := sections(b[fileFixedSize:], int(le.Uint16(b[o+32:])), int(le.Uint16(b[o+34:])), int(le.Uint16(b[o+36:])))
	if err != nil {
		return fmt.Errorf("file record: %w", err)
	}
	name := ""
	if sc > 0 && sc < len(syscallNames) {
		name = syscallNames[sc]
	}
	ev.Kind = fileKinds[h.Type]
	s1, s2, s3 := string(secs[0]), string(secs[1]), string(secs[2])
	switch h.Type {
	case bpf.RecOpen:
		f := &event.File{Path: cleanPath(s1), Flags: uint32(flags), Result: result}
		f.Write = flags&oAccmode != 0
		f.Create = flags&(oCreat|oTmpfile) != 0
		f.Trunc = flags&oTrunc != 0
		f.Sensitive = rflags&frecSensitive != 0
		if f.Create {
			f.Mode = uint32(arg)
		}
		ev.File = f
	case bpf.RecChmod:
		ev.File = &event.File{Path: cleanPath(s1), Mode: uint32(arg), Result: result}
	case bpf.RecUnlink:
		ev.File = &event.File{Path: cleanPath(s1), Flags: uint32(flags), Result: result}
	case bpf.RecRename:
		ev.File = &event.File{Path: cleanPath(s1), NewPath: cleanPath(s2), Flags: uint32(flags), Result: result}
	case bpf.RecMemfd:
		ev.Syscall = &event.Syscall{Name: name, Result: result, Flags: flags, Name2: s1}
	case bpf.RecPtrace:
		ev.Syscall = &event.Syscall{Name: name, Result: result, TargetPID: target, Request: int64(arg)}
	case bpf.RecModule:
		ev.Syscall = &event.Syscall{Name: name, Result: result, Flags: flags, Module: s1, Args: s2}
	case bpf.RecSetns:
		ev.Syscall = &event.Syscall{Name: name, Result: result, Flags: arg, Target: s1, Namespace: namespaces(arg)}
		if target != 0 { // a namespace file: name it as readlink(/proc/PID/ns/*) does
			ev.Syscall.Target = fmt.Sprintf("%s:[%d]", s1, uint32(target))
		}
	case bpf.RecUnshare:
		ev.Syscall = &event.Syscall{Name: name, Result: result, Flags: flags, Namespace: namespaces(flags)}
	case bpf.RecMount:
		ev.Syscall = &event.Syscall{Name: name, Result: result, Flags: flags, Source: s1, Target: cleanPath(s2), FSType: s3}
	}
	return nil
}

// cleanPath normalises the kernel-built absolute path ("/a/./b/../c").
func cleanPath(p string) string {
	if p == "" || !strings.HasPrefix(p, "/") {
		return p
	}
	return path.Clean(p)
}

var nsFlags = []struct {
	bit  uint64
	name string
}{
	{0x00020000, "mnt"}, {0x02000000, "cgroup"}, {0x04000000, "uts"}, {0x08000000, "ipc"},
	{0x10000000, "user"}, {0x20000000, "pid"}, {0x40000000, "net"}, {0x00000080, "time"},
}

// namespaces names the CLONE_NEW* bits in flags ("user,mnt").
func namespaces(flags uint64) string {
	var names []string
	for _, f := range nsFlags {
		if flags&f.bit != 0 {
			names = append(names, f.name)
		}
	}
	return strings.Join(names, ",")
}

// cgroupCache remembers cgroup paths learned from exec records, so other
// events of the same cgroup carry the path too. Bounded: when full, an
// arbitrary entry is evicted.
type cgroupCache struct {
	max int
	m   map[uint64]string
}

func newCgroupCache(max int) *cgroupCache {
	return &cgroupCache{max: max, m: make(map[uint64]string)}
}

func (c *cgroupCache) get(id uint64) string { return c.m[id] }

func (c *cgroupCache) put(id uint64, p string) {
	if _, ok := c.m[id]; !ok && len(c.m) >= c.max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[id] = p
}

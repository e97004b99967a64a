package detect

import (
	"strings"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"

	"github.com/vigil-sec/vigil/internal/event"
)

// valType is the type of one vocabulary field.
type valType int

const (
	tString valType = iota
	tInt
	tBool
	tStringList
)

func (t valType) celType() *types.Type {
	switch t {
	case tInt:
		return types.IntType
	case tBool:
		return types.BoolType
	case tStringList:
		return types.NewListType(types.StringType)
	default:
		return types.StringType
	}
}

func (t valType) String() string {
	switch t {
	case tInt:
		return "int"
	case tBool:
		return "bool"
	case tStringList:
		return "list<string>"
	default:
		return "string"
	}
}

// field is one field of an object in the rule vocabulary, with typed
// accessors used by both the native evaluator and the CEL activation.
type field[V any] struct {
	t   valType
	doc string
	s   func(V) string
	n   func(V) int64
	b   func(V) bool
	l   func(V) []string
}

func fstr[V any](doc string, f func(V) string) field[V] { return field[V]{t: tString, doc: doc, s: f} }
func fn[V any](doc string, f func(V) int64) field[V]    { return field[V]{t: tInt, doc: doc, n: f} }
func fb[V any](doc string, f func(V) bool) field[V]     { return field[V]{t: tBool, doc: doc, b: f} }
func fl[V any](doc string, f func(V) []string) field[V] {
	return field[V]{t: tStringList, doc: doc, l: f}
}

// celValue converts a field of v into a CEL value (allocates; CEL path only).
func (f field[V]) celValue(v V) ref.Val {
	switch f.t {
	case tInt:
		return types.Int(f.n(v))
	case tBool:
		return types.Bool(f.b(v))
	case tStringList:
		return types.NewStringList(types.DefaultTypeAdapter, f.l(v))
	default:
		return types.String(f.s(v))
	}
}

// Object type names used in the CEL environment.
const (
	typeProcess   = "vigil.Process"
	typeContainer = "vigil.Container"
	typeNet       = "vigil.Net"
	typeFile      = "vigil.File"
	typeSys       = "vigil.Sys"
)

// procView is the rule-facing view of a process: the event's own process
// (full fields) or an ancestor (a ProcessRef: exe, comm, args, uid, pid).
// Derived values (name, cmdline, masquerade) are computed lazily and cached
// for the current event; the cmdline buffer is reused across events.
type procView struct {
	p    *event.Process
	r    *event.ProcessRef
	ppid int

	haveCmd  bool
	cmdBuf   []byte
	haveMasq bool
	masq     bool
	haveName bool
	nameStr  string

	// Membership index results for ancestor fields, valid for the
	// event generation in memGen (see setIndex).
	memGen  [maxAncSetSubjects]uint32
	memBits [maxAncSetSubjects]uint64
}

func (v *procView) reset(p *event.Process, r *event.ProcessRef) {
	v.p, v.r = p, r
	v.haveCmd, v.haveMasq, v.haveName = false, false, false
}

func (v *procView) exe() string {
	if v.p != nil {
		return v.p.Exe
	}
	if v.r != nil {
		return v.r.Exe
	}
	return ""
}

func (v *procView) comm() string {
	if v.p != nil {
		return v.p.Comm
	}
	if v.r != nil {
		return v.r.Comm
	}
	return ""
}

func (v *procView) args() []string {
	if v.p != nil {
		return v.p.Args
	}
	if v.r != nil {
		return v.r.Args
	}
	return nil
}

func (v *procView) pid() int64 {
	if v.p != nil {
		return int64(v.p.PID)
	}
	if v.r != nil {
		return int64(v.r.PID)
	}
	return 0
}

func (v *procView) uid() int64 {
	if v.p != nil {
		return int64(v.p.UID)
	}
	if v.r != nil {
		return int64(v.r.UID)
	}
	return 0
}

func (v *procView) name() string {
	if !v.haveName {
		v.nameStr = baseName(v.exe())
		v.haveName = true
	}
	return v.nameStr
}

// cmdline returns argv joined by single spaces. The returned string aliases
// a buffer reused for the next event: it must not be retained.
func (v *procView) cmdline() string {
	if !v.haveCmd {
		v.cmdBuf = v.cmdBuf[:0]
		for i, a := range v.args() {
			if i > 0 {
				v.cmdBuf = append(v.cmdBuf, ' ')
			}
			v.cmdBuf = append(v.cmdBuf, a...)
		}
		v.haveCmd = true
	}
	return unsafeString(v.cmdBuf)
}

func (v *procView) masquerade() bool {
	if !v.haveMasq {
		v.masq = Masquerade(v.comm(), v.exe(), v.args())
		v.haveMasq = true
	}
	return v.masq
}

// baseName returns the last element of a slash-separated path ("" for "").
func baseName(p string) string {
	if p == "" {
		return ""
	}
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// Masquerade reports whether a process presents itself under another name:
// the executable is known, comm is set, and comm (the kernel task name,
// truncated to 15 bytes) is not a prefix of the executable's basename.
//
// Two structural cases are not masquerading, because the kernel itself sets
// comm to something other than the executable's name:
//   - a script run through its #! interpreter (exe is the interpreter, comm
//     is the script's basename, which appears in argv[1] or argv[2]);
//   - a multi-call binary (busybox, toybox, coreutils) run through an applet
//     link (comm is the applet name, which is argv[0]'s basename).
//
// Both exemptions require the executable itself to be the interpreter or
// multi-call binary: renaming an arbitrary binary is still masquerading.
func Masquerade(comm, exe string, args []string) bool {
	if exe == "" || comm == "" {
		return false
	}
	base := baseName(exe)
	if strings.HasPrefix(base, comm) {
		return false
	}
	switch {
	case isMultiCall(base):
		if len(args) > 0 && strings.HasPrefix(baseName(args[0]), comm) {
			return false
		}
	case isInterpreter(base):
		for i := 1; i < len(args) && i <= 2; i++ {
			if strings.HasPrefix(baseName(args[i]), comm) {
				return false
			}
		}
	}
	return true
}

func isMultiCall(base string) bool {
	switch base {
	case "busybox", "toybox", "coreutils":
		return true
	}
	return false
}

func isInterpreter(base string) bool {
	switch base {
	case "sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "fish", "busybox", "env", "awk", "gawk", "mawk", "tclsh":
		return true
	}
	for _, p := range []string{"python", "perl", "ruby", "php", "node", "lua", "pwsh"} {
		if strings.HasPrefix(base, p) {
			return true
		}
	}
	return false
}

// procFields is the vocabulary of proc, parent and ancestors elements.
func procFields() map[string]field[*procView] {
	return map[string]field[*procView]{
		"pid":  fn("process id", func(v *procView) int64 { return v.pid() }),
		"ppid": fn("parent process id (0 for ancestors)", func(v *procView) int64 { return int64(v.ppid) }),
		"exe":  fstr("full path of the executable", (*procView).exe),
		"name": fstr("basename of exe (NOT comm)", (*procView).name),
		"comm": fstr("kernel task name (attacker-controlled, max 15 bytes)", (*procView).comm),
		"args": fl("argv", (*procView).args),
		"cmdline": fstr("argv joined by single spaces", func(v *procView) string {
			return v.cmdline()
		}),
		"cwd": fstr("working directory (\"\" for ancestors)", func(v *procView) string {
			if v.p != nil {
				return v.p.Cwd
			}
			return ""
		}),
		"uid": fn("real user id", (*procView).uid),
		"euid": fn("effective user id (0 for ancestors)", func(v *procView) int64 {
			if v.p != nil {
				return int64(v.p.EUID)
			}
			return 0
		}),
		"gid": fn("real group id (0 for ancestors)", func(v *procView) int64 {
			if v.p != nil {
				return int64(v.p.GID)
			}
			return 0
		}),
		"upper": fb("executable is on the overlay upper (writable) layer: not from the image", func(v *procView) bool {
			return v.p != nil && v.p.ExeUpperLayer
		}),
		"memfd": fb("executable is an anonymous memory file (fileless)", func(v *procView) bool {
			return v.p != nil && v.p.ExeMemfd
		}),
		"deleted": fb("executable had no links left when it ran", func(v *procView) bool {
			return v.p != nil && v.p.ExeDeleted
		}),
		"stdinSocket": fb("at exec, standard input was a TCP/UDP socket (reverse or bind shell shape; eBPF source only)", func(v *procView) bool {
			return v.p != nil && v.p.StdinSocket
		}),
		"stdoutSocket": fb("at exec, standard output or error was a TCP/UDP socket (eBPF source only)", func(v *procView) bool {
			return v.p != nil && v.p.StdoutSocket
		}),
		"argsTruncated": fb("argv was truncated by the sensor", func(v *procView) bool {
			return v.p != nil && v.p.ArgsTruncated
		}),
		"masquerade": fb("comm is not a prefix of the executable basename (see Masquerade)", (*procView).masquerade),
	}
}

type contView struct{ c *event.Container }
type netView struct{ n *event.Network }
type fileView struct{ f *event.File }
type sysView struct{ s *event.Syscall }

func containerFields() map[string]field[*contView] {
	return map[string]field[*contView]{
		"host":      fb("the process runs on the host, not in a container", func(v *contView) bool { return v.c.Host }),
		"id":        fstr("container id", func(v *contView) string { return v.c.ID }),
		"runtime":   fstr("container runtime (containerd, cri-o, docker, podman, runc, ...)", func(v *contView) string { return v.c.Runtime }),
		"podUID":    fstr("pod UID", func(v *contView) string { return v.c.PodUID }),
		"qos":       fstr("pod QoS class", func(v *contView) string { return v.c.QOS }),
		"name":      fstr("container name", func(v *contView) string { return v.c.Name }),
		"image":     fstr("container image", func(v *contView) string { return v.c.Image }),
		"pod":       fstr("pod name", func(v *contView) string { return v.c.Pod }),
		"namespace": fstr("Kubernetes namespace", func(v *contView) string { return v.c.Namespace }),
		"workload":  fstr("the pod's controlling workload as Kind/Name (Deployment/web, DaemonSet/agent, ...)", func(v *contView) string { return v.c.Workload }),
	}
}

func netFields() map[string]field[*netView] {
	return map[string]field[*netView]{
		"family":   fstr("ipv4 or ipv6", func(v *netView) string { return v.n.Family }),
		"protocol": fstr("tcp or udp", func(v *netView) string { return v.n.Protocol }),
		"srcIP":    fstr("source address", func(v *netView) string { return v.n.SrcIP }),
		"srcPort":  fn("source port", func(v *netView) int64 { return int64(v.n.SrcPort) }),
		"dstIP":    fstr("destination address", func(v *netView) string { return v.n.DstIP }),
		"dstPort":  fn("destination port", func(v *netView) int64 { return int64(v.n.DstPort) }),
		"result":   fn("connect result: 0 or a negative errno", func(v *netView) int64 { return int64(v.n.Result) }),
		"ok":       fb("the connection succeeded", func(v *netView) bool { return v.n.ResultOK }),
		"repeats":  fn("like connections folded into this one by the sensor's repeat window (connect, accept)", func(v *netView) int64 { return int64(v.n.Repeats) }),
		"dnsQuery": fstr("DNS query name", func(v *netView) string { return v.n.DNSQuery }),
		"dnsType":  fstr("DNS query type (A, AAAA, ...)", func(v *netView) string { return v.n.DNSType }),
	}
}

func fileFields() map[string]field[*fileView] {
	return map[string]field[*fileView]{
		"path":      fstr("file path", func(v *fileView) string { return v.f.Path }),
		"newPath":   fstr("rename target", func(v *fileView) string { return v.f.NewPath }),
		"flags":     fn("open flags (O_*)", func(v *fileView) int64 { return int64(v.f.Flags) }),
		"mode":      fn("chmod / create mode", func(v *fileView) int64 { return int64(v.f.Mode) }),
		"write":     fb("opened for writing", func(v *fileView) bool { return v.f.Write }),
		"create":    fb("opened with O_CREAT", func(v *fileView) bool { return v.f.Create }),
		"trunc":     fb("opened with O_TRUNC", func(v *fileView) bool { return v.f.Trunc }),
		"sensitive": fb("a read-only open of a sensitive path", func(v *fileView) bool { return v.f.Sensitive }),
		"result":    fn("0 or a negative errno", func(v *fileView) int64 { return int64(v.f.Result) }),
	}
}

func sysFields() map[string]field[*sysView] {
	return map[string]field[*sysView]{
		"name":       fstr("syscall name (ptrace, finit_module, setns, ...)", func(v *sysView) string { return v.s.Name }),
		"result":     fn("0 or a negative errno", func(v *sysView) int64 { return int64(v.s.Result) }),
		"targetPID":  fn("ptrace target pid", func(v *sysView) int64 { return int64(v.s.TargetPID) }),
		"request":    fn("ptrace request", func(v *sysView) int64 { return v.s.Request }),
		"flags":      fn("clone/mount/memfd flags", func(v *sysView) int64 { return int64(v.s.Flags) }),
		"module":     fstr("kernel module name or file", func(v *sysView) string { return v.s.Module }),
		"args":       fstr("module parameters", func(v *sysView) string { return v.s.Args }),
		"source":     fstr("mount source", func(v *sysView) string { return v.s.Source }),
		"target":     fstr("mount target", func(v *sysView) string { return v.s.Target }),
		"fsType":     fstr("mount filesystem type", func(v *sysView) string { return v.s.FSType }),
		"memfdName":  fstr("memfd name", func(v *sysView) string { return v.s.Name2 }),
		"namespaces": fstr("namespaces (setns/unshare)", func(v *sysView) string { return v.s.Namespace }),
	}
}

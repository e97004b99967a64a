package output

import (
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/vigil-sec/vigil/internal/event"
)

// This file is a hand-written JSON encoder for event.Event. It produces
// exactly the bytes encoding/json's Encoder produces with SetEscapeHTML(false)
// (minus the trailing newline), without reflection and without allocating.
//
// Every append function below writes the fields of one struct type IN THE
// ORDER THEY ARE DECLARED IN internal/event/event.go, with the same JSON
// key and the same omitempty rule as the field's tag. When a field is added
// to event.go, add it here at the same position; encode_test.go fails until
// you do (TestAppendEventCoversEveryField, TestAppendEventMatchesEncodingJSON).

// AppendEvent appends the JSON form of ev to dst and returns the extended
// buffer. The only error is an ev.Time that RFC 3339 cannot represent (year
// outside [0,9999] or a zone offset of a day or more), which encoding/json
// rejects too; dst is then returned unextended.
func AppendEvent(dst []byte, ev *event.Event) ([]byte, error) {
	return appendEvent(dst, ev, nil)
}

// Encoder appends events exactly like AppendEvent and remembers the encoded
// form of the parents and ancestors it wrote: the events of one process
// repeat the same parent and ancestry, often with long command lines, which
// then cost a comparison (strings sharing their bytes compare in O(1)) and
// a copy instead of JSON escaping. The zero value is ready to use; it is
// not safe for concurrent use. It holds at most refSlots encodings of at
// most maxRefBytes each.
type Encoder struct {
	refs []refSlot
}

const (
	refSlots    = 256
	maxRefBytes = 4096
)

// refSlot is one remembered ancestor: a copy of the ProcessRef (its Args
// slice cloned, so a caller reusing its array cannot change the copy) and
// its encoding.
type refSlot struct {
	ref event.ProcessRef
	enc []byte
	ok  bool
}

// AppendEvent is AppendEvent with e's cache of ancestors.
func (e *Encoder) AppendEvent(dst []byte, ev *event.Event) ([]byte, error) {
	return appendEvent(dst, ev, e)
}

// appendRef appends r like appendProcessRef, from e's cache when r equals
// the remembered ancestor of its slot.
func (e *Encoder) appendRef(dst []byte, r *event.ProcessRef) []byte {
	if e == nil {
		return appendProcessRef(dst, r)
	}
	if e.refs == nil {
		e.refs = make([]refSlot, refSlots)
	}
	h := (uint64(r.PID)*0x9e3779b97f4a7c15 ^ r.StartTime) * 0xbf58476d1ce4e5b9
	s := &e.refs[h>>56%refSlots]
	if s.ok && sameRef(&s.ref, r) {
		return append(dst, s.enc...)
	}
	start := len(dst)
	dst = appendProcessRef(dst, r)
	if enc := dst[start:]; len(enc) <= maxRefBytes {
		s.ref = *r
		s.ref.Args = slices.Clone(r.Args)
		s.enc = append(s.enc[:0], enc...)
		s.ok = true
	}
	return dst
}

// sameRef reports whether a and b encode alike: every field of
// event.ProcessRef (TestSameRefComparesEveryProcessRefField fails when a
// field is added and not compared here).
func sameRef(a, b *event.ProcessRef) bool {
	return a.PID == b.PID && a.StartTime == b.StartTime && a.UID == b.UID && a.Exited == b.Exited &&
		a.Exe == b.Exe && a.Comm == b.Comm && slices.Equal(a.Args, b.Args)
}

func appendEvent(dst []byte, ev *event.Event, e *Encoder) ([]byte, error) {
	n0 := len(dst)
	open := n0
	dst = append(dst, '{')
	dst = appendKey(dst, open, `"kind":`)
	dst = appendString(dst, string(ev.Kind))
	dst = appendKey(dst, open, `"time":`)
	dst = append(dst, '"')
	t, err := ev.Time.AppendText(dst)
	if err != nil { // AppendText returns nil on error
		return dst[:n0], fmt.Errorf("encode %s event: %w", ev.Kind, err)
	}
	dst = append(t, '"')
	if ev.Node != "" {
		dst = appendKey(dst, open, `"node":`)
		dst = appendString(dst, ev.Node)
	}
	if ev.Source != "" {
		dst = appendKey(dst, open, `"source":`)
		dst = appendString(dst, ev.Source)
	}
	dst = appendKey(dst, open, `"process":`)
	dst = appendProcess(dst, &ev.Process)
	if ev.Parent != nil {
		dst = appendKey(dst, open, `"parent":`)
		dst = e.appendRef(dst, ev.Parent)
	}
	if len(ev.Ancestry) > 0 {
		dst = appendKey(dst, open, `"ancestry":`)
		dst = append(dst, '[')
		for i := range ev.Ancestry {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = e.appendRef(dst, &ev.Ancestry[i])
		}
		dst = append(dst, ']')
	}
	if ev.Container != nil {
		dst = appendKey(dst, open, `"container":`)
		dst = appendContainer(dst, ev.Container)
	}
	if ev.Network != nil {
		dst = appendKey(dst, open, `"network":`)
		dst = appendNetwork(dst, ev.Network)
	}
	if ev.File != nil {
		dst = appendKey(dst, open, `"file":`)
		dst = appendFile(dst, ev.File)
	}
	if ev.Exit != nil {
		dst = appendKey(dst, open, `"exit":`)
		dst = appendExit(dst, ev.Exit)
	}
	if ev.Fork != nil {
		dst = appendKey(dst, open, `"fork":`)
		dst = appendFork(dst, ev.Fork)
	}
	if ev.Syscall != nil {
		dst = appendKey(dst, open, `"syscall":`)
		dst = appendSyscall(dst, ev.Syscall)
	}
	if ev.Health != nil {
		dst = appendKey(dst, open, `"health":`)
		dst = appendHealth(dst, ev.Health)
	}
	if ev.Audit != nil {
		dst = appendKey(dst, open, `"audit":`)
		dst = appendAudit(dst, ev.Audit)
	}
	if len(ev.Facts) > 0 {
		dst = appendKey(dst, open, `"facts":`)
		dst = append(dst, '[')
		for i := range ev.Facts {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"name":`...)
			dst = appendString(dst, ev.Facts[i].Name)
			dst = append(dst, `,"value":`...)
			dst = appendString(dst, ev.Facts[i].Value)
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	return append(dst, '}'), nil
}

// appendProcess: fields in event.Process declaration order.
func appendProcess(dst []byte, p *event.Process) []byte {
	open := len(dst)
	dst = append(dst, '{')
	dst = appendKey(dst, open, `"pid":`)
	dst = strconv.AppendInt(dst, int64(p.PID), 10)
	if p.TID != 0 {
		dst = appendKey(dst, open, `"tid":`)
		dst = strconv.AppendInt(dst, int64(p.TID), 10)
	}
	dst = appendKey(dst, open, `"ppid":`)
	dst = strconv.AppendInt(dst, int64(p.PPID), 10)
	dst = appendKey(dst, open, `"startTime":`)
	dst = strconv.AppendUint(dst, p.StartTime, 10)
	dst = appendKey(dst, open, `"uid":`)
	dst = strconv.AppendUint(dst, uint64(p.UID), 10)
	dst = appendKey(dst, open, `"gid":`)
	dst = strconv.AppendUint(dst, uint64(p.GID), 10)
	dst = appendKey(dst, open, `"euid":`)
	dst = strconv.AppendUint(dst, uint64(p.EUID), 10)
	if p.User != "" {
		dst = appendKey(dst, open, `"user":`)
		dst = appendString(dst, p.User)
	}
	dst = appendKey(dst, open, `"comm":`)
	dst = appendString(dst, p.Comm)
	if p.Exe != "" {
		dst = appendKey(dst, open, `"exe":`)
		dst = appendString(dst, p.Exe)
	}
	if len(p.Args) > 0 {
		dst = appendKey(dst, open, `"args":`)
		dst = appendStrings(dst, p.Args)
	}
	if p.ArgsTruncated {
		dst = appendKey(dst, open, `"argsTruncated":true`)
	}
	if p.Cwd != "" {
		dst = appendKey(dst, open, `"cwd":`)
		dst = appendString(dst, p.Cwd)
	}
	if p.Cgroup != "" {
		dst = appendKey(dst, open, `"cgroup":`)
		dst = appendString(dst, p.Cgroup)
	}
	if p.CgroupID != 0 {
		dst = appendKey(dst, open, `"cgroupID":`)
		dst = strconv.AppendUint(dst, p.CgroupID, 10)
	}
	if p.MntNS != 0 {
		dst = appendKey(dst, open, `"mntns":`)
		dst = strconv.AppendUint(dst, uint64(p.MntNS), 10)
	}
	if p.PidNS != 0 {
		dst = appendKey(dst, open, `"pidns":`)
		dst = strconv.AppendUint(dst, uint64(p.PidNS), 10)
	}
	if p.NetNS != 0 {
		dst = appendKey(dst, open, `"netns":`)
		dst = strconv.AppendUint(dst, uint64(p.NetNS), 10)
	}
	if p.ExeInode != 0 {
		dst = appendKey(dst, open, `"exeInode":`)
		dst = strconv.AppendUint(dst, p.ExeInode, 10)
	}
	if p.ExeDev != 0 {
		dst = appendKey(dst, open, `"exeDev":`)
		dst = strconv.AppendUint(dst, uint64(p.ExeDev), 10)
	}
	if p.ExeUpperLayer {
		dst = appendKey(dst, open, `"exeUpperLayer":true`)
	}
	if p.ExeMemfd {
		dst = appendKey(dst, open, `"exeMemfd":true`)
	}
	if p.ExeDeleted {
		dst = appendKey(dst, open, `"exeDeleted":true`)
	}
	if p.StdinSocket {
		dst = appendKey(dst, open, `"stdinSocket":true`)
	}
	if p.StdoutSocket {
		dst = appendKey(dst, open, `"stdoutSocket":true`)
	}
	return append(dst, '}')
}

// appendProcessRef: fields in event.ProcessRef declaration order.
func appendProcessRef(dst []byte, r *event.ProcessRef) []byte {
	open := len(dst)
	dst = append(dst, '{')
	dst = appendKey(dst, open, `"pid":`)
	dst = strconv.AppendInt(dst, int64(r.PID), 10)
	if r.StartTime != 0 {
		dst = appendKey(dst, open, `"startTime":`)
		dst = strconv.AppendUint(dst, r.StartTime, 10)
	}
	if r.Exe != "" {
		dst = appendKey(dst, open, `"exe":`)
		dst = appendString(dst, r.Exe)
	}
	if len(r.Args) > 0 {
		dst = appendKey(dst, open, `"args":`)
		dst = appendStrings(dst, r.Args)
	}
	if r.Comm != "" {
		dst = appendKey(dst, open, `"comm":`)
		dst = appendString(dst, r.Comm)
	}
	dst = appendKey(dst, open, `"uid":`)
	dst = strconv.AppendUint(dst, uint64(r.UID), 10)
	if r.Exited {
		dst = appendKey(dst, open, `"exited":true`)
	}
	return append(dst, '}')
}

// appendContainer: fields in event.Container declaration order. Every field
// is omitempty, so an empty Container is {}.
func appendContainer(dst []byte, c *event.Container) []byte {
	open := len(dst)
	dst = append(dst, '{')
	if c.Host {
		dst = appendKey(dst, open, `"host":true`)
	}
	dst = appendOptString(dst, open, `"id":`, c.ID)
	dst = appendOptString(dst, open, `"runtime":`, c.Runtime)
	dst = appendOptString(dst, open, `"podUID":`, c.PodUID)
	dst = appendOptString(dst, open, `"qos":`, c.QOS)
	dst = appendOptString(dst, open, `"name":`, c.Name)
	dst = appendOptString(dst, open, `"image":`, c.Image)
	dst = appendOptString(dst, open, `"pod":`, c.Pod)
	dst = appendOptString(dst, open, `"namespace":`, c.Namespace)
	dst = appendOptString(dst, open, `"workload":`, c.Workload)
	if len(c.Labels) > 0 {
		dst = appendKey(dst, open, `"labels":`)
		dst = appendStringMap(dst, c.Labels)
	}
	return append(dst, '}')
}

// appendNetwork: fields in event.Network declaration order.
func appendNetwork(dst []byte, n *event.Network) []byte {
	open := len(dst)
	dst = append(dst, '{')
	dst = appendKey(dst, open, `"family":`)
	dst = appendString(dst, n.Family)
	dst = appendKey(dst, open, `"protocol":`)
	dst = appendString(dst, n.Protocol)
	dst = appendOptString(dst, open, `"srcIP":`, n.SrcIP)
	if n.SrcPort != 0 {
		dst = appendKey(dst, open, `"srcPort":`)
		dst = strconv.AppendUint(dst, uint64(n.SrcPort), 10)
	}
	dst = appendOptString(dst, open, `"dstIP":`, n.DstIP)
	if n.DstPort != 0 {
		dst = appendKey(dst, open, `"dstPort":`)
		dst = strconv.AppendUint(dst, uint64(n.DstPort), 10)
	}
	dst = appendKey(dst, open, `"result":`)
	dst = strconv.AppendInt(dst, int64(n.Result), 10)
	dst = appendKey(dst, open, `"resultOK":`)
	dst = strconv.AppendBool(dst, n.ResultOK)
	dst = appendOptString(dst, open, `"error":`, n.Error)
	if n.Repeats != 0 {
		dst = appendKey(dst, open, `"repeats":`)
		dst = strconv.AppendInt(dst, int64(n.Repeats), 10)
	}
	dst = appendOptString(dst, open, `"dnsQuery":`, n.DNSQuery)
	dst = appendOptString(dst, open, `"dnsType":`, n.DNSType)
	return append(dst, '}')
}

// appendFile: fields in event.File declaration order.
func appendFile(dst []byte, f *event.File) []byte {
	open := len(dst)
	dst = append(dst, '{')
	dst = appendKey(dst, open, `"path":`)
	dst = appendString(dst, f.Path)
	dst = appendOptString(dst, open, `"newPath":`, f.NewPath)
	if f.Flags != 0 {
		dst = appendKey(dst, open, `"flags":`)
		dst = strconv.AppendUint(dst, uint64(f.Flags), 10)
	}
	if f.Mode != 0 {
		dst = appendKey(dst, open, `"mode":`)
		dst = strconv.AppendUint(dst, uint64(f.Mode), 10)
	}
	if f.Write {
		dst = appendKey(dst, open, `"write":true`)
	}
	if f.Create {
		dst = appendKey(dst, open, `"create":true`)
	}
	if f.Trunc {
		dst = appendKey(dst, open, `"trunc":true`)
	}
	if f.Sensitive {
		dst = appendKey(dst, open, `"sensitive":true`)
	}
	dst = appendKey(dst, open, `"result":`)
	dst = strconv.AppendInt(dst, int64(f.Result), 10)
	return append(dst, '}')
}

// appendExit: fields in event.Exit declaration order.
func appendExit(dst []byte, e *event.Exit) []byte {
	open := len(dst)
	dst = append(dst, '{')
	dst = appendKey(dst, open, `"code":`)
	dst = strconv.AppendInt(dst, int64(e.Code), 10)
	if e.Signal != 0 {
		dst = appendKey(dst, open, `"signal":`)
		dst = strconv.AppendInt(dst, int64(e.Signal), 10)
	}
	if e.CoreDump {
		dst = appendKey(dst, open, `"coreDump":true`)
	}
	return append(dst, '}')
}

// appendFork: fields in event.Fork declaration order.
func appendFork(dst []byte, f *event.Fork) []byte {
	open := len(dst)
	dst = append(dst, '{')
	dst = appendKey(dst, open, `"childPID":`)
	dst = strconv.AppendInt(dst, int64(f.ChildPID), 10)
	return append(dst, '}')
}

// appendSyscall: fields in event.Syscall declaration order.
func appendSyscall(dst []byte, s *event.Syscall) []byte {
	open := len(dst)
	dst = append(dst, '{')
	dst = appendKey(dst, open, `"name":`)
	dst = appendString(dst, s.Name)
	dst = appendKey(dst, open, `"result":`)
	dst = strconv.AppendInt(dst, int64(s.Result), 10)
	if s.TargetPID != 0 {
		dst = appendKey(dst, open, `"targetPID":`)
		dst = strconv.AppendInt(dst, int64(s.TargetPID), 10)
	}
	if s.Request != 0 {
		dst = appendKey(dst, open, `"request":`)
		dst = strconv.AppendInt(dst, s.Request, 10)
	}
	if s.Flags != 0 {
		dst = appendKey(dst, open, `"flags":`)
		dst = strconv.AppendUint(dst, s.Flags, 10)
	}
	dst = appendOptString(dst, open, `"module":`, s.Module)
	dst = appendOptString(dst, open, `"args":`, s.Args)
	dst = appendOptString(dst, open, `"source":`, s.Source)
	dst = appendOptString(dst, open, `"target":`, s.Target)
	dst = appendOptString(dst, open, `"fsType":`, s.FSType)
	dst = appendOptString(dst, open, `"memfdName":`, s.Name2)
	dst = appendOptString(dst, open, `"namespaces":`, s.Namespace)
	return append(dst, '}')
}

// appendHealth: fields in event.Health declaration order.
func appendHealth(dst []byte, h *event.Health) []byte {
	open := len(dst)
	dst = append(dst, '{')
	dst = appendKey(dst, open, `"status":`)
	dst = appendString(dst, h.Status)
	dst = appendKey(dst, open, `"message":`)
	dst = appendString(dst, h.Message)
	if h.Drops != 0 {
		dst = appendKey(dst, open, `"drops":`)
		dst = strconv.AppendUint(dst, h.Drops, 10)
	}
	if len(h.Missing) > 0 {
		dst = appendKey(dst, open, `"missing":`)
		dst = append(dst, '[')
		for i, k := range h.Missing {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, string(k))
		}
		dst = append(dst, ']')
	}
	dst = appendOptString(dst, open, `"mode":`, h.Mode)
	return append(dst, '}')
}

// appendAudit: fields in event.Audit declaration order.
func appendAudit(dst []byte, a *event.Audit) []byte {
	open := len(dst)
	dst = append(dst, '{')
	dst = appendOptString(dst, open, `"auditID":`, a.AuditID)
	dst = appendOptString(dst, open, `"stage":`, a.Stage)
	dst = appendOptString(dst, open, `"level":`, a.Level)
	dst = appendKey(dst, open, `"user":`)
	dst = appendString(dst, a.User)
	dst = appendOptStrings(dst, open, `"groups":`, a.Groups)
	dst = appendOptString(dst, open, `"serviceAccountNamespace":`, a.ServiceAccountNamespace)
	dst = appendOptString(dst, open, `"serviceAccountName":`, a.ServiceAccountName)
	dst = appendOptString(dst, open, `"impersonatedUser":`, a.ImpersonatedUser)
	dst = appendKey(dst, open, `"verb":`)
	dst = appendString(dst, a.Verb)
	dst = appendOptString(dst, open, `"apiGroup":`, a.APIGroup)
	dst = appendOptString(dst, open, `"apiVersion":`, a.APIVersion)
	dst = appendOptString(dst, open, `"resource":`, a.Resource)
	dst = appendOptString(dst, open, `"subresource":`, a.Subresource)
	dst = appendOptString(dst, open, `"namespace":`, a.Namespace)
	dst = appendOptString(dst, open, `"name":`, a.Name)
	dst = appendOptString(dst, open, `"requestURI":`, a.RequestURI)
	dst = appendOptStrings(dst, open, `"sourceIPs":`, a.SourceIPs)
	dst = appendOptString(dst, open, `"userAgent":`, a.UserAgent)
	dst = appendKey(dst, open, `"responseCode":`)
	dst = strconv.AppendInt(dst, int64(a.ResponseCode), 10)
	dst = appendOptString(dst, open, `"decision":`, a.Decision)
	dst = appendOptString(dst, open, `"reason":`, a.Reason)
	dst = appendOptString(dst, open, `"objectKind":`, a.ObjectKind)
	dst = appendOptBool(dst, open, `"privileged":`, a.Privileged)
	dst = appendOptBool(dst, open, `"hostPID":`, a.HostPID)
	dst = appendOptBool(dst, open, `"hostNetwork":`, a.HostNetwork)
	dst = appendOptBool(dst, open, `"hostIPC":`, a.HostIPC)
	dst = appendOptStrings(dst, open, `"hostPaths":`, a.HostPaths)
	dst = appendOptStrings(dst, open, `"images":`, a.Images)
	dst = appendOptStrings(dst, open, `"capabilities":`, a.Capabilities)
	dst = appendOptString(dst, open, `"roleRefKind":`, a.RoleRefKind)
	dst = appendOptString(dst, open, `"roleRefName":`, a.RoleRefName)
	dst = appendOptStrings(dst, open, `"subjects":`, a.Subjects)
	dst = appendOptBool(dst, open, `"wildcardRule":`, a.WildcardRule)
	return append(dst, '}')
}

// appendOptStrings appends an omitempty []string member.
func appendOptStrings(dst []byte, open int, key string, ss []string) []byte {
	if len(ss) == 0 {
		return dst
	}
	dst = appendKey(dst, open, key)
	return appendStrings(dst, ss)
}

// appendOptBool appends an omitempty bool member.
func appendOptBool(dst []byte, open int, key string, b bool) []byte {
	if !b {
		return dst
	}
	dst = appendKey(dst, open, key)
	return append(dst, "true"...)
}

// appendKey appends a quoted key and colon (pre-rendered by the caller, with
// nothing that needs escaping), preceded by a comma unless it is the first
// member of the object whose '{' is at dst[open].
func appendKey(dst []byte, open int, key string) []byte {
	if len(dst) > open+1 {
		dst = append(dst, ',')
	}
	return append(dst, key...)
}

// appendOptString appends an omitempty string member.
func appendOptString(dst []byte, open int, key, s string) []byte {
	if s == "" {
		return dst
	}
	dst = appendKey(dst, open, key)
	return appendString(dst, s)
}

// appendStringMap appends a map[string]string as a JSON object with sorted
// keys, as encoding/json does.
func appendStringMap(dst []byte, m map[string]string) []byte {
	var small [32]string // pods rarely carry more labels: no allocation
	keys := small[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, k)
		dst = append(dst, ':')
		dst = appendString(dst, m[k])
	}
	return append(dst, '}')
}

// appendStrings appends a non-nil []string as a JSON array.
func appendStrings(dst []byte, ss []string) []byte {
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, s)
	}
	return append(dst, ']')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string exactly as encoding/json does with
// SetEscapeHTML(false) (encode.go appendString): '"' and '\\' are
// backslash-escaped; \b \f \n \r \t use their short forms; other bytes below
// 0x20 become \u00XX; each byte of invalid UTF-8 becomes \ufffd; U+2028 and
// U+2029 become \u2028 and \u2029; everything else (including <, >, &, and
// DEL) is copied as is.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		// Skip 8 plain bytes at a time. For a word v, (v - 0x01…01) &^ v &
		// 0x80…80 is non-zero exactly when some byte of v is zero ("has a
		// byte below n" likewise with n·0x01…01, for n <= 0x80).
		for ; i+8 <= len(s); i += 8 {
			const lo, hi = 0x0101010101010101, 0x8080808080808080
			w := s[i : i+8]
			x := uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
				uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
			quote, backslash := x^(lo*'"'), x^(lo*'\\')
			special := x | // a byte >= 0x80: part of a multi-byte rune
				(x-lo*0x20)&^x | // a control byte
				(quote-lo)&^quote | (backslash-lo)&^backslash
			if special&hi != 0 {
				break
			}
		}
		if i == len(s) {
			break
		}
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

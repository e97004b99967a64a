package alert

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/vigil-sec/vigil/internal/event"
)

// DefaultWindow is the aggregation window FromMatch uses for the alert ID
// and the window the sensor aggregates with unless configured otherwise.
const DefaultWindow = 10 * time.Minute

// ID returns the stable alert ID: the first 16 bytes (32 hex characters) of
// SHA-256 over alertType, node, container id, process path and the window
// start (Unix nanoseconds, decimal), each followed by a NUL byte so no two
// different tuples hash the same input. windowStart is the event time
// truncated to the aggregation window (time.Time.Truncate, i.e. windows
// aligned to the zero time, so every sensor and every restart agrees on
// the window boundaries). A host process has container id "".
func ID(alertType, node, containerID, processPath string, windowStart time.Time) string {
	h := sha256.New()
	for _, s := range []string{alertType, node, containerID, processPath, strconv.FormatInt(windowStart.UnixNano(), 10)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// idFor computes al's ID for the given window from its own fields.
func idFor(al *Alert, window time.Duration) string {
	var cid, path string
	if c := al.Entities.Container; c != nil {
		cid = c.ID
	}
	if p := al.Entities.Process; p != nil {
		path = p.Path
	}
	return ID(al.AlertType, al.Entities.Node, cid, path, al.StartTime.Truncate(window))
}

// FromMatch builds an Active alert with Count 1 for a rule that matched ev.
// The entities are taken from the event:
//
//   - node, container (a copy), namespace and pod (from the container);
//   - process: path = exe, command line = argv quoted like a POSIX shell
//     would need it (see CommandLine), pid, uid, user and start time;
//   - parentProcess from ev.Parent, ancestry (a copy, parent first);
//   - network: for connect and accept the peer (dstIP/dstPort); for dns the
//     queried domain plus the resolver the query went to; for bind and
//     listen the local address;
//   - file: file.path, or file.newPath for a rename (the old path is then
//     in extra["renamedFrom"]);
//   - syscall (a copy) and the event's facts.
//
// Process start times are nanoseconds since boot in the event; they are
// converted to wall-clock time with this host's boot time (now minus
// CLOCK_BOOTTIME). When that is not possible or not plausible — start time
// unknown (0), a replayed event (recorded on a host whose boot time is not
// known here), or a converted start after the event itself — the acting
// process's start time is the event time, and the parent's is left out.
//
// The ID is ID(ruleID, node, container id, exe, ev.Time truncated to
// DefaultWindow); an Aggregator recomputes it for its own window.
func FromMatch(ruleID, name, desc, severity, maturity string, tactics, techniques, remediation []string, ev *event.Event) *Alert {
	return fromMatch(ruleID, name, desc, severity, maturity, tactics, techniques, remediation, ev, hostBootWall())
}

// hostBootWall returns the wall-clock time of this host's boot, or the
// zero time if CLOCK_BOOTTIME cannot be read.
func hostBootWall() time.Time {
	now := time.Now()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return time.Time{}
	}
	return now.Add(-time.Duration(ts.Nano()))
}

func fromMatch(ruleID, name, desc, severity, maturity string, tactics, techniques, remediation []string, ev *event.Event, bootWall time.Time) *Alert {
	al := &Alert{
		AlertType:        ruleID,
		DisplayName:      name,
		Description:      desc,
		Severity:         severity,
		Status:           StatusActive,
		StartTime:        ev.Time,
		EndTime:          ev.Time,
		Count:            1,
		Tactics:          cloneStrings(tactics),
		Techniques:       cloneStrings(techniques),
		RemediationSteps: cloneStrings(remediation),
		Maturity:         maturity,
	}
	if ev.Source == "replay" {
		// The recording host's boot time is unknown: do not pretend.
		bootWall = time.Time{}
	}
	en := &al.Entities
	en.Node = ev.Node
	// The sensor reuses events once the pipeline is done with them: keep
	// a copy (alerts are rare; the copy shares the event's strings and
	// slices, which are never reused).
	cp := *ev
	en.Event = &cp
	if ev.Container != nil {
		c := *ev.Container
		en.Container = &c
		en.Namespace = c.Namespace
		en.Pod = c.Pod
	}
	p := &ev.Process
	start, ok := wallStart(bootWall, p.StartTime, ev.Time)
	if !ok {
		start = ev.Time
	}
	en.Process = &Process{
		Path:        p.Exe,
		CommandLine: CommandLine(p.Args, p.ArgsTruncated),
		PID:         p.PID,
		UID:         p.UID,
		User:        p.User,
		StartTime:   start,
	}
	if r := ev.Parent; r != nil {
		pp := &Process{Path: r.Exe, CommandLine: CommandLine(r.Args, false), PID: r.PID, UID: r.UID}
		if t, ok := wallStart(bootWall, r.StartTime, ev.Time); ok {
			pp.StartTime = t
		}
		en.Parent = pp
	}
	if len(ev.Ancestry) > 0 {
		en.Ancestry = make([]event.ProcessRef, len(ev.Ancestry))
		for i, r := range ev.Ancestry {
			r.Args = cloneStrings(r.Args)
			en.Ancestry[i] = r
		}
	}
	if n := ev.Network; n != nil {
		switch ev.Kind {
		case event.KindConnect, event.KindAccept:
			en.Network = &Network{IP: n.DstIP, Port: n.DstPort}
		case event.KindDNS:
			en.Network = &Network{IP: n.DstIP, Port: n.DstPort, Domain: n.DNSQuery}
		case event.KindBind, event.KindListen:
			en.Network = &Network{IP: n.SrcIP, Port: n.SrcPort}
		default:
			if n.DstIP != "" || n.DNSQuery != "" {
				en.Network = &Network{IP: n.DstIP, Port: n.DstPort, Domain: n.DNSQuery}
			}
		}
	}
	if f := ev.File; f != nil {
		en.File = f.Path
		if ev.Kind == event.KindRename && f.NewPath != "" {
			en.File = f.NewPath
			if f.Path != "" {
				en.Extra = map[string][]string{"renamedFrom": {f.Path}}
			}
		}
	}
	if s := ev.Syscall; s != nil {
		sc := *s
		en.Syscall = &sc
	}
	if len(ev.Facts) > 0 {
		en.Facts = make(map[string]string, len(ev.Facts))
		for _, f := range ev.Facts {
			en.Facts[f.Name] = f.Value
		}
	}
	al.ID = idFor(al, DefaultWindow)
	return al
}

// wallStart converts a start time in ns since boot to wall-clock time. It
// reports false when the start or the boot time is unknown or the result
// is later than the event (allowing a second of clock skew).
func wallStart(bootWall time.Time, startNS uint64, evTime time.Time) (time.Time, bool) {
	if startNS == 0 || bootWall.IsZero() || startNS > uint64(1<<63-1) {
		return time.Time{}, false
	}
	t := bootWall.Add(time.Duration(startNS))
	if !evTime.IsZero() && t.After(evTime.Add(time.Second)) {
		return time.Time{}, false
	}
	return t, true
}

// CommandLine joins argv with spaces, quoting each argument the way a
// POSIX shell needs it so the line can be read back unambiguously: plain
// arguments stay as they are; arguments with spaces or shell
// metacharacters, and empty ones, are single-quoted (an embedded quote is
// closed, escaped and reopened as in sh); arguments with control
// characters or invalid UTF-8 use bash's $'...' form with \n, \t, \xHH
// escapes, so a payload cannot forge extra lines in a log or a console. A
// truncated argv ends in " …".
func CommandLine(args []string, truncated bool) string {
	if len(args) == 0 {
		return ""
	}
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		quoteArg(&b, a)
	}
	if truncated {
		b.WriteString(" …")
	}
	return b.String()
}

func quoteArg(b *strings.Builder, a string) {
	if a == "" {
		b.WriteString("''")
		return
	}
	plain, control := true, !utf8.ValidString(a)
	for _, r := range a {
		switch {
		case r < 0x20 || r == 0x7f:
			control = true
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("_@%+=:,./-", r):
		case r >= 0x80:
			// Printable non-ASCII is not special to the shell.
		default:
			plain = false
		}
	}
	switch {
	case control:
		ansiQuote(b, a)
	case plain:
		b.WriteString(a)
	default:
		b.WriteByte('\'')
		b.WriteString(strings.ReplaceAll(a, "'", `'\''`))
		b.WriteByte('\'')
	}
}

func ansiQuote(b *strings.Builder, a string) {
	const hexd = "0123456789abcdef"
	b.WriteString("$'")
	for i := 0; i < len(a); {
		r, size := utf8.DecodeRuneInString(a[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			b.WriteString(`\x`)
			b.WriteByte(hexd[a[i]>>4])
			b.WriteByte(hexd[a[i]&0xf])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\'':
			b.WriteString(`\'`)
		case r < 0x20 || r == 0x7f:
			b.WriteString(`\x`)
			b.WriteByte(hexd[r>>4])
			b.WriteByte(hexd[r&0xf])
		default:
			b.WriteString(a[i : i+size])
		}
		i += size
	}
	b.WriteByte('\'')
}

func cloneStrings(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return append([]string(nil), s...)
}

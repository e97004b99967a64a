package detectors

import (
	"path"
	"strings"

	"github.com/vigil-sec/vigil/internal/event"
)

// Fact names set by the drift detector (on exec events).
const (
	FactDriftWritten = "drift.writtenAfterStart"
	FactDriftWriter  = "drift.writtenBy"
	// FactDriftWriterName is the writer's tool name: the executable's
	// basename, or argv[0]'s for multi-call binaries (busybox wget → wget),
	// so rules can tell a download from a copy in busybox images.
	FactDriftWriterName = "drift.writtenByName"
	FactDriftChmod      = "drift.chmodBy"
	FactDriftUpper      = "drift.upperLayer"
)

// driftKey names a file inside one container ("" = host).
type driftKey struct {
	container string
	path      string
}

// driftRec is what is remembered about a file.
type driftRec struct {
	writer     string // exe of the last process that opened it for write/create
	writerName string // its tool name (see FactDriftWriterName)
	chmoder    string // exe of the last process that added an execute bit
}

// toolName is the name a process was invoked as: the executable's basename,
// or argv[0]'s basename for multi-call binaries (busybox, toybox), whose
// executable says nothing about the applet that ran.
func toolName(p *event.Process) string {
	name := basename(p.Exe)
	if (name == "busybox" || name == "toybox") && len(p.Args) > 0 {
		if a := basename(p.Args[0]); a != "" && a != name {
			return a
		}
	}
	return name
}

// driftDetector remembers files written or made executable after a
// container started, to recognise their execution. Every write the sensor
// sees from a container's processes happens after the container started
// (image layers are not written by the container), so no start time is
// needed. Container and host files live in separate tables so host churn
// (logs, builds) cannot evict container evidence.
type driftDetector struct {
	s         *Set
	container *lru[driftKey, driftRec]
	host      *lru[driftKey, driftRec]
}

func (d *driftDetector) init(s *Set) {
	d.s = s
	ttl := int64(s.opts.DriftTTL)
	d.container = newLRU[driftKey, driftRec](s.opts.DriftMaxFiles, ttl, nil)
	d.host = newLRU[driftKey, driftRec](s.opts.DriftMaxHostFiles, ttl, nil)
}

func (d *driftDetector) table(cid string) *lru[driftKey, driftRec] {
	if cid == "" {
		return d.host
	}
	return d.container
}

func (d *driftDetector) record(ev *event.Event, now int64, path string, chmod bool) {
	t := d.table(containerID(ev))
	t.expire(now, 2)
	ev0 := t.evictions
	r, _ := t.upsert(driftKey{containerID(ev), path}, now)
	if chmod {
		r.chmoder = ev.Process.Exe
	} else {
		r.writer = ev.Process.Exe
		r.writerName = toolName(&ev.Process)
	}
	if t.evictions != ev0 {
		d.s.stats.driftEvictions.Add(t.evictions - ev0)
	}
	d.publish()
}

func (d *driftDetector) publish() {
	d.s.stats.driftFiles.Store(int64(d.container.len() + d.host.len()))
}

func (d *driftDetector) open(ev *event.Event, now int64) {
	f := ev.File
	// Device nodes (/dev/null, /dev/tty, ...) are written all the time and
	// are never a dropped program; /dev/shm is a tmpfs where programs are
	// dropped, so it stays.
	if f == nil || f.Result < 0 || f.Path == "" || !(f.Write || f.Create) || isDeviceNode(f.Path) {
		return
	}
	d.record(ev, now, f.Path, false)
}

func (d *driftDetector) chmod(ev *event.Event, now int64) {
	f := ev.File
	// The source only reports chmods that add an execute bit; check the
	// mode too when it is known.
	if f == nil || f.Result < 0 || f.Path == "" || (f.Mode != 0 && f.Mode&0o111 == 0) {
		return
	}
	d.record(ev, now, f.Path, true)
}

// rename carries a remembered file to its new name (write to a temporary
// name, then move into place).
func (d *driftDetector) rename(ev *event.Event, now int64) {
	f := ev.File
	if f == nil || f.Result < 0 || f.Path == "" || f.NewPath == "" {
		return
	}
	cid := containerID(ev)
	t := d.table(cid)
	old, _ := t.peek(driftKey{cid, f.Path}, now)
	if old == nil {
		return
	}
	rec := *old
	t.remove(driftKey{cid, f.Path})
	r, _ := t.upsert(driftKey{cid, f.NewPath}, now)
	*r = rec
	d.publish()
}

func (d *driftDetector) unlink(ev *event.Event) {
	f := ev.File
	if f == nil || f.Result < 0 || f.Path == "" {
		return
	}
	cid := containerID(ev)
	if d.table(cid).remove(driftKey{cid, f.Path}) {
		d.publish()
	}
}

func (d *driftDetector) exec(ev *event.Event, now int64) {
	p := &ev.Process
	if p.ExeUpperLayer {
		ev.SetFact(FactDriftUpper, "true")
		d.s.stats.driftUpper.Add(1)
	}
	if p.Exe == "" {
		return
	}
	cid := containerID(ev)
	t := d.table(cid)
	r, _ := t.peek(driftKey{cid, p.Exe}, now)
	if r == nil && isInterpreter(toolName(p)) {
		r = d.script(t, cid, p, now)
	}
	if r == nil {
		return
	}
	ev.SetFact(FactDriftWritten, "true")
	if r.writer != "" {
		ev.SetFact(FactDriftWriter, r.writer)
		ev.SetFact(FactDriftWriterName, r.writerName)
	}
	if r.chmoder != "" {
		ev.SetFact(FactDriftChmod, r.chmoder)
	}
	d.s.stats.driftExecFacts.Add(1)
}

// script finds the script an interpreter runs among its first arguments: a
// downloaded script run as `sh /tmp/x.sh`, or directly through its shebang
// (the kernel then runs the interpreter with the script path as argument).
func (d *driftDetector) script(t *lru[driftKey, driftRec], cid string, p *event.Process, now int64) *driftRec {
	for i := 1; i < len(p.Args) && i <= 3; i++ {
		a := p.Args[i]
		if a == "" || a[0] == '-' || strings.IndexByte(a, ' ') >= 0 {
			continue
		}
		if a[0] != '/' {
			if p.Cwd == "" || strings.IndexByte(a, '/') < 0 && !strings.Contains(a, ".") {
				continue
			}
			a = path.Join(p.Cwd, a)
		}
		if r, _ := t.peek(driftKey{cid, a}, now); r != nil {
			return r
		}
	}
	return nil
}

func isDeviceNode(path string) bool {
	return strings.HasPrefix(path, "/dev/") && !strings.HasPrefix(path, "/dev/shm/") && !strings.HasPrefix(path, "/dev/mqueue/")
}

func isInterpreter(name string) bool {
	switch name {
	case "sh", "bash", "dash", "ash", "zsh", "ksh", "perl", "ruby", "node", "php":
		return true
	}
	return strings.HasPrefix(name, "python")
}

// Package proctree keeps vigil's live process table: every process the
// sensor knows about, keyed by event.Key (pid + start time, so pid reuse
// never confuses two processes), with the parent each one had when it was
// created. The sensor's pipeline passes every event through Table.Apply,
// which updates the table and enriches the event with what the kernel event
// lacked (executable, argv, cwd, cgroup) plus the parent and the ancestry
// that genealogy rules (php-fpm → sh → curl) need.
//
// # Concurrency
//
// A Table is driven by ONE goroutine: New, SeedFromProc, Apply, Lookup,
// LookupPID and Walk must all be called from the same goroutine (the
// pipeline's), or be serialised by the caller. The hot path takes no locks.
// Only Len and Evictions are safe to call from any goroutine (metrics).
//
// # Sharing
//
// To keep Apply allocation-free on non-exec events, the slices and pointers
// it puts into an event are shared: ev.Process.Args is the argv slice the
// table stores, one copy shared by every process with the same image (an
// exec event keeps the slice it carried), ev.Ancestry is the process's
// cached ancestry slice and ev.Parent points at its first element. They are
// never modified by the table after they were handed out (a change produces
// a new slice), so readers on any goroutine are safe, but consumers must
// treat them as read-only and copy before modifying.
//
// # Memory
//
// A live process costs about 250 heap bytes on a busy node
// (BenchmarkTableMemory, TestHeapPerLiveProcess): what processes share
// (image and argv, comm, credentials, cwd, cgroup) is stored once, see
// entry.go. Pids must be Linux pids (below 2^22, PID_MAX_LIMIT): events
// with larger ones are ignored.
package proctree

import (
	"cmp"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// Options configures a Table. Zero values select the defaults.
type Options struct {
	// MaxEntries bounds live plus exited entries (default 65536).
	MaxEntries int
	// ExitedTTL is how long an exited process stays resolvable so that
	// its children's and late events still get ancestry (default 30s).
	ExitedTTL time.Duration
	// MaxExited bounds the exited entries kept for ExitedTTL (default
	// 4096): in a storm of short-lived processes the oldest exits go
	// first, so memory stays flat. Children keep their ancestry anyway
	// (a removed entry freezes it).
	MaxExited int
	// AncestryDepth is how many ancestors an event carries, parent first
	// (default 8; values below 5 are raised to 5).
	AncestryDepth int
	// ProcRoot is where procfs is mounted (default "/proc").
	ProcRoot string
	// CgroupController selects which line of /proc/<pid>/cgroup becomes
	// Process.Cgroup: a v1 controller such as "memory" on hybrid hosts,
	// or "" for the unified "0::" line.
	CgroupController string
	// Now is the clock used for exit ageing (default time.Now).
	Now func() time.Time
	// Logger receives debug messages (default slog.Default()).
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultMaxEntries    = 65536
	DefaultExitedTTL     = 30 * time.Second
	DefaultMaxExited     = 4096
	DefaultAncestryDepth = 8
	MinAncestryDepth     = 5
	// sweepBudget is how many expired entries one Apply may remove: more
	// than one exit per Apply, so ageing keeps up, never a full scan.
	sweepBudget = 4
)

// Info is a copy of what the table knows about one process.
type Info struct {
	// Process holds identity, image and credentials. Process.PPID is the
	// pid of the parent the process was created by (not a reaper it was
	// reparented to).
	Process event.Process
	// Parent is the key of the original parent; zero when unknown.
	Parent event.Key
	// Exited is set once the process exited; ExitTime says when.
	Exited   bool
	ExitTime time.Time
}

// Ref returns the compact ancestor view of the process.
func (i Info) Ref() event.ProcessRef {
	return event.ProcessRef{PID: i.Process.PID, StartTime: i.Process.StartTime, Exe: i.Process.Exe,
		Args: i.Process.Args, Comm: i.Process.Comm, UID: i.Process.UID, Exited: i.Exited}
}

// Table is the process table. See the package documentation for the
// single-goroutine rule.
type Table struct {
	opts  Options
	log   *slog.Logger
	byKey map[pkey]*entry
	// byPID maps a pid to its live entry (the newest process holding it).
	byPID map[int32]*entry
	// live and exited are list sentinels.
	live, exited entry
	stampSeq     uint64
	images       images
	comms        interner[string]
	creds        interner[creds]
	places       interner[place]
	// epoch is the origin of entries' expireAt (see since).
	epoch time.Time

	n         atomic.Int64
	nExited   int // entries on the exited list
	evictions atomic.Uint64
	procReads uint64 // /proc reads for processes first seen in events
}

// New creates an empty table; call SeedFromProc to load running processes.
func New(opts Options) *Table {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	if opts.MaxExited <= 0 {
		opts.MaxExited = DefaultMaxExited
	}
	if opts.ExitedTTL <= 0 {
		opts.ExitedTTL = DefaultExitedTTL
	}
	if opts.AncestryDepth == 0 {
		opts.AncestryDepth = DefaultAncestryDepth
	}
	if opts.AncestryDepth < MinAncestryDepth {
		opts.AncestryDepth = MinAncestryDepth
	}
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	t := &Table{opts: opts, log: opts.Logger, byKey: make(map[pkey]*entry), byPID: make(map[int32]*entry),
		images: newImages(), comms: newInterner(strings.Clone), creds: newInterner(cloneCreds),
		places: newInterner(clonePlace), epoch: opts.Now()}
	t.live.prev, t.live.next = &t.live, &t.live
	t.exited.prev, t.exited.next = &t.exited, &t.exited
	return t
}

// since converts a time on the table's clock to the int64 kept in
// entry.expireAt (monotonic when the clock is).
func (t *Table) since(now time.Time) int64 { return int64(now.Sub(t.epoch)) }

// Len is the number of entries, live and exited. Safe from any goroutine.
func (t *Table) Len() int { return int(t.n.Load()) }

// Evictions counts live entries dropped because the table was full (a
// sign of missed exit events or an undersized MaxEntries). Exited entries
// dropped early for room are not counted. Safe from any goroutine.
func (t *Table) Evictions() uint64 { return t.evictions.Load() }

// Lookup returns what the table knows about the process with key k. An
// exited entry past its TTL is reported as not found.
func (t *Table) Lookup(k event.Key) (Info, bool) {
	pk, ok := packKey(k)
	if !ok {
		return Info{}, false
	}
	e := t.byKey[pk]
	if e == nil || (e.exited() && t.since(t.opts.Now()) >= e.expireAt) {
		return Info{}, false
	}
	return e.info(), true
}

// LookupPID returns the live process currently holding pid.
func (t *Table) LookupPID(pid int) (Info, bool) {
	if !validPID(pid) {
		return Info{}, false
	}
	e := t.byPID[int32(pid)]
	if e == nil {
		return Info{}, false
	}
	return e.info(), true
}

// Walk calls fn with a copy of every live process, oldest start first
// (parents before their children). fn may call Apply.
func (t *Table) Walk(fn func(p *event.Process)) {
	ps := make([]event.Process, 0, len(t.byPID))
	for e := t.live.next; e != &t.live; e = e.next {
		ps = append(ps, e.process())
	}
	slices.SortFunc(ps, func(a, b event.Process) int {
		return cmp.Or(cmp.Compare(a.StartTime, b.StartTime), cmp.Compare(a.PID, b.PID))
	})
	for i := range ps {
		fn(&ps[i])
	}
}

// Apply updates the table from ev and enriches ev in place: missing
// Process fields are filled from the table, ev.Parent and ev.Ancestry are
// set from the parent captured when the process was created. Events
// without a valid Linux pid (1 to 2^22-1) are left as they are.
func (t *Table) Apply(ev *event.Event) {
	if ev == nil || !validPID(ev.Process.PID) {
		return
	}
	now := t.opts.Now()
	t.expire(now, sweepBudget)
	var e *entry
	switch ev.Kind {
	case event.KindFork:
		e = t.applyFork(ev)
	case event.KindExec:
		e = t.applyExec(ev)
	case event.KindSnapshot:
		e = t.applySnapshot(ev)
	case event.KindExit:
		e, _ = t.resolve(ev, false)
		exitTime := ev.Time
		if exitTime.IsZero() {
			exitTime = now
		}
		t.markExited(e, exitTime, now)
	default:
		e, _ = t.resolve(ev, true)
		t.learn(e, &ev.Process)
	}
	t.touch(e)
	t.enrich(ev, e)
}

// applyFork creates the child (ev.Process) under its creator (ev.Parent,
// else ev.Process.PPID), inheriting the creator's image.
func (t *Table) applyFork(ev *event.Event) *entry {
	ppid, pstart := ev.Process.PPID, uint64(0)
	if ev.Parent != nil && ev.Parent.PID != 0 {
		ppid, pstart = ev.Parent.PID, ev.Parent.StartTime
	}
	child := ev.Process
	if child.StartTime == 0 {
		// The source could not key the child: ask /proc (the pid's
		// current holder in the table may be a stale process).
		t.procReads++
		if p, err := readProcess(t.opts.ProcRoot, child.PID, t.opts.CgroupController); err == nil {
			child.StartTime = p.StartTime
		}
	}
	if e := t.byKey[makePKey(child.PID, child.StartTime)]; e != nil {
		// Seen already (events can arrive out of order): only fill gaps.
		if e.parent == nil {
			t.link(e, t.findParent(ppid, pstart, true))
		}
		if e.parent != nil && e.img.exe == "" {
			p, from := e.process(), e.parent.process()
			inheritImage(&p, &from)
			t.store(e, &p, e.parent)
			t.bump(e)
		}
		return e
	}
	parent := t.findParent(ppid, pstart, true)
	p := child
	p.TID = 0
	p.PPID = ppid
	if parent != nil {
		from := parent.process()
		inheritImage(&p, &from)
	}
	return t.insert(p, parent)
}

// inheritImage fills what a fork copies from the creator and the event
// did not report.
func inheritImage(p, from *event.Process) {
	if p.Exe == "" {
		p.Exe, p.ExeInode, p.ExeDev = from.Exe, from.ExeInode, from.ExeDev
		p.ExeUpperLayer, p.ExeMemfd, p.ExeDeleted = from.ExeUpperLayer, from.ExeMemfd, from.ExeDeleted
	}
	if p.Args == nil {
		p.Args, p.ArgsTruncated = from.Args, from.ArgsTruncated
	}
	if p.Comm == "" {
		p.Comm = from.Comm
	}
	if p.Cwd == "" {
		p.Cwd = from.Cwd
	}
	if p.Cgroup == "" && p.CgroupID == 0 {
		p.Cgroup, p.CgroupID = from.Cgroup, from.CgroupID
	}
	if p.User == "" && p.UID == from.UID {
		p.User = from.User
	}
	if p.MntNS == 0 {
		p.MntNS = from.MntNS
	}
	if p.PidNS == 0 {
		p.PidNS = from.PidNS
	}
	if p.NetNS == 0 {
		p.NetNS = from.NetNS
	}
}

// applyExec replaces the image of the process (same key: exec keeps pid and
// start time), creating the entry if the process was unknown.
func (t *Table) applyExec(ev *event.Event) *entry {
	e, fromProc := t.resolve(ev, true)
	src := &ev.Process
	if fromProc && src.Exe == "" {
		// The event lacks the new image but /proc, read just now, has it.
		t.learn(e, src)
		return e
	}
	t.setImage(e, src, nil)
	e.setSockets(src.StdinSocket, src.StdoutSocket)
	if src.Comm != "" && src.Comm != e.comm.v {
		setShared(&t.comms, &e.comm, src.Comm, nil)
	}
	if cr := e.cred.v; cr.uid != src.UID || cr.gid != src.GID || cr.euid != src.EUID ||
		(src.User != "" && src.User != cr.user) {
		cr.uid, cr.gid, cr.euid = src.UID, src.GID, src.EUID
		if src.User != "" {
			cr.user = src.User
		}
		setShared(&t.creds, &e.cred, cr, nil)
	}
	// cwd, cgroup and namespaces survive exec: replace only when reported.
	t.learn(e, src)
	if src.Cwd != "" && src.Cwd != e.place.v.cwd {
		pl := e.place.v
		pl.cwd = src.Cwd
		setShared(&t.places, &e.place, pl, nil)
	}
	t.bump(e)
	return e
}

// applySnapshot inserts or replaces a process reported as already running.
func (t *Table) applySnapshot(ev *event.Event) *entry {
	src := ev.Process
	src.TID = 0
	e := t.byKey[makePKey(src.PID, src.StartTime)]
	if e == nil && src.StartTime == 0 {
		e = t.byPID[int32(src.PID)]
	}
	if e == nil {
		return t.insert(src, t.findParent(src.PPID, 0, false))
	}
	if e.parent == nil {
		t.link(e, t.findParent(src.PPID, 0, false))
	}
	if e.parent != nil {
		src.PPID = int(e.parent.pid) // keep the original parent
	} else if src.PPID == 0 {
		src.PPID = int(e.ppid)
	}
	if src.StartTime == 0 {
		src.StartTime = e.startTime
	}
	t.store(e, &src, e.parent)
	t.bump(e)
	return e
}

// learn keeps state that can change without exec (cgroup moves, setns,
// unshare, chdir) when an event reports it.
func (t *Table) learn(e *entry, src *event.Process) {
	pl, changed := e.place.v, false
	if src.Cgroup != "" && src.Cgroup != pl.cgroup {
		pl.cgroup, pl.cgroupID, changed = src.Cgroup, src.CgroupID, true
	} else if src.CgroupID != 0 && pl.cgroupID == 0 {
		pl.cgroupID, changed = src.CgroupID, true
	}
	if src.MntNS != 0 && src.MntNS != pl.mntNS {
		pl.mntNS, changed = src.MntNS, true
	}
	if src.PidNS != 0 && src.PidNS != pl.pidNS {
		pl.pidNS, changed = src.PidNS, true
	}
	if src.NetNS != 0 && src.NetNS != pl.netNS {
		pl.netNS, changed = src.NetNS, true
	}
	if pl.cwd == "" && src.Cwd != "" {
		pl.cwd, changed = src.Cwd, true
	}
	if changed {
		setShared(&t.places, &e.place, pl, nil)
	}
	if e.comm.v == "" && src.Comm != "" {
		setShared(&t.comms, &e.comm, src.Comm, nil)
	}
}

// resolve finds the entry of ev.Process, creating it if the process was
// never seen: from /proc when readProc is set and /proc still has it (once
// per key: the created entry answers every later event), otherwise from
// the event alone.
//
// fromProc reports that the entry was just created from /proc.
func (t *Table) resolve(ev *event.Event, readProc bool) (e *entry, fromProc bool) {
	src := &ev.Process
	if src.StartTime == 0 {
		if e := t.byPID[int32(src.PID)]; e != nil {
			return e, false
		}
	} else if e := t.byKey[makePKey(src.PID, src.StartTime)]; e != nil {
		return e, false
	}
	if readProc {
		t.procReads++
		if p, err := readProcess(t.opts.ProcRoot, src.PID, t.opts.CgroupController); err == nil {
			switch {
			case src.StartTime == 0 || p.Key() == src.Key():
				// The same process: /proc is the better source.
				fillFrom(&p, src)
				return t.insert(p, t.findParent(p.PPID, 0, true)), true
			case p.StartTime > src.StartTime:
				// The pid now belongs to a newer process: ours is gone.
				e := t.insertMinimal(ev)
				t.markExited(e, time.Time{}, t.opts.Now())
				return e, false
			}
		} else {
			t.log.Debug("process first seen in an event is not readable in procfs; using the event alone",
				"pid", src.PID, "err", err)
		}
	}
	return t.insertMinimal(ev), false
}

// fillFrom completes a process read from /proc with what only the event
// knows.
func fillFrom(p, src *event.Process) {
	if p.Exe == "" {
		p.Exe = src.Exe
	}
	if p.Args == nil {
		p.Args, p.ArgsTruncated = src.Args, src.ArgsTruncated
	}
	if p.User == "" && p.UID == src.UID {
		p.User = src.User
	}
	if p.CgroupID == 0 {
		p.CgroupID = src.CgroupID
	}
	if p.ExeInode == 0 {
		p.ExeInode, p.ExeDev = src.ExeInode, src.ExeDev
	}
	p.ExeUpperLayer = p.ExeUpperLayer || src.ExeUpperLayer
	p.ExeMemfd = p.ExeMemfd || src.ExeMemfd
}

func (t *Table) insertMinimal(ev *event.Event) *entry {
	p := ev.Process
	p.TID = 0
	ppid, pstart := p.PPID, uint64(0)
	if ev.Kind != event.KindFork && ev.Parent != nil && ev.Parent.PID != 0 {
		ppid, pstart = ev.Parent.PID, ev.Parent.StartTime
	}
	p.PPID = ppid
	return t.insert(p, t.findParent(ppid, pstart, false))
}

// findParent returns the entry of the process (ppid, pstartNS); with no
// start time, the live process holding ppid. With readProc, an unknown
// parent is loaded from /proc (with its own unknown ancestors, up to the
// ancestry depth).
func (t *Table) findParent(ppid int, pstartNS uint64, readProc bool) *entry {
	if !validPID(ppid) {
		return nil
	}
	if pstartNS != 0 {
		if e := t.byKey[makePKey(ppid, pstartNS)]; e != nil {
			return e
		}
	} else if e := t.byPID[int32(ppid)]; e != nil {
		return e
	}
	if !readProc {
		return nil
	}
	return t.loadChain(ppid, pstartNS, t.opts.AncestryDepth)
}

// livePID returns the live entry holding pid, if any.
func (t *Table) livePID(pid int) *entry {
	if !validPID(pid) {
		return nil
	}
	return t.byPID[int32(pid)]
}

// loadChain reads pid and its unknown ancestors from /proc.
func (t *Table) loadChain(pid int, startNS uint64, depth int) *entry {
	if depth <= 0 {
		return nil
	}
	t.procReads++
	p, err := readProcess(t.opts.ProcRoot, pid, t.opts.CgroupController)
	if err != nil || (startNS != 0 && p.Key() != event.MakeKey(pid, startNS)) {
		return nil
	}
	if e := t.byKey[makePKey(p.PID, p.StartTime)]; e != nil {
		return e
	}
	var parent *entry
	if validPID(p.PPID) {
		if parent = t.byPID[int32(p.PPID)]; parent == nil {
			parent = t.loadChain(p.PPID, 0, depth-1)
		}
	}
	return t.insert(p, parent)
}

// insert adds a new entry for p (whose pid is valid) under parent, making
// room first. If the key is already present the existing entry is
// returned.
func (t *Table) insert(p event.Process, parent *entry) *entry {
	k := makePKey(p.PID, p.StartTime)
	if e := t.byKey[k]; e != nil {
		if e.parent == nil {
			t.link(e, parent)
		}
		return e
	}
	t.makeRoom(parent)
	e := &entry{}
	if parent != nil {
		e.parent = parent
		parent.nchild++
		p.PPID = int(parent.pid)
	}
	// A child mostly shares its parent's strings and image: take them
	// from it instead of looking them up.
	t.store(e, &p, parent)
	t.byKey[k] = e
	t.n.Add(1)
	if old := t.byPID[e.pid]; old != nil && old != e {
		// A new process holds the pid: the old one is gone even if we
		// missed its exit.
		t.markExited(old, time.Time{}, t.opts.Now())
	}
	t.byPID[e.pid] = e
	t.bump(e)
	pushBack(&t.live, e)
	return e
}

// link attaches a parent to an entry that had none, refusing cycles.
func (t *Table) link(e, parent *entry) {
	if parent == nil || parent == e {
		return
	}
	for p := parent; p != nil; p = p.parent {
		if p == e {
			return
		}
	}
	e.parent = parent
	parent.nchild++
	e.ppid = parent.pid
	if e.lin != nil {
		e.lin.built = false
	}
}

func (t *Table) bump(e *entry) {
	t.stampSeq++
	e.stamp = t.stampSeq
}

// markExited moves e to the exited list; it ages out ExitedTTL later.
func (t *Table) markExited(e *entry, exitTime, now time.Time) {
	if e.flags&(entExited|entRemoved) != 0 {
		return
	}
	if exitTime.IsZero() {
		exitTime = now
	}
	e.flags |= entExited
	e.exitTime, e.expireAt = exitTime.UnixNano(), t.since(now.Add(t.opts.ExitedTTL))
	if t.byPID[e.pid] == e {
		delete(t.byPID, e.pid)
	}
	unlink(e)
	pushBack(&t.exited, e)
	t.nExited++
	t.bump(e)
	for t.nExited > t.opts.MaxExited {
		h := oldest(&t.exited, e)
		if h == nil {
			break
		}
		t.remove(h)
	}
}

// touch marks a live entry as recently seen (eviction is least recently
// seen first).
func (t *Table) touch(e *entry) {
	if e.flags&(entExited|entRemoved) != 0 || e.next == &t.live {
		return
	}
	unlink(e)
	pushBack(&t.live, e)
}

// expire removes up to budget exited entries whose TTL has passed.
func (t *Table) expire(now time.Time, budget int) {
	if t.exited.next == &t.exited {
		return
	}
	at := t.since(now)
	for ; budget > 0; budget-- {
		h := t.exited.next
		if h == &t.exited || at < h.expireAt {
			return
		}
		t.remove(h)
	}
}

// makeRoom frees one slot if the table is full: the oldest exited entry,
// else the least recently seen live one (counted in Evictions). keep (the
// parent about to be linked) is spared.
func (t *Table) makeRoom(keep *entry) {
	for len(t.byKey) >= t.opts.MaxEntries {
		if h := oldest(&t.exited, keep); h != nil {
			t.remove(h)
			continue
		}
		h := oldest(&t.live, keep)
		if h == nil {
			return
		}
		t.remove(h)
		t.evictions.Add(1)
	}
}

// oldest returns the first entry of list other than keep.
func oldest(list, keep *entry) *entry {
	h := list.next
	if h == keep {
		h = h.next
	}
	if h == list {
		return nil
	}
	return h
}

// remove drops e from the table. Children still pointing at it keep their
// ancestry: e freezes its own ancestry first and then forgets its parent,
// so a removed entry never keeps a chain of other entries alive. Its
// image reference is released (the image stays readable through e).
func (t *Table) remove(e *entry) {
	if e.removed() {
		return
	}
	if e.nchild > 0 {
		t.lineage(e) // children keep seeing it and its ancestors
	}
	delete(t.byKey, e.key())
	if t.byPID[e.pid] == e {
		delete(t.byPID, e.pid)
	}
	if e.exited() {
		t.nExited--
	}
	unlink(e)
	e.flags |= entRemoved
	t.bump(e)
	if e.lin != nil {
		e.lin.stamps = nil
	}
	if e.parent != nil {
		e.parent.nchild--
		e.parent = nil
	}
	t.images.release(e.img)
	t.comms.release(e.comm)
	t.creds.release(e.cred)
	t.places.release(e.place)
	t.n.Add(-1)
}

// ancestry returns e's ancestors, parent first, up to AncestryDepth: the
// parent's lineage.
func (t *Table) ancestry(e *entry) []event.ProcessRef {
	if e.parent == nil {
		return nil
	}
	return t.lineage(e.parent)
}

// linRefs returns x's cached lineage (frozen if x was removed).
func (x *entry) linRefs() []event.ProcessRef {
	if x.lin == nil {
		return nil
	}
	return x.lin.refs
}

// lineage returns x followed by its ancestors, rebuilding the cached slice
// only when one of them changed.
func (t *Table) lineage(x *entry) []event.ProcessRef {
	if x.removed() || t.linValid(x) {
		return x.linRefs()
	}
	depth := t.opts.AncestryDepth
	n := 0
	for p := x; p != nil && n < depth; p = p.parent {
		if p.removed() {
			n += min(len(p.linRefs()), depth-n)
			break
		}
		n++
	}
	if x.lin == nil {
		x.lin = &lineage{stamps: make([]uint64, 0, n)}
	}
	lin := make([]event.ProcessRef, 0, n)
	stamps := x.lin.stamps[:0]
	for p := x; p != nil && len(lin) < depth; p = p.parent {
		stamps = append(stamps, p.stamp)
		if p.removed() {
			// p's lineage was frozen when it was removed.
			rest := p.linRefs()
			if len(rest) > depth-len(lin) {
				rest = rest[:depth-len(lin)]
			}
			lin = append(lin, rest...)
			break
		}
		lin = append(lin, p.ref())
	}
	x.lin.refs, x.lin.stamps, x.lin.built = lin, stamps, true
	return lin
}

// linValid reports whether x's cached lineage still matches x and its
// ancestors.
func (t *Table) linValid(x *entry) bool {
	if x.lin == nil || !x.lin.built {
		return false
	}
	stamps := x.lin.stamps
	i := 0
	for p := x; p != nil && i < t.opts.AncestryDepth; p = p.parent {
		if i >= len(stamps) || stamps[i] != p.stamp {
			return false
		}
		i++
		if p.removed() {
			return true
		}
	}
	return i == len(stamps)
}

// enrich fills what ev lacks from e and sets Parent and Ancestry.
func (t *Table) enrich(ev *event.Event, e *entry) {
	p, m, pl := &ev.Process, e.img, &e.place.v
	if p.StartTime == 0 {
		p.StartTime = e.startTime
	}
	if p.PPID == 0 {
		p.PPID = int(e.ppid)
	}
	if p.Comm == "" {
		p.Comm = e.comm.v
	}
	if p.Exe == "" {
		p.Exe = m.exe
		if p.ExeInode == 0 {
			p.ExeInode, p.ExeDev = m.inode, m.dev
		}
		p.ExeUpperLayer = p.ExeUpperLayer || m.flags&imgUpperLayer != 0
		p.ExeMemfd = p.ExeMemfd || m.flags&imgMemfd != 0
		p.ExeDeleted = p.ExeDeleted || m.flags&imgDeleted != 0
	}
	if p.Args == nil {
		p.Args, p.ArgsTruncated = m.args, m.flags&imgArgsTruncated != 0
	}
	if p.Cwd == "" {
		p.Cwd = pl.cwd
	}
	if p.Cgroup == "" {
		p.Cgroup = pl.cgroup
	}
	if p.CgroupID == 0 {
		p.CgroupID = pl.cgroupID
	}
	if cr := &e.cred.v; p.User == "" && p.UID == cr.uid {
		p.User = cr.user
	}
	if p.MntNS == 0 {
		p.MntNS = pl.mntNS
	}
	if p.PidNS == 0 {
		p.PidNS = pl.pidNS
	}
	if p.NetNS == 0 {
		p.NetNS = pl.netNS
	}
	if anc := t.ancestry(e); len(anc) > 0 {
		ev.Ancestry = anc
		ev.Parent = &anc[0]
	}
}

func unlink(e *entry) {
	if e.prev != nil {
		e.prev.next, e.next.prev = e.next, e.prev
	}
	e.prev, e.next = nil, nil
}

func pushBack(list, e *entry) {
	e.prev, e.next = list.prev, list
	list.prev.next = e
	list.prev = e
}

// String summarises the table for debugging.
func (t *Table) String() string {
	return fmt.Sprintf("proctree: %d entries (%d live), %d evictions", t.Len(), len(t.byPID), t.Evictions())
}

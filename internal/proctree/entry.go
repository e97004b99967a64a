package proctree

import (
	"hash/maphash"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// This file holds the compact form of a process: a table of 10,000 live
// processes must fit in a few MiB (issue 8, P6). What many processes share
// is stored once, in reference-counted intern tables that belong to the
// table (so they need no locks and cannot grow without limit: a value is
// dropped when the last entry using it is removed):
//
//   - the image (executable, argv and the executable's attributes), so the
//     thousand workers of one server, or every fork child before its exec,
//     share one argv;
//   - comm, the credentials (uids, gid, user name) and the place (cwd,
//     cgroup, namespaces).
//
// Exit state is two int64s and the ancestry cache a pointer that stays nil
// for the processes that never were an ancestor (most of them).

// shared is one interned value and the number of entries using it. It is
// never modified (a change interns another one), so its strings can be
// handed out in events.
type shared[T comparable] struct {
	v    T
	refs int32
}

// interner interns values of one type.
type interner[T comparable] struct {
	m     map[T]*shared[T]
	clone func(T) T // copies v's strings so it retains no event buffer
}

func newInterner[T comparable](clone func(T) T) interner[T] {
	return interner[T]{m: make(map[T]*shared[T]), clone: clone}
}

// get returns the interned v with one more reference.
func (in *interner[T]) get(v T) *shared[T] {
	if r := in.m[v]; r != nil {
		r.refs++
		return r
	}
	r := &shared[T]{v: in.clone(v), refs: 1}
	in.m[r.v] = r
	return r
}

// retain adds a reference to r.
func retain[T comparable](r *shared[T]) *shared[T] {
	r.refs++
	return r
}

// release drops a reference; the last one removes r from the intern map
// (r itself stays valid for whoever still reads it: a removed entry).
func (in *interner[T]) release(r *shared[T]) {
	if r == nil {
		return
	}
	if r.refs--; r.refs <= 0 && in.m[r.v] == r {
		delete(in.m, r.v)
	}
}

// creds are a process's credentials.
type creds struct {
	uid, gid, euid uint32
	user           string
}

// place is where a process runs: cwd, cgroup and namespaces.
type place struct {
	cwd, cgroup         string
	cgroupID            uint64
	mntNS, pidNS, netNS uint32
}

func cloneCreds(c creds) creds {
	c.user = strings.Clone(c.user)
	return c
}

func clonePlace(p place) place {
	p.cwd, p.cgroup = strings.Clone(p.cwd), strings.Clone(p.cgroup)
	return p
}

// maxPID bounds the pids the table accepts: Linux's PID_MAX_LIMIT (2^22),
// so a pid and a start time pack into one 64-bit key.
const maxPID = 1<<22 - 1

// pkey is event.Key packed into 64 bits: pid in the top 22 bits, start
// ticks (10 ms, 2^42 of them: over a thousand years of uptime) below.
type pkey uint64

const tickBits = 42

func makePKey(pid int, startNS uint64) pkey {
	return pkey(uint64(pid)<<tickBits | (startNS/event.TickNS)&(1<<tickBits-1))
}

// packKey converts k; ok is false for a pid the table never holds.
func packKey(k event.Key) (pkey, bool) {
	if k.PID <= 0 || k.PID > maxPID || k.Start >= 1<<tickBits {
		return 0, false
	}
	return pkey(uint64(k.PID)<<tickBits | k.Start), true
}

// validPID reports whether pid can be held by the table.
func validPID(pid int) bool { return pid > 0 && pid <= maxPID }

// image flag bits.
const (
	imgArgsTruncated uint8 = 1 << iota
	imgUpperLayer
	imgMemfd
	imgDeleted
	imgArgsNil // Args was nil (unknown), not an empty argv
)

// image is what exec sets: executable, argv and the executable's
// attributes. Interned images are shared and never modified (a change
// interns another one), so their strings and args slice can be handed
// out in events.
type image struct {
	exe   string
	args  []string
	inode uint64
	dev   uint32
	flags uint8
	refs  int32  // entries using it
	hash  uint64 // key in Table.images
	next  *image // another image with the same hash
}

// imageFlags returns the image flag bits of p.
func imageFlags(p *event.Process) uint8 {
	var f uint8
	if p.ArgsTruncated {
		f |= imgArgsTruncated
	}
	if p.ExeUpperLayer {
		f |= imgUpperLayer
	}
	if p.ExeMemfd {
		f |= imgMemfd
	}
	if p.ExeDeleted {
		f |= imgDeleted
	}
	if p.Args == nil {
		f |= imgArgsNil
	}
	return f
}

// imageOf extracts the image fields of p (not interned).
func imageOf(p *event.Process) image {
	return image{exe: p.Exe, args: p.Args, inode: p.ExeInode, dev: p.ExeDev, flags: imageFlags(p)}
}

// same reports whether two images hold the same values.
func (m *image) same(o *image) bool {
	return m.exe == o.exe && m.inode == o.inode && m.dev == o.dev && m.flags == o.flags && sameArgs(m.args, o.args)
}

// matches reports whether m holds p's image fields.
func (m *image) matches(p *event.Process) bool {
	return m.exe == p.Exe && m.inode == p.ExeInode && m.dev == p.ExeDev && m.flags == imageFlags(p) &&
		sameArgs(m.args, p.Args)
}

func sameArgs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || &a[0] == &b[0] {
		return true
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// images interns images: map by hash, colliding images chained.
type images struct {
	seed maphash.Seed
	m    map[uint64]*image
}

func newImages() images { return images{seed: maphash.MakeSeed(), m: make(map[uint64]*image)} }

func (s *images) hash(m *image) uint64 {
	h := maphash.String(s.seed, m.exe)
	for _, a := range m.args {
		h = (h ^ maphash.String(s.seed, a)) * 0x9e3779b97f4a7c15
	}
	h ^= (m.inode*0xff51afd7ed558ccd ^ uint64(m.dev)<<8 ^ uint64(m.flags)) * 0xc4ceb9fe1a85ec53
	return h ^ uint64(len(m.args))
}

// get returns the interned image equal to v with one more reference.
// hint, when it holds the same values (a fork child's parent image), is
// taken without hashing.
func (s *images) get(v *image, hint *image) *image {
	if hint != nil && hint.same(v) {
		hint.refs++
		return hint
	}
	h := s.hash(v)
	for m := s.m[h]; m != nil; m = m.next {
		if m.same(v) {
			m.refs++
			return m
		}
	}
	// A new image: copy it compactly, so it retains neither the event's
	// buffers nor one allocation per argument.
	m := &image{exe: strings.Clone(v.exe), args: cloneArgs(v.args), inode: v.inode, dev: v.dev, flags: v.flags,
		refs: 1, hash: h, next: s.m[h]}
	s.m[h] = m
	return m
}

// release drops a reference; the last one removes m from the intern map
// (m itself stays valid for whoever still reads it).
func (s *images) release(m *image) {
	if m == nil {
		return
	}
	if m.refs--; m.refs > 0 {
		return
	}
	head := s.m[m.hash]
	if head == m {
		if m.next == nil {
			delete(s.m, m.hash)
		} else {
			s.m[m.hash] = m.next
		}
		return
	}
	for p := head; p != nil; p = p.next {
		if p.next == m {
			p.next = m.next
			return
		}
	}
}

// cloneArgs copies args into one string and one slice header array.
func cloneArgs(args []string) []string {
	if args == nil {
		return nil
	}
	if len(args) == 0 {
		return []string{}
	}
	n := 0
	for _, a := range args {
		n += len(a)
	}
	var b strings.Builder
	b.Grow(n)
	for _, a := range args {
		b.WriteString(a)
	}
	all := b.String()
	out := make([]string, len(args))
	off := 0
	for i, a := range args {
		out[i] = all[off : off+len(a)]
		off += len(a)
	}
	return out
}

// entry flag bits.
const (
	entExited uint8 = 1 << iota
	entRemoved
	entStdinSocket
	entStdoutSocket
)

// entry is one process. Entries sit on exactly one of two intrusive lists:
// live (least recently seen first) or exited (oldest exit first). Fields
// are ordered to keep the struct in the 112-byte size class.
type entry struct {
	// parent is the entry of the original parent, captured at creation.
	// It may point at a removed entry (see remove), never at a chain of
	// them: a removed entry drops its own parent pointer.
	parent     *entry
	prev, next *entry
	img        *image // never nil
	// lin caches this entry and its ancestors; nil until the entry is
	// some event's parent.
	lin       *lineage
	comm      *shared[string] // never nil once stored, like cred and place
	cred      *shared[creds]
	place     *shared[place]
	startTime uint64 // ns since boot, as reported
	// stamp changes whenever a field visible in ProcessRef changes (exec,
	// exit, removal); descendants validate cached ancestry against it.
	stamp    uint64
	exitTime int64 // Unix ns, as reported; set once exited
	expireAt int64 // on the table's clock (Table.since); set once exited

	pid, ppid int32 // ppid: the original parent's pid
	nchild    int32 // entries whose parent pointer is this entry
	flags     uint8
}

// lineage caches an entry followed by its ancestors (up to AncestryDepth):
// it is the ancestry of every child, so siblings share one slice. stamps
// holds the stamps of the entries walked when it was built. A removed
// entry's lineage is frozen.
type lineage struct {
	refs   []event.ProcessRef
	stamps []uint64
	built  bool
}

func (e *entry) exited() bool  { return e.flags&entExited != 0 }
func (e *entry) removed() bool { return e.flags&entRemoved != 0 }

func (e *entry) key() pkey { return makePKey(int(e.pid), e.startTime) }

func (e *entry) eventKey() event.Key { return event.MakeKey(int(e.pid), e.startTime) }

func (e *entry) ref() event.ProcessRef {
	return event.ProcessRef{PID: int(e.pid), StartTime: e.startTime, Exe: e.img.exe, Args: e.img.args,
		Comm: e.comm.v, UID: e.cred.v.uid, Exited: e.exited()}
}

// process rebuilds the full event.Process (TID zero, PPID the original
// parent's).
func (e *entry) process() event.Process {
	m, cr, pl := e.img, &e.cred.v, &e.place.v
	return event.Process{PID: int(e.pid), PPID: int(e.ppid), StartTime: e.startTime,
		UID: cr.uid, GID: cr.gid, EUID: cr.euid, User: cr.user, Comm: e.comm.v,
		Exe: m.exe, Args: m.args, ArgsTruncated: m.flags&imgArgsTruncated != 0,
		Cwd: pl.cwd, Cgroup: pl.cgroup, CgroupID: pl.cgroupID,
		MntNS: pl.mntNS, PidNS: pl.pidNS, NetNS: pl.netNS,
		ExeInode: m.inode, ExeDev: m.dev, ExeUpperLayer: m.flags&imgUpperLayer != 0,
		ExeMemfd: m.flags&imgMemfd != 0, ExeDeleted: m.flags&imgDeleted != 0,
		StdinSocket: e.flags&entStdinSocket != 0, StdoutSocket: e.flags&entStdoutSocket != 0}
}

func (e *entry) info() Info {
	in := Info{Process: e.process(), Exited: e.exited()}
	if e.exited() {
		in.ExitTime = time.Unix(0, e.exitTime)
	}
	if e.parent != nil {
		in.Parent = e.parent.eventKey()
	}
	return in
}

// ppidOf returns pid as an entry's ppid (0 when the table could not hold
// such a pid).
func ppidOf(pid int) int32 {
	if !validPID(pid) {
		return 0
	}
	return int32(pid)
}

// store sets every field of e from p (p.TID is ignored). like, when not
// nil, is an entry whose values p's are likely to equal (the parent):
// equal ones are shared without a lookup.
func (t *Table) store(e *entry, p *event.Process, like *entry) {
	var comm *shared[string]
	var cred *shared[creds]
	var pl *shared[place]
	var img *image
	if like != nil {
		comm, cred, pl, img = like.comm, like.cred, like.place, like.img
	}
	e.pid, e.ppid, e.startTime = int32(p.PID), ppidOf(p.PPID), p.StartTime
	setShared(&t.comms, &e.comm, p.Comm, comm)
	setShared(&t.creds, &e.cred, creds{uid: p.UID, gid: p.GID, euid: p.EUID, user: p.User}, cred)
	setShared(&t.places, &e.place, place{cwd: p.Cwd, cgroup: p.Cgroup, cgroupID: p.CgroupID,
		mntNS: p.MntNS, pidNS: p.PidNS, netNS: p.NetNS}, pl)
	e.setSockets(p.StdinSocket, p.StdoutSocket)
	t.setImage(e, p, img)
}

// setShared points *slot at the interned v unless it holds v already;
// alt, when it holds v, is taken without a lookup.
func setShared[T comparable](in *interner[T], slot **shared[T], v T, alt *shared[T]) {
	cur := *slot
	if cur != nil && cur.v == v {
		return
	}
	var r *shared[T]
	if alt != nil && alt.v == v {
		r = retain(alt)
	} else {
		r = in.get(v)
	}
	in.release(cur)
	*slot = r
}

// setImage points e at the interned image of p's image fields.
func (t *Table) setImage(e *entry, p *event.Process, hint *image) {
	if e.img != nil && e.img.matches(p) {
		return
	}
	v := imageOf(p)
	m := t.images.get(&v, hint)
	t.images.release(e.img)
	e.img = m
}

func (e *entry) setSockets(stdin, stdout bool) {
	e.flags &^= entStdinSocket | entStdoutSocket
	if stdin {
		e.flags |= entStdinSocket
	}
	if stdout {
		e.flags |= entStdoutSocket
	}
}

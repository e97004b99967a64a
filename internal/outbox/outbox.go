// Package outbox is the sensor's durable on-disk FIFO queue of alerts
// between detection and shipping to the hub.
//
// # Layout
//
// A directory holds segment files named after the sequence number of their
// first record ("00000000000000000042.seg"), a "cursor" file with the
// acknowledged position, and a "LOCK" file (flock'd while open, so two
// processes never share an outbox). Each record is
//
//	uint32 little-endian payload length | uint32 CRC-32C of (length bytes ‖ payload) | payload
//
// where the payload is the alert's JSON. Records are numbered consecutively
// within a segment starting at the segment's base; numbers only grow.
//
// # Durability
//
// Append returns once the record is written to the operating system (one
// write(2); no network, no fsync on the caller's path). A background flusher
// fsyncs (group commit) at most every FlushInterval (default 50 ms), sooner
// when FlushRecords (default 256) records are pending. So:
//
//   - a crash of the process (kill -9, panic, OOM kill) loses nothing that
//     Append accepted: the data is in the kernel's page cache;
//   - a power loss or kernel crash can lose the records appended during the
//     last FlushInterval plus the duration of one fsync (the group-commit
//     window); Sync forces an fsync and returns when everything appended
//     before it is on stable storage.
//
// After such a crash the last record can be torn (partly written). Open
// detects that (short record, or a CRC mismatch on a record that ends at the
// end of the file, or a zero-filled tail) and truncates it; nothing before it
// is lost. A CRC mismatch with valid-looking data after it is corruption,
// not a torn write: Open fails with a *CorruptError naming the file and the
// offset, unless Options.Repair is set.
//
// # Bounds
//
// The outbox keeps at most MaxBytes (default 64 MiB) of segments. When an
// append would exceed it, the oldest segment is deleted whole; its
// unacknowledged records are counted as dropped (Dropped,
// vigil_outbox_dropped_total) and logged.
//
// # Consuming
//
// Peek returns the oldest unacknowledged records without removing them;
// Ack durably (fsync'd cursor) advances past them and deletes segments that
// are entirely acknowledged. Records that were peeked but not acknowledged
// before a restart are returned again: delivery is at-least-once, and the hub
// deduplicates by alert ID.
package outbox

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/vigil-sec/vigil/internal/alert"
)

// Defaults of Options.
const (
	DefaultMaxBytes      = 64 << 20
	DefaultSegmentBytes  = 4 << 20
	DefaultFlushInterval = 50 * time.Millisecond
	DefaultFlushRecords  = 256
)

// MaxRecordBytes is the largest alert (JSON) the outbox accepts.
const MaxRecordBytes = 1 << 20

const (
	headerSize  = 8
	segSuffix   = ".seg"
	cursorName  = "cursor"
	lockName    = "LOCK"
	cursorMagic = "VOC1"
	cursorSize  = 16 // magic(4) seq(8) crc(4)
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrClosed is returned by operations on a closed Outbox.
var ErrClosed = errors.New("outbox is closed")

// Options configure an Outbox. The zero value gives the defaults.
type Options struct {
	// MaxBytes bounds the segments on disk (default 64 MiB). It must be at
	// least twice SegmentBytes.
	MaxBytes int64
	// SegmentBytes is the size at which a new segment is started (default
	// 4 MiB); overflow drops a whole segment, so it is also the unit of loss.
	SegmentBytes int64
	// FlushInterval is the longest a record waits for its fsync (default
	// 50 ms): the group-commit window.
	FlushInterval time.Duration
	// FlushRecords pending records make the flusher fsync at once (default 256).
	FlushRecords int
	// Repair makes Open cut a corrupt segment at the first bad record
	// (saving the cut bytes to "<segment>.corrupt") instead of failing.
	Repair bool
	// Logger receives warnings (drops, truncated torn records, fsync
	// failures). Default slog.Default().
	Logger *slog.Logger
	// Registerer, if set, receives the outbox's metrics.
	Registerer prometheus.Registerer
}

// Record is one queued alert.
type Record struct {
	// Seq is the record's sequence number; Ack(Seq) acknowledges it and
	// everything before it.
	Seq uint64
	// Data is the alert's JSON, exactly as appended.
	Data json.RawMessage
}

// Alert decodes the record.
func (r Record) Alert() (alert.Alert, error) {
	var a alert.Alert
	if err := json.Unmarshal(r.Data, &a); err != nil {
		return a, fmt.Errorf("decode outbox record %d: %w", r.Seq, err)
	}
	return a, nil
}

// Stats is a snapshot of the outbox's state.
type Stats struct {
	Records   uint64 // unacknowledged records
	Bytes     int64  // unacknowledged bytes (records with headers)
	DiskBytes int64  // bytes of all segments on disk
	Segments  int
	Appended  uint64 // records appended since Open
	Acked     uint64 // records acknowledged since Open
	Dropped   uint64 // unacknowledged records dropped by overflow since Open
	NextSeq   uint64 // sequence number of the next append
	AckSeq    uint64 // every record below this is acknowledged
}

// CorruptError reports a record that failed its integrity check somewhere
// other than a torn tail.
type CorruptError struct {
	File   string
	Offset int64
	Reason string
	// Dir is the outbox directory.
	Dir string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("outbox segment %s is corrupt at byte offset %d (%s); the records before that offset are intact. "+
		"To keep them and discard the rest of this segment, restart with outbox repair enabled (outbox.Options.Repair, "+
		"the sensor's --outbox-repair) or run `truncate -s %d %s`; to discard the whole outbox instead, delete %s",
		e.File, e.Offset, e.Reason, e.Offset, e.File, e.Dir)
}

type segment struct {
	base    uint64
	count   uint64
	size    int64
	path    string
	f       *os.File
	refs    int  // readers and syncers using f outside the lock
	dropped bool // deleted from disk; close f when refs reaches 0
	broken  bool // a failed write could not be undone: append elsewhere
}

type pos struct {
	seg *segment
	end int64 // offset after the record
}

// Outbox is a durable FIFO of alerts. It is safe for concurrent use: any
// number of appenders, and one consumer (Peek/Ack) at a time.
type Outbox struct {
	dir  string
	opts Options
	log  *slog.Logger
	lock *os.File

	mu        sync.Mutex
	segs      []*segment // oldest first; the last is the one appended to
	nextSeq   uint64
	ackSeq    uint64 // all records < ackSeq are acknowledged; in segs[0]
	ackOff    int64  // byte offset of ackSeq in segs[0]
	records   uint64 // records in segs
	total     int64  // bytes in segs
	pending   int    // appended since the last fsync snapshot
	unsynced  []*segment
	dirDirty  bool
	syncedSeq uint64
	lastPeek  map[uint64]pos
	appended  uint64
	acked     uint64
	dropped   uint64
	closed    bool
	cursor    *os.File

	closeOnce sync.Once
	syncMu    sync.Mutex // one fsync pass at a time
	ackMu     sync.Mutex // one Ack at a time

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
	// notify is signalled (non-blocking) after every append.
	notify chan struct{}

	encPool sync.Pool

	fsyncSeconds prometheus.Histogram
	fsyncErrors  prometheus.Counter
	appendErrors prometheus.Counter
	truncated    prometheus.Counter
}

type encBuf struct {
	buf bytes.Buffer
	enc *json.Encoder
}

// Open opens (creating if needed) the outbox in dir, recovers from a torn
// tail and starts the background flusher. Close it when done.
func Open(dir string, opts Options) (*Outbox, error) {
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.SegmentBytes == 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.FlushRecords <= 0 {
		opts.FlushRecords = DefaultFlushRecords
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.SegmentBytes < 4096 {
		return nil, fmt.Errorf("open outbox %s: segment size %d bytes is too small; use at least 4096", dir, opts.SegmentBytes)
	}
	if opts.MaxBytes < 2*opts.SegmentBytes {
		return nil, fmt.Errorf("open outbox %s: max size %d bytes must be at least twice the segment size (%d bytes); raise the max size or lower the segment size",
			dir, opts.MaxBytes, opts.SegmentBytes)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create outbox directory %s: %w (choose a writable directory for the outbox)", dir, err)
	}
	o := &Outbox{
		dir:      dir,
		opts:     opts,
		log:      opts.Logger.With("component", "outbox", "dir", dir),
		lastPeek: map[uint64]pos{},
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		notify:   make(chan struct{}, 1),
		fsyncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "vigil_outbox_fsync_seconds", Help: "Latency of the outbox's group-commit fsyncs.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		fsyncErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_outbox_fsync_errors_total", Help: "Failed fsyncs of outbox files (appended alerts not yet durable).",
		}),
		appendErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_outbox_append_errors_total", Help: "Alerts the outbox could not write (lost).",
		}),
		truncated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_outbox_torn_records_truncated_total", Help: "Torn (partly written) records cut off when the outbox was opened.",
		}),
	}
	o.encPool.New = func() any {
		eb := &encBuf{}
		eb.enc = json.NewEncoder(&eb.buf)
		eb.enc.SetEscapeHTML(false)
		return eb
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open outbox lock file in %s: %w", dir, err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("outbox %s is in use by another process (%w); run one sensor per outbox directory", dir, err)
	}
	o.lock = lock
	if err := o.recover(); err != nil {
		o.closeFiles()
		return nil, err
	}
	if opts.Registerer != nil {
		if err := o.register(opts.Registerer); err != nil {
			o.closeFiles()
			return nil, fmt.Errorf("register outbox metrics: %w", err)
		}
	}
	go o.flusher()
	return o, nil
}

func segName(base uint64) string { return fmt.Sprintf("%020d%s", base, segSuffix) }

// scanned is a segment's content as found on disk.
type scanned struct {
	seg  *segment
	offs []int64 // start offset of each record
}

// recover reads the directory: segments, torn tails, the cursor.
func (o *Outbox) recover() error {
	ents, err := os.ReadDir(o.dir)
	if err != nil {
		return fmt.Errorf("read outbox directory %s: %w", o.dir, err)
	}
	var found []*scanned
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, segSuffix) {
			continue
		}
		base, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 10, 64)
		if err != nil {
			continue
		}
		found = append(found, &scanned{seg: &segment{base: base, path: filepath.Join(o.dir, name)}})
	}
	sort.Slice(found, func(i, j int) bool { return found[i].seg.base < found[j].seg.base })
	for i, s := range found {
		if err := o.scan(s, i == len(found)-1); err != nil {
			return err
		}
		if i > 0 {
			prev := found[i-1].seg
			if s.seg.base < prev.base+prev.count {
				return &CorruptError{File: s.seg.path, Offset: 0, Dir: o.dir,
					Reason: fmt.Sprintf("its first record number %d overlaps segment %s, which holds records up to %d",
						s.seg.base, filepath.Base(prev.path), prev.base+prev.count-1)}
			}
		}
	}
	ack, err := o.readCursor()
	if err != nil {
		return err
	}
	next := ack
	if n := len(found); n > 0 {
		last := found[n-1].seg
		next = max(next, last.base+last.count)
	}
	// Delete segments that hold no unacknowledged record. The last one is
	// kept as the segment to append to, unless the cursor lies beyond it.
	for len(found) > 0 {
		s := found[0].seg
		end := s.base + s.count
		if len(found) > 1 && (end <= ack || s.count == 0) || len(found) == 1 && ack > end {
			if err := os.Remove(s.path); err != nil {
				return fmt.Errorf("remove acknowledged outbox segment %s: %w", s.path, err)
			}
			o.dirDirty = true
			found = found[1:]
			continue
		}
		break
	}
	if len(found) == 0 {
		seg, err := o.createSegment(next)
		if err != nil {
			return err
		}
		found = append(found, &scanned{seg: seg})
	}
	for _, s := range found {
		flag := os.O_RDONLY
		if s == found[len(found)-1] {
			flag = os.O_RDWR | os.O_APPEND
		}
		if s.seg.f == nil {
			f, err := os.OpenFile(s.seg.path, flag, 0)
			if err != nil {
				return fmt.Errorf("open outbox segment %s: %w", s.seg.path, err)
			}
			s.seg.f = f
		}
		o.segs = append(o.segs, s.seg)
		o.records += s.seg.count
		o.total += s.seg.size
	}
	first := found[0]
	o.nextSeq = next
	switch {
	case ack <= first.seg.base:
		o.ackSeq, o.ackOff = first.seg.base, 0
	case ack >= first.seg.base+first.seg.count:
		o.ackSeq, o.ackOff = first.seg.base+first.seg.count, first.seg.size
	default:
		o.ackSeq, o.ackOff = ack, first.offs[ack-first.seg.base]
	}
	o.syncedSeq = o.nextSeq
	return nil
}

// scan validates one segment file, truncating a torn tail.
func (o *Outbox) scan(s *scanned, last bool) error {
	data, err := os.ReadFile(s.seg.path)
	if err != nil {
		return fmt.Errorf("read outbox segment %s: %w", s.seg.path, err)
	}
	var off int64
	size := int64(len(data))
	for off < size {
		n, reason, torn := checkRecord(data[off:])
		if reason == "" {
			s.offs = append(s.offs, off)
			off += int64(n)
			continue
		}
		if torn {
			o.log.Warn("outbox: cut off a torn record left by a crash or power loss; the records before it are intact",
				"file", s.seg.path, "offset", off, "bytes", size-off, "reason", reason, "lastSegment", last)
			o.truncated.Inc()
			if err := truncateSync(s.seg.path, off); err != nil {
				return err
			}
			break
		}
		cerr := &CorruptError{File: s.seg.path, Offset: off, Reason: reason, Dir: o.dir}
		if !o.opts.Repair {
			return cerr
		}
		keep := s.seg.path + ".corrupt"
		if err := os.WriteFile(keep, data[off:], 0o600); err != nil {
			return fmt.Errorf("repair outbox: save the corrupt tail of %s to %s: %w", s.seg.path, keep, err)
		}
		if err := truncateSync(s.seg.path, off); err != nil {
			return err
		}
		o.log.Error("outbox: repaired a corrupt segment by cutting it at the first bad record; the alerts after it in this segment are lost",
			"file", s.seg.path, "offset", off, "reason", reason, "savedTo", keep)
		break
	}
	s.seg.count = uint64(len(s.offs))
	s.seg.size = off
	return nil
}

// checkRecord validates the record at the start of b. It returns the
// record's total length, or why it is bad and whether that looks like a
// torn write (nothing valid after it) rather than corruption.
func checkRecord(b []byte) (n int, reason string, torn bool) {
	if len(b) < headerSize {
		return 0, fmt.Sprintf("%d-byte header is incomplete", len(b)), true
	}
	l := binary.LittleEndian.Uint32(b[0:4])
	if l == 0 {
		if allZero(b) {
			return 0, "zero-filled tail", true
		}
		return 0, "record length is zero", false
	}
	if int64(l) > int64(len(b)-headerSize) {
		return 0, fmt.Sprintf("record of %d bytes is incomplete (%d bytes present)", l, len(b)-headerSize), true
	}
	if l > MaxRecordBytes {
		return 0, fmt.Sprintf("record length %d exceeds the maximum %d", l, MaxRecordBytes), false
	}
	end := headerSize + int(l)
	want := binary.LittleEndian.Uint32(b[4:8])
	got := crc32.Update(crc32.Update(0, castagnoli, b[0:4]), castagnoli, b[headerSize:end])
	if want != got {
		return 0, fmt.Sprintf("CRC-32C mismatch: stored %08x, computed %08x", want, got), end == len(b)
	}
	return end, "", false
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func truncateSync(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open outbox segment %s to cut a torn record: %w", path, err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("cut outbox segment %s at offset %d: %w", path, size, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync outbox segment %s after cutting it: %w", path, err)
	}
	return nil
}

func (o *Outbox) createSegment(base uint64) (*segment, error) {
	path := filepath.Join(o.dir, segName(base))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create outbox segment %s: %w (is the disk full or the directory read-only?)", path, err)
	}
	o.dirDirty = true
	return &segment{base: base, path: path, f: f}, nil
}

// readCursor returns the acknowledged position (0 if none).
func (o *Outbox) readCursor() (uint64, error) {
	path := filepath.Join(o.dir, cursorName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return 0, fmt.Errorf("open outbox cursor %s: %w", path, err)
	}
	o.cursor = f
	var b [cursorSize]byte
	n, err := f.ReadAt(b[:], 0)
	if n == 0 && (err == io.EOF || err == nil) {
		// Allocate the cursor's block now: acknowledging later only
		// overwrites it, so it works on a full disk too — and
		// acknowledging is what frees the disk.
		if err := o.writeCursor(0); err != nil {
			o.log.Warn("outbox: cannot write the acknowledged-position file yet; acknowledging may fail while the disk is full", "file", path, "err", err)
		}
		return 0, nil
	}
	if n != cursorSize || string(b[:4]) != cursorMagic ||
		binary.LittleEndian.Uint32(b[12:16]) != crc32.Checksum(b[:12], castagnoli) {
		o.log.Warn("outbox: the acknowledged-position file is damaged; every queued alert will be sent again (the hub deduplicates them)",
			"file", path)
		return 0, nil
	}
	return binary.LittleEndian.Uint64(b[4:12]), nil
}

func (o *Outbox) writeCursor(seq uint64) error {
	var b [cursorSize]byte
	copy(b[:4], cursorMagic)
	binary.LittleEndian.PutUint64(b[4:12], seq)
	binary.LittleEndian.PutUint32(b[12:16], crc32.Checksum(b[:12], castagnoli))
	if _, err := o.cursor.WriteAt(b[:], 0); err != nil {
		return fmt.Errorf("write outbox cursor %s: %w", o.cursor.Name(), err)
	}
	if err := unix.Fdatasync(int(o.cursor.Fd())); err != nil {
		return fmt.Errorf("sync outbox cursor %s: %w", o.cursor.Name(), err)
	}
	return nil
}

// Dir is the outbox directory.
func (o *Outbox) Dir() string { return o.dir }

// Notify is signalled after appends (coalesced): a consumer waits on it
// instead of polling.
func (o *Outbox) Notify() <-chan struct{} { return o.notify }

// Write appends al; it makes the outbox an alert sink of the sensor.
func (o *Outbox) Write(al *alert.Alert) error { return o.Append(*al) }

// Append queues a. It returns once the record is written to the operating
// system; it is fsync'd by the group commit within FlushInterval (see the
// package documentation). When the outbox is full the oldest segment is
// dropped to make room.
func (o *Outbox) Append(a alert.Alert) error {
	eb := o.encPool.Get().(*encBuf)
	defer o.encPool.Put(eb)
	eb.buf.Reset()
	eb.buf.Write(make([]byte, headerSize))
	if err := eb.enc.Encode(&a); err != nil {
		o.appendErrors.Inc()
		return fmt.Errorf("encode alert %s for the outbox: %w", a.ID, err)
	}
	rec := eb.buf.Bytes()
	rec = rec[:len(rec)-1] // Encode's newline
	l := len(rec) - headerSize
	if l > MaxRecordBytes {
		o.appendErrors.Inc()
		return fmt.Errorf("alert %s is %d bytes of JSON, more than the outbox's limit of %d; it was not queued", a.ID, l, MaxRecordBytes)
	}
	binary.LittleEndian.PutUint32(rec[0:4], uint32(l))
	binary.LittleEndian.PutUint32(rec[4:8], crc32.Update(crc32.Update(0, castagnoli, rec[0:4]), castagnoli, rec[headerSize:]))

	o.mu.Lock()
	err := o.appendLocked(rec)
	kick := err == nil && o.pending >= o.opts.FlushRecords
	o.mu.Unlock()
	if err != nil {
		o.appendErrors.Inc()
		return err
	}
	if kick {
		select {
		case o.kick <- struct{}{}:
		default:
		}
	}
	select {
	case o.notify <- struct{}{}:
	default:
	}
	return nil
}

func (o *Outbox) appendLocked(rec []byte) error {
	if o.closed {
		return ErrClosed
	}
	n := int64(len(rec))
	act := o.segs[len(o.segs)-1]
	if act.broken {
		// A failed write left bytes that could not be cut off.
		if err := act.f.Truncate(act.size); err == nil {
			act.broken = false
		} else if act.count == 0 {
			return fmt.Errorf("append alert to outbox segment %s: cutting off a failed write: %w; the alert was not queued (check the disk holding %s)", act.path, err, o.dir)
		}
	}
	if act.broken || (act.size > 0 && act.size+n > o.opts.SegmentBytes) {
		seg, err := o.createSegment(o.nextSeq)
		if err != nil {
			return err
		}
		// The sealed segment stays open for reading (ReadAt) until removed.
		o.unsynced = append(o.unsynced, act)
		o.segs = append(o.segs, seg)
		act = seg
	}
	for o.total+n > o.opts.MaxBytes && len(o.segs) > 1 {
		o.dropOldestLocked()
	}
	w, err := act.f.Write(rec)
	if err != nil {
		if w > 0 {
			if terr := act.f.Truncate(act.size); terr != nil {
				act.broken = true
			}
		}
		return fmt.Errorf("append alert to outbox segment %s: %w; the alert was not queued (is the disk full? free space in %s)", act.path, err, o.dir)
	}
	act.size += n
	act.count++
	o.total += n
	o.records++
	o.nextSeq++
	o.appended++
	o.pending++
	return nil
}

// dropOldestLocked deletes segs[0] because the outbox is full.
func (o *Outbox) dropOldestLocked() {
	s := o.segs[0]
	lost := s.base + s.count - max(o.ackSeq, s.base)
	o.removeLocked(s)
	o.segs = o.segs[1:]
	o.ackSeq, o.ackOff = o.segs[0].base, 0
	o.dropped += lost
	o.log.Warn("outbox full: dropped the oldest queued alerts to make room for new ones; the hub has not accepted alerts for a long time — see the shipper's warnings, or raise the outbox size",
		"dropped", lost, "droppedTotal", o.dropped, "segment", s.path, "maxBytes", o.opts.MaxBytes)
}

// removeLocked deletes s from disk (o.segs is updated by the caller).
func (o *Outbox) removeLocked(s *segment) {
	if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		o.log.Error("outbox: removing a segment failed; it will be removed on the next open", "file", s.path, "err", err)
	}
	s.dropped = true
	o.records -= s.count
	o.total -= s.size
	if s.refs == 0 && s.f != nil {
		s.f.Close()
		s.f = nil
	}
	for seq, p := range o.lastPeek {
		if p.seg == s {
			delete(o.lastPeek, seq)
		}
	}
}

func (o *Outbox) release(segs []*segment) {
	for _, s := range segs {
		s.refs--
		if s.refs == 0 && s.dropped && s.f != nil {
			s.f.Close()
			s.f = nil
		}
	}
}

// Sync fsyncs everything appended before it was called.
func (o *Outbox) Sync() error {
	o.syncMu.Lock()
	defer o.syncMu.Unlock()
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return ErrClosed
	}
	return o.syncLocked()
}

// syncLocked runs with syncMu and mu held; it releases mu.
func (o *Outbox) syncLocked() error {
	target := o.nextSeq
	if target == o.syncedSeq && len(o.unsynced) == 0 && !o.dirDirty {
		o.mu.Unlock()
		return nil
	}
	unsynced, dirty := o.unsynced, o.dirDirty
	var files []*segment
	for _, s := range append(unsynced[:len(unsynced):len(unsynced)], o.segs[len(o.segs)-1]) {
		if !s.dropped && s.f != nil {
			s.refs++
			files = append(files, s)
		}
	}
	o.unsynced, o.dirDirty, o.pending = nil, false, 0
	o.mu.Unlock()

	start := time.Now()
	var err error
	for _, s := range files {
		if e := unix.Fdatasync(int(s.f.Fd())); e != nil && err == nil {
			err = fmt.Errorf("fsync outbox segment %s: %w", s.path, e)
		}
	}
	if dirty && err == nil {
		err = syncDir(o.dir)
	}
	o.fsyncSeconds.Observe(time.Since(start).Seconds())

	o.mu.Lock()
	o.release(files)
	if err != nil {
		o.unsynced = append(unsynced, o.unsynced...)
		o.dirDirty = o.dirDirty || dirty
	} else {
		o.syncedSeq = target
	}
	o.mu.Unlock()
	if err != nil {
		o.fsyncErrors.Inc()
		return fmt.Errorf("%w (alerts appended since the last successful sync are not yet durable against power loss; check the disk holding %s)", err, o.dir)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open outbox directory %s to sync it: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync outbox directory %s: %w", dir, err)
	}
	return nil
}

func (o *Outbox) flusher() {
	defer close(o.done)
	t := time.NewTicker(o.opts.FlushInterval)
	defer t.Stop()
	var lastLog time.Time
	var failures int
	for {
		select {
		case <-o.stop:
			return
		case <-t.C:
		case <-o.kick:
		}
		if err := o.Sync(); err != nil && !errors.Is(err, ErrClosed) {
			failures++
			if time.Since(lastLog) >= 30*time.Second {
				o.log.Error("outbox: group-commit fsync failed", "err", err, "failures", failures)
				lastLog, failures = time.Now(), 0
			}
		}
	}
}

// Peek returns up to n of the oldest unacknowledged records, oldest first,
// without removing them.
func (o *Outbox) Peek(n int) ([]Record, error) { return o.PeekBytes(n, 0) }

// PeekBytes is Peek that also stops before the records' JSON would exceed
// maxBytes (0: no limit); it returns at least one record if any is queued.
func (o *Outbox) PeekBytes(n int, maxBytes int) ([]Record, error) {
	recs, ends, err := o.read(n, maxBytes)
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	clear(o.lastPeek)
	for i, r := range recs {
		if !ends[i].seg.dropped {
			o.lastPeek[r.Seq] = ends[i]
		}
	}
	o.mu.Unlock()
	return recs, nil
}

type span struct {
	seg      *segment
	from, to int64
	seq      uint64
}

// read reads up to n records from the acknowledged position.
func (o *Outbox) read(n int, maxBytes int) ([]Record, []pos, error) {
	if n <= 0 {
		return nil, nil, nil
	}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil, nil, ErrClosed
	}
	var spans []span
	var segs []*segment
	avail := 0
	for i, s := range o.segs {
		from, seq := int64(0), s.base
		if i == 0 {
			from, seq = o.ackOff, o.ackSeq
		}
		if from >= s.size {
			continue
		}
		s.refs++
		segs = append(segs, s)
		spans = append(spans, span{seg: s, from: from, to: s.size, seq: seq})
		avail += int(s.base + s.count - seq)
		if avail >= n {
			break
		}
	}
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		o.release(segs)
		o.mu.Unlock()
	}()

	var recs []Record
	var ends []pos
	size := 0
	var hdr [headerSize]byte
	for _, sp := range spans {
		br := bufio.NewReaderSize(io.NewSectionReader(sp.seg.f, sp.from, sp.to-sp.from), 64<<10)
		off, seq := sp.from, sp.seq
		for off < sp.to && len(recs) < n {
			if _, err := io.ReadFull(br, hdr[:]); err != nil {
				return nil, nil, fmt.Errorf("read outbox segment %s at offset %d: %w", sp.seg.path, off, err)
			}
			l := binary.LittleEndian.Uint32(hdr[0:4])
			if l == 0 || l > MaxRecordBytes || off+headerSize+int64(l) > sp.to {
				return nil, nil, &CorruptError{File: sp.seg.path, Offset: off, Dir: o.dir,
					Reason: fmt.Sprintf("record length %d is invalid", l)}
			}
			if maxBytes > 0 && len(recs) > 0 && size+int(l) > maxBytes {
				return recs, ends, nil
			}
			data := make([]byte, l)
			if _, err := io.ReadFull(br, data); err != nil {
				return nil, nil, fmt.Errorf("read outbox segment %s at offset %d: %w", sp.seg.path, off, err)
			}
			want := binary.LittleEndian.Uint32(hdr[4:8])
			if got := crc32.Update(crc32.Update(0, castagnoli, hdr[0:4]), castagnoli, data); got != want {
				return nil, nil, &CorruptError{File: sp.seg.path, Offset: off, Dir: o.dir,
					Reason: fmt.Sprintf("CRC-32C mismatch: stored %08x, computed %08x", want, got)}
			}
			off += headerSize + int64(l)
			size += int(l)
			recs = append(recs, Record{Seq: seq, Data: data})
			ends = append(ends, pos{seg: sp.seg, end: off})
			seq++
		}
		if len(recs) >= n {
			break
		}
	}
	return recs, ends, nil
}

// Ack acknowledges every record with Seq <= upTo: the position is fsync'd
// before Ack returns, and segments holding only acknowledged records are
// deleted. Acknowledging records already acknowledged (or dropped) is a
// no-op.
func (o *Outbox) Ack(upTo uint64) error {
	o.ackMu.Lock()
	defer o.ackMu.Unlock()
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return ErrClosed
	}
	if upTo < o.ackSeq {
		o.mu.Unlock()
		return nil
	}
	if upTo >= o.nextSeq {
		next := o.nextSeq
		o.mu.Unlock()
		return fmt.Errorf("acknowledge outbox record %d: only records below %d were appended", upTo, next)
	}
	p, ok := o.lastPeek[upTo]
	from := o.ackSeq
	o.mu.Unlock()
	if !ok {
		// Not from the last Peek: find the record's end by reading.
		recs, ends, err := o.read(int(upTo-from+1), 0)
		if err != nil {
			return fmt.Errorf("acknowledge outbox record %d: %w", upTo, err)
		}
		i := len(recs) - 1
		for i >= 0 && recs[i].Seq > upTo {
			i--
		}
		if i < 0 {
			return nil
		}
		p = ends[i]
	}
	if err := o.writeCursor(upTo + 1); err != nil {
		return fmt.Errorf("acknowledge outbox record %d: %w (the records will be sent again after a restart)", upTo, err)
	}

	o.mu.Lock()
	defer o.mu.Unlock()
	if p.seg.dropped || upTo < o.ackSeq {
		return nil // overflow dropped them meanwhile
	}
	idx := -1
	for i, s := range o.segs {
		if s == p.seg {
			idx = i
			break
		}
	}
	if idx < 0 {
		return nil
	}
	o.acked += upTo + 1 - o.ackSeq
	for _, s := range o.segs[:idx] {
		o.removeLocked(s)
	}
	o.segs = o.segs[idx:]
	o.ackSeq, o.ackOff = upTo+1, p.end
	for len(o.segs) > 1 && o.ackOff >= o.segs[0].size {
		o.removeLocked(o.segs[0])
		o.segs = o.segs[1:]
		o.ackSeq, o.ackOff = o.segs[0].base, 0
	}
	for seq := range o.lastPeek {
		if seq <= upTo {
			delete(o.lastPeek, seq)
		}
	}
	return nil
}

// Stats returns a snapshot of the outbox's state.
func (o *Outbox) Stats() Stats {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.statsLocked()
}

func (o *Outbox) statsLocked() Stats {
	st := Stats{DiskBytes: o.total, Segments: len(o.segs), Appended: o.appended, Acked: o.acked,
		Dropped: o.dropped, NextSeq: o.nextSeq, AckSeq: o.ackSeq}
	if len(o.segs) > 0 {
		st.Records = o.records - (o.ackSeq - o.segs[0].base)
		st.Bytes = o.total - o.ackOff
	}
	return st
}

// Dropped is the number of unacknowledged records dropped by overflow
// since Open.
func (o *Outbox) Dropped() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.dropped
}

// Close stops the flusher, fsyncs what was appended and closes the files.
func (o *Outbox) Close() error {
	var err error
	o.closeOnce.Do(func() { err = o.close() })
	return err
}

func (o *Outbox) close() error {
	close(o.stop)
	<-o.done
	o.syncMu.Lock()
	o.mu.Lock()
	err := o.syncLocked()
	o.syncMu.Unlock()
	o.ackMu.Lock()
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
	o.ackMu.Unlock()
	o.closeFiles()
	return err
}

func (o *Outbox) closeFiles() {
	o.mu.Lock()
	defer o.mu.Unlock()
	// Readers still holding a segment close it when they release it.
	for _, s := range o.segs {
		s.dropped = true
		if s.f != nil && s.refs == 0 {
			s.f.Close()
			s.f = nil
		}
	}
	if o.cursor != nil {
		o.cursor.Close()
		o.cursor = nil
	}
	if o.lock != nil {
		o.lock.Close() // releases the flock
		o.lock = nil
	}
}

func (o *Outbox) register(r prometheus.Registerer) error {
	stat := func(f func(Stats) float64) func() float64 {
		return func() float64 { return f(o.Stats()) }
	}
	cs := []prometheus.Collector{
		o.fsyncSeconds, o.fsyncErrors, o.appendErrors, o.truncated,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vigil_outbox_depth_records", Help: "Alerts queued in the outbox and not yet acknowledged by the hub."},
			stat(func(s Stats) float64 { return float64(s.Records) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vigil_outbox_depth_bytes", Help: "Bytes of unacknowledged alerts in the outbox."},
			stat(func(s Stats) float64 { return float64(s.Bytes) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vigil_outbox_disk_bytes", Help: "Bytes of outbox segments on disk (bounded by the outbox's max size)."},
			stat(func(s Stats) float64 { return float64(s.DiskBytes) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "vigil_outbox_appended_total", Help: "Alerts appended to the outbox."},
			stat(func(s Stats) float64 { return float64(s.Appended) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "vigil_outbox_acked_total", Help: "Alerts acknowledged (delivered to the hub or dead-lettered)."},
			stat(func(s Stats) float64 { return float64(s.Acked) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "vigil_outbox_dropped_total", Help: "Unacknowledged alerts dropped because the outbox was full (oldest first)."},
			stat(func(s Stats) float64 { return float64(s.Dropped) })),
	}
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

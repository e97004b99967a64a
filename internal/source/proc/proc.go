// Package proc is vigil's degraded-mode event source: the Linux process
// events connector (NETLINK_CONNECTOR, CN_IDX_PROC) for fork/exec/exit,
// enriched with what /proc still shows about each process.
//
// It exists for hosts where eBPF cannot load. Compared with the eBPF source
// it is blind to every network, file and privilege event (see Missing), and
// process details are read from /proc after the fact: a process that exits
// (or execs again) before its exec event is handled is reported with only
// its pid, or with the details of its later image. Short-lived commands
// therefore often arrive without argv, exe or cwd; the exec event itself is
// never dropped. Exit events carry the start time only when the zombie was
// still readable. Not filled in this mode: CgroupID, User, ExeUpperLayer.
// The exit's Signal is the terminating signal from the wait status; the
// connector's exit_signal (what the parent is sent, usually SIGCHLD) is
// not reported.
//
// Events are reported relative to the initial pid namespace, so the
// source must run in the host pid and user namespaces with CAP_NET_ADMIN.
package proc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigil-sec/vigil/internal/event"
)

// SourceName is the Event.Source of every event this package emits.
const SourceName = "proc"

// Config configures a Source.
type Config struct {
	// ProcRoot is the procfs mount (default /proc).
	ProcRoot string
	Logger   *slog.Logger
	// ReadBuffer is the socket receive buffer in bytes (default 4 MiB).
	// Bursts larger than this are lost (and counted in Stats.Dropped).
	ReadBuffer int
	// CgroupController names the cgroup v1 controller whose path is kept
	// in Process.Cgroup (e.g. "memory" on hybrid hosts); "" keeps the
	// cgroup2 ("0::") path.
	CgroupController string
	// SubscribeTimeout bounds the wait for the kernel to acknowledge the
	// subscription (default 2s).
	SubscribeTimeout time.Duration
}

// Stats counts the source's work since New.
type Stats struct {
	// Received is the number of proc-connector messages read (all types,
	// including those that produce no event, such as thread forks).
	Received uint64
	// Dropped is the number of messages the kernel sent that never
	// arrived, from gaps in the per-CPU sequence numbers; each receive
	// buffer overrun (ENOBUFS) counts at least one. It is a lower bound:
	// a gap shows once a later message from the same CPU arrives, and
	// losses on a CPU before its first received message go unseen.
	Dropped uint64
	// Overruns is the number of ENOBUFS errors (receive buffer overruns).
	Overruns uint64
	// Malformed is the number of datagrams that failed to decode.
	Malformed uint64
	// Delivered is the number of events handed to emit.
	Delivered uint64
}

// Source reads process events from the proc connector.
type Source struct {
	log     *slog.Logger
	procfs  procReader
	selfPID int

	file *os.File // the netlink socket, non-blocking, in Go's poller

	clock clockOffsets

	// pending holds events received while waiting for the subscription
	// acknowledgement; Run emits them first.
	pending []procEvent
	lastSeq map[uint32]uint32 // cpu → last sequence number seen

	received, dropped, overruns, malformed, delivered atomic.Uint64
	// gapDropped is the part of dropped found through sequence gaps;
	// overrunFloor is what ENOBUFS errors alone guarantee was lost.
	gapDropped, overrunFloor uint64

	runMu     sync.Mutex
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// New opens a NETLINK_CONNECTOR socket, joins the proc connector's
// multicast group and subscribes (PROC_CN_MCAST_LISTEN), waiting for the
// kernel's acknowledgement so that a subscription the kernel ignores (a
// non-initial user or pid namespace) fails here rather than silently.
func New(cfg Config) (*Source, error) {
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ReadBuffer <= 0 {
		cfg.ReadBuffer = 4 << 20
	}
	if cfg.SubscribeTimeout <= 0 {
		cfg.SubscribeTimeout = 2 * time.Second
	}
	s := &Source{
		log:     cfg.Logger.With("source", SourceName),
		procfs:  procReader{root: cfg.ProcRoot, controller: cfg.CgroupController},
		selfPID: os.Getpid(),
		lastSeq: make(map[uint32]uint32),
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		return nil, fmt.Errorf("open NETLINK_CONNECTOR socket (is CONFIG_PROC_EVENTS enabled?): %w", err)
	}
	// SO_RCVBUFFORCE may exceed net.core.rmem_max (needs CAP_NET_ADMIN,
	// which we need anyway); fall back to the capped SO_RCVBUF.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, cfg.ReadBuffer); err != nil {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, cfg.ReadBuffer); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("set proc connector receive buffer to %d bytes: %w", cfg.ReadBuffer, err)
		}
		s.log.Warn("receive buffer capped by net.core.rmem_max; raise it to avoid losing bursts", "wanted", cfg.ReadBuffer)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: cnIdxProc}); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("join the proc connector multicast group: %w: run as root or grant CAP_NET_ADMIN in the initial user namespace", err)
		}
		return nil, fmt.Errorf("bind NETLINK_CONNECTOR socket to group CN_IDX_PROC: %w", err)
	}
	s.file = os.NewFile(uintptr(fd), "netlink-proc-connector")
	if err := s.subscribe(cfg.SubscribeTimeout); err != nil {
		s.file.Close()
		return nil, err
	}
	return s, nil
}

// subscribe sends PROC_CN_MCAST_LISTEN and waits for its acknowledgement.
func (s *Source) subscribe(timeout time.Duration) error {
	rc, err := s.file.SyscallConn()
	if err != nil {
		return fmt.Errorf("proc connector socket: %w", err)
	}
	ack := rand.Uint32() >> 1 // so that ack+1, the kernel's reply, never wraps
	msg := subscribeMessage(procCnMcastListen, 1, ack)
	var sendErr error
	if err := rc.Write(func(fd uintptr) bool {
		sendErr = unix.Sendto(int(fd), msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return !errors.Is(sendErr, unix.EAGAIN)
	}); err != nil {
		return fmt.Errorf("send proc connector subscription: %w", err)
	}
	if sendErr != nil {
		if errors.Is(sendErr, unix.EPERM) {
			return fmt.Errorf("send proc connector subscription: %w: run as root or grant CAP_NET_ADMIN", sendErr)
		}
		return fmt.Errorf("send proc connector subscription: %w", sendErr)
	}
	if err := s.file.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("set proc connector read deadline: %w", err)
	}
	defer s.file.SetReadDeadline(time.Time{})
	buf := make([]byte, recvBufSize)
	for {
		evs, err := s.recv(rc, buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("the kernel did not acknowledge the proc connector subscription within %v: "+
				"the sensor must run in the initial user and pid namespaces (hostPID)", timeout)
		}
		if err != nil && !errors.Is(err, unix.ENOBUFS) {
			return fmt.Errorf("wait for the proc connector acknowledgement: %w", err)
		}
		for _, ev := range evs {
			if ev.What == procEventNone && ev.Ack == ack+1 {
				if ev.AckErr != 0 {
					return fmt.Errorf("the kernel refused the proc connector subscription: %w", unix.Errno(ev.AckErr))
				}
				s.pending = append(s.pending, evs...)
				return nil
			}
		}
		s.pending = append(s.pending, evs...)
	}
}

// recvBufSize holds any single connector datagram (about 80 bytes each).
const recvBufSize = 16 << 10

// recv reads one datagram and decodes it, accounting sequence gaps.
func (s *Source) recv(rc interface {
	Read(func(uintptr) bool) error
}, buf []byte) ([]procEvent, error) {
	var n int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
		return !errors.Is(rerr, unix.EAGAIN)
	}); err != nil {
		return nil, err
	}
	if rerr != nil {
		if errors.Is(rerr, unix.ENOBUFS) {
			s.noteOverrun()
		}
		return nil, rerr
	}
	evs, err := decodeDatagram(buf[:n])
	if err != nil {
		s.malformed.Add(1)
		s.log.Warn("malformed proc connector message", "err", err, "bytes", n)
	}
	for i := range evs {
		s.received.Add(1)
		s.noteSeq(evs[i].CPU, evs[i].Seq)
	}
	return evs, nil
}

// noteSeq counts gaps in a CPU's sequence numbers as lost messages.
func (s *Source) noteSeq(cpu, seq uint32) {
	last, ok := s.lastSeq[cpu]
	s.lastSeq[cpu] = seq
	if !ok {
		return
	}
	if gap := seq - last - 1; gap != 0 && gap < 1<<31 {
		s.gapDropped += uint64(gap)
		s.syncDropped()
	}
}

// noteOverrun records an ENOBUFS error: at least one message was lost.
func (s *Source) noteOverrun() {
	total := s.overruns.Add(1)
	s.overrunFloor++
	s.syncDropped()
	s.log.Warn("proc connector receive buffer overrun: process events were lost",
		"overruns", total, "dropped", s.dropped.Load())
}

// syncDropped publishes max(sequence gaps, overruns): the gaps are exact
// once a later message from the same CPU arrives, the overrun count is a
// floor that is known immediately.
func (s *Source) syncDropped() {
	s.dropped.Store(max(s.gapDropped, s.overrunFloor))
}

// Run reads events and passes each to emit (from this goroutine) until ctx
// is done or Close is called, then returns nil; it returns an error if the
// socket fails. Lost messages are counted in Stats, never silently ignored.
func (s *Source) Run(ctx context.Context, emit func(*event.Event)) error {
	if !s.runMu.TryLock() {
		return errors.New("proc source: Run is already running")
	}
	defer s.runMu.Unlock()
	rc, err := s.file.SyscallConn()
	if err != nil {
		return fmt.Errorf("proc connector socket: %w", err)
	}
	if err := s.file.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("proc connector socket: %w", err)
	}
	stop := context.AfterFunc(ctx, func() {
		// Wake the blocked read; Close still owns the socket.
		s.file.SetReadDeadline(time.Unix(1, 0))
	})
	defer stop()

	pending := s.pending
	s.pending = nil
	for i := range pending {
		s.handle(pending[i], emit)
	}
	buf := make([]byte, recvBufSize)
	for {
		evs, err := s.recv(rc, buf)
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case err == nil:
		case errors.Is(err, unix.ENOBUFS):
			continue // counted and logged in recv
		case errors.Is(err, unix.EINTR):
			continue
		case s.closed.Load():
			return nil // Close was called
		default:
			return fmt.Errorf("read proc connector: %w", err)
		}
		for i := range evs {
			s.handle(evs[i], emit)
		}
	}
}

// handle turns one kernel message into at most one event.
func (s *Source) handle(pe procEvent, emit func(*event.Event)) {
	var ev *event.Event
	switch pe.What {
	case procEventFork:
		if pe.PID != pe.TGID { // a new thread, not a new process
			return
		}
		ev = s.newEvent(event.KindFork, pe)
		ev.Process.PID, ev.Process.PPID = pe.TGID, pe.ParentTGID
		ev.Parent = &event.ProcessRef{PID: pe.ParentTGID}
		ev.Fork = &event.Fork{ChildPID: pe.TGID}
		s.enrich(ev, pe, false)
		// The creator is who the kernel said, even if the child was
		// reparented (CLONE_PARENT) or the pid reused by the time we read.
		if ev.Process.PPID == 0 {
			ev.Process.PPID = pe.ParentTGID
		}
	case procEventExec:
		ev = s.newEvent(event.KindExec, pe)
		ev.Process.PID = pe.TGID
		if pe.PID != pe.TGID {
			ev.Process.TID = pe.PID
		}
		s.enrich(ev, pe, true)
		if ev.Process.PPID != 0 {
			ev.Parent = &event.ProcessRef{PID: ev.Process.PPID}
		}
	case procEventExit:
		if pe.PID != pe.TGID { // a thread exited, not the process
			return
		}
		ev = s.newEvent(event.KindExit, pe)
		ev.Process.PID, ev.Process.PPID = pe.TGID, pe.ParentTGID
		code, sig, core := decodeWaitStatus(pe.ExitCode)
		ev.Exit = &event.Exit{Code: code, Signal: sig, CoreDump: core}
		// A zombie still has its stat; a reaped process has nothing.
		s.enrich(ev, pe, false)
		if pe.ParentTGID != 0 {
			ev.Process.PPID = pe.ParentTGID
			ev.Parent = &event.ProcessRef{PID: pe.ParentTGID}
		}
	default:
		return
	}
	if ev.Process.PID == s.selfPID {
		return
	}
	s.delivered.Add(1)
	emit(ev)
}

func (s *Source) newEvent(kind event.Kind, pe procEvent) *event.Event {
	return &event.Event{Kind: kind, Source: SourceName, Time: s.clock.wall(pe.TimeNS)}
}

// enrich reads /proc for ev.Process, keeping whatever it gets: the process
// may be gone already, which is normal for short-lived commands.
func (s *Source) enrich(ev *event.Event, pe procEvent, full bool) {
	if ev.Process.PID == s.selfPID || ev.Process.PID <= 0 {
		return
	}
	err := s.procfs.readProcess(&ev.Process, s.clock.boot(pe.TimeNS), full)
	if err != nil && s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("process details incomplete", "kind", ev.Kind, "pid", ev.Process.PID, "err", err)
	}
}

// Missing lists the event kinds this source cannot observe: everything but
// the process lifecycle. (Health and snapshot events come from the sensor
// itself, not from a source.)
func (s *Source) Missing() []event.Kind {
	var out []event.Kind
	for _, k := range event.AllKinds {
		switch k {
		case event.KindExec, event.KindFork, event.KindExit, event.KindHealth, event.KindSnapshot,
			event.KindAudit: // the API server's, not a node's (vigil audit)
			continue
		}
		out = append(out, k)
	}
	return out
}

// Stats returns the counters.
func (s *Source) Stats() Stats {
	return Stats{
		Received:  s.received.Load(),
		Dropped:   s.dropped.Load(),
		Overruns:  s.overruns.Load(),
		Malformed: s.malformed.Load(),
		Delivered: s.delivered.Load(),
	}
}

// Close unsubscribes and closes the socket, ending a running Run.
func (s *Source) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		if rc, err := s.file.SyscallConn(); err == nil {
			// Best effort: the kernel also drops the listener when the
			// socket is released.
			rc.Write(func(fd uintptr) bool {
				unix.Sendto(int(fd), subscribeMessage(procCnMcastIgnore, 2, 0), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
				return true
			})
		}
		if err := s.file.Close(); err != nil {
			s.closeErr = fmt.Errorf("close proc connector socket: %w", err)
		}
	})
	return s.closeErr
}

// clockOffsets converts the connector's CLOCK_MONOTONIC timestamps to
// wall-clock time and to CLOCK_BOOTTIME (which /proc start times use).
// The offsets are refreshed at most once a second to follow clock steps.
type clockOffsets struct {
	mu        sync.Mutex
	refreshed time.Time
	wallOff   int64 // realtime - monotonic, ns
	bootOff   int64 // boottime - monotonic, ns
}

func (c *clockOffsets) offsets() (wall, boot int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); c.refreshed.IsZero() || now.Sub(c.refreshed) > time.Second {
		var mono, bt unix.Timespec
		if unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono) == nil && unix.ClockGettime(unix.CLOCK_BOOTTIME, &bt) == nil {
			c.wallOff = now.UnixNano() - mono.Nano()
			c.bootOff = bt.Nano() - mono.Nano()
			c.refreshed = now
		}
	}
	return c.wallOff, c.bootOff
}

func (c *clockOffsets) wall(monoNS uint64) time.Time {
	w, _ := c.offsets()
	return time.Unix(0, int64(monoNS)+w)
}

func (c *clockOffsets) boot(monoNS uint64) uint64 {
	if monoNS == 0 {
		return 0
	}
	_, b := c.offsets()
	return uint64(int64(monoNS) + b)
}

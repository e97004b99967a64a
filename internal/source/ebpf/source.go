// Package ebpf is vigil's primary event source: BPF programs on scheduler
// tracepoints (exec, fork, exit) and, optionally, syscall tracepoints (file
// and privilege events) feed one ring buffer that this package reads and
// decodes into events. Network programs (package network) share the ring.
//
// Everything an exec event carries (executable path, argv, cwd, cgroup,
// drift flags) is read from the kernel at the event, so short-lived
// processes are complete; nothing is read from /proc.
package ebpf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cebpf "github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/vigil-sec/vigil/internal/bpf"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/source/ebpf/network"
)

// Config configures the eBPF source. The zero value of each field means its
// default.
type Config struct {
	RingBytes    int           // ring buffer size; default 4 MiB; a power of two ≥ 4096
	ArgvMax      int           // argv bytes captured per exec; default and maximum 4096
	WakeupBytes  int           // wake the reader once this much is pending; default 256 KiB
	ReadDeadline time.Duration // reader poll interval; default 100ms
	// FileEvents attaches the file/privilege syscall tracepoints. They put
	// every syscall on the machine on the tracing slow path (measured on a
	// 2-core VM, kernel 6.18: getppid 185 -> 283 ns, i.e. 0.65x throughput;
	// BenchmarkGetppid), so they can be turned off.
	FileEvents    bool
	NetworkEvents bool // attach the network programs (package network)
	// RepeatWindow folds repeated connections: a process's TCP or UDP
	// connect to the destination (address and port) it reached less than
	// RepeatWindow ago, or an accept from a peer address already seen on
	// that port in the window, is counted in the kernel rather than sent;
	// the next one reported carries the count (event.Network.Repeats).
	// Default 1s; negative reports every connection; at most an hour.
	RepeatWindow time.Duration
	// SensitivePrefixes are the path prefixes whose read-only opens are
	// reported (others only when opened for write/create/truncate).
	// nil means DefaultSensitivePrefixes; each must be at most 256 bytes.
	SensitivePrefixes []string
	// CgroupSubsys is the cgroup v1 controller index (row of /proc/cgroups)
	// processes are attributed by on hybrid hosts; -1 means cgroup2.
	CgroupSubsys int
	Cgroup2Path  string // cgroup2 mount, for the network cgroup hooks
	Logger       *slog.Logger
}

// DefaultSensitivePrefixes are reported when read: credentials, secrets and
// cluster/node keys. They are byte prefixes ("/etc/sudoers" also matches
// "/etc/sudoers.d/x"). Home directories are not listed (per-user paths such
// as ~/.ssh cannot be expressed as one prefix; add "/home/<user>/.ssh/" as
// needed) nor /proc/<pid>/environ (paths are per pid).
var DefaultSensitivePrefixes = []string{
	"/etc/shadow",
	"/etc/gshadow",
	"/etc/sudoers",
	"/etc/kubernetes/",
	"/etc/ssh/ssh_host_",
	"/var/lib/kubelet/kubeconfig",
	"/var/lib/kubelet/pki/",
	"/var/run/secrets/kubernetes.io/",
	"/run/secrets/kubernetes.io/",
	"/root/.ssh/",
	"/root/.kube/",
	"/root/.aws/",
	"/root/.docker/config.json",
}

// Stats are the source's counters since it started.
type Stats struct {
	KernelSeen    uint64 // records the BPF programs tried to send
	KernelDropped uint64 // of those, lost because the ring was full
	Delivered     uint64 // records the reader decoded
	RingPending   uint64 // bytes waiting in the ring now
}

// Source is a loaded and attached set of BPF programs plus the ring reader.
type Source struct {
	cfg       Config
	log       *slog.Logger
	proc      bpf.ProcessObjects
	file      *bpf.FileObjects
	links     []link.Link
	net       io.Closer
	rd        *ringbuf.Reader
	missing   []event.Kind
	delivered atomic.Uint64
	dec       decoder
	// openatFromRegs: openat is observed by exit_openat alone (see
	// fileSyscalls).
	openatFromRegs bool
	netDec         network.Decoder
	// events recycles events handed back with Recycle.
	events    sync.Pool
	closeOnce sync.Once
	closeErr  error
}

const maxArgv = 4096

// DefaultRepeatWindow is Config.RepeatWindow's default.
const DefaultRepeatWindow = time.Second

func (c *Config) defaults() error {
	if c.RingBytes == 0 {
		c.RingBytes = 4 << 20
	}
	if c.RingBytes < 4096 || c.RingBytes&(c.RingBytes-1) != 0 {
		return fmt.Errorf("ebpf source: RingBytes %d must be a power of two of at least 4096", c.RingBytes)
	}
	if c.ArgvMax <= 0 || c.ArgvMax > maxArgv {
		c.ArgvMax = maxArgv
	}
	if c.WakeupBytes <= 0 {
		c.WakeupBytes = 256 << 10
	}
	if c.ReadDeadline <= 0 {
		c.ReadDeadline = 100 * time.Millisecond
	}
	switch {
	case c.RepeatWindow == 0:
		c.RepeatWindow = DefaultRepeatWindow
	case c.RepeatWindow > time.Hour:
		return fmt.Errorf("ebpf source: network repeat window %v is longer than an hour; use at most 1h, or 0 to report every connection", c.RepeatWindow)
	case c.RepeatWindow > 0 && c.RepeatWindow < time.Millisecond:
		return fmt.Errorf("ebpf source: network repeat window %v is shorter than a millisecond; use at least 1ms, or 0 to report every connection", c.RepeatWindow)
	}
	if c.SensitivePrefixes == nil {
		c.SensitivePrefixes = DefaultSensitivePrefixes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// New loads and attaches the programs. On error nothing stays loaded; the
// error names what to do about it.
func New(cfg Config) (*Source, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if err := Check(); err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg, log: cfg.Logger, dec: decoder{cgroups: newCgroupCache(4096)}}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()

	spec, err := bpf.LoadProcess()
	if err != nil {
		return nil, fmt.Errorf("ebpf source: parsing the embedded process object: %w", err)
	}
	spec.Maps["events"].MaxEntries = uint32(cfg.RingBytes)
	if err := spec.LoadAndAssign(&s.proc, nil); err != nil {
		return nil, loadError("process programs", err)
	}
	shared := bpf.SharedMaps{Events: s.proc.Events, Drops: s.proc.Drops, Config: s.proc.VigilCfg}

	// Configuration first: the programs read it from their first event.
	bc := bpf.Config{
		SelfTgid:     uint32(os.Getpid()),
		CgroupSubsys: int32(cfg.CgroupSubsys),
		WakeupBytes:  uint32(cfg.WakeupBytes),
		ArgvMax:      uint32(cfg.ArgvMax),
	}
	if cfg.RepeatWindow > 0 {
		bc.RepeatMS = uint32(cfg.RepeatWindow / time.Millisecond)
	}
	if _, ok := prefixTops(cfg.SensitivePrefixes); ok {
		bc.TopFilter = 1
	}
	if err := shared.Config.Put(uint32(0), bc); err != nil {
		return nil, fmt.Errorf("ebpf source: writing the BPF configuration: %w", err)
	}
	boot, err := bootWallNS()
	if err != nil {
		return nil, err
	}
	s.dec.bootWallNS = boot

	// Open the reader before attaching so no record waits without one.
	if s.rd, err = ringbuf.NewReader(shared.Events); err != nil {
		return nil, fmt.Errorf("ebpf source: opening the ring buffer reader: %w", err)
	}

	if cfg.FileEvents {
		if err := s.attachFile(shared); err != nil {
			return nil, err
		}
	} else {
		s.missing = append(s.missing, fileKindsList...)
	}

	for _, p := range []struct {
		name string
		prog *cebpf.Program
	}{{"sched_process_exec", s.proc.VigilExec}, {"sched_process_fork", s.proc.VigilFork}, {"sched_process_exit", s.proc.VigilExit}} {
		l, err := link.AttachTracing(link.TracingOptions{Program: p.prog})
		if err != nil {
			return nil, loadError("attaching tp_btf/"+p.name, err)
		}
		s.links = append(s.links, l)
	}

	if cfg.NetworkEvents {
		c, err := network.Attach(shared, cfg.Cgroup2Path, s.log)
		if err != nil {
			// Process and file events stay useful without network events:
			// report the gap (Missing, health events) instead of failing.
			s.log.Error("ebpf source: network events unavailable", "err", err)
			s.missing = append(s.missing, networkKinds...)
		} else {
			s.net = c
		}
	} else {
		s.missing = append(s.missing, networkKinds...)
	}
	ok = true
	return s, nil
}

var networkKinds = []event.Kind{event.KindConnect, event.KindBind, event.KindListen, event.KindAccept, event.KindDNS}

var fileKindsList = []event.Kind{
	event.KindOpen, event.KindChmod, event.KindUnlink, event.KindRename, event.KindMemfd,
	event.KindPtrace, event.KindModule, event.KindSetns, event.KindUnshare, event.KindMount,
}

type fileSyscall struct {
	name string
	kind event.Kind
	prog *cebpf.Program // sys_enter program; nil: none (exit reads the arguments itself)
	exit *cebpf.Program // sys_exit program; nil: exit_file (reads what prog stashed)
}

// fileSyscalls pairs each syscall with its event kind and sys_enter
// program. Syscalls a given architecture or kernel lacks (open, creat,
// chmod, ... on arm64; the module syscalls without CONFIG_MODULES) are
// skipped; a kind none of whose syscalls exist is reported missing.
//
// openat, the most frequent of them, has no sys_enter program on amd64
// kernels with bpf_task_pt_regs (Linux >= 5.15): exit_openat reads its
// arguments from the saved user registers at exit (see c/file.bpf.c),
// which saves a hash-map update, lookup and delete per open. Elsewhere
// openat keeps the enter/exit pair.
func (s *Source) fileSyscalls() []fileSyscall {
	f := s.file
	openat := fileSyscall{"openat", event.KindOpen, f.EnterOpenat, nil}
	if s.openatFromRegs {
		openat = fileSyscall{"openat", event.KindOpen, nil, f.ExitOpenat}
	}
	return []fileSyscall{
		{"open", event.KindOpen, f.EnterOpen, nil}, {"creat", event.KindOpen, f.EnterCreat, nil},
		openat, {"openat2", event.KindOpen, f.EnterOpenat2, nil},
		{"chmod", event.KindChmod, f.EnterChmod, nil}, {"fchmod", event.KindChmod, f.EnterFchmod, nil},
		{"fchmodat", event.KindChmod, f.EnterFchmodat, nil}, {"fchmodat2", event.KindChmod, f.EnterFchmodat2, nil},
		{"unlink", event.KindUnlink, f.EnterUnlink, nil}, {"unlinkat", event.KindUnlink, f.EnterUnlinkat, nil},
		{"rename", event.KindRename, f.EnterRename, nil}, {"renameat", event.KindRename, f.EnterRenameat, nil},
		{"renameat2", event.KindRename, f.EnterRenameat2, nil},
		{"memfd_create", event.KindMemfd, f.EnterMemfdCreate, nil}, {"ptrace", event.KindPtrace, f.EnterPtrace, nil},
		{"init_module", event.KindModule, f.EnterInitModule, nil}, {"finit_module", event.KindModule, f.EnterFinitModule, nil},
		{"setns", event.KindSetns, f.EnterSetns, nil}, {"unshare", event.KindUnshare, f.EnterUnshare, nil},
		{"mount", event.KindMount, f.EnterMount, nil},
	}
}

func (s *Source) attachFile(shared bpf.SharedMaps) error {
	spec, err := bpf.LoadFile()
	if err != nil {
		return fmt.Errorf("ebpf source: parsing the embedded file object: %w", err)
	}
	s.openatFromRegs = runtime.GOARCH == "amd64" && features.HaveProgramHelper(cebpf.TracePoint, asm.FnTaskPtRegs) == nil
	if !s.openatFromRegs {
		// exit_openat would not load (no bpf_task_pt_regs) and is not
		// attached: load a stub in its place.
		spec.Programs[bpf.FileProgExitOpenat].Instructions = asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
	}
	s.file = new(bpf.FileObjects)
	if err := spec.LoadAndAssign(s.file, shared.Options(spec)); err != nil {
		s.file = nil
		return loadError("file/privilege programs", err)
	}
	for _, p := range s.cfg.SensitivePrefixes {
		if err := putPrefix(s.file.Sensitive, p); err != nil {
			return err
		}
	}
	if tops, ok := prefixTops(s.cfg.SensitivePrefixes); ok {
		for _, t := range tops {
			var key [topLen]byte
			copy(key[:], t)
			if err := s.file.SensitiveTop.Put(key, uint8(1)); err != nil {
				return fmt.Errorf("ebpf source: adding the first component %q of the sensitive prefixes: %w", t, err)
			}
		}
	}
	// Exit programs first, so no pending entry is left without its reader.
	attached := make(map[event.Kind]bool)
	var kinds []event.Kind
	for _, sc := range s.fileSyscalls() {
		if !slices.Contains(kinds, sc.kind) {
			kinds = append(kinds, sc.kind)
		}
		type tracepoint struct {
			name string
			prog *cebpf.Program
		}
		tps := []tracepoint{{"sys_exit_" + sc.name, s.file.ExitFile}}
		if sc.exit != nil {
			tps[0].prog = sc.exit
		}
		if sc.prog != nil {
			tps = append(tps, tracepoint{"sys_enter_" + sc.name, sc.prog})
		}
		for i, tp := range tps {
			l, err := link.Tracepoint("syscalls", tp.name, tp.prog, nil)
			if errors.Is(err, os.ErrNotExist) {
				s.log.Debug("ebpf source: syscall tracepoint absent on this kernel/architecture", "tracepoint", tp.name)
				break
			}
			if err != nil {
				return loadError("attaching tracepoint syscalls/"+tp.name, err)
			}
			s.links = append(s.links, l)
			if i == len(tps)-1 {
				attached[sc.kind] = true
			}
		}
	}
	for _, k := range kinds {
		if !attached[k] {
			s.log.Info("ebpf source: no syscall tracepoint for these events on this kernel", "kind", k)
			s.missing = append(s.missing, k)
		}
	}
	return nil
}

// topLen is the size of the BPF sensitive_top key (TOP_LEN in
// c/file.bpf.c): a first component of at most topLen-1 bytes plus a NUL.
const topLen = 32

// prefixTops returns the distinct first path components of the sensitive
// prefixes ("etc" for "/etc/shadow"), which the BPF side uses to drop
// read-only opens elsewhere before rendering their path. ok is false when
// that shortcut would miss a match: a prefix that is relative, ends inside
// its first component ("/etc" also matches "/etcfoo"), or whose first
// component does not fit the key; then every read-only open is rendered
// and checked against the prefixes in full.
func prefixTops(prefixes []string) (tops []string, ok bool) {
	for _, p := range prefixes {
		if len(p) < 2 || p[0] != '/' {
			return nil, false
		}
		end := strings.IndexByte(p[1:], '/')
		if end <= 0 || end > topLen-1 {
			return nil, false
		}
		if t := p[1 : 1+end]; !slices.Contains(tops, t) {
			tops = append(tops, t)
		}
	}
	return tops, true
}

// putPrefix adds one sensitive prefix to the LPM trie.
func putPrefix(m *cebpf.Map, prefix string) error {
	var key bpf.FileLpmKey
	if prefix == "" || len(prefix) > len(key.Data) {
		return fmt.Errorf("ebpf source: sensitive prefix %q must be 1 to %d bytes", prefix, len(key.Data))
	}
	key.Prefixlen = uint32(8 * len(prefix))
	copy(key.Data[:], prefix)
	if err := m.Put(&key, uint8(1)); err != nil {
		return fmt.Errorf("ebpf source: adding sensitive prefix %q: %w", prefix, err)
	}
	return nil
}

// bootWallNS returns the wall clock at boot (now - CLOCK_BOOTTIME), the
// offset that turns bpf_ktime_get_boot_ns() into wall time.
func bootWallNS() (int64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0, fmt.Errorf("ebpf source: reading CLOCK_BOOTTIME: %w", err)
	}
	return time.Now().UnixNano() - ts.Nano(), nil
}

// Run reads and decodes records, calling emit for each event, until ctx is
// done (it returns nil then) or the reader fails. emit owns the event.
func (s *Source) Run(ctx context.Context, emit func(*event.Event)) error {
	var rec ringbuf.Record
	var h bpf.RecHdr
	// The deadline is set once per drain, not per record: the reader
	// returns what the ring holds even past it (records submitted without
	// a wake-up are read that way) and reports the deadline once it is
	// empty, which is when ctx is looked at again and a new one is set.
	armed := false
	for {
		if ctx.Err() != nil {
			return nil
		}
		if !armed {
			s.rd.SetDeadline(time.Now().Add(s.cfg.ReadDeadline))
			armed = true
		}
		err := s.rd.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			armed = false
			continue
		}
		if errors.Is(err, ringbuf.ErrClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("ebpf source: reading the ring buffer: %w", err)
		}
		ev, err := s.decodeRecord(rec.RawSample, &h)
		if err != nil {
			s.log.Warn("ebpf source: undecodable record", "err", err)
			continue
		}
		s.delivered.Add(1)
		if ev != nil {
			emit(ev)
		}
	}
}

func (s *Source) decodeRecord(raw []byte, h *bpf.RecHdr) (*event.Event, error) {
	if err := decodeHdr(raw, h); err != nil {
		return nil, err
	}
	ev, _ := s.events.Get().(*event.Event)
	if ev == nil {
		ev = new(event.Event)
	}
	if h.Type >= bpf.RecConnect && h.Type <= bpf.RecDNS {
		ev.Time = s.dec.wallTime(h.TS)
		ev.Source = "ebpf"
		fillProcess(h, &ev.Process)
		if err := s.netDec.Decode(h, raw[:h.Size], ev); err != nil {
			return nil, err
		}
		s.dec.fillCgroup(ev)
		return ev, nil
	}
	if err := s.dec.decode(h, raw, ev); err != nil {
		return nil, err
	}
	return ev, nil
}

// Recycle hands an event emitted by Run back for reuse once the caller and
// everything it passed the event to are done with it (nothing may keep the
// pointer; values read from it stay valid). Optional: events not recycled
// are simply garbage collected.
func (s *Source) Recycle(ev *event.Event) {
	*ev = event.Event{}
	s.events.Put(ev)
}

// Stats returns the counters. KernelSeen - Delivered - KernelDropped is the
// number of records still in the ring (or being decoded).
func (s *Source) Stats() Stats {
	st := Stats{Delivered: s.delivered.Load()}
	if s.proc.Drops != nil {
		st.KernelDropped = sumSlot(s.proc.Drops, bpf.SlotDropRingbuf)
		st.KernelSeen = sumSlot(s.proc.Drops, bpf.SlotSeen)
	}
	if s.rd != nil {
		st.RingPending = uint64(s.rd.AvailableBytes())
	}
	return st
}

func sumSlot(m *cebpf.Map, slot uint32) uint64 {
	var per []uint64
	if err := m.Lookup(slot, &per); err != nil {
		return 0
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n
}

// Missing lists the event kinds this source cannot observe as configured.
func (s *Source) Missing() []event.Kind { return append([]event.Kind(nil), s.missing...) }

// Close detaches every program and frees every kernel object. Run returns
// once Close is called.
func (s *Source) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		for i := len(s.links) - 1; i >= 0; i-- {
			errs = append(errs, s.links[i].Close())
		}
		if s.net != nil {
			errs = append(errs, s.net.Close())
		}
		if s.rd != nil {
			errs = append(errs, s.rd.Close())
		}
		if s.file != nil {
			errs = append(errs, s.file.Close())
		}
		errs = append(errs, s.proc.Close())
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

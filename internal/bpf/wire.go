// Package bpf holds vigil's BPF programs (c/*.bpf.c, compiled by bpf2go;
// the generated Go and .o files are committed so `go build` needs no
// clang) and the Go mirror of their wire format.
//
// Regenerate with `go generate ./internal/bpf` (needs clang-14, llvm-14,
// libbpf-dev). CI checks that the committed output is up to date.
package bpf

import "github.com/cilium/ebpf"

// Record types; mirror enum vigil_rec_type in c/common.h.
const (
	RecExec    = 1
	RecFork    = 2
	RecExit    = 3
	RecConnect = 10
	RecBind    = 11
	RecListen  = 12
	RecAccept  = 13
	RecDNS     = 14
	RecOpen    = 20
	RecChmod   = 21
	RecUnlink  = 22
	RecRename  = 23
	RecMemfd   = 24
	RecPtrace  = 25
	RecModule  = 26
	RecSetns   = 27
	RecUnshare = 28
	RecMount   = 29
)

// RecHdr mirrors struct rec_hdr in c/common.h byte for byte
// (little-endian, 88 bytes). Decode it with binary.Decode or by offsets.
type RecHdr struct {
	Type      uint32
	Size      uint32
	TS        uint64 // bpf_ktime_get_boot_ns()
	PID       uint32 // tgid
	TID       uint32
	StartTime uint64 // group leader start_boottime, ns
	PPID      uint32
	UID       uint32
	GID       uint32
	EUID      uint32
	MntNS     uint32
	PidNS     uint32
	NetNS     uint32
	Pad       uint32
	CgroupID  uint64
	Comm      [16]byte
}

// RecHdrSize is sizeof(struct rec_hdr).
const RecHdrSize = 88

// Drop-counter slots; mirror the enum in c/common.h.
const (
	SlotDropRingbuf = 0
	SlotSeen        = 1
)

// Config mirrors struct vigil_config in c/common.h (the single element of
// the "vigil_cfg" array map).
type Config struct {
	SelfTgid     uint32
	CgroupSubsys int32 // v1 controller index (enum cgroup_subsys_id), -1 = cgroup2
	WakeupBytes  uint32
	ArgvMax      uint32
	// TopFilter is 1 when every sensitive prefix's first component is
	// whole (in the file object's "sensitive_top" map), so read-only
	// opens elsewhere are dropped before their path is rendered.
	TopFilter uint32
	// RepeatMS is the network repeat window in milliseconds (0: every
	// connection is reported); see repeat_key in c/net.bpf.c.
	RepeatMS uint32
}

// SharedMaps are created once (by the first object loaded) and handed to
// every other BPF object through MapReplacements, so the whole sensor has
// one ring buffer, one drop counter and one configuration.
type SharedMaps struct {
	Events *ebpf.Map // "events"
	Drops  *ebpf.Map // "drops"
	Config *ebpf.Map // "vigil_cfg"
}

// Replacements returns the MapReplacements for loading another object
// against the shared maps.
func (m SharedMaps) Replacements() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{"events": m.Events, "drops": m.Drops, "vigil_cfg": m.Config}
}

// Options returns CollectionOptions that load spec against the shared
// maps. The spec's declarations of those maps are adjusted to the maps as
// created (the ring buffer's size is chosen at run time, e.g. --ring-size),
// which cilium/ebpf requires of a replacement.
func (m SharedMaps) Options(spec *ebpf.CollectionSpec) *ebpf.CollectionOptions {
	repl := m.Replacements()
	for name, mp := range repl {
		if ms, ok := spec.Maps[name]; ok {
			ms.MaxEntries = mp.MaxEntries()
		} else {
			delete(repl, name)
		}
	}
	return &ebpf.CollectionOptions{MapReplacements: repl}
}

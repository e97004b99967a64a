package ebpf

import (
	"testing"

	"github.com/vigil-sec/vigil/internal/bpf"
	"github.com/vigil-sec/vigil/internal/event"
)

// The decoder reads what the kernel wrote into shared memory: whatever the
// bytes, it returns an event or an error, never panics, and never reads
// past the record.
func FuzzDecodeRecord(f *testing.F) {
	var x bpf.ProcessExecRec
	x.Hdr.Type, x.Hdr.Pid = bpf.RecExec, 42
	exe, argv, cwd, cg := "/usr/bin/curl", "curl\x00-s\x00", "/", "/kubepods/podx/abc"
	n := putData(x.Data[:], exe, argv, cwd, cg)
	x.ExeLen, x.ArgvLen, x.CwdLen, x.CgroupLen = uint16(len(exe)), uint16(len(argv)), uint16(len(cwd)), uint16(len(cg))
	x.Hdr.Size = uint32(execFixedSize + n)
	f.Add(encode(f, &x, execFixedSize+n))
	var e bpf.ProcessExitRec
	e.Hdr.Type, e.Hdr.Size, e.ExitCode = bpf.RecExit, exitRecSize, 3<<8
	f.Add(encode(f, &e, exitRecSize))
	f.Add(encode(f, &e, bpf.RecHdrSize)) // a header whose body is missing
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, raw []byte) {
		var h bpf.RecHdr
		if decodeHdr(raw, &h) != nil {
			return
		}
		d := decoder{cgroups: newCgroupCache(8)}
		var ev event.Event
		if err := d.decode(&h, raw, &ev); err == nil && ev.Kind == "" {
			t.Fatalf("record type %d decoded without an event kind", h.Type)
		}
	})
}

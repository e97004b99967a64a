package ebpf

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"
	"unsafe"

	"github.com/vigil-sec/vigil/internal/bpf"
	"github.com/vigil-sec/vigil/internal/event"
)

func TestRecordLayoutsMatchTheCStructs(t *testing.T) {
	var exec bpf.ProcessExecRec
	var file bpf.FileFileRec
	for _, tc := range []struct {
		name      string
		got, want uintptr
	}{
		{"rec_hdr", bpf.RecHdrSize, unsafe.Sizeof(exec.Hdr)},
		{"exec_rec fixed part", execFixedSize, unsafe.Offsetof(exec.Data)},
		{"fork_rec", forkRecSize, unsafe.Sizeof(bpf.ProcessForkRec{})},
		{"exit_rec", exitRecSize, unsafe.Sizeof(bpf.ProcessExitRec{})},
		{"file_rec fixed part", fileFixedSize, unsafe.Offsetof(file.Data)},
		{"RecHdr mirror", bpf.RecHdrSize, unsafe.Sizeof(bpf.RecHdr{})},
	} {
		t.Run(tc.name+" size agrees with the BPF object", func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("Go decoder uses %d bytes, C struct has %d", tc.got, tc.want)
			}
		})
	}
}

func encode(t testing.TB, v any, size int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.LittleEndian, v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()[:size]
}

func putData(dst []int8, parts ...string) int {
	n := 0
	for _, p := range parts {
		for i := 0; i < len(p); i++ {
			dst[n] = int8(p[i])
			n++
		}
	}
	return n
}

func TestDecodeExecRecord(t *testing.T) {
	var r bpf.ProcessExecRec
	r.Hdr.Type = bpf.RecExec
	r.Hdr.Pid, r.Hdr.Tid, r.Hdr.Ppid, r.Hdr.Uid, r.Hdr.CgroupId = 42, 42, 1, 1000, 77
	r.Hdr.Ts = 5_000_000_000
	copy8(r.Hdr.Comm[:], "curl")
	exe, argv, cwd, cg := "/usr/bin/curl", "curl\x00-s\x00http://x\x00", "/home/u", "/kubepods/podx/abc"
	n := putData(r.Data[:], exe, argv, cwd, cg)
	r.ExeLen, r.ArgvLen, r.CwdLen, r.CgroupLen = uint16(len(exe)), uint16(len(argv)), uint16(len(cwd)), uint16(len(cg))
	r.ExeIno, r.ExeDev = 99, 8<<20|1 // kernel dev_t 8:1
	r.Flags = execUpper | execArgvTrunc
	size := execFixedSize + n
	r.Hdr.Size = uint32(size)
	raw := encode(t, &r, size)

	d := decoder{bootWallNS: 1_000_000_000_000_000_000, cgroups: newCgroupCache(8)}
	var h bpf.RecHdr
	if err := decodeHdr(raw, &h); err != nil {
		t.Fatal(err)
	}
	var ev event.Event
	if err := d.decode(&h, raw, &ev); err != nil {
		t.Fatal(err)
	}
	p := ev.Process
	if ev.Kind != event.KindExec || p.Exe != exe || p.Cwd != cwd || p.Cgroup != cg || p.Comm != "curl" ||
		!reflect.DeepEqual(p.Args, []string{"curl", "-s", "http://x"}) || p.PID != 42 || p.TID != 0 ||
		p.UID != 1000 || p.ExeInode != 99 || p.ExeDev != 0x801 || !p.ExeUpperLayer || !p.ArgsTruncated || p.ExeMemfd {
		t.Errorf("decoded %+v", p)
	}
	if got := ev.Time.UnixNano(); got != 1_000_000_005_000_000_000 {
		t.Errorf("time = %d, want boot offset + ts", got)
	}

	t.Run("later events of the same cgroup get the learned path", func(t *testing.T) {
		var x bpf.ProcessExitRec
		x.Hdr.Type, x.Hdr.Size, x.Hdr.CgroupId, x.ExitCode = bpf.RecExit, exitRecSize, 77, 3<<8
		raw := encode(t, &x, exitRecSize)
		var h bpf.RecHdr
		var ev event.Event
		if err := decodeHdr(raw, &h); err != nil {
			t.Fatal(err)
		}
		if err := d.decode(&h, raw, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Process.Cgroup != cg || ev.Exit.Code != 3 {
			t.Errorf("exit event cgroup %q exit %+v", ev.Process.Cgroup, ev.Exit)
		}
	})
}

func copy8(dst []int8, s string) {
	for i := 0; i < len(s) && i < len(dst); i++ {
		dst[i] = int8(s[i])
	}
}

func TestDecodeFileRecords(t *testing.T) {
	tests := []struct {
		name  string
		typ   uint32
		sc    uint16
		flags uint64
		arg   uint64
		strs  []string
		check func(t *testing.T, ev *event.Event)
	}{
		{"open for create is a write with its mode", bpf.RecOpen, 3, 0o1101, 0o644, []string{"/tmp/./x", "", ""}, func(t *testing.T, ev *event.Event) {
			if f := ev.File; ev.Kind != event.KindOpen || f.Path != "/tmp/x" || !f.Create || !f.Write || !f.Trunc || f.Mode != 0o644 {
				t.Errorf("%+v", f)
			}
		}},
		{"rename carries both paths", bpf.RecRename, 13, 1, 0, []string{"/a", "/b/../c", ""}, func(t *testing.T, ev *event.Event) {
			if ev.File.Path != "/a" || ev.File.NewPath != "/c" {
				t.Errorf("%+v", ev.File)
			}
		}},
		{"mount carries source, target and fstype", bpf.RecMount, 20, 0, 0, []string{"overlay", "/mnt", "overlay"}, func(t *testing.T, ev *event.Event) {
			if s := ev.Syscall; s.Name != "mount" || s.Source != "overlay" || s.Target != "/mnt" || s.FSType != "overlay" {
				t.Errorf("%+v", s)
			}
		}},
		{"unshare names the new namespaces", bpf.RecUnshare, 19, 0x10020000, 0, []string{"", "", ""}, func(t *testing.T, ev *event.Event) {
			if ev.Syscall.Namespace != "mnt,user" {
				t.Errorf("%+v", ev.Syscall)
			}
		}},
		{"ptrace carries request and target", bpf.RecPtrace, 15, 0, 16, []string{"", "", ""}, func(t *testing.T, ev *event.Event) {
			if ev.Syscall.Request != 16 || ev.Syscall.TargetPID != 1234 || ev.Syscall.Result != -1 {
				t.Errorf("%+v", ev.Syscall)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r bpf.FileFileRec
			r.Hdr.Type = tc.typ
			r.Sc, r.Flags, r.Arg, r.TargetPid, r.Result = tc.sc, tc.flags, tc.arg, 1234, -1
			if tc.typ != bpf.RecPtrace {
				r.Result = 0
			}
			n := putData(r.Data[:], tc.strs...)
			r.Len1, r.Len2, r.Len3 = uint16(len(tc.strs[0])), uint16(len(tc.strs[1])), uint16(len(tc.strs[2]))
			size := fileFixedSize + n
			r.Hdr.Size = uint32(size)
			raw := encode(t, &r, size)
			var h bpf.RecHdr
			var ev event.Event
			if err := decodeHdr(raw, &h); err != nil {
				t.Fatal(err)
			}
			if err := (&decoder{}).decode(&h, raw, &ev); err != nil {
				t.Fatal(err)
			}
			tc.check(t, &ev)
		})
	}
}

func TestMalformedRecordsAreRejected(t *testing.T) {
	var r bpf.ProcessExecRec
	r.Hdr.Type, r.ExeLen = bpf.RecExec, 500 // claims more data than present
	r.Hdr.Size = execFixedSize
	raw := encode(t, &r, execFixedSize)
	var h bpf.RecHdr
	if err := decodeHdr(raw, &h); err != nil {
		t.Fatal(err)
	}
	if err := (&decoder{}).decode(&h, raw, &event.Event{}); err == nil {
		t.Error("exec record with overrunning sections decoded without error")
	}
	if err := decodeHdr(raw[:40], &h); err == nil {
		t.Error("truncated header decoded without error")
	}
	raw[4] = 0xff // size larger than the sample
	if err := decodeHdr(raw, &h); err == nil {
		t.Error("record whose declared size exceeds the sample decoded without error")
	}
}

func TestExitStatus(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status uint32
		want   event.Exit
	}{
		{"normal exit carries the code", 3 << 8, event.Exit{Code: 3}},
		{"killed process carries the signal", 9, event.Exit{Signal: 9}},
		{"core dump is flagged", 0x80 | 11, event.Exit{Signal: 11, CoreDump: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := exitStatus(tc.status); *got != tc.want {
				t.Errorf("exitStatus(%#x) = %+v, want %+v", tc.status, *got, tc.want)
			}
		})
	}
}

func TestCgroupCacheStaysBounded(t *testing.T) {
	c := newCgroupCache(4)
	for i := uint64(0); i < 100; i++ {
		c.put(i, "/x")
	}
	if len(c.m) != 4 || c.get(99) != "/x" {
		t.Errorf("cache has %d entries, last=%q", len(c.m), c.get(99))
	}
}

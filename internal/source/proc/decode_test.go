package proc

import (
	"encoding/binary"
	"errors"
	"testing"
)

// rawMsg builds one netlink datagram holding a proc connector message, as
// the kernel lays it out: nlmsghdr, cn_msg, proc_event (40 bytes).
func rawMsg(what, cpu, seq uint32, ts uint64, data ...uint32) []byte {
	ev := make([]byte, procEventWhole)
	binary.LittleEndian.PutUint32(ev[0:], what)
	binary.LittleEndian.PutUint32(ev[4:], cpu)
	binary.LittleEndian.PutUint64(ev[8:], ts)
	for i, d := range data {
		binary.LittleEndian.PutUint32(ev[16+4*i:], d)
	}
	cn := make([]byte, cnMsgLen, cnMsgLen+len(ev))
	binary.LittleEndian.PutUint32(cn[0:], cnIdxProc)
	binary.LittleEndian.PutUint32(cn[4:], cnValProc)
	binary.LittleEndian.PutUint32(cn[8:], seq)
	binary.LittleEndian.PutUint16(cn[16:], uint16(len(ev)))
	cn = append(cn, ev...)
	nl := make([]byte, nlmsgHdrLen, nlmsgHdrLen+len(cn))
	binary.LittleEndian.PutUint32(nl[0:], uint32(nlmsgHdrLen+len(cn)))
	binary.LittleEndian.PutUint16(nl[4:], nlmsgDone)
	return append(nl, cn...)
}

func TestDecodeDatagram(t *testing.T) {
	neg := func(v int32) uint32 { return uint32(v) }
	tests := []struct {
		name string
		in   []byte
		want []procEvent
	}{
		{
			name: "a fork carries parent and child ids",
			in:   rawMsg(procEventFork, 1, 7, 123456789, 100, 100, 200, 200),
			want: []procEvent{{What: procEventFork, CPU: 1, Seq: 7, TimeNS: 123456789, ParentPID: 100, ParentTGID: 100, PID: 200, TGID: 200}},
		},
		{
			name: "a thread fork keeps distinct pid and tgid",
			in:   rawMsg(procEventFork, 0, 1, 5, 100, 100, 201, 100),
			want: []procEvent{{What: procEventFork, Seq: 1, TimeNS: 5, ParentPID: 100, ParentTGID: 100, PID: 201, TGID: 100}},
		},
		{
			name: "an exec carries the process ids",
			in:   rawMsg(procEventExec, 3, 9, 42, 300, 300),
			want: []procEvent{{What: procEventExec, CPU: 3, Seq: 9, TimeNS: 42, PID: 300, TGID: 300}},
		},
		{
			name: "an exit carries the wait status, exit signal and parent",
			in:   rawMsg(procEventExit, 0, 2, 77, 400, 400, 3<<8, 17, 1, 1),
			want: []procEvent{{What: procEventExit, Seq: 2, TimeNS: 77, PID: 400, TGID: 400, ExitCode: 3 << 8, ExitSignal: 17, ParentPID: 1, ParentTGID: 1}},
		},
		{
			name: "a negative pid is decoded as signed",
			in:   rawMsg(procEventExec, 0, 0, 0, neg(-1), neg(-1)),
			want: []procEvent{{What: procEventExec, PID: -1, TGID: -1}},
		},
		{
			name: "two messages in one datagram are both decoded",
			in:   append(rawMsg(procEventExec, 0, 1, 1, 10, 10), rawMsg(procEventExec, 0, 2, 2, 11, 11)...),
			want: []procEvent{{What: procEventExec, Seq: 1, TimeNS: 1, PID: 10, TGID: 10}, {What: procEventExec, Seq: 2, TimeNS: 2, PID: 11, TGID: 11}},
		},
		{
			name: "an acknowledgement carries its error",
			in:   rawMsg(procEventNone, 0, 0, 0, 22),
			want: []procEvent{{What: procEventNone, AckErr: 22}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeDatagram(tt.in)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d events %+v, want %d", len(got), got, len(tt.want))
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("event %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	full := rawMsg(procEventExit, 0, 1, 1, 5, 5, 0, 17)
	withLen := func(b []byte, off int, v uint32) []byte {
		c := append([]byte(nil), b...)
		binary.LittleEndian.PutUint32(c[off:], v)
		return c
	}
	// A fork whose cn_msg.len claims only the proc_event header.
	shortFork := rawMsg(procEventFork, 0, 1, 1, 1, 1, 2, 2)
	binary.LittleEndian.PutUint16(shortFork[nlmsgHdrLen+16:], procEvHdrLen+8)
	tests := []struct {
		name string
		in   []byte
	}{
		{"a datagram shorter than the netlink header", full[:10]},
		{"a netlink length beyond the datagram", withLen(full, 0, uint32(len(full)+8))},
		{"a netlink length below its own header", withLen(full, 0, 4)},
		{"a message shorter than the connector header", withLen(full[:nlmsgHdrLen+12], 0, nlmsgHdrLen+12)},
		{"a connector length beyond the message", withLen(full[:nlmsgHdrLen+cnMsgLen+8], 0, nlmsgHdrLen+cnMsgLen+8)},
		{"a fork without its pids", shortFork},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeDatagram(tt.in)
			if !errors.Is(err, errShort) {
				t.Fatalf("err = %v, want a %q error", err, errShort)
			}
			if len(got) != 0 {
				t.Errorf("decoded %+v from a malformed message", got)
			}
		})
	}
}

func TestDecodeSkipsOtherConnectors(t *testing.T) {
	b := rawMsg(procEventExec, 0, 1, 1, 10, 10)
	binary.LittleEndian.PutUint32(b[nlmsgHdrLen:], 99) // another cb_id.idx
	got, err := decodeDatagram(b)
	if err != nil || len(got) != 0 {
		t.Fatalf("got %+v, %v; want nothing and no error", got, err)
	}
}

func TestDecodeWaitStatus(t *testing.T) {
	tests := []struct {
		name         string
		status       uint32
		code, signal int
		core         bool
	}{
		{"a clean exit has code 0", 0, 0, 0, false},
		{"exit(3) has code 3", 3 << 8, 3, 0, false},
		{"exit(255) has code 255", 255 << 8, 255, 0, false},
		{"SIGKILL has signal 9 and no code", 9, 0, 9, false},
		{"SIGSEGV with a core dump reports the core", 11 | 0x80, 0, 11, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, sig, core := decodeWaitStatus(tt.status)
			if code != tt.code || sig != tt.signal || core != tt.core {
				t.Errorf("decodeWaitStatus(%#x) = %d, %d, %v; want %d, %d, %v", tt.status, code, sig, core, tt.code, tt.signal, tt.core)
			}
		})
	}
}

func TestSubscribeMessageLayout(t *testing.T) {
	b := subscribeMessage(procCnMcastListen, 1, 41)
	if len(b) != 40 {
		t.Fatalf("len = %d, want 40 (nlmsghdr 16 + cn_msg 20 + op 4)", len(b))
	}
	if got := binary.LittleEndian.Uint32(b[0:]); got != 40 {
		t.Errorf("nlmsg_len = %d, want 40", got)
	}
	cn := b[nlmsgHdrLen:]
	if idx, val := binary.LittleEndian.Uint32(cn[0:]), binary.LittleEndian.Uint32(cn[4:]); idx != 1 || val != 1 {
		t.Errorf("cb_id = %d/%d, want CN_IDX_PROC/CN_VAL_PROC (1/1)", idx, val)
	}
	if ack := binary.LittleEndian.Uint32(cn[12:]); ack != 41 {
		t.Errorf("ack = %d, want 41", ack)
	}
	if l := binary.LittleEndian.Uint16(cn[16:]); l != 4 {
		t.Errorf("cn_msg.len = %d, want 4", l)
	}
	if op := binary.LittleEndian.Uint32(cn[20:]); op != procCnMcastListen {
		t.Errorf("op = %d, want PROC_CN_MCAST_LISTEN", op)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(rawMsg(procEventFork, 1, 7, 1, 100, 100, 200, 200))
	f.Add(rawMsg(procEventExec, 0, 1, 1, 300, 300))
	f.Add(rawMsg(procEventExit, 0, 2, 1, 400, 400, 9, 17, 1, 1))
	f.Add(append(rawMsg(procEventExec, 0, 1, 1, 10, 10), rawMsg(procEventNone, 0, 2, 2, 0)...))
	f.Add([]byte{})
	f.Add(make([]byte, nlmsgHdrLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := decodeDatagram(b)
		if err == nil && len(b) > 0 && len(b) < nlmsgHdrLen {
			t.Fatalf("accepted a %d-byte datagram", len(b))
		}
		for _, ev := range evs {
			_, _, _ = decodeWaitStatus(ev.ExitCode)
		}
	})
}

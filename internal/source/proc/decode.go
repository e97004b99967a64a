package proc

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire constants from <linux/netlink.h>, <linux/connector.h> and
// <linux/cn_proc.h>.
const (
	cnIdxProc = 1 // CN_IDX_PROC
	cnValProc = 1 // CN_VAL_PROC

	procCnMcastListen = 1 // PROC_CN_MCAST_LISTEN
	procCnMcastIgnore = 2 // PROC_CN_MCAST_IGNORE

	nlmsgHdrLen    = 16 // sizeof(struct nlmsghdr)
	cnMsgLen       = 20 // sizeof(struct cn_msg) (the kernel BUILD_BUG_ONs this)
	procEvHdrLen   = 16 // what, cpu, timestamp_ns
	procEventWhole = 40 // sizeof(struct proc_event) on current kernels

	nlmsgNoop    = 1 // NLMSG_NOOP
	nlmsgError   = 2 // NLMSG_ERROR
	nlmsgDone    = 3 // NLMSG_DONE (the connector sends every message with this type)
	nlmsgOverrun = 4 // NLMSG_OVERRUN
)

// proc_event.what values.
const (
	procEventNone     = 0x00000000
	procEventFork     = 0x00000001
	procEventExec     = 0x00000002
	procEventUID      = 0x00000004
	procEventGID      = 0x00000040
	procEventSID      = 0x00000080
	procEventPtrace   = 0x00000100
	procEventComm     = 0x00000200
	procEventCoredump = 0x40000000
	procEventExit     = 0x80000000
)

// errShort is wrapped by every "message too short" decoding error.
var errShort = errors.New("message too short")

// procEvent is one decoded proc_event with the cn_msg sequence number it
// travelled under. Only the fields of the event's own type are set.
type procEvent struct {
	What   uint32
	CPU    uint32
	Seq    uint32 // cn_msg.seq: a per-CPU counter, so (CPU, Seq) gaps are lost messages
	Ack    uint32 // cn_msg.ack (acknowledgements: our request's ack + 1)
	TimeNS uint64 // ktime_get_ns(): CLOCK_MONOTONIC

	// fork: the child; exec/exit: the process.
	PID, TGID int
	// fork: the creator (real_parent); exit: the parent, when still alive.
	ParentPID, ParentTGID int

	ExitCode   uint32 // task->exit_code: a wait(2) status
	ExitSignal uint32 // task->exit_signal: what the parent is sent (SIGCHLD), not the cause of death
	AckErr     uint32 // PROC_EVENT_NONE: the subscription result (0 or a positive errno)
}

// minEventData is how many bytes of event_data each type needs.
func minEventData(what uint32) int {
	switch what {
	case procEventNone:
		return 4 // ack.err
	case procEventFork:
		return 16 // parent_pid, parent_tgid, child_pid, child_tgid
	case procEventExec:
		return 8 // process_pid, process_tgid
	case procEventExit:
		return 16 // process_pid, process_tgid, exit_code, exit_signal (+ parent_pid, parent_tgid since 4.17)
	default:
		return 0
	}
}

// decodeDatagram splits one recvfrom(2) result into proc events. Messages
// for other connector ids and netlink no-ops are skipped; a malformed
// message ends decoding with an error (the events before it are returned).
func decodeDatagram(b []byte) ([]procEvent, error) {
	var out []procEvent
	for len(b) > 0 {
		if len(b) < nlmsgHdrLen {
			return out, fmt.Errorf("netlink header: %d bytes, need %d: %w", len(b), nlmsgHdrLen, errShort)
		}
		msgLen := int(binary.LittleEndian.Uint32(b[0:4]))
		typ := binary.LittleEndian.Uint16(b[4:6])
		if msgLen < nlmsgHdrLen || msgLen > len(b) {
			return out, fmt.Errorf("netlink message length %d with %d bytes available: %w", msgLen, len(b), errShort)
		}
		payload := b[nlmsgHdrLen:msgLen]
		switch typ {
		case nlmsgNoop:
		case nlmsgError:
			if len(payload) >= 4 {
				if errno := int32(binary.LittleEndian.Uint32(payload[0:4])); errno != 0 {
					return out, fmt.Errorf("netlink error message: errno %d", -errno)
				}
			}
		case nlmsgOverrun:
			return out, errors.New("netlink overrun message: data was lost")
		default:
			ev, ok, err := decodeCnMsg(payload)
			if err != nil {
				return out, err
			}
			if ok {
				out = append(out, ev)
			}
		}
		// Messages are padded to 4 bytes (NLMSG_ALIGN).
		next := (msgLen + 3) &^ 3
		if next >= len(b) {
			break
		}
		b = b[next:]
	}
	return out, nil
}

// decodeCnMsg decodes a cn_msg carrying a proc_event. ok is false for
// messages of other connectors.
func decodeCnMsg(b []byte) (ev procEvent, ok bool, err error) {
	if len(b) < cnMsgLen {
		return ev, false, fmt.Errorf("connector header: %d bytes, need %d: %w", len(b), cnMsgLen, errShort)
	}
	idx := binary.LittleEndian.Uint32(b[0:4])
	val := binary.LittleEndian.Uint32(b[4:8])
	if idx != cnIdxProc || val != cnValProc {
		return ev, false, nil
	}
	ev.Seq = binary.LittleEndian.Uint32(b[8:12])
	ev.Ack = binary.LittleEndian.Uint32(b[12:16])
	dataLen := int(binary.LittleEndian.Uint16(b[16:18]))
	data := b[cnMsgLen:]
	if dataLen > len(data) {
		return ev, false, fmt.Errorf("connector payload claims %d bytes, %d present: %w", dataLen, len(data), errShort)
	}
	data = data[:dataLen]
	if len(data) < procEvHdrLen {
		return ev, false, fmt.Errorf("proc_event header: %d bytes, need %d: %w", len(data), procEvHdrLen, errShort)
	}
	ev.What = binary.LittleEndian.Uint32(data[0:4])
	ev.CPU = binary.LittleEndian.Uint32(data[4:8])
	ev.TimeNS = binary.LittleEndian.Uint64(data[8:16])
	d := data[procEvHdrLen:]
	if need := minEventData(ev.What); len(d) < need {
		return ev, false, fmt.Errorf("proc_event type %#x: %d data bytes, need %d: %w", ev.What, len(d), need, errShort)
	}
	u32 := func(i int) uint32 { return binary.LittleEndian.Uint32(d[i*4 : i*4+4]) }
	i32 := func(i int) int { return int(int32(u32(i))) }
	switch ev.What {
	case procEventNone:
		ev.AckErr = u32(0)
	case procEventFork:
		ev.ParentPID, ev.ParentTGID = i32(0), i32(1)
		ev.PID, ev.TGID = i32(2), i32(3)
	case procEventExec:
		ev.PID, ev.TGID = i32(0), i32(1)
	case procEventExit:
		ev.PID, ev.TGID = i32(0), i32(1)
		ev.ExitCode, ev.ExitSignal = u32(2), u32(3)
		if len(d) >= 24 {
			ev.ParentPID, ev.ParentTGID = i32(4), i32(5)
		}
	}
	return ev, true, nil
}

// decodeWaitStatus splits a wait(2) status (task->exit_code) into an exit
// code, a terminating signal and whether a core was dumped.
func decodeWaitStatus(status uint32) (code, signal int, core bool) {
	sig := int(status & 0x7f)
	if sig == 0 {
		return int(status>>8) & 0xff, 0, false
	}
	return 0, sig, status&0x80 != 0
}

// subscribeMessage builds the netlink datagram that sends op
// (PROC_CN_MCAST_LISTEN or _IGNORE) to the proc connector. ack is echoed
// back (+1) in the kernel's acknowledgement.
func subscribeMessage(op uint32, seq, ack uint32) []byte {
	const total = nlmsgHdrLen + cnMsgLen + 4
	b := make([]byte, total)
	binary.LittleEndian.PutUint32(b[0:4], total)
	binary.LittleEndian.PutUint16(b[4:6], nlmsgDone)
	binary.LittleEndian.PutUint32(b[8:12], seq)
	// nlmsg_pid 0: the kernel fills in our port id.
	c := b[nlmsgHdrLen:]
	binary.LittleEndian.PutUint32(c[0:4], cnIdxProc)
	binary.LittleEndian.PutUint32(c[4:8], cnValProc)
	binary.LittleEndian.PutUint32(c[8:12], seq)
	binary.LittleEndian.PutUint32(c[12:16], ack)
	binary.LittleEndian.PutUint16(c[16:18], 4)
	binary.LittleEndian.PutUint32(c[cnMsgLen:], op)
	return b
}

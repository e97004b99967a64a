package network

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"syscall"

	"github.com/vigil-sec/vigil/internal/bpf"
	"github.com/vigil-sec/vigil/internal/event"
)

const (
	afInet  = 2
	afInet6 = 10

	protoTCP = 6
	protoUDP = 17

	// errClosedPending is the result reported for a TCP connect whose
	// socket was closed (or failed locally) before the handshake completed.
	errClosedPending = -int(syscall.ECONNABORTED)
)

// netRec mirrors struct net_rec in net.bpf.c after the header.
type netRec struct {
	Family   uint16
	Protocol uint8
	Pad      uint8
	Result   int32
	SAddr    [16]byte
	DAddr    [16]byte
	SPort    uint16
	DPort    uint16
	Repeats  uint32 // connect/accept: like ones counted in the kernel, not sent
}

// netRecSize is sizeof(struct net_rec) - sizeof(struct rec_hdr).
const netRecSize = 48

// dnsQMax mirrors DNS_Q_MAX in net.bpf.c.
const dnsQMax = 260

// dnsRec mirrors struct dns_rec in net.bpf.c after the header.
type dnsRec struct {
	Family uint16
	QLen   uint16
	SPort  uint16
	DPort  uint16
	SAddr  [16]byte
	DAddr  [16]byte
	Q      [dnsQMax]byte
	Pad    [4]byte
}

// dnsRecSize is sizeof(struct dns_rec) - sizeof(struct rec_hdr).
const dnsRecSize = 304

var ne = binary.NativeEndian

// Decoder decodes network records. Its zero value is ready to use; it is
// not safe for concurrent use (one per reader goroutine).
type Decoder struct {
	addrs addrStrings
}

// addrStrings remembers the text of recently seen addresses, so that a
// storm of connections between the same hosts does not format (and
// allocate) the same address strings again and again.
type addrStrings struct {
	slot [256]struct {
		a netip.Addr
		s string
	}
}

func (c *addrStrings) str(a netip.Addr) string {
	b := a.As16()
	h := uint32(2166136261)
	for _, x := range b {
		h = (h ^ uint32(x)) * 16777619
	}
	e := &c.slot[h%uint32(len(c.slot))]
	if e.s == "" || e.a != a {
		e.a, e.s = a, a.String()
	}
	return e.s
}

// unmarshal decodes the body of a net_rec field by field (binary.Decode's
// reflection costs more than the rest of a network event's decoding).
func (r *netRec) unmarshal(b []byte) error {
	if len(b) < netRecSize {
		return io.ErrUnexpectedEOF
	}
	r.Family = ne.Uint16(b[0:])
	r.Protocol = b[2]
	r.Pad = b[3]
	r.Result = int32(ne.Uint32(b[4:]))
	copy(r.SAddr[:], b[8:24])
	copy(r.DAddr[:], b[24:40])
	r.SPort = ne.Uint16(b[40:])
	r.DPort = ne.Uint16(b[42:])
	r.Repeats = ne.Uint32(b[44:])
	return nil
}

func (r *dnsRec) unmarshal(b []byte) error {
	if len(b) < dnsRecSize {
		return io.ErrUnexpectedEOF
	}
	r.Family = ne.Uint16(b[0:])
	r.QLen = ne.Uint16(b[2:])
	r.SPort = ne.Uint16(b[4:])
	r.DPort = ne.Uint16(b[6:])
	copy(r.SAddr[:], b[8:24])
	copy(r.DAddr[:], b[24:40])
	copy(r.Q[:], b[40:40+dnsQMax])
	copy(r.Pad[:], b[40+dnsQMax:dnsRecSize])
	return nil
}

// Decode fills ev (Kind, Network, and process fields from h) from a record of type 10..14.
// rec is the whole record, header included (the body alone, after the
// header, is accepted too). For connect and accept records
// the header describes the process remembered for the socket (the one that
// called connect or listen), not whatever ran when the handshake completed.
func (d *Decoder) Decode(h *bpf.RecHdr, rec []byte, ev *event.Event) error {
	body, err := recordBody(h, rec)
	if err != nil {
		return err
	}
	fillProcess(h, &ev.Process)

	switch h.Type {
	case bpf.RecConnect, bpf.RecBind, bpf.RecListen, bpf.RecAccept:
		var r netRec
		if err := r.unmarshal(body); err != nil {
			return fmt.Errorf("decode network record type %d (%d body bytes, want %d; BPF object and decoder out of sync?): %w", h.Type, len(body), netRecSize, err)
		}
		n, err := d.decodeNet(h.Type, &r)
		if err != nil {
			return err
		}
		ev.Kind = map[uint32]event.Kind{
			bpf.RecConnect: event.KindConnect,
			bpf.RecBind:    event.KindBind,
			bpf.RecListen:  event.KindListen,
			bpf.RecAccept:  event.KindAccept,
		}[h.Type]
		ev.Network = n
		return nil
	case bpf.RecDNS:
		var r dnsRec
		if err := r.unmarshal(body); err != nil {
			return fmt.Errorf("decode DNS record (%d body bytes, want %d; BPF object and decoder out of sync?): %w", len(body), dnsRecSize, err)
		}
		n, err := d.decodeDNS(&r)
		if err != nil {
			return err
		}
		ev.Kind = event.KindDNS
		ev.Network = n
		return nil
	default:
		return fmt.Errorf("decode network record: type %d is not a network record (want %d..%d)", h.Type, bpf.RecConnect, bpf.RecDNS)
	}
}

// recordBody returns the bytes after the header, whether rec holds the
// whole record or only its body.
func recordBody(h *bpf.RecHdr, rec []byte) ([]byte, error) {
	size := int(h.Size)
	switch {
	case size < bpf.RecHdrSize:
		return nil, fmt.Errorf("decode network record: header size %d is smaller than the %d-byte header", size, bpf.RecHdrSize)
	case len(rec) >= size:
		return rec[bpf.RecHdrSize:size], nil
	case len(rec) == size-bpf.RecHdrSize:
		return rec, nil
	}
	return nil, fmt.Errorf("decode network record: got %d bytes for a %d-byte record", len(rec), size)
}

func fillProcess(h *bpf.RecHdr, p *event.Process) {
	p.PID = int(h.PID)
	p.TID = 0
	if h.TID != h.PID {
		p.TID = int(h.TID)
	}
	p.PPID = int(h.PPID)
	p.StartTime = h.StartTime
	p.UID, p.GID, p.EUID = h.UID, h.GID, h.EUID
	p.MntNS, p.PidNS, p.NetNS = h.MntNS, h.PidNS, h.NetNS
	p.CgroupID = h.CgroupID
	comm := h.Comm[:]
	if i := bytes.IndexByte(comm, 0); i >= 0 {
		comm = comm[:i]
	}
	p.Comm = string(comm)
}

// addr converts a wire address of the given family; v4-mapped IPv6
// addresses become IPv4 (an IPv6 socket talking IPv4).
func addr(family uint16, raw [16]byte) (netip.Addr, string) {
	if family == afInet {
		return netip.AddrFrom4([4]byte(raw[:4])), "ipv4"
	}
	a := netip.AddrFrom16(raw)
	if a.Is4In6() {
		return a.Unmap(), "ipv4"
	}
	return a, "ipv6"
}

func familyOK(f uint16) error {
	if f != afInet && f != afInet6 {
		return fmt.Errorf("decode network record: unknown address family %d", f)
	}
	return nil
}

func (d *Decoder) decodeNet(typ uint32, r *netRec) (*event.Network, error) {
	if err := familyOK(r.Family); err != nil {
		return nil, err
	}
	src, fam := addr(r.Family, r.SAddr)
	dst, dfam := addr(r.Family, r.DAddr)
	if !dst.IsUnspecified() {
		// The peer decides the family of a v4-mapped connection.
		fam = dfam
	}
	n := &event.Network{Family: fam, Protocol: protoName(r.Protocol)}
	switch typ {
	case bpf.RecBind, bpf.RecListen:
		n.SrcIP, n.SrcPort = d.addrs.str(src), r.SPort
	default:
		if !(src.IsUnspecified() && r.SPort == 0) {
			n.SrcIP, n.SrcPort = d.addrs.str(src), r.SPort
		}
		n.DstIP, n.DstPort = d.addrs.str(dst), r.DPort
	}
	n.Result = int(r.Result)
	n.ResultOK = r.Result == 0
	n.Repeats = int(r.Repeats)
	n.Error = resultText(n.Result)
	return n, nil
}

func protoName(p uint8) string {
	switch p {
	case protoTCP:
		return "tcp"
	case protoUDP:
		return "udp"
	}
	return strconv.Itoa(int(p))
}

// resultText is the human form of a connect result.
func resultText(res int) string {
	switch {
	case res == 0:
		return ""
	case res == errClosedPending:
		return "closed before the connection completed"
	case res < 0:
		return syscall.Errno(-res).Error()
	}
	return "unexpected result " + strconv.Itoa(res)
}

func (d *Decoder) decodeDNS(r *dnsRec) (*event.Network, error) {
	if err := familyOK(r.Family); err != nil {
		return nil, err
	}
	if int(r.QLen) > len(r.Q) {
		return nil, fmt.Errorf("decode DNS record: question length %d exceeds %d", r.QLen, len(r.Q))
	}
	name, qtype, err := parseQuestion(r.Q[:r.QLen])
	if err != nil {
		return nil, fmt.Errorf("decode DNS record: %w", err)
	}
	src, fam := addr(r.Family, r.SAddr)
	dst, _ := addr(r.Family, r.DAddr)
	return &event.Network{
		Family:   fam,
		Protocol: "udp",
		SrcIP:    d.addrs.str(src),
		SrcPort:  r.SPort,
		DstIP:    d.addrs.str(dst),
		DstPort:  r.DPort,
		ResultOK: true,
		DNSQuery: name,
		DNSType:  qtypeName(qtype),
	}, nil
}

// parseQuestion decodes a DNS question: a wire-format name followed by
// qtype (and qclass, not needed). The name is returned without the trailing
// dot ("." for the root); bytes that are not printable ASCII, and dots or
// backslashes inside a label, are escaped as \DDD so a name cannot forge
// structure in logs.
func parseQuestion(q []byte) (string, uint16, error) {
	var b strings.Builder
	i := 0
	for {
		if i >= len(q) {
			return "", 0, errors.New("question name is truncated")
		}
		l := int(q[i])
		i++
		if l == 0 {
			break
		}
		if l&0xc0 != 0 {
			return "", 0, fmt.Errorf("question name has a compression pointer or reserved label type (0x%02x)", l)
		}
		if i+l > len(q) {
			return "", 0, errors.New("question name label is truncated")
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		for _, c := range q[i : i+l] {
			if c <= 0x20 || c >= 0x7f || c == '.' || c == '\\' {
				fmt.Fprintf(&b, "\\%03d", c)
				continue
			}
			b.WriteByte(c)
		}
		i += l
		if i > 255 {
			return "", 0, errors.New("question name is longer than 255 bytes")
		}
	}
	if i+2 > len(q) {
		return "", 0, errors.New("question type is missing")
	}
	name := b.String()
	if name == "" {
		name = "."
	}
	return name, binary.BigEndian.Uint16(q[i:]), nil
}

var qtypes = map[uint16]string{
	1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 13: "HINFO", 15: "MX", 16: "TXT",
	28: "AAAA", 33: "SRV", 35: "NAPTR", 43: "DS", 48: "DNSKEY", 64: "SVCB", 65: "HTTPS",
	99: "SPF", 252: "AXFR", 255: "ANY", 257: "CAA",
}

// qtypeName names a query type, "TYPE<n>" (RFC 3597) when unknown.
func qtypeName(t uint16) string {
	if s, ok := qtypes[t]; ok {
		return s
	}
	return "TYPE" + strconv.Itoa(int(t))
}

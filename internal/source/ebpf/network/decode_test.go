package network

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/bpf"
	"github.com/vigil-sec/vigil/internal/event"
)

func TestGoMirrorsHaveTheWireSizes(t *testing.T) {
	// net.bpf.c asserts the same sizes with _Static_assert.
	for _, tc := range []struct {
		name      string
		got, want int
	}{
		{"rec_hdr", binary.Size(bpf.RecHdr{}), bpf.RecHdrSize},
		{"net_rec body", binary.Size(netRec{}), netRecSize},
		{"dns_rec body", binary.Size(dnsRec{}), dnsRecSize},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: Go mirror is %d bytes, wire format is %d", tc.name, tc.got, tc.want)
		}
	}
}

// record builds a wire record: header then body.
func record(t testing.TB, typ uint32, body any) (*bpf.RecHdr, []byte) {
	t.Helper()
	h := &bpf.RecHdr{Type: typ, PID: 42, TID: 43, PPID: 1, UID: 1000, StartTime: 99, NetNS: 7}
	copy(h.Comm[:], "curl")
	h.Size = uint32(bpf.RecHdrSize + binary.Size(body))
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.NativeEndian, h); err != nil {
		t.Fatal(err)
	}
	if err := binary.Write(&buf, binary.NativeEndian, body); err != nil {
		t.Fatal(err)
	}
	return h, buf.Bytes()
}

func v4(a, b, c, d byte) (r [16]byte) { r[0], r[1], r[2], r[3] = a, b, c, d; return }

func mapped(a, b, c, d byte) [16]byte {
	return [16]byte{10: 0xff, 11: 0xff, 12: a, 13: b, 14: c, 15: d}
}

func TestDecodeNetworkRecords(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  uint32
		rec  netRec
		kind event.Kind
		want event.Network
	}{
		{
			name: "refused tcp connect carries the errno and its text",
			typ:  bpf.RecConnect,
			rec:  netRec{Family: afInet, Protocol: protoTCP, Result: -111, SAddr: v4(10, 0, 0, 1), DAddr: v4(10, 0, 0, 2), SPort: 40000, DPort: 443},
			kind: event.KindConnect,
			want: event.Network{Family: "ipv4", Protocol: "tcp", SrcIP: "10.0.0.1", SrcPort: 40000, DstIP: "10.0.0.2", DstPort: 443, Result: -111, Error: "connection refused"},
		},
		{
			name: "connect closed while pending says so",
			typ:  bpf.RecConnect,
			rec:  netRec{Family: afInet, Protocol: protoTCP, Result: int32(errClosedPending), DAddr: v4(10, 0, 0, 2), SPort: 40000, DPort: 443},
			kind: event.KindConnect,
			want: event.Network{Family: "ipv4", Protocol: "tcp", SrcIP: "0.0.0.0", SrcPort: 40000, DstIP: "10.0.0.2", DstPort: 443, Result: errClosedPending, Error: "closed before the connection completed"},
		},
		{
			name: "ipv6 socket talking to a v4-mapped peer is reported as ipv4",
			typ:  bpf.RecConnect,
			rec:  netRec{Family: afInet6, Protocol: protoTCP, SAddr: mapped(127, 0, 0, 1), DAddr: mapped(127, 0, 0, 1), SPort: 5000, DPort: 80},
			kind: event.KindConnect,
			want: event.Network{Family: "ipv4", Protocol: "tcp", SrcIP: "127.0.0.1", SrcPort: 5000, DstIP: "127.0.0.1", DstPort: 80, ResultOK: true},
		},
		{
			name: "udp connect before autobind has no source",
			typ:  bpf.RecConnect,
			rec:  netRec{Family: afInet6, Protocol: protoUDP, DAddr: [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}, DPort: 53},
			kind: event.KindConnect,
			want: event.Network{Family: "ipv6", Protocol: "udp", DstIP: "2001:db8::1", DstPort: 53, ResultOK: true},
		},
		{
			name: "bind to the wildcard address keeps it",
			typ:  bpf.RecBind,
			rec:  netRec{Family: afInet6, Protocol: protoUDP, SPort: 5353},
			kind: event.KindBind,
			want: event.Network{Family: "ipv6", Protocol: "udp", SrcIP: "::", SrcPort: 5353, ResultOK: true},
		},
		{
			name: "accept names the peer as destination",
			typ:  bpf.RecAccept,
			rec:  netRec{Family: afInet, Protocol: protoTCP, SAddr: v4(192, 168, 1, 1), DAddr: v4(192, 168, 1, 9), SPort: 22, DPort: 51000},
			kind: event.KindAccept,
			want: event.Network{Family: "ipv4", Protocol: "tcp", SrcIP: "192.168.1.1", SrcPort: 22, DstIP: "192.168.1.9", DstPort: 51000, ResultOK: true},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, raw := record(t, tc.typ, &tc.rec)
			var ev event.Event
			if err := new(Decoder).Decode(h, raw, &ev); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if ev.Kind != tc.kind || ev.Network == nil || *ev.Network != tc.want {
				t.Errorf("Decode = %s %+v\nwant      %s %+v", ev.Kind, ev.Network, tc.kind, tc.want)
			}
			if ev.Process.PID != 42 || ev.Process.TID != 43 || ev.Process.Comm != "curl" || ev.Process.StartTime != 99 || ev.Process.NetNS != 7 {
				t.Errorf("process = %+v; want the header's process", ev.Process)
			}
			// The body alone decodes the same way.
			var ev2 event.Event
			if err := new(Decoder).Decode(h, raw[bpf.RecHdrSize:], &ev2); err != nil || *ev2.Network != *ev.Network {
				t.Errorf("Decode(body only) = %+v, %v; want %+v", ev2.Network, err, ev.Network)
			}
		})
	}
}

func TestDecodeRejectsBadRecords(t *testing.T) {
	h, raw := record(t, bpf.RecConnect, &netRec{Family: afInet, Protocol: protoTCP})
	var ev event.Event
	if err := new(Decoder).Decode(h, raw[:bpf.RecHdrSize+10], &ev); err == nil {
		t.Error("a truncated record decoded without error")
	}
	h2, raw2 := record(t, bpf.RecConnect, &netRec{Family: 1})
	if err := new(Decoder).Decode(h2, raw2, &ev); err == nil || !strings.Contains(err.Error(), "family") {
		t.Errorf("unknown family: err = %v; want an address-family error", err)
	}
	h3, raw3 := record(t, bpf.RecExec, &netRec{Family: afInet})
	if err := new(Decoder).Decode(h3, raw3, &ev); err == nil {
		t.Error("an exec record decoded as a network record")
	}
}

// question builds a question section: wire name, then qtype and qclass IN.
func question(qtype uint16, labels ...string) []byte {
	var q []byte
	for _, l := range labels {
		q = append(q, byte(len(l)))
		q = append(q, l...)
	}
	return append(q, 0, byte(qtype>>8), byte(qtype), 0, 1)
}

func TestParseDNSQuestion(t *testing.T) {
	long := strings.Repeat("a", 63)
	for _, tc := range []struct {
		name     string
		q        []byte
		wantName string
		wantType string
		wantErr  bool
	}{
		{name: "an A query yields the dotted name", q: question(1, "vigil-test", "example"), wantName: "vigil-test.example", wantType: "A"},
		{name: "an AAAA query is named AAAA", q: question(28, "example", "com"), wantName: "example.com", wantType: "AAAA"},
		{name: "an unknown type is named per RFC 3597", q: question(4242, "x"), wantName: "x", wantType: "TYPE4242"},
		{name: "the root name is a dot", q: question(2), wantName: ".", wantType: "NS"},
		{name: "dots and control bytes inside a label are escaped", q: question(16, "a.b", "c\x00d"), wantName: `a\046b.c\000d`, wantType: "TXT"},
		{name: "a 253-character name decodes", q: question(1, long, long, long, strings.Repeat("b", 61)), wantName: strings.Join([]string{long, long, long, strings.Repeat("b", 61)}, "."), wantType: "A"},
		{name: "a name over 255 bytes is rejected", q: question(1, long, long, long, long, "x"), wantErr: true},
		{name: "a truncated label is rejected", q: []byte{5, 'a', 'b'}, wantErr: true},
		{name: "a compression pointer is rejected", q: []byte{0xc0, 12, 0, 1, 0, 1}, wantErr: true},
		{name: "a missing type is rejected", q: []byte{1, 'a', 0, 0}, wantErr: true},
		{name: "an empty question is rejected", q: nil, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name, qtype, err := parseQuestion(tc.q)
			if tc.wantErr {
				if err == nil {
					t.Errorf("parseQuestion = %q %d; want an error", name, qtype)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseQuestion: %v", err)
			}
			if name != tc.wantName || qtypeName(qtype) != tc.wantType {
				t.Errorf("parseQuestion = %q %s; want %q %s", name, qtypeName(qtype), tc.wantName, tc.wantType)
			}
		})
	}
}

func TestDecodeDNSRecord(t *testing.T) {
	q := question(28, "vigil-test", "example")
	r := dnsRec{Family: afInet6, QLen: uint16(len(q)), SPort: 41000, DPort: 53, SAddr: [16]byte{15: 1}, DAddr: [16]byte{15: 1}}
	copy(r.Q[:], q)
	h, raw := record(t, bpf.RecDNS, &r)
	var ev event.Event
	if err := new(Decoder).Decode(h, raw, &ev); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	want := event.Network{Family: "ipv6", Protocol: "udp", SrcIP: "::1", SrcPort: 41000, DstIP: "::1", DstPort: 53, ResultOK: true, DNSQuery: "vigil-test.example", DNSType: "AAAA"}
	if ev.Kind != event.KindDNS || *ev.Network != want {
		t.Errorf("Decode = %s %+v; want dns %+v", ev.Kind, *ev.Network, want)
	}
}

func TestRememberedAddressTextsStayRightWhenSlotsCollide(t *testing.T) {
	var c addrStrings
	for round := 0; round < 2; round++ {
		for i := 0; i < 2000; i++ {
			a := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1})
			if i%3 == 0 {
				a = netip.AddrFrom16([16]byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(i >> 8), byte(i)})
			}
			if got, want := c.str(a), a.String(); got != want {
				t.Fatalf("address text of %v = %q, want %q", a, got, want)
			}
		}
	}
}

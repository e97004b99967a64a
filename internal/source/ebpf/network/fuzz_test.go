package network

import (
	"testing"

	"github.com/vigil-sec/vigil/internal/bpf"
	"github.com/vigil-sec/vigil/internal/event"
)

// Network and DNS records come from the kernel, the DNS question from the
// process that sent it (any bytes at all): decoding never panics.
func FuzzDecodeNetworkRecord(f *testing.F) {
	q := question(1, "vigil-test", "example")
	d := dnsRec{Family: afInet6, QLen: uint16(len(q)), DPort: 53}
	copy(d.Q[:], q)
	_, raw := record(f, bpf.RecDNS, &d)
	f.Add(uint32(bpf.RecDNS), raw[bpf.RecHdrSize:])
	_, raw = record(f, bpf.RecConnect, &netRec{Family: 2, DPort: 443, DAddr: v4(10, 0, 0, 1)})
	f.Add(uint32(bpf.RecConnect), raw[bpf.RecHdrSize:])
	f.Add(uint32(0), []byte{})

	f.Fuzz(func(t *testing.T, typ uint32, body []byte) {
		h := &bpf.RecHdr{Type: typ, Size: uint32(bpf.RecHdrSize + len(body))}
		rec := make([]byte, bpf.RecHdrSize+len(body))
		copy(rec[bpf.RecHdrSize:], body)
		var ev event.Event
		if err := new(Decoder).Decode(h, rec, &ev); err == nil && ev.Network == nil {
			t.Fatalf("record type %d decoded without network details", typ)
		}
	})
}

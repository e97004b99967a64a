package detect

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/vigil-sec/vigil/internal/event"
)

// Threat-intelligence indicator lists. Their items are matched by the
// engine itself, before any rule runs, because matching needs more than a
// set lookup: a listed domain also covers its subdomains, and an item may be
// a CIDR. A match becomes a fact rules read:
//
//	threatIntel.domain  the listed domain a DNS query name is, or is under
//	threatIntel.ip      the listed address or CIDR a connection's destination is in
//
// The lists are ordinary rule lists, so users add indicators with their own
// rule files (or `--threat-intel FILE`, which appends to them).
const (
	ThreatIntelDomainsList = "threat_intel_domains"
	ThreatIntelIPsList     = "threat_intel_ips"

	FactThreatIntelDomain = "threatIntel.domain"
	FactThreatIntelIP     = "threatIntel.ip"
)

// tiMatcher holds the indicators in the forms that make a match a few hash
// lookups: domains by name, addresses by value, CIDRs by prefix for each
// prefix length that occurs.
type tiMatcher struct {
	domains  map[string]struct{}
	addrs    map[netip.Addr]struct{}
	prefixes map[netip.Prefix]struct{}
	bits4    []int // prefix lengths of IPv4 CIDRs, longest first
	bits6    []int
}

func newTIMatcher(lists map[string]*listVal) *tiMatcher {
	m := &tiMatcher{domains: map[string]struct{}{}, addrs: map[netip.Addr]struct{}{}, prefixes: map[netip.Prefix]struct{}{}}
	if l := lists[ThreatIntelDomainsList]; l != nil {
		for _, d := range l.list.Items {
			if d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), "."); d != "" {
				m.domains[d] = struct{}{}
			}
		}
	}
	if l := lists[ThreatIntelIPsList]; l != nil {
		for _, s := range l.list.Items {
			s = strings.TrimSpace(s)
			if p, err := netip.ParsePrefix(s); err == nil {
				p = p.Masked()
				if p.Addr().Is4In6() {
					p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
				}
				m.prefixes[p] = struct{}{}
				if p.Addr().Is4() {
					m.bits4 = append(m.bits4, p.Bits())
				} else {
					m.bits6 = append(m.bits6, p.Bits())
				}
			} else if a, err := netip.ParseAddr(s); err == nil {
				m.addrs[a.Unmap()] = struct{}{}
			}
		}
	}
	for _, b := range []*[]int{&m.bits4, &m.bits6} {
		slices.Sort(*b)
		*b = slices.Compact(*b)
		slices.Reverse(*b)
	}
	if len(m.domains) == 0 && len(m.addrs) == 0 && len(m.prefixes) == 0 {
		return nil
	}
	return m
}

// annotate sets the threat-intelligence facts of a dns or connect event.
// It does not allocate unless an indicator matches.
func (m *tiMatcher) annotate(ev *event.Event) {
	n := ev.Network
	if n == nil {
		return
	}
	switch ev.Kind {
	case event.KindDNS:
		if d, ok := m.domain(n.DNSQuery); ok {
			ev.SetFact(FactThreatIntelDomain, d)
		}
	case event.KindConnect:
		if ip, ok := m.ip(n.DstIP); ok {
			ev.SetFact(FactThreatIntelIP, ip)
		}
	}
}

// domain finds name or the nearest of its parent domains on the list.
func (m *tiMatcher) domain(name string) (string, bool) {
	if len(m.domains) == 0 || name == "" || len(name) > 253 {
		return "", false
	}
	var buf [253]byte
	b := buf[:len(name)]
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	if b[len(b)-1] == '.' {
		b = b[:len(b)-1]
	}
	for len(b) > 0 {
		if _, ok := m.domains[string(b)]; ok { // no allocation: map lookup by converted bytes
			return string(b), true
		}
		i := indexByte(b, '.')
		if i < 0 {
			break
		}
		b = b[i+1:]
	}
	return "", false
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// ip finds an address on the list, or a listed CIDR that contains it.
func (m *tiMatcher) ip(s string) (string, bool) {
	if s == "" || (len(m.addrs) == 0 && len(m.prefixes) == 0) {
		return "", false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", false
	}
	a = a.Unmap()
	if _, ok := m.addrs[a]; ok {
		return s, true
	}
	bits := m.bits6
	if a.Is4() {
		bits = m.bits4
	}
	for _, b := range bits {
		p, err := a.Prefix(b)
		if err != nil {
			continue
		}
		if _, ok := m.prefixes[p]; ok {
			return p.String(), true
		}
	}
	return "", false
}

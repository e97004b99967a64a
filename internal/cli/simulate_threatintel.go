package cli

import (
	"bufio"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/vigil-sec/vigil/internal/detect"
)

// Rule lists that --threat-intel files are appended to (see
// rules/threatintel.yaml).
const (
	tiDomainsList    = "threat_intel_domains"
	tiIPsList        = "threat_intel_ips"
	tiIPPrefixesList = "threat_intel_ip_prefixes"
)

// maxIPv6Expansion bounds how many addresses an IPv6 CIDR that does not end
// on a 16-bit group boundary may expand to.
const maxIPv6Expansion = 4096

// threatIntel holds the indicators of --threat-intel files, in the form the
// rule lists take.
type threatIntel struct {
	domains, ips, prefixes []string
}

// loadThreatIntel reads indicator files: one domain, IP address or CIDR per
// line, blank lines and # comments (whole-line or trailing) ignored.
func loadThreatIntel(paths []string) (threatIntel, error) {
	var ti threatIntel
	for _, p := range paths {
		if err := ti.readFile(p); err != nil {
			return threatIntel{}, err
		}
	}
	return ti, nil
}

func (ti *threatIntel) readFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("--threat-intel %s: %w; give a file with one domain, IP address or CIDR per line", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if err := ti.add(line); err != nil {
			return fmt.Errorf("--threat-intel %s:%d: %q: %w", path, n, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("--threat-intel %s: read: %w", path, err)
	}
	return nil
}

// add classifies one indicator.
func (ti *threatIntel) add(s string) error {
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("not a CIDR (%v); write ranges as 203.0.113.0/24 or 2001:db8::/32", err)
		}
		ips, prefixes, err := expandPrefix(pfx.Masked())
		if err != nil {
			return err
		}
		ti.ips = append(ti.ips, ips...)
		ti.prefixes = append(ti.prefixes, prefixes...)
		return nil
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		ti.ips = append(ti.ips, ip.Unmap().String())
		return nil
	}
	d := strings.TrimSuffix(strings.ToLower(s), ".")
	d = strings.TrimPrefix(d, "*.")
	if !validDomain(d) {
		return fmt.Errorf("not a domain, IP address or CIDR; write one indicator per line, e.g. evil.example, 203.0.113.7 or 203.0.113.0/24")
	}
	ti.domains = append(ti.domains, d)
	return nil
}

func validDomain(d string) bool {
	if d == "" || len(d) > 253 || !strings.Contains(d, ".") {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// expandPrefix turns a CIDR into what the rules can compare against the
// sensor's textual net.dstIP: exact addresses, or text prefixes on octet
// (IPv4) or group (IPv6) boundaries, which rules/threatintel.yaml looks up
// with `in`. An IPv4 CIDR becomes at most 256 text prefixes (it is rounded
// up to the next octet boundary and each covered octet value listed; /25 to
// /31 become single addresses). IPv6 CIDRs of /8 to /64 are expanded the
// same way on 16-bit groups when the groups named are non-zero (so that the
// canonical text never compresses them), anything else into single
// addresses up to maxIPv6Expansion.
func expandPrefix(p netip.Prefix) (ips, prefixes []string, err error) {
	addr, bits := p.Addr(), p.Bits()
	if addr.Is4() {
		if bits == 32 {
			return []string{addr.String()}, nil, nil
		}
		round := (bits + 7) / 8 * 8
		if round == 0 {
			round = 8
		}
		for _, sub := range subPrefixes(p, round) {
			b := sub.Addr().As4()
			switch round {
			case 32:
				ips = append(ips, sub.Addr().String())
			default:
				parts := make([]string, round/8)
				for i := range parts {
					parts[i] = fmt.Sprint(b[i])
				}
				prefixes = append(prefixes, strings.Join(parts, ".")+".")
			}
		}
		return ips, prefixes, nil
	}
	if bits == 128 {
		return []string{addr.String()}, nil, nil
	}
	round := (bits + 15) / 16 * 16
	if round == 0 {
		round = 16
	}
	// The rules compare the first one to four groups (/16 to /64).
	if round <= 64 && round-bits <= 8 {
		subs := subPrefixes(p, round)
		ok := true
		var out []string
		for _, sub := range subs {
			b := sub.Addr().As16()
			var groups []string
			for g := 0; g < round/16; g++ {
				v := uint16(b[2*g])<<8 | uint16(b[2*g+1])
				if v == 0 {
					ok = false
					break
				}
				groups = append(groups, fmt.Sprintf("%x", v))
			}
			if !ok {
				break
			}
			out = append(out, strings.Join(groups, ":")+":")
		}
		if ok {
			return nil, out, nil
		}
	}
	if 128-bits > 12 { // 4096 addresses
		return nil, nil, fmt.Errorf("IPv6 range too wide to match: vigil matches IPv6 ranges on 16-bit group boundaries whose groups are non-zero (e.g. 2001:db8::/32), or ranges of at most %d addresses (/116 or longer); list the addresses instead", maxIPv6Expansion)
	}
	for a := p.Addr(); p.Contains(a); a = a.Next() {
		ips = append(ips, a.String())
		if !a.Next().IsValid() {
			break
		}
	}
	return ips, nil, nil
}

// subPrefixes lists the /bits sub-networks of p (bits >= p.Bits()).
func subPrefixes(p netip.Prefix, bits int) []netip.Prefix {
	n := 1 << (bits - p.Bits())
	out := make([]netip.Prefix, 0, n)
	base := new(big.Int).SetBytes(p.Addr().AsSlice())
	step := new(big.Int).Lsh(big.NewInt(1), uint(p.Addr().BitLen()-bits))
	size := len(p.Addr().AsSlice())
	for i := 0; i < n; i++ {
		v := new(big.Int).Add(base, new(big.Int).Mul(step, big.NewInt(int64(i))))
		raw := v.FillBytes(make([]byte, size))
		a, _ := netip.AddrFromSlice(raw)
		out = append(out, netip.PrefixFrom(a, bits))
	}
	return out
}

// appendTo adds the indicators to the rule set's threat-intelligence lists.
// A rule set without those lists (--no-default-rules with rules of one's
// own) is an error: the indicators would silently match nothing.
func (ti threatIntel) appendTo(rs *detect.RuleSet, source string) error {
	lists := []struct {
		name  string
		items []string
	}{{tiDomainsList, ti.domains}, {tiIPsList, ti.ips}, {tiIPPrefixesList, ti.prefixes}}
	for _, l := range lists {
		if len(l.items) == 0 {
			continue
		}
		if !slices.ContainsFunc(rs.Lists(), func(x *detect.List) bool { return x.Name == l.name }) {
			return fmt.Errorf("%s: the loaded rules do not define the list %s; keep the default rules (rules/threatintel.yaml) or define the list in your own rule file", source, l.name)
		}
		if err := rs.AppendList(l.name, source, slices.Compact(slices.Sorted(slices.Values(l.items)))...); err != nil {
			return err
		}
	}
	return nil
}

// loadRulesWithThreatIntel loads the rules of rsrc and appends the
// indicators of the --threat-intel files, read again at every (re)load so
// that SIGHUP also picks up an updated feed.
func loadRulesWithThreatIntel(rsrc *ruleSource, files []string) (*detect.RuleSet, error) {
	rs, err := rsrc.load()
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return rs, nil
	}
	ti, err := loadThreatIntel(files)
	if err != nil {
		return nil, err
	}
	if err := ti.appendTo(rs, "--threat-intel "+strings.Join(files, ",")); err != nil {
		return nil, err
	}
	return rs, nil
}

package sensorcmd

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/vigil-sec/vigil/internal/detect"
)

// Rule lists that --threat-intel files are appended to (see
// rules/threatintel.yaml).
const (
	tiDomainsList = detect.ThreatIntelDomainsList
	tiIPsList     = detect.ThreatIntelIPsList
)

// threatIntel holds the indicators of --threat-intel files, in the form the
// rule lists take.
type threatIntel struct {
	domains, ips []string
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
		// The engine matches CIDRs of any length (detect.ThreatIntelIPsList).
		ti.ips = append(ti.ips, pfx.Masked().String())
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

// appendTo adds the indicators to the rule set's threat-intelligence lists.
// A rule set without those lists (--no-default-rules with rules of one's
// own) is an error: the indicators would silently match nothing.
func (ti threatIntel) appendTo(rs *detect.RuleSet, source string) error {
	lists := []struct {
		name  string
		items []string
	}{{tiDomainsList, ti.domains}, {tiIPsList, ti.ips}}
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

// LoadWithThreatIntel loads the rules of r and appends the indicators of
// the --threat-intel files, read again at every (re)load so that SIGHUP
// also picks up an updated feed.
func (r *RuleSource) LoadWithThreatIntel(files []string) (*detect.RuleSet, error) {
	rs, err := r.Load()
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

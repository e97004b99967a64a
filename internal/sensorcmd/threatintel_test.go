package sensorcmd

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
)

func writeFeed(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "feed.txt")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// firedFor compiles the default rules plus the feeds and returns the rules
// an event raises.
func firedFor(t *testing.T, feeds []string, ev *event.Event) []string {
	t.Helper()
	rs, err := noEnv().LoadWithThreatIntel(feeds)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := detect.Compile(rs)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	eng.Evaluate(ev, func(r *detect.Rule, _ *event.Event) { ids = append(ids, r.ID) })
	return ids
}

func dnsEvent(q string) *event.Event {
	return &event.Event{Kind: event.KindDNS, Process: event.Process{PID: 10, Comm: "curl", Exe: "/usr/bin/curl", Args: []string{"curl", "http://" + q}},
		Container: &event.Container{ID: "c1", Runtime: "runc"},
		Network:   &event.Network{Family: "ipv4", Protocol: "udp", DstIP: "10.96.0.10", DstPort: 53, DNSQuery: q, DNSType: "A"}}
}

func connectEvent(ip string) *event.Event {
	return &event.Event{Kind: event.KindConnect, Process: event.Process{PID: 10, Comm: "curl", Exe: "/usr/bin/curl", Args: []string{"curl", "http://" + ip}},
		Container: &event.Container{ID: "c1", Runtime: "runc"},
		Network:   &event.Network{Family: "ipv4", Protocol: "tcp", DstIP: ip, DstPort: 443, ResultOK: true}}
}

// A user's feed (domains, addresses, CIDRs, comments) reaches the rules: a
// DNS query for a listed domain or below it and a connection to a listed
// address or into a listed range raise the threat-intelligence alerts;
// neighbours do not.
func TestAThreatIntelFeedMakesTheRulesMatchItsIndicators(t *testing.T) {
	feed := writeFeed(t, `# my feed
evil.example          # a C2 domain
*.Bad-Actor.example.
203.0.113.7
198.18.0.0/15
192.0.2.128/25
2001:db8:beef::/48
2001:db8::1
2001:f000::/20
`)
	feeds := []string{feed}
	cases := []struct {
		name string
		ev   *event.Event
		want string // "" : no threat-intel rule
	}{
		{"the listed domain", dnsEvent("evil.example"), "vigil.node/ThreatIntelDomain"},
		{"a subdomain of a listed domain", dnsEvent("a.b.evil.example"), "vigil.node/ThreatIntelDomain"},
		{"a wildcard entry, written in capitals with a trailing dot", dnsEvent("x.bad-actor.example"), "vigil.node/ThreatIntelDomain"},
		{"a name that only ends in the same letters", dnsEvent("notevil.example"), ""},
		{"the built-in simulation domain still matches", dnsEvent("c2.vigil-simulation.test"), "vigil.node/ThreatIntelDomain"},
		{"a listed address", connectEvent("203.0.113.7"), "vigil.node/ThreatIntelIP"},
		{"an address sharing the listed one's text prefix", connectEvent("203.0.113.70"), ""},
		{"inside a /15", connectEvent("198.19.200.1"), "vigil.node/ThreatIntelIP"},
		{"just outside the /15", connectEvent("198.20.0.1"), ""},
		{"inside a /25", connectEvent("192.0.2.200"), "vigil.node/ThreatIntelIP"},
		{"outside the /25", connectEvent("192.0.2.127"), ""},
		{"inside an IPv6 /48", connectEvent("2001:db8:beef::42"), "vigil.node/ThreatIntelIP"},
		{"a listed IPv6 address", connectEvent("2001:db8::1"), "vigil.node/ThreatIntelIP"},
		{"another IPv6 address", connectEvent("2001:db8::2"), ""},
		{"inside an IPv6 /20 (no group boundary)", connectEvent("2001:fabc::1"), "vigil.node/ThreatIntelIP"},
		{"outside the IPv6 /20", connectEvent("2001:e000::1"), ""},
		{"an IPv4-mapped IPv6 destination of a listed address", connectEvent("::ffff:203.0.113.7"), "vigil.node/ThreatIntelIP"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := firedFor(t, feeds, c.ev)
			var ti []string
			for _, id := range got {
				if strings.HasPrefix(id, "vigil.node/ThreatIntel") {
					ti = append(ti, id)
				}
			}
			switch {
			case c.want == "" && len(ti) > 0:
				t.Fatalf("fired %v, want no threat-intel alert", ti)
			case c.want != "" && !slices.Equal(ti, []string{c.want}):
				t.Fatalf("fired %v, want %s", ti, c.want)
			}
		})
	}
}

func TestABadThreatIntelLineIsRefusedWithItsPositionAndTheFix(t *testing.T) {
	cases := []struct{ content, want string }{
		{"evil.example\nnot a domain\n", ":2: \"not a domain\": not a domain, IP address or CIDR"},
		{"203.0.113.0/33\n", ":1: \"203.0.113.0/33\": not a CIDR"},
		{"localhost\n", "not a domain"},
	}
	for _, c := range cases {
		feed := writeFeed(t, c.content)
		_, err := noEnv().LoadWithThreatIntel([]string{feed})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "--threat-intel "+feed) {
			t.Errorf("feed %q: error %v, want one naming the file and %q", c.content, err, c.want)
		}
	}
	_, err := noEnv().LoadWithThreatIntel([]string{filepath.Join(t.TempDir(), "missing.txt")})
	if err == nil || !strings.Contains(err.Error(), "one domain, IP address or CIDR per line") {
		t.Errorf("a missing feed: %v", err)
	}
}

// Real feeds are large: lists are looked up with `in`, never looped over,
// so a feed of 100,000 domains and 20,000 ranges compiles under the rule
// cost limit and still matches.
func TestALargeThreatIntelFeedCompilesAndMatches(t *testing.T) {
	var b strings.Builder
	for i := range 100000 {
		fmt.Fprintf(&b, "bad%d.example.com\n", i)
	}
	for i := range 20000 {
		fmt.Fprintf(&b, "10.%d.%d.0/24\n", i/256%256, i%256)
	}
	feeds := []string{writeFeed(t, b.String())}
	if got := firedFor(t, feeds, dnsEvent("a.b.bad99999.example.com")); !slices.Contains(got, "vigil.node/ThreatIntelDomain") {
		t.Errorf("a subdomain of the feed's last domain fired %v", got)
	}
	if got := firedFor(t, feeds, connectEvent("10.78.31.9")); !slices.Contains(got, "vigil.node/ThreatIntelIP") {
		t.Errorf("an address in the feed's last range fired %v", got)
	}
}

// noEnv is the default rules without the environment's Kubernetes API address.
func noEnv() *RuleSource { return &RuleSource{Getenv: func(string) string { return "" }} }

package simulate

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// The stub DNS answers the names the scenarios use, as a real resolver
// (Go's own, over UDP on 127.0.0.1) sees them, and says NXDOMAIN for
// everything else: nothing outside the simulation is ever resolved.
func TestTheStubDNSResolvesTheSimulationNamesAndNothingElse(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go serveDNS(pc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
	cases := []struct {
		name string
		want string // "" : not found
	}{
		{tiDomain, tiIP},
		{"VIGIL-SIMULATION.TEST", tiIP},
		{"kubernetes.default.svc", apiServiceIP},
		{"kubernetes.default.svc.cluster.local", apiServiceIP},
		{"attacker", attackerIP},
		{"example.com", ""},
		{"vigil-simulation.test.example.com", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			addrs, err := r.LookupIPAddr(ctx, c.name+".")
			if c.want == "" {
				if err == nil {
					t.Fatalf("%s resolved to %v, want NXDOMAIN", c.name, addrs)
				}
				var de *net.DNSError
				if !errors.As(err, &de) || !de.IsNotFound {
					t.Fatalf("%s: %v, want a not-found answer", c.name, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("resolve %s: %v", c.name, err)
			}
			if len(addrs) != 1 || addrs[0].IP.String() != c.want {
				t.Fatalf("%s resolved to %v, want %s", c.name, addrs, c.want)
			}
		})
	}
}

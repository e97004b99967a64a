package detectors

import (
	"slices"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/event"
)

func TestFanout(t *testing.T) {
	ip := func(i int) string { return "10.0." + itoa(i/250) + "." + itoa(i%250+1) }
	cases := []struct {
		name       string
		run        func(s *Set, g gen, c *clock) string // returns the last fanout.distinct
		wantFact   string
		wantAlerts int
	}{
		{
			name: "49 distinct destinations set the fact and raise nothing",
			run: func(s *Set, g gen, c *clock) (last string) {
				for i := range 49 {
					ev := g.connect("c1", 200, ip(i), 80)
					s.Observe(ev)
					last, _ = ev.Fact(FactFanout)
				}
				return last
			},
			wantFact: "49", wantAlerts: 0,
		},
		{
			name: "crossing 50 distinct destinations raises exactly one alert however far the scan goes",
			run: func(s *Set, g gen, c *clock) (last string) {
				for i := range 300 {
					ev := g.connect("c1", 200, "10.0.0.1", uint16(1+i))
					s.Observe(ev)
					last, _ = ev.Fact(FactFanout)
				}
				return last
			},
			wantFact: "300", wantAlerts: 1,
		},
		{
			name: "repeated connections to one destination count once",
			run: func(s *Set, g gen, c *clock) (last string) {
				for range 500 {
					ev := g.connect("c1", 200, "10.0.0.1", 443)
					s.Observe(ev)
					last, _ = ev.Fact(FactFanout)
				}
				return last
			},
			wantFact: "1", wantAlerts: 0,
		},
		{
			name: "destinations older than the window are no longer counted",
			run: func(s *Set, g gen, c *clock) string {
				for i := range 40 {
					s.Observe(g.connect("c1", 200, ip(i), 80))
				}
				c.advance(11 * time.Second)
				for i := range 40 {
					s.Observe(g.connect("c1", 200, ip(100+i), 80))
				}
				ev := g.connect("c1", 200, ip(0), 80)
				s.Observe(ev)
				v, _ := ev.Fact(FactFanout)
				return v
			},
			wantFact: "41", wantAlerts: 0,
		},
		{
			name: "a slow scan inside the window still adds up",
			run: func(s *Set, g gen, c *clock) (last string) {
				for i := range 60 {
					ev := g.connect("c1", 200, ip(i), 22)
					s.Observe(ev)
					last, _ = ev.Fact(FactFanout)
					c.advance(100 * time.Millisecond)
				}
				return last
			},
			wantFact: "60", wantAlerts: 1,
		},
		{
			name: "a scan that goes on in a later window raises one more alert per window",
			run: func(s *Set, g gen, c *clock) (last string) {
				for i := range 260 {
					ev := g.connect("c1", 200, ip(i), 22)
					s.Observe(ev)
					last, _ = ev.Fact(FactFanout)
					c.advance(100 * time.Millisecond) // 26 s: alerts near 5 s, 15 s and 25 s
				}
				return last
			},
			wantFact: "100", wantAlerts: 3,
		},
		{
			name: "two processes are counted separately",
			run: func(s *Set, g gen, c *clock) (last string) {
				for i := range 60 {
					ev := g.connect("c1", 200+i%2, ip(i), 80)
					s.Observe(ev)
					last, _ = ev.Fact(FactFanout)
				}
				return last
			},
			wantFact: "30", wantAlerts: 0,
		},
		{
			name: "an exited process starts over if its pid and start time come back",
			run: func(s *Set, g gen, c *clock) (last string) {
				for i := range 40 {
					s.Observe(g.connect("c1", 200, ip(i), 80))
				}
				exit := g.connect("c1", 200, "", 0)
				exit.Kind, exit.Network = "exit", nil
				s.Observe(exit)
				ev := g.connect("c1", 200, ip(45), 80)
				s.Observe(ev)
				v, _ := ev.Fact(FactFanout)
				return v
			},
			wantFact: "1", wantAlerts: 0,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, c, k := newTestSet(t, Options{})
			got := tc.run(s, gen{c}, c)
			if got != tc.wantFact {
				t.Errorf("last %s = %q, want %q", FactFanout, got, tc.wantFact)
			}
			if n := len(k.ofType(AlertTypeFanout)); n != tc.wantAlerts {
				t.Errorf("fan-out alerts = %d, want %d", n, tc.wantAlerts)
			}
		})
	}
}

func TestFanoutAlertDescribesTheScanner(t *testing.T) {
	s, c, k := newTestSet(t, Options{FanoutThreshold: 5})
	g := gen{c}
	for i := range 5 {
		s.Observe(g.connect("c1", 200, "10.1.2.3", uint16(8000+i)))
	}
	as := k.all()
	if len(as) != 1 {
		t.Fatalf("alerts = %d, want 1", len(as))
	}
	a := as[0]
	checks := []struct {
		what      string
		got, want any
	}{
		{"type", a.AlertType, "vigil.node/NetworkScanningBehavior"},
		{"display name", a.DisplayName, "Network scanning tool detected"},
		{"severity", a.Severity, alert.SeverityMedium},
		{"tactics", slices.Equal(a.Tactics, []string{"Discovery"}), true},
		{"techniques", slices.Equal(a.Techniques, []string{"T1046"}), true},
		{"detector", a.Detector, "fanout"},
		{"process path", a.Entities.Process.Path, "/usr/bin/python3"},
		{"command line", a.Entities.Process.CommandLine, "python3 scan.py"},
		{"container", a.Entities.Container.ID, "c1"},
		{"namespace", a.Entities.Namespace, "shop"},
		{"peer", a.Entities.Network.IP + ":" + itoa(int(a.Entities.Network.Port)), "10.1.2.3:8004"},
		{"evidence", a.Entities.Facts["distinctDestinations"], "5"},
		{"fact copied", a.Entities.Facts[FactFanout], "5"},
		{"node", a.Entities.Node, "node-1"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.what, ch.got, ch.want)
		}
	}
	if a.ID == "" || a.Description == "" || len(a.RemediationSteps) == 0 {
		t.Errorf("alert lacks id, description or remediation: %+v", a)
	}
}

func TestFanoutOnlyAnnotatesWhenRulesRaiseTheAlert(t *testing.T) {
	var raised int
	s := New(Options{RulesRaiseFactAlerts: true}, func(*alert.Alert) { raised++ })
	base := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	var last *event.Event
	for i := 0; i < 200; i++ {
		ev := &event.Event{Kind: event.KindConnect, Time: base.Add(time.Duration(i) * time.Millisecond),
			Process:   event.Process{PID: 4242, StartTime: 1e9, Exe: "/tmp/scan"},
			Container: &event.Container{ID: "c1"},
			Network:   &event.Network{Family: "ipv4", Protocol: "tcp", DstIP: "127.0.0.1", DstPort: uint16(1000 + i)}}
		s.Observe(ev)
		last = ev
	}
	if raised != 0 {
		t.Fatalf("%d alerts raised; the rules own this alert", raised)
	}
	if v, _ := last.Fact("fanout.distinct"); v != "200" {
		t.Fatalf("fanout.distinct = %q, want 200", v)
	}
}

package detectors

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/event"
)

func TestReconBurst(t *testing.T) {
	webServer := event.ProcessRef{PID: 50, StartTime: 500 * event.TickNS, Exe: "/usr/sbin/apache2", Args: []string{"apache2", "-DFOREGROUND"}}
	// execUnder makes an exec whose parent is parent (ancestry parent first).
	execUnder := func(g gen, pid int, ancestry []event.ProcessRef, exe string, args ...string) *event.Event {
		ev := g.exec("c1", pid, exe, args...)
		p := ancestry[0]
		ev.Parent = &p
		ev.Ancestry = ancestry
		return ev
	}
	shell := func(pid int) event.ProcessRef {
		return event.ProcessRef{PID: pid, StartTime: uint64(pid) * event.TickNS, Exe: "/bin/bash", Args: []string{"bash"}}
	}
	oneShot := func(pid int, cmd string) event.ProcessRef {
		return event.ProcessRef{PID: pid, StartTime: uint64(pid) * event.TickNS, Exe: "/bin/dash", Args: []string{"sh", "-c", cmd}}
	}
	cases := []struct {
		name       string
		run        func(s *Set, g gen, c *clock) []*event.Event
		wantLast   string // recon.burst on the last exec; "" = absent
		wantAlerts int
	}{
		{
			name: "five distinct discovery commands under one shell raise one alert",
			run: func(s *Set, g gen, c *clock) []*event.Event {
				sh := []event.ProcessRef{shell(60), webServer}
				return []*event.Event{
					execUnder(g, 101, sh, "/usr/bin/id", "id"),
					execUnder(g, 102, sh, "/usr/bin/whoami", "whoami"),
					execUnder(g, 103, sh, "/bin/uname", "uname", "-a"),
					execUnder(g, 104, sh, "/bin/cat", "cat", "/etc/passwd"),
					execUnder(g, 105, sh, "/bin/ls", "ls", "-la", "/var/run/secrets/kubernetes.io/serviceaccount"),
					execUnder(g, 106, sh, "/bin/ps", "ps", "aux"),
				}
			},
			wantLast: "6", wantAlerts: 1,
		},
		{
			name: "the same command repeated counts once",
			run: func(s *Set, g gen, c *clock) (evs []*event.Event) {
				sh := []event.ProcessRef{shell(60), webServer}
				for i := range 10 {
					evs = append(evs, execUnder(g, 101+i, sh, "/usr/bin/id", "id"))
				}
				return evs
			},
			wantLast: "1", wantAlerts: 0,
		},
		{
			name: "ifconfig and ip are the same discovery, env and printenv too",
			run: func(s *Set, g gen, c *clock) []*event.Event {
				sh := []event.ProcessRef{shell(60), webServer}
				return []*event.Event{
					execUnder(g, 101, sh, "/sbin/ip", "ip", "a"),
					execUnder(g, 102, sh, "/sbin/ifconfig", "ifconfig"),
					execUnder(g, 103, sh, "/usr/bin/env", "env"),
					execUnder(g, 104, sh, "/usr/bin/printenv", "printenv"),
				}
			},
			wantLast: "2", wantAlerts: 0,
		},
		{
			name: "commands under different interactive shells are not summed",
			run: func(s *Set, g gen, c *clock) []*event.Event {
				return []*event.Event{
					execUnder(g, 101, []event.ProcessRef{shell(60), webServer}, "/usr/bin/id", "id"),
					execUnder(g, 102, []event.ProcessRef{shell(61), webServer}, "/usr/bin/whoami", "whoami"),
					execUnder(g, 103, []event.ProcessRef{shell(62), webServer}, "/bin/uname", "uname"),
					execUnder(g, 104, []event.ProcessRef{shell(63), webServer}, "/bin/hostname", "hostname"),
					execUnder(g, 105, []event.ProcessRef{shell(64), webServer}, "/bin/ps", "ps"),
				}
			},
			wantLast: "1", wantAlerts: 0,
		},
		{
			name: "a web shell running each command in its own sh -c is grouped under the web server",
			run: func(s *Set, g gen, c *clock) []*event.Event {
				cmds := [][]string{{"/usr/bin/id", "id"}, {"/usr/bin/whoami", "whoami"}, {"/bin/uname", "uname", "-a"},
					{"/bin/hostname", "hostname"}, {"/bin/cat", "cat", "/etc/os-release"}}
				var evs []*event.Event
				for i, cmd := range cmds {
					evs = append(evs, execUnder(g, 101+i, []event.ProcessRef{oneShot(70+i, cmd[1]), webServer}, cmd[0], cmd[1:]...))
				}
				return evs
			},
			wantLast: "5", wantAlerts: 1,
		},
		{
			name: "busybox applets are recognised by argv[0], not by the executable name",
			run: func(s *Set, g gen, c *clock) []*event.Event {
				sh := []event.ProcessRef{shell(60), webServer}
				var evs []*event.Event
				for i, a := range []string{"id", "whoami", "uname", "hostname", "netstat"} {
					evs = append(evs, execUnder(g, 101+i, sh, "/bin/busybox", a))
				}
				return evs
			},
			wantLast: "5", wantAlerts: 1,
		},
		{
			name: "cat of an ordinary file is not discovery",
			run: func(s *Set, g gen, c *clock) []*event.Event {
				return []*event.Event{execUnder(g, 101, []event.ProcessRef{shell(60)}, "/bin/cat", "cat", "/app/config.yaml")}
			},
			wantLast: "", wantAlerts: 0,
		},
		{
			name: "discovery commands spread wider than the window do not burst",
			run: func(s *Set, g gen, c *clock) []*event.Event {
				sh := []event.ProcessRef{shell(60), webServer}
				var evs []*event.Event
				for i, a := range []string{"id", "whoami", "uname", "hostname", "df", "mount"} {
					ev := execUnder(g, 101+i, sh, "/usr/bin/"+a, a)
					s.Observe(ev)
					evs = append(evs, ev)
					c.advance(4 * time.Second)
				}
				return evs[len(evs)-1:] // already observed; re-observing the last is harmless
			},
			wantLast: "3", wantAlerts: 0,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, c, k := newTestSet(t, Options{})
			evs := tc.run(s, gen{c}, c)
			for _, ev := range evs {
				s.Observe(ev)
			}
			got, _ := evs[len(evs)-1].Fact(FactRecon)
			if got != tc.wantLast {
				t.Errorf("%s on the last exec = %q, want %q", FactRecon, got, tc.wantLast)
			}
			if n := len(k.ofType(AlertTypeRecon)); n != tc.wantAlerts {
				t.Errorf("recon alerts = %d, want %d", n, tc.wantAlerts)
			}
		})
	}
}

func TestReconAlertListsTheCommands(t *testing.T) {
	s, c, k := newTestSet(t, Options{})
	g := gen{c}
	for i, a := range []string{"id", "whoami", "uname", "hostname", "nproc"} {
		s.Observe(g.exec("c1", 101+i, "/usr/bin/"+a, a))
	}
	as := k.ofType(AlertTypeRecon)
	if len(as) != 1 {
		t.Fatalf("recon alerts = %d, want 1", len(as))
	}
	a := as[0]
	if a.DisplayName != "Burst of multiple reconnaissance commands detected" || a.Severity != alert.SeverityLow ||
		!slices.Equal(a.Tactics, []string{"Discovery", "Collection"}) || !slices.Equal(a.Techniques, []string{"T1082", "T1033"}) {
		t.Errorf("alert = %q %s %v %v", a.DisplayName, a.Severity, a.Tactics, a.Techniques)
	}
	if got := a.Entities.Facts["commands"]; got != "id, whoami, uname, hostname, nproc" {
		t.Errorf("commands evidence = %q", got)
	}
	if a.Entities.Parent == nil || a.Entities.Parent.Path != "/bin/bash" {
		t.Errorf("parent entity = %+v, want /bin/bash", a.Entities.Parent)
	}
	if !strings.Contains(a.Description, "false positives") {
		t.Errorf("description carries no tuning advice: %q", a.Description)
	}
}

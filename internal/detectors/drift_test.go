package detectors

import (
	"maps"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/event"
)

func TestDriftFacts(t *testing.T) {
	const curl, wget, sh = "/usr/bin/curl", "/usr/bin/wget", "/bin/sh"
	cases := []struct {
		name   string
		before func(g gen) []*event.Event
		exec   func(g gen) *event.Event
		want   map[string]string // exact set of drift facts
	}{
		{
			name: "a file downloaded by curl and then executed in the same container is drift written by curl",
			before: func(g gen) []*event.Event {
				return []*event.Event{g.open("c1", 100, curl, "/tmp/x", true, true, 0)}
			},
			exec: func(g gen) *event.Event { return g.exec("c1", 101, "/tmp/x") },
			want: map[string]string{FactDriftWritten: "true", FactDriftWriter: curl, FactDriftWriterName: "curl"},
		},
		{
			name: "a download made executable by chmod names both the writer and the chmod'er",
			before: func(g gen) []*event.Event {
				return []*event.Event{
					g.open("c1", 100, wget, "/dev/shm/m", true, true, 0),
					g.chmod("c1", 102, "/bin/chmod", "/dev/shm/m", 0o755),
				}
			},
			exec: func(g gen) *event.Event { return g.exec("c1", 103, "/dev/shm/m") },
			want: map[string]string{FactDriftWritten: "true", FactDriftWriter: wget, FactDriftWriterName: "wget", FactDriftChmod: "/bin/chmod"},
		},
		{
			name: "a chmod +x alone marks the file as drift",
			before: func(g gen) []*event.Event {
				return []*event.Event{g.chmod("c1", 102, "/bin/busybox", "/app/run", 0o700)}
			},
			exec: func(g gen) *event.Event { return g.exec("c1", 103, "/app/run") },
			want: map[string]string{FactDriftWritten: "true", FactDriftChmod: "/bin/busybox"},
		},
		{
			name: "a chmod that adds no execute bit is ignored",
			before: func(g gen) []*event.Event {
				return []*event.Event{g.chmod("c1", 102, "/bin/chmod", "/app/run", 0o600)}
			},
			exec: func(g gen) *event.Event { return g.exec("c1", 103, "/app/run") },
			want: map[string]string{},
		},
		{
			name: "a write in container A does not taint the same path in container B",
			before: func(g gen) []*event.Event {
				return []*event.Event{g.open("cA", 100, curl, "/tmp/x", true, true, 0)}
			},
			exec: func(g gen) *event.Event { return g.exec("cB", 101, "/tmp/x") },
			want: map[string]string{},
		},
		{
			name: "a host write does not taint a container executing the same path",
			before: func(g gen) []*event.Event {
				return []*event.Event{g.open("", 100, curl, "/usr/local/bin/tool", true, true, 0)}
			},
			exec: func(g gen) *event.Event { return g.exec("c1", 101, "/usr/local/bin/tool") },
			want: map[string]string{},
		},
		{
			name: "host processes are tracked too: download then execute on the node",
			before: func(g gen) []*event.Event {
				return []*event.Event{g.open("", 100, curl, "/tmp/payload", true, true, 0)}
			},
			exec: func(g gen) *event.Event { return g.exec("", 101, "/tmp/payload") },
			want: map[string]string{FactDriftWritten: "true", FactDriftWriter: curl, FactDriftWriterName: "curl"},
		},
		{
			name: "a failed open for write is not evidence",
			before: func(g gen) []*event.Event {
				return []*event.Event{g.open("c1", 100, curl, "/tmp/x", true, true, -13)}
			},
			exec: func(g gen) *event.Event { return g.exec("c1", 101, "/tmp/x") },
			want: map[string]string{},
		},
		{
			name: "a read of a sensitive file is not a write",
			before: func(g gen) []*event.Event {
				return []*event.Event{g.open("c1", 100, sh, "/bin/ls", false, false, 0)}
			},
			exec: func(g gen) *event.Event { return g.exec("c1", 101, "/bin/ls") },
			want: map[string]string{},
		},
		{
			name: "a file written under a temporary name and renamed into place keeps its writer",
			before: func(g gen) []*event.Event {
				mv := g.open("c1", 104, "/bin/mv", "/tmp/.part", false, false, 0)
				mv.Kind, mv.File.NewPath = event.KindRename, "/usr/local/bin/agent"
				return []*event.Event{g.open("c1", 100, curl, "/tmp/.part", true, true, 0), mv}
			},
			exec: func(g gen) *event.Event { return g.exec("c1", 101, "/usr/local/bin/agent") },
			want: map[string]string{FactDriftWritten: "true", FactDriftWriter: curl, FactDriftWriterName: "curl"},
		},
		{
			name: "a written file that was deleted is forgotten",
			before: func(g gen) []*event.Event {
				rm := g.open("c1", 104, "/bin/rm", "/tmp/x", false, false, 0)
				rm.Kind = event.KindUnlink
				return []*event.Event{g.open("c1", 100, curl, "/tmp/x", true, true, 0), rm}
			},
			exec: func(g gen) *event.Event { return g.exec("c1", 101, "/tmp/x") },
			want: map[string]string{},
		},
		{
			name: "an executable on the overlay upper layer is marked upper-layer even without a seen write",
			exec: func(g gen) *event.Event {
				ev := g.exec("c1", 101, "/opt/dropped")
				ev.Process.ExeUpperLayer = true
				return ev
			},
			want: map[string]string{FactDriftUpper: "true"},
		},
		{
			name: "a downloaded script run through its interpreter is drift",
			before: func(g gen) []*event.Event {
				return []*event.Event{g.open("c1", 100, curl, "/tmp/i.sh", true, true, 0)}
			},
			exec: func(g gen) *event.Event { return g.exec("c1", 101, "/bin/dash", "/bin/sh", "/tmp/i.sh") },
			want: map[string]string{FactDriftWritten: "true", FactDriftWriter: curl, FactDriftWriterName: "curl"},
		},
		{
			name: "a downloaded script given by a relative path is found through the working directory",
			before: func(g gen) []*event.Event {
				return []*event.Event{g.open("c1", 100, wget, "/root/run.py", true, true, 0)}
			},
			exec: func(g gen) *event.Event {
				ev := g.exec("c1", 101, "/usr/bin/python3.11", "python3", "-u", "run.py")
				ev.Process.Cwd = "/root"
				return ev
			},
			want: map[string]string{FactDriftWritten: "true", FactDriftWriter: wget, FactDriftWriterName: "wget"},
		},
		{
			name: "a shell command string that mentions a written file is not its execution",
			before: func(g gen) []*event.Event {
				return []*event.Event{g.open("c1", 100, curl, "/tmp/i.sh", true, true, 0)}
			},
			exec: func(g gen) *event.Event { return g.exec("c1", 101, "/bin/dash", "sh", "-c", "cat /tmp/i.sh") },
			want: map[string]string{},
		},
		{
			name: "an image binary nobody wrote gets no drift facts",
			before: func(g gen) []*event.Event {
				return []*event.Event{g.open("c1", 100, "/usr/sbin/nginx", "/var/log/nginx/access.log", true, true, 0)}
			},
			exec: func(g gen) *event.Event { return g.exec("c1", 101, "/usr/sbin/nginx") },
			want: map[string]string{},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, c, _ := newTestSet(t, Options{})
			g := gen{c}
			if tc.before != nil {
				for _, ev := range tc.before(g) {
					s.Observe(ev)
					c.advance(time.Second)
				}
			}
			ev := tc.exec(g)
			s.Observe(ev)
			got := facts(ev)
			delete(got, FactRecon)
			if !maps.Equal(got, tc.want) {
				t.Fatalf("facts on the exec = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDriftForgetsWritesAfterTTL(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after time.Duration
		want  bool
	}{
		{"an exec within the TTL of the write is drift", 59 * time.Minute, true},
		{"an exec after the TTL of the write is not", 61 * time.Minute, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, c, _ := newTestSet(t, Options{DriftTTL: time.Hour})
			g := gen{c}
			s.Observe(g.open("c1", 100, "/usr/bin/curl", "/tmp/x", true, true, 0))
			c.advance(tc.after)
			ev := g.exec("c1", 101, "/tmp/x")
			s.Observe(ev)
			_, got := ev.Fact(FactDriftWritten)
			if got != tc.want {
				t.Fatalf("drift fact present = %v after %v, want %v", got, tc.after, tc.want)
			}
		})
	}
	t.Run("expired writes leave the table as new events arrive", func(t *testing.T) {
		s, c, _ := newTestSet(t, Options{DriftTTL: time.Minute})
		g := gen{c}
		for i := range 100 {
			s.Observe(g.open("c1", 100, "/usr/bin/curl", "/tmp/f"+itoa(i), true, true, 0))
		}
		c.advance(2 * time.Minute)
		for i := range 100 {
			s.Observe(g.open("c2", 100, "/usr/bin/curl", "/tmp/g"+itoa(i), true, true, 0))
		}
		if n := s.Stats().DriftFiles; n != 100 {
			t.Fatalf("remembered files = %d, want 100 (the expired ones dropped)", n)
		}
	})
}

// In busybox images every applet is /bin/busybox: the writer's tool name
// must come from argv[0], or a plain cp would look like a download.
func TestTheWriterIsNamedByTheAppletForMultiCallBinaries(t *testing.T) {
	cases := []struct {
		name string
		p    event.Process
		want string
	}{
		{"busybox wget is wget", event.Process{Exe: "/bin/busybox", Args: []string{"wget", "-O", "/tmp/x", "http://h/x"}}, "wget"},
		{"busybox cp by path is cp", event.Process{Exe: "/bin/busybox", Args: []string{"/bin/cp", "/bin/busybox", "/tmp/x"}}, "cp"},
		{"busybox itself is busybox", event.Process{Exe: "/bin/busybox", Args: []string{"busybox"}}, "busybox"},
		{"curl is curl whatever argv[0] says", event.Process{Exe: "/usr/bin/curl", Args: []string{"notcurl"}}, "curl"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := toolName(&c.p); got != c.want {
				t.Fatalf("toolName = %q, want %q", got, c.want)
			}
		})
	}
}

// Busybox applets are not interpreters: `cat /tmp/notes.txt` or a second
// `wget -O /dev/null` must not look like running a dropped script.
func TestBusyboxAppletsReadingWrittenFilesAreNotDrift(t *testing.T) {
	s := New(Options{}, func(*alert.Alert) {})
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	ctr := &event.Container{ID: "c1", Runtime: "runc"}
	write := func(path string, args ...string) {
		s.Observe(&event.Event{Kind: event.KindOpen, Time: at, Container: ctr,
			Process: event.Process{PID: 10, Exe: "/bin/busybox", Args: args},
			File:    &event.File{Path: path, Write: true, Create: true, Result: 3}})
	}
	exec := func(args ...string) *event.Event {
		ev := &event.Event{Kind: event.KindExec, Time: at, Container: ctr,
			Process: event.Process{PID: 11, Exe: "/bin/busybox", Args: args, Cwd: "/"}}
		s.Observe(ev)
		return ev
	}
	write("/tmp/notes.txt", "sh")
	write("/dev/null", "wget", "-O", "/dev/null", "http://127.0.0.1/")
	for _, ev := range []*event.Event{
		exec("/bin/cat", "/tmp/notes.txt"),
		exec("wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"),
	} {
		if v, ok := ev.Fact(FactDriftWritten); ok {
			t.Errorf("%v: drift fact %q set", ev.Process.Args, v)
		}
	}
	// A script run by busybox sh is still found.
	write("/tmp/run.sh", "wget", "-O", "/tmp/run.sh", "http://127.0.0.1/run.sh")
	if _, ok := exec("sh", "/tmp/run.sh").Fact(FactDriftWritten); !ok {
		t.Error("sh /tmp/run.sh (busybox) was not recognised as running a written script")
	}
}

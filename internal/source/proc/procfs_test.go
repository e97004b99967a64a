package proc

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vigil-sec/vigil/internal/event"
)

func TestParseStat(t *testing.T) {
	tail := " S 1 2 2 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10"
	tests := []struct {
		name    string
		in      string
		want    statInfo
		wantErr bool
	}{
		{"a plain comm", "42 (sleep)" + tail, statInfo{Comm: "sleep", PPID: 1, StartTicks: 123456}, false},
		{"a comm with spaces and parentheses", "42 (a) b (c)" + tail, statInfo{Comm: "a) b (c", PPID: 1, StartTicks: 123456}, false},
		{"a truncated line is an error", "42 (sleep) S 1 2", statInfo{}, true},
		{"no comm is an error", "42 sleep S", statInfo{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	t.Run("start ticks convert to the nanoseconds event.MakeKey expects", func(t *testing.T) {
		si := statInfo{StartTicks: 123456}
		if k := event.MakeKey(1, si.StartNS()); k.Start != 123456 {
			t.Errorf("key start = %d, want 123456 ticks", k.Start)
		}
	})
}

func TestParseStatus(t *testing.T) {
	in := "Name:\tsu\nUid:\t1000\t0\t0\t0\nGid:\t100\t101\t101\t101\n"
	c, err := parseStatus([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if c != (creds{UID: 1000, EUID: 0, GID: 100}) {
		t.Errorf("got %+v, want real uid 1000, effective uid 0, gid 100", c)
	}
	if _, err := parseStatus([]byte("Name:\tx\n")); err == nil {
		t.Error("status without Uid/Gid lines was accepted")
	}
}

func TestParseCgroup(t *testing.T) {
	hybrid := "12:memory:/runc-abc\n11:cpu,cpuacct:/runc-abc\n1:name=systemd:/user.slice\n0::/init.scope\n"
	v2 := "0::/system.slice/containerd.service\n"
	tests := []struct {
		name, in, controller, want string
	}{
		{"a v1 controller's path is kept on hybrid hosts", hybrid, "memory", "/runc-abc"},
		{"a controller in a comma list is found", hybrid, "cpuacct", "/runc-abc"},
		{"the unified line is used when no controller is configured", hybrid, "", "/init.scope"},
		{"the unified line is used on a pure v2 host", v2, "memory", "/system.slice/containerd.service"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCgroup([]byte(tt.in), tt.controller)
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestSplitCmdline(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		max       int
		want      []string
		truncated bool
	}{
		{"arguments are split at NULs", "sh\x00-c\x00exit 3\x00", 100, []string{"sh", "-c", "exit 3"}, false},
		{"an empty argument is kept", "a\x00\x00b\x00", 100, []string{"a", "", "b"}, false},
		{"a zombie has no arguments", "", 100, nil, false},
		{"a long vector is cut and marked", "aaaa\x00bbbb\x00", 6, []string{"aaaa", "b"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, trunc := splitCmdline([]byte(tt.in), tt.max)
			if !slices.Equal(got, tt.want) || trunc != tt.truncated {
				t.Errorf("got %q, %v; want %q, %v", got, trunc, tt.want, tt.truncated)
			}
		})
	}
}

// fakeProc writes a minimal /proc/<pid> for pid with the given start ticks.
func fakeProc(t *testing.T, root string, pid int, comm string, ppid int, startTicks uint64) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(pid))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "ns"), 0o755))
	stat := strconv.Itoa(pid) + " (" + comm + ") S " + strconv.Itoa(ppid) +
		" 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 " + strconv.FormatUint(startTicks, 10) + " 0 0\n"
	must(os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644))
	must(os.WriteFile(filepath.Join(dir, "status"), []byte("Uid:\t1000\t1000\t1000\t1000\nGid:\t50\t50\t50\t50\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "cmdline"), []byte(comm+"\x00--flag\x00"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "cgroup"), []byte("4:memory:/runc-x\n0::/\n"), 0o644))
	must(os.Symlink("/usr/bin/"+comm+" (deleted)", filepath.Join(dir, "exe")))
	must(os.Symlink("/srv", filepath.Join(dir, "cwd")))
	must(os.Symlink("mnt:[4026531841]", filepath.Join(dir, "ns", "mnt")))
	must(os.Symlink("pid:[4026531836]", filepath.Join(dir, "ns", "pid")))
	must(os.Symlink("net:[4026531840]", filepath.Join(dir, "ns", "net")))
}

// testSource is a Source without a socket, for exercising handle.
func testSource(root string) *Source {
	return &Source{
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		procfs:  procReader{root: root, controller: "memory"},
		selfPID: 1,
		lastSeq: map[uint32]uint32{},
	}
}

func collect(s *Source, pes ...procEvent) []*event.Event {
	var out []*event.Event
	for _, pe := range pes {
		s.handle(pe, func(ev *event.Event) { out = append(out, ev) })
	}
	return out
}

func TestHandle(t *testing.T) {
	root := t.TempDir()
	fakeProc(t, root, 4242, "tool", 4000, 500)
	s := testSource(root)
	// Pretend the event happened long after boot so the start time is plausible.
	late := uint64(1 << 50)

	t.Run("an exec is enriched from /proc", func(t *testing.T) {
		evs := collect(s, procEvent{What: procEventExec, PID: 4242, TGID: 4242, TimeNS: late})
		if len(evs) != 1 {
			t.Fatalf("got %d events, want 1", len(evs))
		}
		p := evs[0].Process
		want := event.Process{PID: 4242, PPID: 4000, StartTime: 500 * event.TickNS, UID: 1000, EUID: 1000, GID: 50,
			Comm: "tool", Exe: "/usr/bin/tool", ExeDeleted: true, Args: []string{"tool", "--flag"}, Cwd: "/srv",
			Cgroup: "/runc-x", MntNS: 4026531841, PidNS: 4026531836, NetNS: 4026531840}
		if p.ExeInode != 0 || p.ExeDev != 0 {
			t.Errorf("exe inode/dev %d/%d from a dangling link", p.ExeInode, p.ExeDev)
		}
		if !equalProcess(p, want) {
			t.Errorf("process = %+v\nwant      %+v", p, want)
		}
		if evs[0].Kind != event.KindExec || evs[0].Source != "proc" || evs[0].Parent == nil || evs[0].Parent.PID != 4000 {
			t.Errorf("event = %+v", evs[0])
		}
	})
	t.Run("an exec of a process that is already gone is still emitted", func(t *testing.T) {
		evs := collect(s, procEvent{What: procEventExec, PID: 9999, TGID: 9999, TimeNS: late})
		if len(evs) != 1 || evs[0].Process.PID != 9999 || evs[0].Kind != event.KindExec {
			t.Fatalf("got %+v, want one exec of pid 9999", evs)
		}
	})
	t.Run("a pid reused after the event is not attributed to it", func(t *testing.T) {
		var mono, boot unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono); err != nil {
			t.Fatal(err)
		}
		if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot); err != nil {
			t.Fatal(err)
		}
		// pid 4343 started an hour after the (current) event time.
		fakeProc(t, root, 4343, "newer", 1, uint64(boot.Nano())/event.TickNS+360_000)
		evs := collect(s, procEvent{What: procEventExec, PID: 4343, TGID: 4343, TimeNS: uint64(mono.Nano())})
		if len(evs) != 1 {
			t.Fatalf("got %d events", len(evs))
		}
		if p := evs[0].Process; p.Comm != "" || p.Exe != "" || p.StartTime != 0 {
			t.Errorf("details of the newer process leaked into the event: %+v", p)
		}
	})
	t.Run("a thread fork is not a process fork", func(t *testing.T) {
		if evs := collect(s, procEvent{What: procEventFork, ParentPID: 10, ParentTGID: 10, PID: 11, TGID: 10, TimeNS: late}); len(evs) != 0 {
			t.Errorf("got %+v", evs)
		}
	})
	t.Run("a process fork names child and parent", func(t *testing.T) {
		evs := collect(s, procEvent{What: procEventFork, ParentPID: 4001, ParentTGID: 4000, PID: 4242, TGID: 4242, TimeNS: late})
		if len(evs) != 1 {
			t.Fatalf("got %d events", len(evs))
		}
		ev := evs[0]
		if ev.Kind != event.KindFork || ev.Fork == nil || ev.Fork.ChildPID != 4242 || ev.Parent == nil || ev.Parent.PID != 4000 ||
			ev.Process.PID != 4242 || ev.Process.PPID != 4000 || ev.Process.StartTime != 500*event.TickNS {
			t.Errorf("fork event = %+v (process %+v)", ev, ev.Process)
		}
	})
	t.Run("a thread exit is not a process exit", func(t *testing.T) {
		if evs := collect(s, procEvent{What: procEventExit, PID: 11, TGID: 10}); len(evs) != 0 {
			t.Errorf("got %+v", evs)
		}
	})
	t.Run("a killed process exits with its signal", func(t *testing.T) {
		evs := collect(s, procEvent{What: procEventExit, PID: 77, TGID: 77, ExitCode: 9, ExitSignal: 17, ParentTGID: 5})
		if len(evs) != 1 || evs[0].Exit == nil || evs[0].Exit.Signal != 9 || evs[0].Exit.Code != 0 || evs[0].Process.PPID != 5 {
			t.Fatalf("got %+v", evs)
		}
	})
	t.Run("the sensor's own process is skipped", func(t *testing.T) {
		if evs := collect(s, procEvent{What: procEventExec, PID: 1, TGID: 1}); len(evs) != 0 {
			t.Errorf("got %+v", evs)
		}
	})
	t.Run("other proc event types produce nothing", func(t *testing.T) {
		if evs := collect(s, procEvent{What: procEventComm, PID: 4242, TGID: 4242}, procEvent{What: procEventNone}); len(evs) != 0 {
			t.Errorf("got %+v", evs)
		}
	})
	if got := s.Stats().Delivered; got != 5 {
		t.Errorf("Delivered = %d, want 5", got)
	}
}

func equalProcess(a, b event.Process) bool {
	return a.PID == b.PID && a.PPID == b.PPID && a.StartTime == b.StartTime && a.UID == b.UID && a.EUID == b.EUID &&
		a.GID == b.GID && a.Comm == b.Comm && a.Exe == b.Exe && a.ExeDeleted == b.ExeDeleted &&
		slices.Equal(a.Args, b.Args) && a.Cwd == b.Cwd && a.Cgroup == b.Cgroup && a.MntNS == b.MntNS &&
		a.PidNS == b.PidNS && a.NetNS == b.NetNS
}

func TestSequenceGapsCountAsDropped(t *testing.T) {
	s := testSource(t.TempDir())
	for _, m := range []struct{ cpu, seq uint32 }{{0, 10}, {1, 500}, {0, 11}, {0, 15}, {1, 501}, {1, 503}} {
		s.noteSeq(m.cpu, m.seq)
	}
	if got := s.Stats().Dropped; got != 4 {
		t.Errorf("Dropped = %d, want 4 (3 on cpu 0, 1 on cpu 1)", got)
	}
	t.Run("an overrun counts at least one loss at once", func(t *testing.T) {
		s := testSource(t.TempDir())
		s.noteOverrun()
		if st := s.Stats(); st.Dropped != 1 || st.Overruns != 1 {
			t.Errorf("stats = %+v, want 1 dropped, 1 overrun", st)
		}
	})
	t.Run("a sequence wrap is not a loss", func(t *testing.T) {
		s := testSource(t.TempDir())
		s.noteSeq(0, ^uint32(0))
		s.noteSeq(0, 0)
		if got := s.Stats().Dropped; got != 0 {
			t.Errorf("Dropped = %d, want 0", got)
		}
	})
}

func TestMissingListsNetworkAndFileKinds(t *testing.T) {
	missing := testSource(t.TempDir()).Missing()
	for _, k := range []event.Kind{event.KindConnect, event.KindBind, event.KindListen, event.KindAccept, event.KindDNS,
		event.KindOpen, event.KindChmod, event.KindUnlink, event.KindRename, event.KindMemfd, event.KindPtrace,
		event.KindModule, event.KindSetns, event.KindUnshare, event.KindMount} {
		if !slices.Contains(missing, k) {
			t.Errorf("Missing() = %v lacks %q", missing, k)
		}
	}
	for _, k := range []event.Kind{event.KindExec, event.KindFork, event.KindExit} {
		if slices.Contains(missing, k) {
			t.Errorf("Missing() claims %q, which the proc connector observes", k)
		}
	}
}

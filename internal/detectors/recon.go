package detectors

import (
	"strings"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/event"
)

// FactRecon is set on exec events of discovery commands: distinct discovery
// commands under the same parent within the recon window.
const FactRecon = "recon.burst"

// AlertTypeRecon is the alert the recon detector raises.
const AlertTypeRecon = "vigil.node/ReconnaissanceBurst"

// reconCatalog lists the discovery commands: executables (by basename of
// the executable, or of argv[0] for multi-call binaries such as busybox),
// files whose read is discovery, and the service-account secrets directory.
type reconCatalog struct {
	names   []string       // index → display name
	cmds    map[string]int // executable basename → index
	files   map[string]int // file read by cat/head/... → index
	readers map[string]bool
	secrets int // index of "ls /var/run/secrets"
}

func newReconCatalog() reconCatalog {
	c := reconCatalog{cmds: map[string]int{}, files: map[string]int{}, readers: map[string]bool{}}
	add := func(m map[string]int, name string, keys ...string) {
		for _, k := range keys {
			m[k] = len(c.names)
		}
		c.names = append(c.names, name)
	}
	for _, n := range []string{"id", "whoami", "uname", "hostname", "ps", "netstat", "ss", "mount", "df",
		"nproc", "lscpu", "getent", "lsblk", "arp", "route", "w", "who", "last", "groups", "lsmod",
		"lsof", "hostnamectl", "uptime", "users", "lspci", "dmidecode", "capsh", "ulimit", "iptables"} {
		add(c.cmds, n, n)
	}
	add(c.cmds, "ip", "ip", "ifconfig")
	add(c.cmds, "env", "env", "printenv")
	for _, f := range []string{"/etc/passwd", "/etc/group", "/etc/os-release", "/usr/lib/os-release", "/etc/issue",
		"/etc/hosts", "/etc/resolv.conf", "/proc/version", "/proc/cpuinfo", "/proc/self/cgroup", "/proc/1/cgroup",
		"/proc/self/status", "/proc/mounts", "/etc/hostname", "/etc/lsb-release", "/etc/shells"} {
		add(c.files, "read "+f, f)
	}
	c.secrets = len(c.names)
	c.names = append(c.names, "list /var/run/secrets")
	for _, r := range []string{"cat", "head", "tail", "less", "more", "grep"} {
		c.readers[r] = true
	}
	return c
}

// classify returns the discovery command index of an exec, or -1.
func (c *reconCatalog) classify(p *event.Process) int {
	name := basename(p.Exe)
	if (name == "busybox" || name == "toybox" || name == "") && len(p.Args) > 0 {
		name = basename(p.Args[0])
	}
	if i, ok := c.cmds[name]; ok {
		return i
	}
	if len(p.Args) < 2 {
		return -1
	}
	if c.readers[name] {
		for _, a := range p.Args[1:] {
			if i, ok := c.files[a]; ok {
				return i
			}
		}
		return -1
	}
	if name == "ls" || name == "find" {
		for _, a := range p.Args[1:] {
			if strings.HasPrefix(a, "/var/run/secrets") || strings.HasPrefix(a, "/run/secrets") {
				return c.secrets
			}
		}
	}
	return -1
}

// reconState is one parent's recent discovery commands: last-seen time per
// command index.
type reconState struct {
	seen       []int64
	alertedAt  int64
	hasAlerted bool
}

type reconDetector struct {
	s       *Set
	cat     reconCatalog
	parents *lru[event.Key, reconState]
	window  int64
	pool    [][]int64
}

func (r *reconDetector) init(s *Set) {
	r.s = s
	r.cat = newReconCatalog()
	r.window = int64(s.opts.ReconWindow)
	r.parents = newLRU[event.Key, reconState](s.opts.ReconMaxParents, r.window, func(_ event.Key, st *reconState) {
		if st.seen != nil && len(r.pool) < 256 {
			r.pool = append(r.pool, st.seen)
		}
	})
}

func (r *reconDetector) forget(k event.Key) {
	if r.parents.remove(k) {
		r.s.stats.reconParents.Store(int64(r.parents.len()))
	}
}

// groupKey is the process the burst is counted under: the parent, or the
// grandparent when the parent is a one-shot `sh -c` (a web shell runs each
// command in its own shell).
func groupKey(ev *event.Event) event.Key {
	var parent *event.ProcessRef
	if ev.Parent != nil {
		parent = ev.Parent
	} else if len(ev.Ancestry) > 0 {
		parent = &ev.Ancestry[0]
	}
	if parent == nil {
		return event.Key{PID: ev.Process.PPID}
	}
	if isOneShotShell(parent) && len(ev.Ancestry) > 1 {
		gp := &ev.Ancestry[1]
		return event.MakeKey(gp.PID, gp.StartTime)
	}
	return event.MakeKey(parent.PID, parent.StartTime)
}

func isOneShotShell(p *event.ProcessRef) bool {
	switch basename(p.Exe) {
	case "sh", "bash", "dash", "ash", "zsh", "ksh", "busybox":
	default:
		return false
	}
	for _, a := range p.Args[min(1, len(p.Args)):] {
		if a == "-c" || (len(a) > 1 && a[0] == '-' && a[1] != '-' && strings.IndexByte(a, 'c') > 0) {
			return true
		}
	}
	return false
}

func (r *reconDetector) exec(ev *event.Event, now int64) {
	idx := r.cat.classify(&ev.Process)
	if idx < 0 {
		return
	}
	r.parents.expire(now, 2)
	ev0 := r.parents.evictions
	st, created := r.parents.upsert(groupKey(ev), now)
	if r.parents.evictions != ev0 {
		r.s.stats.reconEvictions.Add(r.parents.evictions - ev0)
	}
	if created || st.seen == nil {
		if n := len(r.pool); n > 0 {
			st.seen = r.pool[n-1]
			r.pool = r.pool[:n-1]
			clear(st.seen)
		} else {
			st.seen = make([]int64, len(r.cat.names))
		}
	}
	r.s.stats.reconParents.Store(int64(r.parents.len()))
	st.seen[idx] = now
	distinct := 0
	for _, t := range st.seen {
		if t != 0 && now-t <= r.window {
			distinct++
		}
	}
	ev.SetFact(FactRecon, r.s.num(distinct))
	if !r.s.opts.RulesRaiseFactAlerts && distinct >= r.s.opts.ReconThreshold && (!st.hasAlerted || now-st.alertedAt > r.window) {
		st.hasAlerted, st.alertedAt = true, now
		var cmds []string
		for i, t := range st.seen {
			if t != 0 && now-t <= r.window {
				cmds = append(cmds, r.cat.names[i])
			}
		}
		r.s.stats.alertsRecon.Add(1)
		r.s.raise(r.s.newAlert(reconSpec, ev, map[string]string{
			"distinctCommands": r.s.num(distinct),
			"commands":         strings.Join(cmds, ", "),
			"windowSeconds":    itoa(int(r.s.opts.ReconWindow.Seconds())),
		}))
	}
}

var reconSpec = alertSpec{
	ruleID:   AlertTypeRecon,
	name:     "Burst of multiple reconnaissance commands detected",
	detector: "recon",
	severity: alert.SeverityLow,
	maturity: "stable",
	description: "Several distinct discovery commands (id, whoami, uname, ps, ip, env, reading /etc/passwd or " +
		"listing /var/run/secrets, ...) ran under the same parent process within seconds. Attackers who gained " +
		"code execution, for example through a web shell, survey the system this way before acting. " +
		"Known false positives: interactive troubleshooting with kubectl exec and diagnostic or inventory " +
		"scripts; exclude such scripts by their executable path and image, or raise the threshold (recon " +
		"threshold, default 5 distinct commands in 10 s).",
	tactics:    []string{"Discovery", "Collection"},
	techniques: []string{"T1082", "T1033"},
	remediation: []string{
		"Identify the parent process: a web server, interpreter or unexpected shell running discovery commands indicates compromise.",
		"If unexpected, isolate the pod, preserve its file system, and review the application's logs for the entry point.",
		"Rotate the service-account token and any credentials the container could read.",
	},
}

package detectors

import (
	"bytes"
	"errors"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/event"
)

// AlertTypeCPU is the alert the CPU detector raises.
const AlertTypeCPU = "vigil.node/SustainedHighCPU"

// clockTicks is USER_HZ, the unit of utime/stime/starttime in /proc/<pid>/stat.
const clockTicks = 100

// cpuSample is one reading of a process's CPU time.
type cpuSample struct {
	at    int64  // ns (Options.Now)
	ticks uint64 // utime + stime
}

// cpuCand is a container process the sampler follows.
type cpuCand struct {
	key event.Key
	// The triggering context for the alert, copied from the event that
	// made the process a candidate (events may be reused by the pipeline).
	ev      event.Event
	samples []cpuSample // ring, oldest first after rotation
	alerted bool
}

// cpuDetector samples /proc/<pid>/stat of container processes. Observe
// (learn/forget) and Run (sample) share cands under mu; sample state
// (samples, alerted) is only touched by the sampler.
type cpuDetector struct {
	s     *Set
	mu    sync.Mutex
	cands map[event.Key]*cpuCand

	// Sampler-only scratch.
	batch []*cpuCand
	buf   []byte
	path  []byte
	keep  int // samples per candidate: window/interval + 1
}

func (c *cpuDetector) init(s *Set) {
	c.s = s
	c.cands = make(map[event.Key]*cpuCand)
	c.buf = make([]byte, 1024)
	c.keep = int(s.opts.CPUWindow/s.opts.CPUInterval) + 1
	if s.opts.CPUWindow%s.opts.CPUInterval != 0 {
		c.keep++
	}
}

// learn makes a container process a sampling candidate.
func (c *cpuDetector) learn(ev *event.Event) {
	cid := containerID(ev)
	if cid == "" || ev.Process.PID <= 0 {
		return
	}
	k := ev.Process.Key()
	c.mu.Lock()
	defer c.mu.Unlock()
	cand := c.cands[k]
	if cand == nil {
		if len(c.cands) >= c.s.opts.CPUMaxProcesses {
			c.s.stats.cpuDropped.Add(1)
			return
		}
		cand = &cpuCand{key: k}
		c.cands[k] = cand
		c.s.stats.cpuProcs.Store(int64(len(c.cands)))
	} else if ev.Kind == event.KindFork || ev.Kind == event.KindSnapshot {
		return // an exec already described it better
	}
	cand.ev = snapshot(ev)
}

// snapshot copies what the alert needs from ev, detached from its storage.
func snapshot(ev *event.Event) event.Event {
	cp := event.Event{Kind: ev.Kind, Time: ev.Time, Node: ev.Node, Source: ev.Source, Process: ev.Process}
	cp.Process.Args = append([]string(nil), ev.Process.Args...)
	if ev.Parent != nil {
		p := *ev.Parent
		p.Args = append([]string(nil), p.Args...)
		cp.Parent = &p
	}
	cp.Ancestry = append([]event.ProcessRef(nil), ev.Ancestry...)
	if ev.Container != nil {
		ct := *ev.Container
		cp.Container = &ct
	}
	return cp
}

func (c *cpuDetector) forget(k event.Key) {
	c.mu.Lock()
	if _, ok := c.cands[k]; ok {
		delete(c.cands, k)
		c.s.stats.cpuProcs.Store(int64(len(c.cands)))
	}
	c.mu.Unlock()
}

// sample reads every candidate once and raises alerts for those above the
// threshold over a whole window.
func (c *cpuDetector) sample() {
	c.mu.Lock()
	c.batch = c.batch[:0]
	for _, cand := range c.cands {
		c.batch = append(c.batch, cand)
	}
	c.mu.Unlock()

	for _, cand := range c.batch {
		ticks, err := c.read(cand.key)
		if err != nil {
			if !errors.Is(err, errGone) {
				c.s.stats.cpuReadErrors.Add(1)
				c.s.opts.Logger.Debug("cpu detector: reading process stat failed; the process is skipped this round",
					"pid", cand.key.PID, "err", err)
				continue
			}
			// Exited, or the pid now belongs to another process: stop
			// following it (its exit event may have been lost).
			c.forget(cand.key)
			continue
		}
		c.s.stats.cpuSamples.Add(1)
		now := c.s.opts.Now().UnixNano()
		if len(cand.samples) == c.keep {
			copy(cand.samples, cand.samples[1:])
			cand.samples = cand.samples[:c.keep-1]
		}
		cand.samples = append(cand.samples, cpuSample{at: now, ticks: ticks})
		if cand.alerted || len(cand.samples) < 2 {
			continue
		}
		first, last := cand.samples[0], cand.samples[len(cand.samples)-1]
		span := last.at - first.at
		if span < int64(c.s.opts.CPUWindow) || last.ticks < first.ticks {
			continue
		}
		pct := float64(last.ticks-first.ticks) / clockTicks / (float64(span) / 1e9) * 100
		if pct < c.s.opts.CPUThreshold {
			continue
		}
		c.mu.Lock()
		_, live := c.cands[cand.key]
		ev := cand.ev
		c.mu.Unlock()
		if !live {
			continue
		}
		cand.alerted = true
		c.s.stats.alertsCPU.Add(1)
		ev.Time = time.Unix(0, now) // the alert is about now, not the exec
		c.s.raise(c.s.newAlert(cpuSpec, &ev, map[string]string{
			"cpuPercent":       strconv.FormatFloat(pct, 'f', 0, 64),
			"windowSeconds":    strconv.FormatFloat(time.Duration(span).Seconds(), 'f', 0, 64),
			"thresholdPercent": strconv.FormatFloat(c.s.opts.CPUThreshold, 'f', 0, 64),
		}))
	}
}

var errGone = errors.New("process gone or pid reused")

// read returns utime+stime of the process key names, or errGone when that
// process no longer exists (including pid reuse, detected by start time).
func (c *cpuDetector) read(k event.Key) (uint64, error) {
	c.path = append(c.path[:0], c.s.opts.ProcRoot...)
	c.path = append(c.path, '/')
	c.path = strconv.AppendInt(c.path, int64(k.PID), 10)
	c.path = append(c.path, "/stat"...)
	fd, err := unix.Open(string(c.path), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
			return 0, errGone
		}
		return 0, &statError{string(c.path), err}
	}
	n, err := unix.Read(fd, c.buf)
	unix.Close(fd)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return 0, errGone
		}
		return 0, &statError{string(c.path), err}
	}
	ticks, start, err := parseCPUStat(c.buf[:n])
	if err != nil {
		return 0, &statError{string(c.path), err}
	}
	if start != k.Start {
		return 0, errGone
	}
	return ticks, nil
}

type statError struct {
	path string
	err  error
}

func (e *statError) Error() string { return "read " + e.path + ": " + e.err.Error() }
func (e *statError) Unwrap() error { return e.err }

// parseCPUStat returns utime+stime (fields 14, 15) and starttime (field 22)
// from /proc/<pid>/stat, in clock ticks. comm (field 2) may contain spaces
// and parentheses, so fields are counted from the last ')'.
func parseCPUStat(b []byte) (ticks, start uint64, err error) {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return 0, 0, errors.New("no (comm) field")
	}
	field := 2 // the field ending at b[end]
	var utime, stime uint64
	var got int
	for i := end + 1; i < len(b) && got < 3; {
		for i < len(b) && b[i] == ' ' {
			i++
		}
		j := i
		for j < len(b) && b[j] != ' ' && b[j] != '\n' {
			j++
		}
		if j == i {
			break
		}
		field++
		switch field {
		case 14, 15, 22:
			v, perr := strconv.ParseUint(string(b[i:j]), 10, 64)
			if perr != nil {
				return 0, 0, errors.New("field " + strconv.Itoa(field) + " is not a number")
			}
			switch field {
			case 14:
				utime = v
			case 15:
				stime = v
			case 22:
				start = v
			}
			got++
		}
		i = j
	}
	if got < 3 {
		return 0, 0, errors.New("too few fields")
	}
	return utime + stime, start, nil
}

var cpuSpec = alertSpec{
	ruleID:   AlertTypeCPU,
	name:     "Process with sustained high CPU usage detected in a container",
	detector: "cpu",
	severity: alert.SeverityMedium,
	maturity: "stable",
	description: "A process in a container used more than the CPU threshold (default 80% of one core) " +
		"continuously for the whole sampling window (default 60 s). The most common malicious cause is " +
		"cryptocurrency mining, which renames or hides its executable to evade name-based rules; this " +
		"detector does not depend on the name. Known false positives: batch jobs, compilers, ML training and " +
		"other compute workloads. Exclude such images or executables, or tune the threshold and window of " +
		"the CPU detector.",
	tactics:    []string{"Impact"},
	techniques: []string{"T1496"},
	remediation: []string{
		"Check whether the workload is expected to be compute-bound; inspect the process's command line, executable and network connections (mining pools, stratum URLs).",
		"If it is not expected, isolate and stop the pod, preserve its image and file system, and find how the process was started (drift, downloads, exposed services).",
		"Set CPU limits on workloads so a compromised container cannot consume a node.",
	},
}

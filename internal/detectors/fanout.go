package detectors

import (
	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/event"
)

// FactFanout is set on connect events: distinct (ip, port) destinations of
// the process within the fan-out window.
const FactFanout = "fanout.distinct"

// AlertTypeFanout is the alert the fan-out detector raises.
const AlertTypeFanout = "vigil.node/NetworkScanningBehavior"

// fanBuckets divides the sliding window; its resolution is window/fanBuckets.
const fanBuckets = 10

type dest struct {
	ip   string
	port uint16
}

// fanState is one process's recent destinations. dests maps a destination
// to the bucket epoch it was last seen in; cnt[e%fanBuckets] counts the
// destinations whose last epoch is e, for the fanBuckets epochs up to head.
type fanState struct {
	dests      map[dest]int64
	cnt        [fanBuckets]int32
	head       int64 // newest epoch seen
	swept      int64 // epoch of the last stale-entry sweep
	alertedAt  int64 // epoch of the last alert
	hasAlerted bool
}

type fanoutDetector struct {
	s        *Set
	procs    *lru[event.Key, *fanState]
	bucketNS int64
	entries  int         // destinations stored across all processes
	pool     []*fanState // reusable states with small maps
}

func (f *fanoutDetector) init(s *Set) {
	f.s = s
	f.bucketNS = max(int64(s.opts.FanoutWindow)/fanBuckets, 1)
	// A process silent for two windows has nothing left to count.
	f.procs = newLRU[event.Key, *fanState](s.opts.FanoutMaxProcesses, 2*int64(s.opts.FanoutWindow), f.release)
}

// release returns a dropped state's storage to the pool.
func (f *fanoutDetector) release(_ event.Key, st **fanState) {
	x := *st
	if x == nil {
		return
	}
	f.entries -= len(x.dests)
	// Maps keep their grown storage when cleared: recycle small ones only.
	if len(x.dests) <= 64 && len(f.pool) < 256 {
		clear(x.dests)
		f.pool = append(f.pool, x)
	}
}

func (f *fanoutDetector) newState() *fanState {
	if n := len(f.pool); n > 0 {
		x := f.pool[n-1]
		f.pool = f.pool[:n-1]
		m := x.dests
		*x = fanState{dests: m}
		return x
	}
	return &fanState{dests: make(map[dest]int64, 4)}
}

func (f *fanoutDetector) forget(k event.Key) {
	if f.procs.remove(k) {
		f.publish()
	}
}

func (f *fanoutDetector) publish() {
	f.s.stats.fanoutProcs.Store(int64(f.procs.len()))
	f.s.stats.fanoutEntries.Store(int64(f.entries))
}

func (f *fanoutDetector) connect(ev *event.Event, now int64) {
	n := ev.Network
	if n == nil || n.DstIP == "" {
		return
	}
	f.procs.expire(now, 2)
	ev0 := f.procs.evictions
	stp, created := f.procs.upsert(ev.Process.Key(), now)
	if f.procs.evictions != ev0 {
		f.s.stats.fanoutEvictions.Add(f.procs.evictions - ev0)
	}
	if created {
		*stp = f.newState()
	}
	st := *stp
	epoch := now / f.bucketNS
	f.advance(st, epoch)
	epoch = st.head // out-of-order events count in the newest bucket

	d := dest{n.DstIP, n.DstPort}
	if last, ok := st.dests[d]; ok {
		if last > epoch-fanBuckets {
			st.cnt[last%fanBuckets]--
		}
		st.dests[d] = epoch
		st.cnt[epoch%fanBuckets]++
	} else {
		if len(st.dests) >= f.s.opts.FanoutMaxPerProcess || f.entries >= f.s.opts.FanoutMaxEntries {
			f.sweep(st)
		}
		if len(st.dests) < f.s.opts.FanoutMaxPerProcess && f.entries < f.s.opts.FanoutMaxEntries {
			st.dests[d] = epoch
			f.entries++
		} else {
			// Saturated: count the destination without remembering it
			// (repeats of it are then counted again, an over-estimate).
			f.s.stats.fanoutSaturated.Add(1)
		}
		st.cnt[epoch%fanBuckets]++
	}
	distinct := 0
	for _, c := range st.cnt {
		distinct += int(c)
	}
	ev.SetFact(FactFanout, f.s.num(distinct))
	f.publish()

	if !f.s.opts.RulesRaiseFactAlerts && distinct >= f.s.opts.FanoutThreshold && (!st.hasAlerted || epoch-st.alertedAt >= fanBuckets) {
		st.hasAlerted, st.alertedAt = true, epoch
		f.s.stats.alertsFanout.Add(1)
		f.s.raise(f.s.newAlert(fanoutSpec, ev, map[string]string{
			"distinctDestinations": f.s.num(distinct),
			"windowSeconds":        itoa(int(f.s.opts.FanoutWindow.Seconds())),
			"lastDestination":      n.DstIP + ":" + itoa(int(n.DstPort)),
		}))
	}
}

// advance moves the window to epoch, zeroing the buckets that fell out.
func (f *fanoutDetector) advance(st *fanState, epoch int64) {
	if epoch <= st.head {
		return
	}
	if epoch-st.head >= fanBuckets {
		st.cnt = [fanBuckets]int32{}
		f.entries -= len(st.dests)
		clear(st.dests)
	} else {
		for e := st.head + 1; e <= epoch; e++ {
			st.cnt[e%fanBuckets] = 0
		}
	}
	st.head = epoch
}

// sweep deletes destinations last seen before the window, at most once per
// epoch so a process at its cap does not rescan on every connect.
func (f *fanoutDetector) sweep(st *fanState) {
	if st.swept == st.head {
		return
	}
	st.swept = st.head
	for d, e := range st.dests {
		if e <= st.head-fanBuckets {
			delete(st.dests, d)
			f.entries--
		}
	}
}

var fanoutSpec = alertSpec{
	ruleID:   AlertTypeFanout,
	name:     "Network scanning tool detected",
	detector: "fanout",
	severity: alert.SeverityMedium,
	maturity: "stable",
	description: "A process connected to many distinct destinations (IP address and port pairs) within a few " +
		"seconds, the pattern of a port or host scan, whatever the tool is called (nmap, masscan, zmap, a " +
		"script). Attackers scan from a compromised container to discover other services in the cluster. " +
		"Known false positives: service-mesh proxies, monitoring agents and crawlers that legitimately reach " +
		"many endpoints; exclude them by image and executable path, or raise the threshold (fan-out " +
		"threshold, default 50 distinct destinations in 10 s).",
	tactics:    []string{"Discovery"},
	techniques: []string{"T1046"},
	remediation: []string{
		"Review the process, its command line and parent: is it expected to contact this many destinations?",
		"If not, isolate the pod with a network policy, capture its image and file system for analysis, and redeploy from a trusted image.",
		"Look for how the tool arrived (drift alerts, downloads) and rotate credentials the container could reach.",
	},
}

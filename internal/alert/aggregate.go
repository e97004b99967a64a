package alert

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// DefaultFlushInterval is how often an Aggregator run by Run emits updates.
const DefaultFlushInterval = 5 * time.Second

// DefaultMaxEntries bounds how many aggregated alerts an Aggregator keeps.
const DefaultMaxEntries = 10000

// lateGrace is how long after a window ends (in event time) its alerts are
// kept for events that arrive slightly out of order.
const lateGrace = 30 * time.Second

// Aggregator folds repeats of an alert into one.
//
// Alerts with the same AlertType, node, container id and process path whose
// StartTime falls into the same window (event time truncated to the window,
// windows aligned to the zero time) are one alert with one ID (see ID).
// Delivery through emit:
//
//   - the first occurrence in a window is emitted at once by Add, Count 1;
//   - repeats only update the kept alert (Count, StartTime..EndTime); each
//     Flush emits every alert that changed since it was last emitted, with
//     the same ID and the cumulative Count — with Run, at most once per
//     flush interval per alert;
//   - an occurrence in a later window is a new alert with a new ID.
//
// So consumers upsert by ID: a later record for an ID replaces the earlier
// one. Records of one ID are emitted in order with increasing Count, with
// one exception: when the memory bound forces out an alert whose window is
// still open (its pending update is emitted first), a later repeat in that
// window starts again at Count 1 with the same ID; consumers that must
// never lose counts keep the larger Count and the union of the times.
//
// Memory is bounded: an alert is forgotten once its window has ended (by
// more than 30 s in event time, judged by the latest event time seen, or
// one window length of wall-clock time after its last repeat), and when
// more than the maximum number of alerts are open the least recently
// repeated one is forgotten (counted by Evicted).
//
// An Aggregator is safe for concurrent use. emit is called by one goroutine
// at a time, in order, without the Aggregator's state locked; it must not
// call back into the Aggregator.
type Aggregator struct {
	window     time.Duration
	flushEvery time.Duration
	maxEntries int
	emit       func(*Alert)
	now        func() time.Time

	mu        sync.Mutex
	entries   map[aggKey]*aggEntry
	lru       *list.List // of *aggEntry, most recently repeated first
	watermark time.Time  // latest event time seen
	evicted   uint64

	emitMu sync.Mutex // held while emitting, so emissions stay in order
}

type aggKey struct {
	alertType, node, containerID, path string
	window                             int64 // window start, Unix ns
}

type aggEntry struct {
	key       aggKey
	al        *Alert
	emitted   int       // Count when last emitted
	touched   time.Time // wall clock of the last Add
	windowEnd time.Time
	elem      *list.Element
}

// Option configures an Aggregator.
type Option func(*Aggregator)

// WithFlushInterval sets how often Run emits updates (default 5 s).
func WithFlushInterval(d time.Duration) Option {
	return func(a *Aggregator) {
		if d > 0 {
			a.flushEvery = d
		}
	}
}

// WithMaxEntries bounds how many alerts are kept open (default 10000).
func WithMaxEntries(n int) Option {
	return func(a *Aggregator) {
		if n > 0 {
			a.maxEntries = n
		}
	}
}

// NewAggregator aggregates over window (DefaultWindow if window <= 0) and
// hands every emitted alert to emit. Call Run to have updates emitted
// periodically, or Flush yourself.
func NewAggregator(window time.Duration, emit func(*Alert), opts ...Option) *Aggregator {
	if window <= 0 {
		window = DefaultWindow
	}
	a := &Aggregator{
		window:     window,
		flushEvery: DefaultFlushInterval,
		maxEntries: DefaultMaxEntries,
		emit:       emit,
		now:        time.Now,
		entries:    make(map[aggKey]*aggEntry),
		lru:        list.New(),
	}
	for _, o := range opts {
		o(a)
	}
	return a
}

// Add takes ownership of al: it sets al.ID for the aggregator's window and
// either emits it (first occurrence in its window) or folds it into the
// alert already open. A zero StartTime means now; a zero EndTime means
// StartTime; a Count below 1 counts as 1.
func (a *Aggregator) Add(al *Alert) {
	now := a.now()
	if al.StartTime.IsZero() {
		al.StartTime = now
	}
	if al.EndTime.Before(al.StartTime) {
		al.EndTime = al.StartTime
	}
	if al.Count < 1 {
		al.Count = 1
	}
	ws := al.StartTime.Truncate(a.window)
	k := aggKey{alertType: al.AlertType, node: al.Entities.Node, window: ws.UnixNano()}
	if c := al.Entities.Container; c != nil {
		k.containerID = c.ID
	}
	if p := al.Entities.Process; p != nil {
		k.path = p.Path
	}
	al.ID = ID(k.alertType, k.node, k.containerID, k.path, ws)

	a.mu.Lock()
	if al.EndTime.After(a.watermark) {
		a.watermark = al.EndTime
	}
	if e, ok := a.entries[k]; ok {
		e.al.Count += al.Count
		if al.StartTime.Before(e.al.StartTime) {
			e.al.StartTime = al.StartTime
		}
		if al.EndTime.After(e.al.EndTime) {
			e.al.EndTime = al.EndTime
		}
		e.touched = now
		a.lru.MoveToFront(e.elem)
		a.mu.Unlock()
		return
	}
	var out []*Alert
	for len(a.entries) >= a.maxEntries {
		e := a.lru.Back().Value.(*aggEntry)
		if snap := e.pending(); snap != nil {
			out = append(out, snap)
		}
		a.remove(e)
		a.evicted++
	}
	e := &aggEntry{key: k, al: al, touched: now, windowEnd: ws.Add(a.window)}
	e.elem = a.lru.PushFront(e)
	a.entries[k] = e
	out = append(out, e.pending())
	a.emitMu.Lock()
	a.mu.Unlock()
	defer a.emitMu.Unlock()
	for _, s := range out {
		a.emit(s)
	}
}

// pending returns a copy of the alert if it changed since last emitted,
// and marks it emitted. Called with a.mu held.
func (e *aggEntry) pending() *Alert {
	if e.al.Count == e.emitted {
		return nil
	}
	e.emitted = e.al.Count
	cp := *e.al
	return &cp
}

func (a *Aggregator) remove(e *aggEntry) {
	a.lru.Remove(e.elem)
	delete(a.entries, e.key)
}

// Flush emits every alert that was repeated since it was last emitted and
// forgets the alerts whose window has closed.
func (a *Aggregator) Flush() {
	now := a.now()
	a.mu.Lock()
	var out []*Alert
	closedBy := a.watermark.Add(-lateGrace)
	for el := a.lru.Back(); el != nil; {
		e := el.Value.(*aggEntry)
		prev := el.Prev()
		if snap := e.pending(); snap != nil {
			out = append(out, snap)
		}
		if !e.windowEnd.After(closedBy) || now.Sub(e.touched) >= a.window {
			a.remove(e)
		}
		el = prev
	}
	if len(out) == 0 {
		a.mu.Unlock()
		return
	}
	a.emitMu.Lock()
	a.mu.Unlock()
	defer a.emitMu.Unlock()
	for _, s := range out {
		a.emit(s)
	}
}

// Run flushes every flush interval until ctx is done, then flushes a last
// time so no repeat is lost, and returns.
func (a *Aggregator) Run(ctx context.Context) {
	t := time.NewTicker(a.flushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			a.Flush()
			return
		case <-t.C:
			a.Flush()
		}
	}
}

// Len reports how many alerts are open (kept for aggregation).
func (a *Aggregator) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.entries)
}

// Evicted reports how many open alerts the memory bound forced out.
func (a *Aggregator) Evicted() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.evicted
}

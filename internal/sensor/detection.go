package sensor

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/detectors"
	"github.com/vigil-sec/vigil/internal/event"
)

// AlertSink receives every alert and every aggregated update of it (same
// ID, higher count): consumers upsert by ID.
type AlertSink interface {
	Write(al *alert.Alert) error
}

// detection is the judging half of the pipeline: stateful detectors
// annotate events with facts, the rule engine matches them, and alerts are
// aggregated before they reach the alert sinks.
type detection struct {
	rules func() *detect.Engine
	dets  *detectors.Set
	agg   *alert.Aggregator
	sinks []AlertSink
	log   interface{ Error(string, ...any) }

	mu     sync.Mutex // serialises sink writes
	alerts *prometheus.CounterVec
	errors prometheus.Counter

	// Alerts whose pod metadata has not arrived wait for it (bounded).
	meta      ContainerMeta
	metaWait  time.Duration
	waitSlots chan struct{}
	waitMu    sync.Mutex // guards closed and waiters.Add
	closed    bool       // shutting down: no new waiters
	waiters   sync.WaitGroup
	waitCtx   context.Context // cancelled at shutdown: waiters stop waiting
	waitStop  context.CancelFunc
	unwaited  prometheus.Counter
}

// maxMetaWaiters bounds the alerts waiting for pod metadata at once; more
// go out with what is known (and are counted).
const maxMetaWaiters = 1024

func (s *Sensor) newDetection() *detection {
	cfg := s.cfg
	if cfg.Rules == nil && !cfg.Detectors {
		return nil
	}
	d := &detection{
		rules: cfg.Rules,
		sinks: cfg.AlertSinks,
		log:   s.log,
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_sensor_alerts_total", Help: "Alerts raised (first occurrence in an aggregation window), by alert type and severity.",
		}, []string{"alert_type", "severity"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_sensor_alert_sink_errors_total", Help: "Alerts an alert sink failed to write (lost).",
		}),
	}
	window := cfg.AlertWindow
	if window <= 0 {
		window = alert.DefaultWindow
	}
	d.agg = alert.NewAggregator(window, d.deliver)
	if cfg.ContainerMeta != nil {
		d.meta = cfg.ContainerMeta
		d.metaWait = cfg.MetaWait
		if d.metaWait <= 0 {
			d.metaWait = 10 * time.Second
		}
		d.waitSlots = make(chan struct{}, maxMetaWaiters)
		d.waitCtx, d.waitStop = context.WithCancel(context.Background())
		d.unwaited = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_sensor_alerts_without_pod_metadata_total",
			Help: "Alerts sent without their pod's name or container name: the metadata did not arrive within --kube-meta-wait, or too many alerts were waiting.",
		})
		s.reg.MustRegister(d.unwaited)
	}
	if cfg.Detectors {
		d.dets = detectors.New(detectors.Options{ProcRoot: cfg.ProcRoot, Logger: s.log, Node: cfg.Node,
			RulesRaiseFactAlerts: cfg.Rules != nil}, d.raise)
	}
	s.reg.MustRegister(d.alerts, d.errors)
	return d
}

// raise takes an alert from a rule match or a detector into aggregation.
// An alert about a pod's container whose metadata has not arrived yet
// waits for it first (off the pipeline goroutine): an alert never names a
// container without its pod only because the container was quicker than
// the API server.
func (d *detection) raise(al *alert.Alert) {
	c := al.Entities.Container
	if d.meta == nil || c == nil || d.meta.Complete(c) {
		d.agg.Add(al)
		return
	}
	select {
	case d.waitSlots <- struct{}{}:
	default:
		d.unwaited.Inc()
		d.agg.Add(al)
		return
	}
	d.waitMu.Lock()
	if d.closed {
		d.waitMu.Unlock()
		<-d.waitSlots
		d.agg.Add(al)
		return
	}
	d.waiters.Add(1)
	d.waitMu.Unlock()
	go func() {
		defer d.waiters.Done()
		defer func() { <-d.waitSlots }()
		ctx, cancel := context.WithTimeout(d.waitCtx, d.metaWait)
		defer cancel()
		cp := *c // the alert owns its copy (alert.FromMatch); fill a new one anyway
		if !d.meta.Wait(ctx, &cp) {
			d.unwaited.Inc()
		}
		al.Entities.Container = &cp
		al.Entities.Namespace, al.Entities.Pod = cp.Namespace, cp.Pod
		d.agg.Add(al)
	}()
}

func (d *detection) match(r *detect.Rule, ev *event.Event) {
	d.raise(alert.FromMatch(r.ID, r.Name, r.Description, r.Severity, r.Maturity,
		r.Tactics, r.Techniques, r.Remediation, ev))
}

// deliver writes an alert (or an aggregated update of it) to every sink.
func (d *detection) deliver(al *alert.Alert) {
	if al.Count == 1 {
		d.alerts.WithLabelValues(al.AlertType, al.Severity).Inc()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, sink := range d.sinks {
		if err := sink.Write(al); err != nil {
			d.errors.Inc()
			d.log.Error("writing an alert failed; it is lost", "alert", al.AlertType, "id", al.ID, "err", err)
		}
	}
}

// observe runs on the pipeline goroutine for every event, before sinks.
func (d *detection) observe(ev *event.Event) {
	if d.dets != nil {
		d.dets.Observe(ev)
	}
	if d.rules != nil {
		if e := d.rules(); e != nil {
			e.Evaluate(ev, d.match)
		}
	}
}

// run drives the background parts (CPU sampler, aggregation flushes)
// until ctx is done, then flushes pending alert updates.
func (d *detection) run(ctx context.Context, wg *sync.WaitGroup) {
	// Aggregation outlives ctx until alerts waiting for pod metadata
	// (which stop waiting when ctx ends) are in.
	aggCtx, aggDone := context.WithCancel(context.Background())
	go func() {
		<-ctx.Done()
		if d.meta != nil {
			d.waitMu.Lock()
			d.closed = true
			d.waitMu.Unlock()
			d.waitStop()
			d.waiters.Wait()
		}
		aggDone()
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.agg.Run(aggCtx)
	}()
	if d.dets != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.dets.Run(ctx)
		}()
	}
}

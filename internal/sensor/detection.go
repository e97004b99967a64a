package sensor

import (
	"context"
	"sync"

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
}

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
	if cfg.Detectors {
		d.dets = detectors.New(detectors.Options{ProcRoot: cfg.ProcRoot, Logger: s.log, Node: cfg.Node,
			RulesRaiseFactAlerts: cfg.Rules != nil}, d.raise)
	}
	s.reg.MustRegister(d.alerts, d.errors)
	return d
}

// raise takes an alert from a rule match or a detector into aggregation.
func (d *detection) raise(al *alert.Alert) { d.agg.Add(al) }

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
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.agg.Run(ctx)
	}()
	if d.dets != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.dets.Run(ctx)
		}()
	}
}

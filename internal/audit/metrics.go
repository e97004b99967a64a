package audit

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the audit collector's Prometheus metrics. One Metrics is
// shared by the follower or webhook and the pipeline of one collector.
type Metrics struct {
	// Events counts audit events judged, by source (audit-log, audit-webhook).
	Events *prometheus.CounterVec
	// Skipped counts input that was not judged, by reason (Skip*).
	Skipped *prometheus.CounterVec
	// Reopened counts the follower reopening the log, by cause (rename, truncate).
	Reopened *prometheus.CounterVec
	// WebhookRequests counts webhook requests by HTTP status code.
	WebhookRequests *prometheus.CounterVec
	// Alerts counts alerts raised (first occurrence), by alert type and severity.
	Alerts *prometheus.CounterVec
	// SinkErrors counts alerts an alert sink failed to write.
	SinkErrors prometheus.Counter
	// QueueDepth is the number of webhook events waiting for the rules.
	QueueDepth prometheus.Gauge

	lost atomic.Uint64
}

// skip counts one piece of input that was not judged.
func (m *Metrics) skip(reason string, n int) {
	m.Skipped.WithLabelValues(reason).Add(float64(n))
	if reason != SkipStage {
		m.lost.Add(uint64(n))
	}
}

// Lost is the number of audit events (or lines, or webhook bodies) that
// were dropped or could not be judged: everything Skipped counts except
// the earlier stages of requests that are judged at their last stage.
func (m *Metrics) Lost() uint64 { return m.lost.Load() }

// NewMetrics creates the metrics and registers them on reg (if not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_audit_events_total", Help: "Kubernetes audit events judged by the rules, by source.",
		}, []string{"source"}),
		Skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_audit_skipped_total", Help: "Audit input not judged, by reason (malformed, unknown_version, stage, oversize, queue_full).",
		}, []string{"reason"}),
		Reopened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_audit_log_reopened_total", Help: "Times the audit log follower started over on a new or truncated file, by cause (rename, truncate).",
		}, []string{"cause"}),
		WebhookRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_audit_webhook_requests_total", Help: "Audit webhook requests, by HTTP status code answered.",
		}, []string{"code"}),
		Alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_audit_alerts_total", Help: "Alerts raised from audit events (first occurrence in an aggregation window), by alert type and severity.",
		}, []string{"alert_type", "severity"}),
		SinkErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_audit_alert_sink_errors_total", Help: "Audit alerts an alert sink failed to write (lost).",
		}),
		QueueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_audit_queue_depth", Help: "Audit events received by the webhook and waiting for the rules.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.Events, m.Skipped, m.Reopened, m.WebhookRequests, m.Alerts, m.SinkErrors, m.QueueDepth)
	}
	return m
}

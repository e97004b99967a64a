package hub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/store"
)

// Alert types the hub raises itself from sensor health reports: losses a
// user must hear about as loudly as a detection.
const (
	AlertEventsDropped = "vigil.sensor/EventsDropped"
	AlertAlertsDropped = "vigil.sensor/AlertsDropped"
	// The same losses of an audit collector (vigil audit).
	AlertAuditEventsDropped = "vigil.audit/AuditEventsDropped"
	AlertAuditAlertsDropped = "vigil.audit/AlertsDropped"
)

// healthAlerts turns a health report's loss counters into alerts. One alert
// per node, kind and UTC day; its count is the sensor's counter (which
// grows while the sensor runs), so repeated reports update one alert.
func healthAlerts(ref store.ClusterRef, h healthReport, now time.Time) []store.Alert {
	clusterID := auth.ClusterID(ref)
	day := now.UTC().Truncate(24 * time.Hour)
	mk := func(typ, name, sev, desc string, n uint64, remediation []string) store.Alert {
		sum := sha256.Sum256([]byte(clusterID + "\x00" + h.Node + "\x00" + typ + "\x00" + day.Format(time.DateOnly)))
		return store.Alert{Cluster: ref, IngestedAt: now, Alert: alert.Alert{
			ID: "health-" + hex.EncodeToString(sum[:12]), AlertType: typ, DisplayName: name, Description: desc,
			Severity: sev, Status: alert.StatusActive, StartTime: now, EndTime: now, Count: int(min(n, 1<<31-1)),
			ResourceID: clusterID, Tactics: []string{"DefenseEvasion"},
			Entities: alert.Entities{Node: h.Node, Facts: map[string]string{
				"drops": strconv.FormatUint(h.Drops, 10), "outboxDropped": strconv.FormatUint(h.OutboxDropped, 10),
				"sourceMode": h.SourceMode, "sensorVersion": h.SensorVersion,
			}},
			RemediationSteps: remediation,
		}}
	}
	// What lost the events and who reports it: a node's sensor, or an
	// audit collector.
	events, alerts := lossAlert{AlertEventsDropped, "vigil sensor lost events",
		fmt.Sprintf("The sensor on node %s lost %d kernel events since it started: its ring buffer was full because events arrived faster than it read them. Activity in that time may have gone unseen, and an attacker can cause this on purpose to hide. The count is the sensor's loss counter.", h.Node, h.Drops),
		[]string{
			"Check the sensor's CPU limit and throttling on that node (vigil_sensor_* metrics, container CPU throttling).",
			"Raise the ring buffer (--ring-size, e.g. 16MiB) in the sensor extension's configuration settings.",
			"Look for a process storm on that node at the time (fork bombs, build jobs): it may be the cause or a deliberate evasion.",
		}}, lossAlert{AlertAlertsDropped, "vigil sensor dropped alerts", "", nil}
	who := "sensor"
	if strings.HasPrefix(h.SourceMode, "audit-") {
		who = "audit collector"
		events = lossAlert{AlertAuditEventsDropped, "vigil audit lost Kubernetes audit events",
			fmt.Sprintf("The audit collector on node %s (%s) could not judge %d Kubernetes audit events since it started: malformed or truncated input, events of an unknown version, oversized lines or requests, or webhook events dropped because the rules fell behind (it never makes the API server wait). Control-plane activity in that time may have gone unseen. The count is the collector's loss counter.", h.Node, h.SourceMode, h.Drops),
			[]string{
				"See which reason grows in vigil_audit_skipped_total{reason} on that collector's metrics (:9465/metrics).",
				"malformed or unknown_version: check the API server's audit backend configuration (audit.k8s.io/v1, JSON format).",
				"queue_full: give the collector more CPU (the extension's resources) or lower the audit policy's volume (level None for noisy reads).",
				"oversize: raise --max-line-bytes or --webhook-max-body, or log fewer request bodies (level Metadata).",
			}}
		alerts = lossAlert{AlertAuditAlertsDropped, "vigil audit dropped alerts", "", nil}
	}
	alerts.desc = fmt.Sprintf("The %s on node %s dropped %d alerts from its full on-disk outbox (oldest first) because the hub was unreachable for too long. Those alerts never reached the hub.", who, h.Node, h.OutboxDropped)
	alerts.remediation = []string{
		fmt.Sprintf("Find out why the node could not reach the hub (vigil preflight, the %s's log lines naming the hub URL).", who),
		"Raise the outbox bound (--outbox-max-bytes) so the node can hold alerts through longer outages.",
	}
	var out []store.Alert
	if h.Drops > 0 {
		out = append(out, mk(events.typ, events.name, alert.SeverityMedium, events.desc, h.Drops, events.remediation))
	}
	if h.OutboxDropped > 0 {
		out = append(out, mk(alerts.typ, alerts.name, alert.SeverityHigh, alerts.desc, h.OutboxDropped, alerts.remediation))
	}
	return out
}

// lossAlert is the text of a loss alert.
type lossAlert struct {
	typ, name, desc string
	remediation     []string
}

// raiseHealthAlerts stores (and publishes) the alerts of a health report.
func (s *Server) raiseHealthAlerts(ctx context.Context, ref store.ClusterRef, h healthReport) error {
	batch := healthAlerts(ref, h, s.cfg.Now())
	if len(batch) == 0 {
		return nil
	}
	res, err := s.st.IngestAlerts(ctx, ref, batch)
	if err != nil {
		return fmt.Errorf("store the health alerts of node %s: %w", h.Node, err)
	}
	s.publish(batch, res)
	return nil
}

// publish hands committed Active alerts to the sinks, unless the batch
// changed nothing (an exact replay).
func (s *Server) publish(batch []store.Alert, res store.IngestResult) {
	sinks := s.currentSinks()
	if len(sinks) == 0 || res.Inserted+res.Updated == 0 {
		return
	}
	for _, a := range batch {
		if a.Status != alert.StatusActive {
			continue
		}
		for _, sink := range sinks {
			sink.Publish(a)
		}
		s.m.publishedAlert.Inc()
	}
}

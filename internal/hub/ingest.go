package hub

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/store"
)

// alertBatch is a decoded, validated ingest batch.
type alertBatch struct {
	Cluster store.ClusterRef
	Node    string
	BatchID string
	Alerts  []alert.Alert
}

type wireBatch struct {
	Cluster string            `json:"cluster"`
	Node    string            `json:"node"`
	BatchID string            `json:"batchId"`
	Alerts  []json.RawMessage `json:"alerts"`
}

// fastBatch decodes a well-formed batch in one pass; a batch it refuses
// is decoded again alert by alert (wireBatch) for an error that names the
// alert and the field.
type fastBatch struct {
	Cluster string        `json:"cluster"`
	Node    string        `json:"node"`
	BatchID string        `json:"batchId"`
	Alerts  []alert.Alert `json:"alerts"`
}

var alertIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// readBody reads an ingest body, gunzipping it when Content-Encoding says
// gzip, refusing more than limit bytes (after decompression) with 413.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return nil, apiErr(http.StatusUnsupportedMediaType, "UnsupportedMediaType", "Content-Type %q is not accepted: send application/json", ct)
		}
	}
	var rd io.Reader = http.MaxBytesReader(nil, r.Body, limit)
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(rd)
		if err != nil {
			return nil, badRequest("body is not gzip although Content-Encoding says gzip: %v", err)
		}
		defer zr.Close()
		rd = zr
	default:
		return nil, apiErr(http.StatusUnsupportedMediaType, "UnsupportedMediaType", "Content-Encoding %q is not accepted: send gzip or no encoding", enc)
	}
	b, err := io.ReadAll(io.LimitReader(rd, limit+1))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe) || int64(len(b)) > limit:
		return nil, apiErr(http.StatusRequestEntityTooLarge, "BatchTooLarge", "body is larger than %d bytes: split it into smaller batches", limit)
	case err != nil && (errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF)):
		return nil, badRequest("gzip body is corrupt: %v", err)
	case err != nil:
		return nil, fmt.Errorf("read request body: %w", err)
	}
	return b, nil
}

// decodeAlertBatch decodes and validates an ingest batch. Unknown fields
// are ignored (a newer sensor must not lose alerts at an older hub);
// everything else is checked, and errors name the field and alert index.
func decodeAlertBatch(data []byte, maxAlerts int) (alertBatch, error) {
	// Evidence may carry NUL characters (raw command lines): PostgreSQL
	// cannot store them, and refusing the batch would lose its alerts, so
	// they become U+FFFD.
	data = bytes.ReplaceAll(data, []byte(`\u0000`), []byte(`\ufffd`))
	if b, ok := decodeFast(data, maxAlerts); ok {
		return b, nil
	}
	var w wireBatch
	if err := strictOne(data, &w); err != nil {
		return alertBatch{}, jsonError("batch", err)
	}
	var b alertBatch
	if w.Cluster == "" {
		return b, badRequest("batch: field cluster is required: the ARM id of the cluster the sensor belongs to")
	}
	ref, err := auth.ParseClusterID(w.Cluster)
	if err != nil {
		return b, badRequest("batch: field cluster: %v", err)
	}
	if w.Alerts == nil {
		return b, badRequest("batch: field alerts is required (an array, may be empty)")
	}
	if len(w.Alerts) > maxAlerts {
		return b, apiErr(http.StatusRequestEntityTooLarge, "BatchTooLarge", "batch has %d alerts; at most %d are accepted per batch: split it", len(w.Alerts), maxAlerts)
	}
	if len(w.Node) > 253 || len(w.BatchID) > 128 {
		return b, badRequest("batch: node (at most 253 characters) or batchId (at most 128) is too long")
	}
	b = alertBatch{Cluster: ref, Node: w.Node, BatchID: w.BatchID, Alerts: make([]alert.Alert, len(w.Alerts))}
	for i, raw := range w.Alerts {
		what := fmt.Sprintf("alerts[%d]", i)
		if err := strictOne(raw, &b.Alerts[i]); err != nil {
			return b, jsonError(what, err)
		}
		if err := validateAlert(&b.Alerts[i]); err != nil {
			return b, badRequest("%s: %v", what, err)
		}
	}
	return b, nil
}

// decodeFast decodes and validates data in one pass; ok is false when
// anything is wrong, and the caller decodes again to say what.
func decodeFast(data []byte, maxAlerts int) (alertBatch, bool) {
	var f fastBatch
	if json.Unmarshal(data, &f) != nil || f.Cluster == "" || f.Alerts == nil || len(f.Alerts) > maxAlerts ||
		len(f.Node) > 253 || len(f.BatchID) > 128 {
		return alertBatch{}, false
	}
	ref, err := auth.ParseClusterID(f.Cluster)
	if err != nil {
		return alertBatch{}, false
	}
	for i := range f.Alerts {
		if validateAlert(&f.Alerts[i]) != nil {
			return alertBatch{}, false
		}
	}
	return alertBatch{Cluster: ref, Node: f.Node, BatchID: f.BatchID, Alerts: f.Alerts}, true
}

// strictOne decodes exactly one JSON value (null is refused).
func strictOne(data []byte, v any) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return io.EOF
	}
	if bytes.Equal(data, []byte("null")) {
		return errors.New("null is not an object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON value")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

func validateAlert(a *alert.Alert) error {
	switch {
	case !alertIDRE.MatchString(a.ID):
		return fmt.Errorf("field id %q is invalid: 1-128 letters, digits, '.', '_' or '-' (the sensor's stable alert id)", a.ID)
	case a.AlertType == "" || len(a.AlertType) > 256:
		return errors.New("field alertType is required (at most 256 characters)")
	case len(a.DisplayName) > 1024 || len(a.Description) > 16384:
		return errors.New("displayName (at most 1024 characters) or description (at most 16384) is too long")
	case a.StartTime.IsZero() || a.EndTime.IsZero():
		return errors.New("fields startTime and endTime are required")
	case a.EndTime.Before(a.StartTime):
		return fmt.Errorf("endTime %s is before startTime %s", a.EndTime.Format(time.RFC3339Nano), a.StartTime.Format(time.RFC3339Nano))
	case a.Count < 1:
		return fmt.Errorf("field count is %d: an alert happened at least once", a.Count)
	}
	if _, ok := canonical(severities, a.Severity); !ok || severityRank(a.Severity) < 0 {
		return fmt.Errorf("field severity %q is invalid: use %s", a.Severity, strings.Join(severities, ", "))
	}
	if a.Status != "" {
		if _, ok := canonical(statuses, a.Status); !ok || a.Status != mustCanonical(statuses, a.Status) {
			return fmt.Errorf("field status %q is invalid: use %s or omit it", a.Status, strings.Join(statuses, ", "))
		}
	}
	return nil
}

func mustCanonical(set []string, v string) string {
	c, _ := canonical(set, v)
	return c
}

type ingestResponse struct {
	Accepted  int `json:"accepted"`
	Inserted  int `json:"inserted"`
	Updated   int `json:"updated"`
	Unchanged int `json:"unchanged"`
}

func (s *Server) ingestAlerts(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	// The token alone already decides most refusals: check before reading.
	if p.Kind != store.TokenSensor {
		return authorize(p, auth.ActionIngest, auth.ClusterID(p.Cluster))
	}
	if ok, wait := s.limit.allow(auth.ClusterID(p.Cluster), s.cfg.Now()); !ok {
		s.m.ingestBatches.WithLabelValues("throttled").Inc()
		return tooMany(w, auth.ClusterID(p.Cluster), wait)
	}
	err := s.ingestAlertsChecked(w, r, p)
	var ae *apiError
	var au *auth.Error
	switch {
	case err == nil:
		s.m.ingestBatches.WithLabelValues("committed").Inc()
	case errors.As(err, &ae) || errors.As(err, &au):
		s.m.ingestBatches.WithLabelValues("rejected").Inc()
	default:
		s.m.ingestBatches.WithLabelValues("failed").Inc()
	}
	return err
}

func (s *Server) ingestAlertsChecked(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	data, err := readBody(r, s.cfg.MaxBatchBytes)
	if err != nil {
		return err
	}
	b, err := decodeAlertBatch(data, s.cfg.MaxBatchAlerts)
	if err != nil {
		return err
	}
	if err := authorize(p, auth.ActionIngest, auth.ClusterID(b.Cluster)); err != nil {
		return err
	}
	now := s.cfg.Now().UTC()
	clusterID := auth.ClusterID(b.Cluster)
	// Fold repeats of one ID within the batch (the aggregator may emit an
	// alert twice with a growing count): the later record wins, count and
	// times merge as the store merges them.
	index := make(map[string]int, len(b.Alerts))
	batch := make([]store.Alert, 0, len(b.Alerts))
	for _, a := range b.Alerts {
		a.Status = alert.StatusActive
		a.ResourceID = clusterID
		if a.Entities.Node == "" {
			a.Entities.Node = b.Node
		}
		if i, ok := index[a.ID]; ok {
			prev := batch[i].Alert
			a.Count = max(a.Count, prev.Count)
			if prev.StartTime.Before(a.StartTime) {
				a.StartTime = prev.StartTime
			}
			if prev.EndTime.After(a.EndTime) {
				a.EndTime = prev.EndTime
			}
			batch[i].Alert = a
			continue
		}
		index[a.ID] = len(batch)
		batch = append(batch, store.Alert{Alert: a, Cluster: b.Cluster, IngestedAt: now})
	}
	suppressed := 0
	if len(batch) > 0 {
		rules, err := s.st.ListSuppressions(r.Context(), b.Cluster.Subscription)
		if err != nil {
			return fmt.Errorf("load suppression rules: %w", err)
		}
		live := rules[:0]
		for _, x := range rules {
			if x.Expires.IsZero() || now.Before(x.Expires) {
				live = append(live, x)
			}
		}
		for i := range batch {
			for _, x := range live {
				if matches(x, &batch[i]) {
					batch[i].Status = alert.StatusDismissed
					batch[i].StatusChangedBy = "suppression/" + x.Name
					batch[i].StatusChangedAt = now
					suppressed++
					break
				}
			}
		}
	}
	res, err := s.st.IngestAlerts(r.Context(), b.Cluster, batch)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) {
		return apiErr(http.StatusNotFound, "ResourceNotFound", "cluster %s is not registered at this hub (deleted?): reconnect it with `vigil connect`", clusterID)
	}
	if err != nil {
		return fmt.Errorf("ingest %d alerts for %s: %w", len(batch), clusterID, err)
	}
	// Committed: acknowledge, then publish.
	s.m.ingestAlerts.WithLabelValues("inserted").Add(float64(res.Inserted))
	s.m.ingestAlerts.WithLabelValues("updated").Add(float64(res.Updated))
	s.m.ingestAlerts.WithLabelValues("unchanged").Add(float64(res.Unchanged))
	s.m.ingestAlerts.WithLabelValues("suppressed").Add(float64(suppressed))
	writeJSON(w, http.StatusOK, ingestResponse{Accepted: len(b.Alerts), Inserted: res.Inserted, Updated: res.Updated, Unchanged: res.Unchanged})
	// A batch that was an exact replay publishes nothing; otherwise the
	// batch's Active alerts are published (sinks upsert by ID).
	s.publish(batch, res)
	return nil
}

// healthReport is the sensor health wire form: store.SensorHealth with the
// cluster as an ARM id string.
type healthReport struct {
	ClusterID      string   `json:"clusterId"`
	Node           string   `json:"node"`
	SourceMode     string   `json:"sourceMode"`
	Drops          uint64   `json:"drops"`
	OutboxDropped  uint64   `json:"outboxDropped"`
	RuleSetVersion string   `json:"ruleSetVersion,omitempty"`
	SensorVersion  string   `json:"sensorVersion,omitempty"`
	Missing        []string `json:"missing,omitempty"`
	// ReportedAt is accepted and replaced by the hub's receive time.
	ReportedAt time.Time `json:"reportedAt,omitzero"`
}

func (s *Server) ingestHealth(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	if p.Kind != store.TokenSensor {
		return authorize(p, auth.ActionIngest, auth.ClusterID(p.Cluster))
	}
	if ok, wait := s.limit.allow(auth.ClusterID(p.Cluster), s.cfg.Now()); !ok {
		return tooMany(w, auth.ClusterID(p.Cluster), wait)
	}
	data, err := readBody(r, 1<<20)
	if err != nil {
		return err
	}
	var h healthReport
	if err := noNUL(data); err != nil {
		return err
	}
	if err := strictOne(data, &h); err != nil {
		return jsonError("health report", err)
	}
	ref, err := auth.ParseClusterID(h.ClusterID)
	if err != nil {
		return badRequest("health report: field clusterId: %v", err)
	}
	if h.Node == "" || len(h.Node) > 253 {
		return badRequest("health report: field node is required (the node's name, at most 253 characters)")
	}
	component := store.ComponentSensor
	switch h.SourceMode {
	case "ebpf", "proc":
	case "audit-log", "audit-webhook":
		component = store.ComponentAudit
	default:
		return badRequest("health report: field sourceMode %q is invalid: use ebpf or proc (a sensor), audit-log or audit-webhook (vigil audit)", h.SourceMode)
	}
	if len(h.Missing) > 64 {
		return badRequest("health report: field missing has more than 64 entries")
	}
	if err := authorize(p, auth.ActionIngest, auth.ClusterID(ref)); err != nil {
		return err
	}
	err = s.st.PutSensorHealth(r.Context(), store.SensorHealth{Cluster: ref, Node: h.Node, Component: component, SourceMode: h.SourceMode, Drops: h.Drops,
		OutboxDropped: h.OutboxDropped, RuleSetVersion: h.RuleSetVersion, SensorVersion: h.SensorVersion, Missing: h.Missing, ReportedAt: s.cfg.Now().UTC()})
	if err != nil {
		return notFound(err, "cluster %s is not registered at this hub: reconnect it with `vigil connect`", h.ClusterID)
	}
	if err := s.raiseHealthAlerts(r.Context(), ref, h); err != nil {
		return err // the report is kept; the sensor retries and the alert follows
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type heartbeatReport struct {
	ClusterID         string `json:"clusterId"`
	AgentVersion      string `json:"agentVersion,omitempty"`
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	NodeCount         int    `json:"nodeCount"`
}

func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	if p.Kind != store.TokenSensor && p.Kind != store.TokenAgent {
		return authorize(p, auth.ActionHeartbeat, auth.ClusterID(p.Cluster))
	}
	data, err := readBody(r, 64<<10)
	if err != nil {
		return err
	}
	var h heartbeatReport
	if err := noNUL(data); err != nil {
		return err
	}
	if err := strictOne(data, &h); err != nil {
		return jsonError("heartbeat", err)
	}
	ref, err := auth.ParseClusterID(h.ClusterID)
	if err != nil {
		return badRequest("heartbeat: field clusterId: %v", err)
	}
	if h.NodeCount < 0 || len(h.AgentVersion) > 64 || len(h.KubernetesVersion) > 64 {
		return badRequest("heartbeat: nodeCount must be ≥ 0 and versions at most 64 characters")
	}
	if err := authorize(p, auth.ActionHeartbeat, auth.ClusterID(ref)); err != nil {
		return err
	}
	err = s.st.RecordHeartbeat(r.Context(), ref, store.Heartbeat{AgentVersion: h.AgentVersion, KubernetesVersion: h.KubernetesVersion,
		NodeCount: h.NodeCount, At: s.cfg.Now().UTC()})
	if err != nil {
		return notFound(err, "cluster %s is not registered at this hub: reconnect it with `vigil connect`", h.ClusterID)
	}
	s.m.heartbeats.Inc()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type extensionStatusReport struct {
	ClusterID         string                  `json:"clusterId"`
	Name              string                  `json:"name"`
	Generation        int64                   `json:"generation"`
	ProvisioningState string                  `json:"provisioningState"`
	Statuses          []store.ExtensionStatus `json:"statuses,omitempty"`
}

func (s *Server) reportExtensionStatus(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	if p.Kind != store.TokenAgent {
		return authorize(p, auth.ActionReportStatus, auth.ClusterID(p.Cluster))
	}
	data, err := readBody(r, 256<<10)
	if err != nil {
		return err
	}
	var x extensionStatusReport
	if err := noNUL(data); err != nil {
		return err
	}
	if err := strictOne(data, &x); err != nil {
		return jsonError("extension status", err)
	}
	ref, err := auth.ParseClusterID(x.ClusterID)
	if err != nil {
		return badRequest("extension status: field clusterId: %v", err)
	}
	if x.Name == "" || x.Generation < 1 {
		return badRequest("extension status: fields name and generation (≥ 1, the desired generation the agent applied) are required")
	}
	switch x.ProvisioningState {
	case store.ProvisioningSucceeded, store.ProvisioningFailed, store.ProvisioningCreating, store.ProvisioningUpdating, store.ProvisioningDeleting, ProvisioningDeleted:
	default:
		return badRequest("extension status: provisioningState %q is invalid: use Succeeded, Failed, Creating, Updating, Deleting or Deleted", x.ProvisioningState)
	}
	if len(x.Statuses) > 32 {
		return badRequest("extension status: at most 32 statuses")
	}
	if err := authorize(p, auth.ActionReportStatus, extensionID(ref, x.Name)); err != nil {
		return err
	}
	if x.ProvisioningState == ProvisioningDeleted {
		return s.confirmDeleted(w, r, ref, x)
	}
	err = s.st.ReportExtensionStatus(r.Context(), ref, x.Name, x.Generation, x.ProvisioningState, x.Statuses)
	if errors.Is(err, store.ErrConflict) {
		return apiErr(http.StatusConflict, "GenerationMismatch", "generation %d of extension %s is not the desired one: read the desired extensions again and apply the current generation", x.Generation, x.Name)
	}
	if err != nil {
		return notFound(err, "extension %s not found on cluster %s: it may have been deleted; read the desired extensions again", x.Name, x.ClusterID)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ProvisioningDeleted is what an agent reports once it removed a Deleting
// extension from its cluster; the hub then deletes the extension.
const ProvisioningDeleted = "Deleted"

func (s *Server) confirmDeleted(w http.ResponseWriter, r *http.Request, ref store.ClusterRef, x extensionStatusReport) error {
	e, err := s.st.GetExtension(r.Context(), ref, x.Name)
	if errors.Is(err, store.ErrNotFound) {
		w.WriteHeader(http.StatusNoContent) // already gone
		return nil
	}
	if err != nil {
		return err
	}
	if e.ProvisioningState != store.ProvisioningDeleting || e.Generation != x.Generation {
		return apiErr(http.StatusConflict, "GenerationMismatch", "extension %s is %s at generation %d, not Deleting at %d: it was changed again; read the desired extensions and apply them", x.Name, e.ProvisioningState, e.Generation, x.Generation)
	}
	if err := s.st.DeleteExtension(r.Context(), ref, x.Name); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("delete extension %s: %w", x.Name, err)
	}
	s.log.Info("extension removed from its cluster and deleted", "cluster", auth.ClusterID(ref), "extension", x.Name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

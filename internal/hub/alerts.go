package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/store"
)

type alertResource struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Properties alertProperties `json:"properties"`
}

// alertProperties is the stored alert, plus (on GET of one alert) the
// alerts related to it.
type alertProperties struct {
	store.Alert
	RelatedAlerts []RelatedAlert `json:"relatedAlerts,omitempty"`
}

// RelatedAlert names another alert about the same pod around the same time
// (e.g. an audit alert about the pod's service account and a runtime alert
// about a process in it): the first step toward incidents.
type RelatedAlert struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	AlertType   string    `json:"alertType"`
	DisplayName string    `json:"displayName"`
	Severity    string    `json:"severity"`
	StartTime   time.Time `json:"startTime"`
	EndTime     time.Time `json:"endTime"`
}

// RelatedWindow is how close in time two alerts about one pod must be to
// be listed as related.
const RelatedWindow = 10 * time.Minute

// RelatedAlerts lists the alerts about a's pod within RelatedWindow of it
// (the API's relatedAlerts; the portal shows them too).
func RelatedAlerts(ctx context.Context, st store.Store, a store.Alert) ([]RelatedAlert, error) {
	if a.Entities.Pod == "" || a.Entities.Namespace == "" {
		return nil, nil
	}
	page, err := st.ListAlerts(ctx, store.AlertFilter{Subscription: a.Cluster.Subscription, ResourceGroup: a.Cluster.ResourceGroup,
		Cluster: a.Cluster.Name, Namespace: a.Entities.Namespace, Since: a.StartTime.Add(-RelatedWindow), Limit: 1000})
	if err != nil {
		return nil, fmt.Errorf("find the alerts related to %s: %w", a.ID, err)
	}
	var out []RelatedAlert
	for _, o := range page.Alerts {
		if o.ID == a.ID || o.Entities.Pod != a.Entities.Pod || o.StartTime.After(a.EndTime.Add(RelatedWindow)) {
			continue
		}
		out = append(out, RelatedAlert{ID: alertID(o.Cluster.Subscription, o.ID), Name: o.ID, AlertType: o.AlertType,
			DisplayName: o.DisplayName, Severity: o.Severity, StartTime: o.StartTime, EndTime: o.EndTime})
	}
	return out, nil
}

func alertID(sub, id string) string {
	return subID(sub) + "/providers/Vigil.Security/alerts/" + id
}

func toAlert(a store.Alert) alertResource {
	return alertResource{ID: alertID(a.Cluster.Subscription, a.ID), Name: a.ID, Type: "Vigil.Security/alerts", Properties: alertProperties{Alert: a}}
}

var severities = []string{alert.SeverityInformational, alert.SeverityLow, alert.SeverityMedium, alert.SeverityHigh}
var statuses = []string{alert.StatusActive, alert.StatusResolved, alert.StatusDismissed}

// canonical returns the element of set equal to v ignoring case.
func canonical(set []string, v string) (string, bool) {
	for _, s := range set {
		if strings.EqualFold(s, v) {
			return s, true
		}
	}
	return "", false
}

func severityRank(s string) int {
	for i, v := range severities {
		if v == s {
			return i
		}
	}
	return -1
}

func parseTimeParam(name, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		if d, derr := time.ParseDuration(v); derr == nil && d > 0 {
			return now.Add(-d), nil
		}
		return time.Time{}, badRequest("%s=%q is not a time: use RFC 3339 (2026-11-01T12:00:00Z) or a duration back from now (24h)", name, v)
	}
	return t, nil
}

// alertFilter builds the store filter from the query, narrowed to what p
// may read within subscription sub.
func alertFilter(r *http.Request, p auth.Principal, sub string, now time.Time) (store.AlertFilter, error) {
	scope, err := auth.ListScope(p, auth.ActionRead, subID(sub))
	if err != nil {
		return store.AlertFilter{}, err
	}
	q := r.URL.Query()
	f := store.AlertFilter{Subscription: sub, Namespace: q.Get("namespace"), AlertType: q.Get("alertType"),
		Text: q.Get("q"), ResourceGroup: q.Get("resourceGroup"), Cursor: q.Get("$skipToken")}
	for _, v := range splitList(q.Get("severity")) {
		c, ok := canonical(severities, v)
		if !ok {
			return f, badRequest("severity=%q is not a severity: use %s (comma-separated for several)", v, strings.Join(severities, ", "))
		}
		f.Severity = append(f.Severity, c)
	}
	for _, v := range splitList(q.Get("status")) {
		c, ok := canonical(statuses, v)
		if !ok {
			return f, badRequest("status=%q is not a status: use %s (comma-separated for several)", v, strings.Join(statuses, ", "))
		}
		f.Status = append(f.Status, c)
	}
	if c := q.Get("cluster"); c != "" {
		if strings.HasPrefix(c, "/") {
			ref, err := auth.ParseClusterID(c)
			if err != nil {
				return f, badRequest("cluster=%v", err)
			}
			if ref.Subscription != sub {
				return f, badRequest("cluster=%s is in subscription %s, not %s", c, ref.Subscription, sub)
			}
			if f.ResourceGroup != "" && f.ResourceGroup != ref.ResourceGroup {
				return f, badRequest("cluster=%s is not in resourceGroup=%s", c, f.ResourceGroup)
			}
			f.ResourceGroup, f.Cluster = ref.ResourceGroup, ref.Name
		} else {
			f.Cluster = c
		}
	}
	if f.Since, err = parseTimeParam("since", q.Get("since"), now); err != nil {
		return f, err
	}
	if f.Until, err = parseTimeParam("until", q.Get("until"), now); err != nil {
		return f, err
	}
	if v := q.Get("$top"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return f, badRequest("$top=%q is invalid: use a number from 1 to 1000", v)
		}
		f.Limit = n
	}
	if v := q.Get("$orderby"); v != "" {
		switch v {
		case "endTime", "startTime", "severity", "count":
			f.Order = v
		default:
			return f, badRequest("$orderby=%q is invalid: use endTime, startTime, severity or count", v)
		}
	}
	// Narrow to the principal's scope.
	if scope != subID(sub) {
		if rest, ok := strings.CutPrefix(scope, rgID(sub, "")); ok {
			g, c, _ := strings.Cut(rest, "/providers/Vigil.Kubernetes/connectedClusters/")
			if f.ResourceGroup != "" && f.ResourceGroup != g {
				return f, authorize(p, auth.ActionRead, rgID(sub, f.ResourceGroup))
			}
			f.ResourceGroup = g
			if c != "" {
				if f.Cluster != "" && f.Cluster != c {
					return f, authorize(p, auth.ActionRead, auth.ClusterID(store.ClusterRef{Subscription: sub, ResourceGroup: g, Name: f.Cluster}))
				}
				f.Cluster = c
			}
		}
	}
	return f, nil
}

func requestBase(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	sub := r.PathValue("sub")
	f, err := alertFilter(r, p, sub, s.cfg.Now())
	if err != nil {
		return err
	}
	page, err := s.st.ListAlerts(r.Context(), f)
	if err != nil {
		if errors.Is(err, store.ErrInvalid) {
			return badRequest("$skipToken is invalid or stale: start again without it")
		}
		return fmt.Errorf("list alerts: %w", err)
	}
	out := armList{Value: make([]any, 0, len(page.Alerts))}
	for _, a := range page.Alerts {
		out.Value = append(out.Value, toAlert(a))
	}
	if page.NextCursor != "" {
		q := r.URL.Query()
		q.Set("$skipToken", page.NextCursor)
		u := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
		out.NextLink = requestBase(r) + u.String()
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// loadAlert gets an alert of subscription sub that p may act on.
func (s *Server) loadAlert(r *http.Request, p auth.Principal, action auth.Action) (store.Alert, error) {
	sub, id := r.PathValue("sub"), r.PathValue("alertId")
	notFoundErr := apiErr(http.StatusNotFound, "ResourceNotFound", "alert '%s' not found in subscription '%s'; list alerts with `vigil alerts list`", id, sub)
	if err := auth.Authorize(p, action, subID(sub)); err != nil {
		// Narrower principals are checked against the alert's cluster below.
		if _, lerr := auth.ListScope(p, action, subID(sub)); lerr != nil {
			return store.Alert{}, err
		}
	}
	a, err := s.st.GetAlert(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return a, notFoundErr
	}
	if err != nil {
		return a, fmt.Errorf("get alert %s: %w", id, err)
	}
	if a.Cluster.Subscription != sub {
		return a, notFoundErr
	}
	if err := authorize(p, action, auth.ClusterID(a.Cluster)); err != nil {
		return a, err
	}
	return a, nil
}

func (s *Server) getAlert(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	a, err := s.loadAlert(r, p, auth.ActionRead)
	if err != nil {
		return err
	}
	out := toAlert(a)
	if out.Properties.RelatedAlerts, err = RelatedAlerts(r.Context(), s.st, a); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) setAlertStatus(w http.ResponseWriter, r *http.Request, p auth.Principal, status string) error {
	a, err := s.loadAlert(r, p, auth.ActionWrite)
	if err != nil {
		return err
	}
	out, err := s.st.UpdateAlertStatus(r.Context(), a.ID, status, p.String(), s.cfg.Now().UTC())
	if err != nil {
		return notFound(err, "alert '%s' was deleted meanwhile", a.ID)
	}
	writeJSON(w, http.StatusOK, toAlert(out))
	return nil
}

func (s *Server) patchAlert(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var in struct {
		Properties struct {
			Status string `json:"status"`
		} `json:"properties"`
	}
	if err := decodeBody(r, &in); err != nil {
		return err
	}
	st, ok := canonical(statuses, in.Properties.Status)
	if !ok {
		return badRequest("properties.status %q is invalid: use Active, Resolved or Dismissed", in.Properties.Status)
	}
	return s.setAlertStatus(w, r, p, st)
}

func (s *Server) alertAction(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var st string
	switch r.PathValue("action") {
	case "dismiss":
		st = alert.StatusDismissed
	case "resolve":
		st = alert.StatusResolved
	case "activate":
		st = alert.StatusActive
	default:
		return apiErr(http.StatusNotFound, "ResourceNotFound", "alert action %q does not exist: use dismiss, resolve or activate", r.PathValue("action"))
	}
	return s.setAlertStatus(w, r, p, st)
}

// ---- suppression rules

type suppressionResource struct {
	ID         string                 `json:"id,omitempty"`
	Name       string                 `json:"name,omitempty"`
	Type       string                 `json:"type,omitempty"`
	Properties *suppressionProperties `json:"properties,omitempty"`
}

type suppressionProperties struct {
	Match   map[string]string `json:"match"`
	Reason  string            `json:"reason,omitempty"`
	Expires time.Time         `json:"expires,omitzero"`
	// Read-only.
	State     string    `json:"state,omitempty"` // Enabled, Expired
	CreatedBy string    `json:"createdBy,omitempty"`
	CreatedAt time.Time `json:"createdAt,omitzero"`
}

func suppressionID(sub, name string) string {
	return subID(sub) + "/providers/Vigil.Security/alertsSuppressionRules/" + name
}

func (s *Server) toSuppression(x store.Suppression) suppressionResource {
	state := "Enabled"
	if !x.Expires.IsZero() && !s.cfg.Now().Before(x.Expires) {
		state = "Expired"
	}
	return suppressionResource{ID: suppressionID(x.Subscription, x.Name), Name: x.Name, Type: "Vigil.Security/alertsSuppressionRules",
		Properties: &suppressionProperties{Match: x.Match, Reason: x.Reason, Expires: x.Expires, State: state, CreatedBy: x.CreatedBy, CreatedAt: x.CreatedAt}}
}

// decodeSuppression reads and validates a rule body.
func decodeSuppression(r *http.Request) (suppressionProperties, error) {
	var in suppressionResource
	if err := decodeBody(r, &in); err != nil {
		return suppressionProperties{}, err
	}
	if in.Properties == nil || len(in.Properties.Match) == 0 {
		return suppressionProperties{}, badRequest("properties.match is required: map alert fields to values, e.g. {\"alertType\":\"vigil.node/TestAlert\",\"entities.namespace\":\"ci\"}; fields: %s", strings.Join(MatchFields(), ", "))
	}
	for k, v := range in.Properties.Match {
		if _, ok := matchFields[k]; !ok {
			return suppressionProperties{}, badRequest("properties.match.%s is not a field a rule can match; use one of %s", k, strings.Join(MatchFields(), ", "))
		}
		if v == "" {
			return suppressionProperties{}, badRequest("properties.match.%s is empty: give the value it must equal", k)
		}
	}
	if len(in.Properties.Reason) > 1024 {
		return suppressionProperties{}, badRequest("properties.reason is longer than 1024 characters")
	}
	return *in.Properties, nil
}

func (s *Server) putSuppression(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	sub, name := r.PathValue("sub"), r.PathValue("rule")
	if err := authorize(p, auth.ActionWrite, suppressionID(sub, name)); err != nil {
		return err
	}
	if err := checkName("suppression rule", name); err != nil {
		return err
	}
	in, err := decodeSuppression(r)
	if err != nil {
		return err
	}
	now := s.cfg.Now().UTC()
	if !in.Expires.IsZero() && !in.Expires.After(now) {
		return badRequest("properties.expires %s is in the past: give a future time or omit it for a rule that never expires", in.Expires.Format(time.RFC3339))
	}
	_, err = s.st.GetSuppression(r.Context(), sub, name)
	existed := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	out, err := s.st.PutSuppression(r.Context(), store.Suppression{Subscription: sub, Name: name, Match: in.Match, Reason: in.Reason,
		Expires: in.Expires.UTC(), CreatedBy: p.String(), CreatedAt: now})
	if err != nil {
		return fmt.Errorf("put suppression rule %s: %w", name, err)
	}
	writeJSON(w, createdOrOK(existed), s.toSuppression(out))
	return nil
}

func (s *Server) getSuppression(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	sub, name := r.PathValue("sub"), r.PathValue("rule")
	if err := authorize(p, auth.ActionRead, suppressionID(sub, name)); err != nil {
		return err
	}
	x, err := s.st.GetSuppression(r.Context(), sub, name)
	if err != nil {
		return notFound(err, "suppression rule '%s' not found in subscription '%s'; list them with GET /subscriptions/%s/providers/Vigil.Security/alertsSuppressionRules", name, sub, sub)
	}
	writeJSON(w, http.StatusOK, s.toSuppression(x))
	return nil
}

func (s *Server) listSuppressions(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	sub := r.PathValue("sub")
	if err := authorize(p, auth.ActionRead, subID(sub)+"/providers/Vigil.Security/alertsSuppressionRules"); err != nil {
		return err
	}
	xs, err := s.st.ListSuppressions(r.Context(), sub)
	if err != nil {
		return fmt.Errorf("list suppression rules: %w", err)
	}
	sort.Slice(xs, func(i, j int) bool { return xs[i].Name < xs[j].Name })
	out := armList{Value: []any{}}
	for _, x := range xs {
		out.Value = append(out.Value, s.toSuppression(x))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) deleteSuppression(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	sub, name := r.PathValue("sub"), r.PathValue("rule")
	if err := authorize(p, auth.ActionWrite, suppressionID(sub, name)); err != nil {
		return err
	}
	err := s.st.DeleteSuppression(r.Context(), sub, name)
	if errors.Is(err, store.ErrNotFound) {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete suppression rule %s: %w", name, err)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// previewScanLimit bounds how many alerts a preview looks at.
const previewScanLimit = 200_000

// previewSuppression counts the existing alerts a rule (sent in the body,
// not stored) would match.
func (s *Server) previewSuppression(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	sub, name := r.PathValue("sub"), r.PathValue("rule")
	if err := authorize(p, auth.ActionRead, suppressionID(sub, name)); err != nil {
		return err
	}
	in, err := decodeSuppression(r)
	if err != nil {
		return err
	}
	rule := store.Suppression{Subscription: sub, Name: name, Match: in.Match}
	f := store.AlertFilter{Subscription: sub, AlertType: in.Match["alertType"], Namespace: in.Match["entities.namespace"], Limit: 1000}
	var matching, active, scanned int
	truncated := false
	for {
		page, err := s.st.ListAlerts(r.Context(), f)
		if err != nil {
			return fmt.Errorf("preview suppression rule %s: %w", name, err)
		}
		for i := range page.Alerts {
			if matches(rule, &page.Alerts[i]) {
				matching++
				if page.Alerts[i].Status == alert.StatusActive {
					active++
				}
			}
		}
		scanned += len(page.Alerts)
		if page.NextCursor == "" {
			break
		}
		if scanned >= previewScanLimit {
			truncated = true
			break
		}
		f.Cursor = page.NextCursor
	}
	writeJSON(w, http.StatusOK, map[string]any{"matchingAlerts": matching, "activeMatchingAlerts": active, "scannedAlerts": scanned, "truncated": truncated})
	return nil
}

// matchFields are the alert fields a suppression rule may match, with how
// to read each.
var matchFields = map[string]func(a *store.Alert) string{
	"alertType":   func(a *store.Alert) string { return a.AlertType },
	"severity":    func(a *store.Alert) string { return a.Severity },
	"displayName": func(a *store.Alert) string { return a.DisplayName },
	"maturity":    func(a *store.Alert) string { return a.Maturity },
	"detector":    func(a *store.Alert) string { return a.Detector },
	"resourceId":  func(a *store.Alert) string { return a.ResourceID },
	"cluster":     func(a *store.Alert) string { return a.Cluster.Name },
	"resourceGroup": func(a *store.Alert) string {
		return a.Cluster.ResourceGroup
	},
	"entities.node":      func(a *store.Alert) string { return a.Entities.Node },
	"entities.namespace": func(a *store.Alert) string { return a.Entities.Namespace },
	"entities.pod":       func(a *store.Alert) string { return a.Entities.Pod },
	"entities.file":      func(a *store.Alert) string { return a.Entities.File },
	"entities.container.image": func(a *store.Alert) string {
		if a.Entities.Container == nil {
			return ""
		}
		return a.Entities.Container.Image
	},
	"entities.container.name": func(a *store.Alert) string {
		if a.Entities.Container == nil {
			return ""
		}
		return a.Entities.Container.Name
	},
	"entities.container.id": func(a *store.Alert) string {
		if a.Entities.Container == nil {
			return ""
		}
		return a.Entities.Container.ID
	},
	"entities.process.path": func(a *store.Alert) string {
		if a.Entities.Process == nil {
			return ""
		}
		return a.Entities.Process.Path
	},
	"entities.process.commandLine": func(a *store.Alert) string {
		if a.Entities.Process == nil {
			return ""
		}
		return a.Entities.Process.CommandLine
	},
	"entities.process.user": func(a *store.Alert) string {
		if a.Entities.Process == nil {
			return ""
		}
		return a.Entities.Process.User
	},
	"entities.parentProcess.path": func(a *store.Alert) string {
		if a.Entities.Parent == nil {
			return ""
		}
		return a.Entities.Parent.Path
	},
	"entities.parentProcess.commandLine": func(a *store.Alert) string {
		if a.Entities.Parent == nil {
			return ""
		}
		return a.Entities.Parent.CommandLine
	},
	"entities.network.ip": func(a *store.Alert) string {
		if a.Entities.Network == nil {
			return ""
		}
		return a.Entities.Network.IP
	},
	"entities.network.domain": func(a *store.Alert) string {
		if a.Entities.Network == nil {
			return ""
		}
		return a.Entities.Network.Domain
	},
	"entities.network.port": func(a *store.Alert) string {
		if a.Entities.Network == nil || a.Entities.Network.Port == 0 {
			return ""
		}
		return strconv.Itoa(int(a.Entities.Network.Port))
	},
}

// MatchFields lists the field paths suppression rules can match.
func MatchFields() []string {
	out := make([]string, 0, len(matchFields))
	for k := range matchFields {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// matches reports whether every field of the rule equals the alert's.
func matches(rule store.Suppression, a *store.Alert) bool {
	if len(rule.Match) == 0 {
		return false
	}
	for k, want := range rule.Match {
		get, ok := matchFields[k]
		if !ok || get(a) != want {
			return false
		}
	}
	return true
}

// ---- recommendations

type recommendation struct {
	ID         string                   `json:"id"`
	Name       string                   `json:"name"`
	Type       string                   `json:"type"`
	Properties recommendationProperties `json:"properties"`
}

type recommendationProperties struct {
	DisplayName string `json:"displayName"`
	Description string `json:"description"`
	Severity    string `json:"severity"`
	ResourceID  string `json:"resourceId"`
	Remediation string `json:"remediation"`
}

var recNameRE = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func (s *Server) listRecommendations(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	sub := r.PathValue("sub")
	scope, err := auth.ListScope(p, auth.ActionRead, subID(sub))
	if err != nil {
		return err
	}
	out := armList{Value: []any{}}
	add := func(kind, resourceID string, props recommendationProperties) {
		name := kind + "-" + strings.Trim(recNameRE.ReplaceAllString(strings.TrimPrefix(resourceID, subID(sub)), "-"), "-")
		props.ResourceID = resourceID
		out.Value = append(out.Value, recommendation{ID: subID(sub) + "/providers/Vigil.Security/recommendations/" + name,
			Name: name, Type: "Vigil.Security/recommendations", Properties: props})
	}
	if auth.Covers(scope, planID(sub)) {
		pl, err := s.st.GetPlan(r.Context(), sub)
		if err != nil {
			return fmt.Errorf("get plan: %w", err)
		}
		if !pl.Enabled {
			add("enableContainersPlan", planID(sub), recommendationProperties{
				DisplayName: "Enable the Containers plan",
				Description: "Runtime threat detection is off for this subscription: alerts from its clusters are not produced.",
				Severity:    alert.SeverityHigh,
				Remediation: "PUT " + planID(sub) + " with {\"properties\":{\"pricingTier\":\"Standard\"}} (an Owner token is needed).",
			})
		}
	}
	cs, err := s.st.ListClusters(r.Context(), sub, "")
	if err != nil {
		return fmt.Errorf("list clusters: %w", err)
	}
	for _, c := range cs {
		id := auth.ClusterID(c.ClusterRef)
		if !auth.Covers(scope, id) {
			continue
		}
		switch c.ConnectivityStatus {
		case store.Offline, store.Expired:
			add("reconnectCluster", id, recommendationProperties{
				DisplayName: "Connected cluster is " + c.ConnectivityStatus,
				Description: fmt.Sprintf("Cluster %s has not sent a heartbeat since %s; its agent cannot reach the hub.", c.Name, c.LastHeartbeat.UTC().Format(time.RFC3339)),
				Severity:    alert.SeverityMedium,
				Remediation: "Check the agent pods in namespace vigil-system (`kubectl -n vigil-system get pods`) and run `vigil preflight` from the cluster's network.",
			})
		}
		exts, err := s.st.ListExtensions(r.Context(), c.ClusterRef)
		if err != nil {
			return fmt.Errorf("list extensions of %s: %w", c.Name, err)
		}
		hasSensor := false
		for _, e := range exts {
			if e.ExtensionType == "vigil.sensor" {
				hasSensor = true
			}
			if e.ProvisioningState == store.ProvisioningFailed {
				add("fixExtension", extensionID(c.ClusterRef, e.Name), recommendationProperties{
					DisplayName: "Extension failed to install",
					Description: fmt.Sprintf("Extension %s (%s) on cluster %s is in state Failed.", e.Name, e.ExtensionType, c.Name),
					Severity:    alert.SeverityMedium,
					Remediation: fmt.Sprintf("Read its statuses with `vigil extension show --cluster-name %s --resource-group %s --name %s` and fix or recreate it.", c.Name, c.ResourceGroup, e.Name),
				})
			}
		}
		if !hasSensor && c.Distribution != "standalone" {
			add("installSensor", id, recommendationProperties{
				DisplayName: "Connected clusters should have the vigil sensor extension installed",
				Description: fmt.Sprintf("Cluster %s has no vigil.sensor extension, so nothing watches its nodes for threats.", c.Name),
				Severity:    alert.SeverityHigh,
				Remediation: fmt.Sprintf("vigil extension create --cluster-name %s --resource-group %s --extension-type vigil.sensor --name vigil-sensor", c.Name, c.ResourceGroup),
			})
		}
		health, err := s.st.ListSensorHealth(r.Context(), c.ClusterRef)
		if err != nil {
			return fmt.Errorf("list sensor health of %s: %w", c.Name, err)
		}
		for _, h := range health {
			if h.Component == store.ComponentSensor && h.SourceMode != "" && h.SourceMode != "ebpf" {
				add("sensorFallback", id+"/nodes/"+h.Node, recommendationProperties{
					DisplayName: "Sensor runs without eBPF",
					Description: fmt.Sprintf("The sensor on node %s of cluster %s runs in %s mode and cannot see: %s.", h.Node, c.Name, h.SourceMode, strings.Join(h.Missing, ", ")),
					Severity:    alert.SeverityMedium,
					Remediation: "Run the node on Linux ≥ 5.11 with BTF (/sys/kernel/btf/vmlinux) and give the sensor its privileges; see docs/sensor.md.",
				})
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

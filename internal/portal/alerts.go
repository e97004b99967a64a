package portal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/vigil-sec/vigil/internal/hub"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/store"
)

var severities = []string{alert.SeverityHigh, alert.SeverityMedium, alert.SeverityLow, alert.SeverityInformational}
var statuses = []string{alert.StatusActive, alert.StatusResolved, alert.StatusDismissed}

// ranges are the time ranges of the alerts page with their chart buckets.
var ranges = []struct {
	Name   string
	Label  string
	Span   time.Duration
	Bucket time.Duration
}{
	{"1h", "Last hour", time.Hour, 5 * time.Minute},
	{"24h", "Last 24 hours", 24 * time.Hour, time.Hour},
	{"7d", "Last 7 days", 7 * 24 * time.Hour, 24 * time.Hour},
	{"30d", "Last 30 days", 30 * 24 * time.Hour, 24 * time.Hour},
}

const defaultRange = "7d"

// listQuery is the alerts page's filter, as the URL carries it.
type listQuery struct {
	Severity  []string
	Status    []string
	Cluster   string // ARM id
	Namespace string
	Text      string
	Range     string
	Order     string
	Cursor    string

	filter store.AlertFilter
	since  time.Time
}

// scopeParts splits a read scope into the store filter's fields.
func scopeParts(scope string) (sub, rg, cluster string) {
	if scope == "/" {
		return "", "", ""
	}
	parts := strings.Split(strings.TrimPrefix(scope, "/"), "/")
	if len(parts) >= 2 {
		sub = parts[1]
	}
	if len(parts) >= 4 {
		rg = parts[3]
	}
	if len(parts) >= 8 {
		cluster = parts[7]
	}
	return sub, rg, cluster
}

// readScope is the part of the hub the session may read (as the API's
// list routes narrow it).
func readScope(pr auth.Principal) (string, error) {
	return auth.ListScope(pr, auth.ActionRead, "/")
}

func (p *Portal) parseListQuery(r *http.Request, s *session) (listQuery, error) {
	q := r.URL.Query()
	lq := listQuery{Namespace: strings.TrimSpace(q.Get("namespace")), Text: strings.TrimSpace(q.Get("q")), Range: q.Get("range"),
		Order: q.Get("order"), Cursor: q.Get("cursor"), Cluster: q.Get("cluster")}
	scope, err := readScope(s.principal)
	if err != nil {
		return lq, err
	}
	f := store.AlertFilter{Limit: 50, Namespace: lq.Namespace, Text: lq.Text, Cursor: lq.Cursor}
	f.Subscription, f.ResourceGroup, f.Cluster = scopeParts(scope)
	for _, v := range q["severity"] {
		c, ok := canonical(severities, v)
		if !ok {
			return lq, fmt.Errorf("severity %q is not a severity: use %s", v, strings.Join(severities, ", "))
		}
		lq.Severity = append(lq.Severity, c)
	}
	for _, v := range q["status"] {
		c, ok := canonical(statuses, v)
		if !ok {
			return lq, fmt.Errorf("status %q is not a status: use %s", v, strings.Join(statuses, ", "))
		}
		lq.Status = append(lq.Status, c)
	}
	f.Severity, f.Status = lq.Severity, lq.Status
	if lq.Cluster != "" {
		ref, err := auth.ParseClusterID(lq.Cluster)
		if err != nil {
			return lq, fmt.Errorf("cluster: %v", err)
		}
		if err := auth.Authorize(s.principal, auth.ActionRead, auth.ClusterID(ref)); err != nil {
			return lq, err
		}
		f.Subscription, f.ResourceGroup, f.Cluster = ref.Subscription, ref.ResourceGroup, ref.Name
	}
	if lq.Range == "" {
		lq.Range = defaultRange
	}
	if lq.Range != "all" {
		found := false
		for _, rg := range ranges {
			if rg.Name == lq.Range {
				lq.since, found = p.cfg.Now().Add(-rg.Span), true
			}
		}
		if !found {
			return lq, fmt.Errorf("range %q is not a time range: use 1h, 24h, 7d, 30d or all", lq.Range)
		}
		f.Since = lq.since
	}
	switch lq.Order {
	case "":
		lq.Order = "endTime"
	case "endTime", "startTime", "severity", "count":
	default:
		return lq, fmt.Errorf("order %q is not a sort order: use endTime, startTime, severity or count", lq.Order)
	}
	f.Order = lq.Order
	lq.filter = f
	return lq, nil
}

func canonical(set []string, v string) (string, bool) {
	for _, s := range set {
		if strings.EqualFold(s, v) {
			return s, true
		}
	}
	return "", false
}

// matches reports whether a (newly committed) alert passes the filter: the
// live updates apply the page's filter as the store applies it to the list.
func (lq listQuery) matches(a store.Alert) bool {
	f := lq.filter
	if (f.Subscription != "" && a.Cluster.Subscription != f.Subscription) || (f.ResourceGroup != "" && a.Cluster.ResourceGroup != f.ResourceGroup) ||
		(f.Cluster != "" && a.Cluster.Name != f.Cluster) || (f.Namespace != "" && a.Entities.Namespace != f.Namespace) {
		return false
	}
	if len(f.Severity) > 0 && !slices.Contains(f.Severity, a.Severity) {
		return false
	}
	if len(f.Status) > 0 && !slices.Contains(f.Status, a.Status) {
		return false
	}
	if !f.Since.IsZero() && a.EndTime.Before(f.Since) {
		return false
	}
	if f.Text != "" {
		hay := []string{a.DisplayName, a.Description, a.Entities.Pod}
		if a.Entities.Process != nil {
			hay = append(hay, a.Entities.Process.Path, a.Entities.Process.CommandLine)
		}
		if a.Entities.Container != nil {
			hay = append(hay, a.Entities.Container.Image)
		}
		t := strings.ToLower(f.Text)
		found := false
		for _, h := range hay {
			found = found || strings.Contains(strings.ToLower(h), t)
		}
		if !found {
			return false
		}
	}
	return true
}

// encode returns the query string of lq with another cursor/order.
func (lq listQuery) encode(cursor, order string) string {
	v := url.Values{}
	for _, s := range lq.Severity {
		v.Add("severity", s)
	}
	for _, s := range lq.Status {
		v.Add("status", s)
	}
	for k, x := range map[string]string{"cluster": lq.Cluster, "namespace": lq.Namespace, "q": lq.Text, "range": lq.Range, "order": order, "cursor": cursor} {
		if x != "" {
			v.Set(k, x)
		}
	}
	return v.Encode()
}

// visibleClusters lists the clusters the session may read.
func (p *Portal) visibleClusters(ctx context.Context, pr auth.Principal) ([]store.Cluster, error) {
	scope, err := readScope(pr)
	if err != nil {
		return nil, err
	}
	sub, rg, _ := scopeParts(scope)
	cs, err := p.cfg.Store.ListClusters(ctx, sub, rg)
	if err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	out := cs[:0]
	for _, c := range cs {
		if auth.Covers(scope, auth.ClusterID(c.ClusterRef)) {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return auth.ClusterID(out[i].ClusterRef) < auth.ClusterID(out[j].ClusterRef) })
	return out, nil
}

// visibleSubscriptions lists the subscriptions the session can see into:
// its scope's subscription, or (scope "/") those holding clusters.
func (p *Portal) visibleSubscriptions(ctx context.Context, pr auth.Principal) ([]string, error) {
	scope, err := readScope(pr)
	if err != nil {
		return nil, err
	}
	if sub, _, _ := scopeParts(scope); sub != "" {
		return []string{sub}, nil
	}
	cs, err := p.cfg.Store.ListClusters(ctx, "", "")
	if err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	var subs []string
	for _, c := range cs {
		if !slices.Contains(subs, c.Subscription) {
			subs = append(subs, c.Subscription)
		}
	}
	sort.Strings(subs)
	return subs, nil
}

type alertRow struct {
	store.Alert
	URL string
}

func (p *Portal) alertsPage(w http.ResponseWriter, r *http.Request, s *session) {
	lq, err := p.parseListQuery(r, s)
	var ae *auth.Error
	if errors.As(err, &ae) {
		p.errorPage(w, r, s, http.StatusForbidden, ae.Message)
		return
	}
	if err != nil {
		p.errorPage(w, r, s, http.StatusBadRequest, "The alert filter is invalid: "+err.Error()+". Reset the filters at /portal/alerts.")
		return
	}
	ctx := r.Context()
	page, err := p.cfg.Store.ListAlerts(ctx, lq.filter)
	if err != nil {
		if lq.Cursor != "" {
			p.errorPage(w, r, s, http.StatusBadRequest, "This page of alerts is no longer valid (the paging cursor is stale): start again from the first page.")
			return
		}
		p.log.Error("portal: list alerts", "err", err)
		p.errorPage(w, r, s, http.StatusServiceUnavailable, "The hub could not read alerts (storage unavailable); retry in a moment and check the hub's log.")
		return
	}
	clusters, err := p.visibleClusters(ctx, s.principal)
	if err != nil {
		p.log.Error("portal: list clusters", "err", err)
	}
	chart, err := p.severityChart(ctx, lq)
	if err != nil {
		p.log.Error("portal: severity chart", "err", err)
	}
	rows := make([]alertRow, 0, len(page.Alerts))
	for _, a := range page.Alerts {
		rows = append(rows, alertRow{Alert: a, URL: "/portal/alerts/" + url.PathEscape(a.ID)})
	}
	next := ""
	if page.NextCursor != "" {
		next = "/portal/alerts?" + lq.encode(page.NextCursor, lq.Order)
	}
	sorts := []map[string]any{}
	for _, o := range []struct{ k, label string }{{"endTime", "Last seen"}, {"startTime", "First seen"}, {"severity", "Severity"}, {"count", "Count"}} {
		sorts = append(sorts, map[string]any{"Value": o.k, "Label": o.label, "Selected": o.k == lq.Order})
	}
	sevs := []map[string]any{}
	for _, v := range severities {
		sevs = append(sevs, map[string]any{"Value": v, "Checked": slices.Contains(lq.Severity, v)})
	}
	sts := []map[string]any{}
	for _, v := range statuses {
		sts = append(sts, map[string]any{"Value": v, "Checked": slices.Contains(lq.Status, v)})
	}
	rgs := []map[string]any{}
	for _, x := range ranges {
		rgs = append(rgs, map[string]any{"Value": x.Name, "Label": x.Label, "Selected": x.Name == lq.Range})
	}
	rgs = append(rgs, map[string]any{"Value": "all", "Label": "All time", "Selected": lq.Range == "all"})
	cls := []map[string]any{}
	for _, c := range clusters {
		id := auth.ClusterID(c.ClusterRef)
		cls = append(cls, map[string]any{"Value": id, "Label": c.Name + " (" + c.ResourceGroup + ")", "Selected": id == lq.Cluster})
	}
	p.render(w, r, s, http.StatusOK, "alerts", "Security alerts", map[string]any{
		"Rows": rows, "Next": next, "First": lq.Cursor != "", "FirstURL": "/portal/alerts?" + lq.encode("", lq.Order),
		"Query": lq, "Sorts": sorts, "Severities": sevs, "Statuses": sts, "Ranges": rgs, "Clusters": cls,
		"Chart": chart, "Live": lq.Cursor == "", "EventsURL": "/portal/events?" + lq.encode("", lq.Order),
	})
}

// loadAlert returns an alert the session may read (404 page otherwise; a
// hidden alert looks like a missing one, as in the API).
func (p *Portal) loadAlert(w http.ResponseWriter, r *http.Request, s *session) (store.Alert, bool) {
	id := r.PathValue("id")
	a, err := p.cfg.Store.GetAlert(r.Context(), id)
	if err == nil && auth.Authorize(s.principal, auth.ActionRead, auth.ClusterID(a.Cluster)) != nil {
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) {
		p.errorPage(w, r, s, http.StatusNotFound, fmt.Sprintf("Alert %q does not exist or is outside your token's scope: go back to the alert list.", id))
		return a, false
	}
	if err != nil {
		p.log.Error("portal: get alert", "id", id, "err", err)
		p.errorPage(w, r, s, http.StatusServiceUnavailable, "The hub could not read the alert (storage unavailable); retry in a moment.")
		return a, false
	}
	return a, true
}

// treeNode is one process of the alert's ancestry, root first.
type treeNode struct {
	Exe     string
	Args    string
	PID     int
	UID     uint32
	Exited  bool
	Current bool
	Child   *treeNode
}

func processTree(a store.Alert) *treeNode {
	var chain []treeNode
	anc := a.Entities.Ancestry
	for i := len(anc) - 1; i >= 0; i-- {
		x := anc[i]
		exe := x.Exe
		if exe == "" {
			exe = x.Comm
		}
		chain = append(chain, treeNode{Exe: exe, Args: strings.Join(x.Args, " "), PID: x.PID, UID: x.UID, Exited: x.Exited})
	}
	if len(anc) == 0 && a.Entities.Parent != nil {
		pp := a.Entities.Parent
		chain = append(chain, treeNode{Exe: pp.Path, Args: pp.CommandLine, PID: pp.PID, UID: pp.UID})
	}
	if pr := a.Entities.Process; pr != nil {
		chain = append(chain, treeNode{Exe: pr.Path, Args: pr.CommandLine, PID: pr.PID, UID: pr.UID, Current: true})
	}
	if len(chain) == 0 {
		return nil
	}
	for i := len(chain) - 2; i >= 0; i-- {
		chain[i].Child = &chain[i+1]
	}
	return &chain[0]
}

type timelineEntry struct {
	At   time.Time
	What string
}

func timeline(a store.Alert) []timelineEntry {
	var t []timelineEntry
	if a.Entities.Process != nil && !a.Entities.Process.StartTime.IsZero() {
		t = append(t, timelineEntry{a.Entities.Process.StartTime, "Process " + a.Entities.Process.Path + " started"})
	}
	t = append(t, timelineEntry{a.StartTime, "First seen: " + a.DisplayName})
	if a.Count > 1 || !a.EndTime.Equal(a.StartTime) {
		t = append(t, timelineEntry{a.EndTime, fmt.Sprintf("Last seen (%d occurrences in all)", a.Count)})
	}
	t = append(t, timelineEntry{a.IngestedAt, "Received by the hub"})
	if !a.StatusChangedAt.IsZero() {
		t = append(t, timelineEntry{a.StatusChangedAt, "Status set to " + a.Status + " by " + a.StatusChangedBy})
	}
	sort.SliceStable(t, func(i, j int) bool { return t[i].At.Before(t[j].At) })
	return t
}

func suppressionRulePath(sub, name string) string {
	return "/subscriptions/" + sub + "/providers/Vigil.Security/alertsSuppressionRules/" + name
}

func (p *Portal) alertPage(w http.ResponseWriter, r *http.Request, s *session) {
	a, ok := p.loadAlert(w, r, s)
	if !ok {
		return
	}
	canWrite := auth.Authorize(s.principal, auth.ActionWrite, auth.ClusterID(a.Cluster)) == nil
	canSuppress := auth.Authorize(s.principal, auth.ActionWrite, suppressionRulePath(a.Cluster.Subscription, "x")) == nil
	clusterKnown := true
	if _, err := p.cfg.Store.GetCluster(r.Context(), a.Cluster); err != nil {
		clusterKnown = false
	}
	facts := make([]string, 0, len(a.Entities.Facts))
	for k, v := range a.Entities.Facts {
		facts = append(facts, k+": "+v)
	}
	sort.Strings(facts)
	related, err := hub.RelatedAlerts(r.Context(), p.cfg.Store, a)
	if err != nil {
		p.log.Warn("portal: related alerts unavailable", "alert", a.ID, "err", err)
	}
	p.render(w, r, s, http.StatusOK, "alert", a.DisplayName, map[string]any{
		"A": a, "Tree": processTree(a), "Timeline": timeline(a), "CanWrite": canWrite, "CanSuppress": canSuppress,
		"ClusterKnown": clusterKnown, "Facts": facts, "ClusterID": auth.ClusterID(a.Cluster), "Related": related,
	})
}

var statusActions = map[string]string{alert.StatusDismissed: "dismiss", alert.StatusResolved: "resolve", alert.StatusActive: "activate"}

func (p *Portal) alertStatus(w http.ResponseWriter, r *http.Request, s *session) {
	a, ok := p.loadAlert(w, r, s)
	if !ok {
		return
	}
	status, ok := canonical(statuses, r.PostFormValue("status"))
	if !ok {
		p.errorPage(w, r, s, http.StatusBadRequest, fmt.Sprintf("Status %q is not a status: use Active, Resolved or Dismissed.", r.PostFormValue("status")))
		return
	}
	// The API's status routes need write on the alert's cluster.
	if err := auth.Authorize(s.principal, auth.ActionWrite, auth.ClusterID(a.Cluster)); err != nil {
		p.m.changes.WithLabelValues("alertStatus", "refused").Inc()
		p.errorPage(w, r, s, http.StatusForbidden, "You may not change this alert: "+err.Error())
		return
	}
	target := "/portal/alerts/" + url.PathEscape(a.ID)
	_, msg := p.change(r.Context(), s, "alertStatus", http.MethodPost,
		"/subscriptions/"+a.Cluster.Subscription+"/providers/Vigil.Security/alerts/"+a.ID+"/"+statusActions[status], nil)
	if msg != "" {
		p.redirectFlash(w, r, s, target, "error", "The status was not changed: "+msg)
		return
	}
	p.redirectFlash(w, r, s, target, "ok", "Alert set to "+status+".")
}

// ---- suppress similar

// suppressFields are the alert fields "suppress similar" offers, in order;
// the first ones are selected by default.
var suppressFields = []struct {
	Key     string
	Label   string
	Default bool
	get     func(a *store.Alert) string
}{
	{"alertType", "Alert type", true, func(a *store.Alert) string { return a.AlertType }},
	{"cluster", "Cluster", true, func(a *store.Alert) string { return a.Cluster.Name }},
	{"entities.namespace", "Namespace", true, func(a *store.Alert) string { return a.Entities.Namespace }},
	{"entities.container.image", "Container image", true, func(a *store.Alert) string {
		if a.Entities.Container == nil {
			return ""
		}
		return a.Entities.Container.Image
	}},
	{"entities.process.path", "Process path", true, func(a *store.Alert) string {
		if a.Entities.Process == nil {
			return ""
		}
		return a.Entities.Process.Path
	}},
	{"entities.process.commandLine", "Command line", false, func(a *store.Alert) string {
		if a.Entities.Process == nil {
			return ""
		}
		return a.Entities.Process.CommandLine
	}},
	{"entities.parentProcess.path", "Parent process path", false, func(a *store.Alert) string {
		if a.Entities.Parent == nil {
			return ""
		}
		return a.Entities.Parent.Path
	}},
	{"entities.node", "Node", false, func(a *store.Alert) string { return a.Entities.Node }},
	{"entities.pod", "Pod", false, func(a *store.Alert) string { return a.Entities.Pod }},
	{"entities.network.ip", "Network peer IP", false, func(a *store.Alert) string {
		if a.Entities.Network == nil {
			return ""
		}
		return a.Entities.Network.IP
	}},
	{"entities.network.domain", "Network peer domain", false, func(a *store.Alert) string {
		if a.Entities.Network == nil {
			return ""
		}
		return a.Entities.Network.Domain
	}},
	{"entities.file", "File", false, func(a *store.Alert) string { return a.Entities.File }},
}

var ruleNameRE = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func defaultRuleName(a store.Alert) string {
	base := a.AlertType
	if i := strings.LastIndex(base, "/"); i >= 0 {
		base = base[i+1:]
	}
	base = strings.Trim(ruleNameRE.ReplaceAllString(base, "-"), "-.")
	if len(base) > 60 {
		base = base[:60]
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "similar-" + base + "-" + hex.EncodeToString(b[:])
}

type suppressForm struct {
	Name    string
	Reason  string
	Expires string
	Dismiss bool
	Fields  []suppressField
	Preview *suppressPreview
	Error   string
}

type suppressField struct {
	Key, Label, Value string
	Checked           bool
}

type suppressPreview struct {
	Matching  int  `json:"matchingAlerts"`
	Active    int  `json:"activeMatchingAlerts"`
	Scanned   int  `json:"scannedAlerts"`
	Truncated bool `json:"truncated"`
}

func (f suppressForm) match() map[string]string {
	m := map[string]string{}
	for _, x := range f.Fields {
		if x.Checked {
			m[x.Key] = x.Value
		}
	}
	return m
}

func newSuppressForm(a store.Alert, r *http.Request) suppressForm {
	f := suppressForm{Name: defaultRuleName(a), Expires: "", Dismiss: true}
	posted := r != nil && r.Method == http.MethodPost
	if posted {
		f.Name, f.Reason, f.Expires, f.Dismiss = strings.TrimSpace(r.PostFormValue("name")), strings.TrimSpace(r.PostFormValue("reason")), r.PostFormValue("expires"), r.PostFormValue("dismiss") == "on"
	}
	for _, sf := range suppressFields {
		v := sf.get(&a)
		if v == "" {
			continue
		}
		checked := sf.Default
		if posted {
			checked = slices.Contains(r.PostForm["field"], sf.Key)
		}
		f.Fields = append(f.Fields, suppressField{Key: sf.Key, Label: sf.Label, Value: v, Checked: checked})
	}
	return f
}

func (p *Portal) suppressAllowed(w http.ResponseWriter, r *http.Request, s *session, a store.Alert, name string) bool {
	if err := auth.Authorize(s.principal, auth.ActionWrite, suppressionRulePath(a.Cluster.Subscription, name)); err != nil {
		p.m.changes.WithLabelValues("suppression", "refused").Inc()
		p.errorPage(w, r, s, http.StatusForbidden, "You may not create suppression rules: "+err.Error())
		return false
	}
	return true
}

func (p *Portal) preview(ctx context.Context, s *session, a store.Alert, f *suppressForm) {
	m := f.match()
	if len(m) == 0 {
		f.Error = "Select at least one field: a rule matches alerts whose selected fields all equal this alert's."
		return
	}
	name := f.Name
	if name == "" {
		name = "preview"
	}
	res, err := p.api(ctx, s, http.MethodPost, suppressionRulePath(a.Cluster.Subscription, name)+"/preview",
		map[string]any{"properties": map[string]any{"match": m}})
	if err != nil {
		f.Error = "The preview failed: " + err.Error()
		return
	}
	if msg := res.errMessage(); msg != "" {
		f.Error = "The preview failed: " + msg
		return
	}
	var pv suppressPreview
	if err := json.Unmarshal(res.body, &pv); err != nil {
		f.Error = "The preview answer was unreadable: " + err.Error()
		return
	}
	f.Preview = &pv
}

func (p *Portal) suppressPage(w http.ResponseWriter, r *http.Request, s *session) {
	a, ok := p.loadAlert(w, r, s)
	if !ok {
		return
	}
	f := newSuppressForm(a, nil)
	if !p.suppressAllowed(w, r, s, a, f.Name) {
		return
	}
	p.preview(r.Context(), s, a, &f)
	p.render(w, r, s, http.StatusOK, "suppress", "Suppress similar alerts", map[string]any{"A": a, "F": f})
}

var expiries = map[string]time.Duration{"7d": 7 * 24 * time.Hour, "30d": 30 * 24 * time.Hour, "90d": 90 * 24 * time.Hour}

func (p *Portal) suppress(w http.ResponseWriter, r *http.Request, s *session) {
	a, ok := p.loadAlert(w, r, s)
	if !ok {
		return
	}
	f := newSuppressForm(a, r)
	if !p.suppressAllowed(w, r, s, a, f.Name) {
		return
	}
	ctx := r.Context()
	p.preview(ctx, s, a, &f)
	if r.PostFormValue("op") != "create" || f.Error != "" {
		status := http.StatusOK
		if f.Error != "" {
			status = http.StatusBadRequest
		}
		p.render(w, r, s, status, "suppress", "Suppress similar alerts", map[string]any{"A": a, "F": f})
		return
	}
	props := map[string]any{"match": f.match()}
	if f.Reason != "" {
		props["reason"] = f.Reason
	}
	if f.Expires != "" {
		d, ok := expiries[f.Expires]
		if !ok {
			f.Error = fmt.Sprintf("Expiry %q is not offered: choose never, 7d, 30d or 90d.", f.Expires)
			p.render(w, r, s, http.StatusBadRequest, "suppress", "Suppress similar alerts", map[string]any{"A": a, "F": f})
			return
		}
		props["expires"] = p.cfg.Now().Add(d).UTC().Format(time.RFC3339)
	}
	if _, msg := p.change(ctx, s, "suppression", http.MethodPut, suppressionRulePath(a.Cluster.Subscription, f.Name), map[string]any{"properties": props}); msg != "" {
		f.Error = "The rule was not created: " + msg
		p.render(w, r, s, http.StatusBadRequest, "suppress", "Suppress similar alerts", map[string]any{"A": a, "F": f})
		return
	}
	done := fmt.Sprintf("Suppression rule %s created: alerts like this one are stored Dismissed from now on (it would have matched %d existing alerts).", f.Name, f.Preview.Matching)
	if f.Dismiss && a.Status == alert.StatusActive {
		if _, msg := p.change(ctx, s, "alertStatus", http.MethodPost, "/subscriptions/"+a.Cluster.Subscription+"/providers/Vigil.Security/alerts/"+a.ID+"/dismiss", nil); msg != "" {
			done += " This alert was not dismissed: " + msg
		} else {
			done += " This alert is dismissed."
		}
	}
	p.redirectFlash(w, r, s, "/portal/alerts/"+url.PathEscape(a.ID), "ok", done)
}

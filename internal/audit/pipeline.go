package audit

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
)

// PodLookup returns the pod that owns a source address (its name,
// namespace, UID, workload and labels in an event.Container), if one does.
// Pods on the host network share the node's address and must not be
// returned for it.
type PodLookup func(ip string) (*event.Container, bool)

// AlertSink receives every alert and every aggregated update of it (same
// ID, higher count): consumers upsert by ID. *alert.Writer and
// *outbox.Outbox are AlertSinks.
type AlertSink interface {
	Write(al *alert.Alert) error
}

// PipelineConfig configures a Pipeline.
type PipelineConfig struct {
	// Rules returns the current engine (detect.Reloader.Engine); nil or a
	// nil engine judges nothing.
	Rules func() *detect.Engine
	// Sinks receive the alerts.
	Sinks []AlertSink
	// LookupPod, if set, names the pod a request came from by its source
	// address when the service-account token did not name it.
	LookupPod PodLookup
	// Node is put on events that do not name one (the control-plane node
	// or cluster the collector serves).
	Node string
	// Window is the aggregation window (default alert.DefaultWindow).
	Window time.Duration
	// QueueSize bounds the webhook events waiting for the rules (default
	// 10000); more are dropped and counted.
	QueueSize int
	// OnEvent, if set, sees every judged event (e.g. --events-out).
	OnEvent func(*event.Event)
	Metrics *Metrics
	Logger  *slog.Logger
}

// Pipeline judges audit events: it names the pod a request came from,
// tracks roles that grant everything (fact rbac.wildcardRole), evaluates
// the rules and aggregates alerts: repeats of a rule for the same user
// from the same pod (or address) about the same namespace (and, for
// changes, the same object) within the window fold into one alert whose
// count grows (same ID).
type Pipeline struct {
	cfg   PipelineConfig
	log   *slog.Logger
	m     *Metrics
	queue chan *event.Event

	mu       sync.Mutex // serialises judging (role tracking) and aggregation
	wildcard map[string]bool
	agg      map[string]*aggEntry
}

type aggEntry struct {
	al      *alert.Alert
	emitted int
	end     time.Time // wall clock after which the entry is forgotten
}

const maxTracked = 10000

// NewPipeline checks cfg.
func NewPipeline(cfg PipelineConfig) (*Pipeline, error) {
	if len(cfg.Sinks) == 0 {
		return nil, errors.New("audit pipeline: no alert sink; pass --hub-url and/or --alerts-out")
	}
	if cfg.Window <= 0 {
		cfg.Window = alert.DefaultWindow
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 10000
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Pipeline{cfg: cfg, log: cfg.Logger, m: cfg.Metrics, queue: make(chan *event.Event, cfg.QueueSize),
		wildcard: map[string]bool{}, agg: map[string]*aggEntry{}}, nil
}

// HandleLine parses one audit log line and judges it (the Follower's
// handler). Bad lines are counted and skipped.
func (p *Pipeline) HandleLine(line []byte) {
	ev, err := ParseEvent(line, SourceLog)
	if err != nil {
		p.skip(err)
		return
	}
	p.Judge(ev)
}

func (p *Pipeline) skip(err error) {
	reason := SkipMalformed
	var se *SkipError
	if errors.As(err, &se) {
		reason = se.Reason
	}
	p.m.skip(reason, 1)
	if reason != SkipStage {
		p.log.Debug("skipping audit input", "reason", reason, "err", err)
	}
}

// Offer queues events for Run without blocking (the webhook's Deliver):
// when the queue is full the rest are dropped and counted, so a flood
// never stalls the API server. It returns how many were queued.
func (p *Pipeline) Offer(evs []*event.Event) int {
	n := 0
	for _, ev := range evs {
		select {
		case p.queue <- ev:
			n++
		default:
			p.m.skip(SkipDropped, len(evs)-n)
			p.log.Warn("audit event queue full; dropping events", "dropped", len(evs)-n, "queue", cap(p.queue))
			p.m.QueueDepth.Set(float64(len(p.queue)))
			return n
		}
	}
	p.m.QueueDepth.Set(float64(len(p.queue)))
	return n
}

// Run judges queued events and re-emits aggregated alerts whose count grew,
// until ctx ends; then it judges what is queued and flushes.
func (p *Pipeline) Run(ctx context.Context) {
	t := time.NewTicker(alert.DefaultFlushInterval)
	defer t.Stop()
	for {
		select {
		case ev := <-p.queue:
			p.m.QueueDepth.Set(float64(len(p.queue)))
			p.Judge(ev)
		case <-t.C:
			p.Flush(false)
		case <-ctx.Done():
		drain:
			for {
				select {
				case ev := <-p.queue:
					p.Judge(ev)
				default:
					break drain
				}
			}
			p.m.QueueDepth.Set(0)
			p.Flush(true)
			return
		}
	}
}

// Judge enriches one event and evaluates the rules on it.
func (p *Pipeline) Judge(ev *event.Event) {
	if ev.Audit == nil {
		return
	}
	if ev.Node == "" {
		ev.Node = p.cfg.Node
	}
	p.attribute(ev)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.trackRoles(ev)
	p.m.Events.WithLabelValues(ev.Source).Inc()
	if p.cfg.OnEvent != nil {
		p.cfg.OnEvent(ev)
	}
	if p.cfg.Rules == nil {
		return
	}
	eng := p.cfg.Rules()
	if eng == nil {
		return
	}
	eng.Evaluate(ev, p.match)
}

// attribute names the pod the request came from by its source address.
func (p *Pipeline) attribute(ev *event.Event) {
	if p.cfg.LookupPod == nil {
		return
	}
	for _, ip := range ev.Audit.SourceIPs {
		c, ok := p.cfg.LookupPod(ip)
		if !ok || c == nil {
			continue
		}
		if ev.Container == nil {
			cp := *c
			ev.Container = &cp
			return
		}
		if ev.Container.Pod == c.Pod && ev.Container.Namespace == c.Namespace {
			cp := *c
			if cp.PodUID == "" {
				cp.PodUID = ev.Container.PodUID
			}
			ev.Container = &cp
		}
		return
	}
}

// trackRoles remembers roles whose rules grant every verb on every
// resource, and marks bindings to them with the fact rbac.wildcardRole.
func (p *Pipeline) trackRoles(ev *event.Event) {
	a := ev.Audit
	if a.APIGroup != "rbac.authorization.k8s.io" || a.ResponseCode < 200 || a.ResponseCode > 299 {
		return
	}
	key := func(kind, ns, name string) string {
		if kind == "ClusterRole" {
			return "ClusterRole/" + name
		}
		return "Role/" + ns + "/" + name
	}
	switch a.Resource {
	case "roles", "clusterroles":
		kind := "Role"
		if a.Resource == "clusterroles" {
			kind = "ClusterRole"
		}
		k := key(kind, a.Namespace, a.Name)
		switch {
		case a.Verb == "delete":
			delete(p.wildcard, k)
		case a.ObjectKind != "" && (a.Verb == "create" || a.Verb == "update"):
			if a.WildcardRule {
				if len(p.wildcard) < maxTracked {
					p.wildcard[k] = true
				}
			} else {
				delete(p.wildcard, k)
			}
		}
	case "rolebindings", "clusterrolebindings":
		if a.RoleRefName != "" && p.wildcard[key(a.RoleRefKind, a.Namespace, a.RoleRefName)] {
			ev.SetFact("rbac.wildcardRole", "true")
		}
	}
}

// match builds the alert for a rule that matched (p.mu held).
func (p *Pipeline) match(r *detect.Rule, ev *event.Event) {
	al := alert.FromMatch(r.ID, r.Name, r.Description, r.Severity, r.Maturity, r.Tactics, r.Techniques, r.Remediation, ev)
	SetAlertEntities(al, ev)
	ws := al.StartTime.Truncate(p.cfg.Window)
	al.ID = alert.ID(al.AlertType, al.Entities.Node, origin(ev), foldKey(ev), ws)
	if e, ok := p.agg[al.ID]; ok {
		e.al.Count++
		if al.EndTime.After(e.al.EndTime) {
			e.al.EndTime = al.EndTime
		}
		return
	}
	if len(p.agg) >= maxTracked {
		p.flushLocked(true)
	}
	e := &aggEntry{al: al, end: time.Now().Add(p.cfg.Window)}
	p.agg[al.ID] = e
	p.m.Alerts.WithLabelValues(al.AlertType, al.Severity).Inc()
	p.emitLocked(e)
}

// origin is where a request came from, for aggregation: the pod, else the
// first source address.
// foldKey is what repeats share besides rule, node, origin and window: the
// user and the namespace the request was about, and for a change also the
// object — so the same service account listing secrets again folds into one
// alert, while a second privileged pod or a second cluster-admin binding,
// or the same request against another namespace, is an alert of its own
// (the hub would otherwise fold it into the first, with the first's details).
func foldKey(ev *event.Event) string {
	a := ev.Audit
	k := "k8s-user:" + a.User + "\x00ns:" + a.Namespace
	switch a.Verb {
	case "create", "update", "patch", "delete", "deletecollection":
		k += "\x00obj:" + a.APIGroup + "/" + a.Resource + "/" + a.Name
	}
	return k
}

func origin(ev *event.Event) string {
	if c := ev.Container; c != nil && c.Pod != "" {
		return c.Namespace + "/" + c.Pod
	}
	if len(ev.Audit.SourceIPs) > 0 {
		return ev.Audit.SourceIPs[0]
	}
	return ""
}

// SetAlertEntities rewrites a rule alert's entities for an audit event: no
// process; the pod the request came from (namespace, pod, container
// entity); the source address as the network entity; and the request in
// extra (user, serviceAccount, groups, verb, resource, objectNamespace,
// objectName, requestURI, sourceIPs, userAgent, responseCode, decision,
// auditID).
func SetAlertEntities(al *alert.Alert, ev *event.Event) {
	a := ev.Audit
	en := &al.Entities
	en.Process, en.Parent, en.Ancestry = nil, nil, nil
	en.Namespace, en.Pod = "", ""
	if c := ev.Container; c != nil {
		en.Namespace, en.Pod = c.Namespace, c.Pod
	}
	if len(a.SourceIPs) > 0 {
		en.Network = &alert.Network{IP: a.SourceIPs[0]}
	}
	x := map[string][]string{}
	put := func(k string, v ...string) {
		var vs []string
		for _, s := range v {
			if s != "" {
				vs = append(vs, s)
			}
		}
		if len(vs) > 0 {
			x[k] = vs
		}
	}
	put("user", a.User)
	if a.ServiceAccountName != "" {
		put("serviceAccount", a.ServiceAccountNamespace+"/"+a.ServiceAccountName)
	}
	put("groups", a.Groups...)
	put("impersonatedUser", a.ImpersonatedUser)
	put("verb", a.Verb)
	res := a.Resource
	if a.Subresource != "" {
		res += "/" + a.Subresource
	}
	if a.APIGroup != "" {
		res = a.APIGroup + "/" + res
	}
	put("resource", res)
	put("objectNamespace", a.Namespace)
	put("objectName", a.Name)
	put("requestURI", a.RequestURI)
	put("sourceIPs", a.SourceIPs...)
	put("userAgent", a.UserAgent)
	if a.ResponseCode != 0 {
		put("responseCode", strconv.Itoa(a.ResponseCode))
	}
	put("decision", a.Decision)
	put("authorizationReason", a.Reason)
	put("auditID", a.AuditID)
	if a.RoleRefName != "" {
		put("roleRef", a.RoleRefKind+"/"+a.RoleRefName)
	}
	put("subjects", a.Subjects...)
	put("hostPaths", a.HostPaths...)
	put("images", a.Images...)
	if en.Extra == nil {
		en.Extra = x
	} else {
		for k, v := range x {
			en.Extra[k] = v
		}
	}
}

func (p *Pipeline) emitLocked(e *aggEntry) {
	e.emitted = e.al.Count
	cp := *e.al
	for _, s := range p.cfg.Sinks {
		if err := s.Write(&cp); err != nil {
			p.m.SinkErrors.Inc()
			p.log.Error("writing an audit alert failed; it is lost", "alert", cp.AlertType, "id", cp.ID, "err", err)
		}
	}
}

// Flush emits aggregated alerts whose count grew since they were last
// emitted and forgets those whose window is over (all of them with all).
func (p *Pipeline) Flush(all bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.flushLocked(all)
}

func (p *Pipeline) flushLocked(all bool) {
	now := time.Now()
	for id, e := range p.agg {
		if e.al.Count != e.emitted {
			p.emitLocked(e)
		}
		if all || now.After(e.end) {
			delete(p.agg, id)
		}
	}
}

// Package audit turns the Kubernetes API server's audit events
// (audit.k8s.io/v1) into vigil events of kind audit, so that the same rule
// engine that judges runtime events judges control-plane activity.
//
// Events arrive either from the audit log file the API server writes
// (Follower: rotation by rename and by truncation, position kept across
// restarts in a state file, bounded memory for huge lines) or from the API
// server's audit webhook backend (Webhook: an HTTPS handler that
// authenticates the sender). A Pipeline enriches them with the pod a
// request came from, evaluates the rules and raises alerts.
package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/vigil-sec/vigil/internal/event"
)

// Sources of audit events (event.Event.Source).
const (
	SourceLog     = "audit-log"
	SourceWebhook = "audit-webhook"
)

// Reasons a piece of audit input is skipped (the reason label of
// vigil_audit_skipped_total).
const (
	SkipMalformed = "malformed"       // not JSON, or not an audit Event
	SkipVersion   = "unknown_version" // an apiVersion other than audit.k8s.io/v1
	SkipStage     = "stage"           // RequestReceived / ResponseStarted: the request is judged at ResponseComplete
	SkipOversize  = "oversize"        // a line longer than the follower's limit
	SkipDropped   = "queue_full"      // the webhook's queue was full (backpressure)
)

// SkipError is returned for input that is not a judgeable audit event;
// Reason is one of the Skip* constants.
type SkipError struct {
	Reason string
	Err    error
}

func (e *SkipError) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *SkipError) Unwrap() error { return e.Err }

// Well-known user.extra keys of bound service-account tokens (Kubernetes
// 1.30+ adds the node; 1.21+ the pod).
const (
	extraPodName  = "authentication.kubernetes.io/pod-name"
	extraPodUID   = "authentication.kubernetes.io/pod-uid"
	extraNodeName = "authentication.kubernetes.io/node-name"
)

// ParseEvent decodes one audit.k8s.io/v1 Event (one line of the audit log)
// into a vigil event. Events that are not at a final stage
// (ResponseComplete, Panic) are skipped with a *SkipError of reason
// SkipStage, so a request logged at several stages is judged once.
func ParseEvent(b []byte, source string) (*event.Event, error) {
	var ke k8sEvent
	if err := json.Unmarshal(b, &ke); err != nil {
		return nil, &SkipError{Reason: SkipMalformed, Err: fmt.Errorf("decode audit event: %w", err)}
	}
	return convert(&ke, source)
}

// ParseEventList decodes what the webhook backend posts: an
// audit.k8s.io/v1 EventList (a single Event is accepted too). It returns
// the judgeable events and one error per item that was skipped; a body
// that is not an EventList at all is an error.
func ParseEventList(b []byte, source string) ([]*event.Event, []error, error) {
	var head struct {
		Kind       string `json:"kind"`
		APIVersion string `json:"apiVersion"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, nil, fmt.Errorf("decode audit EventList: %w", err)
	}
	if head.APIVersion != APIVersion {
		return nil, nil, &SkipError{Reason: SkipVersion, Err: fmt.Errorf("apiVersion %q: vigil reads %s (configure the API server's --audit-webhook-version=%s)", head.APIVersion, APIVersion, APIVersion)}
	}
	switch head.Kind {
	case "Event":
		ev, err := ParseEvent(b, source)
		if err != nil {
			return nil, []error{err}, nil
		}
		return []*event.Event{ev}, nil, nil
	case "EventList":
	default:
		return nil, nil, fmt.Errorf("kind %q: the audit webhook posts audit.k8s.io/v1 EventList", head.Kind)
	}
	var list k8sEventList
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, nil, fmt.Errorf("decode audit EventList: %w", err)
	}
	var out []*event.Event
	var errs []error
	for i, raw := range list.Items {
		var ke k8sEvent
		if err := json.Unmarshal(raw, &ke); err != nil {
			errs = append(errs, &SkipError{Reason: SkipMalformed, Err: fmt.Errorf("item %d: %w", i, err)})
			continue
		}
		// Items of a list carry no kind/apiVersion of their own.
		if ke.APIVersion == "" {
			ke.APIVersion, ke.Kind = APIVersion, "Event"
		}
		ev, err := convert(&ke, source)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, ev)
	}
	return out, errs, nil
}

func convert(ke *k8sEvent, source string) (*event.Event, error) {
	if ke.APIVersion != APIVersion {
		return nil, &SkipError{Reason: SkipVersion, Err: fmt.Errorf("apiVersion %q: vigil reads %s (set --audit-log-version / --audit-webhook-version to %s)", ke.APIVersion, APIVersion, APIVersion)}
	}
	if ke.Kind != "Event" {
		return nil, &SkipError{Reason: SkipMalformed, Err: fmt.Errorf("kind %q is not an audit Event", ke.Kind)}
	}
	if ke.AuditID == "" || ke.Verb == "" {
		return nil, &SkipError{Reason: SkipMalformed, Err: errors.New("audit event without auditID or verb")}
	}
	switch ke.Stage {
	case "ResponseComplete", "Panic":
	default:
		return nil, &SkipError{Reason: SkipStage, Err: fmt.Errorf("stage %q", ke.Stage)}
	}
	a := &event.Audit{
		AuditID:    ke.AuditID,
		Stage:      ke.Stage,
		Level:      ke.Level,
		User:       ke.User.Username,
		Groups:     ke.User.Groups,
		Verb:       ke.Verb,
		RequestURI: ke.RequestURI,
		SourceIPs:  ke.SourceIPs,
		UserAgent:  ke.UserAgent,
		Decision:   ke.Annotations["authorization.k8s.io/decision"],
		Reason:     ke.Annotations["authorization.k8s.io/reason"],
	}
	if ns, name, ok := ServiceAccount(ke.User.Username); ok {
		a.ServiceAccountNamespace, a.ServiceAccountName = ns, name
	}
	if ke.ImpersonatedUser != nil {
		a.ImpersonatedUser = ke.ImpersonatedUser.Username
	}
	if r := ke.ObjectRef; r != nil {
		a.APIGroup, a.APIVersion = r.APIGroup, r.APIVersion
		a.Resource, a.Subresource = r.Resource, r.Subresource
		a.Namespace, a.Name = r.Namespace, r.Name
	}
	if s := ke.ResponseStatus; s != nil {
		a.ResponseCode = s.Code
	}
	if len(ke.RequestObject) > 0 && !bytes.Equal(ke.RequestObject, []byte("null")) {
		requestFields(a, ke.RequestObject)
	}
	t := ke.StageTimestamp
	if t.IsZero() {
		t = ke.RequestReceivedTimestamp
	}
	ev := &event.Event{Kind: event.KindAudit, Time: t, Source: source, Audit: a}
	if pod := ke.User.Extra[extraPodName]; len(pod) > 0 && pod[0] != "" && a.ServiceAccountNamespace != "" {
		// A bound service-account token names the pod it was issued to.
		ev.Container = &event.Container{Pod: pod[0], Namespace: a.ServiceAccountNamespace}
		if uid := ke.User.Extra[extraPodUID]; len(uid) > 0 {
			ev.Container.PodUID = uid[0]
		}
	}
	if n := ke.User.Extra[extraNodeName]; len(n) > 0 {
		ev.Node = n[0]
	}
	return ev, nil
}

// ServiceAccount splits a service account's user name
// (system:serviceaccount:NAMESPACE:NAME).
func ServiceAccount(user string) (namespace, name string, ok bool) {
	rest, ok := strings.CutPrefix(user, "system:serviceaccount:")
	if !ok {
		return "", "", false
	}
	namespace, name, ok = strings.Cut(rest, ":")
	if !ok || namespace == "" || name == "" {
		return "", "", false
	}
	return namespace, name, true
}

// requestFields fills the request-object fields rules use. An object that
// does not decode leaves them empty (the event is still judged on its
// metadata).
func requestFields(a *event.Audit, raw json.RawMessage) {
	var o requestObject
	if err := json.Unmarshal(raw, &o); err != nil {
		return
	}
	a.ObjectKind = o.Kind
	if o.Spec != nil {
		spec := &o.Spec.podSpec
		switch {
		case o.Spec.Template != nil && o.Spec.Template.Spec != nil:
			spec = o.Spec.Template.Spec
		case o.Spec.JobTemplate != nil && o.Spec.JobTemplate.Spec != nil &&
			o.Spec.JobTemplate.Spec.Template != nil && o.Spec.JobTemplate.Spec.Template.Spec != nil:
			spec = o.Spec.JobTemplate.Spec.Template.Spec
		}
		podFields(a, spec)
	}
	if r := o.RoleRef; r != nil {
		a.RoleRefKind, a.RoleRefName = r.Kind, r.Name
	}
	for _, s := range o.Subjects {
		if s.Namespace != "" {
			a.Subjects = append(a.Subjects, s.Kind+":"+s.Namespace+"/"+s.Name)
		} else {
			a.Subjects = append(a.Subjects, s.Kind+":"+s.Name)
		}
	}
	for _, r := range o.Rules {
		if slices.Contains(r.Verbs, "*") && slices.Contains(r.Resources, "*") {
			a.WildcardRule = true
		}
	}
}

func podFields(a *event.Audit, s *podSpec) {
	a.HostPID, a.HostNetwork, a.HostIPC = s.HostPID, s.HostNetwork, s.HostIPC
	for _, v := range s.Volumes {
		if v.HostPath != nil {
			a.HostPaths = append(a.HostPaths, v.HostPath.Path)
		}
	}
	for _, cs := range [][]container{s.InitContainers, s.Containers, s.EphemeralCtrs} {
		for _, c := range cs {
			if c.Image != "" {
				a.Images = append(a.Images, c.Image)
			}
			sc := c.SecurityContext
			if sc == nil {
				continue
			}
			if sc.Privileged != nil && *sc.Privileged {
				a.Privileged = true
			}
			if sc.Capabilities != nil {
				for _, cp := range sc.Capabilities.Add {
					if !slices.Contains(a.Capabilities, cp) {
						a.Capabilities = append(a.Capabilities, cp)
					}
				}
			}
		}
	}
}

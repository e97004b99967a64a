// Package auth turns bearer tokens into principals and decides what a
// principal may do. Decisions are deny by default: a user token holds one
// role (Reader < Contributor < Owner) at one scope (an ARM id prefix: "/",
// a subscription, a resource group or a connected cluster); sensor and agent
// tokens are bound to exactly one cluster and may only do the few things
// their component needs there.
package auth

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/vigil-sec/vigil/internal/store"
)

// Role of a user token at its scope. The zero Role grants nothing.
type Role int

// Roles, weakest first: each includes what the weaker ones may do.
const (
	RoleNone Role = iota
	Reader
	Contributor
	Owner
)

// String returns the role's name as the API spells it.
func (r Role) String() string {
	switch r {
	case Reader:
		return "Reader"
	case Contributor:
		return "Contributor"
	case Owner:
		return "Owner"
	}
	return "None"
}

// ParseRole parses Reader, Contributor or Owner (case-insensitive).
func ParseRole(s string) (Role, error) {
	switch strings.ToLower(s) {
	case "reader":
		return Reader, nil
	case "contributor":
		return Contributor, nil
	case "owner":
		return Owner, nil
	}
	return RoleNone, fmt.Errorf("unknown role %q: use Reader, Contributor or Owner", s)
}

// Action is what a request wants to do.
type Action string

// Actions. User roles: Reader may read and readExtensions, Contributor also
// write, Owner also admin. Sensor tokens: ingest and heartbeat for their
// cluster. Agent tokens: heartbeat, readExtensions and reportStatus for
// their cluster.
const (
	// ActionRead reads resources, alerts, suppressions, recommendations.
	ActionRead Action = "read"
	// ActionWrite creates, updates and deletes resources, changes alert
	// status and manages suppression rules.
	ActionWrite Action = "write"
	// ActionAdmin manages tokens, outputs and the Containers plan.
	ActionAdmin Action = "admin"
	// ActionIngest sends alerts and sensor health for a cluster.
	ActionIngest Action = "ingest"
	// ActionHeartbeat reports that a cluster's agent (or standalone
	// sensor) is alive.
	ActionHeartbeat Action = "heartbeat"
	// ActionReadExtensions reads a cluster's desired extensions.
	ActionReadExtensions Action = "readExtensions"
	// ActionReportStatus reports what an agent applied for an extension.
	ActionReportStatus Action = "reportStatus"
)

// Actions lists every action (for tests and documentation).
var Actions = []Action{ActionRead, ActionWrite, ActionAdmin, ActionIngest, ActionHeartbeat, ActionReadExtensions, ActionReportStatus}

// Principal is who made a request.
type Principal struct {
	TokenID string
	Name    string
	Kind    string // store.TokenUser, TokenSensor, TokenAgent
	Role    Role   // user tokens
	Scope   string // user tokens: an ARM id prefix, "/" for the whole hub
	Cluster store.ClusterRef
}

// String names the principal for audit fields (statusChangedBy, createdBy).
func (p Principal) String() string {
	if p.Name != "" {
		return "token/" + p.Name
	}
	return "token/" + p.TokenID
}

// Error is an authentication or authorization failure with the HTTP status
// it maps to (401 or 403), an ARM error code and a message that says what
// to do.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

func forbidden(format string, args ...any) error {
	return &Error{Status: http.StatusForbidden, Code: "AuthorizationFailed", Message: fmt.Sprintf(format, args...)}
}

func unauthenticated(format string, args ...any) error {
	return &Error{Status: http.StatusUnauthorized, Code: "AuthenticationFailed", Message: fmt.Sprintf(format, args...)}
}

// ClusterID returns the ARM id of a connected cluster.
func ClusterID(c store.ClusterRef) string {
	return "/subscriptions/" + c.Subscription + "/resourceGroups/" + c.ResourceGroup +
		"/providers/Vigil.Kubernetes/connectedClusters/" + c.Name
}

// ParseClusterID parses a connected cluster's ARM id (case-insensitive in
// its fixed segments).
func ParseClusterID(id string) (store.ClusterRef, error) {
	parts := strings.Split(strings.TrimPrefix(id, "/"), "/")
	if len(parts) != 8 || !strings.EqualFold(parts[0], "subscriptions") || !strings.EqualFold(parts[2], "resourceGroups") ||
		!strings.EqualFold(parts[4], "providers") || !strings.EqualFold(parts[5], "Vigil.Kubernetes") ||
		!strings.EqualFold(parts[6], "connectedClusters") || parts[1] == "" || parts[3] == "" || parts[7] == "" {
		return store.ClusterRef{}, fmt.Errorf("%q is not a connected cluster id: expected /subscriptions/{s}/resourceGroups/{g}/providers/Vigil.Kubernetes/connectedClusters/{name}", id)
	}
	return store.ClusterRef{Subscription: parts[1], ResourceGroup: parts[3], Name: parts[7]}, nil
}

// CanonicalScope validates a scope a user token may hold — "/",
// /subscriptions/{s}, /subscriptions/{s}/resourceGroups/{g} or a connected
// cluster id — and returns it with the fixed segments spelled as the API
// spells them (names keep their case: they are case-sensitive).
func CanonicalScope(s string) (string, error) {
	if s == "/" {
		return s, nil
	}
	bad := fmt.Errorf("scope %q is not valid: use /, /subscriptions/{s}, /subscriptions/{s}/resourceGroups/{g} or a connected cluster id", s)
	parts := strings.Split(strings.TrimPrefix(s, "/"), "/")
	if !strings.HasPrefix(s, "/") {
		return "", bad
	}
	for _, p := range parts {
		if p == "" {
			return "", bad
		}
	}
	switch {
	case len(parts) == 2 && strings.EqualFold(parts[0], "subscriptions"):
		return "/subscriptions/" + parts[1], nil
	case len(parts) == 4 && strings.EqualFold(parts[0], "subscriptions") && strings.EqualFold(parts[2], "resourceGroups"):
		return "/subscriptions/" + parts[1] + "/resourceGroups/" + parts[3], nil
	case len(parts) == 8:
		if ref, err := ParseClusterID(s); err == nil {
			return ClusterID(ref), nil
		}
	}
	return "", bad
}

// ValidScope reports whether s is a scope a user token may hold (see
// CanonicalScope).
func ValidScope(s string) error {
	_, err := CanonicalScope(s)
	return err
}

// Covers reports whether scope contains resourceID: they are equal, or
// resourceID lies below scope; "/" covers everything. The comparison is
// exact: API routes and token scopes use the canonical spelling, and names
// are case-sensitive in the store, so "/subscriptions/Prod" does not
// cover "/subscriptions/prod".
func Covers(scope, resourceID string) bool {
	if scope == "" {
		return false
	}
	if scope == "/" {
		return true
	}
	scope = strings.TrimSuffix(scope, "/")
	if !strings.HasPrefix(resourceID, scope) {
		return false
	}
	return len(resourceID) == len(scope) || resourceID[len(scope)] == '/'
}

// roleGrants reports whether role r includes action a.
func roleGrants(r Role, a Action) bool {
	switch a {
	case ActionRead, ActionReadExtensions:
		return r >= Reader
	case ActionWrite:
		return r >= Contributor
	case ActionAdmin:
		return r >= Owner
	}
	return false
}

func minRole(a Action) Role {
	switch a {
	case ActionRead, ActionReadExtensions:
		return Reader
	case ActionWrite:
		return Contributor
	case ActionAdmin:
		return Owner
	}
	return RoleNone
}

// Authorize decides whether p may perform action on resourceID (an ARM id;
// "/" for hub-wide things such as outputs). It returns nil when allowed and
// otherwise an *Error (403) whose message says why and what to do.
func Authorize(p Principal, action Action, resourceID string) error {
	if resourceID == "" {
		resourceID = "/"
	}
	switch p.Kind {
	case store.TokenUser:
		if p.Role == RoleNone || p.Scope == "" {
			return forbidden("token %q has no role: create a token with --role Reader|Contributor|Owner and --scope", p.Name)
		}
		switch action {
		case ActionIngest, ActionHeartbeat, ActionReportStatus:
			return forbidden("action %s is reserved for sensor and agent tokens; token %q is a user token", action, p.Name)
		}
		if !Covers(p.Scope, resourceID) {
			return forbidden("token %q (%s at scope %s) has no access to %s: use a token whose scope covers it", p.Name, p.Role, p.Scope, resourceID)
		}
		if !roleGrants(p.Role, action) {
			if minRole(action) == RoleNone {
				return forbidden("action %q is unknown", action)
			}
			return forbidden("token %q is %s at %s but %s on %s needs %s: ask an Owner for a %s token", p.Name, p.Role, p.Scope, action, resourceID, minRole(action), minRole(action))
		}
		return nil
	case store.TokenSensor, store.TokenAgent:
		allowed := map[string][]Action{
			store.TokenSensor: {ActionIngest, ActionHeartbeat},
			store.TokenAgent:  {ActionHeartbeat, ActionReadExtensions, ActionReportStatus},
		}[p.Kind]
		ok := false
		for _, a := range allowed {
			ok = ok || a == action
		}
		if !ok {
			return forbidden("%s token %q may not %s: %s tokens only %s for their own cluster; use a user token", p.Kind, p.Name, action, p.Kind, joinActions(allowed))
		}
		own := ClusterID(p.Cluster)
		if p.Cluster.Name == "" || !Covers(own, resourceID) {
			return forbidden("%s token %q is bound to cluster %s and may not act on %s: use the token issued for that cluster", p.Kind, p.Name, own, resourceID)
		}
		return nil
	}
	return forbidden("token kind %q is unknown", p.Kind)
}

func joinActions(as []Action) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

// ListScope returns the scope a list over listScope should be narrowed to
// for p: listScope itself when p may read all of it, p's narrower scope
// when p's scope lies inside listScope, or a 403 error when they do not
// overlap (or p may not read at all).
func ListScope(p Principal, action Action, listScope string) (string, error) {
	if err := Authorize(p, action, listScope); err == nil {
		return listScope, nil
	} else if p.Kind != store.TokenUser || !roleGrants(p.Role, action) || !Covers(listScope, p.Scope) {
		return "", err
	}
	return p.Scope, nil
}

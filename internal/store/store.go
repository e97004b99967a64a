// Package store is the hub's storage interface. Two implementations satisfy
// it — SQLite (internal/store/sqlite, the embedded default) and PostgreSQL
// (internal/store/postgres, for several hub replicas on one database) — and
// one conformance suite (internal/store/storetest) runs against both.
//
// The store knows nothing about HTTP or authorization; it keeps resources and
// alerts consistent and durable. Every write that returns nil is committed.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/vigil-sec/vigil/internal/alert"
)

// Errors callers branch on. Implementations wrap them (errors.Is works).
var (
	// ErrNotFound: the resource does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a precondition failed (e.g. an ETag/generation mismatch,
	// or creating a resource whose parent does not exist).
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the caller's input cannot be used (e.g. a list cursor
	// from another listing); the message says what to do instead.
	ErrInvalid = errors.New("invalid input")
)

// Connectivity states of a connected cluster (as Azure Arc names them).
const (
	Connecting = "Connecting"
	Connected  = "Connected"
	Offline    = "Offline"
	Expired    = "Expired"
)

// Provisioning states of an extension or cluster.
const (
	ProvisioningCreating  = "Creating"
	ProvisioningUpdating  = "Updating"
	ProvisioningSucceeded = "Succeeded"
	ProvisioningFailed    = "Failed"
	ProvisioningDeleting  = "Deleting"
)

// ClusterRef names a connected cluster.
type ClusterRef struct {
	Subscription  string `json:"subscription"`
	ResourceGroup string `json:"resourceGroup"`
	Name          string `json:"name"`
}

// ResourceGroup is an ARM resource group. Created on demand when a cluster is
// put into it, or explicitly.
type ResourceGroup struct {
	Subscription string            `json:"subscription"`
	Name         string            `json:"name"`
	Location     string            `json:"location,omitempty"`
	Tags         map[string]string `json:"tags,omitempty"`
	CreatedAt    time.Time         `json:"createdAt"`
}

// Cluster is a connected cluster (Vigil.Kubernetes/connectedClusters).
type Cluster struct {
	ClusterRef
	Location           string            `json:"location,omitempty"`
	Tags               map[string]string `json:"tags,omitempty"`
	Distribution       string            `json:"distribution,omitempty"` // e.g. "kubeadm", "k3s", "standalone" (a single host from `vigil up`)
	ConnectivityStatus string            `json:"connectivityStatus"`
	ProvisioningState  string            `json:"provisioningState"`
	AgentVersion       string            `json:"agentVersion,omitempty"`
	KubernetesVersion  string            `json:"kubernetesVersion,omitempty"`
	NodeCount          int               `json:"nodeCount"`
	LastHeartbeat      time.Time         `json:"lastHeartbeat,omitzero"`
	CreatedAt          time.Time         `json:"createdAt"`
	UpdatedAt          time.Time         `json:"updatedAt"`
}

// Heartbeat is what an agent (or a standalone sensor) reports periodically.
type Heartbeat struct {
	AgentVersion      string
	KubernetesVersion string
	NodeCount         int
	At                time.Time
}

// ExtensionStatus is one status line of an extension (as ARM's statuses[]).
type ExtensionStatus struct {
	Code          string    `json:"code"`
	Level         string    `json:"level"` // Information, Warning, Error
	DisplayStatus string    `json:"displayStatus,omitempty"`
	Message       string    `json:"message,omitempty"`
	Time          time.Time `json:"time"`
}

// Extension is Vigil.KubernetesConfiguration/extensions on a cluster.
type Extension struct {
	Cluster               ClusterRef        `json:"cluster"`
	Name                  string            `json:"name"`
	ExtensionType         string            `json:"extensionType"` // vigil.sensor, vigil.audit
	Version               string            `json:"version,omitempty"`
	ConfigurationSettings map[string]string `json:"configurationSettings,omitempty"`
	// ProtectedSettings is an opaque sealed (encrypted) blob; the store never
	// sees plaintext and the API never returns it.
	ProtectedSettings []byte            `json:"-"`
	ProvisioningState string            `json:"provisioningState"`
	Statuses          []ExtensionStatus `json:"statuses,omitempty"`
	// Generation increments on every change of the desired state; the agent
	// reports the generation it applied.
	Generation        int64     `json:"generation"`
	AppliedGeneration int64     `json:"appliedGeneration"`
	CreatedAt         time.Time `json:"createdAt"`
	UpdatedAt         time.Time `json:"updatedAt"`
}

// Plan is the per-subscription Containers plan with on/off components.
type Plan struct {
	Subscription string          `json:"subscription"`
	Enabled      bool            `json:"enabled"`
	Components   map[string]bool `json:"components,omitempty"` // e.g. "runtimeDetection", "auditDetection"
	UpdatedBy    string          `json:"updatedBy,omitempty"`
	UpdatedAt    time.Time       `json:"updatedAt,omitzero"`
}

// Alert is a stored alert: the sensor's alert plus what the hub knows.
type Alert struct {
	alert.Alert
	Cluster         ClusterRef `json:"cluster"`
	StatusChangedBy string     `json:"statusChangedBy,omitempty"`
	StatusChangedAt time.Time  `json:"statusChangedAt,omitzero"`
	IngestedAt      time.Time  `json:"ingestedAt"`
}

// AlertFilter selects alerts. Zero fields do not filter.
type AlertFilter struct {
	Subscription  string
	ResourceGroup string
	Cluster       string
	Severity      []string
	Status        []string
	Namespace     string
	AlertType     string
	Since, Until  time.Time // on EndTime (last seen)
	Text          string    // case-insensitive substring of displayName, description, process path or command line, pod, image
	// Order: "endTime" (default, newest first), "startTime", "severity", "count".
	Order string
	// Limit (default 100, at most 1000) and Cursor (opaque, from the
	// previous page's NextCursor) page through results.
	Limit  int
	Cursor string
}

// AlertPage is one page of alerts.
type AlertPage struct {
	Alerts     []Alert
	NextCursor string // empty on the last page
}

// IngestResult counts what one IngestAlerts call did.
type IngestResult struct {
	Inserted  int // new alert IDs
	Updated   int // known IDs whose count/endTime grew
	Unchanged int // exact replays
}

// Suppression auto-dismisses alerts whose fields match, until it expires.
type Suppression struct {
	Subscription string `json:"subscription"`
	Name         string `json:"name"`
	// Match maps alert field paths to values that must all be equal, e.g.
	// {"alertType":"vigil.node/...","entities.container.image":"nginx:1.27","entities.process.path":"/usr/bin/curl","entities.namespace":"web"}.
	Match     map[string]string `json:"match"`
	Reason    string            `json:"reason,omitempty"`
	Expires   time.Time         `json:"expires,omitzero"` // zero: never
	CreatedBy string            `json:"createdBy,omitempty"`
	CreatedAt time.Time         `json:"createdAt"`
}

// Token kinds.
const (
	TokenUser   = "user"   // a person or automation: role at a scope
	TokenSensor = "sensor" // may only ingest alerts/health for one cluster
	TokenAgent  = "agent"  // may only heartbeat/read desired state/report status for one cluster
)

// Token is an API credential. Only its hash is stored.
type Token struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Kind      string     `json:"kind"`
	Hash      []byte     `json:"-"`
	Role      string     `json:"role,omitempty"`   // Reader, Contributor, Owner (user tokens)
	Scope     string     `json:"scope,omitempty"`  // ARM id prefix: /subscriptions/s[/resourceGroups/g[/providers/Vigil.Kubernetes/connectedClusters/c]]
	Cluster   ClusterRef `json:"cluster,omitzero"` // sensor and agent tokens
	CreatedBy string     `json:"createdBy,omitempty"`
	CreatedAt time.Time  `json:"createdAt"`
	ExpiresAt time.Time  `json:"expiresAt,omitzero"`
	RevokedAt time.Time  `json:"revokedAt,omitzero"`
	LastUsed  time.Time  `json:"lastUsed,omitzero"`
}

// SensorHealth is the latest health report of one component on one node:
// its sensor, or an audit collector (vigil audit).
type SensorHealth struct {
	Cluster ClusterRef `json:"cluster"`
	Node    string     `json:"node"`
	// Component is ComponentSensor ("" is read as it) or ComponentAudit.
	Component  string `json:"component"`
	SourceMode string `json:"sourceMode"` // ebpf, proc; audit-log, audit-webhook
	// Drops counts events lost: kernel events for a sensor, audit events
	// (malformed, oversized, dropped under pressure) for an audit collector.
	Drops          uint64    `json:"drops"`
	OutboxDropped  uint64    `json:"outboxDropped"`
	RuleSetVersion string    `json:"ruleSetVersion,omitempty"`
	SensorVersion  string    `json:"sensorVersion,omitempty"`
	Missing        []string  `json:"missing,omitempty"` // what the sensor cannot see
	ReportedAt     time.Time `json:"reportedAt"`
}

// Health report components.
const (
	ComponentSensor = "sensor"
	ComponentAudit  = "audit"
)

// Output is a configured alert output of the hub.
type Output struct {
	Name        string `json:"name"`
	Type        string `json:"type"` // webhook, syslog
	MinSeverity string `json:"minSeverity"`
	// Config holds type-specific settings (url, format=json|falco; address, network, facility).
	Config    map[string]string `json:"config"`
	Enabled   bool              `json:"enabled"`
	CreatedAt time.Time         `json:"createdAt"`
}

// Store is the hub's storage. Implementations are safe for concurrent use.
type Store interface {
	// Close releases the database.
	Close() error
	// Ping checks the database is reachable (for /readyz).
	Ping(ctx context.Context) error

	PutResourceGroup(ctx context.Context, rg ResourceGroup) (ResourceGroup, error)
	GetResourceGroup(ctx context.Context, subscription, name string) (ResourceGroup, error)
	ListResourceGroups(ctx context.Context, subscription string) ([]ResourceGroup, error)
	// DeleteResourceGroup fails with ErrConflict while clusters remain in it.
	DeleteResourceGroup(ctx context.Context, subscription, name string) error

	// PutCluster creates or updates a cluster (creating its resource group
	// on demand). On update, connectivity, heartbeat and CreatedAt are kept.
	PutCluster(ctx context.Context, c Cluster) (Cluster, error)
	GetCluster(ctx context.Context, ref ClusterRef) (Cluster, error)
	// ListClusters lists clusters of a subscription, optionally of one group
	// (empty subscription: all).
	ListClusters(ctx context.Context, subscription, resourceGroup string) ([]Cluster, error)
	// DeleteCluster deletes the cluster, its extensions, tokens and health;
	// its alerts are kept.
	DeleteCluster(ctx context.Context, ref ClusterRef) error
	// RecordHeartbeat stores a heartbeat and sets the cluster Connected.
	RecordHeartbeat(ctx context.Context, ref ClusterRef, hb Heartbeat) error
	// SweepConnectivity sets Connected clusters whose last heartbeat is
	// before offlineBefore to Offline, and Offline/Connecting ones whose last
	// heartbeat (or creation) is before expiredBefore to Expired. It returns
	// how many changed.
	SweepConnectivity(ctx context.Context, offlineBefore, expiredBefore time.Time) (int, error)
	// ExpireByCredential sets Expired every cluster that has agent
	// credentials and none of them is valid at now (all expired or revoked).
	ExpireByCredential(ctx context.Context, now time.Time) (int, error)
	// FailUndelivered sets Failed (with status) every extension whose
	// desired generation the agent has not applied since before.
	FailUndelivered(ctx context.Context, before time.Time, status ExtensionStatus) (int, error)

	// PutExtension creates or updates an extension's desired state and
	// increments Generation when anything desired changed.
	PutExtension(ctx context.Context, e Extension) (Extension, error)
	GetExtension(ctx context.Context, cluster ClusterRef, name string) (Extension, error)
	ListExtensions(ctx context.Context, cluster ClusterRef) ([]Extension, error)
	// ReportExtensionStatus records what the agent applied.
	ReportExtensionStatus(ctx context.Context, cluster ClusterRef, name string, generation int64, state string, statuses []ExtensionStatus) error
	DeleteExtension(ctx context.Context, cluster ClusterRef, name string) error
	// MarkExtensionDeleting records that an extension is to be removed from
	// its cluster: state Deleting and a new generation, which the agent
	// confirms (then the extension is deleted). ErrNotFound if it is gone.
	MarkExtensionDeleting(ctx context.Context, cluster ClusterRef, name string) (Extension, error)

	// GetPlan returns the subscription's plan (a disabled zero plan when
	// none was stored).
	GetPlan(ctx context.Context, subscription string) (Plan, error)
	PutPlan(ctx context.Context, p Plan) (Plan, error)

	// IngestAlerts stores a batch in one transaction. An alert whose ID is
	// known is merged: Count becomes the larger, StartTime the earlier,
	// EndTime the later, and Status/StatusChangedBy/At are kept (a replay
	// never reopens a dismissed alert). Alerts carrying a non-Active status
	// on insert (suppressed by the hub) keep it.
	IngestAlerts(ctx context.Context, cluster ClusterRef, alerts []Alert) (IngestResult, error)
	GetAlert(ctx context.Context, id string) (Alert, error)
	ListAlerts(ctx context.Context, f AlertFilter) (AlertPage, error)
	CountAlerts(ctx context.Context, f AlertFilter) (int, error)
	UpdateAlertStatus(ctx context.Context, id, status, by string, at time.Time) (Alert, error)

	PutSuppression(ctx context.Context, s Suppression) (Suppression, error)
	GetSuppression(ctx context.Context, subscription, name string) (Suppression, error)
	ListSuppressions(ctx context.Context, subscription string) ([]Suppression, error)
	DeleteSuppression(ctx context.Context, subscription, name string) error

	CreateToken(ctx context.Context, t Token) error
	// TokenByHash finds a token by its hash (revoked or expired tokens are
	// returned too; the caller decides).
	TokenByHash(ctx context.Context, hash []byte) (Token, error)
	ListTokens(ctx context.Context) ([]Token, error)
	// RevokeToken revokes a token from at (which may lie ahead: a grace
	// period); an earlier revocation time wins.
	RevokeToken(ctx context.Context, id string, at time.Time) error
	TouchToken(ctx context.Context, id string, at time.Time) error

	PutSensorHealth(ctx context.Context, h SensorHealth) error
	ListSensorHealth(ctx context.Context, cluster ClusterRef) ([]SensorHealth, error)

	PutOutput(ctx context.Context, o Output) (Output, error)
	ListOutputs(ctx context.Context) ([]Output, error)
	DeleteOutput(ctx context.Context, name string) error

	// GetSetting/PutSetting keep small hub-wide values (e.g. "bootstrap").
	GetSetting(ctx context.Context, key string) (string, error)
	PutSetting(ctx context.Context, key, value string) error

	// RunExclusive runs fn only if no other hub replica on the same database
	// runs a job of that name now (PostgreSQL: pg_try_advisory_lock; SQLite:
	// one process owns the file). It reports whether fn ran.
	RunExclusive(ctx context.Context, name string, fn func(context.Context) error) (bool, error)
}

package hubclient

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/vigil-sec/vigil/internal/store"
)

// ExtensionsPath is the collection of a cluster's extensions under its ARM id.
const ExtensionsPath = "/providers/Vigil.KubernetesConfiguration/extensions"

// Extension is an extension resource as the API returns it.
type Extension struct {
	ID         string              `json:"id,omitempty"`
	Name       string              `json:"name,omitempty"`
	Type       string              `json:"type,omitempty"`
	Properties ExtensionProperties `json:"properties"`
}

// ExtensionProperties are an extension's properties.
type ExtensionProperties struct {
	ExtensionType         string            `json:"extensionType,omitempty"`
	Version               string            `json:"version,omitempty"`
	ConfigurationSettings map[string]string `json:"configurationSettings,omitempty"`
	// ConfigurationProtectedSettings are write-only: sent on create/update,
	// never returned to users. (An agent receives them only from a hub
	// that delivers them to its cluster's agent token.)
	ConfigurationProtectedSettings map[string]string       `json:"configurationProtectedSettings,omitempty"`
	ProvisioningState              string                  `json:"provisioningState,omitempty"`
	Statuses                       []store.ExtensionStatus `json:"statuses,omitempty"`
	Generation                     int64                   `json:"generation,omitempty"`
	AppliedGeneration              int64                   `json:"appliedGeneration,omitempty"`
	CreatedAt                      time.Time               `json:"createdAt,omitzero"`
	UpdatedAt                      time.Time               `json:"updatedAt,omitzero"`
}

// ClusterCreate is the body of a cluster registration.
type ClusterCreate struct {
	Location   string            `json:"location,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
	Properties struct {
		Distribution string `json:"distribution,omitempty"`
	} `json:"properties"`
}

// PutCluster registers (or updates) a connected cluster.
func (c *Client) PutCluster(ctx context.Context, subscription, resourceGroup, name string, in ClusterCreate) (Cluster, error) {
	p, err := ClusterPath(subscription, resourceGroup, name)
	if err != nil {
		return Cluster{}, err
	}
	var out Cluster
	err = c.Do(ctx, http.MethodPut, p, nil, in, &out)
	return out, err
}

// DeleteCluster deletes a connected cluster (nil when it did not exist).
func (c *Client) DeleteCluster(ctx context.Context, subscription, resourceGroup, name string) error {
	p, err := ClusterPath(subscription, resourceGroup, name)
	if err != nil {
		return err
	}
	return c.Do(ctx, http.MethodDelete, p, nil, nil, nil)
}

// ExtensionPath is the API path of an extension ("" name: the collection).
func ExtensionPath(subscription, resourceGroup, cluster, name string) (string, error) {
	p, err := ClusterPath(subscription, resourceGroup, cluster)
	if err != nil {
		return "", err
	}
	p += ExtensionsPath
	if name == "" {
		return p, nil
	}
	n, err := segment("extension name", name)
	if err != nil {
		return "", err
	}
	return p + "/" + n, nil
}

// ListExtensions lists a cluster's extensions.
func (c *Client) ListExtensions(ctx context.Context, subscription, resourceGroup, cluster string) ([]Extension, error) {
	p, err := ExtensionPath(subscription, resourceGroup, cluster, "")
	if err != nil {
		return nil, err
	}
	es, _, err := listAll[Extension](ctx, c, p, nil, 0)
	return es, err
}

// ListExtensionsByClusterID lists the extensions of the cluster with ARM id
// clusterID (what an agent knows).
func (c *Client) ListExtensionsByClusterID(ctx context.Context, clusterID string) ([]Extension, error) {
	es, _, err := listAll[Extension](ctx, c, clusterID+ExtensionsPath, nil, 0)
	return es, err
}

// GetExtension gets an extension.
func (c *Client) GetExtension(ctx context.Context, subscription, resourceGroup, cluster, name string) (Extension, error) {
	p, err := ExtensionPath(subscription, resourceGroup, cluster, name)
	if err != nil {
		return Extension{}, err
	}
	var e Extension
	err = c.Do(ctx, http.MethodGet, p, nil, nil, &e)
	return e, err
}

// PutExtension creates or updates an extension.
func (c *Client) PutExtension(ctx context.Context, subscription, resourceGroup, cluster, name string, in Extension) (Extension, error) {
	p, err := ExtensionPath(subscription, resourceGroup, cluster, name)
	if err != nil {
		return Extension{}, err
	}
	var out Extension
	err = c.Do(ctx, http.MethodPut, p, nil, in, &out)
	return out, err
}

// DeleteExtension deletes an extension (nil when it did not exist).
func (c *Client) DeleteExtension(ctx context.Context, subscription, resourceGroup, cluster, name string) error {
	return c.DeleteExtensionForce(ctx, subscription, resourceGroup, cluster, name, false)
}

// DeleteExtensionForce deletes an extension; an applied one stays
// Deleting until the agent confirms it removed it, unless force.
func (c *Client) DeleteExtensionForce(ctx context.Context, subscription, resourceGroup, cluster, name string, force bool) error {
	p, err := ExtensionPath(subscription, resourceGroup, cluster, name)
	if err != nil {
		return err
	}
	var q url.Values
	if force {
		q = url.Values{"force": {"true"}}
	}
	return c.Do(ctx, http.MethodDelete, p, q, nil, nil)
}

// Plan is the Containers plan of a subscription.
type Plan struct {
	ID         string         `json:"id,omitempty"`
	Name       string         `json:"name,omitempty"`
	Type       string         `json:"type,omitempty"`
	Properties PlanProperties `json:"properties"`
}

// PlanProperties are the plan's tier (Standard on, Free off) and components.
type PlanProperties struct {
	PricingTier string          `json:"pricingTier"`
	Components  map[string]bool `json:"components,omitempty"`
	UpdatedBy   string          `json:"updatedBy,omitempty"`
	UpdatedAt   time.Time       `json:"updatedAt,omitzero"`
}

func planPath(subscription string) (string, error) {
	sp, err := subscriptionPath(subscription)
	if err != nil {
		return "", err
	}
	return sp + "/providers/Vigil.Security/pricings/Containers", nil
}

// GetPlan gets the Containers plan.
func (c *Client) GetPlan(ctx context.Context, subscription string) (Plan, error) {
	p, err := planPath(subscription)
	if err != nil {
		return Plan{}, err
	}
	var out Plan
	err = c.Do(ctx, http.MethodGet, p, nil, nil, &out)
	return out, err
}

// PutPlan sets the Containers plan.
func (c *Client) PutPlan(ctx context.Context, subscription string, in PlanProperties) (Plan, error) {
	p, err := planPath(subscription)
	if err != nil {
		return Plan{}, err
	}
	var out Plan
	err = c.Do(ctx, http.MethodPut, p, nil, Plan{Properties: PlanProperties{PricingTier: in.PricingTier, Components: in.Components}}, &out)
	return out, err
}

// Recommendation is a recommendation the hub computed from the inventory.
type Recommendation struct {
	ID         string                   `json:"id"`
	Name       string                   `json:"name"`
	Type       string                   `json:"type"`
	Properties RecommendationProperties `json:"properties"`
}

// RecommendationProperties describe a recommendation and its remedy.
type RecommendationProperties struct {
	DisplayName string `json:"displayName"`
	Description string `json:"description"`
	Severity    string `json:"severity"`
	ResourceID  string `json:"resourceId"`
	Remediation string `json:"remediation"`
}

// ListRecommendations lists the subscription's recommendations.
func (c *Client) ListRecommendations(ctx context.Context, subscription string) ([]Recommendation, error) {
	sp, err := subscriptionPath(subscription)
	if err != nil {
		return nil, err
	}
	rs, _, err := listAll[Recommendation](ctx, c, sp+"/providers/Vigil.Security/recommendations", nil, 0)
	return rs, err
}

// Heartbeat is an agent's heartbeat.
type Heartbeat struct {
	ClusterID         string `json:"clusterId"`
	AgentVersion      string `json:"agentVersion,omitempty"`
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	NodeCount         int    `json:"nodeCount"`
}

// SendHeartbeat posts a heartbeat (agent or sensor token).
func (c *Client) SendHeartbeat(ctx context.Context, h Heartbeat) error {
	return c.Do(ctx, http.MethodPost, "/ingest/v1/heartbeat", nil, h, nil)
}

// ExtensionStatusReport is what an agent reports for an extension generation.
type ExtensionStatusReport struct {
	ClusterID         string                  `json:"clusterId"`
	Name              string                  `json:"name"`
	Generation        int64                   `json:"generation"`
	ProvisioningState string                  `json:"provisioningState"`
	Statuses          []store.ExtensionStatus `json:"statuses,omitempty"`
}

// ReportExtensionStatus posts an extension's provisioning state (agent token).
func (c *Client) ReportExtensionStatus(ctx context.Context, r ExtensionStatusReport) error {
	return c.Do(ctx, http.MethodPost, "/ingest/v1/extensionStatus", nil, r, nil)
}

// RenewedToken is the agent's new credential (POST /ingest/v1/renewToken).
type RenewedToken struct {
	ID        string    `json:"id"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
	// OldExpiresAt is when the token that asked stops working.
	OldExpiresAt time.Time `json:"oldExpiresAt"`
}

// RenewAgentToken asks for a new agent token for the caller's cluster (agent
// token only); the one used keeps working for the hub's grace period.
func (c *Client) RenewAgentToken(ctx context.Context) (RenewedToken, error) {
	var out RenewedToken
	err := c.Do(ctx, http.MethodPost, "/ingest/v1/renewToken", nil, nil, &out)
	return out, err
}

// Package armapi holds the JSON shapes of the hub's ARM-style API that both
// the hub (internal/hub) and its client (internal/hubclient) use, so that
// the two cannot drift apart.
package armapi

import "time"

// TokenResource is an API token as the hub returns it
// (/providers/Vigil.Hub/tokens/{id}); the secret only from create.
type TokenResource struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Properties TokenProperties `json:"properties"`
}

// TokenProperties are a token's properties.
type TokenProperties struct {
	DisplayName string    `json:"displayName"`
	Kind        string    `json:"kind"`
	Role        string    `json:"role,omitempty"`
	Scope       string    `json:"scope,omitempty"`
	ClusterID   string    `json:"clusterId,omitempty"`
	CreatedBy   string    `json:"createdBy,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	ExpiresAt   time.Time `json:"expiresAt,omitzero"`
	RevokedAt   time.Time `json:"revokedAt,omitzero"`
	LastUsed    time.Time `json:"lastUsed,omitzero"`
	State       string    `json:"state"` // Active, Expired, Revoked
	// Secret is returned once, by create.
	Secret string `json:"token,omitempty"`
}

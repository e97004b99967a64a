package hub

import (
	"fmt"
	"net/http"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/store"
)

// Agent credentials live AgentTokenLifetime; an agent renews its own from
// half-way, and the old one keeps working for RenewGrace so the agent can
// switch without a gap.
const (
	AgentTokenLifetime = 90 * 24 * time.Hour
	RenewGrace         = time.Hour
)

type renewedToken struct {
	ID        string    `json:"id"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
	// OldExpiresAt is when the token that asked stops working.
	OldExpiresAt time.Time `json:"oldExpiresAt"`
}

// renewToken gives an agent a new credential for its cluster and retires
// the one it used after RenewGrace.
func (s *Server) renewToken(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	if p.Kind != store.TokenAgent {
		return apiErr(http.StatusForbidden, "AuthorizationFailed", "only an agent renews its own credential this way; people create tokens with `vigil hub token create`")
	}
	now := s.cfg.Now().UTC()
	secret, t, err := auth.CreateToken(r.Context(), s.st, auth.NewToken{
		Name: p.Name, Kind: store.TokenAgent, Cluster: p.Cluster, CreatedBy: "renewal/" + p.TokenID,
		ExpiresAt: now.Add(AgentTokenLifetime),
	}, now)
	if err != nil {
		return fmt.Errorf("renew the agent credential of %s: %w", auth.ClusterID(p.Cluster), err)
	}
	retire := now.Add(RenewGrace)
	if err := s.st.RevokeToken(r.Context(), p.TokenID, retire); err != nil {
		return fmt.Errorf("retire the renewed agent credential %s: %w", p.TokenID, err)
	}
	s.log.Info("agent credential renewed", "cluster", auth.ClusterID(p.Cluster), "old", p.TokenID, "new", t.ID, "expires", t.ExpiresAt)
	writeJSON(w, http.StatusCreated, renewedToken{ID: t.ID, Token: secret, ExpiresAt: t.ExpiresAt, OldExpiresAt: retire})
	return nil
}

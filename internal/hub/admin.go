package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/armapi"
	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/store"
)

const tokensPath = "/providers/Vigil.Hub/tokens"
const outputsPath = "/providers/Vigil.Hub/outputs"

type tokenResource = armapi.TokenResource

type tokenProperties = armapi.TokenProperties

func (s *Server) toToken(t store.Token) tokenResource {
	pr := tokenProperties{DisplayName: t.Name, Kind: t.Kind, Role: t.Role, Scope: t.Scope, CreatedBy: t.CreatedBy,
		CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt, RevokedAt: t.RevokedAt, LastUsed: t.LastUsed, State: "Active"}
	if t.Kind != store.TokenUser {
		pr.ClusterID = auth.ClusterID(t.Cluster)
	}
	switch {
	case !t.RevokedAt.IsZero() && !s.cfg.Now().Before(t.RevokedAt):
		pr.State = "Revoked"
	case !t.ExpiresAt.IsZero() && !s.cfg.Now().Before(t.ExpiresAt):
		pr.State = "Expired"
	}
	return tokenResource{ID: tokensPath + "/" + t.ID, Name: t.ID, Type: "Vigil.Hub/tokens", Properties: pr}
}

type tokenCreate struct {
	Name      string    `json:"name"`
	Kind      string    `json:"kind,omitempty"`
	Role      string    `json:"role,omitempty"`
	Scope     string    `json:"scope,omitempty"`
	ClusterID string    `json:"clusterId,omitempty"`
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	// Only Owners may manage tokens; check before reading the body.
	if err := authorize(p, auth.ActionAdmin, p.Scope); err != nil {
		return err
	}
	var in tokenCreate
	if err := decodeBody(r, &in); err != nil {
		return err
	}
	n := auth.NewToken{Name: in.Name, Kind: in.Kind, Role: in.Role, Scope: in.Scope, ExpiresAt: in.ExpiresAt, CreatedBy: p.String()}
	target := in.Scope
	if in.Kind == store.TokenSensor || in.Kind == store.TokenAgent {
		ref, err := auth.ParseClusterID(in.ClusterID)
		if err != nil {
			return badRequest("clusterId: %v", err)
		}
		n.Cluster, n.Scope, target = ref, "", auth.ClusterID(ref)
	} else if in.ClusterID != "" {
		return badRequest("clusterId is only for sensor and agent tokens; a user token takes a scope (which may be a cluster id)")
	}
	if err := n.Validate(); err != nil {
		return badRequest("%v", err)
	}
	// An Owner may only hand out what lies within its own scope.
	if err := authorize(p, auth.ActionAdmin, target); err != nil {
		return err
	}
	if n.Kind != store.TokenUser {
		if _, err := s.st.GetCluster(r.Context(), n.Cluster); err != nil {
			return notFound(err, "cluster %s does not exist: create or connect it first", target)
		}
	}
	secret, t, err := auth.CreateToken(r.Context(), s.st, n, s.cfg.Now())
	if err != nil {
		if strings.Contains(err.Error(), "in the past") {
			return badRequest("%v", err)
		}
		return err
	}
	out := s.toToken(t)
	out.Properties.Secret = secret
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	if err := authorize(p, auth.ActionAdmin, p.Scope); err != nil {
		return err
	}
	ts, err := s.st.ListTokens(r.Context())
	if err != nil {
		return fmt.Errorf("list tokens: %w", err)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].CreatedAt.Before(ts[j].CreatedAt) })
	out := armList{Value: []any{}}
	for _, t := range ts {
		if auth.VisibleTo(p, t) {
			out.Value = append(out.Value, s.toToken(t))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	if err := authorize(p, auth.ActionAdmin, p.Scope); err != nil {
		return err
	}
	id := r.PathValue("tokenId")
	t, err := auth.FindToken(r.Context(), s.st, id)
	if errors.Is(err, store.ErrNotFound) {
		return apiErr(http.StatusNotFound, "ResourceNotFound", "token '%s' not found; list tokens with `vigil hub token list`", id)
	}
	if err != nil {
		return err
	}
	if !auth.VisibleTo(p, t) {
		return authorize(p, auth.ActionAdmin, tokenTarget(t))
	}
	t, err = auth.RevokeToken(r.Context(), s.st, id, s.cfg.Now())
	if err != nil {
		return notFound(err, "token '%s' not found", id)
	}
	s.authn.Forget(id)
	writeJSON(w, http.StatusOK, s.toToken(t))
	return nil
}

// tokenTarget is what managing t requires admin on.
func tokenTarget(t store.Token) string {
	if t.Kind == store.TokenUser {
		return t.Scope
	}
	return auth.ClusterID(t.Cluster)
}

// ---- outputs

// outputsChanged hands the new list of outputs to Config.OutputsChanged.
func (s *Server) outputsChanged(ctx context.Context) {
	if s.cfg.OutputsChanged == nil {
		return
	}
	os, err := s.st.ListOutputs(ctx)
	if err != nil {
		s.log.Error("outputs changed but could not be listed for the dispatcher; they apply after a hub restart", "err", err)
		return
	}
	s.cfg.OutputsChanged(os)
}

type outputResource struct {
	ID         string            `json:"id,omitempty"`
	Name       string            `json:"name,omitempty"`
	Type       string            `json:"type,omitempty"`
	Properties *outputProperties `json:"properties,omitempty"`
}

type outputProperties struct {
	Type        string            `json:"type"`
	MinSeverity string            `json:"minSeverity,omitempty"`
	Config      map[string]string `json:"config"`
	Enabled     *bool             `json:"enabled,omitempty"`
	CreatedAt   time.Time         `json:"createdAt,omitzero"`
}

func toOutput(o store.Output) outputResource {
	en := o.Enabled
	return outputResource{ID: outputsPath + "/" + o.Name, Name: o.Name, Type: "Vigil.Hub/outputs",
		Properties: &outputProperties{Type: o.Type, MinSeverity: o.MinSeverity, Config: o.Config, Enabled: &en, CreatedAt: o.CreatedAt}}
}

func validateOutput(pr *outputProperties) error {
	switch pr.Type {
	case "webhook":
		u, err := url.Parse(pr.Config["url"])
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return badRequest("properties.config.url %q is not an http(s) URL: a webhook output needs the URL to POST alerts to", pr.Config["url"])
		}
		switch f := pr.Config["format"]; f {
		case "", "json", "falco":
		default:
			return badRequest("properties.config.format %q is invalid: use json or falco (for falcosidekick)", f)
		}
	case "syslog":
		if pr.Config["address"] == "" {
			return badRequest("properties.config.address is required for a syslog output, e.g. \"syslog.example:514\"")
		}
		switch n := pr.Config["network"]; n {
		case "", "udp", "tcp", "tls":
		default:
			return badRequest("properties.config.network %q is invalid: use udp, tcp or tls", n)
		}
	default:
		return badRequest("properties.type %q is invalid: use webhook or syslog", pr.Type)
	}
	if pr.MinSeverity == "" {
		pr.MinSeverity = "Low"
	}
	c, ok := canonical(severities, pr.MinSeverity)
	if !ok {
		return badRequest("properties.minSeverity %q is invalid: use %s", pr.MinSeverity, strings.Join(severities, ", "))
	}
	pr.MinSeverity = c
	return nil
}

func (s *Server) putOutput(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	if err := authorize(p, auth.ActionAdmin, "/"); err != nil {
		return err
	}
	name := r.PathValue("output")
	if err := checkName("output", name); err != nil {
		return err
	}
	var in outputResource
	if err := decodeBody(r, &in); err != nil {
		return err
	}
	if in.Properties == nil {
		return badRequest("properties are required: {\"properties\":{\"type\":\"webhook\",\"minSeverity\":\"Medium\",\"config\":{\"url\":\"https://...\"}}}")
	}
	if err := validateOutput(in.Properties); err != nil {
		return err
	}
	existing, err := s.st.ListOutputs(r.Context())
	if err != nil {
		return fmt.Errorf("list outputs: %w", err)
	}
	existed := false
	for _, o := range existing {
		existed = existed || o.Name == name
	}
	enabled := in.Properties.Enabled == nil || *in.Properties.Enabled
	out, err := s.st.PutOutput(r.Context(), store.Output{Name: name, Type: in.Properties.Type, MinSeverity: in.Properties.MinSeverity,
		Config: in.Properties.Config, Enabled: enabled, CreatedAt: s.cfg.Now().UTC()})
	if err != nil {
		return fmt.Errorf("put output %s: %w", name, err)
	}
	s.outputsChanged(r.Context())
	writeJSON(w, createdOrOK(existed), toOutput(out))
	return nil
}

func (s *Server) getOutput(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	if err := authorize(p, auth.ActionAdmin, "/"); err != nil {
		return err
	}
	name := r.PathValue("output")
	os, err := s.st.ListOutputs(r.Context())
	if err != nil {
		return fmt.Errorf("list outputs: %w", err)
	}
	for _, o := range os {
		if o.Name == name {
			writeJSON(w, http.StatusOK, toOutput(o))
			return nil
		}
	}
	return apiErr(http.StatusNotFound, "ResourceNotFound", "output '%s' not found; list outputs with GET %s", name, outputsPath)
}

func (s *Server) listOutputs(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	if err := authorize(p, auth.ActionAdmin, "/"); err != nil {
		return err
	}
	os, err := s.st.ListOutputs(r.Context())
	if err != nil {
		return fmt.Errorf("list outputs: %w", err)
	}
	sort.Slice(os, func(i, j int) bool { return os[i].Name < os[j].Name })
	out := armList{Value: []any{}}
	for _, o := range os {
		out.Value = append(out.Value, toOutput(o))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) deleteOutput(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	if err := authorize(p, auth.ActionAdmin, "/"); err != nil {
		return err
	}
	err := s.st.DeleteOutput(r.Context(), r.PathValue("output"))
	if errors.Is(err, store.ErrNotFound) {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete output: %w", err)
	}
	s.outputsChanged(r.Context())
	w.WriteHeader(http.StatusOK)
	return nil
}

package hub

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/store"
)

const maxManagementBody = 1 << 20

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._()-]{0,89}$`)

func checkName(kind, v string) error {
	if !nameRE.MatchString(v) || strings.HasSuffix(v, ".") {
		return badRequest("%s name %q is invalid: use 1-90 letters, digits, '.', '_', '-', '(' or ')', starting with a letter or digit and not ending in '.'", kind, v)
	}
	return nil
}

func checkTags(tags map[string]string) error {
	if len(tags) > 50 {
		return badRequest("%d tags given; at most 50 are allowed", len(tags))
	}
	for k, v := range tags {
		if k == "" || len(k) > 512 || len(v) > 256 {
			return badRequest("tag %q is invalid: names are 1-512 characters and values at most 256", k)
		}
	}
	return nil
}

// decodeBody decodes a management request body strictly (unknown fields
// and trailing data are errors) into v.
func decodeBody(r *http.Request, v any) error {
	data, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxManagementBody))
	if err != nil {
		return jsonError("request body", err)
	}
	if err := noNUL(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError("request body", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("request body has data after the JSON object: send exactly one JSON object")
	}
	return nil
}

// noNUL refuses JSON carrying NUL characters: no name, tag or setting
// needs one, and PostgreSQL cannot store them.
func noNUL(data []byte) error {
	if bytes.Contains(data, []byte(`\u0000`)) {
		return badRequest("strings may not contain NUL characters (\\u0000): remove them")
	}
	return nil
}

// jsonError turns a decoding error into a 400 (or 413) that names the field.
func jsonError(what string, err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return apiErr(http.StatusRequestEntityTooLarge, "RequestTooLarge", "%s is larger than %d bytes: send less", what, mbe.Limit)
	case errors.Is(err, io.EOF):
		return badRequest("%s is empty: send a JSON object", what)
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "(top level)"
		}
		return badRequest("%s: field %s must be %s, not a JSON %s", what, field, jsonKind(te.Type.String()), te.Value)
	case errors.As(err, &se):
		return badRequest("%s is not valid JSON at byte %d: %v", what, se.Offset, err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return badRequest("%s: %s is not a known field (check the spelling against /openapi.json)", what, strings.TrimPrefix(err.Error(), "json: "))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("%s ends in the middle of a JSON value: send the whole document", what)
	}
	return badRequest("%s: %v", what, err)
}

func jsonKind(goType string) string {
	switch {
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "struct"), strings.Contains(goType, "."):
		if goType == "time.Time" {
			return "an RFC 3339 time string"
		}
		return "an object"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "true or false"
	}
	return "a number (" + goType + ")"
}

func subID(sub string) string { return "/subscriptions/" + sub }
func rgID(sub, rg string) string {
	return "/subscriptions/" + sub + "/resourceGroups/" + rg
}

func clusterRef(r *http.Request) store.ClusterRef {
	return store.ClusterRef{Subscription: r.PathValue("sub"), ResourceGroup: r.PathValue("rg"), Name: r.PathValue("cluster")}
}

func extensionID(c store.ClusterRef, name string) string {
	return auth.ClusterID(c) + "/providers/Vigil.KubernetesConfiguration/extensions/" + name
}

// armList is an ARM list response.
type armList struct {
	Value    []any  `json:"value"`
	NextLink string `json:"nextLink,omitempty"`
}

// ---- resource groups

type rgResource struct {
	ID         string            `json:"id,omitempty"`
	Name       string            `json:"name,omitempty"`
	Type       string            `json:"type,omitempty"`
	Location   string            `json:"location,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
	Properties *rgProperties     `json:"properties,omitempty"`
}

type rgProperties struct {
	ProvisioningState string    `json:"provisioningState,omitempty"`
	CreatedAt         time.Time `json:"createdAt,omitzero"`
}

func toRG(g store.ResourceGroup) rgResource {
	return rgResource{ID: rgID(g.Subscription, g.Name), Name: g.Name, Type: "Vigil.Resources/resourceGroups",
		Location: g.Location, Tags: g.Tags, Properties: &rgProperties{ProvisioningState: store.ProvisioningSucceeded, CreatedAt: g.CreatedAt}}
}

func (s *Server) putRG(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	sub, name := r.PathValue("sub"), r.PathValue("rg")
	if err := authorize(p, auth.ActionWrite, rgID(sub, name)); err != nil {
		return err
	}
	if err := checkName("subscription", sub); err != nil {
		return err
	}
	if err := checkName("resource group", name); err != nil {
		return err
	}
	var in rgResource
	if err := decodeBody(r, &in); err != nil {
		return err
	}
	if err := checkTags(in.Tags); err != nil {
		return err
	}
	_, err := s.st.GetResourceGroup(r.Context(), sub, name)
	existed := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	g, err := s.st.PutResourceGroup(r.Context(), store.ResourceGroup{Subscription: sub, Name: name, Location: in.Location, Tags: in.Tags, CreatedAt: s.cfg.Now().UTC()})
	if err != nil {
		return fmt.Errorf("put resource group %s: %w", name, err)
	}
	writeJSON(w, createdOrOK(existed), toRG(g))
	return nil
}

func createdOrOK(existed bool) int {
	if existed {
		return http.StatusOK
	}
	return http.StatusCreated
}

func (s *Server) getRG(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	sub, name := r.PathValue("sub"), r.PathValue("rg")
	if err := authorize(p, auth.ActionRead, rgID(sub, name)); err != nil {
		return err
	}
	g, err := s.st.GetResourceGroup(r.Context(), sub, name)
	if err != nil {
		return notFound(err, "resource group '%s' not found in subscription '%s'; list them with GET /subscriptions/%s/resourceGroups", name, sub, sub)
	}
	writeJSON(w, http.StatusOK, toRG(g))
	return nil
}

func (s *Server) listRGs(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	sub := r.PathValue("sub")
	scope, err := auth.ListScope(p, auth.ActionRead, subID(sub))
	if err != nil {
		return err
	}
	gs, err := s.st.ListResourceGroups(r.Context(), sub)
	if err != nil {
		return fmt.Errorf("list resource groups: %w", err)
	}
	out := armList{Value: []any{}}
	for _, g := range gs {
		if auth.Covers(scope, rgID(sub, g.Name)) || auth.Covers(rgID(sub, g.Name), scope) {
			out.Value = append(out.Value, toRG(g))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) deleteRG(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	sub, name := r.PathValue("sub"), r.PathValue("rg")
	if err := authorize(p, auth.ActionWrite, rgID(sub, name)); err != nil {
		return err
	}
	err := s.st.DeleteResourceGroup(r.Context(), sub, name)
	switch {
	case errors.Is(err, store.ErrConflict):
		return apiErr(http.StatusConflict, "ResourceGroupNotEmpty", "resource group '%s' still holds connected clusters; delete them first (`vigil cluster list --resource-group %s`)", name, name)
	case errors.Is(err, store.ErrNotFound):
		w.WriteHeader(http.StatusNoContent)
		return nil
	case err != nil:
		return fmt.Errorf("delete resource group %s: %w", name, err)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// ---- connected clusters

type clusterResource struct {
	ID         string             `json:"id,omitempty"`
	Name       string             `json:"name,omitempty"`
	Type       string             `json:"type,omitempty"`
	Location   string             `json:"location,omitempty"`
	Tags       map[string]string  `json:"tags,omitempty"`
	Properties *clusterProperties `json:"properties,omitempty"`
}

type clusterProperties struct {
	Distribution string `json:"distribution,omitempty"`
	// Read-only: accepted on PUT (so a GET body can be sent back) and ignored.
	ConnectivityStatus   string    `json:"connectivityStatus,omitempty"`
	ProvisioningState    string    `json:"provisioningState,omitempty"`
	AgentVersion         string    `json:"agentVersion,omitempty"`
	KubernetesVersion    string    `json:"kubernetesVersion,omitempty"`
	TotalNodeCount       int       `json:"totalNodeCount,omitempty"`
	LastConnectivityTime time.Time `json:"lastConnectivityTime,omitzero"`
	CreatedAt            time.Time `json:"createdAt,omitzero"`
	UpdatedAt            time.Time `json:"updatedAt,omitzero"`
}

func toCluster(c store.Cluster) clusterResource {
	return clusterResource{ID: auth.ClusterID(c.ClusterRef), Name: c.Name, Type: "Vigil.Kubernetes/connectedClusters",
		Location: c.Location, Tags: c.Tags, Properties: &clusterProperties{
			Distribution: c.Distribution, ConnectivityStatus: c.ConnectivityStatus, ProvisioningState: c.ProvisioningState,
			AgentVersion: c.AgentVersion, KubernetesVersion: c.KubernetesVersion, TotalNodeCount: c.NodeCount,
			LastConnectivityTime: c.LastHeartbeat, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt,
		}}
}

var distributionRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

func (s *Server) putCluster(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ref := clusterRef(r)
	if err := authorize(p, auth.ActionWrite, auth.ClusterID(ref)); err != nil {
		return err
	}
	for kind, v := range map[string]string{"subscription": ref.Subscription, "resource group": ref.ResourceGroup, "cluster": ref.Name} {
		if err := checkName(kind, v); err != nil {
			return err
		}
	}
	var in clusterResource
	if err := decodeBody(r, &in); err != nil {
		return err
	}
	if err := checkTags(in.Tags); err != nil {
		return err
	}
	c := store.Cluster{ClusterRef: ref, Location: in.Location, Tags: in.Tags, ConnectivityStatus: store.Connecting, ProvisioningState: store.ProvisioningSucceeded}
	if in.Properties != nil {
		c.Distribution = in.Properties.Distribution
	}
	if c.Distribution != "" && !distributionRE.MatchString(c.Distribution) {
		return badRequest("properties.distribution %q is invalid: use a lower-case name such as kubeadm, k3s or standalone", c.Distribution)
	}
	_, err := s.st.GetCluster(r.Context(), ref)
	existed := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	now := s.cfg.Now().UTC()
	c.CreatedAt, c.UpdatedAt = now, now
	out, err := s.st.PutCluster(r.Context(), c)
	if err != nil {
		return fmt.Errorf("put cluster %s: %w", ref.Name, err)
	}
	writeJSON(w, createdOrOK(existed), toCluster(out))
	return nil
}

func (s *Server) getCluster(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ref := clusterRef(r)
	if err := authorize(p, auth.ActionRead, auth.ClusterID(ref)); err != nil {
		return err
	}
	c, err := s.st.GetCluster(r.Context(), ref)
	if err != nil {
		return notFound(err, "cluster '%s' not found in resource group '%s'; list clusters with `vigil cluster list`", ref.Name, ref.ResourceGroup)
	}
	writeJSON(w, http.StatusOK, toCluster(c))
	return nil
}

func (s *Server) patchCluster(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ref := clusterRef(r)
	if err := authorize(p, auth.ActionWrite, auth.ClusterID(ref)); err != nil {
		return err
	}
	var in struct {
		Tags map[string]string `json:"tags"`
	}
	if err := decodeBody(r, &in); err != nil {
		return err
	}
	if in.Tags == nil {
		return badRequest("PATCH changes tags only: send {\"tags\":{...}} (an empty object removes every tag)")
	}
	if err := checkTags(in.Tags); err != nil {
		return err
	}
	c, err := s.st.GetCluster(r.Context(), ref)
	if err != nil {
		return notFound(err, "cluster '%s' not found in resource group '%s'; create it with PUT first", ref.Name, ref.ResourceGroup)
	}
	c.Tags = in.Tags
	c.UpdatedAt = s.cfg.Now().UTC()
	out, err := s.st.PutCluster(r.Context(), c)
	if err != nil {
		return fmt.Errorf("update tags of cluster %s: %w", ref.Name, err)
	}
	writeJSON(w, http.StatusOK, toCluster(out))
	return nil
}

func (s *Server) deleteCluster(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ref := clusterRef(r)
	if err := authorize(p, auth.ActionWrite, auth.ClusterID(ref)); err != nil {
		return err
	}
	err := s.st.DeleteCluster(r.Context(), ref)
	if errors.Is(err, store.ErrNotFound) {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete cluster %s: %w", ref.Name, err)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) listClusters(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	sub, rg := r.PathValue("sub"), r.PathValue("rg")
	listID := subID(sub)
	if rg != "" {
		listID = rgID(sub, rg)
	}
	scope, err := auth.ListScope(p, auth.ActionRead, listID)
	if err != nil {
		return err
	}
	cs, err := s.st.ListClusters(r.Context(), sub, rg)
	if err != nil {
		return fmt.Errorf("list clusters: %w", err)
	}
	out := armList{Value: []any{}}
	for _, c := range cs {
		if auth.Covers(scope, auth.ClusterID(c.ClusterRef)) {
			out.Value = append(out.Value, toCluster(c))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// ---- extensions

type extensionResource struct {
	ID         string               `json:"id,omitempty"`
	Name       string               `json:"name,omitempty"`
	Type       string               `json:"type,omitempty"`
	Properties *extensionProperties `json:"properties,omitempty"`
}

type extensionProperties struct {
	ExtensionType         string            `json:"extensionType,omitempty"`
	Version               string            `json:"version,omitempty"`
	ConfigurationSettings map[string]string `json:"configurationSettings,omitempty"`
	// Write-only: sealed before storing, never returned.
	ConfigurationProtectedSettings map[string]string `json:"configurationProtectedSettings,omitempty"`
	// Read-only: accepted on PUT (so a GET body can be sent back) and ignored.
	ProvisioningState string                  `json:"provisioningState,omitempty"`
	Statuses          []store.ExtensionStatus `json:"statuses,omitempty"`
	Generation        int64                   `json:"generation,omitempty"`
	AppliedGeneration int64                   `json:"appliedGeneration,omitempty"`
	CreatedAt         time.Time               `json:"createdAt,omitzero"`
	UpdatedAt         time.Time               `json:"updatedAt,omitzero"`
}

func toExtension(e store.Extension) extensionResource {
	return extensionResource{ID: extensionID(e.Cluster, e.Name), Name: e.Name, Type: "Vigil.KubernetesConfiguration/extensions",
		Properties: &extensionProperties{
			ExtensionType: e.ExtensionType, Version: e.Version, ConfigurationSettings: e.ConfigurationSettings,
			ProvisioningState: e.ProvisioningState, Statuses: e.Statuses, Generation: e.Generation,
			AppliedGeneration: e.AppliedGeneration, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt,
		}}
}

var extensionTypeRE = regexp.MustCompile(`^[a-z0-9]+(\.[a-z0-9-]+)+$`)

func (s *Server) putExtension(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ref, name := clusterRef(r), r.PathValue("ext")
	if err := authorize(p, auth.ActionWrite, extensionID(ref, name)); err != nil {
		return err
	}
	if err := checkName("extension", name); err != nil {
		return err
	}
	var in extensionResource
	if err := decodeBody(r, &in); err != nil {
		return err
	}
	if in.Properties == nil || in.Properties.ExtensionType == "" {
		return badRequest("properties.extensionType is required, e.g. {\"properties\":{\"extensionType\":\"vigil.sensor\"}}")
	}
	pr := in.Properties
	if !extensionTypeRE.MatchString(pr.ExtensionType) {
		return badRequest("properties.extensionType %q is invalid: use a dotted lower-case name such as vigil.sensor", pr.ExtensionType)
	}
	if len(pr.ConfigurationSettings) > 100 || len(pr.ConfigurationProtectedSettings) > 100 {
		return badRequest("at most 100 configuration settings and 100 protected settings are allowed")
	}
	if _, err := s.st.GetCluster(r.Context(), ref); err != nil {
		return notFound(err, "cluster '%s' not found in resource group '%s'; connect it first (`vigil connect`) or create it with PUT", ref.Name, ref.ResourceGroup)
	}
	old, err := s.st.GetExtension(r.Context(), ref, name)
	existed := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if existed && old.ExtensionType != pr.ExtensionType {
		return apiErr(http.StatusConflict, "ExtensionTypeImmutable", "extension '%s' has type %s; the type cannot change: delete it and create a new one", name, old.ExtensionType)
	}
	e := store.Extension{Cluster: ref, Name: name, ExtensionType: pr.ExtensionType, Version: pr.Version,
		ConfigurationSettings: pr.ConfigurationSettings, ProvisioningState: store.ProvisioningCreating, CreatedAt: s.cfg.Now().UTC(), UpdatedAt: s.cfg.Now().UTC()}
	if existed {
		e.ProvisioningState = store.ProvisioningUpdating
		// Protected settings are never returned, so a GET-then-PUT round
		// trip must not wipe them: omitted means keep.
		e.ProtectedSettings = old.ProtectedSettings
	}
	if pr.ConfigurationProtectedSettings != nil {
		if s.cfg.Sealer == nil {
			return apiErr(http.StatusBadRequest, "ProtectedSettingsUnavailable", "this hub has no sealing key, so it cannot store configurationProtectedSettings; start the hub with a data directory (it creates the key) or send the settings without protection")
		}
		blob, err := s.cfg.Sealer.Seal(pr.ConfigurationProtectedSettings)
		if err != nil {
			return fmt.Errorf("seal protected settings of extension %s: %w", name, err)
		}
		e.ProtectedSettings = blob
	}
	if e.ExtensionType == SensorExtensionType || e.ExtensionType == AuditExtensionType {
		if err := s.ensureSensorToken(r, p, &e); err != nil {
			return err
		}
	}
	out, err := s.st.PutExtension(r.Context(), e)
	if err != nil {
		return notFound(err, "cluster '%s' not found in resource group '%s'", ref.Name, ref.ResourceGroup)
	}
	writeJSON(w, createdOrOK(existed), toExtension(out))
	return nil
}

func (s *Server) getExtension(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ref, name := clusterRef(r), r.PathValue("ext")
	if err := authorize(p, auth.ActionReadExtensions, extensionID(ref, name)); err != nil {
		return err
	}
	e, err := s.st.GetExtension(r.Context(), ref, name)
	if err != nil {
		return notFound(err, "extension '%s' not found on cluster '%s'; list them with `vigil extension list --cluster-name %s --resource-group %s`", name, ref.Name, ref.Name, ref.ResourceGroup)
	}
	out, err := s.extensionFor(p, e)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// extensionFor renders e for p. Protected settings are write-only for
// everyone but the agent of the extension's own cluster, which must apply
// them (e.g. the sensor's ingest token) and gets them unsealed.
func (s *Server) extensionFor(p auth.Principal, e store.Extension) (extensionResource, error) {
	out := toExtension(e)
	if p.Kind != store.TokenAgent || p.Cluster != e.Cluster || len(e.ProtectedSettings) == 0 || s.cfg.Sealer == nil {
		return out, nil
	}
	settings, err := s.cfg.Sealer.Open(e.ProtectedSettings)
	if err != nil {
		return out, fmt.Errorf("open the protected settings of extension %s (was the hub's sealing key replaced? re-send them with `vigil extension update`): %w", e.Name, err)
	}
	out.Properties.ConfigurationProtectedSettings = settings
	return out, nil
}

func (s *Server) listExtensions(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ref := clusterRef(r)
	if err := authorize(p, auth.ActionReadExtensions, auth.ClusterID(ref)+"/providers/Vigil.KubernetesConfiguration/extensions"); err != nil {
		return err
	}
	if _, err := s.st.GetCluster(r.Context(), ref); err != nil {
		return notFound(err, "cluster '%s' not found in resource group '%s'; list clusters with `vigil cluster list`", ref.Name, ref.ResourceGroup)
	}
	es, err := s.st.ListExtensions(r.Context(), ref)
	if err != nil {
		return fmt.Errorf("list extensions: %w", err)
	}
	sort.Slice(es, func(i, j int) bool { return es[i].Name < es[j].Name })
	out := armList{Value: []any{}}
	for _, e := range es {
		x, err := s.extensionFor(p, e)
		if err != nil {
			return err
		}
		out.Value = append(out.Value, x)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) deleteExtension(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ref, name := clusterRef(r), r.PathValue("ext")
	if err := authorize(p, auth.ActionWrite, extensionID(ref, name)); err != nil {
		return err
	}
	old, err := s.st.GetExtension(r.Context(), ref, name)
	if errors.Is(err, store.ErrNotFound) {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete extension %s: %w", name, err)
	}
	// Applied in the cluster: the agent removes it and confirms (202, the
	// extension shows Deleting until then). Never applied, or ?force=true
	// (a cluster that is gone for good): deleted at once.
	if old.AppliedGeneration > 0 && r.URL.Query().Get("force") != "true" {
		e, err := s.st.MarkExtensionDeleting(r.Context(), ref, name)
		if errors.Is(err, store.ErrNotFound) {
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusAccepted, toExtension(e))
		return nil
	}
	err = s.st.DeleteExtension(r.Context(), ref, name)
	if errors.Is(err, store.ErrNotFound) {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete extension %s: %w", name, err)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// ---- the Containers plan

// PlanComponents are the plan's on/off components.
var PlanComponents = []string{"runtimeDetection", "auditDetection"}

type planResource struct {
	ID         string          `json:"id,omitempty"`
	Name       string          `json:"name,omitempty"`
	Type       string          `json:"type,omitempty"`
	Properties *planProperties `json:"properties,omitempty"`
}

type planProperties struct {
	PricingTier string          `json:"pricingTier"` // Standard (on) or Free (off)
	Components  map[string]bool `json:"components,omitempty"`
	UpdatedBy   string          `json:"updatedBy,omitempty"`
	UpdatedAt   time.Time       `json:"updatedAt,omitzero"`
}

func planID(sub string) string {
	return subID(sub) + "/providers/Vigil.Security/pricings/Containers"
}

func toPlan(p store.Plan) planResource {
	tier := "Free"
	if p.Enabled {
		tier = "Standard"
	}
	comps := map[string]bool{}
	for _, c := range PlanComponents {
		comps[c] = p.Enabled && p.Components[c]
	}
	return planResource{ID: planID(p.Subscription), Name: "Containers", Type: "Vigil.Security/pricings",
		Properties: &planProperties{PricingTier: tier, Components: comps, UpdatedBy: p.UpdatedBy, UpdatedAt: p.UpdatedAt}}
}

func (s *Server) getPlan(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	sub := r.PathValue("sub")
	if err := authorize(p, auth.ActionRead, planID(sub)); err != nil {
		return err
	}
	pl, err := s.st.GetPlan(r.Context(), sub)
	if err != nil {
		return fmt.Errorf("get plan: %w", err)
	}
	pl.Subscription = sub
	writeJSON(w, http.StatusOK, toPlan(pl))
	return nil
}

func (s *Server) putPlan(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	sub := r.PathValue("sub")
	if err := authorize(p, auth.ActionAdmin, planID(sub)); err != nil {
		return err
	}
	if err := checkName("subscription", sub); err != nil {
		return err
	}
	var in planResource
	if err := decodeBody(r, &in); err != nil {
		return err
	}
	if in.Properties == nil {
		return badRequest("properties.pricingTier is required: Standard turns the plan on, Free turns it off")
	}
	pl := store.Plan{Subscription: sub, Components: map[string]bool{}, UpdatedBy: p.String(), UpdatedAt: s.cfg.Now().UTC()}
	switch strings.ToLower(in.Properties.PricingTier) {
	case "standard":
		pl.Enabled = true
	case "free":
	default:
		return badRequest("properties.pricingTier %q is invalid: use Standard (on) or Free (off)", in.Properties.PricingTier)
	}
	for _, c := range PlanComponents {
		pl.Components[c] = pl.Enabled // components default on with the plan
	}
	for k, v := range in.Properties.Components {
		known := false
		for _, c := range PlanComponents {
			known = known || c == k
		}
		if !known {
			return badRequest("properties.components.%s is not a component; known: %s", k, strings.Join(PlanComponents, ", "))
		}
		pl.Components[k] = v
	}
	out, err := s.st.PutPlan(r.Context(), pl)
	if err != nil {
		return fmt.Errorf("put plan: %w", err)
	}
	out.Subscription = sub
	writeJSON(w, http.StatusOK, toPlan(out))
	return nil
}

// SensorExtensionType is the extension that runs vigil's sensor on every
// node; SensorTokenSetting is its protected setting holding the ingest
// token the sensors ship alerts with (internal/extcatalog reads it).
const (
	SensorExtensionType = "vigil.sensor"
	AuditExtensionType  = "vigil.audit" // ships audit alerts with the same kind of token
	SensorTokenSetting  = "hubToken"
)

// ensureSensorToken gives a sensor extension created without an ingest
// token (the portal's and `vigil recommendations fix`'s one-click install,
// or an API call) a new sensor token for its cluster, sealed with its other
// protected settings, so the agent can deploy working sensors.
func (s *Server) ensureSensorToken(r *http.Request, p auth.Principal, e *store.Extension) error {
	if s.cfg.Sealer == nil {
		return nil // nothing can be stored sealed; the agent reports the missing token
	}
	settings := map[string]string{}
	if len(e.ProtectedSettings) > 0 {
		m, err := s.cfg.Sealer.Open(e.ProtectedSettings)
		if err != nil {
			return fmt.Errorf("open the protected settings of extension %s (was the hub's sealing key replaced? re-send them): %w", e.Name, err)
		}
		settings = m
	}
	if settings[SensorTokenSetting] != "" {
		return nil
	}
	secret, _, err := auth.CreateToken(r.Context(), s.st, auth.NewToken{
		Name: "sensor-" + e.Name, Kind: store.TokenSensor, Cluster: e.Cluster, CreatedBy: p.String(),
	}, s.cfg.Now())
	if err != nil {
		return fmt.Errorf("issue the ingest token of extension %s: %w", e.Name, err)
	}
	settings[SensorTokenSetting] = secret
	blob, err := s.cfg.Sealer.Seal(settings)
	if err != nil {
		return fmt.Errorf("seal protected settings of extension %s: %w", e.Name, err)
	}
	e.ProtectedSettings = blob
	return nil
}

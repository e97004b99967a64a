package portal

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/hub"
	"github.com/vigil-sec/vigil/internal/store"
)

// SensorExtensionName is the extension "Fix" creates for the
// installSensor recommendation (as `vigil extension create --name`).
const SensorExtensionName = "vigil-sensor"

func extensionsPath(c store.ClusterRef) string {
	return auth.ClusterID(c) + "/providers/Vigil.KubernetesConfiguration/extensions"
}

func planPath(sub string) string {
	return "/subscriptions/" + sub + "/providers/Vigil.Security/pricings/Containers"
}

func (p *Portal) clustersPage(w http.ResponseWriter, r *http.Request, s *session) {
	cs, err := p.visibleClusters(r.Context(), s.principal)
	var ae *auth.Error
	if errors.As(err, &ae) {
		p.errorPage(w, r, s, http.StatusForbidden, ae.Message)
		return
	}
	if err != nil {
		p.log.Error("portal: clusters", "err", err)
		p.errorPage(w, r, s, http.StatusServiceUnavailable, "The hub could not read clusters (storage unavailable); retry in a moment.")
		return
	}
	type row struct {
		store.Cluster
		Tags string
	}
	rows := make([]row, 0, len(cs))
	for _, c := range cs {
		var tags []string
		for k, v := range c.Tags {
			tags = append(tags, k+"="+v)
		}
		sort.Strings(tags)
		rows = append(rows, row{Cluster: c, Tags: strings.Join(tags, ", ")})
	}
	p.render(w, r, s, http.StatusOK, "clusters", "Clusters", map[string]any{"Rows": rows})
}

func (p *Portal) clusterPage(w http.ResponseWriter, r *http.Request, s *session) {
	ref := store.ClusterRef{Subscription: r.PathValue("sub"), ResourceGroup: r.PathValue("rg"), Name: r.PathValue("name")}
	id := auth.ClusterID(ref)
	ctx := r.Context()
	c, err := p.cfg.Store.GetCluster(ctx, ref)
	if err == nil && auth.Authorize(s.principal, auth.ActionRead, id) != nil {
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) {
		p.errorPage(w, r, s, http.StatusNotFound, fmt.Sprintf("Cluster %s does not exist or is outside your token's scope: pick one from the cluster list.", id))
		return
	}
	if err != nil {
		p.log.Error("portal: get cluster", "cluster", id, "err", err)
		p.errorPage(w, r, s, http.StatusServiceUnavailable, "The hub could not read the cluster (storage unavailable); retry in a moment.")
		return
	}
	data := map[string]any{"C": c, "ID": id, "AlertsURL": "/portal/alerts?range=all&cluster=" + url.QueryEscape(id)}
	if auth.Authorize(s.principal, auth.ActionReadExtensions, extensionsPath(ref)) == nil {
		exts, err := p.cfg.Store.ListExtensions(ctx, ref)
		if err != nil {
			p.log.Error("portal: list extensions", "cluster", id, "err", err)
			data["ExtError"] = "The extensions could not be read; retry in a moment."
		}
		sort.Slice(exts, func(i, j int) bool { return exts[i].Name < exts[j].Name })
		data["Extensions"] = exts
	}
	health, err := p.cfg.Store.ListSensorHealth(ctx, ref)
	if err != nil {
		p.log.Error("portal: sensor health", "cluster", id, "err", err)
		data["HealthError"] = "Sensor health could not be read; retry in a moment."
	}
	sort.Slice(health, func(i, j int) bool { return health[i].Node < health[j].Node })
	data["Health"] = health
	page, err := p.cfg.Store.ListAlerts(ctx, store.AlertFilter{Subscription: ref.Subscription, ResourceGroup: ref.ResourceGroup, Cluster: ref.Name, Limit: 10})
	if err != nil {
		p.log.Error("portal: cluster alerts", "cluster", id, "err", err)
	}
	data["Alerts"] = page.Alerts
	p.render(w, r, s, http.StatusOK, "cluster", c.Name, data)
}

// ---- recommendations

type recommendation struct {
	Name       string `json:"name"`
	Properties struct {
		DisplayName string `json:"displayName"`
		Description string `json:"description"`
		Severity    string `json:"severity"`
		ResourceID  string `json:"resourceId"`
		Remediation string `json:"remediation"`
	} `json:"properties"`
	// Fix is what the Fix button does ("" none): installSensor or enablePlan.
	Fix    string `json:"-"`
	CanFix bool   `json:"-"`
}

func (p *Portal) recommendationsPage(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	subs, err := p.visibleSubscriptions(ctx, s.principal)
	if err != nil {
		p.errorPage(w, r, s, http.StatusServiceUnavailable, "The hub could not read the inventory: "+err.Error())
		return
	}
	var recs []recommendation
	var errs []string
	for _, sub := range subs {
		// The API computes recommendations; the portal shows them as the
		// API returns them for this token.
		res, err := p.api(ctx, s, http.MethodGet, "/subscriptions/"+sub+"/providers/Vigil.Security/recommendations", nil)
		if err == nil && res.errMessage() != "" {
			err = errors.New(res.errMessage())
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("subscription %s: %v", sub, err))
			continue
		}
		var list struct {
			Value []recommendation `json:"value"`
		}
		if err := json.Unmarshal(res.body, &list); err != nil {
			errs = append(errs, fmt.Sprintf("subscription %s: unreadable answer: %v", sub, err))
			continue
		}
		for _, x := range list.Value {
			switch {
			case strings.HasPrefix(x.Name, "installSensor-"):
				x.Fix = "installSensor"
				if ref, err := auth.ParseClusterID(x.Properties.ResourceID); err == nil {
					x.CanFix = auth.Authorize(s.principal, auth.ActionWrite, extensionsPath(ref)+"/"+SensorExtensionName) == nil
				}
			case strings.HasPrefix(x.Name, "enableContainersPlan-"):
				x.Fix = "enablePlan"
				x.CanFix = auth.Authorize(s.principal, auth.ActionAdmin, x.Properties.ResourceID) == nil
			}
			recs = append(recs, x)
		}
	}
	p.render(w, r, s, http.StatusOK, "recommendations", "Recommendations", map[string]any{"Recs": recs, "Errors": errs})
}

func (p *Portal) fixRecommendation(w http.ResponseWriter, r *http.Request, s *session) {
	const back = "/portal/recommendations"
	rid := r.PostFormValue("resourceId")
	switch r.PostFormValue("fix") {
	case "installSensor":
		ref, err := auth.ParseClusterID(rid)
		if err != nil {
			p.errorPage(w, r, s, http.StatusBadRequest, "The recommendation names no cluster: "+err.Error())
			return
		}
		extPath := extensionsPath(ref) + "/" + SensorExtensionName
		if err := auth.Authorize(s.principal, auth.ActionWrite, extPath); err != nil {
			p.m.changes.WithLabelValues("extension", "refused").Inc()
			p.errorPage(w, r, s, http.StatusForbidden, "You may not install extensions on this cluster: "+err.Error())
			return
		}
		res, msg := p.change(r.Context(), s, "extension", http.MethodPut, extPath,
			map[string]any{"properties": map[string]any{"extensionType": "vigil.sensor"}})
		if msg != "" {
			p.redirectFlash(w, r, s, back, "error", "The sensor extension was not created: "+msg)
			return
		}
		state := ""
		var out struct {
			Properties struct {
				ProvisioningState string `json:"provisioningState"`
			} `json:"properties"`
		}
		if json.Unmarshal(res.body, &out) == nil {
			state = out.Properties.ProvisioningState
		}
		p.redirectFlash(w, r, s, back, "ok", fmt.Sprintf("Extension %s (vigil.sensor) created on cluster %s, provisioning state %s: the cluster's agent installs it when it next reads its desired state.", SensorExtensionName, ref.Name, state))
	case "enablePlan":
		sub, _, _ := scopeParts(rid)
		if sub == "" || rid != planPath(sub) {
			p.errorPage(w, r, s, http.StatusBadRequest, fmt.Sprintf("%q is not a Containers plan id: use the Fix button of the recommendation.", rid))
			return
		}
		p.setPlan(w, r, s, sub, true, map[string]bool{}, back)
	default:
		p.errorPage(w, r, s, http.StatusBadRequest, fmt.Sprintf("Recommendation fix %q is unknown: use the Fix button on the recommendations page.", r.PostFormValue("fix")))
	}
}

// ---- plan

func (p *Portal) planPage(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	subs, err := p.visibleSubscriptions(ctx, s.principal)
	if err != nil {
		p.errorPage(w, r, s, http.StatusServiceUnavailable, "The hub could not read the inventory: "+err.Error())
		return
	}
	type planRow struct {
		store.Plan
		CanEdit    bool
		Components []map[string]any
	}
	var rows []planRow
	for _, sub := range subs {
		if auth.Authorize(s.principal, auth.ActionRead, planPath(sub)) != nil {
			continue
		}
		pl, err := p.cfg.Store.GetPlan(ctx, sub)
		if err != nil {
			p.log.Error("portal: get plan", "subscription", sub, "err", err)
			continue
		}
		pl.Subscription = sub
		row := planRow{Plan: pl, CanEdit: auth.Authorize(s.principal, auth.ActionAdmin, planPath(sub)) == nil}
		for _, c := range hub.PlanComponents {
			row.Components = append(row.Components, map[string]any{"Name": c, "On": pl.Enabled && pl.Components[c]})
		}
		rows = append(rows, row)
	}
	p.render(w, r, s, http.StatusOK, "plan", "Containers plan", map[string]any{"Plans": rows})
}

func (p *Portal) putPlan(w http.ResponseWriter, r *http.Request, s *session) {
	sub := r.PostFormValue("subscription")
	comps := map[string]bool{}
	for _, c := range hub.PlanComponents {
		comps[c] = r.PostFormValue("component-"+c) == "on"
	}
	p.setPlan(w, r, s, sub, r.PostFormValue("enabled") == "on", comps, "/portal/plan")
}

func (p *Portal) setPlan(w http.ResponseWriter, r *http.Request, s *session, sub string, enabled bool, comps map[string]bool, back string) {
	if err := auth.Authorize(s.principal, auth.ActionAdmin, planPath(sub)); err != nil {
		p.m.changes.WithLabelValues("plan", "refused").Inc()
		p.errorPage(w, r, s, http.StatusForbidden, "You may not change the Containers plan: "+err.Error())
		return
	}
	tier := "Free"
	if enabled {
		tier = "Standard"
	}
	props := map[string]any{"pricingTier": tier}
	if len(comps) > 0 {
		props["components"] = comps
	}
	if _, msg := p.change(r.Context(), s, "plan", http.MethodPut, planPath(sub), map[string]any{"properties": props}); msg != "" {
		p.redirectFlash(w, r, s, back, "error", "The plan was not changed: "+msg)
		return
	}
	p.redirectFlash(w, r, s, back, "ok", fmt.Sprintf("The Containers plan of subscription %s is now %s.", sub, map[bool]string{true: "on", false: "off"}[enabled]))
}

// ---- settings: tokens and outputs

func (p *Portal) settingsPage(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	data := map[string]any{"TokenAdmin": auth.Authorize(s.principal, auth.ActionAdmin, s.principal.Scope) == nil,
		"OutputAdmin": auth.Authorize(s.principal, auth.ActionAdmin, "/") == nil, "Scope": s.principal.Scope}
	if data["TokenAdmin"] == true {
		ts, err := p.cfg.Store.ListTokens(ctx)
		if err != nil {
			p.log.Error("portal: list tokens", "err", err)
			data["TokenError"] = "Tokens could not be read; retry in a moment."
		}
		type tokenRow struct {
			store.Token
			State  string
			Target string
		}
		var rows []tokenRow
		now := p.cfg.Now()
		for _, t := range ts {
			if !auth.VisibleTo(s.principal, t) {
				continue
			}
			row := tokenRow{Token: t, State: "Active", Target: t.Scope}
			if t.Kind != store.TokenUser {
				row.Target = auth.ClusterID(t.Cluster)
			}
			switch {
			case !t.RevokedAt.IsZero() && !now.Before(t.RevokedAt):
				row.State = "Revoked"
			case !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt):
				row.State = "Expired"
			}
			rows = append(rows, row)
		}
		sort.Slice(rows, func(i, j int) bool { return rows[i].CreatedAt.Before(rows[j].CreatedAt) })
		data["Tokens"] = rows
	}
	if data["OutputAdmin"] == true {
		os, err := p.cfg.Store.ListOutputs(ctx)
		if err != nil {
			p.log.Error("portal: list outputs", "err", err)
			data["OutputError"] = "Outputs could not be read; retry in a moment."
		}
		sort.Slice(os, func(i, j int) bool { return os[i].Name < os[j].Name })
		data["Outputs"] = os
	}
	p.render(w, r, s, http.StatusOK, "settings", "Settings", data)
}

const tokensAPI = "/providers/Vigil.Hub/tokens"
const outputsAPI = "/providers/Vigil.Hub/outputs"

func (p *Portal) createToken(w http.ResponseWriter, r *http.Request, s *session) {
	const back = "/portal/settings"
	// The API's token routes need admin at the caller's own scope.
	if err := auth.Authorize(s.principal, auth.ActionAdmin, s.principal.Scope); err != nil {
		p.m.changes.WithLabelValues("token", "refused").Inc()
		p.errorPage(w, r, s, http.StatusForbidden, "You may not create tokens: "+err.Error())
		return
	}
	in := map[string]any{"name": strings.TrimSpace(r.PostFormValue("name")), "role": r.PostFormValue("role"), "scope": strings.TrimSpace(r.PostFormValue("scope"))}
	if e := r.PostFormValue("expires"); e != "" {
		d, ok := expiries[e]
		if !ok {
			p.redirectFlash(w, r, s, back, "error", fmt.Sprintf("Expiry %q is not offered: choose never, 7d, 30d or 90d.", e))
			return
		}
		in["expiresAt"] = p.cfg.Now().Add(d).UTC().Format(time.RFC3339)
	}
	res, msg := p.change(r.Context(), s, "token", http.MethodPost, tokensAPI, in)
	if msg != "" {
		p.redirectFlash(w, r, s, back, "error", "The token was not created: "+msg)
		return
	}
	var out struct {
		Name       string `json:"name"`
		Properties struct {
			DisplayName string `json:"displayName"`
			Role        string `json:"role"`
			Scope       string `json:"scope"`
			Secret      string `json:"token"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(res.body, &out); err != nil || out.Properties.Secret == "" {
		p.errorPage(w, r, s, http.StatusInternalServerError, "The token was created but its secret could not be read from the hub's answer; revoke it on the settings page and create another.")
		return
	}
	// Shown once: this response is the only place the secret appears.
	w.Header().Set("Cache-Control", "no-store")
	p.render(w, r, s, http.StatusCreated, "token", "Token created", map[string]any{"ID": out.Name, "Name": out.Properties.DisplayName,
		"Role": out.Properties.Role, "Scope": out.Properties.Scope, "Secret": out.Properties.Secret})
}

func (p *Portal) revokeToken(w http.ResponseWriter, r *http.Request, s *session) {
	const back = "/portal/settings"
	if err := auth.Authorize(s.principal, auth.ActionAdmin, s.principal.Scope); err != nil {
		p.m.changes.WithLabelValues("token", "refused").Inc()
		p.errorPage(w, r, s, http.StatusForbidden, "You may not revoke tokens: "+err.Error())
		return
	}
	id := r.PathValue("id")
	if _, msg := p.change(r.Context(), s, "token", http.MethodDelete, tokensAPI+"/"+id, nil); msg != "" {
		p.redirectFlash(w, r, s, back, "error", "The token was not revoked: "+msg)
		return
	}
	p.redirectFlash(w, r, s, back, "ok", "Token "+id+" is revoked: the hub refuses it from now on.")
}

func (p *Portal) putOutput(w http.ResponseWriter, r *http.Request, s *session) {
	const back = "/portal/settings"
	if err := auth.Authorize(s.principal, auth.ActionAdmin, "/"); err != nil {
		p.m.changes.WithLabelValues("output", "refused").Inc()
		p.errorPage(w, r, s, http.StatusForbidden, "You may not manage outputs: "+err.Error())
		return
	}
	name := strings.TrimSpace(r.PostFormValue("name"))
	typ := r.PostFormValue("type")
	cfg := map[string]string{}
	switch typ {
	case "webhook":
		cfg["url"] = strings.TrimSpace(r.PostFormValue("url"))
		if f := r.PostFormValue("format"); f != "" {
			cfg["format"] = f
		}
	case "syslog":
		cfg["address"] = strings.TrimSpace(r.PostFormValue("address"))
		if n := r.PostFormValue("network"); n != "" {
			cfg["network"] = n
		}
	}
	if name == "" {
		p.redirectFlash(w, r, s, back, "error", "The output was not saved: give it a name (letters, digits, '.', '_', '-').")
		return
	}
	body := map[string]any{"properties": map[string]any{"type": typ, "minSeverity": r.PostFormValue("minSeverity"), "config": cfg}}
	if _, msg := p.change(r.Context(), s, "output", http.MethodPut, outputsAPI+"/"+name, body); msg != "" {
		p.redirectFlash(w, r, s, back, "error", "The output was not saved: "+msg)
		return
	}
	p.redirectFlash(w, r, s, back, "ok", "Output "+name+" saved: alerts are sent to it from now on.")
}

func (p *Portal) deleteOutput(w http.ResponseWriter, r *http.Request, s *session) {
	const back = "/portal/settings"
	if err := auth.Authorize(s.principal, auth.ActionAdmin, "/"); err != nil {
		p.m.changes.WithLabelValues("output", "refused").Inc()
		p.errorPage(w, r, s, http.StatusForbidden, "You may not manage outputs: "+err.Error())
		return
	}
	name := r.PathValue("name")
	if _, msg := p.change(r.Context(), s, "output", http.MethodDelete, outputsAPI+"/"+name, nil); msg != "" {
		p.redirectFlash(w, r, s, back, "error", "The output was not deleted: "+msg)
		return
	}
	p.redirectFlash(w, r, s, back, "ok", "Output "+name+" deleted.")
}

// Package agent is vigil's in-cluster agent (the Arc-agent equivalent). It
// dials out to the hub only: every interval it sends a heartbeat
// (Kubernetes version, node count, agent version) and reconciles the
// cluster's extensions — it reads the desired extensions with its agent
// token, renders them from the embedded catalog (internal/extcatalog),
// server-side applies them (field manager "vigil-agent"), re-creates what
// someone deleted by hand, removes what the hub no longer lists, and
// reports each extension's provisioningState (Creating/Updating →
// Succeeded once its DaemonSet is ready on every node; Failed with the
// reason). Every failure to reach the hub is logged with the URL and the
// reason and counted in vigil_agent_hub_errors_total.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/extcatalog"
	"github.com/vigil-sec/vigil/internal/hubclient"
	"github.com/vigil-sec/vigil/internal/kube"
	"github.com/vigil-sec/vigil/internal/store"
)

// FieldManager owns the fields the agent applies.
const FieldManager = "vigil-agent"

// SensorTokenSecret is the Secret (key "token") `vigil connect` leaves in the
// agent's namespace with a sensor token for the cluster. The agent uses it
// for a sensor extension whose protected settings the hub did not deliver.
const SensorTokenSecret = "vigil-sensor-token"

// Config configures an Agent.
type Config struct {
	// HubURL is the hub's base URL (https://HOST:PORT).
	HubURL string
	// TokenFile holds the agent token (re-read every cycle, so a renewed
	// token is picked up without a restart).
	TokenFile string
	// ExpiresFile holds the token's expiry (RFC 3339; default: expires-at
	// beside TokenFile). From RenewBefore ahead of it the agent renews its
	// credential and writes the new one into Secret CredentialSecret.
	ExpiresFile string
	// CredentialSecret is the Secret (in Namespace) holding the agent's
	// token and expiry (default vigil-agent).
	CredentialSecret string
	// RenewBefore is how long before expiry the agent renews (default 44
	// days: a 90-day credential is renewed from day 46).
	RenewBefore time.Duration
	// CAFile is the hub's CA certificate (PEM), pinned; "" trusts the
	// system's roots.
	CAFile string
	// ClusterID is the connected cluster's ARM id.
	ClusterID string
	// Namespace the agent and its extensions live in (default vigil-system).
	Namespace string
	// Interval between heartbeats and reconciliations (default 30 s).
	Interval time.Duration
	// Image is the vigil image extensions run (repository:tag);
	// PullPolicy its pull policy.
	Image, PullPolicy string
	// Version is the agent's version, reported in heartbeats.
	Version string
	// Kube is the cluster.
	Kube *kube.Client
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Registerer receives the agent's metrics (default: none).
	Registerer prometheus.Registerer
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Agent runs the agent loop.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	caPEM string
	m     *metrics

	mu          sync.Mutex
	client      *hubclient.Client
	clientToken string
	reported    map[string]report                // extension name → last report sent
	applied     map[string]int64                 // extension name → generation applied
	uids        map[string]map[string]string     // extension name → object → UID last applied
	recreated   map[string]store.ExtensionStatus // extension name → last re-creation (kept for RecreatedShownFor)
	lastOK      time.Time                        // last successful heartbeat
	lastErr     string
	// After a renewal the mounted token file shows the old token until the
	// kubelet refreshes it: renewedFrom (old) maps to renewed (new).
	renewedFrom, renewed string
	renewedExpiry        time.Time
}

type report struct {
	generation int64
	state, msg string
	extra      time.Time // time of the re-creation status sent along
}

// RecreatedShownFor is how long an extension's statuses keep saying that
// the agent re-created objects deleted by hand.
const RecreatedShownFor = time.Hour

type metrics struct {
	hubErrors  *prometheus.CounterVec
	heartbeats prometheus.Counter
	reconciles *prometheus.CounterVec
	recreated  prometheus.Counter
	lastOK     prometheus.Gauge
	renewals   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		hubErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_agent_hub_errors_total", Help: "Failed requests to the hub by operation and reason (unreachable, unauthorized, not_found, rejected, server).",
		}, []string{"op", "reason"}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_agent_heartbeats_total", Help: "Heartbeats the hub accepted."}),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_agent_extension_reconciles_total", Help: "Extension reconciliations by outcome (succeeded, progressing, failed, removed).",
		}, []string{"outcome"}),
		recreated: prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_agent_recreated_objects_total", Help: "Objects of an extension found deleted by hand and re-created."}),
		lastOK:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_agent_last_heartbeat_timestamp_seconds", Help: "Unix time of the last heartbeat the hub accepted."}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_agent_credential_renewals_total", Help: "Renewals of the agent's own credential by outcome (renewed, failed).",
		}, []string{"outcome"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.hubErrors, m.heartbeats, m.reconciles, m.recreated, m.lastOK, m.renewals} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register agent metrics: %w", err)
			}
		}
	}
	return m, nil
}

// New checks cfg and returns an Agent.
func New(cfg Config) (*Agent, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "vigil-system"
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.ExpiresFile == "" && cfg.TokenFile != "" {
		cfg.ExpiresFile = filepath.Join(filepath.Dir(cfg.TokenFile), "expires-at")
	}
	if cfg.CredentialSecret == "" {
		cfg.CredentialSecret = "vigil-agent"
	}
	if cfg.RenewBefore <= 0 {
		cfg.RenewBefore = 44 * 24 * time.Hour
	}
	if cfg.Kube == nil {
		return nil, errors.New("agent: no Kubernetes client")
	}
	if _, err := hubclient.NormalizeHubURL(cfg.HubURL); err != nil {
		return nil, fmt.Errorf("--hub-url: %w", err)
	}
	if _, err := auth.ParseClusterID(cfg.ClusterID); err != nil {
		return nil, fmt.Errorf("--cluster-id %q: %w (give the ARM id `vigil cluster show --query id` prints)", cfg.ClusterID, err)
	}
	if cfg.TokenFile == "" {
		return nil, errors.New("--hub-token-file is required: the file holding the agent token (`vigil connect` puts it in Secret vigil-system/vigil-agent)")
	}
	if cfg.Image == "" {
		return nil, errors.New("--sensor-image is required: the vigil image extensions run (e.g. vigil.local/vigil:0.1.0)")
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, reported: map[string]report{}, applied: map[string]int64{}, recreated: map[string]store.ExtensionStatus{},
		uids: map[string]map[string]string{}}
	if cfg.CAFile != "" {
		b, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--hub-ca %s: %w; mount the hub's CA certificate there", cfg.CAFile, err)
		}
		a.caPEM = string(b)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	a.m = m
	return a, nil
}

// hub returns a client with the current token (re-read from TokenFile).
func (a *Agent) hub() (*hubclient.Client, error) {
	b, err := os.ReadFile(a.cfg.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("read the agent token %s: %w", a.cfg.TokenFile, err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return nil, fmt.Errorf("the agent token file %s is empty: re-run `vigil connect` to issue a token", a.cfg.TokenFile)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.renewed != "" {
		if tok == a.renewedFrom {
			tok = a.renewed // the mounted Secret is not refreshed yet
		} else {
			a.renewed, a.renewedFrom = "", ""
		}
	}
	if a.client != nil && a.clientToken == tok {
		return a.client, nil
	}
	c, err := hubclient.New(hubclient.Config{Hub: a.cfg.HubURL, Token: tok, CAPEM: a.caPEM},
		hubclient.WithUserAgent("vigil-agent/"+a.cfg.Version), hubclient.WithTimeout(20*time.Second))
	if err != nil {
		return nil, err
	}
	if a.client != nil {
		a.client.CloseIdleConnections()
	}
	a.client, a.clientToken = c, tok
	return c, nil
}

// hubFailed logs and counts a failed hub request.
func (a *Agent) hubFailed(op string, err error) {
	reason := "server"
	var he *hubclient.Error
	var ue *hubclient.UnreachableError
	switch {
	case errors.As(err, &ue):
		reason = "unreachable"
	case errors.As(err, &he) && (he.StatusCode == 401 || he.StatusCode == 403):
		reason = "unauthorized"
	case errors.As(err, &he) && he.StatusCode == 404:
		reason = "not_found"
	case errors.As(err, &he) && he.StatusCode < 500:
		reason = "rejected"
	}
	a.m.hubErrors.WithLabelValues(op, reason).Inc()
	a.mu.Lock()
	a.lastErr = fmt.Sprintf("%s: %v", op, err)
	a.mu.Unlock()
	a.log.Error("cannot reach the hub", "op", op, "hub", a.cfg.HubURL, "reason", reason, "err", err)
}

// Run heartbeats and reconciles every Interval until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	a.log.Info("agent started", "hub", a.cfg.HubURL, "cluster", a.cfg.ClusterID, "namespace", a.cfg.Namespace, "interval", a.cfg.Interval, "version", a.cfg.Version)
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	for {
		a.Once(ctx)
		select {
		case <-ctx.Done():
			a.log.Info("agent stopped")
			return nil
		case <-t.C:
		}
	}
}

// Once sends one heartbeat and reconciles once. Errors are logged and
// counted; the returned error joins them (for tests).
func (a *Agent) Once(ctx context.Context) error {
	hbErr := a.Heartbeat(ctx)
	renErr := a.RenewIfDue(ctx)
	recErr := a.Reconcile(ctx)
	return errors.Join(hbErr, renErr, recErr)
}

// Heartbeat sends one heartbeat.
func (a *Agent) Heartbeat(ctx context.Context) error {
	hb := hubclient.Heartbeat{ClusterID: a.cfg.ClusterID, AgentVersion: a.cfg.Version}
	if v, err := a.cfg.Kube.ServerVersion(ctx); err == nil {
		hb.KubernetesVersion = v
	} else {
		a.log.Warn("cannot read the Kubernetes version for the heartbeat", "err", err)
	}
	if n, err := a.cfg.Kube.NodeCount(ctx); err == nil {
		hb.NodeCount = n
	} else {
		a.log.Warn("cannot count nodes for the heartbeat", "err", err)
	}
	c, err := a.hub()
	if err != nil {
		a.hubFailed("heartbeat", err)
		return err
	}
	if err := c.SendHeartbeat(ctx, hb); err != nil {
		a.hubFailed("heartbeat", err)
		return err
	}
	now := a.cfg.Now()
	a.mu.Lock()
	a.lastOK, a.lastErr = now, ""
	a.mu.Unlock()
	a.m.heartbeats.Inc()
	a.m.lastOK.Set(float64(now.Unix()))
	a.log.Debug("heartbeat sent", "kubernetesVersion", hb.KubernetesVersion, "nodes", hb.NodeCount)
	return nil
}

// Reconcile brings the cluster to the hub's desired extensions once.
func (a *Agent) Reconcile(ctx context.Context) error {
	c, err := a.hub()
	if err != nil {
		a.hubFailed("list-extensions", err)
		return err
	}
	exts, err := c.ListExtensionsByClusterID(ctx, a.cfg.ClusterID)
	if err != nil {
		a.hubFailed("list-extensions", err)
		return err
	}
	var errs []error
	desired := map[string]bool{}
	var deleting []hubclient.Extension
	for _, e := range exts {
		if e.Properties.ProvisioningState == store.ProvisioningDeleting {
			deleting = append(deleting, e) // removed below, then confirmed
			continue
		}
		desired[e.Name] = true
		if err := a.reconcileOne(ctx, c, e); err != nil {
			errs = append(errs, err)
		}
	}
	if err := a.removeUndesired(ctx, desired); err != nil {
		return errors.Join(append(errs, err)...) // confirm nothing not yet removed
	}
	for _, e := range deleting {
		if err := a.confirmRemoved(ctx, c, e); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// confirmRemoved tells the hub that a Deleting extension's objects are
// gone from the cluster, so the hub deletes it.
func (a *Agent) confirmRemoved(ctx context.Context, c *hubclient.Client, e hubclient.Extension) error {
	// Object names depend on the type only: render with a placeholder
	// credential to learn what to delete.
	r, err := extcatalog.Render(extcatalog.Extension{Name: e.Name, Type: e.Properties.ExtensionType, Protected: map[string]string{extcatalog.ProtectedHubToken: "removed"}}, a.target())
	if err != nil {
		return fmt.Errorf("render extension %s to remove it: %w", e.Name, err)
	}
	if err := a.cfg.Kube.Delete(ctx, r.Removable()); err != nil {
		return fmt.Errorf("remove extension %s: %w", e.Name, err)
	}
	for _, o := range r.Removable() {
		if ok, err := a.cfg.Kube.Exists(ctx, o); err == nil && ok {
			a.log.Info("waiting for a deleted extension's objects to go", "extension", e.Name, "object", kube.Describe(o))
			return nil // confirmed on a later cycle
		}
	}
	err = c.ReportExtensionStatus(ctx, hubclient.ExtensionStatusReport{ClusterID: a.cfg.ClusterID, Name: e.Name,
		Generation: e.Properties.Generation, ProvisioningState: "Deleted",
		Statuses: []store.ExtensionStatus{{Code: "Removed", Level: "Information", DisplayStatus: "Deleted", Message: "removed from the cluster", Time: a.cfg.Now().UTC()}}})
	if err != nil && !hubclient.IsStatus(err, http.StatusConflict) && !hubclient.IsStatus(err, http.StatusNotFound) {
		a.hubFailed("extension-status", err)
		return err
	}
	a.mu.Lock()
	delete(a.applied, e.Name)
	delete(a.uids, e.Name)
	delete(a.reported, e.Name)
	delete(a.recreated, e.Name)
	a.mu.Unlock()
	a.log.Info("removed extension and confirmed it to the hub", "extension", e.Name)
	return nil
}

func (a *Agent) target() extcatalog.Target {
	return extcatalog.Target{ClusterID: a.cfg.ClusterID, HubURL: a.cfg.HubURL, HubCAPEM: a.caPEM, Image: a.cfg.Image,
		PullPolicy: a.cfg.PullPolicy, Namespace: a.cfg.Namespace, HTTPSProxy: proxyEnv("HTTPS_PROXY"), NoProxy: proxyEnv("NO_PROXY")}
}

func proxyEnv(name string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return os.Getenv(strings.ToLower(name))
}

// fatalWaits are pod problems that will not resolve by waiting.
var fatalWaits = []string{"ErrImageNeverPull", "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError", "CrashLoopBackOff", "RunContainerError"}

func (a *Agent) reconcileOne(ctx context.Context, c *hubclient.Client, e hubclient.Extension) error {
	log := a.log.With("extension", e.Name, "type", e.Properties.ExtensionType, "generation", e.Properties.Generation)
	gen := e.Properties.Generation
	progress := store.ProvisioningCreating
	if e.Properties.ProvisioningState == store.ProvisioningUpdating {
		progress = store.ProvisioningUpdating
	}
	ext := extcatalog.Extension{Name: e.Name, Type: e.Properties.ExtensionType, Version: e.Properties.Version,
		Settings: e.Properties.ConfigurationSettings, Protected: e.Properties.ConfigurationProtectedSettings}
	if e.Properties.ExtensionType == extcatalog.SensorType && ext.Protected[extcatalog.ProtectedHubToken] == "" {
		tok, err := a.sensorTokenFromSecret(ctx)
		if err != nil {
			log.Warn("no sensor token from the hub nor the cluster", "err", err)
		}
		if tok != "" {
			ext.Protected = map[string]string{extcatalog.ProtectedHubToken: tok}
		}
	}
	r, err := extcatalog.Render(ext, a.target())
	if err != nil {
		a.m.reconciles.WithLabelValues("failed").Inc()
		log.Error("cannot render the extension", "err", err)
		return a.report(ctx, c, e.Name, gen, store.ProvisioningFailed, "RenderFailed", err.Error())
	}
	a.mu.Lock()
	prevGen, wasApplied := a.applied[e.Name]
	a.mu.Unlock()
	var missing []string
	if wasApplied {
		for _, o := range r.Objects {
			ok, err := a.cfg.Kube.Exists(ctx, o)
			if err == nil && !ok {
				missing = append(missing, kube.Describe(o))
			}
		}
	}
	out, err := a.cfg.Kube.Apply(ctx, r.Objects, kube.ApplyOptions{FieldManager: FieldManager})
	if err != nil {
		a.m.reconciles.WithLabelValues("failed").Inc()
		log.Error("cannot apply the extension", "err", err)
		return a.report(ctx, c, e.Name, gen, store.ProvisioningFailed, "ApplyFailed", err.Error())
	}
	// An object deleted by hand between the check above and the apply is
	// re-created by the apply: its UID changes.
	a.mu.Lock()
	a.applied[e.Name] = gen
	uids := a.uids[e.Name]
	if uids == nil {
		uids = map[string]string{}
		a.uids[e.Name] = uids
	}
	for _, o := range out {
		d := kube.Describe(o)
		if old, seen := uids[d]; seen && old != string(o.GetUID()) && !slices.Contains(missing, d) {
			missing = append(missing, d)
		}
		uids[d] = string(o.GetUID())
	}
	a.mu.Unlock()
	recreated := ""
	if len(missing) > 0 {
		a.m.recreated.Add(float64(len(missing)))
		recreated = "re-created " + strings.Join(missing, ", ") + " (deleted by hand); "
		log.Warn("re-created objects someone deleted by hand", "objects", missing)
		a.mu.Lock()
		a.recreated[e.Name] = store.ExtensionStatus{Code: "Recreated", Level: "Warning", DisplayStatus: "Recreated",
			Message: "re-created " + strings.Join(missing, ", ") + ": deleted by hand (the agent restores what the hub asks for; delete the extension to remove it)", Time: a.cfg.Now().UTC()}
		a.mu.Unlock()
	}
	if prevGen != gen {
		log.Info("applied extension", "objects", len(r.Objects), "version", r.Version)
	}
	if r.DaemonSet == "" {
		return a.report(ctx, c, e.Name, gen, store.ProvisioningSucceeded, "Applied", recreated+"applied")
	}
	st, err := a.cfg.Kube.DaemonSet(ctx, r.DaemonSetNamespace, r.DaemonSet)
	if err != nil {
		return a.report(ctx, c, e.Name, gen, progress, "Waiting", recreated+err.Error())
	}
	msg := fmt.Sprintf("%sDaemonSet %s/%s %s", recreated, r.DaemonSetNamespace, r.DaemonSet, st)
	switch {
	case st.Ready():
		a.m.reconciles.WithLabelValues("succeeded").Inc()
		return a.report(ctx, c, e.Name, gen, store.ProvisioningSucceeded, "Ready", msg)
	case containsAny(st.Problem, fatalWaits):
		a.m.reconciles.WithLabelValues("failed").Inc()
		return a.report(ctx, c, e.Name, gen, store.ProvisioningFailed, "PodsFailing", msg)
	default:
		a.m.reconciles.WithLabelValues("progressing").Inc()
		return a.report(ctx, c, e.Name, gen, progress, "Progressing", msg)
	}
}

func containsAny(s string, subs []string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}

func (a *Agent) sensorTokenFromSecret(ctx context.Context) (string, error) {
	s, err := a.cfg.Kube.Kube.CoreV1().Secrets(a.cfg.Namespace).Get(ctx, SensorTokenSecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", fmt.Errorf("secret %s/%s does not exist: recreate the extension with `vigil extension create` (it issues the token) or re-run `vigil connect`", a.cfg.Namespace, SensorTokenSecret)
	}
	if err != nil {
		return "", fmt.Errorf("read secret %s/%s: %w", a.cfg.Namespace, SensorTokenSecret, err)
	}
	return strings.TrimSpace(string(s.Data["token"])), nil
}

// report sends a status when it differs from the last one sent for the
// extension (or a re-creation happened).
func (a *Agent) report(ctx context.Context, c *hubclient.Client, name string, gen int64, state, code, msg string) error {
	r := report{generation: gen, state: state, msg: msg}
	a.mu.Lock()
	extra, hasExtra := a.recreated[name]
	if hasExtra && a.cfg.Now().Sub(extra.Time) > RecreatedShownFor {
		delete(a.recreated, name)
		hasExtra = false
	}
	if hasExtra {
		r.extra = extra.Time
	}
	same := a.reported[name] == r
	a.mu.Unlock()
	if same {
		return nil
	}
	level := "Information"
	if state == store.ProvisioningFailed {
		level = "Error"
	} else if strings.HasPrefix(msg, "re-created") {
		level = "Warning"
	}
	statuses := []store.ExtensionStatus{{Code: code, Level: level, DisplayStatus: state, Message: truncate(msg, 2000), Time: a.cfg.Now().UTC()}}
	if hasExtra {
		statuses = append([]store.ExtensionStatus{extra}, statuses...) // the current state stays last
	}
	err := c.ReportExtensionStatus(ctx, hubclient.ExtensionStatusReport{ClusterID: a.cfg.ClusterID, Name: name, Generation: gen, ProvisioningState: state,
		Statuses: statuses})
	if err != nil {
		if hubclient.IsStatus(err, http.StatusConflict) || hubclient.IsStatus(err, http.StatusNotFound) {
			// A newer generation or a deletion: the next cycle reads it.
			a.log.Info("extension changed at the hub while it was applied; re-reading next cycle", "extension", name, "err", err)
			return nil
		}
		a.hubFailed("extension-status", err)
		return err
	}
	a.mu.Lock()
	a.reported[name] = r
	a.mu.Unlock()
	a.log.Info("reported extension status", "extension", name, "generation", gen, "provisioningState", state, "message", msg)
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// removeUndesired deletes the objects of extensions the hub no longer lists.
func (a *Agent) removeUndesired(ctx context.Context, desired map[string]bool) error {
	dss, err := a.cfg.Kube.Kube.AppsV1().DaemonSets(a.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: extcatalog.LabelExtension})
	if err != nil {
		return fmt.Errorf("list the extensions' DaemonSets in %s: %w", a.cfg.Namespace, err)
	}
	gone := map[string]string{}
	for _, ds := range dss.Items {
		name := ds.Labels[extcatalog.LabelExtension]
		if name != "" && !desired[name] {
			gone[name] = ds.Labels[extcatalog.LabelExtensionType]
		}
	}
	names := make([]string, 0, len(gone))
	for n := range gone {
		names = append(names, n)
	}
	sort.Strings(names)
	var errs []error
	for _, name := range names {
		// Object names depend on the type only: render with a placeholder
		// credential to learn what to delete.
		r, err := extcatalog.Render(extcatalog.Extension{Name: name, Type: gone[name], Protected: map[string]string{extcatalog.ProtectedHubToken: "removed"}}, a.target())
		if err != nil {
			errs = append(errs, fmt.Errorf("render removed extension %s: %w", name, err))
			continue
		}
		if err := a.cfg.Kube.Delete(ctx, r.Removable()); err != nil {
			a.log.Error("cannot remove a deleted extension's objects", "extension", name, "err", err)
			errs = append(errs, err)
			continue
		}
		a.mu.Lock()
		delete(a.applied, name)
		delete(a.uids, name)
		delete(a.reported, name)
		delete(a.recreated, name)
		a.mu.Unlock()
		a.m.reconciles.WithLabelValues("removed").Inc()
		a.log.Info("removed extension deleted at the hub", "extension", name, "type", gone[name])
	}
	return errors.Join(errs...)
}

// Handler serves /healthz (200 while the process runs; the body says when
// the hub last accepted a heartbeat and the last error) and /metrics from g.
func (a *Agent) Handler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		a.mu.Lock()
		last, lastErr := a.lastOK, a.lastErr
		a.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "ok\nlast heartbeat accepted: %s\n", fmtTime(last))
		if lastErr != "" {
			fmt.Fprintf(w, "last hub error: %s\n", lastErr)
		}
	})
	if g != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	}
	return mux
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

// tokenExpiry is when the current credential expires (zero: unknown).
func (a *Agent) tokenExpiry() time.Time {
	a.mu.Lock()
	if !a.renewedExpiry.IsZero() && a.renewed != "" {
		defer a.mu.Unlock()
		return a.renewedExpiry
	}
	a.mu.Unlock()
	b, err := os.ReadFile(a.cfg.ExpiresFile)
	if err != nil {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(string(b)))
	if err != nil {
		a.log.Warn("the agent credential's expiry is not an RFC 3339 time; it is not renewed", "file", a.cfg.ExpiresFile, "err", err)
		return time.Time{}
	}
	return t
}

// RenewIfDue renews the agent's credential once it expires within
// RenewBefore: it asks the hub for a new token, writes it (and its expiry)
// into the credential Secret and uses it from then on. The old token keeps
// working for the hub's grace period. An unknown expiry is never renewed.
func (a *Agent) RenewIfDue(ctx context.Context) error {
	exp := a.tokenExpiry()
	if exp.IsZero() || a.cfg.Now().Before(exp.Add(-a.cfg.RenewBefore)) {
		return nil
	}
	c, err := a.hub()
	if err != nil {
		a.m.renewals.WithLabelValues("failed").Inc()
		a.hubFailed("renew-token", err)
		return err
	}
	old := a.currentToken()
	nt, err := c.RenewAgentToken(ctx)
	if err != nil {
		a.m.renewals.WithLabelValues("failed").Inc()
		a.hubFailed("renew-token", err)
		return err
	}
	a.mu.Lock()
	a.renewedFrom, a.renewed, a.renewedExpiry = old, nt.Token, nt.ExpiresAt
	a.mu.Unlock()
	patch, err := json.Marshal(map[string]any{"stringData": map[string]string{"token": nt.Token, "expires-at": nt.ExpiresAt.UTC().Format(time.RFC3339)}})
	if err != nil {
		return fmt.Errorf("encode the renewed credential: %w", err)
	}
	if _, err := a.cfg.Kube.Kube.CoreV1().Secrets(a.cfg.Namespace).Patch(ctx, a.cfg.CredentialSecret, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
		a.m.renewals.WithLabelValues("failed").Inc()
		a.log.Error("renewed the agent credential but cannot store it: it is lost when the agent restarts after the old one stops working",
			"secret", a.cfg.Namespace+"/"+a.cfg.CredentialSecret, "oldExpires", nt.OldExpiresAt, "err", err)
		return fmt.Errorf("store the renewed credential in secret %s/%s: %w", a.cfg.Namespace, a.cfg.CredentialSecret, err)
	}
	a.m.renewals.WithLabelValues("renewed").Inc()
	a.log.Info("renewed the agent credential", "expires", nt.ExpiresAt, "oldStopsWorking", nt.OldExpiresAt, "secret", a.cfg.Namespace+"/"+a.cfg.CredentialSecret)
	return nil
}

func (a *Agent) currentToken() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.clientToken
}

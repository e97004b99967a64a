// Package extcatalog is the embedded, versioned catalog of extensions the
// agent can install. An extension type (the first is vigil.sensor) has
// versions, each rendering Kubernetes objects from the Helm chart in
// deploy/helm/vigil with values derived from the extension's configuration
// settings (validated here: unknown or malformed settings are errors that
// say what is accepted) and protected settings.
package extcatalog

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/vigil-sec/vigil/deploy"
	"github.com/vigil-sec/vigil/internal/kube"
)

// SensorType is the node sensor extension.
const SensorType = "vigil.sensor"

// Labels put on every object an extension renders, so the agent can find
// what it applied (and remove it when the extension is deleted).
const (
	LabelExtension     = "vigil.dev/extension"
	LabelExtensionType = "vigil.dev/extension-type"
	LabelVersion       = "vigil.dev/extension-version"
	// AnnotationKeep marks objects that stay when an extension is deleted
	// (the shared namespace, which also holds the agent).
	AnnotationKeep = "vigil.dev/keep-on-delete"
)

// ProtectedHubToken is the protected setting holding the sensor's ingest
// token (kind sensor, bound to the cluster).
const ProtectedHubToken = "hubToken"

// Extension is what the hub asks for.
type Extension struct {
	Name      string
	Type      string
	Version   string // "" means the newest
	Settings  map[string]string
	Protected map[string]string
}

// Target is where and how the extension is installed: the agent's own
// configuration.
type Target struct {
	ClusterID  string
	HubURL     string
	HubCAPEM   string
	Image      string // repository:tag
	PullPolicy string // Always, IfNotPresent, Never
	Namespace  string // default vigil-system
	HTTPSProxy string
	NoProxy    string
}

// Rendered is an extension's objects, in apply order.
type Rendered struct {
	Type, Version string
	Objects       []*unstructured.Unstructured
	// DaemonSet names the workload whose readiness on every node means
	// Succeeded ("" if the type has none).
	DaemonSetNamespace, DaemonSet string
}

// Setting documents one configuration setting.
type Setting struct {
	Name, Help string
}

// Type is one catalog entry.
type Type struct {
	Name     string
	Versions []string // oldest first
	Settings []Setting
	// Protected names the protected settings (write-only).
	Protected []Setting
}

var sensorSettings = []Setting{
	{"logLevel", "debug, info, warn or error"},
	{"source", "auto (eBPF, else proc connector), ebpf or proc"},
	{"fileEvents", "true or false: observe file and privilege syscalls"},
	{"networkRepeatWindow", "a duration such as 1s (default), 500ms or 0s: a process's repeated connections to the same destination within it are reported once, with a count (0s reports every connection)"},
	{"privileged", "true or false: run the sensor container privileged instead of with capabilities"},
	{"resources.cpuRequest", "CPU request, e.g. 50m"},
	{"resources.cpuLimit", "CPU limit, e.g. 1"},
	{"resources.memoryRequest", "memory request, e.g. 128Mi"},
	{"resources.memoryLimit", "memory limit, e.g. 512Mi"},
	{"rules.disable", "comma-separated rule ids to disable, e.g. vigil.node/PackageManagerInContainer"},
	{"rules.severity.<ruleId>", "override a rule's severity: Informational, Low, Medium or High"},
	{"auditLogPath", "the API server's --audit-log-path (e.g. /var/log/kubernetes/audit/audit.log): also run vigil audit on the nodes that write it"},
}

var auditSettings = []Setting{
	{"source", "log (default): follow the API server's audit log on the nodes that write it; webhook: serve the API server's audit webhook backend behind the Service vigil-audit-webhook"},
	{"auditLogPath", "source=log: the API server's --audit-log-path on its nodes (default /var/log/kubernetes/audit/audit.log)"},
	{"logLevel", "debug, info, warn or error"},
	{"nodeSelector", "label=value of the nodes to run on: those whose API server writes the log, or for the webhook any (default node-role.kubernetes.io/control-plane=)"},
	{"webhookClusterIP", "source=webhook: pin the Service's ClusterIP, for API servers that cannot resolve cluster DNS names (the address in their --audit-webhook-config-file)"},
	{"webhookClientCA", "source=webhook: the CA certificate (PEM, or base64 of it) that signs the client certificate of the API server's webhook kubeconfig"},
	{"webhookClientNames", "source=webhook: comma-separated common or DNS names of that client certificate to accept (default: any the CA signed)"},
}

// Protected settings of vigil.audit with source=webhook.
const (
	// ProtectedWebhookTLSCert and ProtectedWebhookTLSKey are the webhook's
	// serving certificate and key (PEM, or base64 of it); the names must
	// match the URL in the API server's --audit-webhook-config-file.
	ProtectedWebhookTLSCert = "webhookTLSCert"
	ProtectedWebhookTLSKey  = "webhookTLSKey"
	// ProtectedWebhookToken is the bearer token the API server's webhook
	// kubeconfig sends (instead of, or besides, a client certificate).
	ProtectedWebhookToken = "webhookToken"
)

// AuditType is the extension that judges the API server's audit log.
const AuditType = "vigil.audit"

// DefaultAuditLogPath is where kubeadm-style control planes write the
// audit log when told to.
const DefaultAuditLogPath = "/var/log/kubernetes/audit/audit.log"

// Catalog lists the extension types.
func Catalog() []Type {
	token := []Setting{{ProtectedHubToken, "the ingest token (kind sensor, bound to the cluster); `vigil extension create` or the hub issues one"}}
	return []Type{
		{Name: SensorType, Versions: []string{"0.1.0"}, Settings: sensorSettings, Protected: token},
		{Name: AuditType, Versions: []string{"0.1.0"}, Settings: auditSettings, Protected: append(slices.Clone(token),
			Setting{ProtectedWebhookTLSCert, "source=webhook: the serving certificate (PEM, or base64 of it); its names must match the URL of the API server's --audit-webhook-config-file"},
			Setting{ProtectedWebhookTLSKey, "source=webhook: the serving certificate's private key (PEM, or base64 of it)"},
			Setting{ProtectedWebhookToken, "source=webhook: the bearer token the API server's webhook kubeconfig sends (needed unless webhookClientCA is set)"})},
	}
}

// Lookup finds a type and resolves version ("" → newest).
func Lookup(typ, version string) (Type, string, error) {
	var names []string
	for _, t := range Catalog() {
		names = append(names, t.Name)
		if t.Name != typ {
			continue
		}
		if version == "" {
			return t, t.Versions[len(t.Versions)-1], nil
		}
		for _, v := range t.Versions {
			if v == version {
				return t, v, nil
			}
		}
		return Type{}, "", fmt.Errorf("extension type %s has no version %s: use one of %s (or omit --version for the newest)", typ, version, strings.Join(t.Versions, ", "))
	}
	return Type{}, "", fmt.Errorf("extension type %q is not in the catalog: use one of %s", typ, strings.Join(names, ", "))
}

var (
	quantityRE = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$`)
	ruleIDRE   = regexp.MustCompile(`^[A-Za-z0-9._/-]{1,200}$`)
)

var severities = []string{"Informational", "Low", "Medium", "High"}

// ValidateSettings checks an extension's settings against its type.
func ValidateSettings(typ string, settings map[string]string) error {
	switch typ {
	case SensorType:
		_, _, err := sensorValues(settings)
		return err
	case AuditType:
		_, err := auditValues(settings)
		return err
	}
	_, _, err := Lookup(typ, "")
	return err
}

// auditValues turns vigil.audit settings into chart values (without the
// protected ones: see auditWebhookSecrets).
func auditValues(settings map[string]string) (map[string]any, error) {
	path, level, source := DefaultAuditLogPath, "info", "log"
	sel := map[string]any{"node-role.kubernetes.io/control-plane": ""}
	webhook := map[string]any{}
	var webhookOnly []string
	keys := slices.Sorted(maps.Keys(settings))
	for _, k := range keys {
		v := strings.TrimSpace(settings[k])
		switch k {
		case "source":
			if !oneOf(v, "log", "webhook") {
				return nil, fmt.Errorf("configuration setting source=%q is invalid: use log (follow the API server's audit log) or webhook (serve its audit webhook backend)", v)
			}
			source = v
		case "auditLogPath":
			path = v
		case "logLevel":
			if !oneOf(v, "debug", "info", "warn", "error") {
				return nil, fmt.Errorf("configuration setting logLevel=%q is invalid: use debug, info, warn or error", v)
			}
			level = v
		case "nodeSelector":
			l, val, ok := strings.Cut(v, "=")
			if !ok || l == "" {
				return nil, fmt.Errorf("configuration setting nodeSelector=%q is invalid: use label=value, e.g. node-role.kubernetes.io/control-plane=", v)
			}
			sel = replaceDefaultSelector(l, val)
		case "webhookClusterIP":
			if net.ParseIP(v) == nil {
				return nil, fmt.Errorf("configuration setting webhookClusterIP=%q is invalid: give an IP address inside the cluster's service range, the one the API server's --audit-webhook-config-file names", v)
			}
			webhook["clusterIP"] = v
			webhookOnly = append(webhookOnly, k)
		case "webhookClientCA":
			ca, err := pemSetting(k, v)
			if err != nil {
				return nil, err
			}
			if _, err := parseCerts(ca); err != nil {
				return nil, fmt.Errorf("configuration setting webhookClientCA is invalid: %v; give the PEM of the CA that signs the API server's webhook client certificate", err)
			}
			webhook["clientCA"] = ca
			webhookOnly = append(webhookOnly, k)
		case "webhookClientNames":
			var names []any
			for n := range strings.SplitSeq(v, ",") {
				if n = strings.TrimSpace(n); n == "" {
					continue
				}
				if !ruleIDRE.MatchString(n) {
					return nil, fmt.Errorf("configuration setting webhookClientNames has the invalid name %q: use the client certificate's common name or DNS names, comma-separated", n)
				}
				names = append(names, n)
			}
			webhook["clientNames"] = names
			webhookOnly = append(webhookOnly, k)
		default:
			var names []string
			for _, s := range auditSettings {
				names = append(names, s.Name)
			}
			return nil, fmt.Errorf("configuration setting %q is not known to %s: use %s", k, AuditType, strings.Join(names, ", "))
		}
	}
	if source != "webhook" {
		if len(webhookOnly) > 0 {
			return nil, fmt.Errorf("configuration settings %s apply to source=webhook only: add source=webhook or remove them", strings.Join(webhookOnly, ", "))
		}
		return auditLogValues(path, level, sel)
	}
	if _, ok := settings["auditLogPath"]; ok {
		return nil, errors.New("configuration setting auditLogPath applies to source=log only: the webhook receives the events from the API server instead")
	}
	if names, ok := webhook["clientNames"]; ok && len(names.([]any)) > 0 && webhook["clientCA"] == nil {
		return nil, errors.New("configuration setting webhookClientNames needs webhookClientCA (the CA that signs the API server's client certificate)")
	}
	return map[string]any{"enabled": true, "source": "webhook", "logLevel": level, "nodeSelector": sel, "webhook": webhook}, nil
}

// auditWebhookSecrets adds the protected settings of source=webhook to the
// chart values: the serving certificate and key (required) and the bearer
// token (required unless a client CA authenticates the API server).
func auditWebhookSecrets(audit map[string]any, protected map[string]string) error {
	webhook, _ := audit["webhook"].(map[string]any)
	if audit["source"] != "webhook" {
		for _, k := range []string{ProtectedWebhookTLSCert, ProtectedWebhookTLSKey, ProtectedWebhookToken} {
			if protected[k] != "" {
				return fmt.Errorf("protected setting %s applies to source=webhook only: add --configuration-settings source=webhook or leave it out", k)
			}
		}
		return nil
	}
	certPEM, err := pemSetting(ProtectedWebhookTLSCert, protected[ProtectedWebhookTLSCert])
	if err != nil {
		return err
	}
	keyPEM, err := pemSetting(ProtectedWebhookTLSKey, protected[ProtectedWebhookTLSKey])
	if err != nil {
		return err
	}
	if certPEM == "" || keyPEM == "" {
		return fmt.Errorf("source=webhook needs the protected settings %s and %s: the serving certificate and key (PEM) whose names match the URL in the API server's --audit-webhook-config-file, e.g. vigil-audit-webhook.vigil-system.svc", ProtectedWebhookTLSCert, ProtectedWebhookTLSKey)
	}
	if _, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM)); err != nil {
		return fmt.Errorf("protected settings %s and %s are not a usable certificate and key: %v", ProtectedWebhookTLSCert, ProtectedWebhookTLSKey, err)
	}
	token := strings.TrimSpace(protected[ProtectedWebhookToken])
	if token == "" && webhook["clientCA"] == nil {
		return fmt.Errorf("source=webhook needs a way to authenticate the API server: set webhookClientCA (the CA of its webhook kubeconfig's client certificate) or the protected setting %s (its bearer token)", ProtectedWebhookToken)
	}
	webhook["tlsCert"], webhook["tlsKey"], webhook["token"] = certPEM, keyPEM, token
	return nil
}

// pemSetting accepts PEM text or base64 of it (easier to pass on a command
// line); "" stays "".
func pemSetting(name, v string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" || strings.HasPrefix(v, "-----BEGIN ") {
		return v, nil
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil || !strings.HasPrefix(strings.TrimSpace(string(b)), "-----BEGIN ") {
		return "", fmt.Errorf("setting %s is neither PEM (-----BEGIN ...) nor base64 of PEM: pass the file's content, e.g. %s=\"$(cat FILE)\" or %s=$(base64 -w0 FILE)", name, name, name)
	}
	return strings.TrimSpace(string(b)), nil
}

// parseCerts parses every certificate of a PEM bundle (at least one).
func parseCerts(pemText string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := []byte(pemText)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate in it")
	}
	return out, nil
}

// ValidateProtected checks the protected settings an extension is created
// with, as far as they can be checked without the hub (the ingest token
// is the hub's to check).
func ValidateProtected(typ string, settings, protected map[string]string) error {
	if typ != AuditType {
		return nil
	}
	audit, err := auditValues(settings)
	if err != nil {
		return err
	}
	return auditWebhookSecrets(audit, protected)
}

// replaceDefaultSelector is a nodeSelector of label=value that replaces the
// chart's default (control-plane nodes) instead of adding to it: values
// merge like Helm's, where nil removes a default key.
func replaceDefaultSelector(label, value string) map[string]any {
	sel := map[string]any{"node-role.kubernetes.io/control-plane": nil}
	sel[label] = value
	return sel
}

// auditLogValues is the chart's audit block for a log path.
func auditLogValues(path, level string, sel map[string]any) (map[string]any, error) {
	if !strings.HasPrefix(path, "/") || strings.HasSuffix(path, "/") || strings.ContainsAny(path, " \t\n\"'") || strings.Contains(path, "..") {
		return nil, fmt.Errorf("auditLogPath %q is invalid: give the absolute path of the API server's audit log file (its --audit-log-path), e.g. %s", path, DefaultAuditLogPath)
	}
	dir, file := path[:strings.LastIndex(path, "/")], path[strings.LastIndex(path, "/")+1:]
	if dir == "" {
		dir = "/"
	}
	return map[string]any{"enabled": true, "logDir": dir, "logFile": file, "logLevel": level, "nodeSelector": sel}, nil
}

// sensorValues turns configuration settings into chart values.
func sensorValues(settings map[string]string) (sensor, audit map[string]any, err error) {
	sensor = map[string]any{"enabled": true}
	res := map[string]any{}
	var disable []string
	sev := map[string]string{}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := strings.TrimSpace(settings[k])
		bad := func(want string) error {
			return fmt.Errorf("configuration setting %s=%q is invalid: use %s", k, v, want)
		}
		switch {
		case k == "logLevel":
			if !oneOf(v, "debug", "info", "warn", "error") {
				return nil, nil, bad("debug, info, warn or error")
			}
			sensor["logLevel"] = v
		case k == "source":
			if !oneOf(v, "auto", "ebpf", "proc") {
				return nil, nil, bad("auto, ebpf or proc")
			}
			sensor["source"] = v
		case k == "networkRepeatWindow":
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > time.Hour || (d > 0 && d < time.Millisecond) {
				return nil, nil, bad("a duration of 0s (report every connection) or between 1ms and 1h, such as 1s or 500ms")
			}
			sensor[k] = d.String()
		case k == "fileEvents" || k == "privileged":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, nil, bad("true or false")
			}
			sensor[k] = b
		case strings.HasPrefix(k, "resources."):
			if !quantityRE.MatchString(v) {
				return nil, nil, bad("a Kubernetes quantity such as 100m, 1, 256Mi")
			}
			kind, which := "", ""
			switch strings.TrimPrefix(k, "resources.") {
			case "cpuRequest":
				kind, which = "requests", "cpu"
			case "cpuLimit":
				kind, which = "limits", "cpu"
			case "memoryRequest":
				kind, which = "requests", "memory"
			case "memoryLimit":
				kind, which = "limits", "memory"
			default:
				return nil, nil, fmt.Errorf("configuration setting %s is unknown: use resources.cpuRequest, resources.cpuLimit, resources.memoryRequest or resources.memoryLimit", k)
			}
			m, _ := res[kind].(map[string]any)
			if m == nil {
				m = map[string]any{}
				res[kind] = m
			}
			m[which] = v
		case k == "auditLogPath":
			if audit, err = auditLogValues(v, "info", map[string]any{"node-role.kubernetes.io/control-plane": ""}); err != nil {
				return nil, nil, err
			}
		case k == "rules.disable":
			for _, id := range strings.Split(v, ",") {
				id = strings.TrimSpace(id)
				if id == "" {
					continue
				}
				if !ruleIDRE.MatchString(id) {
					return nil, nil, bad("comma-separated rule ids such as vigil.node/TestAlert")
				}
				disable = append(disable, id)
			}
		case strings.HasPrefix(k, "rules.severity."):
			id := strings.TrimPrefix(k, "rules.severity.")
			if !ruleIDRE.MatchString(id) {
				return nil, nil, fmt.Errorf("configuration setting %s names no valid rule id: use rules.severity.<ruleId>, e.g. rules.severity.vigil.node/TestAlert", k)
			}
			c, ok := canonical(v, severities)
			if !ok {
				return nil, nil, bad(strings.Join(severities, ", "))
			}
			sev[id] = c
		default:
			var names []string
			for _, s := range sensorSettings {
				names = append(names, s.Name)
			}
			return nil, nil, fmt.Errorf("configuration setting %q is not known to %s: use %s", k, SensorType, strings.Join(names, ", "))
		}
	}
	if len(res) > 0 {
		sensor["resources"] = res
	}
	if len(disable)+len(sev) > 0 {
		var overrides []map[string]any
		for _, id := range disable {
			overrides = append(overrides, map[string]any{"rule": id, "override": map[string]any{"enabled": false}})
		}
		ids := make([]string, 0, len(sev))
		for id := range sev {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			overrides = append(overrides, map[string]any{"rule": id, "override": map[string]any{"severity": sev[id]}})
		}
		b, err := yaml.Marshal(overrides)
		if err != nil {
			return nil, nil, fmt.Errorf("encode rule overrides: %w", err)
		}
		sensor["rulesYAML"] = string(b)
	}
	return sensor, audit, nil
}

func oneOf(v string, set ...string) bool {
	for _, s := range set {
		if v == s {
			return true
		}
	}
	return false
}

func canonical(v string, set []string) (string, bool) {
	for _, s := range set {
		if strings.EqualFold(s, v) {
			return s, true
		}
	}
	return "", false
}

// targetValues are the chart values every rendering shares.
func targetValues(t Target) (map[string]any, error) {
	if t.ClusterID == "" || t.HubURL == "" || t.Image == "" {
		return nil, fmt.Errorf("render: the cluster id, hub URL and image are required (agent flags --cluster-id, --hub-url, --sensor-image)")
	}
	repo, tag := splitImage(t.Image)
	img := map[string]any{"repository": repo, "tag": tag}
	if t.PullPolicy != "" {
		if !oneOf(t.PullPolicy, "Always", "IfNotPresent", "Never") {
			return nil, fmt.Errorf("image pull policy %q is invalid: use Always, IfNotPresent or Never", t.PullPolicy)
		}
		img["pullPolicy"] = t.PullPolicy
	}
	v := map[string]any{
		"clusterId": t.ClusterID,
		"image":     img,
		"hub":       map[string]any{"url": t.HubURL, "caPEM": t.HubCAPEM, "httpsProxy": t.HTTPSProxy, "noProxy": t.NoProxy},
		"agent":     map[string]any{"enabled": false},
		"sensor":    map[string]any{"enabled": false},
		"hubServer": map[string]any{"enabled": false},
	}
	if t.Namespace != "" {
		v["namespace"] = t.Namespace
	}
	return v, nil
}

// splitImage splits repository[:tag] (a registry port is not a tag).
func splitImage(ref string) (string, string) {
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ref, "latest"
	}
	return ref[:i], ref[i+1:]
}

func renderObjects(values map[string]any, manager string) ([]*unstructured.Unstructured, error) {
	data, err := deploy.Render(values, manager)
	if err != nil {
		return nil, err
	}
	objs, err := kube.ParseObjects(data)
	if err != nil {
		return nil, fmt.Errorf("parse rendered manifests: %w", err)
	}
	kube.SortForApply(objs)
	return objs, nil
}

// Render renders an extension for a target.
func Render(e Extension, t Target) (Rendered, error) {
	_, version, err := Lookup(e.Type, e.Version)
	if err != nil {
		return Rendered{}, err
	}
	values, err := targetValues(t)
	if err != nil {
		return Rendered{}, err
	}
	token := strings.TrimSpace(e.Protected[ProtectedHubToken])
	if token == "" {
		return Rendered{}, fmt.Errorf("extension %s has no protected setting %s (the ingest token): recreate it with `vigil extension create` (which issues one) or pass --configuration-protected-settings %s=TOKEN", e.Name, ProtectedHubToken, ProtectedHubToken)
	}
	daemonSet := "vigil-sensor"
	var audit map[string]any
	if e.Type == AuditType {
		if audit, err = auditValues(e.Settings); err != nil {
			return Rendered{}, err
		}
		if err := auditWebhookSecrets(audit, e.Protected); err != nil {
			return Rendered{}, err
		}
		daemonSet = "vigil-audit"
	} else {
		sensor, withAudit, err := sensorValues(e.Settings)
		if err != nil {
			return Rendered{}, err
		}
		sensor["token"] = token
		values["sensor"] = sensor
		audit = withAudit
	}
	if audit != nil {
		audit["token"] = token
		values["audit"] = audit
	}
	objs, err := renderObjects(values, "vigil-agent")
	if err != nil {
		return Rendered{}, err
	}
	ns := "vigil-system"
	if t.Namespace != "" {
		ns = t.Namespace
	}
	for _, o := range objs {
		l := o.GetLabels()
		if l == nil {
			l = map[string]string{}
		}
		l[LabelExtension] = e.Name
		l[LabelExtensionType] = e.Type
		l[LabelVersion] = version
		o.SetLabels(l)
	}
	return Rendered{Type: e.Type, Version: version, Objects: objs, DaemonSetNamespace: ns, DaemonSet: daemonSet}, nil
}

// Removable are the objects of a rendering that deleting the extension
// removes (all but those marked keep-on-delete).
func (r Rendered) Removable() []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range r.Objects {
		if o.GetAnnotations()[AnnotationKeep] == "true" {
			continue
		}
		out = append(out, o)
	}
	return out
}

// AgentOptions configure the agent's own objects (`vigil connect`).
type AgentOptions struct {
	Target
	// Token is the agent's token (kind agent) and TokenExpiresAt its expiry
	// (zero: unknown; the agent then never renews it).
	Token          string
	TokenExpiresAt time.Time
	// Interval is the heartbeat and reconcile period (default 30s).
	Interval string
	LogLevel string
}

// RenderAgent renders the agent: namespace, ServiceAccount, least-privilege
// RBAC, its credential Secret and Deployment.
func RenderAgent(o AgentOptions) ([]*unstructured.Unstructured, error) {
	values, err := targetValues(o.Target)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(o.Token) == "" {
		return nil, fmt.Errorf("render the agent: its token is required")
	}
	agent := map[string]any{"enabled": true, "token": o.Token}
	if !o.TokenExpiresAt.IsZero() {
		agent["tokenExpiresAt"] = o.TokenExpiresAt.UTC().Format(time.RFC3339)
	}
	if o.Interval != "" {
		agent["interval"] = o.Interval
	}
	if o.LogLevel != "" {
		agent["logLevel"] = o.LogLevel
	}
	values["agent"] = agent
	return renderObjects(values, "vigil-connect")
}

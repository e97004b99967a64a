// Package extcatalog is the embedded, versioned catalog of extensions the
// agent can install. An extension type (the first is vigil.sensor) has
// versions, each rendering Kubernetes objects from the Helm chart in
// deploy/helm/vigil with values derived from the extension's configuration
// settings (validated here: unknown or malformed settings are errors that
// say what is accepted) and protected settings.
package extcatalog

import (
	"fmt"
	"regexp"
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
	{"auditLogPath", "the API server's --audit-log-path on its nodes (default /var/log/kubernetes/audit/audit.log)"},
	{"logLevel", "debug, info, warn or error"},
	{"nodeSelector", "label=value of the nodes whose API server writes the log (default node-role.kubernetes.io/control-plane=)"},
}

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
		{Name: AuditType, Versions: []string{"0.1.0"}, Settings: auditSettings, Protected: token},
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

// auditValues turns vigil.audit settings into chart values.
func auditValues(settings map[string]string) (map[string]any, error) {
	path, level := DefaultAuditLogPath, "info"
	sel := map[string]any{"node-role.kubernetes.io/control-plane": ""}
	for k, v := range settings {
		v = strings.TrimSpace(v)
		switch k {
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
			sel = map[string]any{l: val}
		default:
			var names []string
			for _, s := range auditSettings {
				names = append(names, s.Name)
			}
			return nil, fmt.Errorf("configuration setting %q is not known to %s: use %s", k, AuditType, strings.Join(names, ", "))
		}
	}
	return auditLogValues(path, level, sel)
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

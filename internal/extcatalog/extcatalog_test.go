package extcatalog

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

var target = Target{ClusterID: "/subscriptions/default/resourceGroups/rg1/providers/Vigil.Kubernetes/connectedClusters/prod",
	HubURL: "https://10.0.0.5:8443", HubCAPEM: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", Image: "vigil.local/vigil:0.1.0", PullPolicy: "Never"}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func sensorContainer(t *testing.T, r Rendered) map[string]any {
	t.Helper()
	ds := find(r.Objects, "DaemonSet", "vigil-sensor")
	if ds == nil {
		t.Fatalf("no DaemonSet vigil-sensor among %d objects", len(r.Objects))
	}
	cs, _, _ := unstructured.NestedSlice(ds.Object, "spec", "template", "spec", "containers")
	if len(cs) != 1 {
		t.Fatalf("DaemonSet has %d containers, want 1", len(cs))
	}
	return cs[0].(map[string]any)
}

func TestTheSensorRendersADaemonSetThatShipsToTheHubWithItsToken(t *testing.T) {
	r, err := Render(Extension{Name: "vigil-sensor", Type: SensorType, Protected: map[string]string{ProtectedHubToken: "vgl_secret"}}, target)
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != "0.1.0" {
		t.Fatalf("version %q, want the newest 0.1.0", r.Version)
	}
	if r.Objects[0].GetKind() != "Namespace" || r.Objects[0].GetName() != "vigil-system" {
		t.Fatalf("first object %s, want Namespace vigil-system (applied first)", r.Objects[0].GetKind())
	}
	c := sensorContainer(t, r)
	args := strings.Join(toStrings(c["args"]), " ")
	for _, want := range []string{"sensor", "--hub-url=https://10.0.0.5:8443", "--cluster-id=" + target.ClusterID, "--hub-token-file=", "--hub-ca="} {
		if !strings.Contains(args, want) {
			t.Errorf("sensor args %q lack %q", args, want)
		}
	}
	if c["image"] != "vigil.local/vigil:0.1.0" || c["imagePullPolicy"] != "Never" {
		t.Errorf("image %v policy %v", c["image"], c["imagePullPolicy"])
	}
	sec := find(r.Objects, "Secret", "vigil-sensor")
	if tok, _, _ := unstructured.NestedString(sec.Object, "stringData", "token"); tok != "vgl_secret" {
		t.Errorf("Secret vigil-sensor token %q, want the protected setting", tok)
	}
	ds := find(r.Objects, "DaemonSet", "vigil-sensor")
	if hp, _, _ := unstructured.NestedBool(ds.Object, "spec", "template", "spec", "hostPID"); !hp {
		t.Error("the sensor does not run with hostPID")
	}
	tol, _, _ := unstructured.NestedSlice(ds.Object, "spec", "template", "spec", "tolerations")
	if len(tol) != 1 || tol[0].(map[string]any)["operator"] != "Exists" {
		t.Errorf("tolerations %v, want one that tolerates every taint", tol)
	}
	caps, _, _ := unstructured.NestedStringSlice(c, "securityContext", "capabilities", "add")
	for _, want := range []string{"BPF", "PERFMON", "SYS_ADMIN", "SYS_PTRACE"} {
		if !strings.Contains(strings.Join(caps, ","), want) {
			t.Errorf("capabilities %v lack %s", caps, want)
		}
	}
	if p, _, _ := unstructured.NestedBool(c, "securityContext", "privileged"); p {
		t.Error("the sensor is privileged by default")
	}
	for _, o := range r.Objects {
		if o.GetLabels()[LabelExtension] != "vigil-sensor" || o.GetLabels()[LabelExtensionType] != SensorType {
			t.Errorf("%s %s lacks the extension labels: %v", o.GetKind(), o.GetName(), o.GetLabels())
		}
	}
	for _, o := range r.Removable() {
		if o.GetKind() == "Namespace" {
			t.Error("deleting the extension would delete the namespace the agent lives in")
		}
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestConfigurationSettingsBecomeFlagsResourcesAndRuleOverrides(t *testing.T) {
	r, err := Render(Extension{Name: "s", Type: SensorType, Protected: map[string]string{ProtectedHubToken: "t"}, Settings: map[string]string{
		"logLevel": "debug", "source": "proc", "privileged": "true", "resources.memoryLimit": "1Gi",
		"rules.disable": "vigil.node/PackageManagerInContainer", "rules.severity.vigil.node/TestAlert": "high"}}, target)
	if err != nil {
		t.Fatal(err)
	}
	c := sensorContainer(t, r)
	args := strings.Join(toStrings(c["args"]), " ")
	for _, want := range []string{"--log-level=debug", "--source=proc", "--rules=/etc/vigil/overrides.yaml"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}
	if p, _, _ := unstructured.NestedBool(c, "securityContext", "privileged"); !p {
		t.Error("privileged=true did not make the container privileged")
	}
	if m, _, _ := unstructured.NestedString(c, "resources", "limits", "memory"); m != "1Gi" {
		t.Errorf("memory limit %q, want 1Gi", m)
	}
	cm := find(r.Objects, "ConfigMap", "vigil-sensor")
	ov, _, _ := unstructured.NestedString(cm.Object, "data", "overrides.yaml")
	for _, want := range []string{"rule: vigil.node/PackageManagerInContainer", "enabled: false", "rule: vigil.node/TestAlert", "severity: High"} {
		if !strings.Contains(ov, want) {
			t.Errorf("rule overrides lack %q:\n%s", want, ov)
		}
	}
}

func TestBadSettingsAreRefusedWithWhatIsAccepted(t *testing.T) {
	cases := []struct {
		name     string
		settings map[string]string
		want     string
	}{
		{"unknown key", map[string]string{"colour": "blue"}, "logLevel"},
		{"bad level", map[string]string{"logLevel": "loud"}, "debug, info, warn or error"},
		{"bad bool", map[string]string{"privileged": "maybe"}, "true or false"},
		{"bad quantity", map[string]string{"resources.cpuLimit": "lots"}, "quantity"},
		{"unknown resource", map[string]string{"resources.gpu": "1"}, "resources.cpuRequest"},
		{"bad severity", map[string]string{"rules.severity.x": "Critical"}, "Informational, Low, Medium, High"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := ValidateSettings(SensorType, c.settings)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one mentioning %q", err, c.want)
			}
		})
	}
}

func TestASensorWithoutTokenOrOfAnUnknownTypeIsNotRendered(t *testing.T) {
	if _, err := Render(Extension{Name: "s", Type: SensorType}, target); err == nil || !strings.Contains(err.Error(), ProtectedHubToken) {
		t.Fatalf("render without token: %v, want an error naming %s", err, ProtectedHubToken)
	}
	if _, err := Render(Extension{Name: "s", Type: "acme.miner", Protected: map[string]string{ProtectedHubToken: "t"}}, target); err == nil || !strings.Contains(err.Error(), SensorType) {
		t.Fatalf("render of an unknown type: %v", err)
	}
	if _, err := Render(Extension{Name: "s", Type: SensorType, Version: "2.0.0", Protected: map[string]string{ProtectedHubToken: "t"}}, target); err == nil || !strings.Contains(err.Error(), "0.1.0") {
		t.Fatalf("render of an unknown version: %v", err)
	}
}

func TestTheAgentRendersLeastPrivilegeRBACAndItsCredential(t *testing.T) {
	objs, err := RenderAgent(AgentOptions{Target: target, Token: "vgl_agent"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range [][2]string{{"Namespace", "vigil-system"}, {"ServiceAccount", "vigil-agent"}, {"Secret", "vigil-agent"}, {"Role", "vigil-agent"},
		{"ClusterRole", "vigil-agent"}, {"Deployment", "vigil-agent"}} {
		if find(objs, want[0], want[1]) == nil {
			t.Errorf("no %s %s", want[0], want[1])
		}
	}
	if find(objs, "DaemonSet", "vigil-sensor") != nil {
		t.Error("the agent rendering includes the sensor")
	}
	cr := find(objs, "ClusterRole", "vigil-agent")
	rules, _, _ := unstructured.NestedSlice(cr.Object, "rules")
	for _, r := range rules {
		m := r.(map[string]any)
		for _, v := range m["verbs"].([]any) {
			if v == "*" {
				t.Errorf("ClusterRole grants every verb: %v", m)
			}
		}
		for _, res := range m["resources"].([]any) {
			if res == "*" || res == "secrets" {
				t.Errorf("ClusterRole grants %v cluster-wide", res)
			}
		}
	}
	sec := find(objs, "Secret", "vigil-agent")
	if tok, _, _ := unstructured.NestedString(sec.Object, "stringData", "token"); tok != "vgl_agent" {
		t.Errorf("agent Secret token %q", tok)
	}
}

func auditDaemonSet(t *testing.T, r Rendered) (args string, logDir string, selector map[string]any) {
	t.Helper()
	ds := find(r.Objects, "DaemonSet", "vigil-audit")
	if ds == nil {
		t.Fatalf("no DaemonSet vigil-audit among %d objects", len(r.Objects))
	}
	cs, _, _ := unstructured.NestedSlice(ds.Object, "spec", "template", "spec", "containers")
	args = strings.Join(toStrings(cs[0].(map[string]any)["args"]), " ")
	vols, _, _ := unstructured.NestedSlice(ds.Object, "spec", "template", "spec", "volumes")
	for _, v := range vols {
		if m := v.(map[string]any); m["name"] == "audit-log" {
			logDir, _, _ = unstructured.NestedString(m, "hostPath", "path")
		}
	}
	selector, _, _ = unstructured.NestedMap(ds.Object, "spec", "template", "spec", "nodeSelector")
	return args, logDir, selector
}

func TestTheAuditExtensionFollowsTheAPIServersLogOnTheControlPlaneNodes(t *testing.T) {
	r, err := Render(Extension{Name: "vigil-audit", Type: AuditType, Protected: map[string]string{ProtectedHubToken: "vgl_a"}}, target)
	if err != nil {
		t.Fatal(err)
	}
	if r.DaemonSet != "vigil-audit" {
		t.Errorf("readiness follows DaemonSet %q, want vigil-audit", r.DaemonSet)
	}
	args, dir, sel := auditDaemonSet(t, r)
	for _, want := range []string{"audit ", "--log=/var/log/vigil-audit-source/audit.log", "--hub-url=https://10.0.0.5:8443", "--cluster-id=" + target.ClusterID, "--log-state="} {
		if !strings.Contains(args, want) {
			t.Errorf("audit args %q lack %q", args, want)
		}
	}
	if dir != "/var/log/kubernetes/audit" {
		t.Errorf("the log's directory %q is mounted, want /var/log/kubernetes/audit (the directory, so rotation stays visible)", dir)
	}
	if _, ok := sel["node-role.kubernetes.io/control-plane"]; !ok {
		t.Errorf("nodeSelector %v, want the control-plane nodes", sel)
	}
	if find(r.Objects, "DaemonSet", "vigil-sensor") != nil {
		t.Error("the audit extension renders the sensor too")
	}
	sec := find(r.Objects, "Secret", "vigil-audit")
	if tok, _, _ := unstructured.NestedString(sec.Object, "stringData", "token"); tok != "vgl_a" {
		t.Errorf("Secret vigil-audit token %q", tok)
	}

	// auditLogPath on the sensor extension runs the collector beside the sensor.
	r, err = Render(Extension{Name: "vigil-sensor", Type: SensorType, Settings: map[string]string{"auditLogPath": "/var/log/apiserver/k8s-audit.json"},
		Protected: map[string]string{ProtectedHubToken: "vgl_s"}}, target)
	if err != nil {
		t.Fatal(err)
	}
	args, dir, _ = auditDaemonSet(t, r)
	if dir != "/var/log/apiserver" || !strings.Contains(args, "--log=/var/log/vigil-audit-source/k8s-audit.json") {
		t.Errorf("auditLogPath on the sensor: dir %q args %q", dir, args)
	}
	if find(r.Objects, "DaemonSet", "vigil-sensor") == nil || r.DaemonSet != "vigil-sensor" {
		t.Error("with auditLogPath the sensor is still rendered and tracked")
	}

	for _, bad := range []map[string]string{{"auditLogPath": "audit.log"}, {"auditLogPath": "/var/log/"}, {"auditLogPath": "/var/../etc/shadow"}, {"nodeSelector": "x"}, {"color": "red"}} {
		if err := ValidateSettings(AuditType, bad); err == nil {
			t.Errorf("settings %v were accepted", bad)
		}
	}
	if err := ValidateSettings(SensorType, map[string]string{"auditLogPath": "relative/audit.log"}); err == nil || !strings.Contains(err.Error(), "absolute path") {
		t.Errorf("a relative auditLogPath on the sensor: %v", err)
	}
}

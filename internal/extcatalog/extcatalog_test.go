package extcatalog

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

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
	if cmd := toStrings(c["command"]); len(cmd) != 1 || cmd[0] != "/vigil-sensor" {
		t.Errorf("sensor command %v, want the lean /vigil-sensor", cmd)
	}
	args := strings.Join(toStrings(c["args"]), " ")
	for _, want := range []string{"--hub-url=https://10.0.0.5:8443", "--cluster-id=" + target.ClusterID, "--hub-token-file=", "--hub-ca="} {
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
		"networkRepeatWindow": "250ms", "rules.disable": "vigil.node/PackageManagerInContainer", "rules.severity.vigil.node/TestAlert": "high"}}, target)
	if err != nil {
		t.Fatal(err)
	}
	c := sensorContainer(t, r)
	args := strings.Join(toStrings(c["args"]), " ")
	for _, want := range []string{"--log-level=debug", "--source=proc", "--network-repeat-window=250ms", "--rules=/etc/vigil/overrides.yaml"} {
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
		{"repeat window not a duration", map[string]string{"networkRepeatWindow": "1"}, "between 1ms and 1h"},
		{"negative repeat window", map[string]string{"networkRepeatWindow": "-1s"}, "0s (report every connection)"},
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

// selfSigned returns a PEM certificate and key for the webhook's names.
func selfSigned(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vigil-audit-webhook"},
		DNSNames: []string{"vigil-audit-webhook.vigil-system.svc"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
}

func TestTheAuditWebhookRendersAServiceAtThePinnedAddressAndAuthenticatesTheAPIServer(t *testing.T) {
	cert, key := selfSigned(t)
	settings := map[string]string{"source": "webhook", "webhookClusterIP": "10.96.0.46", "webhookClientCA": base64.StdEncoding.EncodeToString([]byte(cert)),
		"webhookClientNames": "kube-apiserver-audit-webhook, apiserver-2", "nodeSelector": "kubernetes.io/os=linux"}
	protected := map[string]string{ProtectedHubToken: "vgl_a", ProtectedWebhookTLSCert: cert, ProtectedWebhookTLSKey: base64.StdEncoding.EncodeToString([]byte(key)), ProtectedWebhookToken: "whk"}
	if err := ValidateProtected(AuditType, settings, protected); err != nil {
		t.Fatal(err)
	}
	r, err := Render(Extension{Name: "vigil-audit", Type: AuditType, Settings: settings, Protected: protected}, target)
	if err != nil {
		t.Fatal(err)
	}
	args, logDir, sel := auditDaemonSet(t, r)
	for _, want := range []string{"--webhook-listen=:8443", "--tls-cert=/var/run/vigil/audit/tls.crt", "--tls-key=/var/run/vigil/audit/tls.key",
		"--webhook-token-file=/var/run/vigil/audit/webhookToken", "--webhook-client-ca=/etc/vigil/webhook-client-ca.crt",
		"--webhook-client-name=kube-apiserver-audit-webhook", "--webhook-client-name=apiserver-2", "--hub-url=https://10.0.0.5:8443"} {
		if !strings.Contains(args, want) {
			t.Errorf("webhook args %q lack %q", args, want)
		}
	}
	if strings.Contains(args, "--log=") || logDir != "" {
		t.Errorf("the webhook also follows a log: args %q, log directory %q mounted", args, logDir)
	}
	if _, def := sel["node-role.kubernetes.io/control-plane"]; sel["kubernetes.io/os"] != "linux" || def {
		t.Errorf("nodeSelector %v, want only kubernetes.io/os=linux (the setting replaces the default)", sel)
	}
	svc := find(r.Objects, "Service", "vigil-audit-webhook")
	if svc == nil {
		t.Fatal("no Service vigil-audit-webhook")
	}
	ip, _, _ := unstructured.NestedString(svc.Object, "spec", "clusterIP")
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	if ip != "10.96.0.46" || len(ports) != 1 || fmt.Sprint(ports[0].(map[string]any)["port"]) != "443" || ports[0].(map[string]any)["targetPort"] != "webhook" {
		t.Errorf("Service clusterIP %q ports %v, want 10.96.0.46 and 443 → webhook", ip, ports)
	}
	sec := find(r.Objects, "Secret", "vigil-audit")
	data, _, _ := unstructured.NestedStringMap(sec.Object, "stringData")
	if data["tls.crt"] != strings.TrimSpace(cert) || data["tls.key"] != strings.TrimSpace(key) || data["webhookToken"] != "whk" || data["token"] != "vgl_a" {
		t.Errorf("Secret vigil-audit holds %v", slices.Sorted(maps.Keys(data)))
	}
	cm := find(r.Objects, "ConfigMap", "vigil-audit")
	if ca, _, _ := unstructured.NestedString(cm.Object, "data", "webhook-client-ca.crt"); ca != strings.TrimSpace(cert) {
		t.Errorf("ConfigMap webhook-client-ca.crt %q", ca)
	}
}

func TestABadAuditWebhookConfigurationIsRefusedWithTheFix(t *testing.T) {
	cert, key := selfSigned(t)
	other, _ := selfSigned(t)
	wh := func(kv ...string) map[string]string {
		m := map[string]string{"source": "webhook"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	good := map[string]string{ProtectedWebhookTLSCert: cert, ProtectedWebhookTLSKey: key, ProtectedWebhookToken: "t"}
	for _, c := range []struct {
		name                string
		settings, protected map[string]string
		want                string
	}{
		{"an unknown source", map[string]string{"source": "syslog"}, nil, "use log"},
		{"webhook settings without source=webhook", map[string]string{"webhookClusterIP": "10.96.0.46"}, nil, "add source=webhook"},
		{"a log path for the webhook", wh("auditLogPath", "/var/log/a.log"), good, "source=log only"},
		{"a ClusterIP that is no address", wh("webhookClusterIP", "vigil.svc"), good, "IP address"},
		{"a client CA that is no certificate", wh("webhookClientCA", "hello"), good, "neither PEM"},
		{"client names without a client CA", wh("webhookClientNames", "apiserver"), good, "needs webhookClientCA"},
		{"no serving certificate", wh(), map[string]string{ProtectedWebhookToken: "t"}, "needs the protected settings webhookTLSCert and webhookTLSKey"},
		{"a key that does not match the certificate", wh(), map[string]string{ProtectedWebhookTLSCert: other, ProtectedWebhookTLSKey: key, ProtectedWebhookToken: "t"}, "not a usable certificate and key"},
		{"no way to authenticate the API server", wh(), map[string]string{ProtectedWebhookTLSCert: cert, ProtectedWebhookTLSKey: key}, "authenticate the API server"},
		{"webhook secrets for the log source", nil, good, "source=webhook only"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := ValidateProtected(AuditType, c.settings, c.protected)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
			p := maps.Clone(c.protected)
			if p == nil {
				p = map[string]string{}
			}
			p[ProtectedHubToken] = "vgl_a"
			if _, err := Render(Extension{Name: "a", Type: AuditType, Settings: c.settings, Protected: p}, target); err == nil {
				t.Fatal("rendered anyway")
			}
		})
	}
}

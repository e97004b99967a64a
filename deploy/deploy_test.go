package deploy

import (
	"bytes"
	"flag"
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite deploy/manifests/vigil.yaml from the chart")

// PlainValues are the values deploy/manifests/vigil.yaml is rendered with:
// agent and sensor, with placeholders users replace.
var PlainValues = map[string]any{
	"clusterId": "REPLACE_WITH_CLUSTER_ID",
	"hub":       map[string]any{"url": "https://REPLACE_WITH_HUB:8443", "caPEM": "REPLACE_WITH_HUB_CA_PEM"},
	"agent":     map[string]any{"token": "REPLACE_WITH_AGENT_TOKEN"},
	"sensor":    map[string]any{"enabled": true, "token": "REPLACE_WITH_SENSOR_TOKEN"},
}

func TestThePlainManifestsAreTheChartRendered(t *testing.T) {
	got, err := Render(PlainValues, "vigil-manifests")
	if err != nil {
		t.Fatal(err)
	}
	header := []byte("# Rendered from deploy/helm/vigil by `go test ./deploy -update`; do not edit.\n# Replace the REPLACE_WITH_* values (or use `vigil connect`, which fills them in).\n")
	got = append(header, got...)
	const path = "manifests/vigil.yaml"
	if *update {
		if err := os.MkdirAll("manifests", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v: run go test ./deploy -update", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is not what the chart renders: run `go test ./deploy -update` and commit it", path)
	}
}

func TestEveryRenderedDocumentIsAKubernetesObject(t *testing.T) {
	out, err := Render(Merge(PlainValues, map[string]any{"hubServer": map[string]any{"enabled": true}}), "test")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("document is not YAML: %v\n%s", err, doc)
		}
		if len(m) == 0 {
			continue
		}
		md, _ := m["metadata"].(map[string]any)
		if m["apiVersion"] == nil || m["kind"] == nil || md["name"] == nil {
			t.Fatalf("document lacks apiVersion, kind or name:\n%s", doc)
		}
		kinds[m["kind"].(string)]++
	}
	for _, k := range []string{"Namespace", "Deployment", "DaemonSet", "Service", "ClusterRole"} {
		if kinds[k] == 0 {
			t.Errorf("no %s rendered (kinds: %v)", k, kinds)
		}
	}
}

func TestDisabledComponentsRenderNothing(t *testing.T) {
	out, err := Render(map[string]any{"agent": map[string]any{"enabled": false}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "kind: Deployment") || strings.Contains(string(out), "kind: DaemonSet") {
		t.Fatalf("with agent, sensor and hub off a workload was rendered:\n%s", out)
	}
}

// Package deploy holds vigil's Helm chart (helm/vigil) and renders its
// templates without Helm: the same files `helm install` uses are executed
// with text/template and the subset of Helm's functions they use (include,
// toYaml, nindent, indent, quote, default). `vigil connect` (agent), the
// agent's extension catalog (sensor) and the plain manifests in
// deploy/manifests all come from here, so every install path produces the
// same objects.
package deploy

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"sort"
	"strings"
	"text/template"

	"sigs.k8s.io/yaml"
)

//go:embed all:helm/vigil
var chartFS embed.FS

// Chart is the chart's file system (rooted at helm/vigil).
func Chart() fs.FS {
	sub, err := fs.Sub(chartFS, "helm/vigil")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory
	}
	return sub
}

// DefaultValues are the chart's values.yaml.
func DefaultValues() (map[string]any, error) {
	data, err := fs.ReadFile(Chart(), "values.yaml")
	if err != nil {
		return nil, fmt.Errorf("read the chart's values.yaml: %w", err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("parse the chart's values.yaml: %w", err)
	}
	return v, nil
}

// Merge returns base with over deep-merged into it (maps merge, nil
// deletes the key as in Helm, anything else replaces). Neither argument is
// changed.
func Merge(base, over map[string]any) map[string]any {
	out := maps.Clone(base)
	if out == nil {
		out = map[string]any{}
	}
	for k, v := range over {
		if v == nil {
			delete(out, k)
			continue
		}
		if bm, ok := out[k].(map[string]any); ok {
			if om, ok := v.(map[string]any); ok {
				out[k] = Merge(bm, om)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// Render executes every template of the chart with the default values
// merged with overrides and returns one multi-document YAML stream (the
// templates in name order; empty documents dropped). service is what
// {{ .Release.Service }} says (the managed-by label): "Helm" under Helm,
// the field manager otherwise.
func Render(overrides map[string]any, service string) ([]byte, error) {
	defaults, err := DefaultValues()
	if err != nil {
		return nil, err
	}
	values := Merge(defaults, overrides)
	chart := Chart()
	names, err := fs.Glob(chart, "templates/*")
	if err != nil {
		return nil, fmt.Errorf("list the chart's templates: %w", err)
	}
	sort.Strings(names)
	root := template.New("vigil").Option("missingkey=error")
	root.Funcs(funcMap(root))
	for _, n := range names {
		data, err := fs.ReadFile(chart, n)
		if err != nil {
			return nil, fmt.Errorf("read chart template %s: %w", n, err)
		}
		if _, err := root.New(n).Parse(string(data)); err != nil {
			return nil, fmt.Errorf("parse chart template %s: %w", n, err)
		}
	}
	ctx := map[string]any{
		"Values":  values,
		"Release": map[string]any{"Name": "vigil", "Namespace": values["namespace"], "Service": service},
		"Chart":   map[string]any{"Name": "vigil"},
	}
	var out bytes.Buffer
	for _, n := range names {
		if strings.HasPrefix(path.Base(n), "_") {
			continue
		}
		var b bytes.Buffer
		if err := root.ExecuteTemplate(&b, n, ctx); err != nil {
			return nil, fmt.Errorf("render chart template %s: %w", n, err)
		}
		for _, doc := range strings.Split(b.String(), "\n---") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			fmt.Fprintf(&out, "---\n# Source: vigil/%s\n%s\n", n, strings.Trim(doc, "\n"))
		}
	}
	return out.Bytes(), nil
}

func funcMap(root *template.Template) template.FuncMap {
	return template.FuncMap{
		"include": func(name string, data any) (string, error) {
			var b bytes.Buffer
			if err := root.ExecuteTemplate(&b, name, data); err != nil {
				return "", err
			}
			return b.String(), nil
		},
		"toYaml": func(v any) (string, error) {
			b, err := yaml.Marshal(v)
			if err != nil {
				return "", err
			}
			return strings.TrimSuffix(string(b), "\n"), nil
		},
		"indent": func(n int, s string) string {
			pad := strings.Repeat(" ", n)
			return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
		},
		"nindent": func(n int, s string) string {
			pad := strings.Repeat(" ", n)
			return "\n" + pad + strings.ReplaceAll(s, "\n", "\n"+pad)
		},
		"quote": func(v any) string {
			b, _ := yamlQuote(fmt.Sprint(v))
			return b
		},
		"required": func(msg string, v any) (any, error) {
			if v == nil || v == "" {
				return nil, errors.New(msg)
			}
			return v, nil
		},
		"default": func(def, v any) any {
			if v == nil || v == "" || v == false || v == 0 {
				return def
			}
			return v
		},
	}
}

// yamlQuote quotes s as a double-quoted scalar (Helm's quote uses Go's %q,
// which YAML reads the same for the characters that matter here).
func yamlQuote(s string) (string, error) {
	return fmt.Sprintf("%q", s), nil
}

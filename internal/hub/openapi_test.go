package hub

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/seal"
	"github.com/vigil-sec/vigil/internal/store"
)

type operation struct {
	method, path string
	op           map[string]any
}

// TestTheOpenAPIDocumentDescribesEveryRouteAndEveryOperationAnswersAsDocumented
// fetches /openapi.json from the real handler, checks it covers every
// registered route, then calls every documented operation with its
// documented example (happy path, in an order where resources exist before
// they are used and are deleted last), asserting that the status is a
// documented success and the body matches the documented schema; and calls
// every authenticated operation without a token, expecting the documented 401.
func TestTheOpenAPIDocumentDescribesEveryRouteAndEveryOperationAnswersAsDocumented(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		sealer, err := seal.NewFromKey(bytes.Repeat([]byte{1}, 32))
		if err != nil {
			t.Fatal(err)
		}
		e := newEnv(t, open, func(c *Config) { c.Sealer = sealer })
		var doc map[string]any
		if err := json.Unmarshal(e.must(200, "GET", "/openapi.json", "", nil).body, &doc); err != nil {
			t.Fatal(err)
		}
		if doc["openapi"] != "3.0.3" {
			t.Fatalf("openapi version %v", doc["openapi"])
		}
		schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
		paths := doc["paths"].(map[string]any)

		var ops []operation
		for p, item := range paths {
			for m, op := range item.(map[string]any) {
				ops = append(ops, operation{strings.ToUpper(m), p, op.(map[string]any)})
			}
		}
		documented := map[string]bool{}
		for _, o := range ops {
			documented[o.method+" "+o.path] = true
		}
		routes := e.srv.Routes()
		for _, r := range routes {
			if !documented[r] {
				t.Errorf("route %s is not documented", r)
			}
		}
		if len(ops) != len(routes) {
			t.Errorf("%d documented operations, %d routes", len(ops), len(routes))
		}

		// Fixture: the example cluster, its sensor and agent tokens, and a token to revoke.
		sensor := e.cluster(exSub, exRG, exCluster)
		agent := e.agent(exSub, exRG, exCluster)
		revokee := e.must(201, "POST", tokensPath, e.owner, map[string]any{"name": "revokee", "role": "Reader", "scope": "/"}).json(t)["name"].(string)
		params := map[string]string{"sub": exSub, "rg": exRG, "cluster": exCluster, "ext": "vigil-sensor",
			"alertId": "0123456789abcdef0123456789abcdef", "action": "dismiss", "rule": "walk-rule", "tokenId": revokee, "output": "walk-output"}
		tokenFor := map[string]string{tokenNone: "", tokenUser: e.owner, tokenUser + "|" + tokenAgent: e.owner, tokenSensor: sensor, tokenNode: sensor, tokenAgent: agent}

		rank := map[string]int{"PUT": 0, "POST": 1, "PATCH": 2, "GET": 3, "DELETE": 4}
		sort.Slice(ops, func(i, j int) bool {
			a, b := ops[i], ops[j]
			if rank[a.method] != rank[b.method] {
				return rank[a.method] < rank[b.method]
			}
			if a.method == "DELETE" && len(a.path) != len(b.path) {
				return len(a.path) > len(b.path) // children first
			}
			return a.path < b.path
		})
		for _, o := range ops {
			name := fmt.Sprintf("%s %s", o.method, o.path)
			url := pathParamRE.ReplaceAllStringFunc(o.path, func(m string) string {
				v, ok := params[m[1:len(m)-1]]
				if !ok {
					t.Fatalf("%s: no fixture value for path parameter %s", name, m)
				}
				return v
			})
			var body any
			if rb, ok := o.op["requestBody"].(map[string]any); ok {
				ex := rb["content"].(map[string]any)["application/json"].(map[string]any)["example"]
				if ex == nil {
					t.Errorf("%s: request body has no example", name)
				}
				body = ex
			}
			kind, _ := o.op["x-vigil-token"].(string)
			tok, ok := tokenFor[kind]
			if !ok {
				t.Fatalf("%s: unknown x-vigil-token %q", name, kind)
			}
			responses := o.op["responses"].(map[string]any)
			if kind != tokenNone {
				r := e.do(o.method, url, "", body)
				if r.code != 401 || responses["401"] == nil {
					t.Errorf("%s without a token = %d (documented 401: %v)", name, r.code, responses["401"] != nil)
				}
			}
			r := e.do(o.method, url, tok, body)
			t.Logf("%s -> %d", name, r.code)
			spec, ok := responses[strconv.Itoa(r.code)].(map[string]any)
			if !ok || r.code < 200 || r.code > 299 {
				t.Errorf("%s = %d %s; want a documented success", name, r.code, r.body)
				continue
			}
			content, _ := spec["content"].(map[string]any)
			if content == nil {
				if len(bytes.TrimSpace(r.body)) != 0 {
					t.Errorf("%s: documented without a body but returned %s", name, r.body)
				}
				continue
			}
			if js, ok := content["application/json"].(map[string]any); ok {
				var v any
				if err := json.Unmarshal(r.body, &v); err != nil {
					t.Errorf("%s: body is not JSON: %s", name, r.body)
					continue
				}
				if err := conforms(schemas, js["schema"].(map[string]any), v, "body"); err != nil {
					t.Errorf("%s: response does not match its schema: %v\n%s", name, err, r.body)
				}
			}
		}
	})
}

// conforms checks v against a (small subset of) OpenAPI schema: $ref,
// type, required, properties, items, enum.
func conforms(schemas map[string]any, s map[string]any, v any, at string) error {
	if ref, ok := s["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/components/schemas/")
		target, ok := schemas[name].(map[string]any)
		if !ok {
			return fmt.Errorf("%s: unknown schema %s", at, ref)
		}
		return conforms(schemas, target, v, at)
	}
	switch s["type"] {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want an object, got %T", at, v)
		}
		for _, r := range asStrings(s["required"]) {
			if _, ok := m[r]; !ok {
				return fmt.Errorf("%s: required property %s missing", at, r)
			}
		}
		props, _ := s["properties"].(map[string]any)
		for k, pv := range m {
			ps, ok := props[k].(map[string]any)
			if !ok {
				if props != nil && s["additionalProperties"] == nil {
					return fmt.Errorf("%s: property %s is not documented", at, k)
				}
				continue
			}
			if err := conforms(schemas, ps, pv, at+"."+k); err != nil {
				return err
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: want an array, got %T", at, v)
		}
		if items, ok := s["items"].(map[string]any); ok {
			for i, x := range a {
				if err := conforms(schemas, items, x, fmt.Sprintf("%s[%d]", at, i)); err != nil {
					return err
				}
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: want a string, got %T", at, v)
		}
		if enum := asStrings(s["enum"]); len(enum) > 0 {
			found := false
			for _, e := range enum {
				found = found || e == str
			}
			if !found {
				return fmt.Errorf("%s: %q is not one of %v", at, str, enum)
			}
		}
	case "integer":
		if f, ok := v.(float64); !ok || f != float64(int64(f)) {
			return fmt.Errorf("%s: want an integer, got %v", at, v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%s: want a boolean, got %T", at, v)
		}
	}
	return nil
}

func asStrings(v any) []string {
	var out []string
	switch x := v.(type) {
	case []any:
		for _, s := range x {
			out = append(out, fmt.Sprint(s))
		}
	case []string:
		out = x
	}
	return out
}

package hub

import (
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/vigil-sec/vigil/internal/auth"
)

type obj = map[string]any

func ref(name string) obj { return obj{"$ref": "#/components/schemas/" + name} }
func str(desc string) obj { return obj{"type": "string", "description": desc} }
func ts(desc string) obj  { return obj{"type": "string", "format": "date-time", "description": desc} }
func integer(desc string) obj {
	return obj{"type": "integer", "description": desc}
}
func strMap(desc string) obj {
	return obj{"type": "object", "additionalProperties": obj{"type": "string"}, "description": desc}
}
func object(required []string, props obj) obj {
	o := obj{"type": "object", "properties": props}
	if len(required) > 0 {
		o["required"] = required
	}
	return o
}
func armResource(typeName string, properties obj, withLocation bool) obj {
	p := obj{"id": str("ARM resource id (read-only)"), "name": str("resource name (read-only)"), "type": str(typeName + " (read-only)"), "properties": properties}
	if withLocation {
		p["location"] = str("free-form location label")
		p["tags"] = strMap("tags")
	}
	return object(nil, p)
}
func list(item string) obj {
	return object([]string{"value"}, obj{"value": obj{"type": "array", "items": ref(item)}, "nextLink": str("URL of the next page; absent on the last page")})
}

func schemas() obj {
	status := object(nil, obj{"code": str(""), "level": str("Information, Warning or Error"), "displayStatus": str(""), "message": str(""), "time": ts("")})
	process := object(nil, obj{"path": str(""), "commandLine": str(""), "pid": integer(""), "uid": integer(""), "user": str(""), "startTime": ts("")})
	alertProps := object([]string{"id", "alertType", "severity", "status", "startTime", "endTime", "count"}, obj{
		"id": str("stable alert id (same rule, node, container and executable within one aggregation window)"), "alertType": str("rule id, e.g. vigil.node/DigitalCurrencyMining"),
		"displayName": str(""), "description": str(""), "severity": obj{"type": "string", "enum": severities}, "status": obj{"type": "string", "enum": statuses},
		"startTime": ts("first seen"), "endTime": ts("last seen"), "count": integer("aggregated occurrences"),
		"tactics": obj{"type": "array", "items": obj{"type": "string"}}, "techniques": obj{"type": "array", "items": obj{"type": "string"}},
		"remediationSteps": obj{"type": "array", "items": obj{"type": "string"}}, "maturity": str("stable, incubating or sandbox"), "detector": str(""),
		"resourceId": str("the connected cluster's ARM id"),
		"entities": object(nil, obj{"node": str(""), "namespace": str(""), "pod": str(""),
			"container": object(nil, obj{"id": str(""), "name": str(""), "image": str(""), "runtime": str(""), "pod": str(""), "namespace": str("")}),
			"process":   process, "parentProcess": process, "ancestry": obj{"type": "array", "items": obj{"type": "object"}},
			"network": object(nil, obj{"ip": str(""), "port": integer(""), "domain": str("")}), "file": str(""),
			"syscall": obj{"type": "object"}, "facts": strMap("detector evidence"), "extra": obj{"type": "object"}}),
		"cluster":         object(nil, obj{"subscription": str(""), "resourceGroup": str(""), "name": str("")}),
		"statusChangedBy": str("who changed the status: token/<name> or suppression/<rule>"), "statusChangedAt": ts(""), "ingestedAt": ts(""),
		"relatedAlerts": obj{"type": "array", "description": "GET of one alert: other alerts about the same pod within 10 minutes (e.g. an audit alert and a runtime alert)",
			"items": object([]string{"id", "name", "alertType"}, obj{"id": str("ARM id"), "name": str("alert id"), "alertType": str(""), "displayName": str(""),
				"severity": str(""), "startTime": ts(""), "endTime": ts("")})},
	})
	tokenProps := object([]string{"displayName", "kind", "state", "createdAt"}, obj{
		"displayName": str(""), "kind": obj{"type": "string", "enum": []string{"user", "sensor", "agent"}}, "role": str("Reader, Contributor or Owner"),
		"scope": str("ARM id prefix"), "clusterId": str("sensor and agent tokens"), "createdBy": str(""), "createdAt": ts(""), "expiresAt": ts(""),
		"revokedAt": ts(""), "lastUsed": ts("updated at most once a minute"), "state": obj{"type": "string", "enum": []string{"Active", "Expired", "Revoked"}},
		"token": str("the secret; returned once, by create"),
	})
	return obj{
		"Object":            obj{"type": "object"},
		"Error":             object([]string{"error"}, obj{"error": object([]string{"code", "message"}, obj{"code": str("machine-readable code"), "message": str("what was wrong and what to do")})}),
		"Health":            object([]string{"ok", "status"}, obj{"ok": obj{"type": "boolean"}, "status": str(""), "message": str("")}),
		"ResourceGroup":     armResource("Vigil.Resources/resourceGroups", object(nil, obj{"provisioningState": str("read-only"), "createdAt": ts("read-only")}), true),
		"ResourceGroupList": list("ResourceGroup"),
		"Cluster": armResource("Vigil.Kubernetes/connectedClusters", object(nil, obj{
			"distribution": str("kubeadm, k3s, standalone, ..."), "connectivityStatus": obj{"type": "string", "enum": []string{"Connecting", "Connected", "Offline", "Expired"}, "description": "read-only"},
			"provisioningState": str("read-only"), "agentVersion": str("read-only"), "kubernetesVersion": str("read-only"), "totalNodeCount": integer("read-only"),
			"lastConnectivityTime": ts("last heartbeat (read-only)"), "createdAt": ts("read-only"), "updatedAt": ts("read-only")}), true),
		"ClusterList": list("Cluster"),
		"TagsPatch":   object([]string{"tags"}, obj{"tags": strMap("the new tags (replace the old ones)")}),
		"Extension": armResource("Vigil.KubernetesConfiguration/extensions", object([]string{"extensionType"}, obj{
			"extensionType": str("vigil.sensor, vigil.audit"), "version": str(""), "configurationSettings": strMap(""),
			"configurationProtectedSettings": strMap("write-only: sealed at rest, never returned; omit to keep the stored ones"),
			"provisioningState":              str("read-only"), "statuses": obj{"type": "array", "items": status, "description": "read-only"},
			"generation": integer("desired generation (read-only)"), "appliedGeneration": integer("generation the agent applied (read-only)"),
			"createdAt": ts("read-only"), "updatedAt": ts("read-only")}), false),
		"ExtensionList": list("Extension"),
		"Plan": armResource("Vigil.Security/pricings", object([]string{"pricingTier"}, obj{
			"pricingTier": obj{"type": "string", "enum": []string{"Standard", "Free"}}, "components": obj{"type": "object", "additionalProperties": obj{"type": "boolean"}, "description": strings.Join(PlanComponents, ", ")},
			"updatedBy": str("read-only"), "updatedAt": ts("read-only")}), false),
		"Alert":            armResource("Vigil.Security/alerts", alertProps, false),
		"AlertList":        list("Alert"),
		"AlertStatusPatch": object([]string{"properties"}, obj{"properties": object([]string{"status"}, obj{"status": obj{"type": "string", "enum": statuses}})}),
		"SuppressionRule": armResource("Vigil.Security/alertsSuppressionRules", object([]string{"match"}, obj{
			"match":  obj{"type": "object", "additionalProperties": obj{"type": "string"}, "description": "alert field → value; all must be equal. Fields: " + strings.Join(MatchFields(), ", ")},
			"reason": str(""), "expires": ts("omit for never"), "state": str("Enabled or Expired (read-only)"), "createdBy": str("read-only"), "createdAt": ts("read-only")}), false),
		"SuppressionList":    list("SuppressionRule"),
		"SuppressionPreview": object([]string{"matchingAlerts", "activeMatchingAlerts"}, obj{"matchingAlerts": integer(""), "activeMatchingAlerts": integer(""), "scannedAlerts": integer(""), "truncated": obj{"type": "boolean"}}),
		"Recommendation": armResource("Vigil.Security/recommendations", object([]string{"displayName", "severity", "resourceId", "remediation"}, obj{
			"displayName": str(""), "description": str(""), "severity": str(""), "resourceId": str("the resource it is about"), "remediation": str("what to do")}), false),
		"RecommendationList": list("Recommendation"),
		"TokenCreate": object([]string{"name"}, obj{"name": str("who or what uses it"), "kind": obj{"type": "string", "enum": []string{"user", "sensor", "agent"}, "default": "user"},
			"role": str("user tokens: Reader, Contributor or Owner"), "scope": str("user tokens: /, /subscriptions/{s}, .../resourceGroups/{g} or a cluster id"),
			"clusterId": str("sensor and agent tokens: the cluster's ARM id"), "expiresAt": ts("omit for never")}),
		"Token":     armResource("Vigil.Hub/tokens", tokenProps, false),
		"TokenList": list("Token"),
		"Output": armResource("Vigil.Hub/outputs", object([]string{"type", "config"}, obj{"type": obj{"type": "string", "enum": []string{"webhook", "syslog"}},
			"minSeverity": obj{"type": "string", "enum": severities, "default": "Low"}, "config": strMap("webhook: url, format=json|falco; syslog: address, network=udp|tcp|tls, facility"),
			"enabled": obj{"type": "boolean", "default": true}, "createdAt": ts("read-only")}), false),
		"OutputList": list("Output"),
		"IngestBatch": object([]string{"cluster", "alerts"}, obj{"cluster": str("the cluster's ARM id (must be the sensor token's cluster)"), "node": str(""),
			"batchId": str("the outbox's batch id (for logs)"), "alerts": obj{"type": "array", "maxItems": 1000, "items": alertProps}}),
		"IngestResult": object([]string{"accepted", "inserted", "updated", "unchanged"}, obj{"accepted": integer("alerts in the batch"), "inserted": integer("new alert ids"),
			"updated": integer("known ids whose count or last-seen grew"), "unchanged": integer("exact replays")}),
		"HealthReport": object([]string{"clusterId", "node", "sourceMode"}, obj{"clusterId": str(""), "node": str(""), "sourceMode": obj{"type": "string", "enum": []string{"ebpf", "proc"}},
			"drops": integer(""), "outboxDropped": integer(""), "ruleSetVersion": str(""), "sensorVersion": str(""), "missing": obj{"type": "array", "items": obj{"type": "string"}}, "reportedAt": ts("replaced by the hub's receive time")}),
		"RenewedToken": object([]string{"id", "token", "expiresAt", "oldExpiresAt"}, obj{"id": str("the new token's id"), "token": str("the new secret (shown once)"),
			"expiresAt": ts("when the new token expires"), "oldExpiresAt": ts("when the token that asked stops working")}),
		"Heartbeat": object([]string{"clusterId"}, obj{"clusterId": str(""), "agentVersion": str(""), "kubernetesVersion": str(""), "nodeCount": integer("")}),
		"ExtensionStatusReport": object([]string{"clusterId", "name", "generation", "provisioningState"}, obj{"clusterId": str(""), "name": str("extension name"),
			"generation": integer("the desired generation applied"), "provisioningState": str("Succeeded, Failed, Creating, Updating, Deleting, or Deleted once a Deleting extension was removed"), "statuses": obj{"type": "array", "items": status}}),
	}
}

var queryDocs = map[string]obj{
	"api-version":   {"description": "API version; optional. Only " + APIVersion + " is accepted.", "schema": obj{"type": "string", "enum": []string{APIVersion}}},
	"severity":      {"description": "comma-separated severities", "schema": obj{"type": "string"}, "example": "High,Medium"},
	"status":        {"description": "comma-separated statuses", "schema": obj{"type": "string"}, "example": "Active"},
	"cluster":       {"description": "cluster name or ARM id", "schema": obj{"type": "string"}},
	"resourceGroup": {"description": "resource group", "schema": obj{"type": "string"}},
	"namespace":     {"description": "Kubernetes namespace", "schema": obj{"type": "string"}},
	"alertType":     {"description": "rule id", "schema": obj{"type": "string"}},
	"since":         {"description": "last seen at or after: RFC 3339 time or a duration back from now (24h)", "schema": obj{"type": "string"}},
	"until":         {"description": "last seen before: RFC 3339 time or a duration back from now", "schema": obj{"type": "string"}},
	"q":             {"description": "case-insensitive text in name, description, process, pod or image", "schema": obj{"type": "string"}},
	"$top":          {"description": "page size, 1-1000 (default 100)", "schema": obj{"type": "integer", "minimum": 1, "maximum": 1000}},
	"$skipToken":    {"description": "continuation from nextLink", "schema": obj{"type": "string"}},
	"$orderby":      {"description": "endTime (default, newest first), startTime, severity or count", "schema": obj{"type": "string", "enum": []string{"endTime", "startTime", "severity", "count"}}},
	"force":         {"description": "true: delete at once without waiting for the agent (a cluster that is gone for good)", "schema": obj{"type": "boolean"}},
}

var pathParamRE = regexp.MustCompile(`\{([A-Za-z]+)\}`)

var paramDocs = map[string]string{
	"sub": "subscription", "rg": "resource group", "cluster": "connected cluster name", "ext": "extension name",
	"alertId": "alert id", "action": "dismiss, resolve or activate", "rule": "suppression rule name", "tokenId": "token id (tok-...)", "output": "output name",
}

// Document returns the OpenAPI 3.0 document of every route.
func (s *Server) Document() map[string]any {
	paths := obj{}
	for _, rt := range s.routes {
		p, _ := paths[rt.path].(obj)
		if p == nil {
			p = obj{}
			paths[rt.path] = p
		}
		var params []any
		for _, m := range pathParamRE.FindAllStringSubmatch(rt.path, -1) {
			prm := obj{"name": m[1], "in": "path", "required": true, "description": paramDocs[m[1]], "schema": obj{"type": "string"}}
			if m[1] == "action" {
				prm["schema"] = obj{"type": "string", "enum": []string{"dismiss", "resolve", "activate"}}
			}
			params = append(params, prm)
		}
		qs := rt.query
		if rt.arm {
			qs = append([]string{"api-version"}, qs...)
		}
		for _, q := range qs {
			prm := obj{"name": q, "in": "query", "required": false}
			for k, v := range queryDocs[q] {
				prm[k] = v
			}
			params = append(params, prm)
		}
		responses := obj{}
		okResp := func(code int) obj {
			r := obj{"description": http.StatusText(code)}
			switch {
			case rt.resp != "":
				r["content"] = obj{"application/json": obj{"schema": ref(rt.resp)}}
			case rt.rawResp != "":
				r["content"] = obj{rt.rawResp: obj{"schema": obj{"type": "string"}}}
			}
			return r
		}
		responses[strconv.Itoa(rt.ok)] = okResp(rt.ok)
		for _, c := range rt.alsoOK {
			r := okResp(c)
			if c == http.StatusNoContent {
				delete(r, "content")
			}
			responses[strconv.Itoa(c)] = r
		}
		errs := append([]int{}, rt.errCodes...)
		if rt.arm || rt.body != "" {
			errs = append(errs, 400)
		}
		if rt.token != tokenNone {
			errs = append(errs, 401, 503)
		}
		for _, c := range errs {
			responses[strconv.Itoa(c)] = obj{"description": http.StatusText(c), "content": obj{"application/json": obj{"schema": ref("Error")}}}
		}
		op := obj{"operationId": rt.op, "summary": rt.summary, "tags": []string{rt.tag}, "responses": responses, "x-vigil-token": rt.token}
		if len(params) > 0 {
			op["parameters"] = params
		}
		if rt.token == tokenNone {
			op["security"] = []any{}
		}
		if rt.body != "" {
			op["requestBody"] = obj{"required": true, "content": obj{"application/json": obj{"schema": ref(rt.body), "example": rt.example}}}
		}
		p[strings.ToLower(rt.method)] = op
	}
	tags := map[string]bool{}
	for _, rt := range s.routes {
		tags[rt.tag] = true
	}
	var tagList []any
	names := make([]string, 0, len(tags))
	for t := range tags {
		names = append(names, t)
	}
	sort.Strings(names)
	for _, t := range names {
		tagList = append(tagList, obj{"name": t})
	}
	return obj{
		"openapi": "3.0.3",
		"info": obj{"title": "vigil hub API", "version": APIVersion,
			"description": "ARM-shaped management API of the vigil hub and the ingest endpoints of sensors and agents. " +
				"Authenticate with Authorization: Bearer <token>. User tokens hold a role (Reader < Contributor < Owner) at a scope; " +
				"sensor and agent tokens are bound to one cluster (x-vigil-token names which kind an operation takes). " +
				"Errors are {\"error\":{\"code\",\"message\"}}; the message says what to do."},
		"servers":    []any{obj{"url": "/"}},
		"tags":       tagList,
		"paths":      paths,
		"security":   []any{obj{"bearer": []any{}}},
		"components": obj{"schemas": schemas(), "securitySchemes": obj{"bearer": obj{"type": "http", "scheme": "bearer", "bearerFormat": "vgl_ + base64url(32 bytes)"}}},
	}
}

func (s *Server) openapi(w http.ResponseWriter, _ *http.Request, _ auth.Principal) error {
	writeJSON(w, http.StatusOK, s.Document())
	return nil
}

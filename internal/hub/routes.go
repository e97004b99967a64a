package hub

// Which credential a route takes (documented as x-vigil-token).
const (
	tokenNone   = "none"
	tokenUser   = "user"
	tokenSensor = "sensor"
	tokenAgent  = "agent"
	tokenNode   = "sensor|agent"
)

// route is one API operation: how it is served and how it is documented.
type route struct {
	method, path string
	op, summary  string
	tag          string
	token        string
	arm          bool // under api-version handling
	h            handlerFunc
	// Documentation.
	query    []string // names of query parameters (see queryParams)
	body     string   // request schema name
	example  any      // request example
	ok       int      // success status
	resp     string   // response schema name ("" no body)
	alsoOK   []int    // other success statuses (e.g. 201 on create, 204 when already gone)
	errCodes []int    // documented error statuses
	rawResp  string   // content type of a non-JSON success response
}

const (
	sub     = "/subscriptions/{sub}"
	rgs     = sub + "/resourceGroups"
	cluster = sub + "/resourceGroups/{rg}/providers/Vigil.Kubernetes/connectedClusters/{cluster}"
	exts    = cluster + "/providers/Vigil.KubernetesConfiguration/extensions"
	sec     = sub + "/providers/Vigil.Security"
)

// Example names used in the document (and by the test that walks it).
const (
	exSub     = "default"
	exRG      = "rg1"
	exCluster = "cluster1"
)

var exClusterID = "/subscriptions/" + exSub + "/resourceGroups/" + exRG + "/providers/Vigil.Kubernetes/connectedClusters/" + exCluster

func (s *Server) routeTable() []*route {
	ro := []int{401, 403}
	rw := []int{400, 401, 403}
	return []*route{
		{method: "GET", path: "/healthz", op: "Healthz", tag: "Operations", summary: "Liveness: the process serves requests.", token: tokenNone, h: s.healthz, ok: 200, resp: "Health"},
		{method: "GET", path: "/readyz", op: "Readyz", tag: "Operations", summary: "Readiness: the database is reachable (503 otherwise).", token: tokenNone, h: s.readyz, ok: 200, resp: "Health", errCodes: []int{503}},
		{method: "GET", path: "/metrics", op: "Metrics", tag: "Operations", summary: "Prometheus metrics.", token: tokenNone, h: s.metricsHandler(), ok: 200, rawResp: "text/plain"},
		{method: "GET", path: "/openapi.json", op: "OpenAPI", tag: "Operations", summary: "This document.", token: tokenNone, h: s.openapi, ok: 200, resp: "Object"},

		{method: "GET", path: rgs, op: "ResourceGroups_List", tag: "ResourceGroups", summary: "List resource groups (those within the token's scope).", token: tokenUser, arm: true, h: s.listRGs, ok: 200, resp: "ResourceGroupList", errCodes: ro},
		{method: "PUT", path: rgs + "/{rg}", op: "ResourceGroups_CreateOrUpdate", tag: "ResourceGroups", summary: "Create or update a resource group (clusters create theirs on demand).", token: tokenUser, arm: true, h: s.putRG,
			body: "ResourceGroup", example: map[string]any{"location": "westeurope", "tags": map[string]string{"team": "platform"}}, ok: 200, alsoOK: []int{201}, resp: "ResourceGroup", errCodes: rw},
		{method: "GET", path: rgs + "/{rg}", op: "ResourceGroups_Get", tag: "ResourceGroups", summary: "Get a resource group.", token: tokenUser, arm: true, h: s.getRG, ok: 200, resp: "ResourceGroup", errCodes: append(ro, 404)},
		{method: "DELETE", path: rgs + "/{rg}", op: "ResourceGroups_Delete", tag: "ResourceGroups", summary: "Delete an empty resource group (409 while clusters remain; 204 when it did not exist).", token: tokenUser, arm: true, h: s.deleteRG, ok: 200, alsoOK: []int{204}, errCodes: append(ro, 409)},

		{method: "GET", path: sub + "/providers/Vigil.Kubernetes/connectedClusters", op: "ConnectedClusters_ListBySubscription", tag: "ConnectedClusters", summary: "List connected clusters of a subscription.", token: tokenUser, arm: true, h: s.listClusters, ok: 200, resp: "ClusterList", errCodes: ro},
		{method: "GET", path: rgs + "/{rg}/providers/Vigil.Kubernetes/connectedClusters", op: "ConnectedClusters_ListByResourceGroup", tag: "ConnectedClusters", summary: "List connected clusters of a resource group.", token: tokenUser, arm: true, h: s.listClusters, ok: 200, resp: "ClusterList", errCodes: ro},
		{method: "PUT", path: cluster, op: "ConnectedClusters_Create", tag: "ConnectedClusters", summary: "Register (or update) a connected cluster; its resource group is created on demand.", token: tokenUser, arm: true, h: s.putCluster,
			body: "Cluster", example: map[string]any{"location": "westeurope", "tags": map[string]string{"env": "prod"}, "properties": map[string]any{"distribution": "kubeadm"}}, ok: 200, alsoOK: []int{201}, resp: "Cluster", errCodes: rw},
		{method: "GET", path: cluster, op: "ConnectedClusters_Get", tag: "ConnectedClusters", summary: "Get a connected cluster with its connectivity status.", token: tokenUser, arm: true, h: s.getCluster, ok: 200, resp: "Cluster", errCodes: append(ro, 404)},
		{method: "PATCH", path: cluster, op: "ConnectedClusters_Update", tag: "ConnectedClusters", summary: "Replace a connected cluster's tags.", token: tokenUser, arm: true, h: s.patchCluster,
			body: "TagsPatch", example: map[string]any{"tags": map[string]string{"env": "prod", "owner": "sre"}}, ok: 200, resp: "Cluster", errCodes: append(rw, 404)},
		{method: "DELETE", path: cluster, op: "ConnectedClusters_Delete", tag: "ConnectedClusters", summary: "Delete a connected cluster with its extensions, tokens and health (its alerts are kept).", token: tokenUser, arm: true, h: s.deleteCluster, ok: 200, alsoOK: []int{204}, errCodes: ro},

		{method: "GET", path: exts, op: "Extensions_List", tag: "Extensions", summary: "List a cluster's extensions (agents read their cluster's desired state here).", token: tokenUser + "|" + tokenAgent, arm: true, h: s.listExtensions, ok: 200, resp: "ExtensionList", errCodes: append(ro, 404)},
		{method: "PUT", path: exts + "/{ext}", op: "Extensions_Create", tag: "Extensions", summary: "Create or update an extension; configurationProtectedSettings are sealed at rest and returned only to the agent of the extension's cluster, which applies them (omit them to keep the stored ones).", token: tokenUser, arm: true, h: s.putExtension,
			body: "Extension", example: map[string]any{"properties": map[string]any{"extensionType": "vigil.sensor", "version": "0.1.0", "configurationSettings": map[string]string{"logLevel": "info"}, "configurationProtectedSettings": map[string]string{"hubToken": "secret"}}},
			ok: 200, alsoOK: []int{201}, resp: "Extension", errCodes: append(rw, 404, 409)},
		{method: "GET", path: exts + "/{ext}", op: "Extensions_Get", tag: "Extensions", summary: "Get an extension with its provisioning state and statuses.", token: tokenUser + "|" + tokenAgent, arm: true, h: s.getExtension, ok: 200, resp: "Extension", errCodes: append(ro, 404)},
		{method: "DELETE", path: exts + "/{ext}", op: "Extensions_Delete", tag: "Extensions", summary: "Delete an extension. Applied in its cluster: 202, it shows Deleting until the agent confirms it removed it; never applied (or ?force=true): deleted at once, 200; 204 when it did not exist.", token: tokenUser, arm: true, h: s.deleteExtension, query: []string{"force"}, ok: 200, alsoOK: []int{202, 204}, resp: "Extension", errCodes: ro},

		{method: "GET", path: sec + "/pricings/Containers", op: "Pricings_Get", tag: "Plan", summary: "Get the Containers plan of a subscription.", token: tokenUser, arm: true, h: s.getPlan, ok: 200, resp: "Plan", errCodes: ro},
		{method: "PUT", path: sec + "/pricings/Containers", op: "Pricings_Update", tag: "Plan", summary: "Turn the Containers plan on (Standard) or off (Free) and set its components (Owner).", token: tokenUser, arm: true, h: s.putPlan,
			body: "Plan", example: map[string]any{"properties": map[string]any{"pricingTier": "Standard", "components": map[string]bool{"runtimeDetection": true, "auditDetection": false}}}, ok: 200, resp: "Plan", errCodes: rw},

		{method: "GET", path: sec + "/alerts", op: "Alerts_List", tag: "Alerts", summary: "List alerts, newest first, with filters; follow nextLink for more.", token: tokenUser, arm: true, h: s.listAlerts,
			query: []string{"severity", "status", "cluster", "resourceGroup", "namespace", "alertType", "since", "until", "q", "$top", "$skipToken", "$orderby"}, ok: 200, resp: "AlertList", errCodes: rw},
		{method: "GET", path: sec + "/alerts/{alertId}", op: "Alerts_Get", tag: "Alerts", summary: "Get an alert.", token: tokenUser, arm: true, h: s.getAlert, ok: 200, resp: "Alert", errCodes: append(ro, 404)},
		{method: "PATCH", path: sec + "/alerts/{alertId}", op: "Alerts_UpdateStatus", tag: "Alerts", summary: "Change an alert's status (Active, Resolved, Dismissed); who and when are recorded.", token: tokenUser, arm: true, h: s.patchAlert,
			body: "AlertStatusPatch", example: map[string]any{"properties": map[string]string{"status": "Resolved"}}, ok: 200, resp: "Alert", errCodes: append(rw, 404)},
		{method: "POST", path: sec + "/alerts/{alertId}/{action}", op: "Alerts_Action", tag: "Alerts", summary: "dismiss, resolve or activate an alert.", token: tokenUser, arm: true, h: s.alertAction, ok: 200, resp: "Alert", errCodes: append(ro, 404)},

		{method: "GET", path: sec + "/alertsSuppressionRules", op: "AlertsSuppressionRules_List", tag: "SuppressionRules", summary: "List suppression rules.", token: tokenUser, arm: true, h: s.listSuppressions, ok: 200, resp: "SuppressionList", errCodes: ro},
		{method: "PUT", path: sec + "/alertsSuppressionRules/{rule}", op: "AlertsSuppressionRules_Update", tag: "SuppressionRules", summary: "Create or update a suppression rule: ingested alerts whose fields all match are stored Dismissed until it expires.", token: tokenUser, arm: true, h: s.putSuppression,
			body: "SuppressionRule", example: suppressionExample, ok: 200, alsoOK: []int{201}, resp: "SuppressionRule", errCodes: rw},
		{method: "GET", path: sec + "/alertsSuppressionRules/{rule}", op: "AlertsSuppressionRules_Get", tag: "SuppressionRules", summary: "Get a suppression rule.", token: tokenUser, arm: true, h: s.getSuppression, ok: 200, resp: "SuppressionRule", errCodes: append(ro, 404)},
		{method: "DELETE", path: sec + "/alertsSuppressionRules/{rule}", op: "AlertsSuppressionRules_Delete", tag: "SuppressionRules", summary: "Delete a suppression rule (204 when it did not exist).", token: tokenUser, arm: true, h: s.deleteSuppression, ok: 200, alsoOK: []int{204}, errCodes: ro},
		{method: "POST", path: sec + "/alertsSuppressionRules/{rule}/preview", op: "AlertsSuppressionRules_Preview", tag: "SuppressionRules", summary: "Count the existing alerts a rule (sent in the body, not stored) would match.", token: tokenUser, arm: true, h: s.previewSuppression,
			body: "SuppressionRule", example: suppressionExample, ok: 200, resp: "SuppressionPreview", errCodes: rw},

		{method: "GET", path: sec + "/recommendations", op: "Recommendations_List", tag: "Recommendations", summary: "Recommendations computed from the inventory: plan off, clusters without sensor, offline clusters, failed extensions, sensors without eBPF.", token: tokenUser, arm: true, h: s.listRecommendations, ok: 200, resp: "RecommendationList", errCodes: ro},

		{method: "POST", path: tokensPath, op: "Tokens_Create", tag: "Tokens", summary: "Create a token (Owner at a scope covering it). The secret is in properties.token, returned only here.", token: tokenUser, arm: true, h: s.createToken,
			body: "TokenCreate", example: map[string]any{"name": "ci-reader", "role": "Reader", "scope": "/subscriptions/" + exSub}, ok: 201, resp: "Token", errCodes: append(rw, 404)},
		{method: "GET", path: tokensPath, op: "Tokens_List", tag: "Tokens", summary: "List the tokens within the caller's Owner scope (never their secrets).", token: tokenUser, arm: true, h: s.listTokens, ok: 200, resp: "TokenList", errCodes: ro},
		{method: "DELETE", path: tokensPath + "/{tokenId}", op: "Tokens_Revoke", tag: "Tokens", summary: "Revoke a token; it is refused from then on and stays listed as Revoked.", token: tokenUser, arm: true, h: s.revokeToken, ok: 200, resp: "Token", errCodes: append(ro, 404)},

		{method: "GET", path: outputsPath, op: "Outputs_List", tag: "Outputs", summary: "List alert outputs (Owner at /).", token: tokenUser, arm: true, h: s.listOutputs, ok: 200, resp: "OutputList", errCodes: ro},
		{method: "PUT", path: outputsPath + "/{output}", op: "Outputs_CreateOrUpdate", tag: "Outputs", summary: "Create or update an alert output: webhook (json or falco format) or syslog (RFC 5424).", token: tokenUser, arm: true, h: s.putOutput,
			body: "Output", example: map[string]any{"properties": map[string]any{"type": "webhook", "minSeverity": "Medium", "config": map[string]string{"url": "https://falcosidekick.example:2801/", "format": "falco"}}}, ok: 200, alsoOK: []int{201}, resp: "Output", errCodes: rw},
		{method: "GET", path: outputsPath + "/{output}", op: "Outputs_Get", tag: "Outputs", summary: "Get an alert output.", token: tokenUser, arm: true, h: s.getOutput, ok: 200, resp: "Output", errCodes: append(ro, 404)},
		{method: "DELETE", path: outputsPath + "/{output}", op: "Outputs_Delete", tag: "Outputs", summary: "Delete an alert output (204 when it did not exist).", token: tokenUser, arm: true, h: s.deleteOutput, ok: 200, alsoOK: []int{204}, errCodes: ro},

		{method: "POST", path: "/ingest/v1/alerts", op: "Ingest_Alerts", tag: "Ingest", summary: "A sensor's batch of alerts (≤ 1000 alerts, ≤ 8 MiB, gzip accepted). 200 only after commit; replays are idempotent. 5xx: retry; 429 (the cluster's ingest rate): retry after Retry-After; other 4xx but 408: permanent.", token: tokenSensor, h: s.ingestAlerts,
			body: "IngestBatch", example: ingestExample, ok: 200, resp: "IngestResult", errCodes: []int{400, 401, 403, 404, 413, 415, 429, 503}},
		{method: "POST", path: "/ingest/v1/health", op: "Ingest_Health", tag: "Ingest", summary: "A sensor's health report (one per node; the latest is kept).", token: tokenSensor, h: s.ingestHealth,
			body: "HealthReport", example: map[string]any{"clusterId": exClusterID, "node": "node-1", "sourceMode": "ebpf", "drops": 0, "outboxDropped": 0, "ruleSetVersion": "43", "sensorVersion": "0.1.0"}, ok: 204, errCodes: []int{400, 401, 403, 404, 413, 415, 429}},
		{method: "POST", path: "/ingest/v1/heartbeat", op: "Ingest_Heartbeat", tag: "Ingest", summary: "An agent's (or standalone sensor's) heartbeat: sets the cluster Connected.", token: tokenNode, h: s.heartbeat,
			body: "Heartbeat", example: map[string]any{"clusterId": exClusterID, "agentVersion": "0.1.0", "kubernetesVersion": "v1.31.2", "nodeCount": 3}, ok: 204, errCodes: []int{400, 401, 403, 404, 413, 415}},
		{method: "POST", path: "/ingest/v1/renewToken", op: "Ingest_RenewToken", tag: "Ingest", summary: "An agent renews its credential: a new agent token for its cluster (90 days); the one used keeps working for an hour.", token: tokenAgent, h: s.renewToken,
			ok: 201, resp: "RenewedToken", errCodes: []int{401, 403}},
		{method: "POST", path: "/ingest/v1/extensionStatus", op: "Ingest_ExtensionStatus", tag: "Ingest", summary: "An agent reports what it applied for an extension generation.", token: tokenAgent, h: s.reportExtensionStatus,
			body: "ExtensionStatusReport", example: map[string]any{"clusterId": exClusterID, "name": "vigil-sensor", "generation": 1, "provisioningState": "Succeeded",
				"statuses": []map[string]any{{"code": "Applied", "level": "Information", "message": "DaemonSet vigil-sensor ready on 3/3 nodes", "time": "2026-11-01T12:00:00Z"}}}, ok: 204, errCodes: []int{400, 401, 403, 404, 409, 413, 415}},
	}
}

var suppressionExample = map[string]any{"properties": map[string]any{
	"match":  map[string]string{"alertType": "vigil.node/TestAlert", "entities.namespace": "ci"},
	"reason": "the CI namespace runs the test alert on purpose", "expires": "2099-01-01T00:00:00Z"}}

var ingestExample = map[string]any{
	"cluster": exClusterID, "node": "node-1", "batchId": "3f1e4c1a-8d0b-4c55-9a3e-0d7e2b1f6a10",
	"alerts": []map[string]any{{
		"id": "0123456789abcdef0123456789abcdef", "alertType": "vigil.node/TestAlert", "displayName": "Test alert", "description": "The harmless test alert was triggered.",
		"severity": "Low", "status": "Active", "startTime": "2026-11-01T12:00:00Z", "endTime": "2026-11-01T12:00:05Z", "count": 2,
		"entities": map[string]any{"node": "node-1", "namespace": "ci", "process": map[string]any{"path": "/bin/sh", "commandLine": "sh -c echo VIGIL-TEST-ALERT-7f3b", "uid": 0}},
	}},
}

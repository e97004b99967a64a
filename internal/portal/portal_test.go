package portal

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/store"
)

func TestEveryPortalResponseCarriesTheStrictSecurityHeaders(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	b.signIn(e.owner)
	e.ingest(testAlert("a1", alert.SeverityHigh, "Digital currency mining", time.Now()))
	for _, path := range []string{"/portal/signin", "/portal/alerts", "/portal/alerts/a1", "/portal/clusters", "/portal/settings",
		"/portal/static/portal.css", "/portal/no-such-page", "/portal/alerts/does-not-exist"} {
		t.Run(path, func(t *testing.T) {
			pg := b.get(path)
			for h, want := range map[string]string{
				"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
				"X-Content-Type-Options":  "nosniff",
				"Referrer-Policy":         "same-origin",
			} {
				if got := pg.hdr.Get(h); got != want {
					t.Errorf("%s: %s = %q, want %q", path, h, got, want)
				}
			}
			if strings.Contains(pg.body, "<script>") || strings.Contains(pg.body, " style=") || strings.Contains(pg.body, "onclick") {
				t.Errorf("%s has inline script or style, which the CSP blocks", path)
			}
		})
	}
}

func TestStaticAssetsAreServedFromThePortalWithLongCachingWhenVersioned(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	pg := b.get("/portal/signin")
	ref := regexp1(`href="(/portal/static/portal\.css\?v=[0-9a-f]+)"`, pg.body)
	if ref == "" {
		t.Fatalf("sign-in page links no versioned stylesheet:\n%s", pg.body)
	}
	css := b.get(ref)
	if css.code != http.StatusOK || !strings.HasPrefix(css.hdr.Get("Content-Type"), "text/css") {
		t.Fatalf("stylesheet: %d %s", css.code, css.hdr.Get("Content-Type"))
	}
	if cc := css.hdr.Get("Cache-Control"); !strings.Contains(cc, "max-age=31536000") || !strings.Contains(cc, "immutable") {
		t.Errorf("versioned asset Cache-Control = %q, want a year, immutable", cc)
	}
	if cc := b.get("/portal/static/portal.css").hdr.Get("Cache-Control"); strings.Contains(cc, "immutable") {
		t.Errorf("unversioned asset must not be cached as immutable: %q", cc)
	}
	if b.get("/portal/static/nope.js").code != http.StatusNotFound {
		t.Error("an unknown asset is not a 404")
	}
}

func TestTheHubRootRedirectsToThePortalAndPagesNeedASignIn(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	if pg := b.get("/"); pg.code != http.StatusFound || pg.loc != "/portal/" {
		t.Fatalf("GET / = %d %q, want 302 to /portal/", pg.code, pg.loc)
	}
	for _, path := range []string{"/portal/alerts", "/portal/clusters", "/portal/settings", "/portal/recommendations"} {
		pg := b.get(path)
		if pg.code != http.StatusSeeOther || !strings.HasPrefix(pg.loc, "/portal/signin?next=") {
			t.Errorf("GET %s without a session = %d %q, want a redirect to sign-in", path, pg.code, pg.loc)
		}
	}
	if pg := b.get("/portal/events"); pg.code != http.StatusUnauthorized {
		t.Errorf("events without a session = %d, want 401", pg.code)
	}
	// The API is unaffected by the portal's routes.
	if pg := b.get("/healthz"); pg.code != http.StatusOK {
		t.Errorf("/healthz = %d", pg.code)
	}
}

func TestSigningInSetsAStrictHttpOnlySecureCookieThatDoesNotCarryTheToken(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	pg := b.get("/portal/signin")
	got := b.post("/portal/signin", url.Values{"token": {e.owner}, "csrf": {csrfOf(t, pg.body)}})
	if got.code != http.StatusSeeOther {
		t.Fatalf("sign-in = %d:\n%s", got.code, got.body)
	}
	var session *http.Cookie
	for _, c := range (&http.Response{Header: got.hdr}).Cookies() {
		if c.Name == sessionCookie {
			session = c
		}
	}
	if session == nil {
		t.Fatalf("no session cookie set: %v", got.hdr["Set-Cookie"])
	}
	if !session.HttpOnly || !session.Secure || session.SameSite != http.SameSiteStrictMode || session.Path != "/portal" || session.MaxAge <= 0 {
		t.Errorf("session cookie = %+v, want HttpOnly, Secure (TLS), SameSite=Strict, Path=/portal, expiring", session)
	}
	if strings.Contains(session.Value, e.owner) || strings.Contains(session.Value, auth.SecretPrefix) || len(session.Value) < 40 {
		t.Errorf("session cookie value %q is not an opaque random id", session.Value)
	}
	if pg := b.get("/portal/alerts"); pg.code != http.StatusOK || !strings.Contains(pg.body, "bootstrap") {
		t.Errorf("alerts page after sign-in = %d", pg.code)
	}
}

func TestSignInRefusesTokensThatCannotUseThePortal(t *testing.T) {
	e := newEnv(t, false)
	revoked := e.userToken("gone", "Reader", "/")
	var list struct {
		Value []struct {
			Name       string `json:"name"`
			Properties struct {
				DisplayName string `json:"displayName"`
			} `json:"properties"`
		} `json:"value"`
	}
	_ = json.Unmarshal(e.apiJSON(e.owner, http.MethodGet, "/providers/Vigil.Hub/tokens", nil, http.StatusOK), &list)
	for _, x := range list.Value {
		if x.Properties.DisplayName == "gone" {
			e.apiJSON(e.owner, http.MethodDelete, "/providers/Vigil.Hub/tokens/"+x.Name, nil, http.StatusOK)
		}
	}
	unknown, _ := auth.GenerateSecret()
	for _, tc := range []struct {
		name, token, says string
		code              int
	}{
		{"malformed", "hello", "malformed", http.StatusUnauthorized},
		{"unknown", unknown, "not known", http.StatusUnauthorized},
		{"revoked", revoked, "revoked", http.StatusUnauthorized},
		{"sensor", e.sensor, "user token", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := e.browser()
			pg := b.get("/portal/signin")
			got := b.post("/portal/signin", url.Values{"token": {tc.token}, "csrf": {csrfOf(t, pg.body)}})
			if got.code != tc.code || !strings.Contains(got.body, tc.says) {
				t.Errorf("sign-in with a %s token = %d, want %d with a message saying %q:\n%s", tc.name, got.code, tc.code, tc.says, got.body)
			}
			if b.get("/portal/alerts").code != http.StatusSeeOther {
				t.Error("refused sign-in still opened a session")
			}
		})
	}
}

func TestSignInWithoutTheFormsTokenOrFromAnotherSiteIsRefused(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	pg := b.get("/portal/signin")
	if got := b.post("/portal/signin", url.Values{"token": {e.owner}}); got.code != http.StatusForbidden {
		t.Errorf("sign-in without the form's CSRF token = %d, want 403", got.code)
	}
	pg = b.get("/portal/signin")
	if got := b.postFrom("/portal/signin", url.Values{"token": {e.owner}, "csrf": {csrfOf(t, pg.body)}}, "https://evil.example"); got.code != http.StatusForbidden {
		t.Errorf("sign-in from another origin = %d, want 403", got.code)
	}
}

func alertStatus(t *testing.T, e *env, id string) store.Alert {
	t.Helper()
	a, err := e.st.GetAlert(context.Background(), id)
	if err != nil {
		t.Fatalf("get alert %s: %v", id, err)
	}
	return a
}

func TestChangesWithoutTheSessionsCSRFTokenOrFromAnotherOriginAreRefused(t *testing.T) {
	e := newEnv(t, false)
	e.ingest(testAlert("a1", alert.SeverityHigh, "Digital currency mining", time.Now()))
	b := e.browser()
	csrf := b.signIn(e.owner)
	other := e.browser()
	otherCSRF := other.signIn(e.owner)
	for _, tc := range []struct {
		name   string
		form   url.Values
		origin string
	}{
		{"no token", url.Values{"status": {"Dismissed"}}, e.ts.URL},
		{"wrong token", url.Values{"status": {"Dismissed"}, "csrf": {"x" + csrf[1:]}}, e.ts.URL},
		{"another session's token", url.Values{"status": {"Dismissed"}, "csrf": {otherCSRF}}, e.ts.URL},
		{"another origin", url.Values{"status": {"Dismissed"}, "csrf": {csrf}}, "https://evil.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := b.postFrom("/portal/alerts/a1/status", tc.form, tc.origin)
			if got.code != http.StatusForbidden {
				t.Errorf("status %d, want 403", got.code)
			}
			if a := alertStatus(t, e, "a1"); a.Status != alert.StatusActive {
				t.Errorf("the refused request changed the alert to %s", a.Status)
			}
		})
	}
	// The same form with the right token and origin works.
	if got := b.post("/portal/alerts/a1/status", url.Values{"status": {"Dismissed"}, "csrf": {csrf}}); got.code != http.StatusSeeOther {
		t.Fatalf("dismiss = %d:\n%s", got.code, got.body)
	}
	a := alertStatus(t, e, "a1")
	if a.Status != alert.StatusDismissed || a.StatusChangedBy != "token/bootstrap" || a.StatusChangedAt.IsZero() {
		t.Errorf("after dismiss: status %s by %q at %v; want Dismissed by token/bootstrap with a time", a.Status, a.StatusChangedBy, a.StatusChangedAt)
	}
	if pg := b.get("/portal/alerts/a1"); !strings.Contains(pg.body, "Alert set to Dismissed") || !strings.Contains(pg.body, "set by token/bootstrap") {
		t.Errorf("alert page does not confirm the change:\n%s", pg.body)
	}
}

func TestAReaderSeesNoActionButtonsAndTheServerRefusesItsChanges(t *testing.T) {
	e := newEnv(t, false)
	e.ingest(testAlert("a1", alert.SeverityHigh, "Digital currency mining", time.Now()))
	b := e.browser()
	csrf := b.signIn(e.userToken("analyst", "Reader", "/subscriptions/default"))
	pg := b.get("/portal/alerts/a1")
	if pg.code != http.StatusOK || !strings.Contains(pg.body, "/tmp/.x/pause") {
		t.Fatalf("a Reader cannot read the alert: %d", pg.code)
	}
	for _, button := range []string{`id="dismiss"`, `id="resolve"`, `id="suppress-similar"`} {
		if strings.Contains(pg.body, button) {
			t.Errorf("a Reader sees the %s button", button)
		}
	}
	if rec := b.get("/portal/recommendations"); strings.Contains(rec.body, `class="primary fix"`) {
		t.Error("a Reader sees a Fix button")
	}
	if set := b.get("/portal/settings"); strings.Contains(set.body, `id="token-form"`) || strings.Contains(set.body, `id="output-form"`) {
		t.Error("a Reader sees the token or output forms")
	}
	for _, tc := range []struct {
		path string
		form url.Values
	}{
		{"/portal/alerts/a1/status", url.Values{"status": {"Dismissed"}}},
		{"/portal/alerts/a1/suppress", url.Values{"op": {"create"}, "name": {"r1"}, "field": {"alertType"}}},
		{"/portal/recommendations/fix", url.Values{"fix": {"installSensor"}, "resourceId": {auth.ClusterID(e.prod)}}},
		{"/portal/plan", url.Values{"subscription": {"default"}, "enabled": {"on"}}},
		{"/portal/settings/tokens", url.Values{"name": {"mine"}, "role": {"Owner"}, "scope": {"/"}}},
		{"/portal/settings/outputs", url.Values{"name": {"o1"}, "type": {"webhook"}, "url": {"https://hook.example/"}}},
	} {
		tc.form.Set("csrf", csrf)
		if got := b.post(tc.path, tc.form); got.code != http.StatusForbidden {
			t.Errorf("Reader POST %s = %d, want 403", tc.path, got.code)
		}
	}
	ctx := context.Background()
	if a := alertStatus(t, e, "a1"); a.Status != alert.StatusActive {
		t.Errorf("alert status changed to %s", a.Status)
	}
	if xs, _ := e.st.ListSuppressions(ctx, "default"); len(xs) != 0 {
		t.Errorf("a suppression rule was created: %+v", xs)
	}
	if xs, _ := e.st.ListExtensions(ctx, e.prod); len(xs) != 0 {
		t.Errorf("an extension was created: %+v", xs)
	}
	if pl, _ := e.st.GetPlan(ctx, "default"); pl.Enabled {
		t.Error("the plan was turned on")
	}
	if os, _ := e.st.ListOutputs(ctx); len(os) != 0 {
		t.Errorf("an output was created: %+v", os)
	}
}

func TestAlertsOfClustersOutsideTheTokensScopeAreNeitherListedNorShown(t *testing.T) {
	e := newEnv(t, false)
	e.ingest(testAlert("prod-1", alert.SeverityHigh, "Digital currency mining", time.Now()))
	b := e.browser()
	b.signIn(e.userToken("dev-only", "Contributor", auth.ClusterID(e.dev)))
	if pg := b.get("/portal/alerts?range=all"); strings.Contains(pg.body, "prod-1") || strings.Contains(pg.body, "Digital currency mining") {
		t.Error("a token scoped to the dev cluster lists a prod alert")
	}
	if pg := b.get("/portal/alerts/prod-1"); pg.code != http.StatusNotFound {
		t.Errorf("prod alert page for a dev-scoped token = %d, want 404", pg.code)
	}
	if pg := b.get("/portal/alerts?cluster=" + url.QueryEscape(auth.ClusterID(e.prod))); pg.code != http.StatusForbidden {
		t.Errorf("filtering on a cluster outside the scope = %d, want 403", pg.code)
	}
	if pg := b.get("/portal/clusters"); strings.Contains(pg.body, "prod-aks") || !strings.Contains(pg.body, "dev-k3s") {
		t.Error("the cluster list is not narrowed to the token's scope")
	}
}

func TestTheAlertsPageFiltersSortsAndPages(t *testing.T) {
	e := newEnv(t, false)
	now := time.Now().UTC()
	var batch []alert.Alert
	for i := range 60 {
		sev := alert.SeverityLow
		if i%10 == 0 {
			sev = alert.SeverityHigh
		}
		a := testAlert(fmt.Sprintf("bulk-%02d", i), sev, fmt.Sprintf("Scanner run %02d", i), now.Add(-time.Duration(i)*time.Minute))
		batch = append(batch, a)
	}
	e.ingest(batch...)
	b := e.browser()
	b.signIn(e.owner)
	pg := b.get("/portal/alerts")
	if n := strings.Count(pg.body, `<tr data-id=`); n != 50 {
		t.Errorf("first page has %d rows, want 50", n)
	}
	next := regexp1(`href="([^"]+)" rel="next"`, pg.body)
	if next == "" {
		t.Fatal("no next page link")
	}
	pg2 := b.get(strings.ReplaceAll(next, "&amp;", "&"))
	if n := strings.Count(pg2.body, `<tr data-id=`); n != 10 {
		t.Errorf("second page has %d rows, want 10", n)
	}
	high := b.get("/portal/alerts?severity=High")
	if n := strings.Count(high.body, `<tr data-id=`); n != 6 || strings.Contains(high.body, `sev-low">Low`) {
		t.Errorf("severity=High lists %d rows (want 6) or shows Low alerts", n)
	}
	text := b.get("/portal/alerts?q=" + url.QueryEscape("scanner run 42"))
	if n := strings.Count(text.body, `<tr data-id=`); n != 1 || !strings.Contains(text.body, "bulk-42") {
		t.Errorf("free text search lists %d rows, want bulk-42 only", n)
	}
	bad := b.get("/portal/alerts?severity=Critical")
	if bad.code != http.StatusBadRequest || !strings.Contains(bad.body, "High, Medium, Low, Informational") {
		t.Errorf("an invalid severity = %d without saying what to use:\n%s", bad.code, bad.body)
	}
	// The chart counts every matching alert, not only the page shown.
	if !strings.Contains(pg.body, "High 6") || !strings.Contains(pg.body, "Low 54") || !strings.Contains(pg.body, "<svg class=\"chart\"") {
		t.Error("the severity chart does not count the 60 alerts by severity")
	}
}

func TestTheAlertDetailsShowTheProcessTreeAndTheAffectedResource(t *testing.T) {
	e := newEnv(t, false)
	e.ingest(testAlert("a1", alert.SeverityHigh, "Digital currency mining", time.Now()))
	b := e.browser()
	b.signIn(e.owner)
	pg := b.get("/portal/alerts/a1")
	for _, want := range []string{"/tmp/.x/pause", "pause --donate-level 1 -o pool.example:3333", "app (1000)", "/bin/sh", "/usr/bin/tini",
		"/usr/bin/python3", "registry.example/payments-api:1.4", "payments", "api-7d9f", "node-1", "203.0.113.7:3333", "Impact", "T1496",
		"Delete the pod and rotate", `href="/portal/clusters/default/rg-prod/prod-aks"`} {
		if !strings.Contains(pg.body, want) {
			t.Errorf("alert details lack %q", want)
		}
	}
	// Root first: tini contains python3 contains sh contains the alert's process.
	iTini, iPy, iSh, iPause := strings.Index(pg.body, "/usr/bin/tini"), strings.Index(pg.body, "python3 app.py"), strings.Index(pg.body, "<code class=\"exe\">/bin/sh"), strings.Index(pg.body, "<code class=\"exe\">/tmp/.x/pause")
	if !(iTini < iPy && iPy < iSh && iSh < iPause) {
		t.Errorf("process tree out of order: tini %d python %d sh %d pause %d", iTini, iPy, iSh, iPause)
	}
}

func TestTheAlertDetailsLinkTheOtherAlertsAboutThePodWithinMinutes(t *testing.T) {
	e := newEnv(t, false)
	now := time.Now()
	runtime := testAlert("a1", alert.SeverityHigh, "Digital currency mining", now)
	audit := testAlert("a2", alert.SeverityMedium, "Suspicious Kubernetes service account operation detected", now.Add(2*time.Minute))
	audit.AlertType = "vigil.cluster/K8sSelfSubjectReview"
	other := testAlert("a3", alert.SeverityLow, "Elsewhere", now)
	other.Entities.Pod = "db-0"
	e.ingest(runtime, audit, other)
	b := e.browser()
	b.signIn(e.owner)
	pg := b.get("/portal/alerts/a1")
	if !strings.Contains(pg.body, `id="related-alerts"`) || !strings.Contains(pg.body, `href="/portal/alerts/a2"`) {
		t.Fatalf("the runtime alert's page does not link the audit alert about the same pod:\n%s", pg.body)
	}
	if strings.Contains(pg.body, `href="/portal/alerts/a3"`) {
		t.Error("an alert about another pod is listed as related")
	}
}

func TestSuppressSimilarPreviewsTheMatchesAndCreatesAValidatedRule(t *testing.T) {
	e := newEnv(t, false)
	now := time.Now()
	a1 := testAlert("a1", alert.SeverityHigh, "Digital currency mining", now)
	a2 := testAlert("a2", alert.SeverityHigh, "Digital currency mining", now.Add(-time.Hour))
	a3 := testAlert("a3", alert.SeverityHigh, "Digital currency mining", now)
	a3.Entities.Namespace = "other"
	e.ingest(a1, a2, a3)
	b := e.browser()
	b.signIn(e.owner)
	pg := b.get("/portal/alerts/a1/suppress")
	if pg.code != http.StatusOK || regexp1(`id="preview-count">(\d+)<`, pg.body) != "2" {
		t.Fatalf("preview for the default fields should count 2 alerts (a1, a2):\n%s", pg.body)
	}
	csrf := csrfOf(t, pg.body)
	// Only the alert type: all three match.
	pv := b.post("/portal/alerts/a1/suppress", url.Values{"csrf": {csrf}, "op": {"preview"}, "name": {"r1"}, "field": {"alertType"}})
	if regexp1(`id="preview-count">(\d+)<`, pv.body) != "3" {
		t.Errorf("preview by alert type should count 3:\n%s", pv.body)
	}
	// An invalid name is refused by the API's validation, with its message.
	bad := b.post("/portal/alerts/a1/suppress", url.Values{"csrf": {csrf}, "op": {"create"}, "name": {"-bad name"}, "field": {"alertType"}})
	if bad.code != http.StatusBadRequest || !strings.Contains(bad.body, "is invalid: use 1-90 letters") {
		t.Errorf("an invalid rule name = %d without the API's message:\n%s", bad.code, bad.body)
	}
	got := b.post("/portal/alerts/a1/suppress", url.Values{"csrf": {csrf}, "op": {"create"}, "name": {"miner-in-payments"}, "reason": {"load test"},
		"expires": {"30d"}, "dismiss": {"on"}, "field": {"alertType", "entities.namespace"}})
	if got.code != http.StatusSeeOther {
		t.Fatalf("create rule = %d:\n%s", got.code, got.body)
	}
	rule, err := e.st.GetSuppression(context.Background(), "default", "miner-in-payments")
	if err != nil {
		t.Fatalf("rule not stored: %v", err)
	}
	if len(rule.Match) != 2 || rule.Match["entities.namespace"] != "payments" || rule.CreatedBy != "token/bootstrap" || rule.Expires.IsZero() || rule.Reason != "load test" {
		t.Errorf("stored rule = %+v", rule)
	}
	if a := alertStatus(t, e, "a1"); a.Status != alert.StatusDismissed {
		t.Errorf("a1 is %s, want Dismissed (the form asked to dismiss it)", a.Status)
	}
	// The rule applies to ingest: a new similar alert is stored Dismissed.
	e.ingest(testAlert("a4", alert.SeverityHigh, "Digital currency mining", time.Now()))
	if a := alertStatus(t, e, "a4"); a.Status != alert.StatusDismissed {
		t.Errorf("a4 is %s, want Dismissed by the new rule", a.Status)
	}
}

func TestFixOnTheInstallSensorRecommendationCreatesTheSensorExtension(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	b.signIn(e.owner)
	pg := b.get("/portal/recommendations")
	if !strings.Contains(pg.body, "Connected clusters should have the vigil sensor extension installed") || !strings.Contains(pg.body, `class="primary fix"`) {
		t.Fatalf("no install-sensor recommendation with a Fix button:\n%s", pg.body)
	}
	got := b.post("/portal/recommendations/fix", url.Values{"csrf": {csrfOf(t, pg.body)}, "fix": {"installSensor"}, "resourceId": {auth.ClusterID(e.prod)}})
	if got.code != http.StatusSeeOther {
		t.Fatalf("fix = %d:\n%s", got.code, got.body)
	}
	ext, err := e.st.GetExtension(context.Background(), e.prod, SensorExtensionName)
	if err != nil || ext.ExtensionType != "vigil.sensor" || ext.ProvisioningState != store.ProvisioningCreating {
		t.Fatalf("extension after Fix = %+v, %v; want vigil.sensor Creating", ext, err)
	}
	after := b.get("/portal/recommendations")
	if !strings.Contains(after.body, "vigil-sensor (vigil.sensor) created on cluster prod-aks") {
		t.Errorf("no confirmation after Fix:\n%s", after.body)
	}
	if strings.Count(after.body, "Connected clusters should have the vigil sensor extension installed") != 1 {
		t.Error("the fixed cluster still has its recommendation (only dev-k3s should)")
	}
}

func TestCreatingATokenShowsItsSecretOnceAndRevokingItEndsItsSessions(t *testing.T) {
	e := newEnv(t, false)
	admin := e.browser()
	csrf := admin.signIn(e.owner)
	got := admin.post("/portal/settings/tokens", url.Values{"csrf": {csrf}, "name": {"ci"}, "role": {"Reader"}, "scope": {"/subscriptions/default"}})
	if got.code != http.StatusCreated || got.hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("create token = %d (Cache-Control %q):\n%s", got.code, got.hdr.Get("Cache-Control"), got.body)
	}
	secret := regexp1(`id="secret" class="secret" readonly value="(vgl_[^"]+)"`, got.body)
	if secret == "" {
		t.Fatalf("the new token's secret is not shown:\n%s", got.body)
	}
	if strings.Contains(admin.get("/portal/settings").body, secret) {
		t.Error("the settings page shows the secret again")
	}
	user := e.browser()
	user.signIn(secret)
	var id string
	for _, tk := range mustTokens(t, e) {
		if tk.Name == "ci" {
			id = tk.ID
		}
	}
	if got := admin.post("/portal/settings/tokens/"+id+"/revoke", url.Values{"csrf": {csrf}}); got.code != http.StatusSeeOther {
		t.Fatalf("revoke = %d:\n%s", got.code, got.body)
	}
	pg := user.get("/portal/alerts")
	if pg.code != http.StatusSeeOther || !strings.Contains(pg.loc, "revoked") {
		t.Errorf("a revoked token's session still works: %d %q", pg.code, pg.loc)
	}
}

func mustTokens(t *testing.T, e *env) []store.Token {
	t.Helper()
	ts, err := e.st.ListTokens(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func TestSigningOutEndsTheSession(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	csrf := b.signIn(e.owner)
	if got := b.post("/portal/signout", url.Values{"csrf": {csrf}}); got.code != http.StatusSeeOther {
		t.Fatalf("sign out = %d", got.code)
	}
	if e.portal.sessions.count() != 0 {
		t.Error("the session is still held after sign-out")
	}
	if pg := b.get("/portal/alerts"); pg.code != http.StatusSeeOther {
		t.Errorf("alerts after sign-out = %d, want a redirect to sign-in", pg.code)
	}
}

func TestSessionsExpireAfterTheirLifetime(t *testing.T) {
	now := time.Now()
	ss := newSessions(func() time.Time { return now }, time.Hour, 10*time.Minute)
	s, err := ss.create(auth.Principal{Name: "x"}, "secret")
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		advance time.Duration
		alive   bool
	}{{9 * time.Minute, true}, {9 * time.Minute, true}, {9 * time.Minute, true}, {11 * time.Minute, false}} {
		now = now.Add(step.advance)
		if got := ss.get(s.id) != nil; got != step.alive {
			t.Fatalf("after +%s: alive %v, want %v", step.advance, got, step.alive)
		}
	}
	s2, _ := ss.create(auth.Principal{Name: "y"}, "secret")
	for range 7 {
		now = now.Add(9 * time.Minute)
		ss.get(s2.id)
	}
	if ss.get(s2.id) != nil {
		t.Error("a session used every 9 minutes outlived its 1 h lifetime")
	}
}

func TestTheEventStreamDeliversNewAlertsItMayReadAndEndsWhenTheBrowserGoes(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	b.signIn(e.userToken("prod-reader", "Reader", auth.ClusterID(e.prod)))
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.ts.URL+"/portal/events?severity=High", nil)
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	waitFor(t, "the stream to subscribe", func() bool { return e.portal.events.count() == 1 })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// Filtered out (Low), then one outside the token's scope (published
	// directly as the hub would for the dev cluster), then a match.
	e.ingest(testAlert("low-1", alert.SeverityLow, "Low thing", time.Now()))
	dev := store.Alert{Alert: testAlert("dev-1", alert.SeverityHigh, "Dev thing", time.Now()), Cluster: e.dev}
	e.portal.Publish(dev)
	e.ingest(testAlert("high-1", alert.SeverityHigh, "Digital currency mining", time.Now()))
	var data string
	deadline := time.After(5 * time.Second)
	for data == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("stream ended early")
			}
			if strings.HasPrefix(l, "data: ") {
				data = strings.TrimPrefix(l, "data: ")
			}
		case <-deadline:
			t.Fatal("no alert event within 5 s")
		}
	}
	var got liveAlert
	if err := json.Unmarshal([]byte(data), &got); err != nil || got.ID != "high-1" || got.URL != "/portal/alerts/high-1" || got.Cluster != "prod-aks" {
		t.Fatalf("first event = %s (%v), want high-1 (low-1 filtered, dev-1 out of scope)", data, err)
	}
	cancel()
	resp.Body.Close()
	waitFor(t, "the stream to unsubscribe", func() bool { return e.portal.events.count() == 0 })
	waitFor(t, "the stream's goroutines to end", func() bool { return runtime.NumGoroutine() <= before+1 })
}

func TestClosingThePortalEndsOpenEventStreams(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	b.signIn(e.owner)
	req, _ := http.NewRequest(http.MethodGet, e.ts.URL+"/portal/events", nil)
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	waitFor(t, "the stream to subscribe", func() bool { return e.portal.events.count() == 1 })
	e.portal.Close()
	done := make(chan struct{})
	go func() {
		_, _ = bufio.NewReader(resp.Body).WriteTo(discard{})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream stayed open after Close")
	}
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

func TestTheSeverityChartCountsAlertsPerBucket(t *testing.T) {
	counts := []map[string]int{{"High": 2, "Low": 1}, {}, {"Medium": 4}}
	svg := string(drawChart(counts, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), time.Hour))
	for _, want := range []string{`class="sev-high"`, `class="sev-low"`, `class="sev-medium"`, "2026-11-01 00:00: 2 High", "2026-11-01 02:00: 4 Medium", ">4</text>"} {
		if !strings.Contains(svg, want) {
			t.Errorf("chart lacks %q:\n%s", want, svg)
		}
	}
	if strings.Contains(svg, "style=") {
		t.Error("chart uses inline styles, which the CSP forbids")
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func regexp1(expr, s string) string {
	m := regexp.MustCompile(expr).FindStringSubmatch(s)
	if m == nil {
		return ""
	}
	return m[1]
}

func TestAnOwnerManagesOutputsAndThePlanWithTheAPIsValidation(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	csrf := b.signIn(e.owner)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		form url.Values
		says string // flash after the redirect
	}{
		{"a webhook without a URL", url.Values{"name": {"hook"}, "type": {"webhook"}, "minSeverity": {"Medium"}}, "is not an http(s) URL"},
		{"an unknown severity", url.Values{"name": {"hook"}, "type": {"webhook"}, "url": {"https://hook.example/"}, "minSeverity": {"Critical"}}, "minSeverity \"Critical\" is invalid"},
		{"a valid webhook", url.Values{"name": {"hook"}, "type": {"webhook"}, "url": {"https://hook.example/"}, "format": {"falco"}, "minSeverity": {"Medium"}}, "Output hook saved"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.form.Set("csrf", csrf)
			got := b.post("/portal/settings/outputs", tc.form)
			if got.code != http.StatusSeeOther {
				t.Fatalf("status %d", got.code)
			}
			if pg := b.get("/portal/settings"); !strings.Contains(pg.body, htmlEscape(tc.says)) {
				t.Errorf("settings page does not say %q:\n%s", tc.says, pg.body)
			}
		})
	}
	os, err := e.st.ListOutputs(ctx)
	if err != nil || len(os) != 1 || os[0].Config["format"] != "falco" || os[0].MinSeverity != "Medium" {
		t.Fatalf("outputs = %+v, %v; want the one valid webhook", os, err)
	}
	if got := b.post("/portal/settings/outputs/hook/delete", url.Values{"csrf": {csrf}}); got.code != http.StatusSeeOther {
		t.Fatalf("delete output = %d", got.code)
	}
	if os, _ := e.st.ListOutputs(ctx); len(os) != 0 {
		t.Errorf("output not deleted: %+v", os)
	}
	if got := b.post("/portal/plan", url.Values{"csrf": {csrf}, "subscription": {"default"}, "enabled": {"on"}, "component-runtimeDetection": {"on"}}); got.code != http.StatusSeeOther {
		t.Fatalf("plan = %d", got.code)
	}
	pl, err := e.st.GetPlan(ctx, "default")
	if err != nil || !pl.Enabled || !pl.Components["runtimeDetection"] || pl.Components["auditDetection"] || pl.UpdatedBy != "token/bootstrap" {
		t.Errorf("plan = %+v, %v; want on with runtimeDetection only, by token/bootstrap", pl, err)
	}
}

func htmlEscape(s string) string {
	return strings.NewReplacer(`"`, "&#34;", "'", "&#39;", "&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func TestTheClusterPageShowsConnectivityExtensionsAndPerNodeSensorHealth(t *testing.T) {
	e := newEnv(t, false)
	id := auth.ClusterID(e.prod)
	e.apiJSON(e.sensor, http.MethodPost, "/ingest/v1/heartbeat", map[string]any{"clusterId": id, "agentVersion": "0.3.1", "kubernetesVersion": "v1.31.2", "nodeCount": 2}, http.StatusNoContent)
	e.apiJSON(e.sensor, http.MethodPost, "/ingest/v1/health", map[string]any{"clusterId": id, "node": "node-a", "sourceMode": "ebpf", "drops": 17, "ruleSetVersion": "43", "sensorVersion": "0.3.1"}, http.StatusNoContent)
	e.apiJSON(e.sensor, http.MethodPost, "/ingest/v1/health", map[string]any{"clusterId": id, "node": "node-b", "sourceMode": "proc", "drops": 0, "ruleSetVersion": "43", "missing": []string{"connect", "open"}}, http.StatusNoContent)
	e.apiJSON(e.sensor, http.MethodPost, "/ingest/v1/health", map[string]any{"clusterId": id, "node": "node-a", "sourceMode": "audit-webhook", "drops": 4}, http.StatusNoContent)
	e.apiJSON(e.owner, http.MethodPut, id+"/providers/Vigil.KubernetesConfiguration/extensions/vigil-sensor", map[string]any{"properties": map[string]any{"extensionType": "vigil.sensor", "version": "0.3.1"}}, http.StatusCreated)
	b := e.browser()
	b.signIn(e.userToken("viewer", "Reader", "/"))
	list := b.get("/portal/clusters")
	for _, want := range []string{`pill ok">Connected`, "v1.31.2", "0.3.1", "westeurope", "env=prod-aks", `pill warn">Connecting`} {
		if !strings.Contains(list.body, want) {
			t.Errorf("cluster list lacks %q", want)
		}
	}
	pg := b.get("/portal/clusters/default/rg-prod/prod-aks")
	if pg.code != http.StatusOK {
		t.Fatalf("cluster page = %d", pg.code)
	}
	for _, want := range []string{"<td>node-a</td>", `pill ok">ebpf`, `<td class="num">17</td>`, "<td>audit</td>", `pill ok">audit-webhook`, `<td class="num">4</td>`, "<td>node-b</td>", `pill warn">proc`, "connect, open", "<td>vigil-sensor</td>", `pill warn">Creating`, "<td>43</td>"} {
		if !strings.Contains(pg.body, want) {
			t.Errorf("cluster page lacks %q", want)
		}
	}
	if pg := b.get("/portal/clusters/default/rg-prod/nope"); pg.code != http.StatusNotFound || !strings.Contains(pg.body, "cluster list") {
		t.Errorf("unknown cluster page = %d", pg.code)
	}
}

package hubclient_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/clio"
	"github.com/vigil-sec/vigil/internal/hubclient"
	"github.com/vigil-sec/vigil/internal/hubclient/hubtest"
	"github.com/vigil-sec/vigil/internal/pki"
)

func seed(t *testing.T, h *hubtest.Hub, n int) string {
	t.Helper()
	cid := h.CreateCluster("default", "rg1", "prod")
	now := time.Now().UTC().Truncate(time.Second)
	var as []alert.Alert
	for i := range n {
		as = append(as, hubtest.Alert(fmt.Sprintf("alert-%02d", i), "vigil.node/TestAlert", alert.SeverityHigh, "web", "web-0", now.Add(-time.Duration(i)*time.Minute)))
	}
	h.Ingest(cid, as...)
	return cid
}

func TestListingAlertsFollowsNextLinkPagesUntilTopIsReached(t *testing.T) {
	h := hubtest.Start(t)
	seed(t, h, 5)
	c := h.Client(h.Owner)
	ctx := context.Background()

	all, more, err := c.ListAlerts(ctx, hubclient.AlertListOptions{PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 || more {
		t.Fatalf("all pages: got %d alerts, more=%v; want 5, false", len(all), more)
	}
	seen := map[string]bool{}
	for i, a := range all {
		if seen[a.Name] {
			t.Fatalf("alert %s listed twice across pages", a.Name)
		}
		seen[a.Name] = true
		if want := fmt.Sprintf("alert-%02d", i); a.Properties.ID != want {
			t.Errorf("alert %d is %s, want %s (newest first)", i, a.Properties.ID, want)
		}
	}

	some, more, err := c.ListAlerts(ctx, hubclient.AlertListOptions{PageSize: 2, Top: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(some) != 3 || !more {
		t.Fatalf("top 3: got %d alerts, more=%v; want 3, true", len(some), more)
	}
}

func TestAlertFiltersReachTheHub(t *testing.T) {
	h := hubtest.Start(t)
	cid := seed(t, h, 2)
	now := time.Now().UTC()
	h.Ingest(cid, hubtest.Alert("low-1", "vigil.node/Other", alert.SeverityLow, "db", "db-0", now.Add(-48*time.Hour)))
	c := h.Client(h.Owner)
	ctx := context.Background()
	cases := []struct {
		name string
		opts hubclient.AlertListOptions
		want int
	}{
		{"severity", hubclient.AlertListOptions{Severity: []string{alert.SeverityLow}}, 1},
		{"namespace", hubclient.AlertListOptions{Namespace: "web"}, 2},
		{"since", hubclient.AlertListOptions{Since: now.Add(-24 * time.Hour)}, 2},
		{"cluster by name", hubclient.AlertListOptions{Cluster: "prod"}, 3},
		{"cluster by id", hubclient.AlertListOptions{Cluster: cid}, 3},
		{"another cluster", hubclient.AlertListOptions{Cluster: "staging"}, 0},
		{"another subscription", hubclient.AlertListOptions{Subscription: "other"}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			as, _, err := c.ListAlerts(ctx, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(as) != tc.want {
				t.Fatalf("got %d alerts, want %d", len(as), tc.want)
			}
		})
	}
}

func TestUpdatingAnAlertsStatusRecordsWhoChangedIt(t *testing.T) {
	h := hubtest.Start(t)
	seed(t, h, 1)
	c := h.Client(h.Owner)
	ctx := context.Background()
	a, err := c.UpdateAlertStatus(ctx, "", "alert-00", alert.StatusDismissed)
	if err != nil {
		t.Fatal(err)
	}
	if a.Properties.Status != alert.StatusDismissed || a.Properties.StatusChangedBy == "" {
		t.Fatalf("after update: status %q by %q", a.Properties.Status, a.Properties.StatusChangedBy)
	}
	got, err := c.GetAlert(ctx, "default", "alert-00")
	if err != nil {
		t.Fatal(err)
	}
	if got.Properties.Status != alert.StatusDismissed {
		t.Fatalf("get after update: status %q, want Dismissed", got.Properties.Status)
	}
}

func TestHubErrorsCarryStatusCodeAndExitCode(t *testing.T) {
	h := hubtest.Start(t)
	seed(t, h, 1)
	reader, _ := h.Token(hubclient.TokenCreate{Name: "reader", Role: "Reader", Scope: "/subscriptions/default"})
	ctx := context.Background()
	cases := []struct {
		name     string
		call     func() error
		status   int
		code     string
		exit     int
		inMsg    string
		inString string
	}{
		{"an unknown alert is not found", func() error {
			_, err := h.Client(h.Owner).GetAlert(ctx, "default", "nope")
			return err
		}, 404, "ResourceNotFound", clio.ExitNotFound, "nope", "HTTP 404"},
		{"an unknown token is unauthenticated", func() error {
			_, err := h.Client("vgl_"+strings.Repeat("A", 43)).ListClusters(ctx, "", "")
			return err
		}, 401, "AuthenticationFailed", clio.ExitUnauthorized, "not known", "AuthenticationFailed"},
		{"a reader may not change an alert", func() error {
			_, err := h.Client(reader).UpdateAlertStatus(ctx, "default", "alert-00", alert.StatusResolved)
			return err
		}, 403, "AuthorizationFailed", clio.ExitUnauthorized, "Contributor", "HTTP 403"},
		{"an unknown cluster is not found", func() error {
			_, err := h.Client(h.Owner).GetCluster(ctx, "default", "rg1", "ghost")
			return err
		}, 404, "ResourceNotFound", clio.ExitNotFound, "ghost", "ResourceNotFound"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var he *hubclient.Error
			if !errors.As(err, &he) {
				t.Fatalf("error %v (%T) is not a *hubclient.Error", err, err)
			}
			if he.StatusCode != tc.status || he.Code != tc.code {
				t.Errorf("status %d code %q, want %d %q", he.StatusCode, he.Code, tc.status, tc.code)
			}
			if !strings.Contains(he.Message, tc.inMsg) || !strings.Contains(err.Error(), tc.inString) {
				t.Errorf("error %q does not mention %q and %q", err, tc.inMsg, tc.inString)
			}
			if got := clio.ExitCode(err); got != tc.exit {
				t.Errorf("exit code %d, want %d", got, tc.exit)
			}
		})
	}
}

func TestAStoppedHubIsUnreachableAndTheErrorNamesItsURL(t *testing.T) {
	h := hubtest.Start(t)
	c := h.Client(h.Owner)
	h.Stop()
	_, err := c.ListClusters(context.Background(), "", "")
	var ue *hubclient.UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("error %v (%T) is not an *UnreachableError", err, err)
	}
	if clio.ExitCode(err) != clio.ExitUnreachable {
		t.Errorf("exit code %d, want %d", clio.ExitCode(err), clio.ExitUnreachable)
	}
	if !strings.Contains(err.Error(), h.URL) || !strings.Contains(err.Error(), "check") {
		t.Errorf("error %q does not name %s and what to check", err, h.URL)
	}
}

func TestAHubWhoseCertificateIsNotFromThePinnedCAIsRefused(t *testing.T) {
	h := hubtest.Start(t)
	other, err := pki.EnsureServer(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		caPEM string
	}{
		{"another hub's CA", string(other.CAPEM)},
		{"the system roots", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := hubclient.New(hubclient.Config{Hub: h.URL, Token: h.Owner, CAPEM: tc.caPEM})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseIdleConnections()
			err = c.CheckAccess(context.Background(), "default")
			if clio.ExitCode(err) != clio.ExitUnreachable {
				t.Fatalf("exit code %d (%v), want %d", clio.ExitCode(err), err, clio.ExitUnreachable)
			}
			if !strings.Contains(err.Error(), "--ca") {
				t.Errorf("error %q does not say to pass --ca", err)
			}
		})
	}
}

func TestTokensCanBeCreatedListedAndRevoked(t *testing.T) {
	h := hubtest.Start(t)
	ctx := context.Background()
	owner := h.Client(h.Owner)
	created, err := owner.CreateToken(ctx, hubclient.TokenCreate{Name: "ci", Role: "Reader", Scope: "/subscriptions/default"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(created.Properties.Secret, "vgl_") || created.Properties.State != "Active" {
		t.Fatalf("created token: secret %q state %q", created.Properties.Secret, created.Properties.State)
	}
	ci := h.Client(created.Properties.Secret)
	if err := ci.CheckAccess(ctx, "default"); err != nil {
		t.Fatalf("the new token is refused: %v", err)
	}
	ts, err := owner.ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, tk := range ts {
		if tk.Name == created.Name {
			found = true
			if tk.Properties.Secret != "" {
				t.Error("list returned a token's secret")
			}
		}
	}
	if !found {
		t.Fatalf("token %s not listed in %+v", created.Name, ts)
	}
	revoked, err := owner.RevokeToken(ctx, created.ID) // the full id works too
	if err != nil {
		t.Fatal(err)
	}
	if revoked.Properties.State != "Revoked" {
		t.Fatalf("state after revoke %q", revoked.Properties.State)
	}
	err = ci.CheckAccess(ctx, "default")
	if !hubclient.IsStatus(err, http.StatusUnauthorized) || clio.ExitCode(err) != clio.ExitUnauthorized {
		t.Fatalf("the revoked token: %v (exit %d), want 401 / exit %d", err, clio.ExitCode(err), clio.ExitUnauthorized)
	}
}

func TestTheConfigurationIsSavedPrivatelyAndLoadsBack(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "home", ".vigil")
	path := filepath.Join(dir, "cli.json")
	t.Setenv(hubclient.ConfigEnv, path)
	if _, err := hubclient.Load(); !errors.Is(err, hubclient.ErrNoConfig) || !strings.Contains(err.Error(), "vigil login") {
		t.Fatalf("load before login: %v, want ErrNoConfig that says to log in", err)
	}
	want := hubclient.Config{Hub: "https://127.0.0.1:8443", Token: "vgl_x", CAPEM: "-----BEGIN CERTIFICATE-----\n", Subscription: "prod"}
	if err := hubclient.Save(want); err != nil {
		t.Fatal(err)
	}
	for p, mode := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", p, fi.Mode().Perm(), mode)
		}
	}
	got, err := hubclient.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("loaded %+v, want %+v", got, want)
	}
	// Saving again replaces the file and keeps it private.
	want.Token = "vgl_y"
	if err := hubclient.SaveConfig(path, want); err != nil {
		t.Fatal(err)
	}
	if got, _ := hubclient.LoadConfig(path); got.Token != "vgl_y" {
		t.Fatalf("after second save token %q", got.Token)
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := hubclient.LoadConfig(path); err == nil || !strings.Contains(err.Error(), "vigil login") {
		t.Fatalf("corrupt configuration: %v, want an error that says to log in again", err)
	}
}

func TestHubURLsAreNormalisedAndCleartextIsOnlyAllowedOnLoopback(t *testing.T) {
	cases := []struct {
		in, want string
		ok       bool
	}{
		{"https://hub.example:8443/", "https://hub.example:8443", true},
		{"hub.example:8443", "https://hub.example:8443", true},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080", true},
		{"http://localhost:8080", "http://localhost:8080", true},
		{"http://hub.example:8080", "", false},
		{"ftp://hub.example", "", false},
		{"https://", "", false},
		{"https://hub.example/?x=1", "", false},
		{"", "", false},
	}
	for _, tc := range cases {
		got, err := hubclient.NormalizeHubURL(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("NormalizeHubURL(%q) = %q, %v; want %q ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

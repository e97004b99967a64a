package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/clio"
	"github.com/vigil-sec/vigil/internal/hubclient"
	"github.com/vigil-sec/vigil/internal/hubclient/hubtest"
)

// vigil runs the CLI in-process and returns stdout, stderr and the exit code.
func vigil(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return out.String(), errb.String(), code
}

// mustVigil runs the CLI and fails the test unless it exits 0.
func mustVigil(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := vigil(t, args...)
	if code != 0 {
		t.Fatalf("vigil %s: exit %d\nstderr: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

// expectExit runs the CLI and checks the exit code and that stderr
// mentions every one of want.
func expectExit(t *testing.T, code int, want []string, args ...string) string {
	t.Helper()
	out, errs, got := vigil(t, args...)
	if got != code {
		t.Fatalf("vigil %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), got, code, out, errs)
	}
	for _, w := range want {
		if !strings.Contains(errs, w) {
			t.Errorf("vigil %s: stderr %q does not mention %q", strings.Join(args, " "), errs, w)
		}
	}
	return errs
}

// useConfig points the CLI at a private configuration file.
func useConfig(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "home", ".vigil", "cli.json")
	t.Setenv(hubclient.ConfigEnv, p)
	return p
}

// seededHub is a hub with cluster prod in rg1 and three alerts: two High
// in namespace web, one Low on the host.
func seededHub(t *testing.T) *hubtest.Hub {
	t.Helper()
	h := hubtest.Start(t)
	cid := h.CreateCluster("default", "rg1", "prod")
	now := time.Now().UTC().Truncate(time.Second)
	host := hubtest.Alert("alert-02", "vigil.node/Other", alert.SeverityLow, "", "", now.Add(-2*time.Minute))
	h.Ingest(cid,
		hubtest.Alert("alert-00", "vigil.node/TestAlert", alert.SeverityHigh, "web", "web-0", now),
		hubtest.Alert("alert-01", "vigil.node/TestAlert", alert.SeverityHigh, "web", "web-1", now.Add(-time.Minute)),
		host)
	return h
}

// login signs the CLI in to h with token.
func login(t *testing.T, h *hubtest.Hub, token string) {
	t.Helper()
	mustVigil(t, "login", "--hub", h.URL, "--token", token, "--ca", h.CAFile)
}

func ids(t *testing.T, jsonOut string) []string {
	t.Helper()
	var list []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(jsonOut), &list); err != nil {
		t.Fatalf("output is not a JSON list: %v\n%s", err, jsonOut)
	}
	out := make([]string, 0, len(list))
	for _, x := range list {
		out = append(out, x.ID)
	}
	return out
}

func TestLoginSavesTheHubSoThatLaterCommandsNeedNoFlags(t *testing.T) {
	cfgPath := useConfig(t)
	h := seededHub(t)
	out := mustVigil(t, "login", "--hub", h.URL, "--token", h.Owner, "--ca", h.CAFile)
	if !strings.Contains(out, h.URL) || !strings.Contains(out, cfgPath) {
		t.Errorf("login output %q does not name the hub and the file", out)
	}
	fi, err := os.Stat(cfgPath)
	if err != nil {
		t.Fatalf("no configuration saved: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("configuration mode %v, want 0600", fi.Mode().Perm())
	}
	cfg, err := hubclient.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Hub != h.URL || cfg.Token != h.Owner || cfg.CAPEM != string(h.CAPEM) || cfg.Subscription != "default" {
		t.Errorf("saved %+v", cfg)
	}
	got := ids(t, mustVigil(t, "alerts", "list", "-o", "json"))
	if want := []string{"alert-00", "alert-01", "alert-02"}; !slices.Equal(got, want) {
		t.Fatalf("alerts list after login: %v, want %v", got, want)
	}
}

func TestLogoutForgetsTheSavedSignInAndIsIdempotent(t *testing.T) {
	cfgPath := useConfig(t)
	h := seededHub(t)
	login(t, h, h.Owner)
	out := mustVigil(t, "logout")
	if !strings.Contains(out, h.URL) || !strings.Contains(out, cfgPath) {
		t.Errorf("logout output %q does not name the hub and the file", out)
	}
	if _, err := os.Stat(cfgPath); !os.IsNotExist(err) {
		t.Fatalf("configuration still there after logout: %v", err)
	}
	expectExit(t, clio.ExitUnauthorized, []string{"vigil login"}, "alerts", "list")
	if out := mustVigil(t, "logout"); !strings.Contains(out, "Not logged in") {
		t.Errorf("second logout printed %q, want it to say there was nothing to do", out)
	}
	// A damaged file goes too.
	if err := os.WriteFile(cfgPath, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustVigil(t, "logout")
	if _, err := os.Stat(cfgPath); !os.IsNotExist(err) {
		t.Fatalf("damaged configuration still there after logout: %v", err)
	}
}

func TestLoginRefusesWhatTheHubRefusesAndSavesNothing(t *testing.T) {
	h := hubtest.Start(t)
	other := filepath.Join(t.TempDir(), "other-ca.crt")
	if err := os.WriteFile(other, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"an unknown token", []string{"--hub", h.URL, "--token", "vgl_" + strings.Repeat("B", 43), "--ca", h.CAFile}, clio.ExitUnauthorized, []string{"refused the token", "nothing was saved"}},
		{"a hub whose CA was not given", []string{"--hub", h.URL, "--token", h.Owner}, clio.ExitUnreachable, []string{h.URL, "--ca", "nothing was saved"}},
		{"a subscription the token may not read", nil, clio.ExitUnauthorized, []string{"--subscription", "nothing was saved"}},
		{"a CA file that is no certificate", []string{"--hub", h.URL, "--token", h.Owner, "--ca", other}, clio.ExitUsage, []string{"no PEM certificate"}},
		{"no hub", []string{"--token", h.Owner}, clio.ExitUsage, []string{"--hub is required"}},
		{"no token", []string{"--hub", h.URL}, clio.ExitUsage, []string{"--token is required"}},
		{"a cleartext hub URL", []string{"--hub", "http://hub.example:8443", "--token", h.Owner}, clio.ExitUsage, []string{"https://"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfgPath := useConfig(t)
			args := tc.args
			if args == nil {
				scoped, _ := h.Token(hubclient.TokenCreate{Name: "prod-only", Role: "Reader", Scope: "/subscriptions/prod"})
				args = []string{"--hub", h.URL, "--token", scoped, "--ca", h.CAFile}
			}
			expectExit(t, tc.code, tc.want, append([]string{"login"}, args...)...)
			if _, err := os.Stat(cfgPath); !os.IsNotExist(err) {
				t.Fatalf("a configuration was saved (%v)", err)
			}
		})
	}
}

func TestAlertsListPrintsEveryFormatAndAppliesTheQuery(t *testing.T) {
	useConfig(t)
	h := seededHub(t)
	login(t, h, h.Owner)

	table := mustVigil(t, "alerts", "list")
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 5 {
		t.Fatalf("table has %d lines, want header, rule and 3 rows:\n%s", len(lines), table)
	}
	for _, h := range []string{"Severity", "DisplayName", "Cluster", "Namespace/Pod", "Status", "Count", "EndTime", "ID"} {
		if !strings.Contains(lines[0], h) {
			t.Errorf("table header %q lacks %q", lines[0], h)
		}
	}
	for _, w := range []string{"High", "Test vigil.node/TestAlert", "prod", "web/web-0", "Active", "alert-00"} {
		if !strings.Contains(lines[2], w) {
			t.Errorf("first row %q lacks %q", lines[2], w)
		}
	}

	tsv := mustVigil(t, "alerts", "list", "-o", "tsv")
	rows := strings.Split(strings.TrimSpace(tsv), "\n")
	if len(rows) != 3 {
		t.Fatalf("tsv has %d lines, want 3 (no header):\n%s", len(rows), tsv)
	}
	if f := strings.Split(rows[0], "\t"); len(f) != 8 || f[0] != "High" || f[3] != "web/web-0" || f[7] != "alert-00" {
		t.Errorf("tsv row %q", rows[0])
	}
	if f := strings.Split(rows[2], "\t"); f[3] != "" || f[0] != "Low" {
		t.Errorf("host alert tsv row %q: want Low with an empty namespace/pod", rows[2])
	}

	var full []map[string]any
	if err := json.Unmarshal([]byte(mustVigil(t, "alerts", "list", "-o", "json")), &full); err != nil {
		t.Fatal(err)
	}
	if len(full) != 3 || full[0]["alertType"] != "vigil.node/TestAlert" || full[0]["cluster"].(map[string]any)["name"] != "prod" {
		t.Fatalf("json: %v", full)
	}

	if y := mustVigil(t, "alerts", "list", "-o", "yaml"); !strings.Contains(y, "displayName: Test vigil.node/TestAlert") {
		t.Errorf("yaml output lacks displayName:\n%s", y)
	}

	q := mustVigil(t, "alerts", "list", "--query", "[?severity=='High'].id", "-o", "tsv")
	if q != "alert-00\nalert-01\n" {
		t.Errorf("--query output %q, want the two High ids", q)
	}
	expectExit(t, clio.ExitUsage, []string{"invalid --query"}, "alerts", "list", "--query", "[?severity==")

	if got := ids(t, mustVigil(t, "alerts", "list", "--severity", "low", "-o", "json")); !slices.Equal(got, []string{"alert-02"}) {
		t.Errorf("--severity low: %v", got)
	}
	if got := ids(t, mustVigil(t, "alerts", "list", "--namespace", "web", "--cluster", "prod", "--resource-group", "rg1", "--since", "24h", "-o", "json")); len(got) != 2 {
		t.Errorf("--namespace web: %v", got)
	}
	if got := ids(t, mustVigil(t, "alerts", "list", "--subscription", "other", "-o", "json")); len(got) != 0 {
		t.Errorf("--subscription other: %v", got)
	}
	out, errs, code := vigil(t, "alerts", "list", "--top", "2", "-o", "json")
	if code != 0 || len(ids(t, out)) != 2 || !strings.Contains(errs, "--top") {
		t.Errorf("--top 2: exit %d, %v, stderr %q: want two alerts and a note that more match", code, ids(t, out), errs)
	}
}

func TestShowingAnAlertPrintsItsDetails(t *testing.T) {
	useConfig(t)
	h := seededHub(t)
	login(t, h, h.Owner)
	var a map[string]any
	if err := json.Unmarshal([]byte(mustVigil(t, "alerts", "show", "alert-01")), &a); err != nil {
		t.Fatal(err)
	}
	if a["id"] != "alert-01" || a["entities"].(map[string]any)["pod"] != "web-1" {
		t.Fatalf("show: %v", a)
	}
	table := mustVigil(t, "alerts", "show", "alert-01", "-o", "table")
	for _, w := range []string{"CommandLine", "sh -c echo VIGIL-TEST-ALERT-7f3b", "web-1", "rg1"} {
		if !strings.Contains(table, w) {
			t.Errorf("show -o table lacks %q:\n%s", w, table)
		}
	}
	expectExit(t, clio.ExitNotFound, []string{"alert 'no-such-alert' not found", "vigil alerts list"}, "alerts", "show", "no-such-alert")
}

func TestADismissedAlertIsListedUnderItsNewStatus(t *testing.T) {
	useConfig(t)
	h := seededHub(t)
	login(t, h, h.Owner)
	var a map[string]any
	if err := json.Unmarshal([]byte(mustVigil(t, "alerts", "update", "alert-01", "--status", "dismissed")), &a); err != nil {
		t.Fatal(err)
	}
	if a["status"] != "Dismissed" || a["statusChangedBy"] == "" {
		t.Fatalf("update printed %v", a)
	}
	if got := ids(t, mustVigil(t, "alerts", "list", "--status", "Dismissed", "-o", "json")); !slices.Equal(got, []string{"alert-01"}) {
		t.Fatalf("--status Dismissed: %v, want [alert-01]", got)
	}
	if got := ids(t, mustVigil(t, "alerts", "list", "--status", "Active", "-o", "json")); !slices.Equal(got, []string{"alert-00", "alert-02"}) {
		t.Fatalf("--status Active: %v", got)
	}
	expectExit(t, clio.ExitNotFound, []string{"not found"}, "alerts", "update", "no-such-alert", "--status", "Resolved")
}

func TestClustersAreListedAndShown(t *testing.T) {
	useConfig(t)
	h := seededHub(t)
	h.CreateCluster("default", "rg2", "staging")
	login(t, h, h.Owner)

	var cs []map[string]any
	if err := json.Unmarshal([]byte(mustVigil(t, "cluster", "list", "-o", "json")), &cs); err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 {
		t.Fatalf("cluster list: %v", cs)
	}
	got := ids(t, mustVigil(t, "cluster", "list", "--resource-group", "rg1", "-o", "json"))
	if want := "/subscriptions/default/resourceGroups/rg1/providers/Vigil.Kubernetes/connectedClusters/prod"; !slices.Equal(got, []string{want}) {
		t.Fatalf("cluster list --resource-group rg1: %v", got)
	}
	table := mustVigil(t, "cluster", "list")
	if !strings.Contains(table, "Connectivity") || !strings.Contains(table, "staging") || !strings.Contains(table, "Connecting") {
		t.Errorf("cluster list table:\n%s", table)
	}
	var c map[string]any
	if err := json.Unmarshal([]byte(mustVigil(t, "cluster", "show", "--name", "prod", "--resource-group", "rg1")), &c); err != nil {
		t.Fatal(err)
	}
	if c["name"] != "prod" || c["resourceGroup"] != "rg1" || c["subscription"] != "default" || c["connectivityStatus"] != "Connecting" || c["distribution"] != "kubeadm" {
		t.Fatalf("cluster show: %v", c)
	}
	if q := mustVigil(t, "cluster", "show", "-n", "prod", "-g", "rg1", "--query", "connectivityStatus", "-o", "tsv"); q != "Connecting\n" {
		t.Errorf("cluster show --query: %q", q)
	}
	expectExit(t, clio.ExitNotFound, []string{"cluster 'ghost' not found", "vigil cluster list"}, "cluster", "show", "--name", "ghost", "--resource-group", "rg1")
}

func TestARevokedTokenIsRefused(t *testing.T) {
	useConfig(t)
	h := seededHub(t)
	login(t, h, h.Owner)

	out, errs, code := vigil(t, "hub", "token", "create", "--name", "ci-reader", "--role", "reader", "--scope", "/subscriptions/default")
	if code != 0 {
		t.Fatalf("token create: exit %d: %s", code, errs)
	}
	if !strings.Contains(errs, "cannot be shown again") {
		t.Errorf("token create did not warn that the secret is shown once: %q", errs)
	}
	var tk struct{ ID, Name, Role, Token, State string }
	if err := json.Unmarshal([]byte(out), &tk); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tk.Token, "vgl_") || tk.Role != "Reader" || tk.Name != "ci-reader" || tk.State != "Active" {
		t.Fatalf("token create printed %+v", tk)
	}
	if got := ids(t, mustVigil(t, "alerts", "list", "--token", tk.Token, "-o", "json")); len(got) != 3 {
		t.Fatalf("the new Reader token lists %v", got)
	}
	list := mustVigil(t, "hub", "token", "list")
	if !strings.Contains(list, tk.ID) || !strings.Contains(list, "ci-reader") || strings.Contains(list, tk.Token) {
		t.Fatalf("token list (must show the token but never its secret):\n%s", list)
	}
	if st := mustVigil(t, "hub", "token", "revoke", tk.ID, "--query", "state", "-o", "tsv"); st != "Revoked\n" {
		t.Fatalf("token revoke printed state %q", st)
	}
	expectExit(t, clio.ExitUnauthorized, []string{"revoked"}, "alerts", "list", "--token", tk.Token)
	expectExit(t, clio.ExitNotFound, []string{"not found"}, "hub", "token", "revoke", "no-such-token")
	// The Reader (before revocation) could not have managed tokens either.
	reader, _ := h.Token(hubclient.TokenCreate{Name: "r2", Role: "Reader", Scope: "/"})
	expectExit(t, clio.ExitUnauthorized, []string{"Owner"}, "hub", "token", "list", "--token", reader)
}

func TestAnUnreachableHubExitsFiveAndNamesTheURL(t *testing.T) {
	useConfig(t)
	h := seededHub(t)
	login(t, h, h.Owner)
	h.Stop()
	for _, args := range [][]string{
		{"alerts", "list"},
		{"cluster", "list", "-o", "json"},
		{"hub", "token", "list"},
	} {
		expectExit(t, clio.ExitUnreachable, []string{"cannot reach the hub at " + h.URL, "check"}, args...)
	}
}

func TestBadInputIsAUsageErrorThatSaysWhatToDo(t *testing.T) {
	useConfig(t) // nobody logged in: usage errors come first
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"alerts", "list", "--severity", "Critical"}, "Informational, Low, Medium, High"},
		{[]string{"alerts", "list", "--status", "open"}, "Active, Resolved, Dismissed"},
		{[]string{"alerts", "list", "--since", "yesterday"}, "24h"},
		{[]string{"alerts", "list", "--top", "-1"}, "--top"},
		{[]string{"alerts", "list", "-o", "xml"}, "json, table, yaml or tsv"},
		{[]string{"alerts", "list", "--no-such-flag"}, "unknown flag"},
		{[]string{"alerts", "show"}, "the alert's ID"},
		{[]string{"alerts", "update", "alert-00"}, "--status is required"},
		{[]string{"alerts", "update", "alert-00", "--status", "Closed"}, "Active, Resolved, Dismissed"},
		{[]string{"alerts", "bogus"}, "use one of list, show, update"},
		{[]string{"cluster", "show", "--name", "prod"}, "--resource-group are required"},
		{[]string{"hub", "token", "create", "--name", "x"}, "--role and --scope are required"},
		{[]string{"hub", "token", "create", "--name", "x", "--role", "God", "--scope", "/"}, "Reader, Contributor, Owner"},
		{[]string{"hub", "token", "create", "--name", "x", "--role", "Reader", "--scope", "/foo"}, "scope"},
		{[]string{"hub", "token", "create", "--name", "x", "--kind", "sensor"}, "--cluster-id"},
		{[]string{"hub", "token", "create", "--name", "x", "--role", "Reader", "--scope", "/", "--expires", "2001-01-01"}, "in the past"},
		{[]string{"hub", "token", "revoke"}, "the token's ID"},
		{[]string{"no-such-command"}, "unknown command"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			expectExit(t, clio.ExitUsage, []string{tc.want}, tc.args...)
		})
	}
}

func TestWithoutLoginCommandsSayHowToLogIn(t *testing.T) {
	useConfig(t)
	expectExit(t, clio.ExitUnauthorized, []string{"vigil login"}, "alerts", "list")
	// A hub other than the saved one does not get the saved token.
	h := seededHub(t)
	login(t, h, h.Owner)
	expectExit(t, clio.ExitUnauthorized, []string{"no token for the hub at https://127.0.0.2:1"}, "alerts", "list", "--hub", "https://127.0.0.2:1")
	// Flags override the saved configuration.
	out := mustVigil(t, "alerts", "list", "--hub", h.URL, "--token", h.Owner, "--ca", h.CAFile, "--query", "length(@)", "-o", "tsv")
	if out != "3\n" {
		t.Fatalf("with flags: %q", out)
	}
}

func TestParseSinceAcceptsDurationsDaysTimesAndDates(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"24h", now.Add(-24 * time.Hour), true},
		{"90m", now.Add(-90 * time.Minute), true},
		{"7d", now.Add(-7 * 24 * time.Hour), true},
		{"2026-11-01T12:00:00Z", time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC), true},
		{"2026-11-01", time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), true},
		{"", time.Time{}, true},
		{"-5h", time.Time{}, false},
		{"0d", time.Time{}, false},
		{"yesterday", time.Time{}, false},
	}
	for _, tc := range cases {
		got, err := parseSince("since", tc.in, now)
		if (err == nil) != tc.ok || !got.Equal(tc.want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && clio.ExitCode(err) != clio.ExitUsage {
			t.Errorf("parseSince(%q) error has exit code %d, want %d", tc.in, clio.ExitCode(err), clio.ExitUsage)
		}
	}
}

func TestLoginReadsTheTokenFromStandardInput(t *testing.T) {
	cfgPath := useConfig(t)
	h := hubtest.Start(t)
	var out, errb bytes.Buffer
	root := newRoot(&out, &errb)
	root.SetIn(strings.NewReader(h.Owner + "\n"))
	root.SetArgs([]string{"login", "--hub", h.URL, "--token", "-", "--ca", h.CAFile})
	if err := root.ExecuteContext(t.Context()); err != nil {
		t.Fatalf("login --token -: %v", err)
	}
	cfg, err := hubclient.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Token != h.Owner {
		t.Fatalf("saved token %q, want the one from stdin", cfg.Token)
	}
}

func TestLoginWithASensorTokenIsRefused(t *testing.T) {
	cfgPath := useConfig(t)
	h := hubtest.Start(t)
	cid := h.CreateCluster("default", "rg1", "prod")
	sensor, _ := h.Token(hubclient.TokenCreate{Name: "s", Kind: "sensor", ClusterID: cid})
	expectExit(t, clio.ExitUnauthorized, []string{"sensor", "user token", "nothing was saved"}, "login", "--hub", h.URL, "--token", sensor, "--ca", h.CAFile)
	if _, err := os.Stat(cfgPath); !os.IsNotExist(err) {
		t.Fatalf("a configuration was saved (%v)", err)
	}
}

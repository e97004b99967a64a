package portal

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/store"
)

const (
	sessionCookie = "vigil_session"
	// signinCookie carries the sign-in form's CSRF token before a session
	// exists (double submit).
	signinCookie = "vigil_signin"
)

// session is one signed-in browser. It lives only in the hub's memory: the
// cookie carries the random id, never the token.
type session struct {
	id        string
	csrf      string
	principal auth.Principal
	// secret is the signed-in token, kept server-side so that every request
	// re-authenticates it (a revoked or expired token ends the session) and
	// changes go through the API handler as that token.
	secret  string
	created time.Time
	expires time.Time

	mu       sync.Mutex
	lastUsed time.Time
	flash    *flash
}

type flash struct {
	Kind    string // ok, error
	Message string
}

func (s *session) setFlash(kind, msg string) {
	s.mu.Lock()
	s.flash = &flash{Kind: kind, Message: msg}
	s.mu.Unlock()
}

func (s *session) takeFlash() *flash {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.flash
	s.flash = nil
	return f
}

// sessions maps session ids to sessions.
type sessions struct {
	now        func() time.Time
	ttl, idle  time.Duration
	mu         sync.Mutex
	byID       map[string]*session
	lastPurged time.Time
}

func newSessions(now func() time.Time, ttl, idle time.Duration) *sessions {
	return &sessions{now: now, ttl: ttl, idle: idle, byID: map[string]*session{}}
}

func randomToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate random session value: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func (ss *sessions) create(p auth.Principal, secret string) (*session, error) {
	id, err := randomToken()
	if err != nil {
		return nil, err
	}
	csrf, err := randomToken()
	if err != nil {
		return nil, err
	}
	now := ss.now()
	s := &session{id: id, csrf: csrf, principal: p, secret: secret, created: now, expires: now.Add(ss.ttl), lastUsed: now}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.purgeLocked(now)
	ss.byID[id] = s
	return s, nil
}

// get returns the live session with id, or nil.
func (ss *sessions) get(id string) *session {
	now := ss.now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if now.Sub(ss.lastPurged) > time.Minute {
		ss.purgeLocked(now)
	}
	s := ss.byID[id]
	if s == nil {
		return nil
	}
	s.mu.Lock()
	dead := !now.Before(s.expires) || now.Sub(s.lastUsed) >= ss.idle
	if !dead {
		s.lastUsed = now
	}
	s.mu.Unlock()
	if dead {
		delete(ss.byID, id)
		return nil
	}
	return s
}

func (ss *sessions) delete(id string) {
	ss.mu.Lock()
	delete(ss.byID, id)
	ss.mu.Unlock()
}

func (ss *sessions) count() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.byID)
}

func (ss *sessions) purgeLocked(now time.Time) {
	ss.lastPurged = now
	for id, s := range ss.byID {
		s.mu.Lock()
		dead := !now.Before(s.expires) || now.Sub(s.lastUsed) >= ss.idle
		s.mu.Unlock()
		if dead {
			delete(ss.byID, id)
		}
	}
}

func equalTokens(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/portal", HttpOnly: true, Secure: isTLS(r),
		SameSite: http.SameSiteStrictMode, MaxAge: maxAge})
}

// handlerWithSession is a portal handler for a signed-in session.
type handlerWithSession func(w http.ResponseWriter, r *http.Request, s *session)

// withSession resolves the session (re-authenticating its token), checks
// Origin and the CSRF token of POSTs, and sends everyone else to sign-in.
func (p *Portal) withSession(h handlerWithSession) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var s *session
		if c, err := r.Cookie(sessionCookie); err == nil {
			s = p.sessions.get(c.Value)
		}
		if s != nil {
			// The token may have been revoked or have expired since sign-in.
			// (A token's role and scope never change, so the session keeps
			// the principal it signed in with.)
			_, err := p.cfg.Authenticator.Authenticate(r.Context(), "Bearer "+s.secret)
			var ae *auth.Error
			switch {
			case errors.As(err, &ae):
				p.sessions.delete(s.id)
				s = nil
				setCookie(w, r, sessionCookie, "", -1)
				p.signinRedirect(w, r, "Your session ended: "+ae.Message)
				return
			case err != nil:
				p.log.Error("portal: re-authenticating a session failed", "err", err)
				p.errorPage(w, r, nil, http.StatusServiceUnavailable, "The hub cannot check your sign-in right now (its storage is unavailable); retry in a moment.")
				return
			}
		}
		if s == nil {
			if r.URL.Path == "/portal/events" {
				http.Error(w, "not signed in: sign in at /portal/signin", http.StatusUnauthorized)
				return
			}
			p.signinRedirect(w, r, "")
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
			if err := sameOrigin(r); err != nil {
				p.errorPage(w, r, s, http.StatusForbidden, err.Error())
				return
			}
			if !equalTokens(s.csrf, r.PostFormValue("csrf")) {
				p.errorPage(w, r, s, http.StatusForbidden, "The form's security token is missing or stale (the page was open across a sign-in, or the request did not come from the portal): reload the page and submit it again.")
				return
			}
		}
		h(w, r, s)
	}
}

func (p *Portal) signinRedirect(w http.ResponseWriter, r *http.Request, msg string) {
	target := "/portal/signin"
	q := []string{}
	if r.Method == http.MethodGet && r.URL.Path != "/portal/signin" {
		q = append(q, "next="+urlQueryEscape(r.URL.RequestURI()))
	}
	if msg != "" {
		q = append(q, "msg="+urlQueryEscape(msg))
	}
	if len(q) > 0 {
		target += "?" + strings.Join(q, "&")
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// safeNext returns next when it is a portal path, else the alerts page.
func safeNext(next string) string {
	if strings.HasPrefix(next, "/portal/") && !strings.HasPrefix(next, "//") && !strings.ContainsAny(next, "\\\r\n") &&
		!strings.HasPrefix(next, "/portal/signin") && !strings.HasPrefix(next, "/portal/events") {
		return next
	}
	return "/portal/alerts"
}

func (p *Portal) signinPage(w http.ResponseWriter, r *http.Request) {
	p.renderSignin(w, r, http.StatusOK, r.URL.Query().Get("msg"), r.URL.Query().Get("next"))
}

func (p *Portal) renderSignin(w http.ResponseWriter, r *http.Request, status int, msg, next string) {
	tok, err := randomToken()
	if err != nil {
		p.errorPage(w, r, nil, http.StatusInternalServerError, "The portal could not create a sign-in form: "+err.Error())
		return
	}
	setCookie(w, r, signinCookie, tok, 900)
	w.Header().Set("Cache-Control", "no-store")
	p.render(w, r, nil, status, "signin", "Sign in", map[string]any{"Message": msg, "Next": safeNext(next), "CSRF": tok})
}

// maxFormBytes bounds a portal form submission.
const maxFormBytes = 64 << 10

func (p *Portal) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := sameOrigin(r); err != nil {
		p.m.signins.WithLabelValues("refused").Inc()
		p.renderSignin(w, r, http.StatusForbidden, err.Error(), "")
		return
	}
	c, err := r.Cookie(signinCookie)
	if err != nil || !equalTokens(c.Value, r.PostFormValue("csrf")) {
		p.m.signins.WithLabelValues("refused").Inc()
		p.renderSignin(w, r, http.StatusForbidden, "The sign-in form expired or did not come from this portal: enter the token again.", r.PostFormValue("next"))
		return
	}
	secret := strings.TrimSpace(r.PostFormValue("token"))
	next := r.PostFormValue("next")
	pr, err := p.cfg.Authenticator.Authenticate(r.Context(), "Bearer "+secret)
	var ae *auth.Error
	switch {
	case errors.As(err, &ae):
		p.m.signins.WithLabelValues("refused").Inc()
		p.renderSignin(w, r, http.StatusUnauthorized, "Sign-in refused: "+ae.Message, next)
		return
	case err != nil:
		p.log.Error("portal sign-in: authentication failed", "err", err)
		p.renderSignin(w, r, http.StatusServiceUnavailable, "The hub cannot check tokens right now (its storage is unavailable); retry in a moment.", next)
		return
	}
	if pr.Kind != store.TokenUser {
		p.m.signins.WithLabelValues("refused").Inc()
		p.renderSignin(w, r, http.StatusForbidden, fmt.Sprintf("Token %q is a %s token, which may only send data for its cluster: sign in with a user token (Reader, Contributor or Owner).", pr.Name, pr.Kind), next)
		return
	}
	s, err := p.sessions.create(pr, secret)
	if err != nil {
		p.errorPage(w, r, nil, http.StatusInternalServerError, "The portal could not start a session: "+err.Error())
		return
	}
	p.m.signins.WithLabelValues("ok").Inc()
	p.log.Info("portal sign-in", "principal", pr.String(), "role", pr.Role.String(), "scope", pr.Scope)
	setCookie(w, r, signinCookie, "", -1)
	setCookie(w, r, sessionCookie, s.id, int(p.cfg.SessionTTL/time.Second))
	http.Redirect(w, r, safeNext(next), http.StatusSeeOther)
}

func (p *Portal) signout(w http.ResponseWriter, r *http.Request, s *session) {
	p.sessions.delete(s.id)
	setCookie(w, r, sessionCookie, "", -1)
	http.Redirect(w, r, "/portal/signin?msg="+urlQueryEscape("You are signed out."), http.StatusSeeOther)
}

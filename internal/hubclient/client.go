// Package hubclient is a typed Go client of the hub's ARM-shaped
// management API (see internal/hub), used by the CLI and by later
// components. It speaks HTTPS with a bearer token, pins the hub's CA when
// given one, turns ARM error bodies into *Error values that carry the
// HTTP status, the ARM code and the hub's message, and maps every failure
// to a CLI exit code (internal/clio): 404 not found, 401/403 unauthorized,
// no answer at all (dial, TLS, timeout) unreachable.
//
// The signed-in CLI's configuration (hub URL, token, CA) lives in
// $VIGIL_CONFIG or ~/.vigil/cli.json: see Load, Save and SaveConfig.
package hubclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/clio"
	"github.com/vigil-sec/vigil/internal/pki"
)

// APIVersion is the management API version the client sends.
const APIVersion = "2026-11-01"

// DefaultTimeout bounds one request (dial, TLS, response) unless
// WithTimeout says otherwise.
const DefaultTimeout = 30 * time.Second

// maxResponse bounds a response body the client reads.
const maxResponse = 64 << 20

// Client talks to one hub. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	hub       string // base URL as shown in messages
	token     string
	http      *http.Client
	userAgent string
}

// Option configures a Client.
type Option func(*Client)

// WithTimeout bounds each request (default DefaultTimeout).
func WithTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.http.Timeout = d
		}
	}
}

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option {
	return func(c *Client) { c.userAgent = ua }
}

// NormalizeHubURL checks a hub URL and returns it in canonical form
// (scheme https unless given, no trailing slash). Plain http is accepted
// only for loopback addresses: a bearer token never crosses a network in
// clear text.
func NormalizeHubURL(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", errors.New("the hub URL is empty: give https://HOST:PORT")
	}
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("hub URL %q is not a URL: %v; give https://HOST:PORT", raw, err)
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", fmt.Errorf("hub URL %q has no host: give https://HOST:PORT", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("hub URL %q must not carry a query, fragment or user name: give https://HOST:PORT[/PATH]", raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if ip := net.ParseIP(u.Hostname()); !(u.Hostname() == "localhost" || (ip != nil && ip.IsLoopback())) {
			return "", fmt.Errorf("hub URL %q uses plain http, which would send the token in clear text: use https://", raw)
		}
	default:
		return "", fmt.Errorf("hub URL %q has scheme %q: use https://HOST:PORT", raw, u.Scheme)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u.String(), nil
}

// New returns a client of the hub cfg names. cfg.CAPEM, when set, is the
// only CA the hub's certificate may be signed by (pki.ClientTLS);
// otherwise the system's roots are trusted. A bad URL or CA is an error
// with exit code clio.ExitUsage.
func New(cfg Config, opts ...Option) (*Client, error) {
	hub, err := NormalizeHubURL(cfg.Hub)
	if err != nil {
		return nil, clio.Exit(clio.ExitUsage, err)
	}
	base, err := url.Parse(hub)
	if err != nil {
		return nil, clio.Exit(clio.ExitUsage, fmt.Errorf("hub URL %q: %w", cfg.Hub, err))
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if strings.TrimSpace(cfg.CAPEM) != "" {
		tlsCfg, err = pki.ClientTLS([]byte(cfg.CAPEM))
		if err != nil {
			return nil, clio.Exit(clio.ExitUsage, fmt.Errorf("hub CA: %w", err))
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	tr.TLSHandshakeTimeout = 10 * time.Second
	tr.ResponseHeaderTimeout = DefaultTimeout
	c := &Client{
		base:      base,
		hub:       hub,
		token:     strings.TrimSpace(cfg.Token),
		http:      &http.Client{Transport: tr, Timeout: DefaultTimeout},
		userAgent: "vigil-hubclient",
	}
	// Never follow redirects: the token must not travel to another host,
	// and the API does not redirect.
	c.http.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Hub is the hub's base URL.
func (c *Client) Hub() string { return c.hub }

// CloseIdleConnections closes idle keep-alive connections.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// resolve turns a path (relative to the hub's base URL, starting with /)
// or an absolute URL on the hub (a nextLink) into a URL, adding the
// api-version to management paths.
func (c *Client) resolve(pathOrURL string, query url.Values) (*url.URL, error) {
	var u *url.URL
	if strings.HasPrefix(pathOrURL, "/") {
		rel, err := url.Parse(pathOrURL)
		if err != nil {
			return nil, fmt.Errorf("request path %q: %w", pathOrURL, err)
		}
		u = &url.URL{Scheme: c.base.Scheme, Host: c.base.Host, Path: c.base.Path + rel.Path, RawQuery: rel.RawQuery}
	} else {
		abs, err := url.Parse(pathOrURL)
		if err != nil {
			return nil, fmt.Errorf("link %q from the hub: %w", pathOrURL, err)
		}
		// The token goes to the hub only.
		if !strings.EqualFold(abs.Scheme, c.base.Scheme) || !strings.EqualFold(abs.Host, c.base.Host) {
			return nil, fmt.Errorf("the hub returned a link to %s://%s, not to itself (%s); not following it with the token", abs.Scheme, abs.Host, c.hub)
		}
		u = abs
	}
	q := u.Query()
	for k, vs := range query {
		for _, v := range vs {
			q.Add(k, v)
		}
	}
	if (strings.Contains(u.Path, "/subscriptions/") || strings.Contains(u.Path, "/providers/")) && q.Get("api-version") == "" {
		q.Set("api-version", APIVersion)
	}
	u.RawQuery = q.Encode()
	return u, nil
}

// Do sends a request to the hub and decodes a JSON response into out
// (when out is non-nil and the response has a body). pathOrURL is a path
// relative to the hub's base URL (e.g. "/subscriptions/default/resourceGroups")
// or an absolute URL on the hub (a nextLink). body, when non-nil, is sent
// as JSON. A status of 300 or more is an *Error; no answer at all is an
// *UnreachableError. Both come wrapped in a *clio.ExitError carrying the
// exit code they map to.
func (c *Client) Do(ctx context.Context, method, pathOrURL string, query url.Values, body, out any) error {
	u, err := c.resolve(pathOrURL, query)
	if err != nil {
		return err
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request body of %s %s: %w", method, u.Path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("build request %s %s: %w", method, u.Path, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return transportError(ctx, c.hub, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, maxResponse+1))
	if err != nil {
		return transportError(ctx, c.hub, err)
	}
	if len(data) > maxResponse {
		return fmt.Errorf("%s %s: the hub's response is larger than %d bytes: narrow the request (filters, --top)", method, u.Path, maxResponse)
	}
	if res.StatusCode >= 300 {
		e := decodeError(res, data)
		e.Method, e.URL = method, (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
		return clio.Exit(e.ExitCode(), e)
	}
	if out == nil || len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: the hub's response is not the JSON expected (%v); is %s a vigil hub of a compatible version?", method, u.Path, err, c.hub)
	}
	return nil
}

// decodeError reads an ARM error body; a body of another shape (not a
// vigil hub, a proxy's error page) becomes a message that says so.
func decodeError(res *http.Response, data []byte) *Error {
	e := &Error{StatusCode: res.StatusCode}
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &body) == nil && (body.Error.Code != "" || body.Error.Message != "") {
		e.Code, e.Message = body.Error.Code, body.Error.Message
		if e.Message == "" {
			e.Message = "the hub refused the request"
		}
		return e
	}
	snippet := strings.TrimSpace(string(data))
	if len(snippet) > 200 {
		snippet = snippet[:200] + "…"
	}
	e.Message = fmt.Sprintf("the server answered %s without a vigil error body", res.Status)
	if snippet != "" {
		e.Message += fmt.Sprintf(" (%q)", snippet)
	}
	e.Message += "; check that the URL points at a vigil hub"
	return e
}

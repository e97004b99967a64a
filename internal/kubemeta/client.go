package kubemeta

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"
)

// Client is the little of a Kubernetes API client the sensor needs: GET
// requests (lists and watches) against one API server, authenticated by a
// bearer token or a client certificate. It exists so that the sensor does
// not link client-go, whose packages cost the sensor tens of MiB of
// resident memory whatever it does with them.
type Client struct {
	// UserAgent is sent with every request (default vigil-sensor).
	UserAgent string

	host  *url.URL
	http  *http.Client
	token *tokenSource // nil: no bearer token
}

// Host is the API server's URL.
func (c *Client) Host() string { return c.host.String() }

// In-cluster service account files (every pod gets them unless
// automountServiceAccountToken is false).
const (
	serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"
)

// InClusterClient returns a client for the API server of the cluster the
// process runs in as a pod: KUBERNETES_SERVICE_HOST and _PORT, and the
// pod's service account token and CA. The token is read again whenever its
// file changes (kubelet rotates bound service account tokens).
func InClusterClient() (*Client, error) {
	return inClusterClient(os.Getenv, serviceAccountDir)
}

func inClusterClient(getenv func(string) string, dir string) (*Client, error) {
	host, port := getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, errors.New("not running in a Kubernetes pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set")
	}
	ts := &tokenSource{path: filepath.Join(dir, "token")}
	if _, err := ts.get(); err != nil {
		return nil, fmt.Errorf("the pod's service account token: %w (is automountServiceAccountToken false?)", err)
	}
	caPath := filepath.Join(dir, "ca.crt")
	ca, err := os.ReadFile(caPath)
	if err != nil {
		return nil, fmt.Errorf("the pod's service account CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("the pod's service account CA %s holds no PEM certificate", caPath)
	}
	return newClient("https://"+net.JoinHostPort(host, port), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ts)
}

func newClient(server string, tlsCfg *tls.Config, ts *tokenSource) (*Client, error) {
	u, err := url.Parse(server)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("API server %q is not an http(s) URL", server)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          2,
		ForceAttemptHTTP2:     true,
	}
	return &Client{UserAgent: "vigil-sensor", host: u, http: &http.Client{Transport: tr}, token: ts}, nil
}

// get sends GET path?query and returns the response if its status is 200.
// Any other status is an *APIError with the server's message.
func (c *Client) get(ctx context.Context, path string, query url.Values) (*http.Response, error) {
	u := *c.host
	u.Path += path
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.UserAgent)
	if c.token != nil {
		tok, err := c.token.get()
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return nil, apiError(resp.StatusCode, body)
}

// APIError is a status other than 200 from the API server.
type APIError struct {
	Code    int    // HTTP status
	Reason  string // the Status object's reason, e.g. Expired, Forbidden
	Message string
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("the API server answered %d %s", e.Code, http.StatusText(e.Code))
	if e.Message != "" {
		msg += ": " + e.Message
	}
	switch e.Code {
	case http.StatusUnauthorized:
		msg += " (the credentials were refused: check the service account token or the kubeconfig's user)"
	case http.StatusForbidden:
		msg += " (the sensor's service account needs get, list and watch on pods)"
	}
	return msg
}

// IsGone reports whether err says the resource version asked for is too
// old (410 Gone): the list must be read again.
func IsGone(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && (ae.Code == http.StatusGone || ae.Reason == "Expired" || ae.Reason == "Gone")
}

func apiError(code int, body []byte) *APIError {
	st := status{}
	if json.Unmarshal(body, &st) == nil && st.Kind == "Status" {
		if st.Code != 0 {
			code = int(st.Code)
		}
		return &APIError{Code: code, Reason: st.Reason, Message: st.Message}
	}
	return &APIError{Code: code, Message: strings.TrimSpace(string(body))}
}

// status is a metav1.Status: the API server's answer to a failed request,
// and the object of a watch's ERROR event.
type status struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
	Reason  string `json:"reason"`
	Code    int32  `json:"code"`
}

// tokenSource reads a bearer token from a file, again whenever the file
// changes (bound service account tokens are rotated by kubelet, which
// swaps the file for a new one) and at least every minute, or holds a
// fixed one (path "").
type tokenSource struct {
	path string

	mu     sync.Mutex
	token  string
	stat   fileStamp
	readAt time.Time
}

// fileStamp identifies one version of a file.
type fileStamp struct {
	ino     uint64
	size    int64
	modTime time.Time
}

const tokenMaxAge = time.Minute

func (t *tokenSource) get() (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.path == "" {
		return t.token, nil
	}
	keep := func(err error) (string, error) {
		if t.token != "" {
			return t.token, nil // a moment between kubelet's renames: keep the last token
		}
		return "", err
	}
	fi, err := os.Stat(t.path)
	if err != nil {
		return keep(fmt.Errorf("read the token: %w", err))
	}
	st := fileStamp{size: fi.Size(), modTime: fi.ModTime()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	if t.token != "" && st == t.stat && time.Since(t.readAt) < tokenMaxAge {
		return t.token, nil
	}
	b, err := os.ReadFile(t.path)
	if err != nil {
		return keep(fmt.Errorf("read the token: %w", err))
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return keep(fmt.Errorf("the token file %s is empty", t.path))
	}
	t.token, t.stat, t.readAt = tok, st, time.Now()
	return tok, nil
}

// kubeconfig is the part of a kubeconfig file the sensor understands.
type kubeconfig struct {
	CurrentContext string `json:"current-context"`
	Contexts       []struct {
		Name    string `json:"name"`
		Context struct {
			Cluster string `json:"cluster"`
			User    string `json:"user"`
		} `json:"context"`
	} `json:"contexts"`
	Clusters []struct {
		Name    string `json:"name"`
		Cluster struct {
			Server                   string `json:"server"`
			CertificateAuthority     string `json:"certificate-authority"`
			CertificateAuthorityData string `json:"certificate-authority-data"`
			InsecureSkipTLSVerify    bool   `json:"insecure-skip-tls-verify"`
			TLSServerName            string `json:"tls-server-name"`
		} `json:"cluster"`
	} `json:"clusters"`
	Users []struct {
		Name string `json:"name"`
		User struct {
			ClientCertificate     string `json:"client-certificate"`
			ClientCertificateData string `json:"client-certificate-data"`
			ClientKey             string `json:"client-key"`
			ClientKeyData         string `json:"client-key-data"`
			Token                 string `json:"token"`
			TokenFile             string `json:"tokenFile"`
			Username              string `json:"username"`
			Exec                  any    `json:"exec"`
			AuthProvider          any    `json:"auth-provider"`
		} `json:"user"`
	} `json:"users"`
}

// KubeconfigClient returns a client for the current context of the
// kubeconfig file at path: the cluster's server, CA
// (certificate-authority or -data) or insecure-skip-tls-verify, and the
// user's client certificate and key (files or -data), token or tokenFile.
// Credential plugins (exec, auth-provider) and basic auth are not
// supported: the error says so.
func KubeconfigClient(path string) (*Client, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	var kc kubeconfig
	if err := yaml.Unmarshal(b, &kc); err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return kc.client(path)
}

func (kc *kubeconfig) client(path string) (*Client, error) {
	fail := func(format string, args ...any) (*Client, error) {
		return nil, fmt.Errorf("kubeconfig %s: "+format, append([]any{path}, args...)...)
	}
	if kc.CurrentContext == "" {
		return fail("no current-context: set one with kubectl config use-context NAME")
	}
	ctxIdx := -1
	for i := range kc.Contexts {
		if kc.Contexts[i].Name == kc.CurrentContext {
			ctxIdx = i
		}
	}
	if ctxIdx < 0 {
		return fail("current-context %q is not among its contexts", kc.CurrentContext)
	}
	kctx := kc.Contexts[ctxIdx].Context
	cl := -1
	for i := range kc.Clusters {
		if kc.Clusters[i].Name == kctx.Cluster {
			cl = i
		}
	}
	if cl < 0 {
		return fail("context %q names cluster %q, which is not among its clusters", kc.CurrentContext, kctx.Cluster)
	}
	cluster := kc.Clusters[cl].Cluster
	if cluster.Server == "" {
		return fail("cluster %q has no server", kctx.Cluster)
	}
	dir := filepath.Dir(path)
	resolve := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p) // relative paths are relative to the kubeconfig
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cluster.TLSServerName, InsecureSkipVerify: cluster.InsecureSkipTLSVerify} //nolint:gosec // the kubeconfig asks for it
	ca, err := fileOrData(resolve(cluster.CertificateAuthority), cluster.CertificateAuthorityData)
	if err != nil {
		return fail("cluster %q certificate-authority: %v", kctx.Cluster, err)
	}
	if ca != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return fail("cluster %q certificate-authority holds no PEM certificate", kctx.Cluster)
		}
		tlsCfg.RootCAs = pool
	}

	var ts *tokenSource
	if kctx.User != "" {
		u := -1
		for i := range kc.Users {
			if kc.Users[i].Name == kctx.User {
				u = i
			}
		}
		if u < 0 {
			return fail("context %q names user %q, which is not among its users", kc.CurrentContext, kctx.User)
		}
		user := kc.Users[u].User
		switch {
		case user.Exec != nil:
			return fail("user %q gets its credentials from an exec plugin, which the sensor does not support: give it a token, tokenFile or client certificate (e.g. a service account's token from kubectl create token)", kctx.User)
		case user.AuthProvider != nil:
			return fail("user %q uses an auth-provider plugin, which the sensor does not support: give it a token, tokenFile or client certificate", kctx.User)
		case user.Username != "":
			return fail("user %q uses basic authentication (username/password), which the sensor does not support: give it a token, tokenFile or client certificate", kctx.User)
		}
		cert, err := fileOrData(resolve(user.ClientCertificate), user.ClientCertificateData)
		if err != nil {
			return fail("user %q client-certificate: %v", kctx.User, err)
		}
		key, err := fileOrData(resolve(user.ClientKey), user.ClientKeyData)
		if err != nil {
			return fail("user %q client-key: %v", kctx.User, err)
		}
		if (cert == nil) != (key == nil) {
			return fail("user %q has a client certificate without its key or a key without its certificate: give both", kctx.User)
		}
		if cert != nil {
			pair, err := tls.X509KeyPair(cert, key)
			if err != nil {
				return fail("user %q client certificate and key: %v", kctx.User, err)
			}
			tlsCfg.Certificates = []tls.Certificate{pair}
		}
		switch {
		case user.Token != "":
			ts = &tokenSource{token: user.Token}
		case user.TokenFile != "":
			ts = &tokenSource{path: resolve(user.TokenFile)}
			if _, err := ts.get(); err != nil {
				return fail("user %q tokenFile: %v", kctx.User, err)
			}
		}
	}
	c, err := newClient(cluster.Server, tlsCfg, ts)
	if err != nil {
		return fail("cluster %q: %v", kctx.Cluster, err)
	}
	return c, nil
}

// fileOrData returns the contents of file, else data decoded from base64,
// else nil.
func fileOrData(file, data string) ([]byte, error) {
	if data != "" {
		b, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			return nil, fmt.Errorf("the -data field is not base64: %w", err)
		}
		return b, nil
	}
	if file == "" {
		return nil, nil
	}
	return os.ReadFile(file)
}

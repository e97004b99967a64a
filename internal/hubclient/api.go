package hubclient

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/armapi"
	"github.com/vigil-sec/vigil/internal/clio"
	"github.com/vigil-sec/vigil/internal/store"
)

// Alert is an alert resource as the API returns it.
type Alert struct {
	ID         string          `json:"id"`   // ARM id: /subscriptions/{s}/providers/Vigil.Security/alerts/{alertId}
	Name       string          `json:"name"` // the alert id
	Type       string          `json:"type"`
	Properties AlertProperties `json:"properties"`
}

// AlertProperties is the stored alert; GetAlert also fills RelatedAlerts
// (other alerts about the same pod within minutes).
type AlertProperties struct {
	store.Alert
	RelatedAlerts []RelatedAlert `json:"relatedAlerts,omitempty"`
}

// RelatedAlert names a related alert.
type RelatedAlert struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	AlertType   string    `json:"alertType"`
	DisplayName string    `json:"displayName"`
	Severity    string    `json:"severity"`
	StartTime   time.Time `json:"startTime"`
	EndTime     time.Time `json:"endTime"`
}

// Cluster is a connected cluster resource as the API returns it.
type Cluster struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Location   string            `json:"location,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
	Properties ClusterProperties `json:"properties"`
}

// ClusterProperties are a connected cluster's properties.
type ClusterProperties struct {
	Distribution         string    `json:"distribution,omitempty"`
	ConnectivityStatus   string    `json:"connectivityStatus,omitempty"`
	ProvisioningState    string    `json:"provisioningState,omitempty"`
	AgentVersion         string    `json:"agentVersion,omitempty"`
	KubernetesVersion    string    `json:"kubernetesVersion,omitempty"`
	TotalNodeCount       int       `json:"totalNodeCount,omitempty"`
	LastConnectivityTime time.Time `json:"lastConnectivityTime,omitzero"`
	CreatedAt            time.Time `json:"createdAt,omitzero"`
	UpdatedAt            time.Time `json:"updatedAt,omitzero"`
}

// Token is an API token resource as the API returns it (the secret only
// from CreateToken).
type Token = armapi.TokenResource

// TokenProperties are a token's properties.
type TokenProperties = armapi.TokenProperties

// TokenCreate is the request to create a token.
type TokenCreate struct {
	Name      string    `json:"name"`
	Kind      string    `json:"kind,omitempty"`      // user (default), sensor, agent
	Role      string    `json:"role,omitempty"`      // user tokens: Reader, Contributor, Owner
	Scope     string    `json:"scope,omitempty"`     // user tokens: /, /subscriptions/s[/resourceGroups/g[/providers/Vigil.Kubernetes/connectedClusters/c]]
	ClusterID string    `json:"clusterId,omitempty"` // sensor and agent tokens
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
}

// TokensPath is the collection of API tokens.
const TokensPath = "/providers/Vigil.Hub/tokens"

// segment checks one path segment (a name or id) so that it cannot change
// the path it is put into.
func segment(what, v string) (string, error) {
	if v == "" || v == "." || v == ".." || strings.ContainsAny(v, "/?#\\") {
		return "", clio.Errorf(clio.ExitUsage, "%s %q is not a valid name: give it without '/', '?', '#' or '\\'", what, v)
	}
	return url.PathEscape(v), nil
}

func subscriptionPath(sub string) (string, error) {
	if sub == "" {
		sub = DefaultSubscription
	}
	s, err := segment("subscription", sub)
	if err != nil {
		return "", err
	}
	return "/subscriptions/" + s, nil
}

// list is an ARM list page.
type list[T any] struct {
	Value    []T    `json:"value"`
	NextLink string `json:"nextLink,omitempty"`
}

// maxPages bounds how many nextLink pages one call follows.
const maxPages = 100_000

// listAll follows nextLink pages until limit items (0: no limit) were
// collected or the last page. It reports whether more items exist.
func listAll[T any](ctx context.Context, c *Client, path string, q url.Values, limit int) ([]T, bool, error) {
	var out []T
	link := path
	seen := map[string]bool{}
	for page := 0; ; page++ {
		var l list[T]
		if err := c.Do(ctx, http.MethodGet, link, q, nil, &l); err != nil {
			return out, false, err
		}
		out = append(out, l.Value...)
		if limit > 0 && len(out) >= limit {
			more := len(out) > limit || l.NextLink != ""
			return out[:limit], more, nil
		}
		if l.NextLink == "" {
			return out, false, nil
		}
		if seen[l.NextLink] || page >= maxPages {
			return out, false, fmt.Errorf("the hub's nextLink pages do not end (%s): report this as a hub bug", l.NextLink)
		}
		seen[l.NextLink] = true
		link, q = l.NextLink, nil // the link carries the query
	}
}

// AlertListOptions filter an alert list. Zero fields do not filter.
type AlertListOptions struct {
	// Subscription to list (default DefaultSubscription).
	Subscription  string
	Severity      []string // Informational, Low, Medium, High
	Status        []string // Active, Resolved, Dismissed
	Cluster       string   // a cluster name or its ARM id
	ResourceGroup string
	Namespace     string
	AlertType     string
	Text          string    // substring of name, description, process, pod, image
	Since, Until  time.Time // on endTime (last seen)
	// OrderBy: endTime (default, newest first), startTime, severity, count.
	OrderBy string
	// Top is the most alerts to return (0: all).
	Top int
	// PageSize is how many alerts one request asks for (default 1000 or
	// Top when smaller).
	PageSize int
}

// ListAlerts lists alerts newest first, following nextLink pages until
// opts.Top alerts were collected. more reports that further alerts match.
func (c *Client) ListAlerts(ctx context.Context, opts AlertListOptions) (alerts []Alert, more bool, err error) {
	sp, err := subscriptionPath(opts.Subscription)
	if err != nil {
		return nil, false, err
	}
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("severity", strings.Join(opts.Severity, ","))
	set("status", strings.Join(opts.Status, ","))
	set("cluster", opts.Cluster)
	set("resourceGroup", opts.ResourceGroup)
	set("namespace", opts.Namespace)
	set("alertType", opts.AlertType)
	set("q", opts.Text)
	set("$orderby", opts.OrderBy)
	if !opts.Since.IsZero() {
		q.Set("since", opts.Since.UTC().Format(time.RFC3339Nano))
	}
	if !opts.Until.IsZero() {
		q.Set("until", opts.Until.UTC().Format(time.RFC3339Nano))
	}
	size := opts.PageSize
	if size <= 0 || size > 1000 {
		size = 1000
	}
	if opts.Top > 0 && opts.Top < size {
		size = opts.Top
	}
	q.Set("$top", strconv.Itoa(size))
	return listAll[Alert](ctx, c, sp+"/providers/Vigil.Security/alerts", q, opts.Top)
}

func alertPath(sub, id string) (string, error) {
	sp, err := subscriptionPath(sub)
	if err != nil {
		return "", err
	}
	s, err := segment("alert id", id)
	if err != nil {
		return "", err
	}
	return sp + "/providers/Vigil.Security/alerts/" + s, nil
}

// GetAlert gets one alert by its id (the alert's name).
func (c *Client) GetAlert(ctx context.Context, subscription, id string) (Alert, error) {
	p, err := alertPath(subscription, id)
	if err != nil {
		return Alert{}, err
	}
	var a Alert
	err = c.Do(ctx, http.MethodGet, p, nil, nil, &a)
	return a, err
}

// UpdateAlertStatus sets an alert's status (Active, Resolved, Dismissed);
// the hub records who and when.
func (c *Client) UpdateAlertStatus(ctx context.Context, subscription, id, status string) (Alert, error) {
	p, err := alertPath(subscription, id)
	if err != nil {
		return Alert{}, err
	}
	body := map[string]any{"properties": map[string]string{"status": status}}
	var a Alert
	err = c.Do(ctx, http.MethodPatch, p, nil, body, &a)
	return a, err
}

// ListClusters lists the connected clusters of a subscription, or of one
// resource group when resourceGroup is set.
func (c *Client) ListClusters(ctx context.Context, subscription, resourceGroup string) ([]Cluster, error) {
	sp, err := subscriptionPath(subscription)
	if err != nil {
		return nil, err
	}
	p := sp + "/providers/Vigil.Kubernetes/connectedClusters"
	if resourceGroup != "" {
		g, err := segment("resource group", resourceGroup)
		if err != nil {
			return nil, err
		}
		p = sp + "/resourceGroups/" + g + "/providers/Vigil.Kubernetes/connectedClusters"
	}
	cs, _, err := listAll[Cluster](ctx, c, p, nil, 0)
	return cs, err
}

// ClusterPath is the API path (the ARM id) of a connected cluster.
func ClusterPath(subscription, resourceGroup, name string) (string, error) {
	sp, err := subscriptionPath(subscription)
	if err != nil {
		return "", err
	}
	g, err := segment("resource group", resourceGroup)
	if err != nil {
		return "", err
	}
	n, err := segment("cluster name", name)
	if err != nil {
		return "", err
	}
	return sp + "/resourceGroups/" + g + "/providers/Vigil.Kubernetes/connectedClusters/" + n, nil
}

// GetCluster gets a connected cluster.
func (c *Client) GetCluster(ctx context.Context, subscription, resourceGroup, name string) (Cluster, error) {
	p, err := ClusterPath(subscription, resourceGroup, name)
	if err != nil {
		return Cluster{}, err
	}
	var cl Cluster
	err = c.Do(ctx, http.MethodGet, p, nil, nil, &cl)
	return cl, err
}

// CreateToken creates a token; the secret is in Properties.Secret and is
// never returned again.
func (c *Client) CreateToken(ctx context.Context, in TokenCreate) (Token, error) {
	var t Token
	err := c.Do(ctx, http.MethodPost, TokensPath, nil, in, &t)
	return t, err
}

// ListTokens lists the tokens within the caller's Owner scope.
func (c *Client) ListTokens(ctx context.Context) ([]Token, error) {
	ts, _, err := listAll[Token](ctx, c, TokensPath, nil, 0)
	return ts, err
}

// RevokeToken revokes a token by id (a token's name, or its full
// /providers/Vigil.Hub/tokens/{id}).
func (c *Client) RevokeToken(ctx context.Context, id string) (Token, error) {
	id = strings.TrimPrefix(id, TokensPath+"/")
	s, err := segment("token id", id)
	if err != nil {
		return Token{}, err
	}
	var t Token
	err = c.Do(ctx, http.MethodDelete, TokensPath+"/"+s, nil, nil, &t)
	return t, err
}

// CheckAccess verifies the client's token at the hub by listing the
// resource groups of subscription it may read: nil when the hub accepted
// the token, else the hub's *Error (401 unknown/revoked token, 403 no
// access to that subscription) or an *UnreachableError.
func (c *Client) CheckAccess(ctx context.Context, subscription string) error {
	sp, err := subscriptionPath(subscription)
	if err != nil {
		return err
	}
	return c.Do(ctx, http.MethodGet, sp+"/resourceGroups", nil, nil, nil)
}

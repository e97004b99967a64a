package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/clio"
	"github.com/vigil-sec/vigil/internal/hubclient"
	"github.com/vigil-sec/vigil/internal/store"
)

// tokenView is what the CLI prints for an API token: its id (what revoke
// takes), its name and properties; the secret only right after create.
type tokenView struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Kind      string    `json:"kind"`
	Role      string    `json:"role,omitempty"`
	Scope     string    `json:"scope,omitempty"`
	ClusterID string    `json:"clusterId,omitempty"`
	State     string    `json:"state"`
	CreatedBy string    `json:"createdBy,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	RevokedAt time.Time `json:"revokedAt,omitzero"`
	LastUsed  time.Time `json:"lastUsed,omitzero"`
	Token     string    `json:"token,omitempty"`
}

func toTokenView(t hubclient.Token) tokenView {
	p := t.Properties
	return tokenView{ID: t.Name, Name: p.DisplayName, Kind: p.Kind, Role: p.Role, Scope: p.Scope, ClusterID: p.ClusterID,
		State: p.State, CreatedBy: p.CreatedBy, CreatedAt: p.CreatedAt, ExpiresAt: p.ExpiresAt, RevokedAt: p.RevokedAt,
		LastUsed: p.LastUsed, Token: p.Secret}
}

var tokenColumns = []clio.Column{
	{Header: "ID", Path: "id"},
	{Header: "Name", Path: "name"},
	{Header: "Kind", Path: "kind"},
	{Header: "Role", Path: "role"},
	{Header: "Scope", Path: "scope || clusterId"},
	{Header: "State", Path: "state"},
	{Header: "CreatedAt", Path: "createdAt"},
	{Header: "LastUsed", Path: "lastUsed"},
}

var tokenShowColumns = []clio.Column{
	{Header: "ID", Path: "id"},
	{Header: "Name", Path: "name"},
	{Header: "Kind", Path: "kind"},
	{Header: "Role", Path: "role"},
	{Header: "Scope", Path: "scope || clusterId"},
	{Header: "State", Path: "state"},
	{Header: "CreatedBy", Path: "createdBy"},
	{Header: "CreatedAt", Path: "createdAt"},
	{Header: "ExpiresAt", Path: "expiresAt"},
	{Header: "RevokedAt", Path: "revokedAt"},
	{Header: "Token", Path: "token"},
}

// newHubTokenCmd is `vigil hub token`: create, list and revoke API tokens.
func newHubTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke API tokens (needs an Owner token)",
		Long: `Create, list and revoke the hub's API tokens. A user token holds a role
(Reader, Contributor, Owner) at a scope (/, /subscriptions/S,
/subscriptions/S/resourceGroups/G or a connected cluster's id); an Owner
manages the tokens within its own scope. The hub stores only a hash: the
secret is shown once, by create.`,
	}
	r := &remoteFlags{}
	r.register(cmd.PersistentFlags())
	cmd.AddCommand(newTokenCreateCmd(r), newTokenListCmd(r), newTokenRevokeCmd(r))
	groupRun(cmd)
	return cmd
}

var tokenRoles = []string{"Reader", "Contributor", "Owner"}

func newTokenCreateCmd(r *remoteFlags) *cobra.Command {
	var name, role, scope, kind, clusterID, expires string
	o := clio.Options{}
	cmd := &cobra.Command{
		Use:   "create --name N --role Reader|Contributor|Owner --scope SCOPE",
		Short: "Create a token and print its secret once",
		Example: `  vigil hub token create --name ci-reader --role Reader --scope /subscriptions/default
  vigil hub token create --name prod-sensor --kind sensor --cluster-id /subscriptions/default/resourceGroups/rg/providers/Vigil.Kubernetes/connectedClusters/prod
  vigil hub token create --name tmp --role Reader --scope / --expires 24h --query token -o tsv`,
		Args: usageArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.TrimSpace(name) == "" {
				return flagUsage("--name is required: a name that says who or what uses the token, e.g. ci-reader")
			}
			k, err := canonicalOne("kind", kind, []string{store.TokenUser, store.TokenSensor, store.TokenAgent})
			if err != nil {
				return err
			}
			in := hubclient.TokenCreate{Name: name, Kind: k}
			if k == store.TokenUser {
				if role == "" || scope == "" {
					return flagUsage("--role and --scope are required: e.g. --role Reader --scope /subscriptions/%s (scopes: /, /subscriptions/S, /subscriptions/S/resourceGroups/G or a cluster id)", hubclient.DefaultSubscription)
				}
				if clusterID != "" {
					return flagUsage("--cluster-id is for --kind sensor or agent; a user token takes --scope (which may be a cluster id)")
				}
				if in.Role, err = canonicalOne("role", role, tokenRoles); err != nil {
					return err
				}
				if err := auth.ValidScope(scope); err != nil {
					return flagUsage("--scope: %v", err)
				}
				in.Scope = scope
			} else {
				if clusterID == "" {
					return flagUsage("--kind %s needs --cluster-id: the connected cluster's id, as `vigil cluster show` prints it", k)
				}
				if role != "" || scope != "" {
					return flagUsage("--role and --scope are for user tokens; a %s token is bound to --cluster-id", k)
				}
				if _, err := auth.ParseClusterID(clusterID); err != nil {
					return flagUsage("--cluster-id: %v", err)
				}
				in.ClusterID = clusterID
			}
			if expires != "" {
				at, err := parseUntil("expires", expires, time.Now())
				if err != nil {
					return err
				}
				in.ExpiresAt = at
			}
			rm, err := r.resolve()
			if err != nil {
				return err
			}
			defer rm.client.CloseIdleConnections()
			t, err := rm.client.CreateToken(cmd.Context(), in)
			if err != nil {
				return fmt.Errorf("create token %q: %w", name, err)
			}
			if err := writeOut(cmd, toTokenView(t), o, tokenShowColumns); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "vigil: store token %q now: it cannot be shown again (the hub keeps only its hash); revoke it with `vigil hub token revoke %s`\n", name, t.Name)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&name, "name", "", "token name: who or what uses it (required)")
	fl.StringVar(&role, "role", "", "Reader, Contributor or Owner (user tokens)")
	fl.StringVar(&scope, "scope", "", "what the token may act on: /, /subscriptions/S, /subscriptions/S/resourceGroups/G or a connected cluster id (user tokens)")
	fl.StringVar(&kind, "kind", store.TokenUser, "user (a person or automation), sensor or agent (bound to one cluster)")
	fl.StringVar(&clusterID, "cluster-id", "", "the connected cluster a sensor or agent token is bound to")
	fl.StringVar(&expires, "expires", "", "expiry: a duration from now (24h, 90d) or an RFC 3339 time; default: never")
	clio.AddFlags(fl, &o)
	return cmd
}

func newTokenListCmd(r *remoteFlags) *cobra.Command {
	o := clio.Options{Output: clio.Table}
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the tokens within your Owner scope (never their secrets)",
		Example: "  vigil hub token list\n  vigil hub token list --query \"[?state=='Active'].id\" -o tsv",
		Args:    usageArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			rm, err := r.resolve()
			if err != nil {
				return err
			}
			defer rm.client.CloseIdleConnections()
			ts, err := rm.client.ListTokens(cmd.Context())
			if err != nil {
				return fmt.Errorf("list tokens: %w", err)
			}
			views := make([]tokenView, 0, len(ts))
			for _, t := range ts {
				views = append(views, toTokenView(t))
			}
			return writeOut(cmd, views, o, tokenColumns)
		},
	}
	clio.AddFlags(cmd.Flags(), &o)
	return cmd
}

func newTokenRevokeCmd(r *remoteFlags) *cobra.Command {
	o := clio.Options{}
	cmd := &cobra.Command{
		Use:     "revoke ID",
		Short:   "Revoke a token: the hub refuses it from then on",
		Example: "  vigil hub token revoke 4f0c2a9e1b7d4c83",
		Args:    usageArgs(1, "the token's ID (the id column of `vigil hub token list`)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			rm, err := r.resolve()
			if err != nil {
				return err
			}
			defer rm.client.CloseIdleConnections()
			t, err := rm.client.RevokeToken(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return writeOut(cmd, toTokenView(t), o, tokenShowColumns)
		},
	}
	clio.AddFlags(cmd.Flags(), &o)
	return cmd
}

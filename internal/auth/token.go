package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/vigil-sec/vigil/internal/store"
)

// SecretPrefix starts every vigil token.
const SecretPrefix = "vgl_"

// secretLen is len("vgl_") + base64url(32 bytes) without padding.
const secretLen = len(SecretPrefix) + 43

// GenerateSecret returns a new token secret: "vgl_" + base64url(32 random
// bytes), unpadded.
func GenerateSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate token secret: %w", err)
	}
	return SecretPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// ValidSecret checks s has the token format.
func ValidSecret(s string) error {
	if len(s) != secretLen || !strings.HasPrefix(s, SecretPrefix) {
		return fmt.Errorf("a vigil token is %q followed by 43 base64url characters (32 random bytes); generate one with `vigil hub token create` or: echo vgl_$(head -c32 /dev/urandom | basenc --base64url | tr -d =)", SecretPrefix)
	}
	if b, err := base64.RawURLEncoding.DecodeString(s[len(SecretPrefix):]); err != nil || len(b) != 32 {
		return fmt.Errorf("token after %q is not base64url of 32 bytes; generate one with `vigil hub token create`", SecretPrefix)
	}
	return nil
}

// HashSecret is what the store keeps of a secret: sha256 of the whole string.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

func newID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate token id: %w", err)
	}
	return "tok-" + hex.EncodeToString(b[:]), nil
}

// NewToken describes a token to create.
type NewToken struct {
	Name      string
	Kind      string // store.TokenUser (default), TokenSensor, TokenAgent
	Role      string // user tokens: Reader, Contributor, Owner
	Scope     string // user tokens: "/", or an ARM id prefix
	Cluster   store.ClusterRef
	ExpiresAt time.Time
	CreatedBy string
	// Secret, if set, is used instead of a generated one (bootstrap).
	Secret string
}

// Validate checks the request and normalizes Kind and Role.
func (n *NewToken) Validate() error {
	if n.Kind == "" {
		n.Kind = store.TokenUser
	}
	if n.Name == "" {
		return errors.New("token name is empty: give the token a name that says who or what uses it")
	}
	if len(n.Name) > 128 {
		return errors.New("token name is longer than 128 characters: use a shorter name")
	}
	switch n.Kind {
	case store.TokenUser:
		r, err := ParseRole(n.Role)
		if err != nil {
			return err
		}
		n.Role = r.String()
		scope, err := CanonicalScope(n.Scope)
		if err != nil {
			return err
		}
		n.Scope = scope
		if n.Cluster != (store.ClusterRef{}) {
			return errors.New("a user token has a scope, not a cluster: use --scope with the cluster id instead")
		}
	case store.TokenSensor, store.TokenAgent:
		if n.Cluster.Subscription == "" || n.Cluster.ResourceGroup == "" || n.Cluster.Name == "" {
			return fmt.Errorf("a %s token needs its cluster (subscription, resource group and name)", n.Kind)
		}
		if n.Role != "" || (n.Scope != "" && n.Scope != ClusterID(n.Cluster)) {
			return fmt.Errorf("a %s token has no role or scope of its own: it is bound to its cluster", n.Kind)
		}
		n.Scope = ""
	default:
		return fmt.Errorf("token kind %q is unknown: use user, sensor or agent", n.Kind)
	}
	if n.Secret != "" {
		if err := ValidSecret(n.Secret); err != nil {
			return err
		}
	}
	return nil
}

// CreateToken stores a new token and returns its secret (shown once; only
// its hash is kept) and the stored token.
func CreateToken(ctx context.Context, st store.Store, n NewToken, now time.Time) (string, store.Token, error) {
	if err := n.Validate(); err != nil {
		return "", store.Token{}, err
	}
	if !n.ExpiresAt.IsZero() && !n.ExpiresAt.After(now) {
		return "", store.Token{}, fmt.Errorf("expiry %s is in the past: give a future time", n.ExpiresAt.Format(time.RFC3339))
	}
	secret := n.Secret
	if secret == "" {
		var err error
		if secret, err = GenerateSecret(); err != nil {
			return "", store.Token{}, err
		}
	}
	id, err := newID()
	if err != nil {
		return "", store.Token{}, err
	}
	t := store.Token{
		ID: id, Name: n.Name, Kind: n.Kind, Hash: HashSecret(secret), Role: n.Role, Scope: n.Scope,
		Cluster: n.Cluster, CreatedBy: n.CreatedBy, CreatedAt: now.UTC(), ExpiresAt: n.ExpiresAt.UTC(),
	}
	if n.ExpiresAt.IsZero() {
		t.ExpiresAt = time.Time{}
	}
	if err := st.CreateToken(ctx, t); err != nil {
		return "", store.Token{}, fmt.Errorf("store token %q: %w", n.Name, err)
	}
	return secret, t, nil
}

// BootstrapSetting is the hub setting that records the bootstrap token's id.
const BootstrapSetting = "bootstrap"

// Bootstrap makes sure an Owner token at scope "/" exists. With given set
// (--bootstrap-token / VIGIL_BOOTSTRAP_TOKEN) that secret is registered
// unless already known; otherwise a secret is generated the first time the
// hub starts only. It returns the plaintext secret when it created a token
// (to print once) and "" when nothing was created.
func Bootstrap(ctx context.Context, st store.Store, given string, now time.Time) (string, error) {
	if given != "" {
		if err := ValidSecret(given); err != nil {
			return "", fmt.Errorf("bootstrap token: %w", err)
		}
		if _, err := st.TokenByHash(ctx, HashSecret(given)); err == nil {
			return "", nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return "", fmt.Errorf("look up bootstrap token: %w", err)
		}
	} else {
		if id, err := st.GetSetting(ctx, BootstrapSetting); err == nil && id != "" {
			return "", nil
		} else if err != nil && !errors.Is(err, store.ErrNotFound) {
			return "", fmt.Errorf("read bootstrap setting: %w", err)
		}
	}
	var secret string
	ran, err := st.RunExclusive(ctx, "bootstrap-token", func(ctx context.Context) error {
		if given == "" {
			// Another replica may have finished first.
			if id, err := st.GetSetting(ctx, BootstrapSetting); err == nil && id != "" {
				return nil
			}
		}
		s, t, err := CreateToken(ctx, st, NewToken{
			Name: "bootstrap", Kind: store.TokenUser, Role: Owner.String(), Scope: "/",
			CreatedBy: "hub", Secret: given,
		}, now)
		if err != nil {
			return err
		}
		if err := st.PutSetting(ctx, BootstrapSetting, t.ID); err != nil {
			return fmt.Errorf("record bootstrap token: %w", err)
		}
		secret = s
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("bootstrap owner token: %w", err)
	}
	if !ran {
		return "", errors.New("bootstrap owner token: another hub replica is creating it now; restart this one in a moment")
	}
	return secret, nil
}

// Authenticator resolves bearer tokens to principals.
type Authenticator struct {
	st         store.Store
	log        *slog.Logger
	now        func() time.Time
	touchEvery time.Duration

	mu      sync.Mutex
	touched map[string]time.Time
}

// NewAuthenticator returns an Authenticator over st. LastUsed of a token is
// written at most once per touchEvery (default one minute).
func NewAuthenticator(st store.Store, log *slog.Logger, now func() time.Time, touchEvery time.Duration) *Authenticator {
	if log == nil {
		log = slog.Default()
	}
	if now == nil {
		now = time.Now
	}
	if touchEvery <= 0 {
		touchEvery = time.Minute
	}
	return &Authenticator{st: st, log: log, now: now, touchEvery: touchEvery, touched: map[string]time.Time{}}
}

// Authenticate resolves the Authorization header value ("Bearer vgl_...").
// Failures are *Error with status 401, except store failures which are
// returned wrapped as they are (the caller answers 503).
func (a *Authenticator) Authenticate(ctx context.Context, header string) (Principal, error) {
	if header == "" {
		return Principal{}, unauthenticated("no credentials: send the header Authorization: Bearer <token> (log in with `vigil login --hub URL --token T`)")
	}
	scheme, secret, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return Principal{}, unauthenticated("the Authorization header must be \"Bearer <token>\"")
	}
	secret = strings.TrimSpace(secret)
	if err := ValidSecret(secret); err != nil {
		return Principal{}, unauthenticated("the bearer token is malformed: %v", err)
	}
	t, err := a.st.TokenByHash(ctx, HashSecret(secret))
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, unauthenticated("the bearer token is not known to this hub: ask an Owner for a token (`vigil hub token create`)")
	}
	if err != nil {
		return Principal{}, fmt.Errorf("look up token: %w", err)
	}
	now := a.now()
	// A revocation may be dated ahead: a renewed agent credential keeps
	// working for a grace period while the agent switches to the new one.
	if !t.RevokedAt.IsZero() && !now.Before(t.RevokedAt) {
		return Principal{}, unauthenticated("token %q was revoked at %s: ask an Owner for a new one", t.Name, t.RevokedAt.UTC().Format(time.RFC3339))
	}
	if !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt) {
		return Principal{}, unauthenticated("token %q expired at %s: ask an Owner for a new one", t.Name, t.ExpiresAt.UTC().Format(time.RFC3339))
	}
	p := Principal{TokenID: t.ID, Name: t.Name, Kind: t.Kind, Scope: t.Scope, Cluster: t.Cluster}
	if t.Kind == store.TokenUser {
		if p.Role, err = ParseRole(t.Role); err != nil {
			return Principal{}, unauthenticated("token %q has an invalid role: %v; revoke it and create a new one", t.Name, err)
		}
	}
	a.touch(ctx, t.ID, now)
	return p, nil
}

func (a *Authenticator) touch(ctx context.Context, id string, now time.Time) {
	a.mu.Lock()
	last, ok := a.touched[id]
	due := !ok || now.Sub(last) >= a.touchEvery
	if due {
		a.touched[id] = now
		if len(a.touched) > 100_000 {
			for k, v := range a.touched {
				if now.Sub(v) >= a.touchEvery {
					delete(a.touched, k)
				}
			}
		}
	}
	a.mu.Unlock()
	if !due {
		return
	}
	if err := a.st.TouchToken(ctx, id, now.UTC()); err != nil {
		a.log.Warn("record token use", "token", id, "err", err)
	}
}

// Forget drops the authenticator's memory of a token (after revocation).
func (a *Authenticator) Forget(id string) {
	a.mu.Lock()
	delete(a.touched, id)
	a.mu.Unlock()
}

// VisibleTo reports whether an Owner principal p may manage token t: t's
// scope (user tokens) or cluster (sensor/agent tokens) lies within p's
// admin scope.
func VisibleTo(p Principal, t store.Token) bool {
	target := t.Scope
	if t.Kind != store.TokenUser {
		target = ClusterID(t.Cluster)
	}
	return Authorize(p, ActionAdmin, target) == nil
}

// FindToken returns the token with id (store.ErrNotFound when none).
func FindToken(ctx context.Context, st store.Store, id string) (store.Token, error) {
	ts, err := st.ListTokens(ctx)
	if err != nil {
		return store.Token{}, fmt.Errorf("list tokens: %w", err)
	}
	for _, t := range ts {
		if t.ID == id {
			return t, nil
		}
	}
	return store.Token{}, fmt.Errorf("token %q: %w; list tokens with `vigil hub token list`", id, store.ErrNotFound)
}

// RevokeToken revokes the token with id (idempotent: a revoked token keeps
// its first revocation time) and returns it as stored now.
func RevokeToken(ctx context.Context, st store.Store, id string, now time.Time) (store.Token, error) {
	t, err := FindToken(ctx, st, id)
	if err != nil {
		return t, err
	}
	if !t.RevokedAt.IsZero() {
		return t, nil
	}
	if err := st.RevokeToken(ctx, id, now.UTC()); err != nil {
		return t, fmt.Errorf("revoke token %q: %w", id, err)
	}
	t.RevokedAt = now.UTC()
	return t, nil
}

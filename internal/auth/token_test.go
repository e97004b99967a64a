package auth

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/store/sqlite"
)

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func status(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

func TestGeneratedSecretsHaveTheDocumentedFormatAndAreStoredOnlyHashed(t *testing.T) {
	st := openStore(t)
	now := time.Now()
	secret, tok, err := CreateToken(context.Background(), st, NewToken{Name: "ci", Role: "reader", Scope: "/subscriptions/s1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidSecret(secret); err != nil || len(secret) != 47 || !strings.HasPrefix(secret, "vgl_") || strings.Contains(secret, "=") {
		t.Fatalf("secret %q: %v", secret, err)
	}
	if tok.Role != "Reader" || tok.Kind != store.TokenUser {
		t.Fatalf("token not normalized: %+v", tok)
	}
	all, err := st.ListTokens(context.Background())
	if err != nil || len(all) != 1 {
		t.Fatal(all, err)
	}
	if string(all[0].Hash) == secret || strings.Contains(string(all[0].Hash), secret[4:]) {
		t.Fatal("the store keeps the secret itself")
	}
	other, _, _ := CreateToken(context.Background(), st, NewToken{Name: "ci2", Role: "Reader", Scope: "/"}, now)
	if other == secret {
		t.Fatal("two tokens got the same secret")
	}
}

func TestAuthenticateResolvesValidTokensAndRefusesEverythingElseWith401(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	clock := now
	a := NewAuthenticator(st, nil, func() time.Time { return clock }, time.Minute)
	c1 := store.ClusterRef{Subscription: "s1", ResourceGroup: "g1", Name: "c1"}
	if _, err := st.PutCluster(ctx, store.Cluster{ClusterRef: c1, ConnectivityStatus: store.Connecting, ProvisioningState: store.ProvisioningSucceeded, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	user, _, _ := CreateToken(ctx, st, NewToken{Name: "u", Role: "Contributor", Scope: "/subscriptions/s1"}, now)
	sensor, _, err := CreateToken(ctx, st, NewToken{Name: "s", Kind: store.TokenSensor, Cluster: c1}, now)
	if err != nil {
		t.Fatal(err)
	}
	short, _, _ := CreateToken(ctx, st, NewToken{Name: "short", Role: "Reader", Scope: "/", ExpiresAt: now.Add(time.Hour)}, now)
	revoked, rt, _ := CreateToken(ctx, st, NewToken{Name: "gone", Role: "Owner", Scope: "/"}, now)
	if err := st.RevokeToken(ctx, rt.ID, now); err != nil {
		t.Fatal(err)
	}

	p, err := a.Authenticate(ctx, "Bearer "+user)
	if err != nil || p.Kind != store.TokenUser || p.Role != Contributor || p.Scope != "/subscriptions/s1" || p.String() != "token/u" {
		t.Fatalf("user principal: %+v %v", p, err)
	}
	p, err = a.Authenticate(ctx, "bearer "+sensor)
	if err != nil || p.Kind != store.TokenSensor || p.Cluster != c1 {
		t.Fatalf("sensor principal: %+v %v", p, err)
	}
	clock = now.Add(2 * time.Hour)
	for name, h := range map[string]string{
		"missing": "", "basic": "Basic dXNlcjpwYXNz", "malformed": "Bearer vgl_short", "unknown": "Bearer vgl_" + strings.Repeat("B", 43),
		"expired": "Bearer " + short, "revoked": "Bearer " + revoked,
	} {
		if _, err := a.Authenticate(ctx, h); status(err) != http.StatusUnauthorized || err.Error() == "" {
			t.Errorf("%s: %v (status %d), want 401", name, err, status(err))
		}
	}
}

func TestLastUseIsWrittenAtMostOncePerMinutePerToken(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	clock := now
	a := NewAuthenticator(st, nil, func() time.Time { return clock }, time.Minute)
	secret, _, _ := CreateToken(ctx, st, NewToken{Name: "u", Role: "Reader", Scope: "/"}, now)
	lastUsed := func() time.Time {
		got, err := st.TokenByHash(ctx, HashSecret(secret))
		if err != nil {
			t.Fatal(err)
		}
		return got.LastUsed
	}
	for i := range 100 {
		clock = now.Add(time.Duration(i) * time.Second)
		if _, err := a.Authenticate(ctx, "Bearer "+secret); err != nil {
			t.Fatal(err)
		}
		// Written at 0 s and 60 s only.
		want := now
		if i >= 60 {
			want = now.Add(time.Minute)
		}
		if got := lastUsed(); !got.Equal(want) {
			t.Fatalf("after a use at +%ds last used = %v, want %v", i, got, want)
		}
	}
}

func TestBootstrapCreatesOneOwnerTokenOnceOrRegistersTheGivenOne(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	t.Run("generated", func(t *testing.T) {
		st := openStore(t)
		secret, err := Bootstrap(ctx, st, "", now)
		if err != nil || ValidSecret(secret) != nil {
			t.Fatalf("first start: %q %v", secret, err)
		}
		again, err := Bootstrap(ctx, st, "", now)
		if err != nil || again != "" {
			t.Fatalf("second start printed a token again: %q %v", again, err)
		}
		p, err := NewAuthenticator(st, nil, nil, 0).Authenticate(ctx, "Bearer "+secret)
		if err != nil || p.Role != Owner || p.Scope != "/" {
			t.Fatalf("bootstrap principal: %+v %v", p, err)
		}
		if ts, _ := st.ListTokens(ctx); len(ts) != 1 {
			t.Fatalf("%d tokens after two starts", len(ts))
		}
	})
	t.Run("given", func(t *testing.T) {
		st := openStore(t)
		given, _ := GenerateSecret()
		secret, err := Bootstrap(ctx, st, given, now)
		if err != nil || secret != given {
			t.Fatalf("given token: %q %v", secret, err)
		}
		if s, err := Bootstrap(ctx, st, given, now); err != nil || s != "" {
			t.Fatalf("second start with the same token: %q %v", s, err)
		}
		if _, err := NewAuthenticator(st, nil, nil, 0).Authenticate(ctx, "Bearer "+given); err != nil {
			t.Fatal(err)
		}
		if _, err := Bootstrap(ctx, st, "password123", now); err == nil || !strings.Contains(err.Error(), "vgl_") {
			t.Fatalf("weak bootstrap token accepted: %v", err)
		}
	})
}

func TestTokenRequestsAreValidated(t *testing.T) {
	c := store.ClusterRef{Subscription: "s", ResourceGroup: "g", Name: "c"}
	for _, n := range []NewToken{
		{Role: "Reader", Scope: "/"},                                   // no name
		{Name: "x", Role: "Boss", Scope: "/"},                          // role
		{Name: "x", Role: "Reader", Scope: "subscriptions/s"},          // scope
		{Name: "x", Role: "Reader", Scope: "/", Cluster: c},            // user with cluster
		{Name: "x", Kind: store.TokenSensor},                           // sensor without cluster
		{Name: "x", Kind: store.TokenAgent, Cluster: c, Role: "Owner"}, // agent with role
		{Name: "x", Kind: "robot", Cluster: c},                         // kind
		{Name: "x", Role: "Reader", Scope: "/", Secret: "abc"},         // secret format
	} {
		if err := n.Validate(); err == nil {
			t.Errorf("accepted %+v", n)
		}
	}
	st := openStore(t)
	if _, _, err := CreateToken(context.Background(), st, NewToken{Name: "x", Role: "Reader", Scope: "/", ExpiresAt: time.Now().Add(-time.Hour)}, time.Now()); err == nil {
		t.Fatal("token expiring in the past accepted")
	}
}

package agent

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-sec/vigil/internal/hubclient"
	"github.com/vigil-sec/vigil/internal/hubclient/hubtest"
	"github.com/vigil-sec/vigil/internal/kube"
	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/testutil/kcluster"
)

func TestTheAgentRenewsItsCredentialFromDay46AndStoresItInItsSecret(t *testing.T) {
	c := kcluster.Require(t)
	ns := c.Namespace(t, "agent-renew")
	kc, err := kube.NewClient(c.Config, "")
	if err != nil {
		t.Fatal(err)
	}
	h := hubtest.Start(t)
	cid := h.CreateCluster("default", "rg1", "prod")
	ctx := context.Background()
	cases := []struct {
		name      string
		expiresIn time.Duration
		renews    bool
	}{
		{"a credential 80 days from expiry is kept", 80 * 24 * time.Hour, false},
		{"a credential 30 days from expiry is renewed", 30 * 24 * time.Hour, true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			exp := time.Now().Add(tc.expiresIn).UTC().Truncate(time.Second)
			tok, err := h.Client(h.Owner).CreateToken(ctx, hubclient.TokenCreate{Name: "agent", Kind: store.TokenAgent, ClusterID: cid, ExpiresAt: exp})
			if err != nil {
				t.Fatal(err)
			}
			old := tok.Properties.Secret
			secretName := []string{"cred-a", "cred-b"}[i]
			if _, err := c.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: secretName, Namespace: ns},
				StringData: map[string]string{"token": old, "expires-at": exp.Format(time.RFC3339)}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			// The Secret as the kubelet mounts it.
			dir := t.TempDir()
			for k, v := range map[string]string{"token": old, "expires-at": exp.Format(time.RFC3339)} {
				if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			a, err := New(Config{HubURL: h.URL, TokenFile: filepath.Join(dir, "token"), CAFile: h.CAFile, ClusterID: cid, Namespace: ns,
				CredentialSecret: secretName, Image: "vigil.local/vigil:test", Kube: kc, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Heartbeat(ctx); err != nil {
				t.Fatal(err)
			}
			if err := a.RenewIfDue(ctx); err != nil {
				t.Fatalf("RenewIfDue: %v", err)
			}
			sec, err := c.Client.CoreV1().Secrets(ns).Get(ctx, secretName, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			stored := string(sec.Data["token"])
			if !tc.renews {
				if stored != old {
					t.Fatal("a credential far from expiry was replaced")
				}
				return
			}
			if stored == old || stored == "" {
				t.Fatalf("the Secret still holds the old credential")
			}
			newExp, err := time.Parse(time.RFC3339, string(sec.Data["expires-at"]))
			if err != nil || time.Until(newExp) < 89*24*time.Hour {
				t.Fatalf("stored expiry %q (%v), want ~90 days ahead", sec.Data["expires-at"], err)
			}
			// The mounted file still shows the old token; the agent uses the new one.
			if err := a.Heartbeat(ctx); err != nil {
				t.Fatal(err)
			}
			if a.currentToken() != stored {
				t.Fatal("after renewing, the agent still sends the old credential")
			}
			if counterValue(t, a.m.renewals.WithLabelValues("renewed")) != 1 {
				t.Fatal("the renewal is not counted")
			}
		})
	}
}

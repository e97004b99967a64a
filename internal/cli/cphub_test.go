package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/hub"
	"github.com/vigil-sec/vigil/internal/pki"
	"github.com/vigil-sec/vigil/internal/seal"
	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/store/sqlite"
)

// cpHub is a real hub for control-plane tests: internal/hub over SQLite,
// with a sealing key (extension protected settings), a short offline
// threshold, served with its own TLS identity on a real listener.
type cpHub struct {
	URL, CAFile, Owner string
	Store              store.Store
	srv                *http.Server
}

type cpHubOptions struct {
	// Listen is the address (default 127.0.0.1:0). A non-loopback IP is
	// added to the certificate's names.
	Listen       string
	OfflineAfter time.Duration
}

func startCPHub(t *testing.T, o cpHubOptions) *cpHub {
	t.Helper()
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	dir := t.TempDir()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "hub.db"))
	if err != nil {
		t.Fatalf("open hub store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	sealer, err := seal.New(dir)
	if err != nil {
		t.Fatalf("sealing key: %v", err)
	}
	cfg := hub.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Sealer: sealer}
	if o.OfflineAfter > 0 {
		cfg.OfflineAfter, cfg.SweepEvery = o.OfflineAfter, time.Second
	}
	h, err := hub.New(cfg, st)
	if err != nil {
		t.Fatalf("hub.New: %v", err)
	}
	owner, err := auth.Bootstrap(ctx, st, "", time.Now())
	if err != nil {
		t.Fatalf("bootstrap owner token: %v", err)
	}
	host, _, err := net.SplitHostPort(o.Listen)
	if err != nil {
		t.Fatalf("listen address %q: %v", o.Listen, err)
	}
	bundle, err := pki.EnsureServer(filepath.Join(dir, "tls"), []string{host})
	if err != nil {
		t.Fatalf("hub TLS identity: %v", err)
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		t.Fatalf("listen %s: %v", o.Listen, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = h.Run(runCtx)
	}()
	go func() {
		if err := srv.Serve(tls.NewListener(ln, bundle.TLSConfig())); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("hub server: %v", err)
		}
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		cancel()
		<-done
	})
	return &cpHub{URL: "https://" + ln.Addr().String(), CAFile: filepath.Join(dir, "tls", pki.CACertFile), Owner: owner, Store: st, srv: srv}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

package hub

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/store/postgres"
	"github.com/vigil-sec/vigil/internal/testutil/pgtest"
)

// TestTwoReplicasOnOnePostgresActAsOneHub runs two hub servers on one
// PostgreSQL database: a token created on one works on the other, an
// alert ingested through one is read through the other, and while one
// replica sweeps connectivity the other skips its sweep.
func TestTwoReplicasOnOnePostgresActAsOneHub(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	var stores [2]store.Store
	var servers [2]*httptest.Server
	var hubs [2]*Server
	for i := range 2 {
		st, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		stores[i] = st
		hubs[i], err = New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, st)
		if err != nil {
			t.Fatal(err)
		}
		servers[i] = httptest.NewServer(hubs[i])
		t.Cleanup(servers[i].Close)
	}
	owner, err := auth.Bootstrap(ctx, stores[0], "", time.Now())
	if err != nil || owner == "" {
		t.Fatal(owner, err)
	}
	if again, err := auth.Bootstrap(ctx, stores[1], "", time.Now()); err != nil || again != "" {
		t.Fatalf("the second replica bootstrapped another owner token: %q %v", again, err)
	}
	a := &env{t: t, st: stores[0], srv: hubs[0], ts: servers[0], owner: owner}
	b := &env{t: t, st: stores[1], srv: hubs[1], ts: servers[1], owner: owner}
	sensor := a.cluster("s1", "g1", "c1")
	b.must(200, "POST", "/ingest/v1/alerts", sensor, batch("s1", "g1", "c1", testAlert("r1")))
	a.must(200, "GET", "/subscriptions/s1/providers/Vigil.Security/alerts/r1", owner, nil)

	// Replica A is sweeping (holds the job) → replica B skips.
	holding, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := stores[0].RunExclusive(ctx, "connectivity-sweep", func(context.Context) error {
			close(holding)
			<-release
			return nil
		})
		done <- err
	}()
	<-holding
	if _, ran, err := hubs[1].SweepOnce(ctx); err != nil || ran {
		t.Fatalf("replica B swept while A was sweeping: ran=%v err=%v", ran, err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, ran, err := hubs[1].SweepOnce(ctx); err != nil || !ran {
		t.Fatalf("replica B did not sweep after A finished: ran=%v err=%v", ran, err)
	}
}

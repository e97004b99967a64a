package postgres

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/store/sqlstore"
	"github.com/vigil-sec/vigil/internal/store/storetest"
	"github.com/vigil-sec/vigil/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func open(t testing.TB, dsn string) *Store {
	t.Helper()
	s, err := Open(t.Context(), dsn)
	return storetest.Opened(t, s, err)
}

func TestPostgresStorePassesTheConformanceSuite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, pgtest.NewDatabase(t))
	})
}

func TestReplicasOpeningOneNewDatabaseTogetherMigrateItOnce(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	newest, err := sqlstore.NewestVersion(dialect{}.Migrations())
	if err != nil {
		t.Fatalf("load migrations: %v", err)
	}
	storetest.OpenConcurrently(t, 4, newest, func(ctx context.Context) (store.Store, error) { return Open(ctx, dsn) })
}

func TestTwoReplicasRunAJobOneAtATimeAndSeeEachOthersWrites(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	replicas := []*Store{open(t, dsn), open(t, dsn)}
	ctx := t.Context()

	// Writes of one replica are visible to the other.
	ref := store.ClusterRef{Subscription: "s", ResourceGroup: "g", Name: "c"}
	if _, err := replicas[0].PutCluster(ctx, store.Cluster{ClusterRef: ref}); err != nil {
		t.Fatalf("put cluster on replica 0: %v", err)
	}
	if err := replicas[1].RecordHeartbeat(ctx, ref, store.Heartbeat{At: time.Now()}); err != nil {
		t.Fatalf("heartbeat on replica 1: %v", err)
	}
	if c, err := replicas[0].GetCluster(ctx, ref); err != nil || c.ConnectivityStatus != store.Connected {
		t.Fatalf("replica 0 reads %+v, %v; want the heartbeat replica 1 recorded", c, err)
	}

	// Both replicas try the same job many times at once: it never runs
	// twice at the same moment, and it does run.
	var running, maxRunning, runs atomic.Int32
	job := func(context.Context) error {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			m := maxRunning.Load()
			if n <= m || maxRunning.CompareAndSwap(m, n) {
				break
			}
		}
		runs.Add(1)
		time.Sleep(5 * time.Millisecond)
		return nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, 80)
	for i := range 80 {
		r := replicas[i%2]
		wg.Go(func() {
			if _, err := r.RunExclusive(ctx, "sweep", job); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("run exclusive: %v", err)
	}
	if maxRunning.Load() != 1 {
		t.Fatalf("the job ran %d times at once across two replicas, want 1", maxRunning.Load())
	}
	if runs.Load() == 0 {
		t.Fatalf("the job never ran")
	}
	// The lock is free afterwards, on either replica.
	for i, r := range replicas {
		if ran, err := r.RunExclusive(ctx, "sweep", func(context.Context) error { return nil }); err != nil || !ran {
			t.Fatalf("replica %d after the race: ran %v, %v; want the free lock taken", i, ran, err)
		}
	}
	// A job held by replica 0 does not run on replica 1.
	started, release := make(chan struct{}), make(chan struct{})
	go func() {
		_, _ = replicas[0].RunExclusive(ctx, "long", func(context.Context) error {
			close(started)
			<-release
			return nil
		})
	}()
	<-started
	ran, err := replicas[1].RunExclusive(ctx, "long", func(context.Context) error { return nil })
	close(release)
	if err != nil || ran {
		t.Fatalf("replica 1 while replica 0 holds the job: ran %v, %v; want not run", ran, err)
	}
}

func TestOpeningAnUnreachableDatabaseSaysSo(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// Port 1 on loopback: nothing listens there.
	if s, err := Open(ctx, "postgres://vigil@127.0.0.1:1/vigil?sslmode=disable&connect_timeout=2"); err == nil {
		_ = s.Close()
		t.Fatalf("opened a store on a port where nothing listens")
	}
	if _, err := Open(ctx, "postgres://%zz"); err == nil {
		t.Fatalf("a malformed connection string was accepted")
	}
}

func BenchmarkIngest(b *testing.B) {
	storetest.BenchIngest(b, open(b, pgtest.NewDatabase(b)))
}

func TestTheCollectorCountsPoolAcquires(t *testing.T) {
	s := open(t, pgtest.NewDatabase(t))
	if err := s.PutSetting(t.Context(), "k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(s.Collector()); err != nil {
		t.Fatalf("register: %v", err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			got[f.GetName()] += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	if got["vigil_store_postgres_acquires_total"] < 1 || got["vigil_store_postgres_max_connections"] != defaultMaxConns {
		t.Fatalf("metrics %v: want acquires counted and the pool size %d", got, defaultMaxConns)
	}
}

package sqlite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/store/sqlstore"
	"github.com/vigil-sec/vigil/internal/store/storetest"
)

func open(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(t.Context(), path)
	return storetest.Opened(t, s, err)
}

func TestSQLiteStorePassesTheConformanceSuite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, filepath.Join(t.TempDir(), "hub.db"))
	})
}

func TestDataSurvivesReopeningAndMigrationsRunOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "hub.db") // the directory is created
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if err := s.PutSetting(t.Context(), "bootstrap", "done"); err != nil {
		t.Fatalf("put: %v", err)
	}
	v1, err := s.SchemaVersion(t.Context())
	if err != nil || v1 < 1 {
		t.Fatalf("schema version %d, %v", v1, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	s = open(t, path)
	if v, err := s.GetSetting(t.Context(), "bootstrap"); err != nil || v != "done" {
		t.Fatalf("after reopening: %q, %v", v, err)
	}
	var applied int
	if err := s.w.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM schema_migrations`).Scan(&applied); err != nil {
		t.Fatalf("count migrations: %v", err)
	}
	if ms, _ := sqlstore.LoadMigrations(dialect{}.Migrations()); applied != len(ms) {
		t.Fatalf("%d migrations recorded after two opens, want %d", applied, len(ms))
	}
	var mode string
	if err := s.w.QueryRowContext(t.Context(), `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal mode %q, %v; want wal", mode, err)
	}
	for _, f := range []string{path, path + "-wal"} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, %v; want mode 0600 (it holds token hashes)", f, fi.Mode(), err)
		}
	}
	var fk int
	if err := s.w.QueryRowContext(t.Context(), `PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
		t.Fatalf("foreign_keys %d, %v; want 1", fk, err)
	}
}

func TestTwoProcessesOpeningOneNewFileMigrateItOnce(t *testing.T) {
	// Stores opened at once on one file stand in for processes racing at
	// startup.
	path := filepath.Join(t.TempDir(), "hub.db")
	storetest.OpenConcurrently(t, 4, newestVersion(t), func(ctx context.Context) (store.Store, error) { return Open(ctx, path) })
}

func newestVersion(t *testing.T) int {
	v, err := sqlstore.NewestVersion(dialect{}.Migrations())
	if err != nil {
		t.Fatalf("load migrations: %v", err)
	}
	return v
}

func TestTwoStoresOnOneFileWriteAtOnceWithoutBusyErrors(t *testing.T) {
	// The hub and, say, a CLI command on the same file: each has its own
	// writer connection; SQLite's lock plus busy_timeout must serialize them.
	path := filepath.Join(t.TempDir(), "hub.db")
	stores := []*Store{open(t, path), open(t, path)}
	errs := make(chan error, 2)
	for i, s := range stores {
		go func() {
			for n := range 200 {
				if err := s.PutSetting(t.Context(), fmt.Sprintf("k%d-%d", i, n), "v"); err != nil {
					errs <- err
					return
				}
				if _, err := s.GetSetting(t.Context(), fmt.Sprintf("k%d-%d", i, n)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range stores {
		if err := <-errs; err != nil {
			t.Fatalf("write beside another store on the same file: %v", err)
		}
	}
	if _, err := stores[0].GetSetting(t.Context(), "k1-199"); err != nil {
		t.Fatalf("one store does not see the other's write: %v", err)
	}
}

func TestOpeningADatabaseFromANewerVigilFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.db")
	s := open(t, path)
	if _, err := s.w.ExecContext(t.Context(), `INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'future', 0)`); err != nil {
		t.Fatalf("insert: %v", err)
	}
	if _, err := Open(t.Context(), path); err == nil {
		t.Fatalf("a database with schema version 9999 was opened")
	}
}

func TestOpeningSomethingThatIsNotADatabaseSaysSo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.db")
	if err := os.WriteFile(path, []byte("this is not a SQLite database, it is a text file of some length"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(t.Context(), path); err == nil {
		_ = s.Close()
		t.Fatalf("a text file opened as a store")
	}
	if _, err := Open(t.Context(), ""); err == nil {
		t.Fatalf("an empty path was accepted")
	}
}

func BenchmarkIngest(b *testing.B) {
	storetest.BenchIngest(b, open(b, filepath.Join(b.TempDir(), "hub.db")))
}

func TestTheCollectorReportsOneWriterConnection(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "hub.db"))
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
	for _, f := range families {
		if f.GetName() != "go_sql_max_open_connections" {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetLabel()[0].GetValue() == "vigil_sqlite_writer" {
				if v := m.GetGauge().GetValue(); v != 1 {
					t.Fatalf("writer max open connections %v, want 1", v)
				}
				return
			}
		}
	}
	t.Fatalf("no go_sql_max_open_connections of the writer among %d metric families", len(families))
}

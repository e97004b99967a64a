// Package sqlite is the hub's embedded store: one SQLite file (through the
// pure-Go modernc.org/sqlite driver) in WAL mode, served by one hub process.
//
// Writes go through a single connection, so concurrent writers of the
// process queue instead of failing with SQLITE_BUSY; reads use a small pool
// of read-only connections that WAL lets run beside the writer. Every write
// transaction takes SQLite's write lock at BEGIN (BEGIN IMMEDIATE), and
// busy_timeout covers another process briefly holding it (e.g. a CLI).
// synchronous=FULL makes a commit durable across power loss, since the hub
// acknowledges an ingest batch (and the sensor forgets it) once committed.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// readers is the size of the read connection pool.
const readers = 4

// busyTimeoutMillis is how long a statement waits for a lock held by
// another connection before failing with SQLITE_BUSY.
const busyTimeoutMillis = 10000

// Store is the SQLite store.
type Store struct {
	*sqlstore.Store
	path string
	r, w *sql.DB

	mu   sync.Mutex
	jobs map[string]bool // RunExclusive jobs running now
}

var _ store.Store = (*Store)(nil)

type dialect struct{}

func (dialect) Name() string { return "sqlite" }

func (dialect) Migrations() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the embedded directory exists: a build error otherwise
	}
	return sub
}

// LockMigrations needs no lock: each migration's transaction takes the
// write lock at BEGIN and re-checks whether it was applied.
func (dialect) LockMigrations(context.Context, *sql.Conn) (func(context.Context) error, error) {
	return func(context.Context) error { return nil }, nil
}

// Rows is a VALUES list. Its placeholders are "?": SQLite resolves
// thousands of them far faster than "$N".
func (dialect) Rows(cols ...sqlstore.Column) (string, []any) {
	n := cols[0].Len()
	var q strings.Builder
	q.Grow(n * (2*len(cols) + 3))
	q.WriteString("VALUES ")
	args := make([]any, 0, n*len(cols))
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", len(cols)), ",") + ")"
	for i := range n {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString(row)
		for _, c := range cols {
			args = append(args, c.Value(i))
		}
	}
	return q.String(), args
}

// dsn builds the driver DSN for path.
func dsn(path string, write bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMillis))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(FULL)")
	if write {
		q.Set("_txlock", "immediate")
	} else {
		q.Add("_pragma", "query_only(1)")
	}
	return path + "?" + q.Encode()
}

// Open opens (creating it and its directory if needed) the SQLite database
// at path and migrates it to the newest schema.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("open sqlite store %q: the path must be a file name without '?' or '#'", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open sqlite store %s: create its directory: %w", path, err)
	}
	// The database holds token hashes and sealed settings: only the hub's
	// user may read it (SQLite gives -wal and -shm the file's mode).
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	_ = f.Close()
	w, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	// Switching a new file to WAL while another process does the same can
	// fail with SQLITE_BUSY at once (SQLite does not wait in its busy
	// handler there, to avoid a deadlock): retry within the busy timeout.
	err = w.PingContext(ctx)
	for deadline := time.Now().Add(busyTimeoutMillis * time.Millisecond); err != nil && isBusy(err) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		err = w.PingContext(ctx)
	}
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("open sqlite store %s (is the directory writable and the file a SQLite database?): %w", path, err)
	}
	r, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	r.SetMaxOpenConns(readers)
	r.SetMaxIdleConns(readers)
	s := &Store{path: path, r: r, w: w, jobs: map[string]bool{}}
	s.Store, err = sqlstore.New(ctx, r, w, dialect{})
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	return s, nil
}

// isBusy reports SQLite's "database is locked" (SQLITE_BUSY).
func isBusy(err error) bool {
	return strings.Contains(err.Error(), "SQLITE_BUSY") || strings.Contains(err.Error(), "database is locked")
}

// Path returns the database file.
func (s *Store) Path() string { return s.path }

// Close closes the database.
func (s *Store) Close() error {
	rerr := s.r.Close()
	if err := s.w.Close(); err != nil {
		return fmt.Errorf("close sqlite store %s: %w", s.path, err)
	}
	if rerr != nil {
		return fmt.Errorf("close sqlite store %s: %w", s.path, rerr)
	}
	return nil
}

// RunExclusive runs fn unless a job of that name runs now. A SQLite file is
// served by one hub process, so an in-process guard is enough.
func (s *Store) RunExclusive(ctx context.Context, name string, fn func(context.Context) error) (bool, error) {
	s.mu.Lock()
	if s.jobs[name] {
		s.mu.Unlock()
		return false, nil
	}
	s.jobs[name] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.jobs, name)
		s.mu.Unlock()
	}()
	if err := fn(ctx); err != nil {
		return true, fmt.Errorf("job %s: %w", name, err)
	}
	return true, nil
}

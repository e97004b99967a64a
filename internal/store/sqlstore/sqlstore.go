// Package sqlstore implements store.Store on database/sql for both SQL
// dialects vigil supports. The SQL it runs is written once: both SQLite and
// PostgreSQL understand $N placeholders, ON CONFLICT upserts, RETURNING,
// UPDATE ... FROM (VALUES ...) and row-value comparisons, and every
// timestamp is a BIGINT of Unix nanoseconds (UTC). What differs between the
// dialects — the schema (column types), how migrations are serialized
// between processes, and how jobs are made exclusive — stays in the
// sqlite and postgres packages behind Dialect.
package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sync/atomic"
	"time"

	"github.com/vigil-sec/vigil/internal/store"
)

// Dialect is what the shared code needs from one SQL dialect.
type Dialect interface {
	// Name names the dialect in errors ("sqlite", "postgres").
	Name() string
	// Migrations holds the schema migrations as NNNN_name.sql files,
	// applied in the order of NNNN.
	Migrations() fs.FS
	// LockMigrations serializes migrating between processes sharing the
	// database; it returns the function that releases the lock.
	LockMigrations(ctx context.Context, conn *sql.Conn) (unlock func(context.Context) error, err error)
	// Rows returns a query yielding the given columns as rows (all
	// columns hold the same number of values), named column1, column2, ...
	// in order, and its arguments. Ingest reads its batches from it.
	Rows(cols ...Column) (query string, args []any)
}

// Column is one column of Dialect.Rows: Text or Int values.
type Column struct {
	Text []string
	Int  []int64
}

// Len returns the number of values.
func (c Column) Len() int { return max(len(c.Text), len(c.Int)) }

// Value returns value i.
func (c Column) Value(i int) any {
	if c.Text != nil {
		return c.Text[i]
	}
	return c.Int[i]
}

// Store implements every store.Store method but Close and RunExclusive,
// which the dialect packages add.
type Store struct {
	// r serves reads, w serves writes. They are the same pool on
	// PostgreSQL; on SQLite w is a single connection so writers queue
	// in-process instead of failing with SQLITE_BUSY.
	r, w    *sql.DB
	dialect Dialect
	now     func() time.Time
	// lastBatch is the ingestedAt (Unix nanoseconds) of the latest batch.
	lastBatch atomic.Int64
}

// New migrates the database to the newest schema and returns the store.
func New(ctx context.Context, r, w *sql.DB, d Dialect) (*Store, error) {
	s := &Store{r: r, w: w, dialect: d, now: func() time.Time { return time.Now().UTC() }}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.w.PingContext(ctx); err != nil {
		return fmt.Errorf("ping %s store: %w", s.dialect.Name(), err)
	}
	if s.r != s.w {
		if err := s.r.PingContext(ctx); err != nil {
			return fmt.Errorf("ping %s store (readers): %w", s.dialect.Name(), err)
		}
	}
	return nil
}

// SchemaVersion returns the highest applied migration.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v sql.NullInt64
	if err := s.r.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return int(v.Int64), nil
}

// inTx runs fn in a write transaction and commits when it returns nil.
func (s *Store) inTx(ctx context.Context, what string, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: begin transaction: %w", what, err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: commit: %w", what, err)
	}
	return nil
}

// queryer is what *sql.DB and *sql.Tx share.
type queryer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// execOne runs a statement that must affect a row, else notFound is
// returned (wrapping store.ErrNotFound).
func execOne(ctx context.Context, q queryer, notFound error, query string, args ...any) error {
	res, err := q.ExecContext(ctx, query, args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return notFound
	}
	return nil
}

// notFound wraps store.ErrNotFound with what was missing.
func notFound(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), store.ErrNotFound)
}

// conflict wraps store.ErrConflict with what was wrong.
func conflict(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), store.ErrConflict)
}

// nanos stores a time as Unix nanoseconds; the zero time is 0.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromNanos is the inverse of nanos; times come back in UTC.
func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// orNow returns t, or now when t is zero.
func (s *Store) orNow(t time.Time) time.Time {
	if t.IsZero() {
		return s.now()
	}
	return t.UTC()
}

// jsonText encodes a map or slice for a JSON column; empty ones are stored
// as JSON null so nil and empty compare equal.
func jsonText[T any](v T, empty bool) (string, error) {
	if empty {
		return "null", nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func mapJSON[V any](m map[string]V) (string, error) { return jsonText(m, len(m) == 0) }

func sliceJSON[V any](s []V) (string, error) { return jsonText(s, len(s) == 0) }

// fromJSON decodes a JSON column; null leaves v at its zero value.
func fromJSON(text string, v any) error {
	if text == "" || text == "null" {
		return nil
	}
	return json.Unmarshal([]byte(text), v)
}

// isNoRows reports whether err says a single-row query found nothing.
func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }

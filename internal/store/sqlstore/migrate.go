package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

// Migration is one versioned schema change.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// LoadMigrations reads NNNN_name.sql files from fsys, ordered by version.
func LoadMigrations(fsys fs.FS) ([]Migration, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	var ms []Migration
	seen := map[int]string{}
	for _, name := range names {
		prefix, rest, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(prefix)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration file %s: name must be NNNN_description.sql with NNNN > 0", name)
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %s and %s share version %d: renumber one", other, name, v)
		}
		seen[v] = name
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		ms = append(ms, Migration{Version: v, Name: strings.TrimSuffix(rest, ".sql"), SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	return ms, nil
}

// NewestVersion returns the highest version among the migrations in fsys.
func NewestVersion(fsys fs.FS) (int, error) {
	ms, err := LoadMigrations(fsys)
	if err != nil {
		return 0, err
	}
	if len(ms) == 0 {
		return 0, fmt.Errorf("no migrations found")
	}
	return ms[len(ms)-1].Version, nil
}

// migrate applies the migrations the database lacks, each in its own
// transaction, while holding the dialect's migration lock.
func (s *Store) migrate(ctx context.Context) (err error) {
	ms, err := LoadMigrations(s.dialect.Migrations())
	if err != nil {
		return err
	}
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate %s store: connect: %w", s.dialect.Name(), err)
	}
	defer conn.Close()
	unlock, err := s.dialect.LockMigrations(ctx, conn)
	if err != nil {
		return fmt.Errorf("migrate %s store: take the migration lock: %w", s.dialect.Name(), err)
	}
	defer func() {
		if uerr := unlock(context.WithoutCancel(ctx)); uerr != nil && err == nil {
			err = fmt.Errorf("migrate %s store: release the migration lock: %w", s.dialect.Name(), uerr)
		}
	}()
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version BIGINT PRIMARY KEY,
		name TEXT NOT NULL,
		applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("migrate %s store: create schema_migrations: %w", s.dialect.Name(), err)
	}
	newest := 0
	if len(ms) > 0 {
		newest = ms[len(ms)-1].Version
	}
	var have sql.NullInt64
	if err := conn.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&have); err != nil {
		return fmt.Errorf("migrate %s store: read schema version: %w", s.dialect.Name(), err)
	}
	if int(have.Int64) > newest {
		return fmt.Errorf("%s store has schema version %d but this vigil knows versions up to %d: run a vigil at least as new as the one that last wrote the database", s.dialect.Name(), have.Int64, newest)
	}
	for _, m := range ms {
		if err := s.applyMigration(ctx, conn, m); err != nil {
			return err
		}
	}
	return nil
}

// applyMigration applies m unless it is recorded as applied. The check runs
// inside the transaction, so two processes racing past the lock (SQLite
// takes its write lock at BEGIN) still apply it once.
func (s *Store) applyMigration(ctx context.Context, conn *sql.Conn, m Migration) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migration %04d %s: begin: %w", m.Version, m.Name, err)
	}
	defer func() { _ = tx.Rollback() }()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = $1`, m.Version).Scan(&n); err != nil {
		return fmt.Errorf("migration %04d %s: check: %w", m.Version, m.Name, err)
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return fmt.Errorf("migration %04d %s failed (the database is unchanged; fix the migration or the database and restart): %w", m.Version, m.Name, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
		m.Version, m.Name, nanos(s.now())); err != nil {
		return fmt.Errorf("migration %04d %s: record: %w", m.Version, m.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migration %04d %s: commit: %w", m.Version, m.Name, err)
	}
	return nil
}

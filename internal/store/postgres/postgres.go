// Package postgres is the hub's store on PostgreSQL (through pgx), for
// several hub replicas sharing one database. Replicas coordinate through
// the database alone: migrations run under an advisory lock, and
// RunExclusive jobs hold a session advisory lock while they run.
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// defaultMaxConns is the pool size unless the DSN sets pool_max_conns.
const defaultMaxConns = 16

// Store is the PostgreSQL store.
type Store struct {
	*sqlstore.Store
	pool *pgxpool.Pool
	db   *sql.DB
}

var _ store.Store = (*Store)(nil)

// lockKey maps a name to an advisory lock key. Keys live in one space per
// database; the prefix keeps vigil's apart from other applications'.
func lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("vigil:" + name))
	return int64(h.Sum64())
}

// migrationLock is the advisory lock held while migrating.
var migrationLock = lockKey("schema-migrations")

type dialect struct{}

func (dialect) Name() string { return "postgres" }

func (dialect) Migrations() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the embedded directory exists: a build error otherwise
	}
	return sub
}

// LockMigrations takes a session advisory lock on conn, so replicas
// starting together migrate one after the other.
func (dialect) LockMigrations(ctx context.Context, conn *sql.Conn) (func(context.Context) error, error) {
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		_, err := conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, migrationLock)
		return err
	}, nil
}

// Rows unnests one array parameter per column: a statement whose text does
// not depend on the number of rows, prepared once, and planned without a
// parameter per value.
func (dialect) Rows(cols ...sqlstore.Column) (string, []any) {
	var arrays, names []string
	args := make([]any, len(cols))
	for i, c := range cols {
		typ := "bigint"
		args[i] = c.Int
		if c.Text != nil {
			typ, args[i] = "text", c.Text
		}
		arrays = append(arrays, fmt.Sprintf("$%d::%s[]", i+1, typ))
		names = append(names, fmt.Sprintf("column%d", i+1))
	}
	return "SELECT * FROM unnest(" + strings.Join(arrays, ", ") + ") AS u(" + strings.Join(names, ", ") + ")", args
}

// Open connects to the database at dsn (a postgres:// URL or key=value
// string, see pgx) and migrates it to the newest schema.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's error quotes the DSN with its password masked.
		return nil, fmt.Errorf("open postgres store: parse the connection string (want postgres://user:password@host:port/db or key=value pairs): %w", err)
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		// RunExclusive holds a connection while its job runs, and the job
		// needs more: pgxpool's default (4 on small machines) is too few.
		cfg.MaxConns = max(cfg.MaxConns, defaultMaxConns)
	}
	where := fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres store %s: %w", where, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres store %s (is the server up, and do the user, password and database in the connection string exist?): %w", where, err)
	}
	db := stdlib.OpenDBFromPool(pool)
	s := &Store{pool: pool, db: db}
	s.Store, err = sqlstore.New(ctx, db, db, dialect{})
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("open postgres store %s: %w", where, err)
	}
	return s, nil
}

// Close closes the connection pool.
func (s *Store) Close() error {
	err := s.db.Close()
	s.pool.Close()
	if err != nil {
		return fmt.Errorf("close postgres store: %w", err)
	}
	return nil
}

// RunExclusive runs fn while holding the session advisory lock of name on a
// dedicated connection; if another replica (or goroutine) holds it, fn does
// not run. The lock is released when fn returns, and by the server if the
// connection dies.
func (s *Store) RunExclusive(ctx context.Context, name string, fn func(context.Context) error) (ran bool, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("job %s: acquire a connection for its lock: %w", name, err)
	}
	key := lockKey("job:" + name)
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&locked); err != nil {
		conn.Release()
		return false, fmt.Errorf("job %s: take its lock: %w", name, err)
	}
	if !locked {
		conn.Release()
		return false, nil
	}
	defer func() {
		var unlocked bool
		uerr := conn.QueryRow(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, key).Scan(&unlocked)
		if uerr != nil || !unlocked {
			// Closing the session is the sure way to release its locks.
			_ = conn.Hijack().Close(context.WithoutCancel(ctx))
			if uerr == nil {
				uerr = errors.New("the lock was not held any more")
			}
			err = errors.Join(err, fmt.Errorf("job %s: release its lock (the connection was closed instead): %w", name, uerr))
			return
		}
		conn.Release()
	}()
	if err := fn(ctx); err != nil {
		return true, fmt.Errorf("job %s: %w", name, err)
	}
	return true, nil
}

package pgtest

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/vigil-sec/vigil/internal/testenv"
)

func TestMain(m *testing.M) { Main(m) }

func TestEachTestGetsAnEmptyDatabaseOfItsOwn(t *testing.T) {
	ctx := context.Background()
	a, b := NewDatabase(t), NewDatabase(t)
	if a == b {
		t.Fatalf("two databases share the connection string %s", a)
	}
	ca, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatalf("connect to %s: %v", a, err)
	}
	defer ca.Close(ctx)
	if _, err := ca.Exec(ctx, `CREATE TABLE only_in_a (x int)`); err != nil {
		t.Fatalf("create table: %v", err)
	}
	cb, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatalf("connect to %s: %v", b, err)
	}
	defer cb.Close(ctx)
	var n int
	if err := cb.QueryRow(ctx, `SELECT COUNT(*) FROM pg_tables WHERE tablename = 'only_in_a'`).Scan(&n); err != nil {
		t.Fatalf("query: %v", err)
	}
	if n != 0 {
		t.Fatalf("a table created in one test database shows up in another")
	}
	var version string
	if err := cb.QueryRow(ctx, `SHOW server_version`).Scan(&version); err != nil {
		t.Fatalf("query: %v", err)
	}
	if version[:3] != "15." {
		t.Fatalf("server version %s, want PostgreSQL 15", version)
	}
}

func TestStopRemovesTheServerAndItsDirectory(t *testing.T) {
	s, reason, err := StartServer()
	if err != nil {
		t.Fatal(err)
	}
	testenv.Require(t, s != nil, reason)
	dsn := s.DSN("postgres")
	dir := s.dir
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	_ = conn.Close(ctx)
	if err := s.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("server directory %s still exists after Stop (stat: %v)", dir, err)
	}
	if conn, err := pgx.Connect(ctx, dsn); err == nil {
		_ = conn.Close(ctx)
		t.Fatalf("server still accepts connections after Stop")
	}
}

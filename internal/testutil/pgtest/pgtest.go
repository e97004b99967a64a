// Package pgtest runs a real PostgreSQL 15 server for tests.
//
// A test package starts one server for all its tests from TestMain and gives
// every test its own database:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestX(t *testing.T) {
//		dsn := pgtest.NewDatabase(t) // fresh, dropped when t ends
//		...
//	}
//
// The server runs as the postgres OS user when the tests run as root
// (PostgreSQL refuses root), from initdb in a temporary directory, listening
// on 127.0.0.1 on a free port and a private Unix socket directory, with
// fsync off. It is stopped and its directory removed when the tests end, also
// when they fail. Without the PostgreSQL binaries (or the postgres user when
// running as root) NewDatabase skips, and fails under CI (see testenv).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vigil-sec/vigil/internal/testenv"
)

// BinDir holds the PostgreSQL 15 binaries (Debian's layout).
const BinDir = "/usr/lib/postgresql/15/bin"

const (
	startTimeout = 60 * time.Second
	stopTimeout  = 30 * time.Second
)

// Server is a running PostgreSQL server.
type Server struct {
	dir  string // temporary directory: data/, the socket, the log
	port int
	cmd  *exec.Cmd
	done chan error // the postgres process's exit
	cred *syscall.Credential
}

// shared is the package's server started by Main; unavailable says why
// there is none.
var (
	sharedMu    sync.Mutex
	shared      *Server
	unavailable string
	mainCalled  bool
)

// Main starts a server, runs the tests and stops the server; call it from
// TestMain. When the server cannot start, the tests still run and
// NewDatabase skips (or fails in CI) with the reason.
func Main(m *testing.M) {
	s, reason, err := StartServer()
	sharedMu.Lock()
	mainCalled = true
	shared = s
	switch {
	case err != nil:
		unavailable = "start PostgreSQL: " + err.Error()
	case reason != "":
		unavailable = reason
	}
	sharedMu.Unlock()
	code := m.Run()
	if s != nil {
		if err := s.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// NewDatabase creates a fresh database on the server Main started and
// returns its connection string; the database is dropped when t ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	sharedMu.Lock()
	s, reason, called := shared, unavailable, mainCalled
	sharedMu.Unlock()
	if !called {
		t.Fatalf("pgtest.NewDatabase needs the package's TestMain to call pgtest.Main(m)")
	}
	if s == nil && strings.HasPrefix(reason, "start PostgreSQL: ") {
		t.Fatalf("%s", reason)
	}
	testenv.Require(t, s != nil, reason)
	return s.NewDatabase(t)
}

// StartServer initializes and starts a server. A non-empty reason (with a nil
// error) says which prerequisite is missing.
func StartServer() (s *Server, reason string, err error) {
	for _, bin := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(BinDir, bin)); err != nil {
			return nil, fmt.Sprintf("%s not found (apt-get install postgresql-15)", filepath.Join(BinDir, bin)), nil
		}
	}
	var cred *syscall.Credential
	var uid, gid int = -1, -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, "running as root needs the postgres OS user to run PostgreSQL (apt-get install postgresql-15 creates it)", nil
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	dir, err := os.MkdirTemp("", "vigil-pgtest-")
	if err != nil {
		return nil, "", fmt.Errorf("create server directory: %w", err)
	}
	s = &Server{dir: dir, cred: cred}
	fail := func(err error) (*Server, string, error) {
		_ = os.RemoveAll(dir)
		return nil, "", err
	}
	if cred != nil {
		if err := os.Chown(dir, uid, gid); err != nil {
			return fail(fmt.Errorf("hand %s to the postgres user: %w", dir, err))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	initdb := s.command(ctx, filepath.Join(BinDir, "initdb"), "-D", s.dataDir(), "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb in %s: %w\n%s", dir, err, out))
	}
	// The free port may be taken between closing the probe and postgres
	// binding it; try a few.
	var lastErr error
	for range 5 {
		if lastErr = s.start(ctx); lastErr == nil {
			return s, "", nil
		}
	}
	return fail(lastErr)
}

func (s *Server) dataDir() string { return filepath.Join(s.dir, "data") }

func (s *Server) logFile() string { return filepath.Join(s.dir, "postgres.log") }

// command runs a PostgreSQL binary as the postgres user (when root), in its
// own process group, killed if the test binary dies.
func (s *Server) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = s.dir
	cmd.Env = []string{"PATH=" + BinDir + ":/usr/bin:/bin", "LC_ALL=C", "TZ=UTC"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// freePort returns a port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) start(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return fmt.Errorf("find a free port: %w", err)
	}
	log, err := os.OpenFile(s.logFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("create server log: %w", err)
	}
	defer log.Close()
	// Not CommandContext: the server outlives this start's timeout.
	cmd := s.command(context.Background(), filepath.Join(BinDir, "postgres"), "-D", s.dataDir(),
		"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-k", s.dir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "shared_buffers=64MB", "-c", "log_min_messages=warning")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	s.port, s.cmd, s.done = port, cmd, done
	for {
		select {
		case err := <-done:
			return fmt.Errorf("postgres exited while starting (%v); its log:\n%s", err, s.tailLog())
		case <-ctx.Done():
			_ = s.Stop()
			return fmt.Errorf("postgres did not accept connections within %s; its log:\n%s", startTimeout, s.tailLog())
		case <-time.After(50 * time.Millisecond):
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(pctx, s.DSN("postgres"))
		if err == nil {
			err = conn.Ping(pctx)
			_ = conn.Close(pctx)
		}
		cancel()
		if err == nil {
			return nil
		}
	}
}

func (s *Server) tailLog() string {
	b, _ := os.ReadFile(s.logFile())
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// DSN returns the connection string of database db.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// NewDatabase creates a fresh database and returns its connection string;
// the database is dropped (with its connections) when t ends.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "test_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.admin(ctx, `CREATE DATABASE `+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.admin(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	return s.DSN(name)
}

func (s *Server) admin(ctx context.Context, stmt string) error {
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("connect to the test server: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("%s: %w", stmt, err)
	}
	return nil
}

// Stop shuts the server down (fast shutdown, then SIGKILL) and removes its
// directory.
func (s *Server) Stop() error {
	var errs []error
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
		select {
		case <-s.done:
		case <-time.After(stopTimeout):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.done
			errs = append(errs, fmt.Errorf("postgres (pid %d) ignored a fast shutdown for %s and was killed", s.cmd.Process.Pid, stopTimeout))
		}
		s.cmd = nil
	}
	if err := os.RemoveAll(s.dir); err != nil {
		errs = append(errs, fmt.Errorf("remove server directory: %w", err))
	}
	return errors.Join(errs...)
}

// Package pgtest runs a private PostgreSQL 15 server for tests: one cluster
// per test binary, started on first use, and a new empty database for each
// call of Start.
//
// Use it as
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		dsn := pgtest.Start(t) // skips the test if PostgreSQL is not installed
//		...
//	}
//
// Guarantees:
//   - The server listens on 127.0.0.1 only, on a free port, with a random
//     password; its files live in a temporary folder under /tmp.
//   - It runs as the postgres system user when the tests run as root
//     (PostgreSQL refuses root), as the current user otherwise.
//   - It never outlives the test binary: Main stops it and removes its
//     folder after the tests, and if the binary dies first (a panic, a
//     timeout, SIGKILL) the kernel signals the server to shut down
//     (PR_SET_PDEATHSIG), and the next Start in any test binary removes
//     the folders of servers whose test binary is gone.
//   - It is tuned for speed, not durability: fsync and synchronous commit
//     are off.
//
// If the binaries are missing, Start skips the test, or fails it when CI
// is "true", where make test installs them.
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
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// BinDir holds Debian's PostgreSQL 15 binaries.
const BinDir = "/usr/lib/postgresql/15/bin"

// installHint is how to get the binaries.
const installHint = "apt-get install postgresql (Debian 12: PostgreSQL 15)"

var errNotInstalled = errors.New("PostgreSQL 15 is not installed")

// The process's one cluster. It is process-wide on purpose: starting a
// cluster costs about a second, and every test in the binary can share it.
var (
	mu      sync.Mutex
	shared  *cluster
	failed  error // why starting failed; later Starts fail the same way
	dbCount int
)

// Start returns the DSN of a new, empty database (UTF-8) in the test
// binary's cluster, starting the cluster if this is the first call. The
// database is dropped when the test ends; the caller must have closed its
// connections to it by then (cleanups run last-registered first, so
// closing in a Cleanup registered after Start does it).
func Start(t testing.TB) (dsn string) {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if shared == nil && failed == nil {
		shared, failed = start()
	}
	if errors.Is(failed, errNotInstalled) {
		skipOrFail(t, failed)
	}
	if failed != nil {
		t.Fatalf("pgtest: %v", failed)
	}
	dbCount++
	name := fmt.Sprintf("pgtest_%d", dbCount)
	if err := shared.exec("CREATE DATABASE " + pgx.Identifier{name}.Sanitize() + " ENCODING 'UTF8' TEMPLATE template0"); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	c := shared
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if err := c.exec("DROP DATABASE IF EXISTS " + pgx.Identifier{name}.Sanitize() + " WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return c.dsn(name)
}

// skipOrFail skips a test for want of PostgreSQL, or fails it in CI, where
// make test installs it.
func skipOrFail(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("pgtest: %v; make test installs it: %s", err, installHint)
	}
	t.Skipf("pgtest: %v (%s)", err, installHint)
}

// installed reports why the server cannot run, if it cannot.
func installed() error {
	for _, bin := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(BinDir, bin)); err != nil {
			return fmt.Errorf("%w: %v", errNotInstalled, err)
		}
	}
	return nil
}

// Main runs the tests, then stops the cluster and removes its files, and
// exits with the tests' status. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if err := Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// Stop stops the cluster, if one is running, and removes its files. Main
// calls it; a later Start starts a new cluster.
func Stop() error {
	mu.Lock()
	defer mu.Unlock()
	c := shared
	shared, failed = nil, nil
	if c == nil {
		return nil
	}
	return c.stop()
}

// cluster is a running server.
type cluster struct {
	dir      string // the temporary folder: data, socket, log
	port     int
	password string
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the server process has ended
	admin    *pgx.Conn     // to the postgres database, for creating and dropping
}

func (c *cluster) dsn(db string) string {
	return fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/%s?sslmode=disable", c.password, c.port, db)
}

// exec runs an administrative statement; mu must be held.
func (c *cluster) exec(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := c.admin.Exec(ctx, sql)
	return err
}

// runAs is who the server runs as: nil for the current user.
func runAs() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("%w: no postgres user to run it as (%v)", errNotInstalled, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("user postgres: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// baseDir is where clusters' folders go: somewhere the postgres user can
// reach when we are root (root's own TMPDIR may not be).
func baseDir() string {
	if os.Geteuid() == 0 {
		return "/tmp"
	}
	return os.TempDir()
}

const dirPattern = "pgtest-*"

func start() (*cluster, error) {
	if err := installed(); err != nil {
		return nil, err
	}
	cred, err := runAs()
	if err != nil {
		return nil, err
	}
	sweep(baseDir())
	dir, err := os.MkdirTemp(baseDir(), dirPattern)
	if err != nil {
		return nil, err
	}
	c, err := setUp(dir, cred)
	if err != nil {
		if c != nil {
			_ = c.stop()
		} else {
			_ = os.RemoveAll(dir)
		}
		return nil, err
	}
	return c, nil
}

// setUp initializes a cluster in dir and starts it. On error, a non-nil
// cluster is one to stop.
func setUp(dir string, cred *syscall.Credential) (*cluster, error) {
	// The owner file lets a later sweep tell an abandoned folder from one
	// in use.
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(ownerLine(os.Getpid())), 0o644); err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	pw := make([]byte, 18)
	if _, err := rand.Read(pw); err != nil {
		return nil, err
	}
	c := &cluster{dir: dir, password: hex.EncodeToString(pw)}
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte(c.password+"\n"), 0o600); err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(pwFile, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	initdb := exec.Command(filepath.Join(BinDir, "initdb"), "-D", filepath.Join(dir, "data"),
		"-U", "postgres", "--auth=scram-sha-256", "--pwfile="+pwFile,
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	initdb.Dir = dir
	initdb.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	_ = os.Remove(pwFile)

	// A port found free can be taken before the server binds it: try
	// again with another.
	var err error
	for range 3 {
		if err = c.run(cred); err == nil {
			return c, nil
		}
		if !strings.Contains(err.Error(), "could not bind") && !strings.Contains(err.Error(), "could not create any TCP/IP sockets") {
			return c, err
		}
		c.kill()
	}
	return c, err
}

// run starts the server and waits until it accepts connections.
func (c *cluster) run(cred *syscall.Credential) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	c.port = port
	logf, err := os.OpenFile(filepath.Join(c.dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the server has its own copy
	cmd := exec.Command(filepath.Join(BinDir, "postgres"), "-D", filepath.Join(c.dir, "data"),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "port="+strconv.Itoa(port),
		"-c", "unix_socket_directories="+c.dir,
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "wal_level=minimal",
		"-c", "max_wal_senders=0",
		"-c", "max_wal_size=4GB",
		"-c", "shared_buffers=256MB",
		"-c", "max_connections=200",
		"-c", "logging_collector=off",
	)
	cmd.Dir = c.dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: cred,
		// Its own process group: a ^C to the test run reaches the test
		// binary, whose death then shuts the server down in order.
		Setpgid: true,
		// Fast shutdown when the thread that started it ends: the
		// goroutine below holds that thread for the server's lifetime,
		// so this fires only when the test binary is gone.
		Pdeathsig: syscall.SIGINT,
	}
	started := make(chan error, 1)
	c.exited = make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := cmd.Start(); err != nil {
			started <- err
			close(c.exited)
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(c.exited)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	c.cmd = cmd

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		select {
		case <-c.exited:
			return fmt.Errorf("postgres exited while starting:\n%s", c.logTail())
		case <-ctx.Done():
			return fmt.Errorf("postgres not ready after a minute:\n%s", c.logTail())
		case <-time.After(50 * time.Millisecond):
		}
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := pgx.Connect(cctx, c.dsn("postgres"))
		ccancel()
		if err == nil {
			c.admin = conn
			return nil
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (c *cluster) logTail() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "postgres.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// kill ends the server at once, if it runs.
func (c *cluster) kill() {
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(syscall.SIGQUIT) // immediate shutdown
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	}
	c.cmd = nil
}

// stop shuts the server down and removes its folder.
func (c *cluster) stop() error {
	if c.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = c.admin.Close(ctx)
		cancel()
		c.admin = nil
	}
	var err error
	if c.cmd != nil {
		_ = c.cmd.Process.Signal(syscall.SIGINT) // fast shutdown: ends sessions, then exits
		select {
		case <-c.exited:
		case <-time.After(30 * time.Second):
			err = fmt.Errorf("postgres (pid %d) did not stop in 30s; killed it", c.cmd.Process.Pid)
			c.kill()
		}
		c.cmd = nil
	}
	return errors.Join(err, os.RemoveAll(c.dir))
}

package pgtest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestStart(t *testing.T) {
	a, b := Start(t), Start(t)
	if a == b {
		t.Fatal("two Starts gave one database")
	}
	ca, cb := connect(t, a), connect(t, b)
	ctx := context.Background()
	var version int
	var encoding, listen string
	if err := ca.QueryRow(ctx, "SELECT current_setting('server_version_num')::int, current_setting('server_encoding'), current_setting('listen_addresses')").
		Scan(&version, &encoding, &listen); err != nil {
		t.Fatal(err)
	}
	if version/10000 != 15 || encoding != "UTF8" || listen != "127.0.0.1" {
		t.Errorf("server %d, encoding %s, listening on %s; want 15, UTF8, 127.0.0.1", version, encoding, listen)
	}
	if _, err := ca.Exec(ctx, "CREATE TABLE only_in_a (x int)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := cb.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'").Scan(&n); err != nil || n != 0 {
		t.Errorf("a table made in one database shows in the other: %d, %v", n, err)
	}
	// Not root, whatever we are.
	var pid int
	if err := ca.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" && f[1] == "0" {
			t.Errorf("the server runs as root: %s", line)
		}
	}
	// Without the password, no entry.
	bad := strings.Replace(a, shared.password, "wrong", 1)
	if conn, err := pgx.Connect(ctx, bad); err == nil {
		conn.Close(ctx)
		t.Error("connected with a wrong password")
	}
}

func TestDatabaseDroppedAtCleanup(t *testing.T) {
	var name string
	t.Run("inner", func(t *testing.T) {
		dsn := Start(t)
		name = dsn[strings.LastIndexByte(dsn, '/')+1 : strings.IndexByte(dsn, '?')]
	})
	mu.Lock()
	defer mu.Unlock()
	var n int
	if err := shared.admin.QueryRow(context.Background(), "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil || n != 0 {
		t.Errorf("database %s still there after its test: %d, %v", name, n, err)
	}
}

const helperEnv = "PGTEST_HELPER"

// TestHelperCluster is the test binary's stand-in for a test that dies: it
// starts a cluster, says where, and waits to be killed.
func TestHelperCluster(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("run by TestServerDiesWithTestBinary")
	}
	Start(t)
	fmt.Printf("READY %d %s\n", shared.cmd.Process.Pid, shared.dir)
	time.Sleep(time.Minute)
}

// TestServerDiesWithTestBinary kills a test binary that has a cluster
// running, with SIGKILL so nothing in it can clean up: the server must
// stop by itself, and the next sweep must remove its folder.
func TestServerDiesWithTestBinary(t *testing.T) {
	if err := installed(); err != nil {
		skipOrFail(t, err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperCluster$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var pid int
	var dir string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "READY" {
			pid, _ = strconv.Atoi(f[1])
			dir = f[2]
			break
		}
	}
	if pid == 0 {
		t.Fatal("the helper did not report a server")
	}
	if !running(pid) {
		t.Fatalf("server %d not running", pid)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGQUIT)
			t.Fatalf("server %d still running 30s after its test binary died", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the dead binary's folder %s: %v", dir, err)
	}
	sweep(filepath.Dir(dir))
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		os.RemoveAll(dir)
		t.Errorf("sweep left %s: %v", dir, err)
	}
}

func TestSweep(t *testing.T) {
	base := t.TempDir()
	mk := func(name, owner string) string {
		dir := filepath.Join(base, "pgtest-"+name)
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
			t.Fatal(err)
		}
		if owner != "" {
			if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(owner), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	// A pid that has ended: a child we reaped.
	child := exec.Command("true")
	if err := child.Run(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		owner string
		keep  bool
	}{
		{"live", ownerLine(os.Getpid()), true},
		{"dead", fmt.Sprintf("%d 1\n", child.Process.Pid), false},
		{"reused pid", fmt.Sprintf("%d 1\n", os.Getpid()), false}, // our pid, another start time
		{"no owner", "", true},
		{"garbled owner", "who knows", true},
	}
	dirs := map[string]string{}
	for _, tc := range cases {
		dirs[tc.name] = mk(strings.ReplaceAll(tc.name, " ", "-"), tc.owner)
	}
	other := filepath.Join(base, "unrelated")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	sweep(base)
	for _, tc := range cases {
		_, err := os.Stat(dirs[tc.name])
		if kept := err == nil; kept != tc.keep {
			t.Errorf("%s: kept %v, want %v", tc.name, kept, tc.keep)
		}
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("sweep touched an unrelated folder: %v", err)
	}
}

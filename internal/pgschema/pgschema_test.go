package pgschema

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/boxswarm/boxswarm/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var (
	one = Schema{VersionTable: "one_version", Lock: 0x6f6e65, Version: 2, DDL: "CREATE TABLE one_things (id int)"}
	two = Schema{VersionTable: "two_version", Lock: 0x74776f, Version: 1, DDL: "CREATE TABLE two_things (id int)"}
)

func connect(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, where, err := Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(where, "127.0.0.1:") || !strings.Contains(where, "/pgtest_") {
		t.Errorf("where %q, want host:port/database", where)
	}
	t.Cleanup(pool.Close)
	return pool
}

// TestPrepare creates two schemas in one database, racing openers on each,
// and checks that each is created once and then accepted as it is.
func TestPrepare(t *testing.T) {
	ctx := context.Background()
	pool := connect(t, pgtest.Start(t))
	for _, s := range []Schema{one, two} {
		var wg sync.WaitGroup
		var mu sync.Mutex
		creators := 0
		for range 4 {
			wg.Go(func() {
				created, err := Prepare(ctx, pool, s)
				if err != nil {
					t.Errorf("%s: %v", s.VersionTable, err)
				}
				if created {
					mu.Lock()
					creators++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if creators != 1 {
			t.Errorf("%s: created by %d openers, want 1", s.VersionTable, creators)
		}
		var rows, version int
		if err := pool.QueryRow(ctx, "SELECT count(*), max(version) FROM "+s.VersionTable).Scan(&rows, &version); err != nil ||
			rows != 1 || version != s.Version {
			t.Errorf("%s: %d rows, version %d, %v; want 1 row, version %d", s.VersionTable, rows, version, err, s.Version)
		}
		table := strings.Fields(s.DDL)[2]
		if _, err := pool.Exec(ctx, "SELECT id FROM "+table); err != nil {
			t.Errorf("%s: DDL not run: %v", s.VersionTable, err)
		}
	}
}

// TestPrepareRefuses checks that a version table with another version, or
// none, is refused with a message that says which.
func TestPrepareRefuses(t *testing.T) {
	ctx := context.Background()
	pool := connect(t, pgtest.Start(t))
	if _, err := Prepare(ctx, pool, one); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, sql, want string
	}{
		{"newer", "UPDATE one_version SET version = 3", "schema version 3 is newer than this build's 2"},
		{"older", "UPDATE one_version SET version = 1", "schema version 1 is older than this build's 2, and there is no migration"},
		{"empty", "DELETE FROM one_version", "table one_version is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := pool.Exec(ctx, tc.sql); err != nil {
				t.Fatal(err)
			}
			created, err := Prepare(ctx, pool, one)
			if err == nil || err.Error() != tc.want || created {
				t.Errorf("Prepare: created %v, error %v; want %q", created, err, tc.want)
			}
		})
	}
}

// TestErrorsHidePassword checks the errors of a DSN the parser refuses
// and of one the server refuses (pgxpool connects on first use, so that
// one surfaces from Prepare).
func TestErrorsHidePassword(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Start(t)
	pw := dsn[strings.Index(dsn, "postgres:")+len("postgres:") : strings.Index(dsn, "@")]
	if !strings.Contains(dsn, "sslmode=disable") {
		t.Fatalf("pgtest's DSN has no sslmode=disable to spoil")
	}
	_, _, err := Connect(ctx, strings.Replace(dsn, "sslmode=disable", "sslmode=bogus", 1))
	if err == nil {
		t.Fatal("Connect took sslmode=bogus")
	}
	if strings.Contains(err.Error(), pw) {
		t.Errorf("Connect error shows the password: %v", err)
	}

	pool, where, err := Connect(ctx, strings.Replace(dsn, "/pgtest_", "/no_such_db_", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err = Prepare(ctx, pool, one); err == nil {
		t.Fatalf("prepared %s, which does not exist", where)
	}
	if strings.Contains(err.Error(), pw) {
		t.Errorf("Prepare error shows the password: %v", err)
	}
}

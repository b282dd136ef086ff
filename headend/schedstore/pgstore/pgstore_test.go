package pgstore

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/headend/schedstore/storetest"
	"github.com/boxswarm/boxswarm/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var quiet = WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))

func open(tb testing.TB, dsn string) *Store {
	tb.Helper()
	s, err := Open(context.Background(), dsn, quiet)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// backend gives each test a new database; reopening connects to it again.
func backend(tb testing.TB) func(testing.TB) schedstore.Store {
	dsn := pgtest.Start(tb)
	return func(tb testing.TB) schedstore.Store { return open(tb, dsn) }
}

func TestConformance(t *testing.T) { storetest.Run(t, backend) }

func BenchmarkBulk(b *testing.B) { storetest.Bench(b, backend) }

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestHostileValues stores strings made to break quoting, and checks with
// plain SQL that they arrived byte for byte and that every table is still
// there: values travel only as parameters.
func TestHostileValues(t *testing.T) {
	dsn := pgtest.Start(t)
	s := open(t, dsn)
	defer s.Close()
	ctx := context.Background()
	boxes := map[api.BoxID]string{}
	err := s.Update(ctx, func(tx schedstore.Tx) error {
		for i, str := range storetest.HostileStrings {
			b := storetest.SampleBox(uint64(i))
			b.Account, b.Cluster, b.NAT, b.PieceAddr = str, str, api.NATType(str), str
			b.Location = api.Location{Region: str, ISP: str}
			if err := tx.PutBox(b); err != nil {
				return err
			}
			boxes[b.ID] = str
			if err := tx.AddActivationCode("code "+str[:min(len(str), 900)], str); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	conn := connect(t, dsn)
	for id, want := range boxes {
		var account, cluster, nat, region, isp, addr string
		if err := conn.QueryRow(ctx, "SELECT account, cluster, nat, region, isp, piece_addr FROM boxes WHERE id = $1", [16]byte(id)).
			Scan(&account, &cluster, &nat, &region, &isp, &addr); err != nil {
			t.Fatalf("box %s: %v", id, err)
		}
		for _, got := range []string{account, cluster, nat, region, isp, addr} {
			if got != want {
				t.Errorf("box %s: stored %.40q, want %.40q", id, got, want)
			}
		}
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM activation_codes WHERE account = ANY($1)", storetest.HostileStrings).Scan(&n); err != nil ||
		n != len(storetest.HostileStrings) {
		t.Errorf("codes stored with hostile accounts: %d, %v; want %d", n, err, len(storetest.HostileStrings))
	}
	for _, table := range []string{"boxes", "holdings", "priority_lists", "titles", "transfers", "measurements",
		"outbox", "seqs", "activation_codes", "schema_version"} {
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&exists); err != nil || !exists {
			t.Errorf("table %s: exists %v, %v", table, exists, err)
		}
	}
	// And back through the store.
	got := map[api.BoxID]string{}
	if err := s.LoadBoxes(ctx, func(b schedstore.Box) error { got[b.ID] = b.Account; return nil }); err != nil {
		t.Fatal(err)
	}
	for id, want := range boxes {
		if got[id] != want {
			t.Errorf("box %s loaded with account %.40q, want %.40q", id, got[id], want)
		}
	}
}

func TestSchemaVersion(t *testing.T) {
	dsn := pgtest.Start(t)
	// Openers racing on an empty database: one creates, all succeed.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			s, err := Open(context.Background(), dsn, quiet)
			if err != nil {
				t.Error(err)
				return
			}
			s.Close()
		})
	}
	wg.Wait()
	conn := connect(t, dsn)
	var rows int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM schema_version").Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("schema_version rows: %d, %v", rows, err)
	}
	if _, err := conn.Exec(context.Background(), "UPDATE schema_version SET version = $1", schemaVersion+1); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(context.Background(), dsn, quiet); err == nil {
		s.Close()
		t.Fatal("opened a database with a newer schema")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Errorf("error %q does not say the schema is newer", err)
	}
}

func TestOpenErrorHidesPassword(t *testing.T) {
	dsn := pgtest.Start(t)
	bad := strings.Replace(dsn, "/pgtest_", "/no_such_db_", 1)
	_, err := Open(context.Background(), bad, quiet)
	if err == nil {
		t.Fatal("opened a database that does not exist")
	}
	pw := dsn[strings.Index(dsn, "postgres:")+len("postgres:") : strings.Index(dsn, "@")]
	if strings.Contains(err.Error(), pw) {
		t.Errorf("error shows the password: %v", err)
	}
}

package pgstore

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/headend/customers/storetest"
	"github.com/boxswarm/boxswarm/internal/pgtest"
	"github.com/boxswarm/boxswarm/media"
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
func backend(tb testing.TB) func(testing.TB) customers.Store {
	dsn := pgtest.Start(tb)
	return func(tb testing.TB) customers.Store { return open(tb, dsn) }
}

func TestConformance(t *testing.T) { storetest.Run(t, backend) }

// BenchmarkGenres measures Genres over 15,000 titles, and the paging
// through SearchTitles it replaced.
func BenchmarkGenres(b *testing.B) { storetest.BenchGenres(b, backend, 15000) }

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

var tables = []string{"cust_schema_version", "cust_accounts", "cust_sessions", "cust_throttles", "cust_boxes",
	"cust_catalogs", "cust_titles", "cust_lists", "cust_purchases", "cust_ledger"}

// TestHostileValues stores strings made to break quoting through every
// text column of accounts and titles, checks with plain SQL that they
// arrived byte for byte, and that every table is still there.
func TestHostileValues(t *testing.T) {
	dsn := pgtest.Start(t)
	s := open(t, dsn)
	defer s.Close()
	ctx := context.Background()
	err := s.Update(ctx, func(tx customers.Tx) error {
		for i, h := range storetest.HostileStrings {
			a := storetest.SampleAccount(i)
			a.Name, a.Address.Street, a.Address.City, a.PaymentToken, a.StatusReason = h, h, h, h, h
			a.Email = h[:min(len(h), 900)] + "@" + a.Email
			if err := tx.CreateAccount(a); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	conn := connect(t, dsn)
	for i, want := range storetest.HostileStrings {
		var name, street, city, token, reason, email string
		if err := conn.QueryRow(ctx, "SELECT name, street, city, payment_token, status_reason, email FROM cust_accounts WHERE id = $1",
			string(storetest.SampleAccount(i).ID)).Scan(&name, &street, &city, &token, &reason, &email); err != nil {
			t.Fatalf("account %d: %v", i, err)
		}
		for _, got := range []string{name, street, city, token, reason} {
			if got != want {
				t.Errorf("account %d: stored %.40q, want %.40q", i, got, want)
			}
		}
		if !strings.HasPrefix(email, want[:min(len(want), 900)]+"@") {
			t.Errorf("account %d: e-mail %.40q", i, email)
		}
	}
	for _, table := range tables {
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&exists); err != nil || !exists {
			t.Errorf("table %s: exists %v, %v", table, exists, err)
		}
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM cust_accounts").Scan(&n); err != nil || n != len(storetest.HostileStrings) {
		t.Errorf("accounts: %d, %v; want %d", n, err, len(storetest.HostileStrings))
	}
}

// TestLedgerAppendOnly checks that the database itself refuses changes to
// the ledger, whoever asks.
func TestLedgerAppendOnly(t *testing.T) {
	dsn := pgtest.Start(t)
	s := open(t, dsn)
	defer s.Close()
	ctx := context.Background()
	e := customers.Entry{Account: "a", Seq: 1, Kind: customers.EntryCharge, Amount: customers.Money{Amount: 399, Currency: "EUR"},
		Title: media.ID{1}}
	if err := s.Update(ctx, func(tx customers.Tx) error { return tx.AppendEntry(e) }); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, dsn)
	for _, sql := range []string{
		"UPDATE cust_ledger SET amount = 0",
		"DELETE FROM cust_ledger",
		"TRUNCATE cust_ledger",
		"INSERT INTO cust_ledger SELECT account, seq, at, kind, amount, currency, purchase, box, title, memo, prev, hash FROM cust_ledger ON CONFLICT (account, seq) DO UPDATE SET amount = 0",
	} {
		if _, err := conn.Exec(ctx, sql); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v, want it refused as append-only", sql, err)
		}
	}
	var amount int64
	if err := conn.QueryRow(ctx, "SELECT amount FROM cust_ledger WHERE account = 'a' AND seq = 1").Scan(&amount); err != nil || amount != 399 {
		t.Errorf("entry after the attempts: amount %d, %v", amount, err)
	}
}

func TestEscapeLike(t *testing.T) {
	for in, want := range map[string]string{
		"":         "",
		"abc":      "abc",
		"50%":      `50\%`,
		"a_b":      `a\_b`,
		`c:\path`:  `c:\\path`,
		`\%_`:      `\\\%\_`,
		"'; DROP":  "'; DROP",
		"ünï%code": `ünï\%code`,
	} {
		if got := EscapeLike(in); got != want {
			t.Errorf("EscapeLike(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSchemaVersion(t *testing.T) {
	dsn := pgtest.Start(t)
	var wg sync.WaitGroup
	for range 3 {
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
	if _, err := conn.Exec(context.Background(), "UPDATE cust_schema_version SET version = $1", schemaVersion+1); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(context.Background(), dsn, quiet); err == nil {
		s.Close()
		t.Fatal("opened a database with a newer schema")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Errorf("error %q does not say the schema is newer", err)
	}
}

// TestBesideScheduler opens the store in a database that already holds
// tables of the same names the scheduler uses, unprefixed: no clash.
func TestBesideScheduler(t *testing.T) {
	dsn := pgtest.Start(t)
	conn := connect(t, dsn)
	if _, err := conn.Exec(context.Background(), "CREATE TABLE schema_version (version integer); CREATE TABLE boxes (id uuid)"); err != nil {
		t.Fatal(err)
	}
	s := open(t, dsn)
	defer s.Close()
	err := s.View(context.Background(), func(tx customers.ReadTx) error { _, err := tx.Box("x"); return err })
	if !errors.Is(err, customers.ErrNotFound) {
		t.Errorf("box in a fresh store: %v", err)
	}
}

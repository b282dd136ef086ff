package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/headend/customers"
)

// badKeys are keys no record can have (CheckRecord refuses them), around
// the keys of the records testBadKeys stores: NUL, invalid UTF-8, too
// long. PostgreSQL refuses the first two in text.
func badKeys(stored ...string) []string {
	keys := []string{"\x00", "\x00\x00", "\xff", "\xc3", "\xed\xa0\x80", "\xc0\x80", "ok\xfe",
		strings.Repeat("k", customers.MaxKeyLen+1), strings.Repeat("ü", customers.MaxKeyLen/2) + "\x00"}
	for _, k := range stored {
		// k and seven NULs would find k's ledger in a store that keyed
		// entries by ID, NUL, 8-byte sequence number and did not check.
		keys = append(keys, k+"\x00", k+strings.Repeat("\x00", 7), "\x00"+k, k[:1]+"\x00"+k[1:], k+"\xff", k[:len(k)-1]+"\x80",
			k+strings.Repeat("x", customers.MaxKeyLen+1-len(k)))
	}
	return keys
}

// lookUpBadKey checks that every lookup by key answers a bad key as it
// answers one that is not there: ErrNotFound, or nothing.
func lookUpBadKey(t *testing.T, where string, tx customers.ReadTx, key string) {
	t.Helper()
	one := []struct {
		name string
		fn   func() error
	}{
		{"Account", func() error { _, err := tx.Account(customers.AccountID(key)); return err }},
		{"AccountByEmail", func() error { _, err := tx.AccountByEmail(key); return err }},
		{"Throttle", func() error { _, err := tx.Throttle(key); return err }},
		{"Box", func() error { _, err := tx.Box(customers.BoxRef(key)); return err }},
		{"BoxByCode", func() error { _, err := tx.BoxByCode(key); return err }},
		{"Catalog", func() error { _, err := tx.Catalog(customers.CatalogID(key)); return err }},
		{"List", func() error { _, err := tx.List(customers.BoxRef(key)); return err }},
		{"Purchase", func() error { _, err := tx.Purchase(customers.PurchaseID(key)); return err }},
		{"LastEntry", func() error { _, err := tx.LastEntry(customers.AccountID(key)); return err }},
	}
	for _, l := range one {
		if err := l.fn(); !errors.Is(err, customers.ErrNotFound) {
			t.Errorf("%s: %s(%.40q): %v, want ErrNotFound", where, l.name, key, err)
		}
	}
	many := []struct {
		name string
		fn   func() (int, error)
	}{
		{"BoxesOf", func() (int, error) { v, err := tx.BoxesOf(customers.AccountID(key)); return len(v), err }},
		{"PurchasesOf", func() (int, error) { v, err := tx.PurchasesOf(customers.AccountID(key)); return len(v), err }},
		{"PurchasesFor", func() (int, error) { v, err := tx.PurchasesFor(customers.BoxRef(key), mediaID(1)); return len(v), err }},
		{"Ledger", func() (int, error) { v, err := tx.Ledger(customers.AccountID(key), 0, 10); return len(v), err }},
	}
	for _, l := range many {
		if n, err := l.fn(); n != 0 || err != nil {
			t.Errorf("%s: %s(%.40q): %d, %v; want none", where, l.name, key, n, err)
		}
	}
}

// testBadKeys looks records up by keys no record can have, in a View and
// in an Update: each answers as for a key that is not there, and the
// Update goes on to commit its writes (PostgreSQL would refuse such text
// and fail the transaction, were it sent).
func testBadKeys(t *testing.T, s customers.Store, _ *harness) {
	a := SampleAccount(1)
	b := sampleBox(1, a.ID)
	ti := SampleTitle(1, "studio")
	p := samplePurchase(1, a.ID, b.Ref, ti.Media)
	sess := customers.Session{Hash: customers.HashSessionID("sid"), Account: a.ID, Created: base, Expires: base.Add(time.Hour)}
	th := customers.Throttle{Key: "email:" + a.Email, Failures: 1, Last: base, Until: base}
	update(t, s, func(tx customers.Tx) error {
		return errors.Join(tx.CreateAccount(a), tx.PutBox(b), tx.PutCatalog(customers.Catalog{ID: "studio", Name: "S"}),
			tx.PutTitle(ti), tx.PutList(customers.List{Box: b.Ref, Titles: nil, Updated: base}), tx.PutPurchase(p),
			tx.AppendEntry(sampleEntry(a.ID, 1)), tx.PutSession(sess), tx.PutThrottle(th))
	})
	keys := badKeys(string(a.ID), a.Email, b.Code, string(b.Ref), "studio", string(p.ID), th.Key)

	view(t, s, func(tx customers.ReadTx) error {
		for _, k := range keys {
			lookUpBadKey(t, "view", tx, k)
		}
		// The transaction is as good as before.
		_, err := tx.Account(a.ID)
		return err
	})

	a2 := SampleAccount(2)
	err := s.Update(context.Background(), func(tx customers.Tx) error {
		if err := tx.CreateAccount(a2); err != nil {
			return err
		}
		for _, k := range keys {
			lookUpBadKey(t, "update", tx, k)
			// Deletes by such keys delete nothing, and are not errors.
			if err := tx.DeleteThrottle(k); err != nil {
				t.Errorf("DeleteThrottle(%.40q): %v", k, err)
			}
			if err := tx.DeleteSessionsOf(customers.AccountID(k)); err != nil {
				t.Errorf("DeleteSessionsOf(%.40q): %v", k, err)
			}
		}
		return tx.PutCatalog(customers.Catalog{ID: "indie", Name: "I"})
	})
	if err != nil {
		t.Fatalf("update with lookups by bad keys: %v", err)
	}
	view(t, s, func(tx customers.ReadTx) error {
		if _, err := tx.Account(a2.ID); err != nil {
			t.Errorf("account created before the lookups: %v", err)
		}
		if _, err := tx.Catalog("indie"); err != nil {
			t.Errorf("catalog stored after the lookups: %v", err)
		}
		if _, err := tx.Session(sess.Hash); err != nil {
			t.Errorf("session after deletes by bad keys: %v", err)
		}
		if _, err := tx.Throttle(th.Key); err != nil {
			t.Errorf("throttle after deletes by bad keys: %v", err)
		}
		return nil
	})
}

// testSearchBadText searches with text no stored title holds (NUL,
// invalid UTF-8) in every part of a query: the store answers as the
// reference does, not with an error.
func testSearchBadText(t *testing.T, s customers.Store, _ *harness) {
	putSearchTitles(t, s)
	// Folded, invalid UTF-8 is U+FFFD, which this title has.
	odd := stored(customers.Title{Media: mediaID(100), Catalog: "indie", Name: "Broken \ufffd Name", Genre: "\ufffd",
		Regions: []string{"DE"}, PublishAt: base.Add(-time.Hour)})
	putTitles(t, s, []customers.Title{odd})
	var all []customers.Title
	view(t, s, func(tx customers.ReadTx) error {
		for i := range searchTitles {
			ti, err := tx.Title(mediaID(uint64(i + 1)))
			must(t, err)
			all = append(all, ti)
		}
		return nil
	})
	all = append(all, odd)
	bad := []string{"\x00", "matrix\x00", "\x00matrix", "\xff", "broken \xff", "\xed\xa0\x80", "\xc0\x80"}
	var queries []customers.TitleQuery
	for _, b := range bad {
		for _, q := range []customers.Query{{Text: b}, {Genre: b}, {Text: b, Genre: b}} {
			queries = append(queries, customers.TitleQuery{Query: q, Catalogs: []customers.CatalogID{"studio", "indie"}, Region: "DE", Now: base})
		}
		queries = append(queries,
			customers.TitleQuery{Catalogs: []customers.CatalogID{"studio", "indie"}, Region: b, Now: base},
			customers.TitleQuery{Catalogs: []customers.CatalogID{"studio", "indie"}, Region: "DE" + b, Now: base},
			customers.TitleQuery{Catalogs: []customers.CatalogID{customers.CatalogID(b), "indie", customers.CatalogID("studio" + b)}, Region: "DE", Now: base},
		)
	}
	for i, q := range queries {
		what := fmt.Sprintf("query %d (text %q, genre %q, region %q, catalogs %q)", i, q.Text, q.Genre, q.Region, q.Catalogs)
		got, err := s.SearchTitles(context.Background(), q)
		if want := customers.Search(q, all); err != nil || !slices.Equal(names(got), names(want)) || got.Total != want.Total {
			t.Errorf("search %s: %q (%d), %v; want %q (%d)", what, names(got), got.Total, err, names(want), want.Total)
		}
		if q.Text == "" && q.Genre == "" {
			g, err := s.Genres(context.Background(), q)
			if want := refGenres(q, all); err != nil || !slices.Equal(g, want) {
				t.Errorf("genres %s: %q, %v; want %q", what, g, err, want)
			}
		}
	}
	// Some of them find something, or the test shows little.
	if p := customers.Search(queries[3], all); queries[3].Region != "\x00" || p.Total == 0 {
		t.Errorf("the reference finds nothing in region NUL (the titles allowed everywhere)")
	}
	if p := customers.Search(customers.TitleQuery{Query: customers.Query{Text: "\xff"}, Catalogs: []customers.CatalogID{"indie"}, Region: "DE", Now: base}, all); p.Total != 1 {
		t.Errorf("the reference finds %d titles for invalid UTF-8, want the one with U+FFFD", p.Total)
	}
}

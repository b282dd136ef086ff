// Package storetest is the conformance suite every customers.Store backend
// must pass, so that the head-end can move between bbolt and PostgreSQL
// without noticing. Run holds a backend to the Store interface's
// documentation and settles what it leaves open:
//
//   - Values. Times come back in UTC, truncated to the microsecond; they
//     must lie in the years 1 to 9999. Strings must be valid UTF-8 without
//     NUL, and keys (IDs, e-mail addresses, codes) at most MaxKeyLen bytes
//     (customers.CheckRecord refuses the rest, and the Update fails).
//     An empty slice may come back as nil and the other way round.
//     Everything else comes back exactly, however much it looks like SQL,
//     LIKE patterns, escapes or markup (HostileStrings).
//   - Put* replace by key; deletes of what is not there are not errors.
//     Indexes follow: a box whose code or device changes is found by the
//     new one only; an account whose e-mail address changes frees the old.
//   - Orders: BoxesOf by Added then Ref, PurchasesOf and PurchasesFor by
//     At then ID, Catalogs by ID, Ledger by Seq, all byte-wise.
//   - Ledger entries are appended, never replaced: appending a Seq the
//     account has is ErrExists and leaves the entry as it was.
//   - Update is all or nothing: fn's error comes back (errors.Is finds it)
//     and nothing is stored; a Tx error other than ErrNotFound, ErrExists
//     and ErrEmailTaken fails the Update even if fn ignores it; a panic in
//     fn stores nothing and propagates. Concurrent Updates behave as if run
//     one after another (fn may run again). A Tx is dead once fn returns.
//   - Lookups by a key no record can have (NUL, invalid UTF-8, longer than
//     MaxKeyLen) answer as for a key that is not there, in a View or an
//     Update, and the Update goes on; deletes by one delete nothing.
//   - Search answers exactly as customers.Search does over the same titles,
//     whatever text the query holds.
//   - Genres answers as a reference worked out from TitleQuery.Visible
//     over the same titles: one genre per fold, the least spelling with
//     white space runs made one space, in the order of the folds.
//   - A done context fails View, Update, SearchTitles and Genres.
//   - What an Update stored survives Close and reopening.
package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/boxswarm/boxswarm/headend/customers"
)

// Backend makes a new, empty backing location (a file, a database) and
// returns a function that opens a Store on it. The suite opens again only
// after closing the Store it had, and expects to find what was stored.
type Backend func(tb testing.TB) (open func(tb testing.TB) customers.Store)

// Run runs the conformance suite against a backend.
func Run(t *testing.T, backend Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s customers.Store, h *harness)
	}{
		{"RoundTrip", testRoundTrip},
		{"NotFound", testNotFound},
		{"Accounts", testAccounts},
		{"Sessions", testSessions},
		{"Throttles", testThrottles},
		{"Boxes", testBoxes},
		{"Catalogs", testCatalogs},
		{"Purchases", testPurchases},
		{"Ledger", testLedger},
		{"LedgerConcurrent", testLedgerConcurrent},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"UpdateError", testUpdateError},
		{"UpdateSpoiled", testUpdateSpoiled},
		{"UpdatePanic", testUpdatePanic},
		{"TxAfterUpdate", testTxAfterUpdate},
		{"ContextDone", testContextDone},
		{"HostileStrings", testHostileStrings},
		{"SearchSemantics", testSearchSemantics},
		{"SearchHostile", testSearchHostile},
		{"SearchModel", testSearchModel},
		{"SearchBadText", testSearchBadText},
		{"GenresSemantics", testGenresSemantics},
		{"GenresModel", testGenresModel},
		{"BadKeys", testBadKeys},
		{"Reopen", testReopen},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &harness{open: backend(t)}
			tc.fn(t, h.store(t), h)
		})
	}
}

// harness opens stores on one location and closes them.
type harness struct {
	open func(tb testing.TB) customers.Store
}

// store opens a Store that is closed when the test ends.
func (h *harness) store(t testing.TB) customers.Store {
	t.Helper()
	s := h.open(t)
	closeOnce := sync.OnceValue(s.Close)
	t.Cleanup(func() {
		if err := closeOnce(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return &closer{Store: s, close: closeOnce}
}

// closer makes Close safe to call again.
type closer struct {
	customers.Store
	close func() error
}

func (c *closer) Close() error { return c.close() }

func update(t testing.TB, s customers.Store, fn func(customers.Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatalf("update: %v", err)
	}
}

func view(t testing.TB, s customers.Store, fn func(customers.ReadTx) error) {
	t.Helper()
	if err := s.View(context.Background(), fn); err != nil {
		t.Fatalf("view: %v", err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wantErr fails unless err is target.
func wantErr(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: %v, want %v", what, err, target)
	}
}

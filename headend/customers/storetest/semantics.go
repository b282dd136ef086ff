package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/media"
)

func testRoundTrip(t *testing.T, s customers.Store, _ *harness) {
	a := SampleAccount(1)
	sess := customers.Session{Hash: customers.HashSessionID("sid"), Account: a.ID, CSRF: "csrf-token", Addr: "192.0.2.1:4000",
		Created: base, Expires: base.Add(time.Hour)}
	th := customers.Throttle{Key: "email:viewer1@example.com", Failures: 7, Last: base, Until: base.Add(time.Minute)}
	b := sampleBox(1, a.ID)
	unactivated := sampleBox(2, a.ID)
	unactivated.Device, unactivated.Activated = api.BoxID{}, time.Time{}
	cat := customers.Catalog{ID: "studio", Vendor: "Big Studio", Name: "Big Studio Classics"}
	ti := SampleTitle(1, cat.ID)
	bare := customers.Title{Media: mediaID(2), Catalog: cat.ID, Regions: []string{"*"}}
	l := customers.List{Box: b.Ref, Titles: []media.ID{mediaID(1), mediaID(2)}, Version: 1<<64 - 1, Updated: base}
	long := customers.List{Box: unactivated.Ref, Updated: base}
	for i := range customers.MaxListTitles {
		long.Titles = append(long.Titles, mediaID(uint64(i)))
	}
	p := samplePurchase(1, a.ID, b.Ref, ti.Media)
	buy := samplePurchase(2, a.ID, b.Ref, ti.Media)
	buy.Kind, buy.Expires, buy.Voided, buy.Price = customers.KindBuy, time.Time{}, true, customers.Money{Amount: -5, Currency: "JPY"}
	e := sampleEntry(a.ID, 1)
	e.Amount.Amount = -1 << 63

	update(t, s, func(tx customers.Tx) error {
		return errors.Join(tx.CreateAccount(a), tx.PutSession(sess), tx.PutThrottle(th), tx.PutBox(b), tx.PutBox(unactivated),
			tx.PutCatalog(cat), tx.PutTitle(ti), tx.PutTitle(bare), tx.PutList(l), tx.PutList(long),
			tx.PutPurchase(p), tx.PutPurchase(buy), tx.AppendEntry(e))
	})
	check := func(tx customers.ReadTx) {
		got, err := tx.Account(a.ID)
		must(t, err)
		same(t, "account", got, a)
		got, err = tx.AccountByEmail(a.Email)
		must(t, err)
		same(t, "account by e-mail", got, a)
		gs, err := tx.Session(sess.Hash)
		must(t, err)
		same(t, "session", gs, sess)
		gt, err := tx.Throttle(th.Key)
		must(t, err)
		same(t, "throttle", gt, th)
		for _, want := range []customers.Box{b, unactivated} {
			gb, err := tx.Box(want.Ref)
			must(t, err)
			same(t, "box", gb, want)
			gb, err = tx.BoxByCode(want.Code)
			must(t, err)
			same(t, "box by code", gb, want)
		}
		gb, err := tx.BoxByDevice(b.Device)
		must(t, err)
		same(t, "box by device", gb, b)
		gc, err := tx.Catalog(cat.ID)
		must(t, err)
		same(t, "catalog", gc, cat)
		for _, want := range []customers.Title{ti, bare} {
			gti, err := tx.Title(want.Media)
			must(t, err)
			same(t, "title", gti, want)
		}
		for _, want := range []customers.List{l, long} {
			gl, err := tx.List(want.Box)
			must(t, err)
			same(t, "list", gl, want)
		}
		for _, want := range []customers.Purchase{p, buy} {
			gp, err := tx.Purchase(want.ID)
			must(t, err)
			same(t, "purchase", gp, want)
		}
		ge, err := tx.LastEntry(a.ID)
		must(t, err)
		same(t, "ledger entry", ge, e)
	}
	// In the writing transaction and afterwards.
	update(t, s, func(tx customers.Tx) error { check(tx); return nil })
	view(t, s, func(tx customers.ReadTx) error { check(tx); return nil })
}

func testNotFound(t *testing.T, s customers.Store, _ *harness) {
	view(t, s, func(tx customers.ReadTx) error {
		_, err := tx.Account("nobody")
		wantErr(t, "account", err, customers.ErrNotFound)
		_, err = tx.AccountByEmail("nobody@example.com")
		wantErr(t, "account by e-mail", err, customers.ErrNotFound)
		_, err = tx.Session(customers.HashSessionID("x"))
		wantErr(t, "session", err, customers.ErrNotFound)
		_, err = tx.Throttle("email:x")
		wantErr(t, "throttle", err, customers.ErrNotFound)
		_, err = tx.Box("nobox")
		wantErr(t, "box", err, customers.ErrNotFound)
		_, err = tx.BoxByCode("NOCODE")
		wantErr(t, "box by code", err, customers.ErrNotFound)
		_, err = tx.BoxByDevice(deviceID(9))
		wantErr(t, "box by device", err, customers.ErrNotFound)
		_, err = tx.BoxByDevice(api.BoxID{})
		wantErr(t, "box by zero device", err, customers.ErrNotFound)
		_, err = tx.Catalog("nocat")
		wantErr(t, "catalog", err, customers.ErrNotFound)
		_, err = tx.Title(mediaID(9))
		wantErr(t, "title", err, customers.ErrNotFound)
		_, err = tx.List("nobox")
		wantErr(t, "list", err, customers.ErrNotFound)
		_, err = tx.Purchase("nop")
		wantErr(t, "purchase", err, customers.ErrNotFound)
		_, err = tx.LastEntry("nobody")
		wantErr(t, "last entry", err, customers.ErrNotFound)
		for what, n := range map[string]func() (int, error){
			"boxes":         func() (int, error) { v, err := tx.BoxesOf("nobody"); return len(v), err },
			"catalogs":      func() (int, error) { v, err := tx.Catalogs(); return len(v), err },
			"purchases of":  func() (int, error) { v, err := tx.PurchasesOf("nobody"); return len(v), err },
			"purchases for": func() (int, error) { v, err := tx.PurchasesFor("nobox", mediaID(1)); return len(v), err },
			"ledger":        func() (int, error) { v, err := tx.Ledger("nobody", 0, 10); return len(v), err },
		} {
			if got, err := n(); err != nil || got != 0 {
				t.Errorf("%s of nothing: %d, %v", what, got, err)
			}
		}
		return nil
	})
	// Deleting what is not there is not an error.
	update(t, s, func(tx customers.Tx) error {
		_, err1 := tx.DeleteSessionsBefore(base)
		_, err2 := tx.DeleteThrottlesBefore(base)
		return errors.Join(tx.DeleteSession(customers.HashSessionID("x")), tx.DeleteSessionsOf("nobody"),
			tx.DeleteThrottle("nothing"), err1, err2)
	})
}

func testAccounts(t *testing.T, s customers.Store, _ *harness) {
	a, b := SampleAccount(1), SampleAccount(2)
	update(t, s, func(tx customers.Tx) error { return errors.Join(tx.CreateAccount(a), tx.CreateAccount(b)) })

	// Answers do not spoil the Update: what else fn wrote is stored.
	c := SampleAccount(3)
	update(t, s, func(tx customers.Tx) error {
		dupID := SampleAccount(9)
		dupID.ID = a.ID
		wantErr(t, "create with a taken ID", tx.CreateAccount(dupID), customers.ErrExists)
		dupEmail := SampleAccount(9)
		dupEmail.Email = a.Email
		wantErr(t, "create with a taken e-mail", tx.CreateAccount(dupEmail), customers.ErrEmailTaken)
		wantErr(t, "put a missing account", tx.PutAccount(SampleAccount(8)), customers.ErrNotFound)
		steal := b
		steal.Email = a.Email
		wantErr(t, "put with another's e-mail", tx.PutAccount(steal), customers.ErrEmailTaken)
		return tx.CreateAccount(c)
	})
	view(t, s, func(tx customers.ReadTx) error {
		got, err := tx.Account(c.ID)
		must(t, err)
		same(t, "account created after answers", got, c)
		got, err = tx.Account(b.ID)
		must(t, err)
		same(t, "account not stolen", got, b)
		_, err = tx.Account(SampleAccount(9).ID)
		wantErr(t, "refused account", err, customers.ErrNotFound)
		return nil
	})

	// Changing the e-mail address frees the old one.
	a2 := a
	a2.Email, a2.Name, a2.Status, a2.Catalogs = "new@example.com", "Renamed", customers.StatusSuspended, nil
	update(t, s, func(tx customers.Tx) error { return tx.PutAccount(a2) })
	d := SampleAccount(4)
	d.Email = a.Email
	update(t, s, func(tx customers.Tx) error { return tx.CreateAccount(d) })
	view(t, s, func(tx customers.ReadTx) error {
		got, err := tx.AccountByEmail("new@example.com")
		must(t, err)
		same(t, "account by new e-mail", got, a2)
		got, err = tx.AccountByEmail(a.Email)
		must(t, err)
		same(t, "old e-mail, new owner", got, d)
		return nil
	})
}

func testSessions(t *testing.T, s customers.Store, _ *harness) {
	mk := func(id string, account customers.AccountID, exp time.Duration) customers.Session {
		return customers.Session{Hash: customers.HashSessionID(id), Account: account, CSRF: "c-" + id, Created: base, Expires: base.Add(exp)}
	}
	// "a" and "a\x01…" style neighbours: one account's sessions must not
	// catch another's.
	ss := []customers.Session{mk("1", "a", time.Hour), mk("2", "a", -time.Hour), mk("3", "ab", time.Hour), mk("4", "b", -time.Minute)}
	update(t, s, func(tx customers.Tx) error {
		for _, x := range ss {
			must(t, tx.PutSession(x))
		}
		return nil
	})
	// Replacing keeps one session.
	moved := ss[0]
	moved.Account = "b"
	update(t, s, func(tx customers.Tx) error { return tx.PutSession(moved) })
	update(t, s, func(tx customers.Tx) error { return tx.DeleteSessionsOf("a") })
	present := func(want ...customers.Session) {
		t.Helper()
		view(t, s, func(tx customers.ReadTx) error {
			for _, x := range ss {
				got, err := tx.Session(x.Hash)
				i := slices.IndexFunc(want, func(w customers.Session) bool { return w.Hash == x.Hash })
				switch {
				case i < 0 && !errors.Is(err, customers.ErrNotFound):
					t.Errorf("session %x: %v, want it gone", x.Hash[:4], err)
				case i >= 0 && err != nil:
					t.Errorf("session %x: %v", x.Hash[:4], err)
				case i >= 0:
					same(t, "session", got, want[i])
				}
			}
			return nil
		})
	}
	present(moved, ss[2], ss[3])
	var n int
	update(t, s, func(tx customers.Tx) error {
		var err error
		n, err = tx.DeleteSessionsBefore(base) // ss[3] expired a minute before
		return err
	})
	if n != 1 {
		t.Errorf("deleted %d expired sessions, want 1", n)
	}
	present(moved, ss[2])
	update(t, s, func(tx customers.Tx) error { return tx.DeleteSession(moved.Hash) })
	present(ss[2])
	// Expiring exactly at the cut is not before it.
	update(t, s, func(tx customers.Tx) error {
		var err error
		n, err = tx.DeleteSessionsBefore(ss[2].Expires)
		return err
	})
	if n != 0 {
		t.Errorf("deleted %d sessions expiring at the cut, want 0", n)
	}
	present(ss[2])
}

func testThrottles(t *testing.T, s customers.Store, _ *harness) {
	old := customers.Throttle{Key: "addr:192.0.2.1", Failures: 3, Last: base.Add(-2 * time.Hour), Until: base.Add(-time.Hour)}
	recent := customers.Throttle{Key: "email:x@example.com", Failures: 30, Last: base, Until: base.Add(15 * time.Minute)}
	update(t, s, func(tx customers.Tx) error { return errors.Join(tx.PutThrottle(old), tx.PutThrottle(recent)) })
	recent.Failures++
	update(t, s, func(tx customers.Tx) error { return tx.PutThrottle(recent) })
	var n int
	update(t, s, func(tx customers.Tx) error {
		var err error
		n, err = tx.DeleteThrottlesBefore(base.Add(-time.Hour))
		return err
	})
	if n != 1 {
		t.Errorf("deleted %d old throttles, want 1", n)
	}
	view(t, s, func(tx customers.ReadTx) error {
		_, err := tx.Throttle(old.Key)
		wantErr(t, "old throttle", err, customers.ErrNotFound)
		got, err := tx.Throttle(recent.Key)
		must(t, err)
		same(t, "throttle", got, recent)
		return nil
	})
	update(t, s, func(tx customers.Tx) error { return tx.DeleteThrottle(recent.Key) })
	view(t, s, func(tx customers.ReadTx) error {
		_, err := tx.Throttle(recent.Key)
		wantErr(t, "deleted throttle", err, customers.ErrNotFound)
		return nil
	})
}

func testBoxes(t *testing.T, s customers.Store, _ *harness) {
	b1, b2, b3 := sampleBox(1, "a"), sampleBox(2, "a"), sampleBox(3, "ab")
	b2.Device, b2.Activated = api.BoxID{}, time.Time{}
	// b0 is added later but dated earlier: BoxesOf orders by Added.
	b0 := sampleBox(4, "a")
	b0.Added = base.Add(-time.Hour)
	update(t, s, func(tx customers.Tx) error {
		return errors.Join(tx.PutBox(b1), tx.PutBox(b2), tx.PutBox(b3), tx.PutBox(b0))
	})
	boxesOf := func(account customers.AccountID, want ...customers.Box) {
		t.Helper()
		view(t, s, func(tx customers.ReadTx) error {
			got, err := tx.BoxesOf(account)
			must(t, err)
			if len(got) != len(want) {
				t.Fatalf("boxes of %s: %d, want %d", account, len(got), len(want))
			}
			for i := range got {
				same(t, fmt.Sprintf("box %d of %s", i, account), got[i], want[i])
			}
			return nil
		})
	}
	boxesOf("a", b0, b1, b2)
	boxesOf("ab", b3)

	update(t, s, func(tx customers.Tx) error {
		taken := sampleBox(9, "a")
		taken.Code = b1.Code
		wantErr(t, "box with a taken code", tx.PutBox(taken), customers.ErrExists)
		taken = sampleBox(9, "a")
		taken.Device = b1.Device
		wantErr(t, "box with a taken device", tx.PutBox(taken), customers.ErrExists)
		return nil
	})
	view(t, s, func(tx customers.ReadTx) error {
		_, err := tx.Box(sampleBox(9, "a").Ref)
		wantErr(t, "refused box", err, customers.ErrNotFound)
		return nil
	})

	// Activation, and a change of code and account: indexes follow.
	b2.Device, b2.Activated, b2.Code, b2.Account = deviceID(22), base.Add(time.Hour), "NEW-CODE", "ab"
	update(t, s, func(tx customers.Tx) error { return tx.PutBox(b2) })
	view(t, s, func(tx customers.ReadTx) error {
		got, err := tx.BoxByDevice(deviceID(22))
		must(t, err)
		same(t, "activated box", got, b2)
		_, err = tx.BoxByCode(sampleBox(2, "a").Code)
		wantErr(t, "old code", err, customers.ErrNotFound)
		got, err = tx.BoxByCode("NEW-CODE")
		must(t, err)
		same(t, "box by new code", got, b2)
		return nil
	})
	boxesOf("a", b0, b1)
	boxesOf("ab", b2, b3) // b2 was added a minute before b3
	// The old code is free again.
	reuse := sampleBox(5, "b")
	reuse.Code = sampleBox(2, "a").Code
	update(t, s, func(tx customers.Tx) error { return tx.PutBox(reuse) })
}

func testCatalogs(t *testing.T, s customers.Store, _ *harness) {
	cs := []customers.Catalog{{ID: "b", Vendor: "B", Name: "Bee"}, {ID: "a", Vendor: "A", Name: "Ay"}, {ID: "B", Vendor: "C", Name: "Cee"}}
	update(t, s, func(tx customers.Tx) error {
		return errors.Join(tx.PutCatalog(cs[0]), tx.PutCatalog(cs[1]), tx.PutCatalog(cs[2]))
	})
	cs[0].Name = "Bee, renamed"
	update(t, s, func(tx customers.Tx) error { return tx.PutCatalog(cs[0]) })
	view(t, s, func(tx customers.ReadTx) error {
		got, err := tx.Catalogs()
		must(t, err)
		same(t, "catalogs by ID, byte-wise", got, []customers.Catalog{cs[2], cs[1], cs[0]})
		return nil
	})
	// A title changes in place.
	ti := SampleTitle(1, "a")
	update(t, s, func(tx customers.Tx) error { return tx.PutTitle(ti) })
	ti.Name, ti.Actors, ti.Regions, ti.Catalog = "Renamed", nil, []string{"US"}, "b"
	update(t, s, func(tx customers.Tx) error { return tx.PutTitle(ti) })
	view(t, s, func(tx customers.ReadTx) error {
		got, err := tx.Title(ti.Media)
		must(t, err)
		same(t, "changed title", got, ti)
		return nil
	})
}

func testPurchases(t *testing.T, s customers.Store, _ *harness) {
	t1, t2 := mediaID(1), mediaID(2)
	ps := []customers.Purchase{
		samplePurchase(3, "a", "box-1", t1),
		samplePurchase(1, "a", "box-1", t2),
		samplePurchase(2, "a", "box-2", t1),
		samplePurchase(4, "ab", "box-1x", t1),
	}
	// Same time, IDs decide.
	ps = append(ps, samplePurchase(5, "a", "box-1", t1))
	ps[4].At = ps[0].At
	update(t, s, func(tx customers.Tx) error {
		for _, p := range ps {
			must(t, tx.PutPurchase(p))
		}
		return nil
	})
	check := func(what string, got []customers.Purchase, err error, want ...customers.Purchase) {
		t.Helper()
		must(t, err)
		if len(got) != len(want) {
			t.Fatalf("%s: %d purchases, want %d", what, len(got), len(want))
		}
		for i := range got {
			same(t, fmt.Sprintf("%s %d", what, i), got[i], want[i])
		}
	}
	view(t, s, func(tx customers.ReadTx) error {
		got, err := tx.PurchasesOf("a")
		check("purchases of a", got, err, ps[1], ps[2], ps[0], ps[4])
		got, err = tx.PurchasesFor("box-1", t1)
		check("purchases for box-1", got, err, ps[0], ps[4])
		got, err = tx.PurchasesFor("box-1x", t1)
		check("purchases for box-1x", got, err, ps[3])
		return nil
	})
	// Voiding and moving in time keep the indexes right.
	ps[0].Voided, ps[0].At = true, base.Add(time.Hour)
	update(t, s, func(tx customers.Tx) error { return tx.PutPurchase(ps[0]) })
	view(t, s, func(tx customers.ReadTx) error {
		got, err := tx.PurchasesOf("a")
		check("purchases of a after a change", got, err, ps[1], ps[2], ps[4], ps[0])
		got, err = tx.PurchasesFor("box-1", t1)
		check("purchases for box-1 after a change", got, err, ps[4], ps[0])
		return nil
	})
}

func testLedger(t *testing.T, s customers.Store, _ *harness) {
	var as, abs []customers.Entry
	for seq := uint64(1); seq <= 25; seq++ {
		as = append(as, sampleEntry("a", seq))
		if seq <= 3 {
			abs = append(abs, sampleEntry("ab", seq))
		}
	}
	update(t, s, func(tx customers.Tx) error {
		for _, e := range append(slices.Clone(as), abs...) {
			must(t, tx.AppendEntry(e))
		}
		return nil
	})
	// A second entry with a Seq taken is refused, and the first stays.
	update(t, s, func(tx customers.Tx) error {
		forged := as[4]
		forged.Amount.Amount, forged.Memo = 0, "refund to attacker"
		wantErr(t, "entry with a taken seq", tx.AppendEntry(forged), customers.ErrExists)
		return nil
	})
	view(t, s, func(tx customers.ReadTx) error {
		var got []customers.Entry
		for after := uint64(0); ; {
			page, err := tx.Ledger("a", after, 7)
			must(t, err)
			if len(page) == 0 {
				break
			}
			if len(page) > 7 {
				t.Fatalf("page of %d entries, limit 7", len(page))
			}
			got = append(got, page...)
			after = page[len(page)-1].Seq
		}
		same(t, "ledger of a, paged", got, as)
		got, err := tx.Ledger("ab", 1, 100)
		must(t, err)
		same(t, "ledger of ab after 1", got, abs[1:])
		got, err = tx.Ledger("a", 0, 0)
		if err != nil || len(got) != 0 {
			t.Errorf("ledger with limit 0: %d entries, %v", len(got), err)
		}
		last, err := tx.LastEntry("a")
		must(t, err)
		same(t, "last entry of a", last, as[len(as)-1])
		last, err = tx.LastEntry("ab")
		must(t, err)
		same(t, "last entry of ab", last, abs[len(abs)-1])
		return nil
	})
}

// testLedgerConcurrent appends from many goroutines, each reading the last
// entry and appending the next, as the Service does: serializable Updates
// give every entry its own number, with no gap.
func testLedgerConcurrent(t *testing.T, s customers.Store, _ *harness) {
	const workers, each = 6, 5
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				err := s.Update(context.Background(), func(tx customers.Tx) error {
					seq := uint64(1)
					last, err := tx.LastEntry("a")
					switch {
					case err == nil:
						seq = last.Seq + 1
					case !errors.Is(err, customers.ErrNotFound):
						return err
					}
					e := sampleEntry("a", seq)
					e.Memo = fmt.Sprintf("worker %d", w)
					return tx.AppendEntry(e)
				})
				if err != nil {
					t.Errorf("worker %d: %v", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	view(t, s, func(tx customers.ReadTx) error {
		es, err := tx.Ledger("a", 0, 1000)
		must(t, err)
		if len(es) != workers*each {
			t.Fatalf("%d entries, want %d", len(es), workers*each)
		}
		for i, e := range es {
			if e.Seq != uint64(i+1) {
				t.Fatalf("entry %d has seq %d", i, e.Seq)
			}
		}
		return nil
	})
}

// testConcurrentUpdates raises a list's version from many goroutines by
// read-modify-write: none may be lost.
func testConcurrentUpdates(t *testing.T, s customers.Store, _ *harness) {
	const workers, each = 6, 5
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				err := s.Update(context.Background(), func(tx customers.Tx) error {
					l, err := tx.List("box-1")
					if errors.Is(err, customers.ErrNotFound) {
						l = customers.List{Box: "box-1"}
					} else if err != nil {
						return err
					}
					l.Version++
					l.Titles = append(l.Titles, mediaID(uint64(w*100+i)))
					l.Updated = base
					return tx.PutList(l)
				})
				if err != nil {
					t.Errorf("worker %d: %v", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	view(t, s, func(tx customers.ReadTx) error {
		l, err := tx.List("box-1")
		must(t, err)
		if l.Version != workers*each || len(l.Titles) != workers*each {
			t.Errorf("version %d with %d titles after %d updates", l.Version, len(l.Titles), workers*each)
		}
		return nil
	})
}

var errTest = errors.New("fn failed on purpose")

func testUpdateError(t *testing.T, s customers.Store, _ *harness) {
	err := s.Update(context.Background(), func(tx customers.Tx) error {
		must(t, tx.CreateAccount(SampleAccount(1)))
		must(t, tx.AppendEntry(sampleEntry("a", 1)))
		return fmt.Errorf("wrapped: %w", errTest)
	})
	wantErr(t, "update", err, errTest)
	assertEmpty(t, s)
}

func testUpdateSpoiled(t *testing.T, s customers.Store, _ *harness) {
	bad := []struct {
		name  string
		write func(customers.Tx) error
	}{
		{"NUL in a name", func(tx customers.Tx) error { a := SampleAccount(2); a.Name = "a\x00b"; return tx.CreateAccount(a) }},
		{"invalid UTF-8", func(tx customers.Tx) error { c := customers.Catalog{ID: "c", Name: "\xff"}; return tx.PutCatalog(c) }},
		{"year 10000", func(tx customers.Tx) error {
			ti := SampleTitle(1, "c")
			ti.PublishAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
			return tx.PutTitle(ti)
		}},
		{"empty key", func(tx customers.Tx) error { return tx.PutBox(customers.Box{Account: "a", Code: "C"}) }},
		{"zero seq", func(tx customers.Tx) error { return tx.AppendEntry(sampleEntry("a", 0)) }},
	}
	for _, tc := range bad {
		err := s.Update(context.Background(), func(tx customers.Tx) error {
			must(t, tx.CreateAccount(SampleAccount(1)))
			if err := tc.write(tx); err == nil {
				t.Errorf("%s: the write was accepted", tc.name)
			}
			return nil // ignoring the error must not commit
		})
		if err == nil {
			t.Errorf("%s: the update committed", tc.name)
		}
	}
	assertEmpty(t, s)
}

func testUpdatePanic(t *testing.T, s customers.Store, _ *harness) {
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want the panic's value", r)
			}
		}()
		_ = s.Update(context.Background(), func(tx customers.Tx) error {
			must(t, tx.CreateAccount(SampleAccount(1)))
			panic("boom")
		})
	}()
	assertEmpty(t, s)
	update(t, s, func(tx customers.Tx) error { return tx.CreateAccount(SampleAccount(1)) })
}

func testTxAfterUpdate(t *testing.T, s customers.Store, _ *harness) {
	var kept customers.Tx
	update(t, s, func(tx customers.Tx) error { kept = tx; return nil })
	if err := kept.CreateAccount(SampleAccount(1)); err == nil {
		t.Error("a Tx wrote after its Update returned")
	}
	if _, err := kept.Account("x"); err == nil || errors.Is(err, customers.ErrNotFound) {
		t.Errorf("a Tx read after its Update returned: %v", err)
	}
	var keptR customers.ReadTx
	view(t, s, func(tx customers.ReadTx) error { keptR = tx; return nil })
	if _, err := keptR.Catalogs(); err == nil {
		t.Error("a ReadTx read after its View returned")
	}
	assertEmpty(t, s)
}

func testContextDone(t *testing.T, s customers.Store, _ *harness) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	if err := s.Update(ctx, func(tx customers.Tx) error { ran = true; return tx.CreateAccount(SampleAccount(1)) }); !errors.Is(err, context.Canceled) {
		t.Errorf("update with a done context: %v", err)
	}
	if err := s.View(ctx, func(customers.ReadTx) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("view with a done context: %v", err)
	}
	if _, err := s.SearchTitles(ctx, customers.TitleQuery{}); !errors.Is(err, context.Canceled) {
		t.Errorf("search with a done context: %v", err)
	}
	if ran {
		assertEmpty(t, s)
	}
}

// assertEmpty checks that no account, entry or catalog was stored.
func assertEmpty(t *testing.T, s customers.Store) {
	t.Helper()
	view(t, s, func(tx customers.ReadTx) error {
		if _, err := tx.Account(SampleAccount(1).ID); !errors.Is(err, customers.ErrNotFound) {
			t.Errorf("account stored: %v", err)
		}
		if es, err := tx.Ledger("a", 0, 10); err != nil || len(es) != 0 {
			t.Errorf("ledger entries stored: %d, %v", len(es), err)
		}
		if cs, err := tx.Catalogs(); err != nil || len(cs) != 0 {
			t.Errorf("catalogs stored: %d, %v", len(cs), err)
		}
		return nil
	})
}

func testReopen(t *testing.T, s customers.Store, h *harness) {
	a := SampleAccount(1)
	e := sampleEntry(a.ID, 1)
	ti := SampleTitle(1, "studio")
	update(t, s, func(tx customers.Tx) error {
		return errors.Join(tx.CreateAccount(a), tx.AppendEntry(e), tx.PutCatalog(customers.Catalog{ID: "studio", Name: "S"}), tx.PutTitle(ti))
	})
	must(t, s.Close())
	must(t, s.Close()) // twice is fine
	s = h.store(t)
	view(t, s, func(tx customers.ReadTx) error {
		got, err := tx.AccountByEmail(a.Email)
		must(t, err)
		same(t, "account after reopening", got, a)
		ge, err := tx.LastEntry(a.ID)
		must(t, err)
		same(t, "entry after reopening", ge, e)
		return nil
	})
	p, err := s.SearchTitles(context.Background(), customers.TitleQuery{Catalogs: []customers.CatalogID{"studio"}, Region: "DE", Now: base})
	must(t, err)
	if p.Total != 1 {
		t.Errorf("search after reopening: %d titles", p.Total)
	}
}

// testHostileStrings stores every hostile string in every text field of
// every record, as keys too, and reads them back exactly.
func testHostileStrings(t *testing.T, s customers.Store, _ *harness) {
	type set struct {
		a  customers.Account
		se customers.Session
		th customers.Throttle
		b  customers.Box
		c  customers.Catalog
		p  customers.Purchase
		l  customers.List
		e  customers.Entry
	}
	var sets []set
	for i, h := range HostileStrings {
		k := fmt.Sprintf("%d%s", i, h) // unique, and never empty
		k = k[:min(len(k), customers.MaxKeyLen)]
		a := SampleAccount(i)
		a.ID, a.Email, a.Name, a.PasswordHash, a.PaymentToken, a.StatusReason = customers.AccountID(k), k, h, h, h, h
		a.Address = customers.Address{Street: h, City: h, Postcode: h, Region: h}
		a.Status, a.Catalogs = customers.Status(h), []customers.CatalogID{customers.CatalogID(k), "x"}
		sets = append(sets, set{
			a:  a,
			se: customers.Session{Hash: customers.HashSessionID(k), Account: a.ID, CSRF: h, Addr: h, Created: base, Expires: base},
			th: customers.Throttle{Key: k, Failures: i, Last: base, Until: base},
			b: customers.Box{Ref: customers.BoxRef(k), Account: a.ID, Code: k, Device: deviceID(uint64(i + 1)),
				Supplier: h, Region: h, Added: base},
			c: customers.Catalog{ID: customers.CatalogID(k), Vendor: h, Name: h},
			p: customers.Purchase{ID: customers.PurchaseID(k), Account: a.ID, Box: customers.BoxRef(k), Title: mediaID(1),
				Kind: customers.Kind(h), Price: customers.Money{Amount: 1, Currency: h}, ChargeRef: h, At: base},
			l: customers.List{Box: customers.BoxRef(k), Titles: []media.ID{mediaID(uint64(i))}, Version: uint64(i), Updated: base},
			e: customers.Entry{Account: a.ID, Seq: 1, Kind: customers.EntryKind(h), Amount: customers.Money{Amount: 1, Currency: h},
				Purchase: customers.PurchaseID(h), Box: customers.BoxRef(h), Memo: h, At: base},
		})
	}
	update(t, s, func(tx customers.Tx) error {
		for _, x := range sets {
			must(t, errors.Join(tx.CreateAccount(x.a), tx.PutSession(x.se), tx.PutThrottle(x.th), tx.PutBox(x.b),
				tx.PutCatalog(x.c), tx.PutPurchase(x.p), tx.PutList(x.l), tx.AppendEntry(x.e)))
		}
		return nil
	})
	view(t, s, func(tx customers.ReadTx) error {
		for i, x := range sets {
			what := fmt.Sprintf("hostile %d %.30q", i, HostileStrings[i])
			a, err := tx.AccountByEmail(x.a.Email)
			must(t, err)
			same(t, what+" account", a, x.a)
			se, err := tx.Session(x.se.Hash)
			must(t, err)
			same(t, what+" session", se, x.se)
			th, err := tx.Throttle(x.th.Key)
			must(t, err)
			same(t, what+" throttle", th, x.th)
			b, err := tx.BoxByCode(x.b.Code)
			must(t, err)
			same(t, what+" box", b, x.b)
			bs, err := tx.BoxesOf(x.a.ID)
			must(t, err)
			if len(bs) != 1 {
				t.Errorf("%s: %d boxes", what, len(bs))
			}
			c, err := tx.Catalog(x.c.ID)
			must(t, err)
			same(t, what+" catalog", c, x.c)
			ps, err := tx.PurchasesOf(x.a.ID)
			must(t, err)
			same(t, what+" purchases", ps, []customers.Purchase{x.p})
			l, err := tx.List(x.l.Box)
			must(t, err)
			same(t, what+" list", l, x.l)
			es, err := tx.Ledger(x.a.ID, 0, 10)
			must(t, err)
			same(t, what+" ledger", es, []customers.Entry{x.e})
		}
		cs, err := tx.Catalogs()
		must(t, err)
		if len(cs) != len(sets) {
			t.Errorf("%d catalogs, want %d", len(cs), len(sets))
		}
		return nil
	})
}

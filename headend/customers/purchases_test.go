package customers_test

import (
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/headend/customers/custtest"
	"github.com/boxswarm/boxswarm/media"
)

// TestPurchaseRefusals holds each rule to its own error, and checks that
// a refused order charges nothing, records nothing and grants nothing.
func TestPurchaseRefusals(t *testing.T) {
	e := newEnv(t)
	e.catalog()
	alice, box := e.signUp("alice", "DE")
	_, bobBox := e.signUp("bob", "DE")
	suspended, suspBox := e.signUp("carol", "DE")
	must(t, e.svc.SetStatus(ctx, suspended.ID, customers.StatusSuspended, "chargeback"))
	declined, decBox := e.signUp("dave", "DE")
	e.setToken(declined.ID, custtest.TokenDeclined)
	// A box in the US on a German account: rights follow the box.
	usBox, err := e.svc.AddBox(ctx, alice.ID, "Travel Shop", "US")
	must(t, err)

	rent := func(a customers.AccountID, b customers.BoxRef, ti media.ID) customers.Order {
		return customers.Order{Account: a, Box: b, Title: ti, Kind: customers.KindRent}
	}
	buy := func(a customers.AccountID, b customers.BoxRef, ti media.ID) customers.Order {
		return customers.Order{Account: a, Box: b, Title: ti, Kind: customers.KindBuy}
	}
	cases := []struct {
		name   string
		order  customers.Order
		agreed customers.Money
		want   error
		quoted bool // Quote already refuses
	}{
		{"unknown account", rent("nobody", box.Ref, tMatrix), eur(399), customers.ErrUnknownAccount, true},
		{"suspended", rent(suspended.ID, suspBox.Ref, tMatrix), eur(399), customers.ErrSuspended, true},
		{"another's box", rent(alice.ID, bobBox.Ref, tMatrix), eur(399), customers.ErrNotYourBox, true},
		{"unknown box", rent(alice.ID, "nobox", tMatrix), eur(399), customers.ErrNotYourBox, true},
		{"unknown title", rent(alice.ID, box.Ref, mid(99)), eur(399), customers.ErrUnknownTitle, true},
		{"not subscribed", rent(alice.ID, box.Ref, tOther), eur(99), customers.ErrNotSubscribed, true},
		{"not published", rent(alice.ID, box.Ref, tPremiere), eur(599), customers.ErrNotPublished, true},
		{"region of the account", rent(alice.ID, box.Ref, tUS), eur(299), customers.ErrRegionBlocked, true},
		{"region of the box", rent(alice.ID, usBox.Ref, tMatrix), eur(399), customers.ErrRegionBlocked, true},
		{"not for sale", buy(alice.ID, box.Ref, tIndie), eur(199), customers.ErrNotForSale, true},
		{"bad kind", customers.Order{Account: alice.ID, Box: box.Ref, Title: tMatrix, Kind: "lease"}, eur(399), customers.ErrInvalid, true},
		{"not confirmed", rent(alice.ID, box.Ref, tMatrix), customers.Money{}, customers.ErrNotConfirmed, false},
		{"price changed", rent(alice.ID, box.Ref, tMatrix), eur(299), customers.ErrPriceChanged, false},
		{"other currency", rent(alice.ID, box.Ref, tMatrix), customers.Money{Amount: 399, Currency: "USD"}, customers.ErrPriceChanged, false},
		{"rent price for a purchase", buy(alice.ID, box.Ref, tMatrix), eur(399), customers.ErrPriceChanged, false},
		{"declined", rent(declined.ID, decBox.Ref, tMatrix), eur(399), customers.ErrPaymentDeclined, false},
	}
	for _, tc := range cases {
		_, err := e.svc.Quote(ctx, tc.order)
		if tc.quoted {
			wantErr(t, tc.name+": quote", err, tc.want)
		} else if err != nil {
			t.Errorf("%s: quote: %v", tc.name, err)
		}
		p, err := e.svc.Confirm(ctx, tc.order, tc.agreed)
		wantErr(t, tc.name, err, tc.want)
		if p != (customers.Purchase{}) {
			t.Errorf("%s: returned a purchase %+v", tc.name, p)
		}
	}
	if n := len(e.pay.Charges()); n != 0 {
		t.Errorf("%d charges after refusals", n)
	}
	for _, a := range []customers.AccountID{alice.ID, suspended.ID, declined.ID} {
		if es := e.ledger(a); len(es) != 0 {
			t.Errorf("ledger of %s after refusals: %+v", a, es)
		}
		if ps, err := e.svc.Purchases(ctx, a); err != nil || len(ps) != 0 {
			t.Errorf("purchases of %s after refusals: %+v, %v", a, ps, err)
		}
	}
}

func TestRental(t *testing.T) {
	e := newEnv(t)
	e.catalog()
	a, b := e.signUp("alice", "DE")
	dev := api.BoxID{0xD1}
	_, err := e.svc.BoxActivated(ctx, b.Code, dev)
	must(t, err)

	_, err = e.svc.Play(ctx, dev, tMatrix)
	wantErr(t, "play before renting", err, customers.ErrNotPurchased)

	q, err := e.svc.Quote(ctx, customers.Order{Account: a.ID, Box: b.Ref, Title: tMatrix, Kind: customers.KindRent})
	must(t, err)
	if q.Price != eur(399) || q.Due != eur(399) || q.Covered != nil || q.Window != customers.DefaultRentalWindow {
		t.Errorf("quote %+v", q)
	}
	p, err := e.svc.Rent(ctx, a.ID, b.Ref, tMatrix, q.Price)
	must(t, err)
	if p.Kind != customers.KindRent || p.Price != eur(399) || !p.Expires.Equal(start.Add(24*time.Hour)) || p.ChargeRef == "" || p.Voided {
		t.Errorf("rental %+v", p)
	}
	charges := e.pay.Charges()
	if len(charges) != 1 || charges[0].Amount != eur(399) || charges[0].Key != string(p.ID) || charges[0].Token != a.PaymentToken {
		t.Fatalf("charges %+v", charges)
	}
	es := e.ledger(a.ID)
	if len(es) != 1 || es[0].Seq != 1 || es[0].Kind != customers.EntryCharge || es[0].Amount != eur(399) ||
		es[0].Purchase != p.ID || es[0].Title != tMatrix || es[0].Box != b.Ref {
		t.Fatalf("ledger %+v", es)
	}

	// Within the window: playing and renting again cost nothing.
	e.clock.Advance(23 * time.Hour)
	q, err = e.svc.Quote(ctx, customers.Order{Account: a.ID, Box: b.Ref, Title: tMatrix, Kind: customers.KindRent})
	if err != nil || q.Covered == nil || q.Covered.ID != p.ID || !q.Due.IsZero() {
		t.Errorf("quote within the window: %+v, %v", q, err)
	}
	again, err := e.svc.Rent(ctx, a.ID, b.Ref, tMatrix, customers.Money{})
	if err != nil || again.ID != p.ID {
		t.Errorf("renting again within the window: %+v, %v; want the same rental", again, err)
	}
	grant, err := e.svc.Play(ctx, dev, tMatrix)
	if err != nil || grant.ID != p.ID {
		t.Errorf("play within the window: %+v, %v", grant, err)
	}
	if len(e.pay.Charges()) != 1 || len(e.ledger(a.ID)) != 1 {
		t.Errorf("renewed play charged: %d charges, %d entries", len(e.pay.Charges()), len(e.ledger(a.ID)))
	}

	// After it: refused, and a new rental costs again.
	e.clock.Advance(time.Hour)
	_, err = e.svc.Play(ctx, dev, tMatrix)
	wantErr(t, "play at the window's end", err, customers.ErrRentalOver)
	q, err = e.svc.Quote(ctx, customers.Order{Account: a.ID, Box: b.Ref, Title: tMatrix, Kind: customers.KindRent})
	if err != nil || q.Covered != nil || q.Due != eur(399) {
		t.Errorf("quote after the window: %+v, %v", q, err)
	}
	second, err := e.svc.Rent(ctx, a.ID, b.Ref, tMatrix, eur(399))
	if err != nil || second.ID == p.ID {
		t.Fatalf("renting after the window: %+v, %v", second, err)
	}
	if _, err := e.svc.Play(ctx, dev, tMatrix); err != nil {
		t.Errorf("play after renting again: %v", err)
	}
	if len(e.pay.Charges()) != 2 || len(e.ledger(a.ID)) != 2 {
		t.Errorf("after a second rental: %d charges, %d entries", len(e.pay.Charges()), len(e.ledger(a.ID)))
	}

	// A title's own window.
	long, err := e.svc.Rent(ctx, a.ID, b.Ref, tLong, eur(299))
	must(t, err)
	if !long.Expires.Equal(e.clock.Now().Add(48 * time.Hour)) {
		t.Errorf("48-hour rental expires %v", long.Expires)
	}
	// A free title is rented without a charge, but on the ledger.
	free, err := e.svc.Rent(ctx, a.ID, b.Ref, tFree, eur(0))
	if err != nil || free.ChargeRef != "" {
		t.Errorf("free rental: %+v, %v", free, err)
	}
	if len(e.pay.Charges()) != 3 {
		t.Errorf("%d charges, want 3 (free titles are not charged)", len(e.pay.Charges()))
	}
	if n, err := e.svc.VerifyLedger(ctx, a.ID); err != nil || n != 4 {
		t.Errorf("ledger verifies %d entries, %v; want 4", n, err)
	}
}

func TestBuy(t *testing.T) {
	e := newEnv(t)
	e.catalog()
	a, b := e.signUp("alice", "DE")
	dev := api.BoxID{0xD2}
	_, err := e.svc.BoxActivated(ctx, b.Code, dev)
	must(t, err)
	r, err := e.svc.Rent(ctx, a.ID, b.Ref, tMatrix, eur(399))
	must(t, err)
	// An open rental does not cover a purchase.
	q, err := e.svc.Quote(ctx, customers.Order{Account: a.ID, Box: b.Ref, Title: tMatrix, Kind: customers.KindBuy})
	if err != nil || q.Covered != nil || q.Due != eur(1299) {
		t.Errorf("quote to buy while renting: %+v, %v", q, err)
	}
	p, err := e.svc.Buy(ctx, a.ID, b.Ref, tMatrix, eur(1299))
	must(t, err)
	if p.Kind != customers.KindBuy || !p.Expires.IsZero() || p.ID == r.ID {
		t.Errorf("purchase %+v", p)
	}
	// Bought is bought: years later it plays, and renting costs nothing.
	e.clock.Advance(10 * 365 * 24 * time.Hour)
	if g, err := e.svc.Play(ctx, dev, tMatrix); err != nil || g.ID != p.ID {
		t.Errorf("play years later: %+v, %v", g, err)
	}
	if again, err := e.svc.Rent(ctx, a.ID, b.Ref, tMatrix, customers.Money{}); err != nil || again.ID != p.ID {
		t.Errorf("renting what was bought: %+v, %v", again, err)
	}
	if again, err := e.svc.Buy(ctx, a.ID, b.Ref, tMatrix, customers.Money{}); err != nil || again.ID != p.ID {
		t.Errorf("buying again: %+v, %v", again, err)
	}
	if len(e.pay.Charges()) != 2 {
		t.Errorf("%d charges, want 2", len(e.pay.Charges()))
	}
	// Bought for one box is not bought for another.
	other, err := e.svc.AddBox(ctx, a.ID, "Shop", "")
	must(t, err)
	q, err = e.svc.Quote(ctx, customers.Order{Account: a.ID, Box: other.Ref, Title: tMatrix, Kind: customers.KindBuy})
	if err != nil || q.Covered != nil {
		t.Errorf("quote for the second box: %+v, %v", q, err)
	}
}

func TestPlayRefusals(t *testing.T) {
	e := newEnv(t)
	e.catalog()
	a, b := e.signUp("alice", "DE")
	dev := api.BoxID{0xD3}
	_, err := e.svc.BoxActivated(ctx, b.Code, dev)
	must(t, err)
	_, err = e.svc.Buy(ctx, a.ID, b.Ref, tMatrix, eur(1299))
	must(t, err)
	_, err = e.svc.Play(ctx, api.BoxID{0xEE}, tMatrix)
	wantErr(t, "unknown box", err, customers.ErrNotYourBox)
	_, err = e.svc.Play(ctx, dev, mid(99))
	wantErr(t, "unknown title", err, customers.ErrUnknownTitle)
	_, err = e.svc.Play(ctx, dev, tPremiere)
	wantErr(t, "premiere", err, customers.ErrNotPublished)

	// Rights withdrawn after the purchase: the box's region decides.
	withdrawn := customers.Title{Media: tMatrix, Catalog: "studio", Name: "The Matrix", Buy: eur(1299), Regions: []string{"AT"}}
	must(t, e.svc.PutTitle(ctx, withdrawn))
	_, err = e.svc.Play(ctx, dev, tMatrix)
	wantErr(t, "region withdrawn", err, customers.ErrRegionBlocked)
	withdrawn.Regions = []string{"DE"}
	must(t, e.svc.PutTitle(ctx, withdrawn))
	if _, err := e.svc.Play(ctx, dev, tMatrix); err != nil {
		t.Errorf("region restored: %v", err)
	}

	must(t, e.svc.SetStatus(ctx, a.ID, customers.StatusSuspended, "unpaid"))
	_, err = e.svc.Play(ctx, dev, tMatrix)
	wantErr(t, "suspended", err, customers.ErrSuspended)
	must(t, e.svc.SetStatus(ctx, a.ID, customers.StatusActive, ""))
	if _, err := e.svc.Play(ctx, dev, tMatrix); err != nil {
		t.Errorf("active again: %v", err)
	}
}

func TestCaptureFails(t *testing.T) {
	cases := []struct {
		token string
		want  error
	}{
		{custtest.TokenCaptureFails, customers.ErrPaymentFailed},
		{custtest.TokenCaptureDenied, customers.ErrPaymentDeclined},
	}
	for _, tc := range cases {
		e := newEnv(t)
		e.catalog()
		a, b := e.signUp("alice", "DE")
		dev := api.BoxID{0xD4}
		_, err := e.svc.BoxActivated(ctx, b.Code, dev)
		must(t, err)
		e.setToken(a.ID, tc.token)
		_, err = e.svc.Rent(ctx, a.ID, b.Ref, tMatrix, eur(399))
		wantErr(t, tc.token, err, tc.want)
		// The charge was recorded first, then reversed; the purchase grants
		// nothing.
		es := e.ledger(a.ID)
		if len(es) != 2 || es[0].Kind != customers.EntryCharge || es[1].Kind != customers.EntryReversal ||
			es[0].Amount.Amount+es[1].Amount.Amount != 0 || es[0].Purchase != es[1].Purchase {
			t.Fatalf("%s: ledger %+v", tc.token, es)
		}
		if !strings.Contains(es[1].Memo, "capture") && !strings.Contains(es[1].Memo, "declined") {
			t.Errorf("%s: reversal memo %q does not say why", tc.token, es[1].Memo)
		}
		ps, _ := e.svc.Purchases(ctx, a.ID)
		if len(ps) != 1 || !ps[0].Voided {
			t.Errorf("%s: purchases %+v, want one voided", tc.token, ps)
		}
		_, err = e.svc.Play(ctx, dev, tMatrix)
		wantErr(t, tc.token+": play", err, customers.ErrNotPurchased)
		if n, err := e.svc.VerifyLedger(ctx, a.ID); err != nil || n != 2 {
			t.Errorf("%s: ledger verifies %d, %v", tc.token, n, err)
		}
		// With a card that works, the rental goes through.
		e.setToken(a.ID, custtest.TokenOK)
		if _, err := e.svc.Rent(ctx, a.ID, b.Ref, tMatrix, eur(399)); err != nil {
			t.Errorf("%s: renting with a good card: %v", tc.token, err)
		}
		if len(e.ledger(a.ID)) != 3 || len(e.pay.Charges()) != 1 {
			t.Errorf("%s: %d entries and %d charges after the good card", tc.token, len(e.ledger(a.ID)), len(e.pay.Charges()))
		}
	}
}

// TestLedgerAppendOnly checks the ledger's guarantees from the Service's
// side: the Store has no way to change or remove an entry, entries once
// written stay as they were, and a forged entry is caught.
func TestLedgerAppendOnly(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[customers.Tx](), reflect.TypeFor[customers.Store]()} {
		for i := range typ.NumMethod() {
			name := typ.Method(i).Name
			if (strings.Contains(name, "Entry") || strings.Contains(name, "Ledger")) &&
				!slices.Contains([]string{"AppendEntry", "LastEntry", "Ledger"}, name) {
				t.Errorf("%s has a method %s: the ledger must only be appended to", typ, name)
			}
		}
	}

	e := newEnv(t)
	e.catalog()
	a, b := e.signUp("alice", "DE")
	_, err := e.svc.Rent(ctx, a.ID, b.Ref, tMatrix, eur(399))
	must(t, err)
	_, err = e.svc.Rent(ctx, a.ID, b.Ref, tIndie, eur(199))
	must(t, err)
	before := e.ledger(a.ID)
	e.setToken(a.ID, custtest.TokenCaptureFails)
	_, err = e.svc.Rent(ctx, a.ID, b.Ref, tLong, eur(299))
	wantErr(t, "failed capture", err, customers.ErrPaymentFailed)
	e.setToken(a.ID, custtest.TokenOK)
	e.clock.Advance(48 * time.Hour)
	_, err = e.svc.Rent(ctx, a.ID, b.Ref, tMatrix, eur(399))
	must(t, err)
	after := e.ledger(a.ID)
	if len(after) != 5 || !reflect.DeepEqual(after[:len(before)], before) {
		t.Fatalf("entries written before changed, or not appended: before %+v after %+v", before, after)
	}
	var sum int64
	for i, en := range after {
		if en.Seq != uint64(i+1) || (i > 0 && en.Prev != after[i-1].Hash) || en.Hash != customers.EntryHash(en) {
			t.Errorf("entry %d: seq %d, not chained or not hashed", i, en.Seq)
		}
		sum += en.Amount.Amount
	}
	if sum != 399+199+399 {
		t.Errorf("ledger sums to %d, want %d", sum, 399+199+399)
	}
	if n, err := e.svc.VerifyLedger(ctx, a.ID); err != nil || n != 5 {
		t.Errorf("verify: %d, %v", n, err)
	}

	// An entry appended behind the Service's back without the chain is
	// caught.
	forged := customers.Entry{Account: a.ID, Seq: 6, At: e.clock.Now(), Kind: customers.EntryReversal,
		Amount: eur(-399), Memo: "refund"}
	forged.Hash = customers.EntryHash(forged) // right hash, wrong Prev
	must(t, e.store.Update(ctx, func(tx customers.Tx) error { return tx.AppendEntry(forged) }))
	_, err = e.svc.VerifyLedger(ctx, a.ID)
	wantErr(t, "forged entry", err, customers.ErrLedgerBroken)
}

// TestConcurrentRent has many requests rent one title for one box at once,
// on both backends: one charge, one rental, everyone gets it.
func TestConcurrentRent(t *testing.T) {
	for name, store := range map[string]func(*testing.T) customers.Store{"bolt": boltStore, "postgres": pgStore} {
		t.Run(name, func(t *testing.T) {
			e := newEnvOn(t, store(t))
			e.catalog()
			a, b := e.signUp("alice", "DE")
			const n = 8
			ids := make([]customers.PurchaseID, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					p, err := e.svc.Rent(ctx, a.ID, b.Ref, tMatrix, eur(399))
					if err != nil {
						t.Error(err)
						return
					}
					ids[i] = p.ID
				})
			}
			wg.Wait()
			for _, id := range ids {
				if id != ids[0] {
					t.Fatalf("concurrent rentals gave different purchases: %v", ids)
				}
			}
			if c := e.pay.Charges(); len(c) != 1 {
				t.Errorf("%d charges, want 1", len(c))
			}
			if es := e.ledger(a.ID); len(es) != 1 {
				t.Errorf("%d ledger entries, want 1", len(es))
			}
			// Different titles at once: all charged, the ledger one chain.
			titles := []media.ID{tIndie, tLong, tFree}
			for _, ti := range titles {
				wg.Go(func() {
					q, err := e.svc.Quote(ctx, customers.Order{Account: a.ID, Box: b.Ref, Title: ti, Kind: customers.KindRent})
					if err == nil {
						_, err = e.svc.Rent(ctx, a.ID, b.Ref, ti, q.Price)
					}
					if err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if n, err := e.svc.VerifyLedger(ctx, a.ID); err != nil || n != 1+len(titles) {
				t.Errorf("ledger verifies %d, %v; want %d", n, err, 1+len(titles))
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	// New's default parameters are the documented ones, and accepted.
	e := newEnv(t, func(c *customers.Config) { c.Password = customers.PasswordParams{} })
	e.catalog()
	began := time.Now()
	a, _ := e.signUp("alice", "DE")
	if !strings.Contains(a.PasswordHash, "$m=65536,t=3,p=2$") {
		t.Errorf("default hash %q", a.PasswordHash)
	}
	t.Logf("sign-up with the default argon2id parameters: %v", time.Since(began))
	if _, err := customers.New(customers.Config{}); err == nil {
		t.Error("New without a store succeeded")
	}
	bad := customers.Config{Store: e.store, Payments: e.pay, Activator: e.act, Password: customers.PasswordParams{Memory: 1 << 30, Time: 1, Threads: 1}}
	if _, err := customers.New(bad); err == nil {
		t.Error("New with 1 TiB of argon2 memory succeeded")
	}
}

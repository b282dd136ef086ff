package customers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
)

// Order names what a viewer wants: a title, for a box, rented or bought.
type Order struct {
	Account AccountID
	Box     BoxRef
	Title   media.ID
	Kind    Kind
}

// Quote is what an order would cost, for the confirmation screen.
type Quote struct {
	Order
	Price Money // the title's price for the order's kind
	// Due is what confirming takes: Price, or nothing (zero Money) when
	// Covered is set.
	Due Money
	// Covered is a purchase that already grants the order: an open
	// rental (for a rental) or the title bought. Confirming returns it.
	Covered *Purchase
	Window  time.Duration // rentals: how long the title plays once rented
}

// Quote checks an order against the rules and prices it. Its errors are
// the refusals Confirm would give: ErrUnknownAccount, ErrSuspended,
// ErrNotYourBox, ErrUnknownTitle, ErrNotSubscribed, ErrNotPublished,
// ErrRegionBlocked (the box's region), ErrNotForSale.
func (s *Service) Quote(ctx context.Context, o Order) (Quote, error) {
	q, err := s.quote(ctx, o)
	if err != nil {
		return Quote{}, fmt.Errorf("customers: quote %s of %s for box %s: %w", o.Kind, o.Title, o.Box, err)
	}
	return q, nil
}

func (s *Service) quote(ctx context.Context, o Order) (Quote, error) {
	var q Quote
	err := s.store.View(ctx, func(tx ReadTx) error {
		var err error
		q, _, err = evaluate(tx, o, s.clock())
		return err
	})
	return q, err
}

// evaluate applies the rules to an order at now.
func evaluate(tx ReadTx, o Order, now time.Time) (Quote, Account, error) {
	q := Quote{Order: o}
	if o.Kind != KindRent && o.Kind != KindBuy {
		return q, Account{}, fmt.Errorf("%w: kind %q", ErrInvalid, o.Kind)
	}
	a, err := activeAccount(tx, o.Account)
	if err != nil {
		return q, a, err
	}
	b, err := ownBox(tx, o.Account, o.Box)
	if err != nil {
		return q, a, err
	}
	t, err := visibleTitle(tx, a, b.Region, o.Title, now)
	if err != nil {
		return q, a, err
	}
	ps, err := tx.PurchasesFor(o.Box, o.Title)
	if err != nil {
		return q, a, err
	}
	if p := covering(ps, o.Kind, now); p != nil {
		q.Covered = p
		q.Price = priceOf(t, o.Kind)
		return q, a, nil
	}
	q.Price = priceOf(t, o.Kind)
	if q.Price.IsZero() {
		return q, a, fmt.Errorf("%s to %s: %w", o.Title, o.Kind, ErrNotForSale)
	}
	q.Due = q.Price
	if o.Kind == KindRent {
		q.Window = t.RentalWindow()
	}
	return q, a, nil
}

func priceOf(t Title, k Kind) Money {
	if k == KindBuy {
		return t.Buy
	}
	return t.Rent
}

// covering returns the purchase among ps that already grants kind at now:
// the title bought, or for a rental also a rental still open.
func covering(ps []Purchase, kind Kind, now time.Time) *Purchase {
	var open *Purchase
	for i := range ps {
		p := &ps[i]
		switch {
		case p.Voided:
		case p.Kind == KindBuy:
			return p
		case kind == KindRent && now.Before(p.Expires):
			open = p
		}
	}
	return open
}

// Rent confirms a rental at the price the viewer agreed to.
func (s *Service) Rent(ctx context.Context, account AccountID, box BoxRef, title media.ID, agreed Money) (Purchase, error) {
	return s.Confirm(ctx, Order{Account: account, Box: box, Title: title, Kind: KindRent}, agreed)
}

// Buy confirms a purchase at the price the viewer agreed to.
func (s *Service) Buy(ctx context.Context, account AccountID, box BoxRef, title media.ID, agreed Money) (Purchase, error) {
	return s.Confirm(ctx, Order{Account: account, Box: box, Title: title, Kind: KindBuy}, agreed)
}

// Confirm carries out an order the viewer confirmed at the price agreed
// (the Quote's Price they were shown). If a purchase already covers it,
// that purchase is returned and nothing is charged, whatever agreed is.
// Otherwise agreed must equal the current price (ErrNotConfirmed if zero,
// ErrPriceChanged if different), the payment method is authorized, the
// purchase and its ledger charge are stored in one transaction that checks
// every rule again, and then the payment is captured. A capture that
// fails voids the purchase and appends a reversal to the ledger. A title
// priced at zero is not charged, but its purchase is on the ledger too.
func (s *Service) Confirm(ctx context.Context, o Order, agreed Money) (Purchase, error) {
	p, err := s.confirm(ctx, o, agreed)
	if err != nil {
		return Purchase{}, fmt.Errorf("customers: %s %s for box %s: %w", o.Kind, o.Title, o.Box, err)
	}
	return p, nil
}

func (s *Service) confirm(ctx context.Context, o Order, agreed Money) (Purchase, error) {
	q, err := s.quote(ctx, o)
	if err != nil {
		return Purchase{}, err
	}
	if q.Covered != nil {
		return *q.Covered, nil
	}
	if agreed.IsZero() {
		return Purchase{}, ErrNotConfirmed
	}
	if agreed != q.Price {
		return Purchase{}, fmt.Errorf("agreed %v, price now %v: %w", agreed, q.Price, ErrPriceChanged)
	}
	var a Account
	if err := s.store.View(ctx, func(tx ReadTx) error {
		var err error
		a, err = tx.Account(o.Account)
		return err
	}); err != nil {
		return Purchase{}, err
	}
	if q.Price.Amount > 0 {
		if err := s.pay.Authorize(ctx, a.PaymentToken, q.Price); err != nil {
			return Purchase{}, err
		}
	}

	id := PurchaseID(newID())
	var p Purchase
	var covered bool
	err = s.store.Update(ctx, func(tx Tx) error {
		now := s.clock()
		q, acct, err := evaluate(tx, o, now)
		if err != nil {
			return err
		}
		if covered = q.Covered != nil; covered {
			p = *q.Covered // bought meanwhile, by a concurrent Confirm
			return nil
		}
		if q.Price != agreed {
			return fmt.Errorf("agreed %v, price now %v: %w", agreed, q.Price, ErrPriceChanged)
		}
		a = acct
		p = Purchase{ID: id, Account: o.Account, Box: o.Box, Title: o.Title, Kind: o.Kind, Price: q.Price, At: now}
		if o.Kind == KindRent {
			p.Expires = now.Add(q.Window)
		}
		if err := tx.PutPurchase(p); err != nil {
			return err
		}
		_, err = appendEntry(tx, Entry{Account: o.Account, At: now, Kind: EntryCharge, Amount: q.Price,
			Purchase: id, Box: o.Box, Title: o.Title, Memo: string(o.Kind)})
		return err
	})
	if err != nil || covered {
		return p, err
	}
	if p.Price.Amount == 0 {
		s.log.Info("purchase", "account", p.Account, "purchase", p.ID, "kind", p.Kind, "title", p.Title, "price", p.Price)
		return p, nil
	}

	ref, chargeErr := s.pay.Charge(ctx, a.PaymentToken, p.Price, string(p.ID))
	if chargeErr != nil {
		// The charge entry is committed; take it back. A ctx already
		// done must not keep the ledger from balancing.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := s.void(rctx, p, chargeErr); err != nil {
			s.log.Error("purchase not voided after a failed capture", "purchase", p.ID, "err", err, "capture", chargeErr)
			return Purchase{}, fmt.Errorf("%w: %w (and voiding the purchase failed: %w)", ErrPaymentFailed, chargeErr, err)
		}
		if errors.Is(chargeErr, ErrPaymentDeclined) {
			return Purchase{}, chargeErr
		}
		return Purchase{}, fmt.Errorf("%w: %w", ErrPaymentFailed, chargeErr)
	}
	p.ChargeRef = ref
	if err := s.store.Update(ctx, func(tx Tx) error {
		cur, err := tx.Purchase(p.ID)
		if err != nil {
			return err
		}
		cur.ChargeRef = ref
		return tx.PutPurchase(cur)
	}); err != nil {
		// The money and the ledger agree; only the reference is missing,
		// and the provider finds the charge by the purchase ID.
		s.log.Warn("charge reference not stored", "purchase", p.ID, "ref", ref, "err", err)
	}
	s.log.Info("purchase", "account", p.Account, "purchase", p.ID, "kind", p.Kind, "title", p.Title, "price", p.Price)
	return p, nil
}

// void marks a purchase as granting nothing and reverses its charge.
func (s *Service) void(ctx context.Context, p Purchase, why error) error {
	memo := why.Error()
	if len(memo) > maxTitleText {
		memo = memo[:maxTitleText]
	}
	if ValidText(memo) != nil {
		memo = "capture failed"
	}
	return s.store.Update(ctx, func(tx Tx) error {
		cur, err := tx.Purchase(p.ID)
		if err != nil {
			return err
		}
		if cur.Voided {
			return nil
		}
		cur.Voided = true
		if err := tx.PutPurchase(cur); err != nil {
			return err
		}
		_, err = appendEntry(tx, Entry{Account: p.Account, At: s.clock(), Kind: EntryReversal,
			Amount:   Money{Amount: -p.Price.Amount, Currency: p.Price.Currency},
			Purchase: p.ID, Box: p.Box, Title: p.Title, Memo: memo})
		return err
	})
}

// Play decides whether a box may play a title now, for its media pass: the
// account active, the box activated on it, the title published and allowed
// in the box's region, and bought, or rented with the window still open.
// It returns the purchase that grants it, or ErrRentalOver (rented, window
// closed), ErrNotPurchased, or another rule's error.
func (s *Service) Play(ctx context.Context, device api.BoxID, title media.ID) (Purchase, error) {
	var grant Purchase
	err := s.store.View(ctx, func(tx ReadTx) error {
		now := s.clock()
		b, err := deviceBox(tx, device)
		if err != nil {
			return err
		}
		if _, err := activeAccount(tx, b.Account); err != nil {
			return err
		}
		t, err := tx.Title(title)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%w %s", ErrUnknownTitle, title)
		} else if err != nil {
			return err
		}
		switch {
		case t.PublishAt.After(now):
			return ErrNotPublished
		case !t.AllowedIn(b.Region):
			return fmt.Errorf("region %q: %w", b.Region, ErrRegionBlocked)
		}
		ps, err := tx.PurchasesFor(b.Ref, title)
		if err != nil {
			return err
		}
		if p := covering(ps, KindRent, now); p != nil {
			grant = *p
			return nil
		}
		for _, p := range ps {
			if !p.Voided && p.Kind == KindRent {
				return fmt.Errorf("rented until %s: %w", p.Expires.Format(time.RFC3339), ErrRentalOver)
			}
		}
		return ErrNotPurchased
	})
	if err != nil {
		return Purchase{}, fmt.Errorf("customers: play %s on box %s: %w", title, device, err)
	}
	return grant, nil
}

// Purchases returns an account's purchases, oldest first.
func (s *Service) Purchases(ctx context.Context, account AccountID) ([]Purchase, error) {
	var ps []Purchase
	err := s.store.View(ctx, func(tx ReadTx) error {
		var err error
		ps, err = tx.PurchasesOf(account)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("customers: purchases of %s: %w", account, err)
	}
	return ps, nil
}

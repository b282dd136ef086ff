package customers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"unicode/utf8"
)

// Limits on what a viewer types.
const (
	MinPassword = 10
	MaxPassword = 1024 // bytes; hashing longer input would only cost time
	maxEmail    = 254
	maxText     = 200 // names, address lines, suppliers
)

// SignUp is what a new viewer gives.
type SignUp struct {
	Name         string
	Email        string
	Password     string
	Address      Address
	PaymentToken string      // from the payment provider's form; never card numbers
	Catalogs     []CatalogID // subscribed from the start
	// The first box: who supplies it, and where it will be installed
	// (the address's region if empty).
	Supplier  string
	BoxRegion string
}

// SignUp creates an account and its first box, whose activation code is
// registered with the scheduler and returned in Box.Code for the viewer to
// enter on the box. The payment method is checked with the provider first.
func (s *Service) SignUp(ctx context.Context, req SignUp) (Account, Box, error) {
	email, err := NormalizeEmail(req.Email)
	if err != nil {
		return Account{}, Box{}, fmt.Errorf("customers: sign-up: %w", err)
	}
	if req.BoxRegion == "" {
		req.BoxRegion = req.Address.Region
	}
	if err := errors.Join(
		checkField("name", req.Name, 1, maxText),
		checkAddress(req.Address),
		checkPassword(req.Password, email),
		checkField("payment token", req.PaymentToken, 1, maxText),
		checkField("supplier", req.Supplier, 1, maxText),
		checkRegion(req.BoxRegion),
	); err != nil {
		return Account{}, Box{}, fmt.Errorf("customers: sign-up of %q: %w", email, err)
	}
	if err := s.pay.Authorize(ctx, req.PaymentToken, Money{}); err != nil {
		return Account{}, Box{}, fmt.Errorf("customers: sign-up of %q: payment method: %w", email, err)
	}
	hash, err := hashPassword(req.Password, s.pw)
	if err != nil {
		return Account{}, Box{}, fmt.Errorf("customers: sign-up of %q: %w", email, err)
	}
	now := s.clock()
	a := Account{
		ID: AccountID(newID()), Email: email, Name: req.Name, Address: req.Address,
		PasswordHash: hash, PaymentToken: req.PaymentToken, Status: StatusActive,
		Catalogs: uniqueCatalogs(req.Catalogs), Created: now, Updated: now,
	}
	// Checked before the code is registered, so that a refused sign-up
	// leaves no code behind (a race can still leave one, unusable by
	// anyone, since nobody learns it).
	err = s.store.View(ctx, func(tx ReadTx) error {
		if _, err := tx.AccountByEmail(email); err == nil {
			return ErrEmailTaken
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		return checkCatalogs(tx, a.Catalogs)
	})
	if err != nil {
		return Account{}, Box{}, fmt.Errorf("customers: sign-up of %q: %w", email, err)
	}
	b, err := s.issueBox(ctx, a.ID, req.Supplier, req.BoxRegion, now)
	if err != nil {
		return Account{}, Box{}, fmt.Errorf("customers: sign-up of %q: %w", email, err)
	}
	err = s.store.Update(ctx, func(tx Tx) error {
		if err := checkCatalogs(tx, a.Catalogs); err != nil {
			return err
		}
		if err := tx.CreateAccount(a); err != nil {
			return err
		}
		return tx.PutBox(b)
	})
	if err != nil {
		return Account{}, Box{}, fmt.Errorf("customers: sign-up of %q: %w", email, err)
	}
	s.log.Info("account created", "account", a.ID, "box", b.Ref, "supplier", b.Supplier)
	return a, b, nil
}

func uniqueCatalogs(cs []CatalogID) []CatalogID {
	var out []CatalogID
	for _, c := range cs {
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

func checkCatalogs(tx ReadTx, cs []CatalogID) error {
	for _, c := range cs {
		if _, err := tx.Catalog(c); errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%w %q", ErrUnknownCatalog, c)
		} else if err != nil {
			return err
		}
	}
	return nil
}

// Account returns an account.
func (s *Service) Account(ctx context.Context, id AccountID) (Account, error) {
	var a Account
	err := s.store.View(ctx, func(tx ReadTx) error {
		var err error
		a, err = readAccount(tx, id)
		return err
	})
	if err != nil {
		return Account{}, fmt.Errorf("customers: account %s: %w", id, err)
	}
	return a, nil
}

// Profile is what a viewer may change about the account.
type Profile struct {
	Name    string
	Address Address
	// PaymentToken replaces the payment method if not empty; it is
	// checked with the provider first.
	PaymentToken string
}

// UpdateProfile changes an account's name, address and payment method.
// Boxes keep the region they were given.
func (s *Service) UpdateProfile(ctx context.Context, id AccountID, p Profile) (Account, error) {
	errs := []error{checkField("name", p.Name, 1, maxText), checkAddress(p.Address)}
	if p.PaymentToken != "" {
		errs = append(errs, checkField("payment token", p.PaymentToken, 1, maxText))
	}
	if err := errors.Join(errs...); err != nil {
		return Account{}, fmt.Errorf("customers: profile of %s: %w", id, err)
	}
	if p.PaymentToken != "" {
		if err := s.pay.Authorize(ctx, p.PaymentToken, Money{}); err != nil {
			return Account{}, fmt.Errorf("customers: profile of %s: payment method: %w", id, err)
		}
	}
	var a Account
	err := s.store.Update(ctx, func(tx Tx) error {
		var err error
		if a, err = readAccount(tx, id); err != nil {
			return err
		}
		a.Name, a.Address = p.Name, p.Address
		if p.PaymentToken != "" {
			a.PaymentToken = p.PaymentToken
		}
		a.Updated = s.clock()
		return tx.PutAccount(a)
	})
	if err != nil {
		return Account{}, fmt.Errorf("customers: profile of %s: %w", id, err)
	}
	return a, nil
}

// SetStatus suspends an account or makes it active again (operators). A
// suspended account can still log in and browse, but not buy, play or
// change lists.
func (s *Service) SetStatus(ctx context.Context, id AccountID, st Status, reason string) error {
	if st != StatusActive && st != StatusSuspended {
		return fmt.Errorf("customers: status of %s: %w: %q", id, ErrInvalid, st)
	}
	if err := checkField("reason", reason, 0, maxTitleText); err != nil {
		return fmt.Errorf("customers: status of %s: %w", id, err)
	}
	err := s.store.Update(ctx, func(tx Tx) error {
		a, err := readAccount(tx, id)
		if err != nil {
			return err
		}
		a.Status, a.StatusReason, a.Updated = st, reason, s.clock()
		return tx.PutAccount(a)
	})
	if err != nil {
		return fmt.Errorf("customers: status of %s: %w", id, err)
	}
	s.log.Info("account status", "account", id, "status", st, "reason", reason)
	return nil
}

// readAccount reads an account, ErrUnknownAccount if there is none.
func readAccount(tx ReadTx, id AccountID) (Account, error) {
	a, err := tx.Account(id)
	if errors.Is(err, ErrNotFound) {
		return Account{}, fmt.Errorf("%w %s", ErrUnknownAccount, id)
	}
	return a, err
}

// activeAccount reads an account that may buy, play and edit lists.
func activeAccount(tx ReadTx, id AccountID) (Account, error) {
	a, err := readAccount(tx, id)
	if err != nil {
		return Account{}, err
	}
	if a.Status != StatusActive {
		return Account{}, fmt.Errorf("account %s (%s): %w", id, a.StatusReason, ErrSuspended)
	}
	return a, nil
}

// NormalizeEmail returns the form of an e-mail address that accounts are
// found by: trimmed and in lower case. It refuses anything but a bare
// address.
func NormalizeEmail(s string) (string, error) {
	e := strings.ToLower(strings.TrimSpace(s))
	if len(e) > maxEmail {
		return "", fmt.Errorf("%w: e-mail address longer than %d bytes", ErrInvalid, maxEmail)
	}
	if err := ValidText(e); err != nil {
		return "", fmt.Errorf("%w: e-mail address: %w", ErrInvalid, err)
	}
	addr, err := mail.ParseAddress(e)
	if err != nil || addr.Address != e || addr.Name != "" {
		return "", fmt.Errorf("%w: e-mail address %q", ErrInvalid, e)
	}
	return e, nil
}

func checkPassword(pw, email string) error {
	switch {
	case utf8.RuneCountInString(pw) < MinPassword:
		return fmt.Errorf("%w: password shorter than %d characters", ErrInvalid, MinPassword)
	case len(pw) > MaxPassword:
		return fmt.Errorf("%w: password longer than %d bytes", ErrInvalid, MaxPassword)
	case !utf8.ValidString(pw):
		return fmt.Errorf("%w: password is not valid UTF-8", ErrInvalid)
	case strings.EqualFold(pw, email):
		return fmt.Errorf("%w: password is the e-mail address", ErrInvalid)
	}
	return nil
}

func checkAddress(a Address) error {
	return errors.Join(
		checkField("street", a.Street, 1, maxText),
		checkField("city", a.City, 1, maxText),
		checkField("postcode", a.Postcode, 0, maxText),
		checkRegion(a.Region),
	)
}

// checkField checks text a viewer or operator typed: storable, and
// between min and max bytes after trimming white space.
func checkField(name, s string, minLen, maxLen int) error {
	if err := ValidText(s); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalid, name, err)
	}
	if n := len(strings.TrimSpace(s)); n < minLen {
		return fmt.Errorf("%w: %s is empty", ErrInvalid, name)
	}
	if len(s) > maxLen {
		return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalid, name, maxLen)
	}
	return nil
}

// checkRegion checks a region code: 1 to 16 upper-case letters, digits
// and hyphens, such as "DE" or "US-CA".
func checkRegion(r string) error {
	ok := len(r) >= 1 && len(r) <= 16
	for _, c := range []byte(r) {
		ok = ok && (c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-')
	}
	if !ok {
		return fmt.Errorf("%w: region code %q (want upper-case letters, digits and hyphens, such as DE or US-CA)", ErrInvalid, r)
	}
	return nil
}

// checkPrice checks a price: zero (not offered), or a non-negative amount
// in a three-letter currency.
func checkPrice(name string, m Money) error {
	if m.IsZero() {
		return nil
	}
	ok := len(m.Currency) == 3 && m.Amount >= 0
	for _, c := range []byte(m.Currency) {
		ok = ok && c >= 'A' && c <= 'Z'
	}
	if !ok {
		return fmt.Errorf("%w: %s %d %q", ErrInvalid, name, m.Amount, m.Currency)
	}
	return nil
}

// newID returns 128 random bits in hex.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it aborts the program instead)
	return hex.EncodeToString(b[:])
}

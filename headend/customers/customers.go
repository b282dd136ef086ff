// Package customers is the domain core of customer management: accounts
// and sign-up, log-in sessions, the boxes an account owns and their
// activation codes, vendors' catalogs and the search over them, each box's
// priority list, and purchases and rentals with their billing ledger. The
// web catalog builds its pages on the Service; the head-end wires it to the
// scheduler through two small interfaces (Activator, ListSink).
//
// Guarantees:
//   - Passwords are stored only as argon2id hashes with a per-password
//     random salt, the parameters kept with the hash, and compared in
//     constant time. An unknown e-mail costs the same hashing as a wrong
//     password, and both get ErrBadCredentials.
//   - Log-in is throttled per e-mail address (known or not) and per remote
//     address (IPv6 by /64): after a number of free failures each further
//     failure locks that key out for twice as long as the one before, up to
//     a limit. While locked out, the password is not even checked, and the
//     answer is a *ThrottledError (errors.Is ErrThrottled) saying until when.
//   - Session IDs are 256 random bits, handed out once and stored only as
//     their SHA-256. Every log-in issues a new ID and drops the one the
//     browser presented (no session fixation); sessions expire at a fixed
//     time; each has its own random CSRF token, compared in constant time.
//   - Every purchase passes the same rules in one store transaction: the
//     account is active, the box is the account's, the title is in a
//     subscribed catalog, published, and allowed in the box's region, and
//     the viewer confirmed the current price. A rental still open, or a
//     title bought, is returned as it is and costs nothing. Each refusal is
//     its own sentinel error.
//   - No money moves without a ledger entry first: the charge entry is
//     committed before the payment provider captures (with the purchase ID
//     as its idempotency key), and a capture that fails is answered by a
//     reversal entry. Ledger entries are never changed or removed; each
//     account's entries are numbered 1, 2, 3… and chained by SHA-256, which
//     VerifyLedger checks.
//   - Priority lists carry a version that every change raises by one. A
//     list from the box replaces the stored one only if its version is
//     higher (ListFromBox); the head-end's own edits always take the stored
//     version plus one. So the last writer wins by version, and a tie keeps
//     what the head-end holds.
//   - The store is one interface with two backends held to one conformance
//     suite (storetest): bbolt (boltstore, the embedded default) and
//     PostgreSQL (pgstore, parameterized queries only).
package customers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
)

// Errors. Each refusal a viewer can meet has its own sentinel, wrapped with
// the details; test with errors.Is.
var (
	// Input and accounts.
	ErrInvalid        = errors.New("invalid input")
	ErrEmailTaken     = errors.New("e-mail address already has an account")
	ErrUnknownAccount = errors.New("no such account")

	// Log-in and sessions.
	ErrBadCredentials = errors.New("wrong e-mail address or password")
	ErrThrottled      = errors.New("too many failed log-ins")
	ErrNoSession      = errors.New("no such session, or it has expired")
	ErrCSRF           = errors.New("form token does not match the session")

	// Boxes.
	ErrNotYourBox   = errors.New("box does not belong to the account")
	ErrNotActivated = errors.New("box has not been activated yet")

	// Titles and catalogs.
	ErrUnknownTitle   = errors.New("no such title")
	ErrUnknownCatalog = errors.New("no such catalog")
	ErrNotSubscribed  = errors.New("title's catalog is not subscribed")
	ErrNotPublished   = errors.New("title is not published yet")
	ErrRegionBlocked  = errors.New("title is not offered in the region")

	// Purchases.
	ErrSuspended       = errors.New("account is suspended")
	ErrNotForSale      = errors.New("title is not offered that way")
	ErrNotConfirmed    = errors.New("purchase not confirmed")
	ErrPriceChanged    = errors.New("price differs from the one confirmed")
	ErrPaymentDeclined = errors.New("payment declined")
	ErrPaymentFailed   = errors.New("payment failed")
	ErrRentalOver      = errors.New("rental window is over")
	ErrNotPurchased    = errors.New("title not bought or rented for the box")
	ErrLedgerBroken    = errors.New("billing ledger does not verify")

	// Priority lists.
	ErrAlreadyListed = errors.New("title already on the list")
	ErrNotListed     = errors.New("title not on the list")
	ErrListFull      = errors.New("priority list is full")
)

// Activator registers activation codes with the scheduler, which consumes
// them when a box activates. *scheduler.Scheduler implements it.
type Activator interface {
	AddActivationCode(ctx context.Context, code, account string) error
}

// ListSink takes a changed priority list to the scheduler, which tells the
// box. *scheduler.Scheduler implements it.
type ListSink interface {
	SetPriorityList(ctx context.Context, box api.BoxID, titles []media.ID, version uint64) error
}

// Config configures a Service. Store, Payments and Activator are required.
type Config struct {
	Store     Store
	Payments  PaymentProvider
	Activator Activator
	// Lists, if set, is told of every list change the head-end makes for
	// an activated box. A failure is logged, not returned: the list is
	// stored, and ListForScheduler gives it again.
	Lists ListSink
	Log   *slog.Logger
	// Now is the clock; time.Now if nil.
	Now func() time.Time

	// Password sets the cost of new password hashes; DefaultPasswordParams
	// if zero. Hashes with other parameters still verify, and are redone
	// with these at the next successful log-in.
	Password PasswordParams
	// SessionTTL is how long a session lasts from log-in; 12 hours if zero.
	SessionTTL time.Duration
	// Throttle is the log-in throttling policy; DefaultThrottle if zero.
	Throttle ThrottlePolicy
}

// DefaultSessionTTL is how long a session lasts unless configured.
const DefaultSessionTTL = 12 * time.Hour

// Service is customer management's domain core. Its methods are safe for
// concurrent use; all state is in the Store.
type Service struct {
	store     Store
	pay       PaymentProvider
	act       Activator
	lists     ListSink
	log       *slog.Logger
	now       func() time.Time
	pw        PasswordParams
	ttl       time.Duration
	throttle  ThrottlePolicy
	dummyHash string // verified against for unknown e-mail addresses
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Payments == nil || cfg.Activator == nil {
		return nil, errors.New("customers: Store, Payments and Activator are required")
	}
	s := &Service{
		store: cfg.Store, pay: cfg.Payments, act: cfg.Activator, lists: cfg.Lists,
		log: cfg.Log, now: cfg.Now, pw: cfg.Password, ttl: cfg.SessionTTL, throttle: cfg.Throttle,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.pw == (PasswordParams{}) {
		s.pw = DefaultPasswordParams
	}
	if err := s.pw.check(); err != nil {
		return nil, fmt.Errorf("customers: password parameters: %w", err)
	}
	if s.ttl <= 0 {
		s.ttl = DefaultSessionTTL
	}
	if s.throttle == (ThrottlePolicy{}) {
		s.throttle = DefaultThrottle
	}
	if err := s.throttle.check(); err != nil {
		return nil, fmt.Errorf("customers: throttle policy: %w", err)
	}
	h, err := hashPassword("not a password anyone has", s.pw)
	if err != nil {
		return nil, fmt.Errorf("customers: %w", err)
	}
	s.dummyHash = h
	return s, nil
}

// clock returns the current time as the store keeps it: UTC, to the
// microsecond, so what is compared is what is stored.
func (s *Service) clock() time.Time { return StoreTime(s.now()) }

// StoreTime is t as stores keep times: UTC, truncated to the microsecond.
func StoreTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// Sweep deletes sessions that have expired and throttle records whose
// failures are forgotten. Run it now and then; nothing depends on it but
// the size of the store.
func (s *Service) Sweep(ctx context.Context) (sessions, throttles int, err error) {
	now := s.clock()
	err = s.store.Update(ctx, func(tx Tx) error {
		var err error
		if sessions, err = tx.DeleteSessionsBefore(now); err != nil {
			return err
		}
		throttles, err = tx.DeleteThrottlesBefore(now.Add(-s.throttle.Forget))
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("customers: sweep: %w", err)
	}
	return sessions, throttles, nil
}

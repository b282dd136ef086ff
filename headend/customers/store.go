package customers

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
)

// Identifiers. Accounts, boxes and purchases get random hex IDs from the
// Service; catalog IDs are chosen by the operator.
type (
	AccountID  string
	BoxRef     string // a box on an account, before and after it activates
	CatalogID  string
	PurchaseID string
)

// Status is an account's standing.
type Status string

// Account statuses.
const (
	StatusActive    Status = "active"
	StatusSuspended Status = "suspended" // may log in and browse; may not buy, play or edit lists
)

// Address is where the account holder lives. Region is a region code
// (such as "DE" or "US-CA") that title rights are granted for.
type Address struct {
	Street   string
	City     string
	Postcode string
	Region   string
}

// Account is a customer.
type Account struct {
	ID           AccountID
	Email        string // normalized (NormalizeEmail); the log-in name, unique
	Name         string
	Address      Address
	PasswordHash string // argon2id, PHC string format
	PaymentToken string // the payment provider's token for the payment method
	Status       Status
	StatusReason string
	Catalogs     []CatalogID // subscribed, in the order subscribed
	Created      time.Time
	Updated      time.Time
}

// SessionHash is the SHA-256 of a session ID: what the store keeps.
type SessionHash [32]byte

// HashSessionID is how a session ID is looked up.
func HashSessionID(id string) SessionHash { return sha256.Sum256([]byte(id)) }

// Session is a logged-in browser.
type Session struct {
	Hash    SessionHash
	Account AccountID
	CSRF    string // the token every form of the session must carry
	Addr    string // the remote address that logged in, for the account's session list
	Created time.Time
	Expires time.Time
}

// Throttle is the failed log-ins counted against one key: an e-mail
// address ("email:…") or a remote address ("addr:…").
type Throttle struct {
	Key      string
	Failures int
	Last     time.Time // the last failure
	Until    time.Time // no log-in is tried for the key before this
}

// Box is a set-top box on an account, from the moment its activation code
// is issued. Device is zero until the box activates.
type Box struct {
	Ref       BoxRef
	Account   AccountID
	Code      string // the one-time activation code issued for it; unique
	Device    api.BoxID
	Supplier  string // the retailer or operator that supplied the box
	Region    string // where the box is installed: title rights are checked against it
	Added     time.Time
	Activated time.Time // zero until it activates
}

// Catalog is one vendor's catalog.
type Catalog struct {
	ID     CatalogID
	Vendor string
	Name   string
}

// Money is an amount in a currency's minor units (cents), so that no
// amount is ever rounded. A zero Money (no currency) means "no price".
type Money struct {
	Amount   int64
	Currency string // ISO 4217, such as "EUR"
}

// String shows m with two decimals (most currencies have cents), such as
// "3.99 EUR".
func (m Money) String() string {
	if m.IsZero() {
		return "no price"
	}
	sign, a := "", m.Amount
	if a < 0 {
		sign, a = "-", -a
	}
	return fmt.Sprintf("%s%d.%02d %s", sign, a/100, a%100, m.Currency)
}

// IsZero reports whether m is no price at all.
func (m Money) IsZero() bool { return m == Money{} }

// DefaultRentalWindow is how long a rental may be played unless a title
// says otherwise.
const DefaultRentalWindow = 24 * time.Hour

// WildcardRegion in a title's Regions allows it everywhere.
const WildcardRegion = "*"

// Title is one title in one catalog. A media ID belongs to one catalog.
type Title struct {
	Media     media.ID
	Catalog   CatalogID
	Name      string
	Year      int
	Genre     string
	Actors    []string
	Directors []string
	Producers []string
	Language  string
	Rating    string // the age rating, such as "PG-13"
	Rent      Money  // zero if the title cannot be rented
	Buy       Money  // zero if the title cannot be bought
	Window    time.Duration
	Regions   []string // region codes the title may be sold and played in; "*" for all
	PublishAt time.Time
}

// RentalWindow is how long a rental of t lasts.
func (t Title) RentalWindow() time.Duration {
	if t.Window <= 0 {
		return DefaultRentalWindow
	}
	return t.Window
}

// AllowedIn reports whether t may be sold and played in region.
func (t Title) AllowedIn(region string) bool {
	for _, r := range t.Regions {
		if r == region || r == WildcardRegion {
			return true
		}
	}
	return false
}

// List is one box's priority list.
type List struct {
	Box     BoxRef
	Titles  []media.ID
	Version uint64
	Updated time.Time
}

// Kind is how a title is acquired.
type Kind string

// Purchase kinds.
const (
	KindRent Kind = "rent"
	KindBuy  Kind = "buy"
)

// Purchase is a title bought or rented for one box.
type Purchase struct {
	ID      PurchaseID
	Account AccountID
	Box     BoxRef
	Title   media.ID
	Kind    Kind
	Price   Money
	At      time.Time
	Expires time.Time // rentals: when the window closes; zero for purchases
	// Voided is set when the payment could not be captured; the purchase
	// then grants nothing, and the ledger has a reversal.
	Voided    bool
	ChargeRef string // the payment provider's reference for the capture
}

// EntryKind says what a ledger entry records.
type EntryKind string

// Ledger entry kinds.
const (
	EntryCharge   EntryKind = "charge"   // money owed for a purchase
	EntryReversal EntryKind = "reversal" // a charge taken back: Amount is its negation
)

// Entry is one line of an account's billing ledger. Entries are only ever
// appended: Seq is 1 for an account's first entry and one more for each
// after, and Hash chains each entry to the one before (Prev).
type Entry struct {
	Account  AccountID
	Seq      uint64
	At       time.Time
	Kind     EntryKind
	Amount   Money
	Purchase PurchaseID
	Box      BoxRef
	Title    media.ID
	Memo     string
	Prev     [32]byte // the Hash of entry Seq-1, zero for the first
	Hash     [32]byte
}

// Sort orders search results.
type Sort string

// Sort orders. Ties are broken by title, then media ID, so pages never
// overlap.
const (
	SortTitle  Sort = "title"  // A to Z, case-insensitively
	SortYear   Sort = "year"   // latest year first
	SortNewest Sort = "newest" // latest published first
)

// MaxPageSize bounds a page of search results.
const MaxPageSize = 100

// Query is a search of the catalogs an account sees.
type Query struct {
	Text   string // matched case-insensitively within the title, actors and directors; empty matches all
	Genre  string // matched case-insensitively and exactly; empty for every genre
	Sort   Sort   // SortTitle if empty
	Offset int
	Limit  int // MaxPageSize if zero or above it
}

// TitleQuery is a Query as the store runs it: only titles of Catalogs,
// published at or before Now, and allowed in Region.
type TitleQuery struct {
	Query
	Catalogs []CatalogID
	Region   string
	Now      time.Time
}

// Page is one page of search results.
type Page struct {
	Titles []Title
	Total  int // matches in all pages
	Offset int
	Limit  int
}

// Store errors.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
)

// Store is customer management's durable state.
//
// Values (CheckRecord): strings must be valid UTF-8 without NUL, and the
// ones records are found by at most MaxKeyLen bytes; times are kept to the
// microsecond and come back in UTC; everything else comes back exactly;
// an empty slice may come back as nil.
type Store interface {
	// View runs fn in a read-only transaction: one consistent snapshot.
	View(ctx context.Context, fn func(ReadTx) error) error
	// Update runs fn in one atomic, serializable transaction: everything
	// fn wrote is stored when Update returns nil, nothing if it returns an
	// error. fn may run more than once (PostgreSQL retries serialization
	// failures), so it must do nothing outside the Tx that it does not redo
	// from scratch. ErrNotFound, ErrExists and ErrEmailTaken from a Tx are
	// answers: fn may carry on. Any other Tx error fails the Update even if
	// fn ignores it.
	Update(ctx context.Context, fn func(Tx) error) error
	// SearchTitles runs a search over one snapshot.
	SearchTitles(ctx context.Context, q TitleQuery) (Page, error)
	// Genres returns the genres of the titles q.Visible admits (q's
	// Query is ignored) over one snapshot, as GenreSet lists them: one
	// per FoldText, in the order of their folds.
	Genres(ctx context.Context, q TitleQuery) ([]string, error)
	Close() error
}

// ReadTx reads. Lookups of what is not there return ErrNotFound.
type ReadTx interface {
	Account(id AccountID) (Account, error)
	AccountByEmail(email string) (Account, error)
	Session(h SessionHash) (Session, error)
	Throttle(key string) (Throttle, error)
	Box(ref BoxRef) (Box, error)
	BoxByCode(code string) (Box, error)
	BoxByDevice(id api.BoxID) (Box, error)
	BoxesOf(account AccountID) ([]Box, error) // oldest first
	Catalog(id CatalogID) (Catalog, error)
	Catalogs() ([]Catalog, error) // by ID
	Title(id media.ID) (Title, error)
	List(box BoxRef) (List, error)
	Purchase(id PurchaseID) (Purchase, error)
	PurchasesOf(account AccountID) ([]Purchase, error)           // oldest first, ties by ID
	PurchasesFor(box BoxRef, title media.ID) ([]Purchase, error) // oldest first, ties by ID
	// Ledger returns up to limit of the account's entries with Seq >
	// after, in order.
	Ledger(account AccountID, after uint64, limit int) ([]Entry, error)
	// LastEntry returns the account's entry with the highest Seq.
	LastEntry(account AccountID) (Entry, error)
}

// Tx reads and writes. Put* replace the record with the same key.
type Tx interface {
	ReadTx
	// CreateAccount adds an account: ErrExists if the ID is taken,
	// ErrEmailTaken if the e-mail address is.
	CreateAccount(Account) error
	// PutAccount replaces an existing account (ErrNotFound if none);
	// ErrEmailTaken if it changes the e-mail address to another's.
	PutAccount(Account) error
	PutSession(Session) error
	DeleteSession(h SessionHash) error
	DeleteSessionsOf(account AccountID) error
	// DeleteSessionsBefore deletes sessions that expired before t.
	DeleteSessionsBefore(t time.Time) (int, error)
	PutThrottle(Throttle) error
	DeleteThrottle(key string) error
	// DeleteThrottlesBefore deletes throttles whose last failure was
	// before t.
	DeleteThrottlesBefore(t time.Time) (int, error)
	// PutBox stores a box: ErrExists if another box has its Code, or its
	// Device when that is not zero.
	PutBox(Box) error
	PutCatalog(Catalog) error
	PutTitle(Title) error
	PutList(List) error
	PutPurchase(Purchase) error
	// AppendEntry adds a ledger entry: ErrExists if the account has an
	// entry with its Seq. Entries are never changed or deleted.
	AppendEntry(Entry) error
}

// ValidText reports whether a backend can store s: valid UTF-8 without
// NUL. PostgreSQL cannot keep a NUL in text; bbolt could, but a store that
// accepted one would not move to the other backend.
func ValidText(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return errors.New("contains a NUL byte")
	}
	return nil
}

// ValidTime reports whether a backend can store t: years 1 to 9999.
func ValidTime(t time.Time) error {
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return errors.New("outside the years 1 to 9999")
	}
	return nil
}

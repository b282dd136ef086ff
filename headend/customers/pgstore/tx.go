package pgstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/media"
)

var errTxDone = errors.New("customers pgstore: transaction used after it ended")

// tx is a customers.Tx on a PostgreSQL transaction. Every statement is
// sent at once. Answers (ErrNotFound, ErrExists, ErrEmailTaken) are found
// without a failing statement, since PostgreSQL cannot go on in a
// transaction after one.
type tx struct {
	ctx     context.Context
	tx      pgx.Tx
	write   bool
	done    bool
	spoiled error
}

var _ customers.Tx = (*tx)(nil)

func (t *tx) check() error {
	if t.done {
		return errTxDone
	}
	return nil
}

func (t *tx) writable() error {
	if err := t.check(); err != nil {
		return err
	}
	if !t.write {
		return errors.New("customers pgstore: write in a read-only transaction")
	}
	return nil
}

// fail records a failed write: the Update will not commit.
func (t *tx) fail(err error) error {
	if err != nil && t.spoiled == nil {
		t.spoiled = err
	}
	return err
}

// exec runs a write; its failure spoils the Update.
func (t *tx) exec(what, sql string, args ...any) (int64, error) {
	tag, err := t.tx.Exec(t.ctx, sql, args...)
	if err != nil {
		return 0, t.fail(fmt.Errorf("customers pgstore: %s: %w", what, err))
	}
	return tag.RowsAffected(), nil
}

// badKey reports whether no record can be found by s: CheckRecord refuses
// keys that are not valid text or are longer than MaxKeyLen.
func badKey(s string) bool { return len(s) > customers.MaxKeyLen || customers.ValidText(s) != nil }

// findable reports whether every text argument of a lookup (all of them
// keys) could find a record. One that cannot is not sent: the server
// refuses NUL and invalid UTF-8 in text (SQLSTATE 22021), which would fail
// the lookup and the transaction around it, where bbolt finds nothing.
func findable(args []any) bool {
	for _, a := range args {
		if s, ok := a.(string); ok && badKey(s) {
			return false
		}
	}
	return true
}

// one reads one row with scan: ErrNotFound if there is none. Its text
// arguments must be keys.
func one[T any](t *tx, what, sql string, scan func(pgx.Row) (T, error), args ...any) (T, error) {
	var zero T
	if err := t.check(); err != nil {
		return zero, err
	}
	if !findable(args) {
		return zero, fmt.Errorf("%.80q: %w", what, customers.ErrNotFound)
	}
	v, err := scan(t.tx.QueryRow(t.ctx, sql, args...))
	if errors.Is(err, pgx.ErrNoRows) {
		return zero, fmt.Errorf("%s: %w", what, customers.ErrNotFound)
	}
	if err != nil {
		return zero, t.fail(fmt.Errorf("customers pgstore: read %s: %w", what, err))
	}
	return v, nil
}

// all reads every row with scan: none if there are none. Its text
// arguments must be keys.
func all[T any](t *tx, what, sql string, scan func(pgx.Row) (T, error), args ...any) ([]T, error) {
	if err := t.check(); err != nil || !findable(args) {
		return nil, err
	}
	rows, err := t.tx.Query(t.ctx, sql, args...)
	if err != nil {
		return nil, t.fail(fmt.Errorf("customers pgstore: read %s: %w", what, err))
	}
	vs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (T, error) { return scan(r) })
	if err != nil {
		return nil, t.fail(fmt.Errorf("customers pgstore: read %s: %w", what, err))
	}
	return vs, nil
}

func utc(ts ...*time.Time) {
	for _, t := range ts {
		*t = t.UTC()
	}
}

func strs[S ~string](ss []S) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return out
}

func uuid(id [16]byte) [16]byte { return id }

// --- Accounts ---------------------------------------------------------------

const accountColumns = `id, email, name, street, city, postcode, region, password_hash, payment_token,
	status, status_reason, catalogs, created, updated`

func scanAccount(r pgx.Row) (customers.Account, error) {
	var a customers.Account
	var catalogs []string
	err := r.Scan(&a.ID, &a.Email, &a.Name, &a.Address.Street, &a.Address.City, &a.Address.Postcode,
		&a.Address.Region, &a.PasswordHash, &a.PaymentToken, &a.Status, &a.StatusReason, &catalogs,
		&a.Created, &a.Updated)
	for _, c := range catalogs {
		a.Catalogs = append(a.Catalogs, customers.CatalogID(c))
	}
	utc(&a.Created, &a.Updated)
	return a, err
}

func accountArgs(a customers.Account) []any {
	return []any{string(a.ID), a.Email, a.Name, a.Address.Street, a.Address.City, a.Address.Postcode,
		a.Address.Region, a.PasswordHash, a.PaymentToken, string(a.Status), a.StatusReason, strs(a.Catalogs),
		a.Created, a.Updated}
}

func (t *tx) Account(id customers.AccountID) (customers.Account, error) {
	return one(t, "account "+string(id), "SELECT "+accountColumns+" FROM cust_accounts WHERE id = $1", scanAccount, string(id))
}

func (t *tx) AccountByEmail(email string) (customers.Account, error) {
	return one(t, fmt.Sprintf("account of %q", email), "SELECT "+accountColumns+" FROM cust_accounts WHERE email = $1", scanAccount, email)
}

// emailOwner returns the ID of the account with an e-mail address, "" if
// none.
func (t *tx) emailOwner(email string) (string, error) {
	var id string
	err := t.tx.QueryRow(t.ctx, "SELECT id FROM cust_accounts WHERE email = $1", email).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", t.fail(fmt.Errorf("customers pgstore: read account of %q: %w", email, err))
	}
	return id, nil
}

func (t *tx) CreateAccount(a customers.Account) error {
	if err := t.writable(); err != nil {
		return err
	}
	if err := customers.CheckRecord(a); err != nil {
		return t.fail(err)
	}
	n, err := t.exec("create account "+string(a.ID), `INSERT INTO cust_accounts (`+accountColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT DO NOTHING`, accountArgs(a)...)
	if err != nil || n == 1 {
		return err
	}
	owner, err := t.emailOwner(a.Email)
	if err != nil {
		return err
	}
	if owner != "" && owner != string(a.ID) {
		return fmt.Errorf("%q: %w", a.Email, customers.ErrEmailTaken)
	}
	return fmt.Errorf("account %s: %w", a.ID, customers.ErrExists)
}

func (t *tx) PutAccount(a customers.Account) error {
	if err := t.writable(); err != nil {
		return err
	}
	if err := customers.CheckRecord(a); err != nil {
		return t.fail(err)
	}
	owner, err := t.emailOwner(a.Email)
	if err != nil {
		return err
	}
	if owner != "" && owner != string(a.ID) {
		return fmt.Errorf("%q: %w", a.Email, customers.ErrEmailTaken)
	}
	n, err := t.exec("update account "+string(a.ID), `UPDATE cust_accounts SET email = $2, name = $3, street = $4,
		city = $5, postcode = $6, region = $7, password_hash = $8, payment_token = $9, status = $10,
		status_reason = $11, catalogs = $12, created = $13, updated = $14 WHERE id = $1`, accountArgs(a)...)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("account %s: %w", a.ID, customers.ErrNotFound)
	}
	return nil
}

// --- Sessions ---------------------------------------------------------------

const sessionColumns = `hash, account, csrf, addr, created, expires`

func scanSession(r pgx.Row) (customers.Session, error) {
	var s customers.Session
	var hash []byte
	err := r.Scan(&hash, &s.Account, &s.CSRF, &s.Addr, &s.Created, &s.Expires)
	if err == nil && len(hash) != len(s.Hash) {
		err = fmt.Errorf("session hash of %d bytes", len(hash))
	}
	copy(s.Hash[:], hash)
	utc(&s.Created, &s.Expires)
	return s, err
}

func (t *tx) Session(h customers.SessionHash) (customers.Session, error) {
	return one(t, "session", "SELECT "+sessionColumns+" FROM cust_sessions WHERE hash = $1", scanSession, h[:])
}

func (t *tx) PutSession(s customers.Session) error {
	if err := t.writable(); err != nil {
		return err
	}
	if err := customers.CheckRecord(s); err != nil {
		return t.fail(err)
	}
	_, err := t.exec("store session", `INSERT INTO cust_sessions (`+sessionColumns+`) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (hash) DO UPDATE SET account = EXCLUDED.account, csrf = EXCLUDED.csrf, addr = EXCLUDED.addr,
		created = EXCLUDED.created, expires = EXCLUDED.expires`,
		s.Hash[:], string(s.Account), s.CSRF, s.Addr, s.Created, s.Expires)
	return err
}

func (t *tx) DeleteSession(h customers.SessionHash) error {
	if err := t.writable(); err != nil {
		return err
	}
	_, err := t.exec("delete session", "DELETE FROM cust_sessions WHERE hash = $1", h[:])
	return err
}

func (t *tx) DeleteSessionsOf(account customers.AccountID) error {
	if err := t.writable(); err != nil || badKey(string(account)) {
		return err // a bad key has no sessions, and would fail the Update
	}
	_, err := t.exec("delete sessions of "+string(account), "DELETE FROM cust_sessions WHERE account = $1", string(account))
	return err
}

func (t *tx) DeleteSessionsBefore(before time.Time) (int, error) {
	if err := t.writable(); err != nil {
		return 0, err
	}
	n, err := t.exec("delete expired sessions", "DELETE FROM cust_sessions WHERE expires < $1", before)
	return int(n), err
}

// --- Throttles --------------------------------------------------------------

func scanThrottle(r pgx.Row) (customers.Throttle, error) {
	var th customers.Throttle
	var failures int64
	err := r.Scan(&th.Key, &failures, &th.Last, &th.Until)
	th.Failures = int(failures)
	utc(&th.Last, &th.Until)
	return th, err
}

func (t *tx) Throttle(key string) (customers.Throttle, error) {
	return one(t, "throttle "+key, "SELECT key, failures, last, until FROM cust_throttles WHERE key = $1", scanThrottle, key)
}

func (t *tx) PutThrottle(th customers.Throttle) error {
	if err := t.writable(); err != nil {
		return err
	}
	if err := customers.CheckRecord(th); err != nil {
		return t.fail(err)
	}
	_, err := t.exec("store throttle", `INSERT INTO cust_throttles (key, failures, last, until) VALUES ($1, $2, $3, $4)
		ON CONFLICT (key) DO UPDATE SET failures = EXCLUDED.failures, last = EXCLUDED.last, until = EXCLUDED.until`,
		th.Key, int64(th.Failures), th.Last, th.Until)
	return err
}

func (t *tx) DeleteThrottle(key string) error {
	if err := t.writable(); err != nil || badKey(key) {
		return err // a bad key has no throttle, and would fail the Update
	}
	_, err := t.exec("delete throttle", "DELETE FROM cust_throttles WHERE key = $1", key)
	return err
}

func (t *tx) DeleteThrottlesBefore(before time.Time) (int, error) {
	if err := t.writable(); err != nil {
		return 0, err
	}
	n, err := t.exec("delete old throttles", "DELETE FROM cust_throttles WHERE last < $1", before)
	return int(n), err
}

// --- Boxes ------------------------------------------------------------------

const boxColumns = `ref, account, code, device, supplier, region, added, activated`

func scanBox(r pgx.Row) (customers.Box, error) {
	var b customers.Box
	var device pgtype.UUID
	err := r.Scan(&b.Ref, &b.Account, &b.Code, &device, &b.Supplier, &b.Region, &b.Added, &b.Activated)
	if device.Valid {
		b.Device = api.BoxID(device.Bytes)
	}
	utc(&b.Added, &b.Activated)
	return b, err
}

func (t *tx) Box(ref customers.BoxRef) (customers.Box, error) {
	return one(t, "box "+string(ref), "SELECT "+boxColumns+" FROM cust_boxes WHERE ref = $1", scanBox, string(ref))
}

func (t *tx) BoxByCode(code string) (customers.Box, error) {
	return one(t, "box with that code", "SELECT "+boxColumns+" FROM cust_boxes WHERE code = $1", scanBox, code)
}

func (t *tx) BoxByDevice(id api.BoxID) (customers.Box, error) {
	if id == (api.BoxID{}) {
		return customers.Box{}, fmt.Errorf("box %s: %w", id, customers.ErrNotFound)
	}
	return one(t, "box "+id.String(), "SELECT "+boxColumns+" FROM cust_boxes WHERE device = $1", scanBox, uuid(id))
}

func (t *tx) BoxesOf(account customers.AccountID) ([]customers.Box, error) {
	return all(t, "boxes of "+string(account), "SELECT "+boxColumns+" FROM cust_boxes WHERE account = $1 ORDER BY added, ref COLLATE \"C\"",
		scanBox, string(account))
}

func (t *tx) PutBox(b customers.Box) error {
	if err := t.writable(); err != nil {
		return err
	}
	if err := customers.CheckRecord(b); err != nil {
		return t.fail(err)
	}
	var device any // NULL until activated
	if b.Device != (api.BoxID{}) {
		device = uuid(b.Device)
	}
	var other string
	err := t.tx.QueryRow(t.ctx, "SELECT ref FROM cust_boxes WHERE ref <> $1 AND (code = $2 OR device = $3) LIMIT 1",
		string(b.Ref), b.Code, device).Scan(&other)
	switch {
	case err == nil:
		return fmt.Errorf("box %s: code or device of box %s: %w", b.Ref, other, customers.ErrExists)
	case !errors.Is(err, pgx.ErrNoRows):
		return t.fail(fmt.Errorf("customers pgstore: store box %s: %w", b.Ref, err))
	}
	_, err = t.exec("store box "+string(b.Ref), `INSERT INTO cust_boxes (`+boxColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (ref) DO UPDATE SET account = EXCLUDED.account, code = EXCLUDED.code, device = EXCLUDED.device,
		supplier = EXCLUDED.supplier, region = EXCLUDED.region, added = EXCLUDED.added, activated = EXCLUDED.activated`,
		string(b.Ref), string(b.Account), b.Code, device, b.Supplier, b.Region, b.Added, b.Activated)
	return err
}

// --- Catalogs and titles ----------------------------------------------------

func scanCatalog(r pgx.Row) (customers.Catalog, error) {
	var c customers.Catalog
	err := r.Scan(&c.ID, &c.Vendor, &c.Name)
	return c, err
}

func (t *tx) Catalog(id customers.CatalogID) (customers.Catalog, error) {
	return one(t, fmt.Sprintf("catalog %q", id), "SELECT id, vendor, name FROM cust_catalogs WHERE id = $1", scanCatalog, string(id))
}

func (t *tx) Catalogs() ([]customers.Catalog, error) {
	return all(t, "catalogs", `SELECT id, vendor, name FROM cust_catalogs ORDER BY id COLLATE "C"`, scanCatalog)
}

func (t *tx) PutCatalog(c customers.Catalog) error {
	if err := t.writable(); err != nil {
		return err
	}
	if err := customers.CheckRecord(c); err != nil {
		return t.fail(err)
	}
	_, err := t.exec(fmt.Sprintf("store catalog %q", c.ID), `INSERT INTO cust_catalogs (id, vendor, name) VALUES ($1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET vendor = EXCLUDED.vendor, name = EXCLUDED.name`, string(c.ID), c.Vendor, c.Name)
	return err
}

const titleColumns = `media, catalog, name, year, genre, actors, directors, producers, language, rating,
	rent_amount, rent_currency, buy_amount, buy_currency, window_ns, regions, publish_at`

func scanTitle(r pgx.Row) (customers.Title, error) {
	var ti customers.Title
	var year, window int64
	err := r.Scan((*[16]byte)(&ti.Media), &ti.Catalog, &ti.Name, &year, &ti.Genre, &ti.Actors, &ti.Directors,
		&ti.Producers, &ti.Language, &ti.Rating, &ti.Rent.Amount, &ti.Rent.Currency, &ti.Buy.Amount,
		&ti.Buy.Currency, &window, &ti.Regions, &ti.PublishAt)
	ti.Year, ti.Window = int(year), time.Duration(window)
	utc(&ti.PublishAt)
	return ti, err
}

func (t *tx) Title(id media.ID) (customers.Title, error) {
	return one(t, "title "+id.String(), "SELECT "+titleColumns+" FROM cust_titles WHERE media = $1", scanTitle, uuid(id))
}

// orEmpty keeps a nil slice from being stored as NULL.
func orEmpty(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}

func (t *tx) PutTitle(ti customers.Title) error {
	if err := t.writable(); err != nil {
		return err
	}
	if err := customers.CheckRecord(ti); err != nil {
		return t.fail(err)
	}
	_, err := t.exec("store title "+ti.Media.String(), `INSERT INTO cust_titles (`+titleColumns+`,
		search_key, genre_key, name_key)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
		ON CONFLICT (media) DO UPDATE SET catalog = EXCLUDED.catalog, name = EXCLUDED.name, year = EXCLUDED.year,
		genre = EXCLUDED.genre, actors = EXCLUDED.actors, directors = EXCLUDED.directors,
		producers = EXCLUDED.producers, language = EXCLUDED.language, rating = EXCLUDED.rating,
		rent_amount = EXCLUDED.rent_amount, rent_currency = EXCLUDED.rent_currency,
		buy_amount = EXCLUDED.buy_amount, buy_currency = EXCLUDED.buy_currency, window_ns = EXCLUDED.window_ns,
		regions = EXCLUDED.regions, publish_at = EXCLUDED.publish_at, search_key = EXCLUDED.search_key,
		genre_key = EXCLUDED.genre_key, name_key = EXCLUDED.name_key`,
		uuid(ti.Media), string(ti.Catalog), ti.Name, int64(ti.Year), ti.Genre, orEmpty(ti.Actors), orEmpty(ti.Directors),
		orEmpty(ti.Producers), ti.Language, ti.Rating, ti.Rent.Amount, ti.Rent.Currency, ti.Buy.Amount,
		ti.Buy.Currency, int64(ti.Window), orEmpty(ti.Regions), ti.PublishAt,
		customers.SearchKey(ti), customers.FoldText(ti.Genre), customers.FoldText(ti.Name))
	return err
}

// --- Lists ------------------------------------------------------------------

func scanList(r pgx.Row) (customers.List, error) {
	var l customers.List
	var titles []byte
	var version int64
	err := r.Scan(&l.Box, &titles, &version, &l.Updated)
	if err == nil && len(titles)%16 != 0 {
		err = fmt.Errorf("list of %d bytes", len(titles))
	}
	for i := 0; err == nil && i < len(titles); i += 16 {
		l.Titles = append(l.Titles, media.ID(titles[i:i+16]))
	}
	l.Version = uint64(version)
	utc(&l.Updated)
	return l, err
}

func (t *tx) List(box customers.BoxRef) (customers.List, error) {
	return one(t, "list of box "+string(box), "SELECT box, titles, version, updated FROM cust_lists WHERE box = $1", scanList, string(box))
}

func (t *tx) PutList(l customers.List) error {
	if err := t.writable(); err != nil {
		return err
	}
	if err := customers.CheckRecord(l); err != nil {
		return t.fail(err)
	}
	titles := make([]byte, 0, 16*len(l.Titles))
	for _, id := range l.Titles {
		titles = append(titles, id[:]...)
	}
	_, err := t.exec("store list of box "+string(l.Box), `INSERT INTO cust_lists (box, titles, version, updated) VALUES ($1, $2, $3, $4)
		ON CONFLICT (box) DO UPDATE SET titles = EXCLUDED.titles, version = EXCLUDED.version, updated = EXCLUDED.updated`,
		string(l.Box), titles, int64(l.Version), l.Updated)
	return err
}

// --- Purchases --------------------------------------------------------------

const purchaseColumns = `id, account, box, title, kind, price_amount, price_currency, at, expires, voided, charge_ref`

func scanPurchase(r pgx.Row) (customers.Purchase, error) {
	var p customers.Purchase
	err := r.Scan(&p.ID, &p.Account, &p.Box, (*[16]byte)(&p.Title), &p.Kind, &p.Price.Amount, &p.Price.Currency,
		&p.At, &p.Expires, &p.Voided, &p.ChargeRef)
	utc(&p.At, &p.Expires)
	return p, err
}

func (t *tx) Purchase(id customers.PurchaseID) (customers.Purchase, error) {
	return one(t, "purchase "+string(id), "SELECT "+purchaseColumns+" FROM cust_purchases WHERE id = $1", scanPurchase, string(id))
}

func (t *tx) PurchasesOf(account customers.AccountID) ([]customers.Purchase, error) {
	return all(t, "purchases of "+string(account), "SELECT "+purchaseColumns+
		` FROM cust_purchases WHERE account = $1 ORDER BY at, id COLLATE "C"`, scanPurchase, string(account))
}

func (t *tx) PurchasesFor(box customers.BoxRef, title media.ID) ([]customers.Purchase, error) {
	return all(t, "purchases for box "+string(box), "SELECT "+purchaseColumns+
		` FROM cust_purchases WHERE box = $1 AND title = $2 ORDER BY at, id COLLATE "C"`, scanPurchase, string(box), uuid(title))
}

func (t *tx) PutPurchase(p customers.Purchase) error {
	if err := t.writable(); err != nil {
		return err
	}
	if err := customers.CheckRecord(p); err != nil {
		return t.fail(err)
	}
	_, err := t.exec("store purchase "+string(p.ID), `INSERT INTO cust_purchases (`+purchaseColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (id) DO UPDATE SET account = EXCLUDED.account, box = EXCLUDED.box, title = EXCLUDED.title,
		kind = EXCLUDED.kind, price_amount = EXCLUDED.price_amount, price_currency = EXCLUDED.price_currency,
		at = EXCLUDED.at, expires = EXCLUDED.expires, voided = EXCLUDED.voided, charge_ref = EXCLUDED.charge_ref`,
		string(p.ID), string(p.Account), string(p.Box), uuid(p.Title), string(p.Kind), p.Price.Amount,
		p.Price.Currency, p.At, p.Expires, p.Voided, p.ChargeRef)
	return err
}

// --- Ledger -----------------------------------------------------------------

const entryColumns = `account, seq, at, kind, amount, currency, purchase, box, title, memo, prev, hash`

func scanEntry(r pgx.Row) (customers.Entry, error) {
	var e customers.Entry
	var seq int64
	var prev, hash []byte
	err := r.Scan(&e.Account, &seq, &e.At, &e.Kind, &e.Amount.Amount, &e.Amount.Currency, &e.Purchase, &e.Box,
		(*[16]byte)(&e.Title), &e.Memo, &prev, &hash)
	if err == nil && (len(prev) != 32 || len(hash) != 32) {
		err = fmt.Errorf("ledger entry hashes of %d and %d bytes", len(prev), len(hash))
	}
	e.Seq = uint64(seq)
	copy(e.Prev[:], prev)
	copy(e.Hash[:], hash)
	utc(&e.At)
	return e, err
}

// Sequence numbers are stored as bigint holding the same bits; the order
// of the unsigned numbers is kept for those below 2^63, which is all an
// account can reach.

func (t *tx) Ledger(account customers.AccountID, after uint64, limit int) ([]customers.Entry, error) {
	if limit <= 0 || after >= math.MaxInt64 {
		return nil, t.check()
	}
	return all(t, "ledger of "+string(account), "SELECT "+entryColumns+
		" FROM cust_ledger WHERE account = $1 AND seq > $2 ORDER BY seq LIMIT $3", scanEntry,
		string(account), int64(after), int64(limit))
}

func (t *tx) LastEntry(account customers.AccountID) (customers.Entry, error) {
	return one(t, "ledger of "+string(account), "SELECT "+entryColumns+
		" FROM cust_ledger WHERE account = $1 ORDER BY seq DESC LIMIT 1", scanEntry, string(account))
}

func (t *tx) AppendEntry(e customers.Entry) error {
	if err := t.writable(); err != nil {
		return err
	}
	if err := customers.CheckRecord(e); err != nil {
		return t.fail(err)
	}
	if e.Seq > math.MaxInt64 {
		return t.fail(fmt.Errorf("%w: ledger entry %d: sequence number too large", customers.ErrInvalid, e.Seq))
	}
	n, err := t.exec(fmt.Sprintf("append ledger entry %d of %s", e.Seq, e.Account), `INSERT INTO cust_ledger (`+entryColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (account, seq) DO NOTHING`,
		string(e.Account), int64(e.Seq), e.At, string(e.Kind), e.Amount.Amount, e.Amount.Currency, string(e.Purchase),
		string(e.Box), uuid(e.Title), e.Memo, e.Prev[:], e.Hash[:])
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("ledger entry %d of %s: %w", e.Seq, e.Account, customers.ErrExists)
	}
	return nil
}

package boltstore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/media"
)

// ErrCorrupt is wrapped by every error about a record that does not
// decode.
var ErrCorrupt = errors.New("corrupt record")

// recordVersion leads every stored value.
const recordVersion = 1

func encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append([]byte{recordVersion}, b...), nil
}

func decode(b []byte, v any) error {
	if len(b) < 1 || b[0] != recordVersion {
		return fmt.Errorf("%w: record version %v", ErrCorrupt, b[:min(len(b), 1)])
	}
	dec := json.NewDecoder(bytes.NewReader(b[1:]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return nil
}

// tm is a time as stored.
func tm(t time.Time) time.Time { return customers.StoreTime(t) }

// timeKey orders times in keys: microseconds with the sign bit flipped,
// big-endian.
func timeKey(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(t.UnixMicro())^(1<<63))
}

// join builds a key: parts separated by NUL.
func join(parts ...[]byte) []byte {
	return bytes.Join(parts, []byte{0})
}

func seqKey(account customers.AccountID, seq uint64) []byte {
	return join([]byte(account), binary.BigEndian.AppendUint64(nil, seq))
}

var errTxDone = errors.New("boltstore: transaction used after it ended")

// tx is a customers.Tx on a bbolt transaction.
type tx struct {
	btx     *bolt.Tx
	write   bool
	done    bool
	spoiled error // the first write that failed: the Update will not commit
	// titles are the titles written, as a read of the file will decode
	// them, for the title index once the Update has committed.
	titles map[media.ID]customers.Title
}

var _ customers.Tx = (*tx)(nil)

// spoil records a failed write; answers (ErrExists, ErrEmailTaken,
// ErrNotFound) do not spoil.
func (t *tx) spoil(err error) error {
	if err != nil && t.spoiled == nil && !errors.Is(err, customers.ErrExists) &&
		!errors.Is(err, customers.ErrEmailTaken) && !errors.Is(err, customers.ErrNotFound) {
		t.spoiled = err
	}
	return err
}

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
		return errors.New("boltstore: write in a read transaction")
	}
	return nil
}

// badKey reports whether no record can be found by s: CheckRecord refuses
// keys that are not valid text or are longer than MaxKeyLen. Such a key is
// not looked up, since a NUL in it could match into the NUL-separated
// index keys.
func badKey(s string) bool { return len(s) > customers.MaxKeyLen || customers.ValidText(s) != nil }

// lookup checks that t is live and that key could find a record:
// ErrNotFound if it cannot.
func (t *tx) lookup(what, key string) error {
	if err := t.check(); err != nil {
		return err
	}
	if badKey(key) {
		return fmt.Errorf("%s %.40q: %w", what, key, customers.ErrNotFound)
	}
	return nil
}

func (t *tx) get(bucket, key []byte, what string, v any) error {
	if err := t.check(); err != nil {
		return err
	}
	b := t.btx.Bucket(bucket).Get(key)
	if b == nil {
		return fmt.Errorf("%s: %w", what, customers.ErrNotFound)
	}
	if err := decode(b, v); err != nil {
		return fmt.Errorf("boltstore: %s: %w", what, err)
	}
	return nil
}

func (t *tx) put(bucket, key []byte, v any) error {
	b, err := encode(v)
	if err != nil {
		return err
	}
	return t.btx.Bucket(bucket).Put(key, b)
}

// scan calls fn for each key with the prefix, in key order.
func (t *tx) scan(bucket, prefix []byte, fn func(k, v []byte) error) error {
	c := t.btx.Bucket(bucket).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

// --- Accounts ---------------------------------------------------------------

func (t *tx) Account(id customers.AccountID) (customers.Account, error) {
	var a customers.Account
	if err := t.lookup("account", string(id)); err != nil {
		return a, err
	}
	err := t.get(bAccounts, []byte(id), "account "+string(id), &a)
	return a, err
}

func (t *tx) AccountByEmail(email string) (customers.Account, error) {
	if err := t.lookup("account of", email); err != nil {
		return customers.Account{}, err
	}
	id := t.btx.Bucket(bAccountsEmail).Get([]byte(email))
	if id == nil {
		return customers.Account{}, fmt.Errorf("account of %q: %w", email, customers.ErrNotFound)
	}
	return t.Account(customers.AccountID(id))
}

func normAccount(a customers.Account) customers.Account {
	a.Created, a.Updated = tm(a.Created), tm(a.Updated)
	return a
}

func (t *tx) CreateAccount(a customers.Account) error {
	return t.spoil(t.putAccount(a, true))
}

func (t *tx) PutAccount(a customers.Account) error {
	return t.spoil(t.putAccount(a, false))
}

func (t *tx) putAccount(a customers.Account, create bool) error {
	if err := t.writable(); err != nil {
		return err
	}
	if err := customers.CheckRecord(a); err != nil {
		return err
	}
	accounts, emails := t.btx.Bucket(bAccounts), t.btx.Bucket(bAccountsEmail)
	old, err := t.Account(a.ID)
	exists := err == nil
	switch {
	case err != nil && !errors.Is(err, customers.ErrNotFound):
		return err
	case create && exists:
		return fmt.Errorf("account %s: %w", a.ID, customers.ErrExists)
	case !create && !exists:
		return fmt.Errorf("account %s: %w", a.ID, customers.ErrNotFound)
	}
	if owner := emails.Get([]byte(a.Email)); owner != nil && string(owner) != string(a.ID) {
		return fmt.Errorf("%q: %w", a.Email, customers.ErrEmailTaken)
	}
	if exists && old.Email != a.Email {
		if err := emails.Delete([]byte(old.Email)); err != nil {
			return err
		}
	}
	if err := emails.Put([]byte(a.Email), []byte(a.ID)); err != nil {
		return err
	}
	b, err := encode(normAccount(a))
	if err != nil {
		return err
	}
	return accounts.Put([]byte(a.ID), b)
}

// --- Sessions ---------------------------------------------------------------

func (t *tx) Session(h customers.SessionHash) (customers.Session, error) {
	var s customers.Session
	err := t.get(bSessions, h[:], "session", &s)
	return s, err
}

func (t *tx) PutSession(s customers.Session) error {
	return t.spoil(t.putSession(s))
}

func (t *tx) putSession(s customers.Session) error {
	if err := t.writable(); err != nil {
		return err
	}
	if err := customers.CheckRecord(s); err != nil {
		return err
	}
	if err := t.deleteSession(s.Hash); err != nil {
		return err
	}
	s.Created, s.Expires = tm(s.Created), tm(s.Expires)
	if err := t.put(bSessions, s.Hash[:], s); err != nil {
		return err
	}
	return t.btx.Bucket(bSessionsAccount).Put(join([]byte(s.Account), s.Hash[:]), nil)
}

func (t *tx) DeleteSession(h customers.SessionHash) error {
	if err := t.writable(); err != nil {
		return err
	}
	return t.spoil(t.deleteSession(h))
}

func (t *tx) deleteSession(h customers.SessionHash) error {
	old, err := t.Session(h)
	if errors.Is(err, customers.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := t.btx.Bucket(bSessionsAccount).Delete(join([]byte(old.Account), h[:])); err != nil {
		return err
	}
	return t.btx.Bucket(bSessions).Delete(h[:])
}

func (t *tx) DeleteSessionsOf(account customers.AccountID) error {
	if err := t.writable(); err != nil {
		return err
	}
	if badKey(string(account)) {
		return nil // no account has it, and its prefix could match another's
	}
	var hashes []customers.SessionHash
	prefix := join([]byte(account), nil)
	err := t.scan(bSessionsAccount, prefix, func(k, _ []byte) error {
		if len(k) != len(prefix)+32 {
			return fmt.Errorf("boltstore: session index key %x: %w", k, ErrCorrupt)
		}
		hashes = append(hashes, customers.SessionHash(k[len(prefix):]))
		return nil
	})
	for _, h := range hashes {
		err = errors.Join(err, t.deleteSession(h))
	}
	return t.spoil(err)
}

func (t *tx) DeleteSessionsBefore(before time.Time) (int, error) {
	if err := t.writable(); err != nil {
		return 0, err
	}
	var hashes []customers.SessionHash
	err := t.scan(bSessions, nil, func(k, v []byte) error {
		var s customers.Session
		if err := decode(v, &s); err != nil {
			return fmt.Errorf("boltstore: session %x: %w", k, err)
		}
		if s.Expires.Before(before) {
			hashes = append(hashes, s.Hash)
		}
		return nil
	})
	for _, h := range hashes {
		err = errors.Join(err, t.deleteSession(h))
	}
	return len(hashes), t.spoil(err)
}

// --- Throttles --------------------------------------------------------------

func (t *tx) Throttle(key string) (customers.Throttle, error) {
	var th customers.Throttle
	if err := t.lookup("throttle", key); err != nil {
		return th, err
	}
	err := t.get(bThrottles, []byte(key), "throttle "+key, &th)
	return th, err
}

func (t *tx) PutThrottle(th customers.Throttle) error {
	if err := t.writable(); err != nil {
		return err
	}
	if err := customers.CheckRecord(th); err != nil {
		return t.spoil(err)
	}
	th.Last, th.Until = tm(th.Last), tm(th.Until)
	return t.spoil(t.put(bThrottles, []byte(th.Key), th))
}

func (t *tx) DeleteThrottle(key string) error {
	if err := t.writable(); err != nil || badKey(key) {
		return err
	}
	return t.spoil(t.btx.Bucket(bThrottles).Delete([]byte(key)))
}

func (t *tx) DeleteThrottlesBefore(before time.Time) (int, error) {
	if err := t.writable(); err != nil {
		return 0, err
	}
	var keys [][]byte
	err := t.scan(bThrottles, nil, func(k, v []byte) error {
		var th customers.Throttle
		if err := decode(v, &th); err != nil {
			return fmt.Errorf("boltstore: throttle %q: %w", k, err)
		}
		if th.Last.Before(before) {
			keys = append(keys, bytes.Clone(k))
		}
		return nil
	})
	for _, k := range keys {
		err = errors.Join(err, t.btx.Bucket(bThrottles).Delete(k))
	}
	return len(keys), t.spoil(err)
}

// --- Boxes ------------------------------------------------------------------

func (t *tx) Box(ref customers.BoxRef) (customers.Box, error) {
	var b customers.Box
	if err := t.lookup("box", string(ref)); err != nil {
		return b, err
	}
	err := t.get(bBoxes, []byte(ref), "box "+string(ref), &b)
	return b, err
}

func (t *tx) boxBy(index, key []byte, what string) (customers.Box, error) {
	if err := t.check(); err != nil {
		return customers.Box{}, err
	}
	ref := t.btx.Bucket(index).Get(key)
	if ref == nil {
		return customers.Box{}, fmt.Errorf("%s: %w", what, customers.ErrNotFound)
	}
	return t.Box(customers.BoxRef(ref))
}

func (t *tx) BoxByCode(code string) (customers.Box, error) {
	if err := t.lookup("box with code", code); err != nil {
		return customers.Box{}, err
	}
	return t.boxBy(bBoxesCode, []byte(code), "box with that code")
}

func (t *tx) BoxByDevice(id api.BoxID) (customers.Box, error) {
	if id == (api.BoxID{}) {
		return customers.Box{}, fmt.Errorf("box %s: %w", id, customers.ErrNotFound)
	}
	return t.boxBy(bBoxesDevice, id[:], "box "+id.String())
}

func boxAccountKey(b customers.Box) []byte {
	return join([]byte(b.Account), timeKey(b.Added), []byte(b.Ref))
}

func (t *tx) BoxesOf(account customers.AccountID) ([]customers.Box, error) {
	if err := t.check(); err != nil || badKey(string(account)) {
		return nil, err
	}
	var bs []customers.Box
	prefix := join([]byte(account), nil)
	err := t.scan(bBoxesAccount, prefix, func(k, _ []byte) error {
		if len(k) < len(prefix)+9 {
			return fmt.Errorf("boltstore: box index key %x: %w", k, ErrCorrupt)
		}
		b, err := t.Box(customers.BoxRef(k[len(prefix)+9:]))
		if err != nil {
			return err
		}
		bs = append(bs, b)
		return nil
	})
	return bs, err
}

func (t *tx) PutBox(b customers.Box) error {
	return t.spoil(t.putBox(b))
}

func (t *tx) putBox(b customers.Box) error {
	if err := t.writable(); err != nil {
		return err
	}
	if err := customers.CheckRecord(b); err != nil {
		return err
	}
	b.Added, b.Activated = tm(b.Added), tm(b.Activated)
	codes, devices, byAccount := t.btx.Bucket(bBoxesCode), t.btx.Bucket(bBoxesDevice), t.btx.Bucket(bBoxesAccount)
	if ref := codes.Get([]byte(b.Code)); ref != nil && string(ref) != string(b.Ref) {
		return fmt.Errorf("box %s: activation code of box %s: %w", b.Ref, ref, customers.ErrExists)
	}
	if b.Device != (api.BoxID{}) {
		if ref := devices.Get(b.Device[:]); ref != nil && string(ref) != string(b.Ref) {
			return fmt.Errorf("box %s: device %s is box %s: %w", b.Ref, b.Device, ref, customers.ErrExists)
		}
	}
	old, err := t.Box(b.Ref)
	switch {
	case err == nil:
		err = errors.Join(codes.Delete([]byte(old.Code)), devices.Delete(old.Device[:]), byAccount.Delete(boxAccountKey(old)))
		if err != nil {
			return err
		}
	case !errors.Is(err, customers.ErrNotFound):
		return err
	}
	if err := codes.Put([]byte(b.Code), []byte(b.Ref)); err != nil {
		return err
	}
	if b.Device != (api.BoxID{}) {
		if err := devices.Put(b.Device[:], []byte(b.Ref)); err != nil {
			return err
		}
	}
	if err := byAccount.Put(boxAccountKey(b), nil); err != nil {
		return err
	}
	return t.put(bBoxes, []byte(b.Ref), b)
}

// --- Catalogs and titles ----------------------------------------------------

func (t *tx) Catalog(id customers.CatalogID) (customers.Catalog, error) {
	var c customers.Catalog
	if err := t.lookup("catalog", string(id)); err != nil {
		return c, err
	}
	err := t.get(bCatalogs, []byte(id), fmt.Sprintf("catalog %q", id), &c)
	return c, err
}

func (t *tx) Catalogs() ([]customers.Catalog, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	var cs []customers.Catalog
	err := t.scan(bCatalogs, nil, func(k, v []byte) error {
		var c customers.Catalog
		if err := decode(v, &c); err != nil {
			return fmt.Errorf("boltstore: catalog %q: %w", k, err)
		}
		cs = append(cs, c)
		return nil
	})
	return cs, err
}

func (t *tx) PutCatalog(c customers.Catalog) error {
	if err := t.writable(); err != nil {
		return err
	}
	if err := customers.CheckRecord(c); err != nil {
		return t.spoil(err)
	}
	return t.spoil(t.put(bCatalogs, []byte(c.ID), c))
}

func (t *tx) Title(id media.ID) (customers.Title, error) {
	var ti customers.Title
	err := t.get(bTitles, id[:], "title "+id.String(), &ti)
	return ti, err
}

func (t *tx) PutTitle(ti customers.Title) error {
	if err := t.writable(); err != nil {
		return err
	}
	if err := customers.CheckRecord(ti); err != nil {
		return t.spoil(err)
	}
	ti.PublishAt = tm(ti.PublishAt)
	return t.spoil(t.putTitle(ti))
}

func (t *tx) putTitle(ti customers.Title) error {
	b, err := encode(ti)
	if err != nil {
		return err
	}
	// The index holds what a read would return, not what was given.
	var back customers.Title
	if err := decode(b, &back); err != nil {
		return fmt.Errorf("boltstore: title %s does not read back: %w", ti.Media, err)
	}
	if err := t.btx.Bucket(bTitles).Put(ti.Media[:], b); err != nil {
		return err
	}
	if t.titles == nil {
		t.titles = map[media.ID]customers.Title{}
	}
	t.titles[ti.Media] = back
	return nil
}

// --- Lists ------------------------------------------------------------------

func (t *tx) List(box customers.BoxRef) (customers.List, error) {
	var l customers.List
	if err := t.lookup("list of box", string(box)); err != nil {
		return l, err
	}
	err := t.get(bLists, []byte(box), "list of box "+string(box), &l)
	return l, err
}

func (t *tx) PutList(l customers.List) error {
	if err := t.writable(); err != nil {
		return err
	}
	if err := customers.CheckRecord(l); err != nil {
		return t.spoil(err)
	}
	l.Updated = tm(l.Updated)
	return t.spoil(t.put(bLists, []byte(l.Box), l))
}

// --- Purchases --------------------------------------------------------------

func (t *tx) Purchase(id customers.PurchaseID) (customers.Purchase, error) {
	var p customers.Purchase
	if err := t.lookup("purchase", string(id)); err != nil {
		return p, err
	}
	err := t.get(bPurchases, []byte(id), "purchase "+string(id), &p)
	return p, err
}

func purchaseAccountKey(p customers.Purchase) []byte {
	return join([]byte(p.Account), timeKey(p.At), []byte(p.ID))
}

func purchaseBoxKey(p customers.Purchase) []byte {
	return join([]byte(p.Box), append(p.Title[:], timeKey(p.At)...), []byte(p.ID))
}

// purchasesBy reads the purchases an index lists under prefix, in order;
// the ID is what follows the last NUL.
func (t *tx) purchasesBy(index, prefix []byte) ([]customers.Purchase, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	var ps []customers.Purchase
	err := t.scan(index, prefix, func(k, _ []byte) error {
		i := bytes.LastIndexByte(k, 0)
		if i < len(prefix)-1 {
			return fmt.Errorf("boltstore: purchase index key %x: %w", k, ErrCorrupt)
		}
		p, err := t.Purchase(customers.PurchaseID(k[i+1:]))
		if err != nil {
			return err
		}
		ps = append(ps, p)
		return nil
	})
	return ps, err
}

func (t *tx) PurchasesOf(account customers.AccountID) ([]customers.Purchase, error) {
	if err := t.check(); err != nil || badKey(string(account)) {
		return nil, err
	}
	return t.purchasesBy(bPurchasesAccount, join([]byte(account), nil))
}

func (t *tx) PurchasesFor(box customers.BoxRef, title media.ID) ([]customers.Purchase, error) {
	if err := t.check(); err != nil || badKey(string(box)) {
		return nil, err
	}
	return t.purchasesBy(bPurchasesBox, join([]byte(box), title[:]))
}

func (t *tx) PutPurchase(p customers.Purchase) error {
	return t.spoil(t.putPurchase(p))
}

func (t *tx) putPurchase(p customers.Purchase) error {
	if err := t.writable(); err != nil {
		return err
	}
	if err := customers.CheckRecord(p); err != nil {
		return err
	}
	p.At, p.Expires = tm(p.At), tm(p.Expires)
	if old, err := t.Purchase(p.ID); err == nil {
		if err := errors.Join(t.btx.Bucket(bPurchasesAccount).Delete(purchaseAccountKey(old)),
			t.btx.Bucket(bPurchasesBox).Delete(purchaseBoxKey(old))); err != nil {
			return err
		}
	} else if !errors.Is(err, customers.ErrNotFound) {
		return err
	}
	if err := t.btx.Bucket(bPurchasesAccount).Put(purchaseAccountKey(p), nil); err != nil {
		return err
	}
	if err := t.btx.Bucket(bPurchasesBox).Put(purchaseBoxKey(p), nil); err != nil {
		return err
	}
	return t.put(bPurchases, []byte(p.ID), p)
}

// --- Ledger -----------------------------------------------------------------

func (t *tx) Ledger(account customers.AccountID, after uint64, limit int) ([]customers.Entry, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	if limit <= 0 || after == math.MaxUint64 || badKey(string(account)) {
		return nil, nil
	}
	prefix := join([]byte(account), nil)
	var es []customers.Entry
	c := t.btx.Bucket(bLedger).Cursor()
	for k, v := c.Seek(seqKey(account, after+1)); k != nil && bytes.HasPrefix(k, prefix) && len(es) < limit; k, v = c.Next() {
		var e customers.Entry
		if err := decode(v, &e); err != nil {
			return nil, fmt.Errorf("boltstore: ledger entry %x: %w", k, err)
		}
		es = append(es, e)
	}
	return es, nil
}

func (t *tx) LastEntry(account customers.AccountID) (customers.Entry, error) {
	if err := t.lookup("ledger of", string(account)); err != nil {
		return customers.Entry{}, err
	}
	prefix := join([]byte(account), nil)
	c := t.btx.Bucket(bLedger).Cursor()
	last := seqKey(account, math.MaxUint64)
	k, v := c.Seek(last)
	switch {
	case k == nil:
		k, v = c.Last()
	case !bytes.Equal(k, last):
		k, v = c.Prev()
	}
	if k == nil || !bytes.HasPrefix(k, prefix) {
		return customers.Entry{}, fmt.Errorf("ledger of %s: %w", account, customers.ErrNotFound)
	}
	var e customers.Entry
	if err := decode(v, &e); err != nil {
		return customers.Entry{}, fmt.Errorf("boltstore: ledger entry %x: %w", k, err)
	}
	return e, nil
}

func (t *tx) AppendEntry(e customers.Entry) error {
	if err := t.writable(); err != nil {
		return err
	}
	if err := customers.CheckRecord(e); err != nil {
		return t.spoil(err)
	}
	e.At = tm(e.At)
	key := seqKey(e.Account, e.Seq)
	if t.btx.Bucket(bLedger).Get(key) != nil {
		return fmt.Errorf("ledger entry %d of %s: %w", e.Seq, e.Account, customers.ErrExists)
	}
	return t.spoil(t.put(bLedger, key, e))
}

// Package boltstore is the embedded customers.Store: one bbolt file in the
// head-end's data folder, opened by one process at a time.
//
// It guarantees what storetest checks: an Update is one bbolt write
// transaction, so Updates are serial and all or nothing, and a View is one
// read transaction, a snapshot Updates do not disturb. Records are JSON
// after a record version byte; decoding refuses anything else (ErrCorrupt).
// SearchTitles and Genres answer from an index of every title kept
// decoded in memory (index.go), built at the first search and kept in step
// by the store's own Updates after they commit, with each title's search
// keys folded once and the titles sorted in each search order; it answers
// as customers.Search, the reference the PostgreSQL backend is held to,
// does. It holds the whole catalog: fine for tens of thousands of titles
// on one machine. A title written to the file other than through Update
// (another program, while the store is closed) is seen from the next Open.
// Lookups by a key no record can have (not valid text, or longer
// than customers.MaxKeyLen) find nothing without reading, so that a NUL
// in a key cannot reach into the NUL-separated index keys.
//
// Buckets, keyed so that each access path is a lookup or a prefix scan
// (\0 separates an ID from what follows; IDs hold no NUL; times in keys
// are microseconds since 1970, sign bit flipped, big-endian):
//
//	meta               "format" → layout version
//	accounts           account ID → account
//	accounts.email     e-mail address → account ID
//	sessions           session hash → session
//	sessions.account   account \0 session hash → nothing
//	throttles          key → throttle
//	boxes              box ref → box
//	boxes.code         activation code → box ref
//	boxes.device       device ID → box ref
//	boxes.account      account \0 added \0 box ref → nothing
//	catalogs           catalog ID → catalog
//	titles             media ID → title
//	lists              box ref → list
//	purchases          purchase ID → purchase
//	purchases.account  account \0 at \0 purchase ID → nothing
//	purchases.box      box ref \0 media ID, at \0 purchase ID → nothing
//	ledger             account \0 seq (big-endian) → entry
package boltstore

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/internal/boltfile"
	"github.com/boxswarm/boxswarm/media"
)

// formatVersion is the file's layout. A build refuses a file with a later
// layout rather than misread it.
const formatVersion = 1

var (
	bMeta             = []byte("meta")
	bAccounts         = []byte("accounts")
	bAccountsEmail    = []byte("accounts.email")
	bSessions         = []byte("sessions")
	bSessionsAccount  = []byte("sessions.account")
	bThrottles        = []byte("throttles")
	bBoxes            = []byte("boxes")
	bBoxesCode        = []byte("boxes.code")
	bBoxesDevice      = []byte("boxes.device")
	bBoxesAccount     = []byte("boxes.account")
	bCatalogs         = []byte("catalogs")
	bTitles           = []byte("titles")
	bLists            = []byte("lists")
	bPurchases        = []byte("purchases")
	bPurchasesAccount = []byte("purchases.account")
	bPurchasesBox     = []byte("purchases.box")
	bLedger           = []byte("ledger")

	allBuckets = [][]byte{bMeta, bAccounts, bAccountsEmail, bSessions, bSessionsAccount, bThrottles,
		bBoxes, bBoxesCode, bBoxesDevice, bBoxesAccount, bCatalogs, bTitles, bLists,
		bPurchases, bPurchasesAccount, bPurchasesBox, bLedger}
)

// DefaultTimeout is how long Open waits for another process to close the
// file.
const DefaultTimeout = time.Second

// Option adjusts Open.
type Option func(*options)

type options struct {
	timeout time.Duration
	log     *slog.Logger
}

// WithTimeout sets how long Open waits for another process holding the
// file.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithLogger sets where the store logs.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// Store is a customers.Store in one bbolt file.
type Store struct {
	db    *bolt.DB
	close func() error
	// wmu orders Updates with their index changes: an Update commits and
	// applies its titles before the next one starts.
	wmu    sync.Mutex
	titles titleIndex
}

var _ customers.Store = (*Store)(nil)

// Open opens the store at path, creating it if missing. It fails, after the
// timeout, if another process has it open.
func Open(path string, opts ...Option) (*Store, error) {
	o := options{timeout: DefaultTimeout, log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	db, created, err := boltfile.Open(path, boltfile.Layout{Kind: "customer store", Version: formatVersion, Buckets: allBuckets}, o.timeout)
	if err != nil {
		return nil, fmt.Errorf("boltstore: %w", err)
	}
	o.log.Info("customer store open", "path", path, "created", created)
	s := &Store{db: db}
	s.close = sync.OnceValue(func() error {
		s.titles.close()
		return db.Close()
	})
	return s, nil
}

// Close closes the file. Calling it again does nothing.
func (s *Store) Close() error { return s.close() }

// View runs fn in one read transaction.
func (s *Store) View(ctx context.Context, fn func(customers.ReadTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(func(btx *bolt.Tx) error {
		t := &tx{btx: btx}
		defer func() { t.done = true }()
		return fn(t)
	})
}

// Update runs fn in one write transaction.
func (s *Store) Update(ctx context.Context, fn func(customers.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var titles map[media.ID]customers.Title
	err := s.db.Update(func(btx *bolt.Tx) error {
		t := &tx{btx: btx, write: true}
		defer func() { t.done = true }()
		if err := fn(t); err != nil {
			return err
		}
		if t.spoiled != nil {
			return fmt.Errorf("boltstore: update not stored: a write failed: %w", t.spoiled)
		}
		titles = t.titles
		return ctx.Err()
	})
	if err != nil {
		return err // rolled back: the index stays as the file is
	}
	s.titles.apply(titles)
	return nil
}

// SearchTitles answers from the title index.
func (s *Store) SearchTitles(ctx context.Context, q customers.TitleQuery) (customers.Page, error) {
	if err := ctx.Err(); err != nil {
		return customers.Page{}, err
	}
	if err := s.titles.load(ctx, s.db); err != nil {
		return customers.Page{}, err
	}
	return s.titles.search(q)
}

// Genres collects the visible titles' genres from the title index.
func (s *Store) Genres(ctx context.Context, q customers.TitleQuery) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.titles.load(ctx, s.db); err != nil {
		return nil, err
	}
	return s.titles.genres(q)
}

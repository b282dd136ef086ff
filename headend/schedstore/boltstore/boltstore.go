// Package boltstore is the embedded schedstore backend: one bbolt file in
// the head-end's data folder, opened by one process at a time.
//
// It guarantees what storetest checks: an Update is one bbolt write
// transaction, so Updates are serial and all or nothing, and each Load*
// call reads from one bbolt read transaction, a snapshot that Updates do
// not disturb. An Update's writes are applied when fn returns, in key order
// (tx.go says why), so an Update of millions of rows stays linear. Every
// value starts with a record version byte and decoding refuses anything
// malformed (ErrCorrupt) rather than guess.
//
// The file holds one bucket per record type, keyed so that each access path
// is a lookup or a prefix scan:
//
//	meta             "format" → layout version; the bucket's sequence numbers transfers
//	boxes            box → box
//	holdings         box|title → holding (DeleteBox scans the box's prefix)
//	lists            box → priority list
//	titles           title → title
//	transfers        id (8 bytes big-endian) → transfer
//	transfers.open   id → nothing: the requested and running ones, for LoadTransfers
//	transfers.bybox  box|created|id → nothing, for receiver and sender: TransfersOf
//	                 walks a box's prefix backwards (created is microseconds
//	                 since 1970, sign bit flipped, big-endian)
//	measurements     from|to → measurement
//	outbox           box|seq (big-endian) → frame
//	seqs             box → the box's recorded sequence numbers and the highest
//	                 Seq ever appended to its outbox
//	codes            activation code → account, used
//
// A long Load* holds a read transaction, and bbolt cannot grow its memory
// map while one is open, so an Update that grows the file waits for it;
// a Load* callback must therefore not call Update.
package boltstore

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/internal/boltfile"
)

// formatVersion is the file's layout: buckets and keys. A build refuses a
// file with a later layout rather than misread it.
const formatVersion = 1

var (
	bMeta         = []byte("meta")
	bBoxes        = []byte("boxes")
	bHoldings     = []byte("holdings")
	bLists        = []byte("lists")
	bTitles       = []byte("titles")
	bTransfers    = []byte("transfers")
	bOpen         = []byte("transfers.open")
	bByBox        = []byte("transfers.bybox")
	bMeasurements = []byte("measurements")
	bOutbox       = []byte("outbox")
	bSeqs         = []byte("seqs")
	bCodes        = []byte("codes")

	allBuckets = [][]byte{bMeta, bBoxes, bHoldings, bLists, bTitles, bTransfers, bOpen, bByBox,
		bMeasurements, bOutbox, bSeqs, bCodes}
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
// file; past it, Open fails.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithLogger sets where the store logs.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// Store is a schedstore.Store in one bbolt file.
type Store struct {
	db    *bolt.DB
	log   *slog.Logger
	close func() error
}

var _ schedstore.Store = (*Store)(nil)

// Open opens the store at path, creating it if missing. It fails, after the
// timeout, if another process has it open.
func Open(path string, opts ...Option) (*Store, error) {
	o := options{timeout: DefaultTimeout, log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	db, created, err := boltfile.Open(path, boltfile.Layout{Kind: "schedule store", Version: formatVersion, Buckets: allBuckets}, o.timeout)
	if err != nil {
		return nil, fmt.Errorf("boltstore: %w", err)
	}
	o.log.Info("schedule store open", "path", path, "created", created)
	return &Store{db: db, log: o.log, close: sync.OnceValue(db.Close)}, nil
}

// Close closes the file. Calling it again does nothing.
func (s *Store) Close() error { return s.close() }

// everyN is how many records a Load* reads between looks at its context.
const everyN = 64

// load calls fn for each record of a bucket, in one read transaction.
func load[T any](ctx context.Context, s *Store, bucket []byte, what string,
	decode func(k, v []byte) (T, error), fn func(T) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		n := 0
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if n++; n%everyN == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			r, err := decode(k, v)
			if err != nil {
				return fmt.Errorf("boltstore: %s %x: %w", what, k, err)
			}
			if err := fn(r); err != nil {
				return err
			}
		}
		return nil
	})
}

// LoadSeqs calls fn for every box with sequence numbers recorded.
func (s *Store) LoadSeqs(ctx context.Context, fn func(schedstore.BoxSeqs) error) error {
	return load(ctx, s, bSeqs, "seqs", func(k, v []byte) (schedstore.BoxSeqs, error) {
		sq, err := decodeSeqs(v)
		if err == nil && len(k) != len(api.BoxID{}) {
			err = fmt.Errorf("key of %d bytes", len(k))
		}
		return schedstore.BoxSeqs{Box: api.BoxID(k[:min(len(k), 16)]), In: sq.in, Out: sq.out}, err
	}, func(sq schedstore.BoxSeqs) error {
		if sq.In == 0 && sq.Out == 0 { // only the outbox's numbering is kept
			return nil
		}
		return fn(sq)
	})
}

// LoadBoxes calls fn for every box.
func (s *Store) LoadBoxes(ctx context.Context, fn func(schedstore.Box) error) error {
	return load(ctx, s, bBoxes, "box", decodeBox, fn)
}

// LoadHoldings calls fn for every holding, box by box.
func (s *Store) LoadHoldings(ctx context.Context, fn func(schedstore.Holding) error) error {
	return load(ctx, s, bHoldings, "holding", decodeHolding, fn)
}

// LoadPriorityLists calls fn for every priority list.
func (s *Store) LoadPriorityLists(ctx context.Context, fn func(schedstore.PriorityList) error) error {
	return load(ctx, s, bLists, "priority list", decodeList, fn)
}

// LoadTitles calls fn for every title.
func (s *Store) LoadTitles(ctx context.Context, fn func(schedstore.Title) error) error {
	return load(ctx, s, bTitles, "title", decodeTitle, fn)
}

// LoadMeasurements calls fn for every measurement.
func (s *Store) LoadMeasurements(ctx context.Context, fn func(schedstore.Measurement) error) error {
	return load(ctx, s, bMeasurements, "measurement", decodeMeasurement, fn)
}

// LoadTransfers calls fn for every transfer requested or running, in ID
// order; it reads only those, however many have ended.
func (s *Store) LoadTransfers(ctx context.Context, fn func(schedstore.Transfer) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(func(tx *bolt.Tx) error {
		transfers := tx.Bucket(bTransfers)
		c := tx.Bucket(bOpen).Cursor()
		n := 0
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if n++; n%everyN == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			tr, err := getTransfer(transfers, k)
			if err != nil {
				return err
			}
			if err := fn(tr); err != nil {
				return err
			}
		}
		return nil
	})
}

// getTransfer reads a transfer the indexes name: its absence is damage.
func getTransfer(transfers *bolt.Bucket, k []byte) (schedstore.Transfer, error) {
	v := transfers.Get(k)
	if v == nil {
		return schedstore.Transfer{}, fmt.Errorf("boltstore: transfer %x: indexed but missing: %w", k, ErrCorrupt)
	}
	tr, err := decodeTransfer(k, v)
	if err != nil {
		return tr, fmt.Errorf("boltstore: transfer %x: %w", k, err)
	}
	return tr, nil
}

// Outbox returns the box's messages with Seq > after, in order.
func (s *Store) Outbox(ctx context.Context, box api.BoxID, after uint64) ([]schedstore.Outbound, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if after >= math.MaxInt64 { // no Seq is above it
		return nil, nil
	}
	var out []schedstore.Outbound
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bOutbox).Cursor()
		for k, v := c.Seek(outboxKey(box, after+1)); k != nil && bytes.HasPrefix(k, box[:]); k, v = c.Next() {
			o, err := decodeOutbound(k, v)
			if err != nil {
				return fmt.Errorf("boltstore: outbox %x: %w", k, err)
			}
			out = append(out, o)
		}
		return nil
	})
	return out, err
}

// Transfer returns one transfer, or an error wrapping ErrNotFound.
func (s *Store) Transfer(ctx context.Context, id api.TransferID) (schedstore.Transfer, error) {
	if err := ctx.Err(); err != nil {
		return schedstore.Transfer{}, err
	}
	var tr schedstore.Transfer
	err := s.db.View(func(tx *bolt.Tx) error {
		k := transferKey(id)
		if tx.Bucket(bTransfers).Get(k) == nil {
			return fmt.Errorf("boltstore: transfer %d: %w", id, schedstore.ErrNotFound)
		}
		var err error
		tr, err = getTransfer(tx.Bucket(bTransfers), k)
		return err
	})
	return tr, err
}

// TransfersOf returns the box's transfers, newest first, at most limit.
func (s *Store) TransfersOf(ctx context.Context, box api.BoxID, limit int) ([]schedstore.Transfer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	var out []schedstore.Transfer
	err := s.db.View(func(tx *bolt.Tx) error {
		transfers := tx.Bucket(bTransfers)
		c := tx.Bucket(bByBox).Cursor()
		// The box's last key is at most box|ff…ff: seek there and step
		// back.
		upper := cat(box[:], bytes.Repeat([]byte{0xFF}, 16))
		k, _ := c.Seek(upper)
		switch {
		case k == nil:
			k, _ = c.Last()
		case !bytes.Equal(k, upper):
			k, _ = c.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, box[:]) && len(out) < limit; k, _ = c.Prev() {
			if len(k) != len(box)+16 {
				return fmt.Errorf("boltstore: transfer index: %w", keyError("index", k, len(box)+16))
			}
			tr, err := getTransfer(transfers, k[len(box)+8:])
			if err != nil {
				return err
			}
			out = append(out, tr)
		}
		return nil
	})
	return out, err
}

// Update runs fn in one bbolt write transaction. A panic in fn rolls the
// transaction back and goes on up.
func (s *Store) Update(ctx context.Context, fn func(schedstore.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(btx *bolt.Tx) error {
		t := &tx{btx: btx, pending: map[string]map[string]pendingWrite{}}
		defer func() { t.done = true }()
		if err := fn(t); err != nil {
			return err
		}
		if t.spoiled != nil {
			return fmt.Errorf("boltstore: update not stored: a write failed: %w", t.spoiled)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		return t.flushAll()
	})
}

// Package memstore is an in-memory schedstore backend, FOR SIMULATION AND
// TESTS ONLY: nothing is written to disk, and everything is lost when the
// process ends. A head-end must use boltstore or pgstore.
//
// It exists for the swarm simulator, which drives the real scheduler with
// up to a million virtual boxes in one process, and for unit tests that
// want a store without a file. It passes storetest like the durable
// backends, with these means:
//
//   - Records live in Go maps in compact forms (records.go): everything of
//     one box (its record, holdings sorted by title, priority list, outbox
//     sorted by Seq, sequence numbers) in one entry keyed by its ID;
//     titles, transfers, measurements and codes in maps of their own.
//     storetest's benchmark box (40 holdings, 4 of them with 128-byte
//     bitmaps, and a list of 10 titles) takes about 2.3 KB of heap.
//   - An Update holds one mutex for all its run, so Updates are serial. The
//     Tx records writes in a write set of its own (reading through it to
//     the store where an answer depends on what is stored) and changes
//     nothing until fn has returned nil; then its writes are applied under
//     the store's write lock. So an error or panic in fn leaves nothing
//     behind, and an Update costs in proportion to what it writes, not to
//     what the store holds.
//   - Reads take the read lock. A Load* holds it while it calls fn, so it
//     sees one committed state. fn must not call the store: an Update in
//     fn would wait for the Load to end, and a read in fn could wait
//     behind another Update waiting for the Load.
//   - Load* return records in key order (box, then title for holdings;
//     from, then to for measurements; ID for transfers), so a simulation
//     run from a seed is reproducible.
//   - Records returned share no memory with the store, and records put
//     share none with the caller.
//
// A Memory stands for boltstore's file: Close leaves it as it was, and
// Open on the same Memory finds what was stored, as a restarted head-end
// would. One Store may be open on a Memory at a time.
package memstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/media"
)

// Errors.
var (
	ErrClosed = errors.New("memstore: store closed")
	ErrInUse  = errors.New("memstore: a store is already open on this memory")
)

// Memory holds what Stores opened on it store.
type Memory struct {
	handleMu sync.Mutex
	inUse    bool // a Store is open on it

	// updateMu is held by the running Update from start to end: only its
	// goroutine changes the maps below, so its Tx reads them unlocked.
	updateMu sync.Mutex
	// mu is written while an Update applies its writes, and read by every
	// read of a Store.
	mu             sync.RWMutex
	boxes          map[api.BoxID]*boxRec
	titles         map[media.ID]titleVal
	transfers      map[api.TransferID]transferVal
	open           map[api.TransferID]struct{} // the requested and running ones
	byBox          map[api.BoxID][]tref        // each box's transfers, sent or received, oldest first
	measurements   map[[2]api.BoxID]measVal    // from, to
	codes          map[string]codeVal
	lastTransferID uint64
	refs           titleTable // the titles holdings and lists name

	// sortedBoxes is the keys of boxes in order, built by the first Load
	// that needs it and dropped when an Update adds or removes a key: the
	// scheduler's start-up loads boxes, holdings, lists and seqs, which
	// would otherwise sort a million IDs four times.
	cacheMu     sync.Mutex
	sortedBoxes []api.BoxID
}

// NewMemory returns an empty Memory.
func NewMemory() *Memory {
	return &Memory{
		boxes:        map[api.BoxID]*boxRec{},
		titles:       map[media.ID]titleVal{},
		transfers:    map[api.TransferID]transferVal{},
		open:         map[api.TransferID]struct{}{},
		byBox:        map[api.BoxID][]tref{},
		measurements: map[[2]api.BoxID]measVal{},
		codes:        map[string]codeVal{},
		refs:         titleTable{refs: map[media.ID]titleRef{}},
	}
}

// Open opens a Store on m; it fails with ErrInUse while another Store on m
// is open.
func (m *Memory) Open() (*Store, error) {
	m.handleMu.Lock()
	defer m.handleMu.Unlock()
	if m.inUse {
		return nil, ErrInUse
	}
	m.inUse = true
	return &Store{m: m}, nil
}

// New returns a Store on a new Memory, for callers that never reopen.
func New() *Store {
	s, err := NewMemory().Open()
	if err != nil {
		panic(fmt.Sprintf("memstore: opening a new memory: %v", err)) // cannot happen: no one else has it
	}
	return s
}

// Store is a schedstore.Store on a Memory.
type Store struct {
	m *Memory
	// closed is set holding both of m's updateMu and mu: an Update reads
	// it holding the first, a read holding the second.
	closed bool
}

var _ schedstore.Store = (*Store)(nil)

// Close closes the Store, after the Update running if any; the Memory
// keeps what was stored. Calling it again does nothing.
func (s *Store) Close() error {
	m := s.m
	m.updateMu.Lock()
	m.mu.Lock()
	wasOpen := !s.closed
	s.closed = true
	m.mu.Unlock()
	m.updateMu.Unlock()
	if wasOpen {
		m.handleMu.Lock()
		m.inUse = false
		m.handleMu.Unlock()
	}
	return nil
}

// rlock takes the read lock for a read, unless ctx is done or the Store
// closed.
func (s *Store) rlock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.m.mu.RLock()
	if s.closed {
		s.m.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

// everyN is how many records a Load* passes between looks at its context.
const everyN = 64

// pacer looks at a Load's context every everyN records.
type pacer struct {
	ctx context.Context
	n   int
}

func (p *pacer) next() error {
	if p.n++; p.n%everyN == 0 {
		return p.ctx.Err()
	}
	return nil
}

// boxIDs returns the keys of m.boxes in order. The caller holds m.mu for
// reading.
func (m *Memory) boxIDs() []api.BoxID {
	m.cacheMu.Lock()
	defer m.cacheMu.Unlock()
	if m.sortedBoxes == nil {
		ids := slices.Collect(maps.Keys(m.boxes))
		slices.SortFunc(ids, func(a, b api.BoxID) int { return cmpID(a, b) })
		if ids == nil {
			ids = []api.BoxID{} // built, and empty
		}
		m.sortedBoxes = ids
	}
	return m.sortedBoxes
}

// dropBoxIDs forgets the sorted keys. The caller holds m.mu for writing.
func (m *Memory) dropBoxIDs() {
	m.cacheMu.Lock()
	m.sortedBoxes = nil
	m.cacheMu.Unlock()
}

// eachBox calls fn for each box record in ID order, stopping at fn's first
// error or when ctx is done.
func (s *Store) eachBox(ctx context.Context, fn func(api.BoxID, *boxRec) error) error {
	if err := s.rlock(ctx); err != nil {
		return err
	}
	defer s.m.mu.RUnlock()
	for _, id := range s.m.boxIDs() {
		if err := fn(id, s.m.boxes[id]); err != nil {
			return err
		}
	}
	return nil
}

// LoadBoxes calls fn for every box, in ID order.
func (s *Store) LoadBoxes(ctx context.Context, fn func(schedstore.Box) error) error {
	p := pacer{ctx: ctx}
	return s.eachBox(ctx, func(id api.BoxID, r *boxRec) error {
		if !r.hasBox {
			return nil
		}
		if err := p.next(); err != nil {
			return err
		}
		return fn(r.box.unpack(id))
	})
}

// LoadHoldings calls fn for every holding, in box then title order.
func (s *Store) LoadHoldings(ctx context.Context, fn func(schedstore.Holding) error) error {
	p := pacer{ctx: ctx}
	return s.eachBox(ctx, func(id api.BoxID, r *boxRec) error {
		for i := range r.holdings {
			if err := p.next(); err != nil {
				return err
			}
			h := &r.holdings[i]
			err := fn(schedstore.Holding{Box: id, Title: s.m.refs.id(h.title), Complete: h.complete, Have: bytesOf(h.have)})
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// LoadPriorityLists calls fn for every priority list, in box order.
func (s *Store) LoadPriorityLists(ctx context.Context, fn func(schedstore.PriorityList) error) error {
	p := pacer{ctx: ctx}
	return s.eachBox(ctx, func(id api.BoxID, r *boxRec) error {
		if !r.hasList {
			return nil
		}
		if err := p.next(); err != nil {
			return err
		}
		var titles []media.ID
		if len(r.list) > 0 {
			titles = make([]media.ID, len(r.list))
			for i, ref := range r.list {
				titles[i] = s.m.refs.id(ref)
			}
		}
		return fn(schedstore.PriorityList{Box: id, Titles: titles, Version: r.listVersion})
	})
}

// LoadSeqs calls fn for every box with sequence numbers recorded, in box
// order.
func (s *Store) LoadSeqs(ctx context.Context, fn func(schedstore.BoxSeqs) error) error {
	p := pacer{ctx: ctx}
	return s.eachBox(ctx, func(id api.BoxID, r *boxRec) error {
		if r.in == 0 && r.out == 0 {
			return nil
		}
		if err := p.next(); err != nil {
			return err
		}
		return fn(schedstore.BoxSeqs{Box: id, In: r.in, Out: r.out})
	})
}

// loadSorted calls fn for each record of a map, in key order.
func loadSorted[K comparable, V any](ctx context.Context, s *Store, recs map[K]V, cmp func(a, b K) int,
	fn func(K, *V) error) error {
	if err := s.rlock(ctx); err != nil {
		return err
	}
	defer s.m.mu.RUnlock()
	keys := slices.SortedFunc(maps.Keys(recs), cmp)
	p := pacer{ctx: ctx}
	for _, k := range keys {
		if err := p.next(); err != nil {
			return err
		}
		v := recs[k]
		if err := fn(k, &v); err != nil {
			return err
		}
	}
	return nil
}

// LoadTitles calls fn for every title, in ID order.
func (s *Store) LoadTitles(ctx context.Context, fn func(schedstore.Title) error) error {
	return loadSorted(ctx, s, s.m.titles, func(a, b media.ID) int { return cmpID(a, b) },
		func(id media.ID, v *titleVal) error { return fn(v.unpack(id)) })
}

// LoadMeasurements calls fn for every measurement, in from then to order.
func (s *Store) LoadMeasurements(ctx context.Context, fn func(schedstore.Measurement) error) error {
	return loadSorted(ctx, s, s.m.measurements, cmpPair, func(k [2]api.BoxID, v *measVal) error {
		return fn(schedstore.Measurement{From: k[0], To: k[1], Kbps: v.kbps, RTTMilli: v.rtt, At: fromMicros(v.at)})
	})
}

// LoadTransfers calls fn for every transfer requested or running, in ID
// order; it looks only at those, however many have ended.
func (s *Store) LoadTransfers(ctx context.Context, fn func(schedstore.Transfer) error) error {
	cmp := func(a, b api.TransferID) int {
		switch {
		case a < b:
			return -1
		case a > b:
			return 1
		}
		return 0
	}
	return loadSorted(ctx, s, s.m.open, cmp, func(id api.TransferID, _ *struct{}) error {
		v := s.m.transfers[id]
		return fn(v.unpack(id))
	})
}

// Outbox returns the box's messages with Seq > after, in order.
func (s *Store) Outbox(ctx context.Context, box api.BoxID, after uint64) ([]schedstore.Outbound, error) {
	if err := s.rlock(ctx); err != nil {
		return nil, err
	}
	defer s.m.mu.RUnlock()
	r := s.m.boxes[box]
	if r == nil {
		return nil, nil
	}
	i, _ := slices.BinarySearchFunc(r.outbox, after, func(o outMsg, seq uint64) int {
		if o.seq <= seq {
			return -1
		}
		return 1
	})
	if i == len(r.outbox) {
		return nil, nil
	}
	out := make([]schedstore.Outbound, 0, len(r.outbox)-i)
	for _, o := range r.outbox[i:] {
		out = append(out, schedstore.Outbound{Box: box, Seq: o.seq, Frame: bytesOf(o.frame)})
	}
	return out, nil
}

// Transfer returns one transfer, or an error wrapping ErrNotFound.
func (s *Store) Transfer(ctx context.Context, id api.TransferID) (schedstore.Transfer, error) {
	if err := s.rlock(ctx); err != nil {
		return schedstore.Transfer{}, err
	}
	defer s.m.mu.RUnlock()
	v, ok := s.m.transfers[id]
	if !ok {
		return schedstore.Transfer{}, fmt.Errorf("memstore: transfer %d: %w", id, schedstore.ErrNotFound)
	}
	return v.unpack(id), nil
}

// TransfersOf returns the box's transfers, newest first, at most limit.
func (s *Store) TransfersOf(ctx context.Context, box api.BoxID, limit int) ([]schedstore.Transfer, error) {
	if err := s.rlock(ctx); err != nil {
		return nil, err
	}
	defer s.m.mu.RUnlock()
	refs := s.m.byBox[box]
	if limit <= 0 || len(refs) == 0 {
		return nil, nil
	}
	out := make([]schedstore.Transfer, 0, min(limit, len(refs)))
	for i := len(refs) - 1; i >= 0 && len(out) < limit; i-- {
		v := s.m.transfers[refs[i].id]
		out = append(out, v.unpack(refs[i].id))
	}
	return out, nil
}

// Update runs fn on a Tx of its own and, if fn returns nil, no Tx call
// failed and ctx is not done, applies its writes. A panic in fn goes on up
// and stores nothing.
func (s *Store) Update(ctx context.Context, fn func(schedstore.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m := s.m
	m.updateMu.Lock()
	defer m.updateMu.Unlock()
	if s.closed {
		return ErrClosed
	}
	t := &tx{m: m}
	defer t.done.Store(true)
	if err := fn(t); err != nil {
		return err
	}
	if t.spoiled != nil {
		return fmt.Errorf("memstore: update not stored: a write failed: %w", t.spoiled)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	t.done.Store(true) // before apply, which takes the write set apart
	m.mu.Lock()
	defer m.mu.Unlock()
	t.apply()
	return nil
}

// Package memstore keeps the scheduler's state in memory: for unit tests
// and for the swarm simulator, where a million boxes must not wait on a
// disk. It implements schedstore.Store with the same semantics as the
// durable backends (atomic Update, ordered outbox, never-repeating IDs),
// but nothing survives the process.
package memstore

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/media"
)

type holdingKey struct {
	box   api.BoxID
	title media.ID
}

type pairKey struct{ from, to api.BoxID }

type data struct {
	boxes        map[api.BoxID]schedstore.Box
	holdings     map[holdingKey]schedstore.Holding
	lists        map[api.BoxID]schedstore.PriorityList
	titles       map[media.ID]schedstore.Title
	transfers    map[api.TransferID]schedstore.Transfer
	measurements map[pairKey]schedstore.Measurement
	outbox       map[api.BoxID][]schedstore.Outbound
	seqs         map[api.BoxID][2]uint64
	codes        map[string]string // code -> account; used codes are deleted into used
	used         map[string]bool
	nextID       api.TransferID
}

// Store is an in-memory schedstore.Store.
type Store struct {
	mu sync.RWMutex
	d  data
}

// New returns an empty store.
func New() *Store {
	return &Store{d: data{
		boxes: map[api.BoxID]schedstore.Box{}, holdings: map[holdingKey]schedstore.Holding{},
		lists: map[api.BoxID]schedstore.PriorityList{}, titles: map[media.ID]schedstore.Title{},
		transfers: map[api.TransferID]schedstore.Transfer{}, measurements: map[pairKey]schedstore.Measurement{},
		outbox: map[api.BoxID][]schedstore.Outbound{}, seqs: map[api.BoxID][2]uint64{},
		codes: map[string]string{}, used: map[string]bool{}, nextID: 1,
	}}
}

var _ schedstore.Store = (*Store)(nil)

func each[K comparable, V any](ctx context.Context, s *Store, m map[K]V, fn func(V) error) error {
	s.mu.RLock()
	vals := make([]V, 0, len(m))
	for _, v := range m {
		vals = append(vals, v)
	}
	s.mu.RUnlock()
	for _, v := range vals {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(v); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) LoadBoxes(ctx context.Context, fn func(schedstore.Box) error) error {
	return each(ctx, s, s.d.boxes, fn)
}
func (s *Store) LoadHoldings(ctx context.Context, fn func(schedstore.Holding) error) error {
	return each(ctx, s, s.d.holdings, fn)
}
func (s *Store) LoadPriorityLists(ctx context.Context, fn func(schedstore.PriorityList) error) error {
	return each(ctx, s, s.d.lists, fn)
}
func (s *Store) LoadTitles(ctx context.Context, fn func(schedstore.Title) error) error {
	return each(ctx, s, s.d.titles, fn)
}
func (s *Store) LoadMeasurements(ctx context.Context, fn func(schedstore.Measurement) error) error {
	return each(ctx, s, s.d.measurements, fn)
}
func (s *Store) LoadTransfers(ctx context.Context, fn func(schedstore.Transfer) error) error {
	return each(ctx, s, s.d.transfers, func(t schedstore.Transfer) error {
		if t.State == schedstore.TransferDone || t.State == schedstore.TransferFailed {
			return nil
		}
		return fn(t)
	})
}

func (s *Store) Outbox(_ context.Context, box api.BoxID, after uint64) ([]schedstore.Outbound, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []schedstore.Outbound
	for _, o := range s.d.outbox[box] {
		if o.Seq > after {
			out = append(out, o)
		}
	}
	return out, nil
}

func (s *Store) Seqs(_ context.Context, box api.BoxID) (uint64, uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.d.seqs[box]
	if !ok {
		return 0, 0, fmt.Errorf("sequence numbers of %s: %w", box, schedstore.ErrNotFound)
	}
	return v[0], v[1], nil
}

func (s *Store) Transfer(_ context.Context, id api.TransferID) (schedstore.Transfer, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.d.transfers[id]
	if !ok {
		return t, fmt.Errorf("transfer %d: %w", id, schedstore.ErrNotFound)
	}
	return t, nil
}

func (s *Store) TransfersOf(_ context.Context, box api.BoxID, limit int) ([]schedstore.Transfer, error) {
	s.mu.RLock()
	var out []schedstore.Transfer
	for _, t := range s.d.transfers {
		if t.Sender == box || t.Receiver == box {
			out = append(out, t)
		}
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].ID > out[j].ID
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Update runs fn against a copy of what fn touches and installs the copy
// only if fn succeeds: one writer at a time, readers see the state before
// or after, never between.
func (s *Store) Update(ctx context.Context, fn func(schedstore.Tx) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	tx := &tx{s: s, undo: nil}
	defer func() {
		if r := recover(); r != nil {
			tx.rollback()
			panic(r)
		}
	}()
	if err := fn(tx); err != nil {
		tx.rollback()
		return err
	}
	return nil
}

func (s *Store) Close() error { return nil }

// tx writes in place and keeps closures that undo each write.
type tx struct {
	s    *Store
	undo []func()
}

func (t *tx) rollback() {
	for i := len(t.undo) - 1; i >= 0; i-- {
		t.undo[i]()
	}
}

func remember[K comparable, V any](t *tx, m map[K]V, k K) {
	old, had := m[k]
	t.undo = append(t.undo, func() {
		if had {
			m[k] = old
		} else {
			delete(m, k)
		}
	})
}

func (t *tx) PutBox(b schedstore.Box) error {
	remember(t, t.s.d.boxes, b.ID)
	t.s.d.boxes[b.ID] = b
	return nil
}

func (t *tx) DeleteBox(id api.BoxID) error {
	d := &t.s.d
	remember(t, d.boxes, id)
	delete(d.boxes, id)
	for k := range d.holdings {
		if k.box == id {
			remember(t, d.holdings, k)
			delete(d.holdings, k)
		}
	}
	remember(t, d.lists, id)
	delete(d.lists, id)
	remember(t, d.outbox, id)
	delete(d.outbox, id)
	remember(t, d.seqs, id)
	delete(d.seqs, id)
	return nil
}

func (t *tx) PutHolding(h schedstore.Holding) error {
	k := holdingKey{h.Box, h.Title}
	remember(t, t.s.d.holdings, k)
	h.Have = slices.Clone(h.Have)
	t.s.d.holdings[k] = h
	return nil
}

func (t *tx) DeleteHolding(box api.BoxID, title media.ID) error {
	k := holdingKey{box, title}
	remember(t, t.s.d.holdings, k)
	delete(t.s.d.holdings, k)
	return nil
}

func (t *tx) PutPriorityList(l schedstore.PriorityList) error {
	remember(t, t.s.d.lists, l.Box)
	l.Titles = slices.Clone(l.Titles)
	t.s.d.lists[l.Box] = l
	return nil
}

func (t *tx) PutTitle(x schedstore.Title) error {
	remember(t, t.s.d.titles, x.ID)
	t.s.d.titles[x.ID] = x
	return nil
}

func (t *tx) PutTransfer(x schedstore.Transfer) error {
	remember(t, t.s.d.transfers, x.ID)
	x.Portions = slices.Clone(x.Portions)
	t.s.d.transfers[x.ID] = x
	return nil
}

func (t *tx) PutMeasurement(m schedstore.Measurement) error {
	k := pairKey{m.From, m.To}
	remember(t, t.s.d.measurements, k)
	t.s.d.measurements[k] = m
	return nil
}

func (t *tx) AppendOutbox(o schedstore.Outbound) error {
	q := t.s.d.outbox[o.Box]
	if len(q) > 0 && q[len(q)-1].Seq >= o.Seq {
		return fmt.Errorf("outbox of %s: seq %d not above %d", o.Box, o.Seq, q[len(q)-1].Seq)
	}
	remember(t, t.s.d.outbox, o.Box)
	o.Frame = slices.Clone(o.Frame)
	t.s.d.outbox[o.Box] = append(slices.Clone(q), o)
	return nil
}

func (t *tx) AckOutbox(box api.BoxID, seq uint64) error {
	q := t.s.d.outbox[box]
	i := 0
	for i < len(q) && q[i].Seq <= seq {
		i++
	}
	if i > 0 {
		remember(t, t.s.d.outbox, box)
		t.s.d.outbox[box] = slices.Clone(q[i:])
	}
	return nil
}

func (t *tx) SetSeqs(box api.BoxID, in, out uint64) error {
	remember(t, t.s.d.seqs, box)
	t.s.d.seqs[box] = [2]uint64{in, out}
	return nil
}

func (t *tx) NextTransferID() (api.TransferID, error) {
	// Never undone: an ID handed out in a failed batch is simply skipped.
	id := t.s.d.nextID
	t.s.d.nextID++
	return id, nil
}

func (t *tx) AddActivationCode(code, account string) error {
	if _, ok := t.s.d.codes[code]; ok || t.s.d.used[code] {
		return fmt.Errorf("activation code exists")
	}
	remember(t, t.s.d.codes, code)
	t.s.d.codes[code] = account
	return nil
}

func (t *tx) UseActivationCode(code string) (string, error) {
	if t.s.d.used[code] {
		return "", schedstore.ErrCodeUsed
	}
	account, ok := t.s.d.codes[code]
	if !ok {
		return "", schedstore.ErrCodeUnknown
	}
	remember(t, t.s.d.codes, code)
	remember(t, t.s.d.used, code)
	delete(t.s.d.codes, code)
	t.s.d.used[code] = true
	return account, nil
}

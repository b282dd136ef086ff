package storetest

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"testing"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/media"
)

// model is the reference store: what a store must hold after a series of
// committed Updates. Records are kept normalized.
type model struct {
	boxes        map[api.BoxID]schedstore.Box
	holdings     map[holdingKey]schedstore.Holding
	lists        map[api.BoxID]schedstore.PriorityList
	titles       map[media.ID]schedstore.Title
	transfers    map[api.TransferID]schedstore.Transfer
	measurements map[[2]api.BoxID]schedstore.Measurement
	outbox       map[api.BoxID][]schedstore.Outbound
	seqs         map[api.BoxID][2]uint64
	appended     map[api.BoxID]uint64
	// touched are the boxes whose Outbox, Seqs and TransfersOf are
	// checked, including deleted ones.
	touched map[api.BoxID]bool
}

type holdingKey struct {
	box   api.BoxID
	title media.ID
}

func newModel() *model {
	return &model{
		boxes:        map[api.BoxID]schedstore.Box{},
		holdings:     map[holdingKey]schedstore.Holding{},
		lists:        map[api.BoxID]schedstore.PriorityList{},
		titles:       map[media.ID]schedstore.Title{},
		transfers:    map[api.TransferID]schedstore.Transfer{},
		measurements: map[[2]api.BoxID]schedstore.Measurement{},
		outbox:       map[api.BoxID][]schedstore.Outbound{},
		seqs:         map[api.BoxID][2]uint64{},
		appended:     map[api.BoxID]uint64{},
		touched:      map[api.BoxID]bool{},
	}
}

func (m *model) clone() *model {
	c := &model{
		boxes:        maps.Clone(m.boxes),
		holdings:     maps.Clone(m.holdings),
		lists:        maps.Clone(m.lists),
		titles:       maps.Clone(m.titles),
		transfers:    maps.Clone(m.transfers),
		measurements: maps.Clone(m.measurements),
		outbox:       maps.Clone(m.outbox),
		seqs:         maps.Clone(m.seqs),
		appended:     maps.Clone(m.appended),
		touched:      maps.Clone(m.touched),
	}
	for k, v := range c.outbox {
		c.outbox[k] = slices.Clone(v)
	}
	return c
}

func (m *model) putBox(b schedstore.Box) {
	m.boxes[b.ID] = normBox(b)
	m.touched[b.ID] = true
}

func (m *model) deleteBox(id api.BoxID) {
	delete(m.boxes, id)
	for k := range m.holdings {
		if k.box == id {
			delete(m.holdings, k)
		}
	}
	delete(m.lists, id)
	delete(m.outbox, id)
	delete(m.seqs, id)
	delete(m.appended, id)
	m.touched[id] = true
}

func (m *model) putHolding(h schedstore.Holding) {
	m.holdings[holdingKey{h.Box, h.Title}] = normHolding(h)
}

func (m *model) deleteHolding(box api.BoxID, title media.ID) {
	delete(m.holdings, holdingKey{box, title})
}

func (m *model) putList(l schedstore.PriorityList) { m.lists[l.Box] = normList(l) }

func (m *model) putTitle(ti schedstore.Title) { m.titles[ti.ID] = normTitle(ti) }

func (m *model) putTransfer(tr schedstore.Transfer) {
	m.transfers[tr.ID] = normTransfer(tr)
	m.touched[tr.Receiver] = true
	m.touched[tr.Sender] = true
}

func (m *model) putMeasurement(me schedstore.Measurement) {
	m.measurements[[2]api.BoxID{me.From, me.To}] = normMeasurement(me)
}

// appendOutbox reports whether a store must accept the message.
func (m *model) appendOutbox(o schedstore.Outbound) bool {
	m.touched[o.Box] = true
	if o.Seq == 0 || o.Seq > 1<<63-1 || o.Seq <= m.appended[o.Box] {
		return false
	}
	m.appended[o.Box] = o.Seq
	m.outbox[o.Box] = append(m.outbox[o.Box], normOutbound(o))
	return true
}

func (m *model) ackOutbox(box api.BoxID, seq uint64) {
	m.touched[box] = true
	m.outbox[box] = slices.DeleteFunc(m.outbox[box], func(o schedstore.Outbound) bool { return o.Seq <= seq })
	if len(m.outbox[box]) == 0 {
		delete(m.outbox, box)
	}
}

func (m *model) setSeqs(box api.BoxID, in, out uint64) {
	m.touched[box] = true
	m.seqs[box] = [2]uint64{in, out}
}

func (m *model) transfersOf(box api.BoxID, limit int) []schedstore.Transfer {
	var trs []schedstore.Transfer
	for _, tr := range m.transfers {
		if tr.Receiver == box || tr.Sender == box {
			trs = append(trs, tr)
		}
	}
	sortNewestFirst(trs)
	if limit <= 0 {
		return nil
	}
	if len(trs) > limit {
		trs = trs[:limit]
	}
	return trs
}

func sortNewestFirst(trs []schedstore.Transfer) {
	slices.SortFunc(trs, func(a, b schedstore.Transfer) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return cmp.Compare(b.ID, a.ID)
	})
}

func open(tr schedstore.Transfer) bool {
	return tr.State == schedstore.TransferRequested || tr.State == schedstore.TransferRunning
}

// both applies each write to a store's Tx and to a model.
type both struct {
	t  testing.TB
	tx schedstore.Tx
	m  *model
}

func (b *both) putBox(x schedstore.Box) { must(b.t, b.tx.PutBox(x)); b.m.putBox(x) }
func (b *both) deleteBox(id api.BoxID)  { must(b.t, b.tx.DeleteBox(id)); b.m.deleteBox(id) }
func (b *both) putHolding(h schedstore.Holding) {
	must(b.t, b.tx.PutHolding(h))
	b.m.putHolding(h)
}
func (b *both) deleteHolding(box api.BoxID, title media.ID) {
	must(b.t, b.tx.DeleteHolding(box, title))
	b.m.deleteHolding(box, title)
}
func (b *both) putList(l schedstore.PriorityList) { must(b.t, b.tx.PutPriorityList(l)); b.m.putList(l) }
func (b *both) putTitle(ti schedstore.Title)      { must(b.t, b.tx.PutTitle(ti)); b.m.putTitle(ti) }
func (b *both) putTransfer(tr schedstore.Transfer) {
	must(b.t, b.tx.PutTransfer(tr))
	b.m.putTransfer(tr)
}
func (b *both) putMeasurement(me schedstore.Measurement) {
	must(b.t, b.tx.PutMeasurement(me))
	b.m.putMeasurement(me)
}
func (b *both) appendOutbox(o schedstore.Outbound) {
	if !b.m.appendOutbox(o) {
		b.t.Fatalf("test bug: appending seq %d to %s would be refused", o.Seq, o.Box)
	}
	must(b.t, b.tx.AppendOutbox(o))
}
func (b *both) ackOutbox(box api.BoxID, seq uint64) {
	must(b.t, b.tx.AckOutbox(box, seq))
	b.m.ackOutbox(box, seq)
}
func (b *both) setSeqs(box api.BoxID, in, out uint64) {
	must(b.t, b.tx.SetSeqs(box, in, out))
	b.m.setSeqs(box, in, out)
}

// update runs fn in one Update of s, applying its writes to m only once
// the Update has committed. fn may run more than once.
func (m *model) update(t testing.TB, s schedstore.Store, fn func(b *both)) {
	t.Helper()
	var next *model
	update(t, s, func(tx schedstore.Tx) error {
		next = m.clone()
		fn(&both{t: t, tx: tx, m: next})
		return nil
	})
	*m = *next
}

// loadAll reads everything the Load* methods return, failing the test on
// a record returned twice.
type loaded struct {
	boxes        map[api.BoxID]schedstore.Box
	holdings     map[holdingKey]schedstore.Holding
	lists        map[api.BoxID]schedstore.PriorityList
	titles       map[media.ID]schedstore.Title
	transfers    map[api.TransferID]schedstore.Transfer
	measurements map[[2]api.BoxID]schedstore.Measurement
	seqs         map[api.BoxID][2]uint64
}

func loadAll(t testing.TB, s schedstore.Store) loaded {
	t.Helper()
	ctx := context.Background()
	l := loaded{
		boxes:        map[api.BoxID]schedstore.Box{},
		holdings:     map[holdingKey]schedstore.Holding{},
		lists:        map[api.BoxID]schedstore.PriorityList{},
		titles:       map[media.ID]schedstore.Title{},
		transfers:    map[api.TransferID]schedstore.Transfer{},
		measurements: map[[2]api.BoxID]schedstore.Measurement{},
		seqs:         map[api.BoxID][2]uint64{},
	}
	dup := func(what string, key any) { t.Errorf("%s %v returned twice", what, key) }
	errs := []error{
		s.LoadSeqs(ctx, func(sq schedstore.BoxSeqs) error {
			if _, ok := l.seqs[sq.Box]; ok {
				dup("seqs", sq.Box)
			}
			l.seqs[sq.Box] = [2]uint64{sq.In, sq.Out}
			return nil
		}),
		s.LoadBoxes(ctx, func(b schedstore.Box) error {
			if _, ok := l.boxes[b.ID]; ok {
				dup("box", b.ID)
			}
			l.boxes[b.ID] = normBox(b)
			return nil
		}),
		s.LoadHoldings(ctx, func(h schedstore.Holding) error {
			k := holdingKey{h.Box, h.Title}
			if _, ok := l.holdings[k]; ok {
				dup("holding", k)
			}
			l.holdings[k] = normHolding(h)
			return nil
		}),
		s.LoadPriorityLists(ctx, func(pl schedstore.PriorityList) error {
			if _, ok := l.lists[pl.Box]; ok {
				dup("priority list", pl.Box)
			}
			l.lists[pl.Box] = normList(pl)
			return nil
		}),
		s.LoadTitles(ctx, func(ti schedstore.Title) error {
			if _, ok := l.titles[ti.ID]; ok {
				dup("title", ti.ID)
			}
			l.titles[ti.ID] = normTitle(ti)
			return nil
		}),
		s.LoadTransfers(ctx, func(tr schedstore.Transfer) error {
			if _, ok := l.transfers[tr.ID]; ok {
				dup("transfer", tr.ID)
			}
			l.transfers[tr.ID] = normTransfer(tr)
			return nil
		}),
		s.LoadMeasurements(ctx, func(me schedstore.Measurement) error {
			k := [2]api.BoxID{me.From, me.To}
			if _, ok := l.measurements[k]; ok {
				dup("measurement", k)
			}
			l.measurements[k] = normMeasurement(me)
			return nil
		}),
	}
	for _, err := range errs {
		if err != nil {
			t.Fatalf("load: %v", err)
		}
	}
	return l
}

// checkMaps compares a loaded map with the model's, record by record, so a
// failure names the record.
func checkMaps[K comparable, V any](t testing.TB, what string, got, want map[K]V) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s %v: missing", what, k)
			continue
		}
		checkEqual(t, what, g, w)
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s %v: stored but not expected: %s", what, k, show(g))
		}
	}
}

// check compares everything a store shows with the model.
func (m *model) check(t testing.TB, s schedstore.Store) {
	t.Helper()
	m.checkLoads(t, s)
	m.checkBoxes(t, s)
}

// checkLoads compares what Load* and Transfer return with the model.
func (m *model) checkLoads(t testing.TB, s schedstore.Store) {
	t.Helper()
	ctx := context.Background()
	l := loadAll(t, s)
	checkMaps(t, "box", l.boxes, m.boxes)
	checkMaps(t, "holding", l.holdings, m.holdings)
	checkMaps(t, "priority list", l.lists, m.lists)
	checkMaps(t, "title", l.titles, m.titles)
	checkMaps(t, "measurement", l.measurements, m.measurements)
	recorded := map[api.BoxID][2]uint64{}
	for box, sq := range m.seqs {
		if sq != [2]uint64{} {
			recorded[box] = sq
		}
	}
	checkMaps(t, "seqs", l.seqs, recorded)
	openTransfers := map[api.TransferID]schedstore.Transfer{}
	for id, tr := range m.transfers {
		if open(tr) {
			openTransfers[id] = tr
		}
		got, err := s.Transfer(ctx, id)
		if err != nil {
			t.Errorf("transfer %d: %v", id, err)
			continue
		}
		checkEqual(t, "transfer", normTransfer(got), tr)
	}
	checkMaps(t, "open transfer", l.transfers, openTransfers)
}

// checkBoxes compares the outbox, sequence numbers and transfers of each
// box touched with the model.
func (m *model) checkBoxes(t testing.TB, s schedstore.Store) {
	t.Helper()
	ctx := context.Background()
	for box := range m.touched {
		got, err := s.Outbox(ctx, box, 0)
		if err != nil {
			t.Fatalf("outbox of %s: %v", box, err)
		}
		for i := range got {
			got[i] = normOutbound(got[i])
		}
		if len(got) == 0 {
			got = nil
		}
		checkEqual(t, "outbox of "+box.String(), got, m.outbox[box])

		trs, err := s.TransfersOf(ctx, box, 1000)
		if err != nil {
			t.Fatalf("transfers of %s: %v", box, err)
		}
		for i := range trs {
			trs[i] = normTransfer(trs[i])
		}
		if len(trs) == 0 {
			trs = nil
		}
		checkEqual(t, "transfers of "+box.String(), trs, m.transfersOf(box, 1000))
	}
}

package memstore

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync/atomic"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/media"
)

var errTxDone = errors.New("memstore: transaction used after its Update returned")

// tx is a schedstore.Tx: a write set over the Memory, applied by apply
// once fn has returned. Its methods read the Memory's maps without a lock:
// the Update holds updateMu, and only the goroutine holding it changes
// them. A tx is not safe for concurrent use, like the Tx of the other
// backends.
type tx struct {
	m       *Memory
	done    atomic.Bool
	spoiled error // the first write that failed: the Update will not apply

	// Puts that no later call reads back are kept in the order made and
	// applied in that order, so the last put of a key wins: a slice costs
	// less than a map. Maps are made at their first write.
	boxes        map[api.BoxID]*boxDelta
	titles       []keyed[media.ID, titleVal]
	transfers    []keyed[api.TransferID, transferVal]
	measurements []keyed[[2]api.BoxID, measVal]
	codes        map[string]codeVal
	lastID       uint64 // the last transfer ID given, once idTaken
	idTaken      bool
}

// keyed is a record put with its key.
type keyed[K, V any] struct {
	k K
	v V
}

var _ schedstore.Tx = (*tx)(nil)

// boxDelta is what a tx changes under one box ID.
type boxDelta struct {
	// reset is set by DeleteBox: the stored record counts for nothing,
	// and what follows starts from empty.
	reset    bool
	box      boxVal // put, if boxPut
	boxPut   bool
	holdings []holdingChange // in the order made
	list     []media.ID
	listPut  bool
	listVer  uint64
	ack      uint64   // drop stored messages with Seq <= ack
	pending  []outMsg // appended in this tx, by Seq, less what acks dropped
	// The sequence numbers and outbox mark as this tx leaves them, read
	// from the record when the delta is made.
	in, out, appended uint64
}

// holdingChange is a put, or a delete when del is set.
type holdingChange struct {
	title    media.ID
	have     string
	order    int32 // the change's place among the box's changes
	complete bool
	del      bool
}

// begin is called by every method: it refuses once the Update is over, or
// once a write has failed.
func (t *tx) begin() error {
	if t.done.Load() {
		return errTxDone
	}
	if t.spoiled != nil {
		return fmt.Errorf("memstore: an earlier write in this update failed: %w", t.spoiled)
	}
	return nil
}

// fail spoils the Update with err and returns it.
func (t *tx) fail(err error) error {
	if t.spoiled == nil {
		t.spoiled = err
	}
	return err
}

// box returns the delta of a box, making it on first use.
func (t *tx) box(id api.BoxID) *boxDelta {
	if d, ok := t.boxes[id]; ok {
		return d
	}
	if t.boxes == nil {
		t.boxes = map[api.BoxID]*boxDelta{}
	}
	d := &boxDelta{}
	if r := t.m.boxes[id]; r != nil {
		d.in, d.out, d.appended = r.in, r.out, r.appended
	}
	t.boxes[id] = d
	return d
}

func (t *tx) PutBox(b schedstore.Box) error {
	if err := t.begin(); err != nil {
		return err
	}
	if err := schedstore.CheckBox(b); err != nil {
		return t.fail(fmt.Errorf("memstore: box %s: %w", b.ID, err))
	}
	d := t.box(b.ID)
	d.box, d.boxPut = packBox(b), true
	return nil
}

func (t *tx) DeleteBox(id api.BoxID) error {
	if err := t.begin(); err != nil {
		return err
	}
	d := t.box(id)
	*d = boxDelta{reset: true, holdings: d.holdings[:0]}
	return nil
}

func (t *tx) PutHolding(h schedstore.Holding) error {
	if err := t.begin(); err != nil {
		return err
	}
	d := t.box(h.Box)
	d.holdings = append(d.holdings, holdingChange{title: h.Title, have: string(h.Have), order: int32(len(d.holdings)),
		complete: h.Complete})
	return nil
}

func (t *tx) DeleteHolding(box api.BoxID, title media.ID) error {
	if err := t.begin(); err != nil {
		return err
	}
	d := t.box(box)
	d.holdings = append(d.holdings, holdingChange{title: title, order: int32(len(d.holdings)), del: true})
	return nil
}

func (t *tx) PutPriorityList(l schedstore.PriorityList) error {
	if err := t.begin(); err != nil {
		return err
	}
	d := t.box(l.Box)
	d.list, d.listPut, d.listVer = cloneOrNil(l.Titles), true, l.Version
	return nil
}

func (t *tx) PutTitle(ti schedstore.Title) error {
	if err := t.begin(); err != nil {
		return err
	}
	if err := schedstore.CheckTitle(ti); err != nil {
		return t.fail(fmt.Errorf("memstore: title %s: %w", ti.ID, err))
	}
	t.titles = append(t.titles, keyed[media.ID, titleVal]{ti.ID, packTitle(ti)})
	return nil
}

func (t *tx) PutTransfer(tr schedstore.Transfer) error {
	if err := t.begin(); err != nil {
		return err
	}
	if err := schedstore.CheckTransfer(tr); err != nil {
		return t.fail(fmt.Errorf("memstore: transfer %d: %w", tr.ID, err))
	}
	t.transfers = append(t.transfers, keyed[api.TransferID, transferVal]{tr.ID, packTransfer(tr)})
	return nil
}

func (t *tx) PutMeasurement(me schedstore.Measurement) error {
	if err := t.begin(); err != nil {
		return err
	}
	if err := schedstore.CheckMeasurement(me); err != nil {
		return t.fail(fmt.Errorf("memstore: measurement %s to %s: %w", me.From, me.To, err))
	}
	t.measurements = append(t.measurements, keyed[[2]api.BoxID, measVal]{[2]api.BoxID{me.From, me.To},
		measVal{kbps: me.Kbps, rtt: me.RTTMilli, at: micros(me.At)}})
	return nil
}

func (t *tx) AppendOutbox(o schedstore.Outbound) error {
	if err := t.begin(); err != nil {
		return err
	}
	if o.Seq == 0 || o.Seq > math.MaxInt64 {
		return t.fail(fmt.Errorf("memstore: outbox of %s: seq %d outside 1 to 2^63-1", o.Box, o.Seq))
	}
	d := t.box(o.Box)
	if o.Seq <= d.appended {
		return t.fail(fmt.Errorf("memstore: outbox of %s: seq %d not above %d, the last appended", o.Box, o.Seq, d.appended))
	}
	d.appended = o.Seq
	d.pending = append(d.pending, outMsg{seq: o.Seq, frame: string(o.Frame)})
	return nil
}

func (t *tx) AckOutbox(box api.BoxID, seq uint64) error {
	if err := t.begin(); err != nil {
		return err
	}
	d := t.box(box)
	d.ack = max(d.ack, seq)
	// Messages appended later in this tx are above seq or not, but were
	// not there to be acknowledged: only the pending ones go now.
	i := 0
	for i < len(d.pending) && d.pending[i].seq <= seq {
		i++
	}
	d.pending = d.pending[i:]
	return nil
}

func (t *tx) SetSeqs(box api.BoxID, in, out uint64) error {
	if err := t.begin(); err != nil {
		return err
	}
	d := t.box(box)
	d.in, d.out = in, out
	return nil
}

func (t *tx) NextTransferID() (api.TransferID, error) {
	if err := t.begin(); err != nil {
		return 0, err
	}
	if !t.idTaken {
		t.lastID, t.idTaken = t.m.lastTransferID, true
	}
	if t.lastID == math.MaxUint64 {
		return 0, t.fail(errors.New("memstore: next transfer ID: all 2^64-1 given"))
	}
	t.lastID++
	return api.TransferID(t.lastID), nil
}

// code reads an activation code as the Update has left it so far.
func (t *tx) code(code string) (codeVal, bool) {
	if c, ok := t.codes[code]; ok {
		return c, true
	}
	c, ok := t.m.codes[code]
	return c, ok
}

func (t *tx) setCode(code string, c codeVal) {
	if t.codes == nil {
		t.codes = map[string]codeVal{}
	}
	t.codes[code] = c
}

// Activation codes are secrets until used, so errors do not quote them.

func (t *tx) AddActivationCode(code, account string) error {
	if err := t.begin(); err != nil {
		return err
	}
	if err := schedstore.CheckCode(code); err != nil {
		return t.fail(fmt.Errorf("memstore: activation code: %w", err))
	}
	if err := schedstore.CheckString(account); err != nil {
		return t.fail(fmt.Errorf("memstore: activation code for account %q: %w", account, err))
	}
	if _, ok := t.code(code); ok {
		return t.fail(fmt.Errorf("memstore: activation code for account %q: code exists", account))
	}
	t.setCode(code, codeVal{account: account})
	return nil
}

func (t *tx) UseActivationCode(code string) (string, error) {
	if err := t.begin(); err != nil {
		return "", err
	}
	c, ok := t.code(code)
	if !ok {
		return "", schedstore.ErrCodeUnknown
	}
	if c.used {
		return "", schedstore.ErrCodeUsed
	}
	c.used = true
	t.setCode(code, c)
	return c.account, nil
}

// apply stores the write set. The caller holds m.mu for writing. Writes
// to different keys commute, so the order of a map's keys does not
// matter; only the order of puts to one key does, and the slices keep it.
func (t *tx) apply() {
	m := t.m
	for id, d := range t.boxes {
		m.applyBox(id, d)
	}
	for _, ti := range t.titles {
		m.titles[ti.k] = ti.v
	}
	for _, me := range t.measurements {
		m.measurements[me.k] = me.v
	}
	for code, c := range t.codes {
		m.codes[code] = c
	}
	for i := range t.transfers {
		id, tr := t.transfers[i].k, &t.transfers[i].v
		if old, ok := m.transfers[id]; ok {
			m.unindex(id, &old)
		}
		m.transfers[id] = *tr
		m.index(id, tr)
	}
	if t.idTaken {
		m.lastTransferID = t.lastID
	}
}

func (m *Memory) applyBox(id api.BoxID, d *boxDelta) {
	r := m.boxes[id]
	stored := r != nil
	if !stored {
		r = &boxRec{}
	}
	if d.reset {
		*r = boxRec{}
	}
	if d.boxPut {
		r.box, r.hasBox = d.box, true
	}
	if d.listPut {
		r.list, r.listVersion, r.hasList = nil, d.listVer, true
		if len(d.list) > 0 {
			r.list = make([]titleRef, len(d.list))
			for i, id := range d.list {
				r.list[i] = m.refs.ref(id)
			}
		}
	}
	if len(d.holdings) > 0 {
		r.holdings = m.mergeHoldings(r.holdings, d.holdings)
	}
	if d.ack > 0 && len(r.outbox) > 0 {
		r.outbox = dropAcked(r.outbox, d.ack)
	}
	if len(d.pending) > 0 {
		r.outbox = append(r.outbox, d.pending...)
	}
	r.in, r.out, r.appended = d.in, d.out, d.appended
	switch empty := r.empty(); {
	case empty && stored:
		delete(m.boxes, id)
		m.dropBoxIDs()
	case !empty && !stored:
		m.boxes[id] = r
		m.dropBoxIDs()
	}
}

// dropAcked drops the messages with Seq <= ack from the front of an
// outbox, clearing them so their frames can be collected; the array is
// reused, and append moves only what is left when it grows.
func dropAcked(outbox []outMsg, ack uint64) []outMsg {
	n, _ := slices.BinarySearchFunc(outbox, ack, func(o outMsg, seq uint64) int {
		if o.seq <= seq {
			return -1
		}
		return 1
	})
	if n == len(outbox) {
		return nil
	}
	clear(outbox[:n])
	return outbox[n:]
}

// mergeHoldings applies changes, in the order made, to holdings sorted by
// title ID.
func (m *Memory) mergeHoldings(holdings []holding, changes []holdingChange) []holding {
	// The last change to each title wins. (A stable sort would keep the
	// order too, but takes four times as long on 40 changes.)
	slices.SortFunc(changes, func(a, b holdingChange) int {
		if c := cmpID(a.title, b.title); c != 0 {
			return c
		}
		return cmp.Compare(a.order, b.order)
	})
	last := changes[:0]
	for i, c := range changes {
		if i+1 < len(changes) && changes[i+1].title == c.title {
			continue
		}
		last = append(last, c)
	}
	byID := func(h holding, id media.ID) int { return cmpID(m.refs.id(h.title), id) }
	// The common case, a box's bitmaps updated: replace in place.
	inPlace := len(last) <= 16
	var at [16]int
	for j := 0; inPlace && j < len(last); j++ {
		i, found := slices.BinarySearchFunc(holdings, last[j].title, byID)
		inPlace = found && !last[j].del
		at[j] = i
	}
	if inPlace {
		for j, c := range last {
			h := &holdings[at[j]]
			h.have, h.complete = c.have, c.complete
		}
		return holdings
	}
	merged := make([]holding, 0, len(holdings)+len(last))
	i := 0
	for _, c := range last {
		for i < len(holdings) && byID(holdings[i], c.title) < 0 {
			merged = append(merged, holdings[i])
			i++
		}
		if i < len(holdings) && byID(holdings[i], c.title) == 0 {
			i++ // replaced or deleted
		}
		if !c.del {
			merged = append(merged, holding{have: c.have, title: m.refs.ref(c.title), complete: c.complete})
		}
	}
	merged = append(merged, holdings[i:]...)
	if len(merged) == 0 {
		return nil
	}
	return slices.Clip(merged)
}

// index enters a transfer in its boxes' histories and, if open, the open
// set.
func (m *Memory) index(id api.TransferID, tr *transferVal) {
	ref := tref{created: tr.created, id: id}
	m.byBox[tr.receiver] = insertRef(m.byBox[tr.receiver], ref)
	if tr.sender != tr.receiver {
		m.byBox[tr.sender] = insertRef(m.byBox[tr.sender], ref)
	}
	if tr.open() {
		m.open[id] = struct{}{}
	}
}

// unindex undoes index for the record being replaced.
func (m *Memory) unindex(id api.TransferID, tr *transferVal) {
	ref := tref{created: tr.created, id: id}
	m.removeRef(tr.receiver, ref)
	if tr.sender != tr.receiver {
		m.removeRef(tr.sender, ref)
	}
	delete(m.open, id)
}

func insertRef(refs []tref, ref tref) []tref {
	// Transfers are mostly created in time order: the end is the place.
	if n := len(refs); n == 0 || cmpTref(refs[n-1], ref) < 0 {
		return append(refs, ref)
	}
	i, found := slices.BinarySearchFunc(refs, ref, cmpTref)
	if found {
		return refs
	}
	return slices.Insert(refs, i, ref)
}

func (m *Memory) removeRef(box api.BoxID, ref tref) {
	refs := m.byBox[box]
	i, found := slices.BinarySearchFunc(refs, ref, cmpTref)
	if !found {
		return
	}
	refs = slices.Delete(refs, i, i+1)
	if len(refs) == 0 {
		delete(m.byBox, box)
		return
	}
	m.byBox[box] = refs
}

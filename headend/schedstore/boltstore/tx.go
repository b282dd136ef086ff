package boltstore

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/media"
)

var errTxDone = errors.New("boltstore: transaction used after its Update returned")

// tx is a schedstore.Tx on a bbolt write transaction.
//
// Writes are held back, per bucket, and applied in key order: bbolt splits
// nodes only at commit, so keys put in random order into one young node
// cost a memmove each of everything after them, and registering 10,000
// boxes with 40 holdings each took minutes instead of a second. Reads look
// at the held-back writes first; a prefix scan applies its bucket's first.
type tx struct {
	btx     *bolt.Tx
	pending map[string]map[string]pendingWrite // bucket → key → write
	spoiled error                              // the first write that failed: the Update will not commit
	done    bool
}

// pendingWrite is a put, or a delete when del is set.
type pendingWrite struct {
	v   []byte
	del bool
}

var _ schedstore.Tx = (*tx)(nil)

// begin is called by every method: it refuses once the Update is over, or
// once a write has failed.
func (t *tx) begin() error {
	if t.done {
		return errTxDone
	}
	if t.spoiled != nil {
		return fmt.Errorf("boltstore: an earlier write in this update failed: %w", t.spoiled)
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

func (t *tx) hold(bucket, k []byte, w pendingWrite) {
	p := t.pending[string(bucket)]
	if p == nil {
		p = map[string]pendingWrite{}
		t.pending[string(bucket)] = p
	}
	p[string(k)] = w
}

func (t *tx) put(bucket, k, v []byte) { t.hold(bucket, k, pendingWrite{v: v}) }
func (t *tx) delete(bucket, k []byte) { t.hold(bucket, k, pendingWrite{del: true}) }

// get reads a key as the Update has left it so far.
func (t *tx) get(bucket, k []byte) []byte {
	if w, ok := t.pending[string(bucket)][string(k)]; ok {
		if w.del {
			return nil
		}
		return w.v
	}
	return t.btx.Bucket(bucket).Get(k)
}

// flush applies a bucket's held-back writes, in key order.
func (t *tx) flush(bucket []byte) error {
	p := t.pending[string(bucket)]
	if len(p) == 0 {
		return nil
	}
	delete(t.pending, string(bucket))
	b := t.btx.Bucket(bucket)
	for _, k := range slices.Sorted(maps.Keys(p)) {
		// bbolt keeps the key and value until the transaction ends:
		// both are fresh slices no one else writes.
		var err error
		if w := p[k]; w.del {
			err = b.Delete([]byte(k))
		} else {
			err = b.Put([]byte(k), w.v)
		}
		if err != nil {
			key := fmt.Sprintf("%x", k)
			if bytes.Equal(bucket, bCodes) {
				key = "(a code)" // secret until used
			}
			return t.fail(fmt.Errorf("boltstore: write %s %s: %w", bucket, key, err))
		}
	}
	return nil
}

func (t *tx) flushAll() error {
	for _, name := range allBuckets {
		if err := t.flush(name); err != nil {
			return err
		}
	}
	return nil
}

// deletePrefix deletes every key starting with prefix and at most last
// (when last is not nil).
func (t *tx) deletePrefix(bucket, prefix, last []byte) error {
	if err := t.flush(bucket); err != nil {
		return err
	}
	c := t.btx.Bucket(bucket).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if last != nil && bytes.Compare(k, last) > 0 {
			break
		}
		// Held back, not deleted under the moving cursor, which can
		// skip keys.
		t.delete(bucket, bytes.Clone(k))
	}
	return nil
}

func (t *tx) PutBox(b schedstore.Box) error {
	if err := t.begin(); err != nil {
		return err
	}
	if err := schedstore.CheckBox(b); err != nil {
		return t.fail(fmt.Errorf("boltstore: box %s: %w", b.ID, err))
	}
	t.put(bBoxes, b.ID[:], encodeBox(b))
	return nil
}

func (t *tx) DeleteBox(id api.BoxID) error {
	if err := t.begin(); err != nil {
		return err
	}
	for _, b := range [][]byte{bBoxes, bLists, bSeqs} {
		t.delete(b, id[:])
	}
	if err := t.deletePrefix(bHoldings, id[:], nil); err != nil {
		return err
	}
	return t.deletePrefix(bOutbox, id[:], nil)
}

func (t *tx) PutHolding(h schedstore.Holding) error {
	if err := t.begin(); err != nil {
		return err
	}
	t.put(bHoldings, holdingKey(h.Box, h.Title), encodeHolding(h))
	return nil
}

func (t *tx) DeleteHolding(box api.BoxID, title media.ID) error {
	if err := t.begin(); err != nil {
		return err
	}
	t.delete(bHoldings, holdingKey(box, title))
	return nil
}

func (t *tx) PutPriorityList(l schedstore.PriorityList) error {
	if err := t.begin(); err != nil {
		return err
	}
	t.put(bLists, l.Box[:], encodeList(l))
	return nil
}

func (t *tx) PutTitle(ti schedstore.Title) error {
	if err := t.begin(); err != nil {
		return err
	}
	if err := schedstore.CheckTitle(ti); err != nil {
		return t.fail(fmt.Errorf("boltstore: title %s: %w", ti.ID, err))
	}
	t.put(bTitles, ti.ID[:], encodeTitle(ti))
	return nil
}

func (t *tx) PutTransfer(tr schedstore.Transfer) error {
	if err := t.begin(); err != nil {
		return err
	}
	if err := schedstore.CheckTransfer(tr); err != nil {
		return t.fail(fmt.Errorf("boltstore: transfer %d: %w", tr.ID, err))
	}
	k := transferKey(tr.ID)
	// Drop the index entries of the record being replaced.
	if v := t.get(bTransfers, k); v != nil {
		old, err := decodeTransfer(k, v)
		if err != nil {
			return t.fail(fmt.Errorf("boltstore: transfer %d being replaced: %w", tr.ID, err))
		}
		t.delete(bByBox, byBoxKey(old.Receiver, old))
		t.delete(bByBox, byBoxKey(old.Sender, old))
		t.delete(bOpen, k)
	}
	t.put(bTransfers, k, encodeTransfer(tr))
	t.put(bByBox, byBoxKey(tr.Receiver, tr), nil)
	t.put(bByBox, byBoxKey(tr.Sender, tr), nil) // the same key when sender is receiver
	if tr.State == schedstore.TransferRequested || tr.State == schedstore.TransferRunning {
		t.put(bOpen, k, nil)
	}
	return nil
}

func (t *tx) PutMeasurement(m schedstore.Measurement) error {
	if err := t.begin(); err != nil {
		return err
	}
	if err := schedstore.CheckMeasurement(m); err != nil {
		return t.fail(fmt.Errorf("boltstore: measurement %s to %s: %w", m.From, m.To, err))
	}
	t.put(bMeasurements, measurementKey(m.From, m.To), encodeMeasurement(m))
	return nil
}

// seqs reads a box's sequence numbers as the Update has left them.
func (t *tx) seqs(box api.BoxID) (seqs, error) {
	v := t.get(bSeqs, box[:])
	if v == nil {
		return seqs{}, nil
	}
	sq, err := decodeSeqs(v)
	if err != nil {
		return sq, t.fail(fmt.Errorf("boltstore: seqs of %s: %w", box, err))
	}
	return sq, nil
}

func (t *tx) AppendOutbox(o schedstore.Outbound) error {
	if err := t.begin(); err != nil {
		return err
	}
	if o.Seq == 0 || o.Seq > math.MaxInt64 {
		return t.fail(fmt.Errorf("boltstore: outbox of %s: seq %d outside 1 to 2^63-1", o.Box, o.Seq))
	}
	sq, err := t.seqs(o.Box)
	if err != nil {
		return err
	}
	if o.Seq <= sq.appended {
		return t.fail(fmt.Errorf("boltstore: outbox of %s: seq %d not above %d, the last appended", o.Box, o.Seq, sq.appended))
	}
	sq.appended = o.Seq
	t.put(bOutbox, outboxKey(o.Box, o.Seq), encodeFrame(o.Frame))
	t.put(bSeqs, o.Box[:], encodeSeqs(sq))
	return nil
}

func (t *tx) AckOutbox(box api.BoxID, seq uint64) error {
	if err := t.begin(); err != nil {
		return err
	}
	return t.deletePrefix(bOutbox, box[:], outboxKey(box, seq))
}

func (t *tx) SetSeqs(box api.BoxID, in, out uint64) error {
	if err := t.begin(); err != nil {
		return err
	}
	sq, err := t.seqs(box)
	if err != nil {
		return err
	}
	sq.in, sq.out = in, out
	t.put(bSeqs, box[:], encodeSeqs(sq))
	return nil
}

func (t *tx) NextTransferID() (api.TransferID, error) {
	if err := t.begin(); err != nil {
		return 0, err
	}
	id, err := t.btx.Bucket(bMeta).NextSequence()
	if err != nil {
		return 0, t.fail(fmt.Errorf("boltstore: next transfer ID: %w", err))
	}
	return api.TransferID(id), nil
}

// Activation codes are secrets until used, so errors do not quote them.

func (t *tx) AddActivationCode(code, account string) error {
	if err := t.begin(); err != nil {
		return err
	}
	if err := schedstore.CheckCode(code); err != nil {
		return t.fail(fmt.Errorf("boltstore: activation code: %w", err))
	}
	if err := schedstore.CheckString(account); err != nil {
		return t.fail(fmt.Errorf("boltstore: activation code for account %q: %w", account, err))
	}
	if t.get(bCodes, []byte(code)) != nil {
		return t.fail(fmt.Errorf("boltstore: activation code for account %q: code exists", account))
	}
	t.put(bCodes, []byte(code), encodeCode(codeRecord{account: account}))
	return nil
}

func (t *tx) UseActivationCode(code string) (string, error) {
	if err := t.begin(); err != nil {
		return "", err
	}
	if schedstore.CheckCode(code) != nil { // cannot have been added
		return "", schedstore.ErrCodeUnknown
	}
	v := t.get(bCodes, []byte(code))
	if v == nil {
		return "", schedstore.ErrCodeUnknown
	}
	rec, err := decodeCode(v)
	if err != nil {
		return "", t.fail(fmt.Errorf("boltstore: activation code: %w", err))
	}
	if rec.used {
		return "", schedstore.ErrCodeUsed
	}
	rec.used = true
	t.put(bCodes, []byte(code), encodeCode(rec))
	return rec.account, nil
}

package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/media"
)

// ErrCorrupt is wrapped by every error decoding a stored record.
var ErrCorrupt = errors.New("corrupt record")

// recordV1 is the first byte of every value this build writes. A later
// build that changes a record's layout writes a new version and still
// reads this one.
const recordV1 = 1

// Values are: the version byte, then fields in a fixed order. Integers are
// varints (most are small), strings and byte strings are a uvarint length
// and the bytes, fixed-size arrays are their bytes, times are a varint of
// microseconds since 1970 in UTC. A value's last byte string runs to the
// end, without a length.

type enc struct{ b []byte }

func newEnc(size int) *enc {
	e := &enc{b: make([]byte, 0, size)}
	e.b = append(e.b, recordV1)
	return e
}

func (e *enc) u8(v byte)        { e.b = append(e.b, v) }
func (e *enc) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) raw(b []byte)     { e.b = append(e.b, b...) }
func (e *enc) time(t time.Time) { e.varint(t.UnixMicro()) }
func (e *enc) str(s string)     { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) bool(v bool)      { e.u8(boolByte(v)) }
func boolByte(v bool) (b byte) {
	if v {
		b = 1
	}
	return b
}

// dec reads a value; the first problem sticks and every later read
// returns zero.
type dec struct {
	b   []byte
	err error
}

func newDec(b []byte) *dec {
	d := &dec{b: b}
	switch {
	case len(b) == 0:
		d.fail("empty value")
	case b[0] != recordV1:
		d.fail("record version %d, this build reads %d", b[0], recordV1)
	default:
		d.b = b[1:]
	}
	return d
}

func (d *dec) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
	d.b = nil
}

func (d *dec) u8() byte {
	if len(d.b) < 1 {
		d.fail("truncated")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dec) bool() bool {
	switch d.u8() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("flag not 0 or 1")
	return false
}

func (d *dec) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) int() int {
	v := d.varint()
	if v < math.MinInt || v > math.MaxInt {
		d.fail("integer %d out of range", v)
		return 0
	}
	return int(v)
}

// length reads a length and checks that that much is left.
func (d *dec) length(unit int) int {
	n := d.uvarint()
	if n > uint64(len(d.b)/unit) {
		d.fail("length %d beyond the value's end", n)
		return 0
	}
	return int(n)
}

func (d *dec) str() string {
	n := d.length(1)
	s := d.b[:n]
	d.b = d.b[n:]
	if !utf8.Valid(s) {
		d.fail("string not UTF-8")
		return ""
	}
	return string(s)
}

func (d *dec) fixed(dst []byte) {
	if len(d.b) < len(dst) {
		d.fail("truncated")
		return
	}
	copy(dst, d.b)
	d.b = d.b[len(dst):]
}

func (d *dec) time() time.Time {
	us := d.varint()
	t := time.UnixMicro(us).UTC()
	if d.err == nil && schedstore.CheckTime(t) != nil {
		d.fail("time %d out of range", us)
		return time.Time{}
	}
	return t
}

// rest returns a copy of what is left: bbolt's bytes are only valid in
// the transaction.
func (d *dec) rest() []byte {
	if d.err != nil || len(d.b) == 0 {
		return nil
	}
	b := append([]byte(nil), d.b...)
	d.b = nil
	return b
}

// finish reports the first problem, or bytes left over.
func (d *dec) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d bytes left over", len(d.b))
	}
	return d.err
}

// Keys: IDs are their bytes, numbers big-endian so byte order is numeric
// order.

func cat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	k := make([]byte, 0, n)
	for _, p := range parts {
		k = append(k, p...)
	}
	return k
}

func u64key(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// timeKey orders times: microseconds with the sign bit flipped, so times
// before 1970 sort first.
func timeKey(t time.Time) []byte { return u64key(uint64(t.UnixMicro()) ^ 1<<63) }

func holdingKey(box api.BoxID, title media.ID) []byte { return cat(box[:], title[:]) }
func outboxKey(box api.BoxID, seq uint64) []byte      { return cat(box[:], u64key(seq)) }
func measurementKey(from, to api.BoxID) []byte        { return cat(from[:], to[:]) }
func transferKey(id api.TransferID) []byte            { return u64key(uint64(id)) }
func byBoxKey(box api.BoxID, tr schedstore.Transfer) []byte {
	return cat(box[:], timeKey(tr.Created), transferKey(tr.ID))
}

func keyError(what string, k []byte, want int) error {
	return fmt.Errorf("%w: %s key of %d bytes, want %d", ErrCorrupt, what, len(k), want)
}

func encodeBox(b schedstore.Box) []byte {
	e := newEnc(96 + len(b.Account) + len(b.Cluster) + len(b.NAT) + len(b.Location.Region) + len(b.Location.ISP) + len(b.PieceAddr))
	e.raw(b.CertSHA256[:])
	e.bool(b.Server)
	e.str(b.Account)
	e.str(b.Cluster)
	e.varint(b.Capacity)
	e.varint(b.Free)
	e.varint(int64(b.UpKbps))
	e.varint(int64(b.DownKbps))
	e.str(string(b.NAT))
	e.str(b.Location.Region)
	e.str(b.Location.ISP)
	e.str(b.PieceAddr)
	e.time(b.Activated)
	e.time(b.LastSeen)
	return e.b
}

func decodeBox(k, v []byte) (schedstore.Box, error) {
	var b schedstore.Box
	if len(k) != len(b.ID) {
		return b, keyError("box", k, len(b.ID))
	}
	copy(b.ID[:], k)
	d := newDec(v)
	d.fixed(b.CertSHA256[:])
	b.Server = d.bool()
	b.Account = d.str()
	b.Cluster = d.str()
	b.Capacity = d.varint()
	b.Free = d.varint()
	b.UpKbps = d.int()
	b.DownKbps = d.int()
	b.NAT = api.NATType(d.str())
	b.Location.Region = d.str()
	b.Location.ISP = d.str()
	b.PieceAddr = d.str()
	b.Activated = d.time()
	b.LastSeen = d.time()
	return b, d.finish()
}

func encodeHolding(h schedstore.Holding) []byte {
	e := newEnc(2 + len(h.Have))
	e.bool(h.Complete)
	e.raw(h.Have)
	return e.b
}

func decodeHolding(k, v []byte) (schedstore.Holding, error) {
	var h schedstore.Holding
	if len(k) != len(h.Box)+len(h.Title) {
		return h, keyError("holding", k, len(h.Box)+len(h.Title))
	}
	copy(h.Box[:], k)
	copy(h.Title[:], k[len(h.Box):])
	d := newDec(v)
	h.Complete = d.bool()
	h.Have = d.rest()
	return h, d.finish()
}

func encodeList(l schedstore.PriorityList) []byte {
	e := newEnc(12 + 16*len(l.Titles))
	e.uvarint(l.Version)
	e.uvarint(uint64(len(l.Titles)))
	for _, id := range l.Titles {
		e.raw(id[:])
	}
	return e.b
}

func decodeList(k, v []byte) (schedstore.PriorityList, error) {
	var l schedstore.PriorityList
	if len(k) != len(l.Box) {
		return l, keyError("priority list", k, len(l.Box))
	}
	copy(l.Box[:], k)
	d := newDec(v)
	l.Version = d.uvarint()
	if n := d.length(len(media.ID{})); n > 0 {
		l.Titles = make([]media.ID, n)
		for i := range l.Titles {
			d.fixed(l.Titles[i][:])
		}
	}
	return l, d.finish()
}

func encodeTitle(t schedstore.Title) []byte {
	e := newEnc(64)
	e.varint(int64(t.Pieces))
	e.varint(int64(t.PieceSize))
	e.varint(t.PayloadSize)
	e.raw(t.PayloadHash[:])
	e.time(t.PublishAt)
	return e.b
}

func decodeTitle(k, v []byte) (schedstore.Title, error) {
	var t schedstore.Title
	if len(k) != len(t.ID) {
		return t, keyError("title", k, len(t.ID))
	}
	copy(t.ID[:], k)
	d := newDec(v)
	t.Pieces = d.int()
	t.PieceSize = d.int()
	t.PayloadSize = d.varint()
	d.fixed(t.PayloadHash[:])
	t.PublishAt = d.time()
	return t, d.finish()
}

// Transfer states as stored; zero is not a state.
var stateCodes = map[schedstore.TransferState]byte{
	schedstore.TransferRequested: 1,
	schedstore.TransferRunning:   2,
	schedstore.TransferDone:      3,
	schedstore.TransferFailed:    4,
}

var states = [...]schedstore.TransferState{1: schedstore.TransferRequested, 2: schedstore.TransferRunning,
	3: schedstore.TransferDone, 4: schedstore.TransferFailed}

func encodeTransfer(t schedstore.Transfer) []byte {
	e := newEnc(100 + len(t.Outcome) + 6*len(t.Portions))
	e.raw(t.Title[:])
	e.raw(t.Receiver[:])
	e.raw(t.Sender[:])
	e.raw(t.Initiator[:])
	e.u8(stateCodes[t.State])
	e.str(t.Outcome)
	e.varint(int64(t.Pieces))
	e.time(t.Created)
	e.time(t.Updated)
	e.uvarint(uint64(len(t.Portions)))
	for _, p := range t.Portions {
		e.varint(int64(p.First))
		e.varint(int64(p.Last))
	}
	return e.b
}

func decodeTransfer(k, v []byte) (schedstore.Transfer, error) {
	var t schedstore.Transfer
	if len(k) != 8 {
		return t, keyError("transfer", k, 8)
	}
	t.ID = api.TransferID(binary.BigEndian.Uint64(k))
	d := newDec(v)
	d.fixed(t.Title[:])
	d.fixed(t.Receiver[:])
	d.fixed(t.Sender[:])
	d.fixed(t.Initiator[:])
	if c := d.u8(); d.err == nil {
		if int(c) >= len(states) || states[c] == "" {
			d.fail("transfer state %d", c)
		} else {
			t.State = states[c]
		}
	}
	t.Outcome = d.str()
	t.Pieces = d.int()
	t.Created = d.time()
	t.Updated = d.time()
	if n := d.length(2); n > 0 { // two varints of at least a byte each
		t.Portions = make([]api.PieceRange, n)
		for i := range t.Portions {
			t.Portions[i] = api.PieceRange{First: d.int(), Last: d.int()}
		}
	}
	return t, d.finish()
}

func encodeMeasurement(m schedstore.Measurement) []byte {
	e := newEnc(24)
	e.varint(int64(m.Kbps))
	e.varint(int64(m.RTTMilli))
	e.time(m.At)
	return e.b
}

func decodeMeasurement(k, v []byte) (schedstore.Measurement, error) {
	var m schedstore.Measurement
	if len(k) != len(m.From)+len(m.To) {
		return m, keyError("measurement", k, len(m.From)+len(m.To))
	}
	copy(m.From[:], k)
	copy(m.To[:], k[len(m.From):])
	d := newDec(v)
	m.Kbps = d.int()
	m.RTTMilli = d.int()
	m.At = d.time()
	return m, d.finish()
}

func encodeFrame(frame []byte) []byte {
	e := newEnc(1 + len(frame))
	e.raw(frame)
	return e.b
}

func decodeOutbound(k, v []byte) (schedstore.Outbound, error) {
	var o schedstore.Outbound
	if len(k) != len(o.Box)+8 {
		return o, keyError("outbox", k, len(o.Box)+8)
	}
	copy(o.Box[:], k)
	o.Seq = binary.BigEndian.Uint64(k[len(o.Box):])
	d := newDec(v)
	o.Frame = d.rest()
	return o, d.finish()
}

// seqs is a box's sequence numbers: the two the scheduler records, and the
// highest Seq ever appended to its outbox.
type seqs struct{ in, out, appended uint64 }

func encodeSeqs(s seqs) []byte {
	e := newEnc(31)
	e.uvarint(s.in)
	e.uvarint(s.out)
	e.uvarint(s.appended)
	return e.b
}

func decodeSeqs(v []byte) (seqs, error) {
	var s seqs
	d := newDec(v)
	s.in = d.uvarint()
	s.out = d.uvarint()
	s.appended = d.uvarint()
	return s, d.finish()
}

// codeRecord is an activation code's record.
type codeRecord struct {
	account string
	used    bool
}

func encodeCode(c codeRecord) []byte {
	e := newEnc(3 + len(c.account))
	e.bool(c.used)
	e.str(c.account)
	return e.b
}

func decodeCode(v []byte) (codeRecord, error) {
	var c codeRecord
	d := newDec(v)
	c.used = d.bool()
	c.account = d.str()
	return c, d.finish()
}

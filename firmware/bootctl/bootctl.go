// Package bootctl keeps the A/B boot-control record: which firmware slot to
// boot, how many more tries a slot on trial gets, and whether a slot has
// booted healthy. Stage one picks the slot with BootOrder and counts the
// attempt with BeginAttempt; stage two's supervisor calls MarkGood after a
// healthy boot; the updater calls SetTrial for a freshly written slot.
//
// The record lives in the "bootctl" partition and is NOT trusted for
// security: anyone who can write the disk can change it, and the worst they
// can do is pick which of two signed, rollback-protected images boots.
// Signatures and the TPM rollback counter decide what may run; this package
// only has to survive power cuts.
//
// Guarantees:
//
//   - The record is stored twice, at offset 0 and 4096 of the partition.
//     Save writes only the copy not holding the newest valid record, and
//     then syncs, so a power cut at any point of a Save leaves Load returning
//     either the state before it or the state it saved, never a mix.
//   - Load always returns a usable State. If neither copy is valid (a blank
//     or wiped partition, or both copies damaged) it returns Default() and
//     an error wrapping ErrNoValidRecord, which the caller should log and
//     otherwise ignore: booting in the default order is safe because
//     verification decides what runs.
//   - Decoding never panics and accepts exactly the bytes that encoding
//     produces (magic, version, reserved bits and CRC32C all checked).
//
// Record layout (32 bytes, little-endian):
//
//	0   magic "BXBC"
//	4   format version, uint16 (1)
//	6   reserved, zero
//	8   seq, uint32: incremented by every Save
//	12  slot A: priority u8, tries left u8, flags u8 (bit 0: successful), zero u8
//	16  slot B: same
//	20  reserved, zero
//	28  CRC32C (Castagnoli) of bytes 0 to 27
package bootctl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strings"
)

// Slot names one of the two firmware slots.
type Slot int

const (
	SlotA Slot = iota
	SlotB
)

// String returns "A" or "B".
func (s Slot) String() string {
	switch s {
	case SlotA:
		return "A"
	case SlotB:
		return "B"
	}
	return fmt.Sprintf("Slot(%d)", int(s))
}

// ParseSlot accepts "A", "B", "a", "b", and the partition labels "slot_a"
// and "slot_b".
func ParseSlot(s string) (Slot, error) {
	switch strings.ToLower(s) {
	case "a", "slot_a":
		return SlotA, nil
	case "b", "slot_b":
		return SlotB, nil
	}
	return 0, fmt.Errorf("bootctl: slot %q: want A or B", s)
}

// Other returns the other slot.
func (s Slot) Other() Slot { return 1 - s }

// SlotState is what the record says about one slot.
type SlotState struct {
	// Priority orders bootable slots, highest first; 0 means never boot.
	Priority uint8
	// TriesLeft is how many more times an image that has not yet booted
	// healthy may be tried.
	TriesLeft uint8
	// Successful is set once the slot has booted healthy; from then on it
	// needs no tries.
	Successful bool
}

// State is the whole record. Methods that take a Slot require SlotA or
// SlotB, and panic on anything else like an out-of-range index would.
type State struct {
	Slots [2]SlotState
	// Seq orders records: Load picks the copy with the highest Seq, and
	// Save writes one more than the newest on the device. It compares with
	// serial-number arithmetic, so wrapping past 2^32 is harmless.
	Seq uint32
}

// Default is the state of a box whose record is missing or unreadable: both
// slots bootable, A first, both considered successful so that no tries run
// out; verification decides which of them may really run.
func Default() State {
	return State{Slots: [2]SlotState{
		{Priority: 2, Successful: true},
		{Priority: 1, Successful: true},
	}}
}

// bootable reports whether slot s may be tried at all.
func (ss SlotState) bootable() bool {
	return ss.Priority > 0 && (ss.Successful || ss.TriesLeft > 0)
}

// BootOrder returns the slots to try, best first: those with a priority and
// either a successful boot or tries left, by descending priority, A before
// B on ties. An empty order means nothing may boot (recovery).
func (st State) BootOrder() []Slot {
	order := make([]Slot, 0, 2)
	for _, s := range []Slot{SlotA, SlotB} {
		if st.Slots[s].bootable() {
			order = append(order, s)
		}
	}
	slices.SortStableFunc(order, func(a, b Slot) int {
		return int(st.Slots[b].Priority) - int(st.Slots[a].Priority)
	})
	return order
}

// Active returns the slot that would boot now, the first of BootOrder; ok
// is false if none may.
func (st State) Active() (s Slot, ok bool) {
	if o := st.BootOrder(); len(o) > 0 {
		return o[0], true
	}
	return 0, false
}

// BeginAttempt counts one boot attempt of s: a slot not yet successful uses
// up one try. Stage one calls it and saves before jumping to the image, so
// that an image that hangs or resets still uses up its try.
func (st *State) BeginAttempt(s Slot) {
	if ss := &st.Slots[s]; !ss.Successful && ss.TriesLeft > 0 {
		ss.TriesLeft--
	}
}

// MarkBad makes s unbootable until the next SetTrial.
func (st *State) MarkBad(s Slot) {
	st.Slots[s] = SlotState{}
}

// MarkGood records that s booted healthy.
func (st *State) MarkGood(s Slot) {
	st.Slots[s].Successful = true
}

// SetTrial puts a newly written image in s on trial: it boots first, for at
// most tries attempts, until MarkGood. The other slot keeps its standing
// (a bootable other slot becomes the fallback with priority 1, an
// unbootable one stays unbootable). Priorities are renumbered rather than
// incremented so they never saturate. A trial with zero tries never boots.
func (st *State) SetTrial(s Slot, tries uint8) {
	st.Slots[s] = SlotState{Priority: 2, TriesLeft: tries}
	if o := &st.Slots[s.Other()]; o.Priority > 0 {
		o.Priority = 1
	}
}

// String summarises the state for logs, e.g. "seq 7 A{prio 2 tries 0 ok} B{prio 1 tries 3}".
func (st State) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seq %d", st.Seq)
	for _, s := range []Slot{SlotA, SlotB} {
		ss := st.Slots[s]
		fmt.Fprintf(&b, " %s{prio %d tries %d", s, ss.Priority, ss.TriesLeft)
		if ss.Successful {
			b.WriteString(" ok")
		}
		b.WriteString("}")
	}
	return b.String()
}

// RecordSize is the encoded length of a State.
const RecordSize = 32

// CopyStride separates the two copies, which live at offset 0 and
// CopyStride of the partition: 4 KiB, so that no write of one copy, whatever
// the device's sector or page size up to 4 KiB, can touch the other.
const CopyStride = 4096

const (
	magic         = "BXBC"
	formatVersion = 1
	flagOK        = 1 << 0
)

// checksum is the record's CRC32C. MakeTable returns the standard
// library's cached Castagnoli table, so this allocates nothing.
func checksum(b []byte) uint32 {
	return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))
}

// ErrNoValidRecord is wrapped by Load's error when neither copy is valid
// and it returned Default().
var ErrNoValidRecord = errors.New("no valid boot-control record")

// MarshalBinary encodes st as a RecordSize-byte record.
func (st State) MarshalBinary() ([]byte, error) {
	b := make([]byte, RecordSize)
	le := binary.LittleEndian
	copy(b[0:4], magic)
	le.PutUint16(b[4:6], formatVersion)
	le.PutUint32(b[8:12], st.Seq)
	for i, ss := range st.Slots {
		f := b[12+4*i : 16+4*i]
		f[0], f[1] = ss.Priority, ss.TriesLeft
		if ss.Successful {
			f[2] = flagOK
		}
	}
	le.PutUint32(b[28:32], checksum(b[:28]))
	return b, nil
}

// UnmarshalBinary decodes a record made by MarshalBinary. It checks
// everything, so a damaged or foreign record is an error, never a State.
func (st *State) UnmarshalBinary(b []byte) error {
	out, err := decode(b)
	if err != nil {
		return fmt.Errorf("bootctl: record: %w", err)
	}
	*st = out
	return nil
}

func decode(b []byte) (State, error) {
	if len(b) < RecordSize {
		return State{}, fmt.Errorf("%d bytes, want %d", len(b), RecordSize)
	}
	le := binary.LittleEndian
	if string(b[0:4]) != magic {
		return State{}, fmt.Errorf("magic %q, want %q", b[0:4], magic)
	}
	if got, want := le.Uint32(b[28:32]), checksum(b[:28]); got != want {
		return State{}, fmt.Errorf("CRC32C %#08x, computed %#08x", got, want)
	}
	if v := le.Uint16(b[4:6]); v != formatVersion {
		return State{}, fmt.Errorf("format version %d, want %d", v, formatVersion)
	}
	// Reserved bytes must be zero so that a later version can give them a
	// meaning that this one does not silently drop.
	if le.Uint16(b[6:8]) != 0 || le.Uint64(b[20:28]) != 0 || b[15] != 0 || b[19] != 0 {
		return State{}, errors.New("reserved bytes are not zero")
	}
	var st State
	st.Seq = le.Uint32(b[8:12])
	for i := range st.Slots {
		f := b[12+4*i : 16+4*i]
		if f[2]&^flagOK != 0 {
			return State{}, fmt.Errorf("slot %s: unknown flags %#02x", Slot(i), f[2])
		}
		st.Slots[i] = SlotState{Priority: f[0], TriesLeft: f[1], Successful: f[2]&flagOK != 0}
	}
	return st, nil
}

// newer reports whether sequence number a is after b, allowing for wrap.
func newer(a, b uint32) bool { return int32(a-b) > 0 }

// copyResult is what one copy of the record holds.
type copyResult struct {
	state State
	err   error
}

// readCopies decodes both copies; an unreadable copy counts as invalid.
func readCopies(dev io.ReaderAt, offset int64) [2]copyResult {
	var res [2]copyResult
	b := make([]byte, RecordSize)
	for i := range res {
		off := offset + int64(i)*CopyStride
		if n, err := dev.ReadAt(b, off); n < RecordSize {
			res[i].err = fmt.Errorf("copy %d at offset %d: read: %w", i, off, err)
			continue
		}
		st, err := decode(b)
		if err != nil {
			err = fmt.Errorf("copy %d at offset %d: %w", i, off, err)
		}
		res[i] = copyResult{st, err}
	}
	return res
}

// newest returns the index of the newest valid copy, or -1.
func newest(res [2]copyResult) int {
	best := -1
	for i, r := range res {
		if r.err == nil && (best < 0 || newer(r.state.Seq, res[best].state.Seq)) {
			best = i
		}
	}
	return best
}

// Load reads the record from the bootctl partition at offset on dev. See
// the package comment for what it returns when no copy is valid; a single
// damaged copy is not an error, since the next Save overwrites it.
func Load(dev io.ReaderAt, offset int64) (State, error) {
	res := readCopies(dev, offset)
	if i := newest(res); i >= 0 {
		return res[i].state, nil
	}
	return Default(), fmt.Errorf("bootctl: %w: %w; %w", ErrNoValidRecord, res[0].err, res[1].err)
}

// Device is the bootctl partition's disk: it must be able to make writes
// durable.
type Device interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}

// Save stores s with a sequence number one past the newest record on the
// device (or past s.Seq, if that is newer) into the copy that does not hold
// the newest record, then syncs. Until Sync returns, a power cut leaves the
// previous record in force. The caller's s.Seq is not updated; Load again
// to see the saved state.
func Save(dev Device, offset int64, s State) error {
	res := readCopies(dev, offset)
	target := 0
	seq := s.Seq
	if i := newest(res); i >= 0 {
		target = 1 - i
		if newer(res[i].state.Seq, seq) {
			seq = res[i].state.Seq
		}
	}
	s.Seq = seq + 1
	b, err := s.MarshalBinary()
	if err != nil {
		return err
	}
	off := offset + int64(target)*CopyStride
	if _, err := dev.WriteAt(b, off); err != nil {
		return fmt.Errorf("bootctl: save seq %d to copy %d at offset %d: %w", s.Seq, target, off, err)
	}
	if err := dev.Sync(); err != nil {
		return fmt.Errorf("bootctl: save seq %d to copy %d at offset %d: sync: %w", s.Seq, target, off, err)
	}
	return nil
}

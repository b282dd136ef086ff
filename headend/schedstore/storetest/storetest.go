// Package storetest is the conformance suite every schedstore backend must
// pass, so the scheduler can move between bbolt and PostgreSQL without
// noticing. Run holds a backend to the interface's documentation and to the
// points the interface leaves open, which this package settles:
//
//   - Values. Times are kept to the microsecond (truncated) and come back in
//     UTC; they must lie in the years 1 to 9999. Strings must be valid UTF-8
//     without NUL bytes. An empty slice may come back as nil and the other
//     way round. Everything else comes back exactly, including the largest
//     and smallest integers.
//   - Put* replaces the record with the same key; deleting what is not there
//     is not an error. DeleteBox removes the box, its holdings, its priority
//     list, its outbox and its sequence numbers, but not the transfers and
//     measurements that name it: they are history.
//   - Load* return fn's first error unchanged, and ctx's error once ctx is
//     done. fn must not call the store: a backend may hold a read
//     transaction open while fn runs.
//   - A transfer's State must be one of the four defined; it is open while
//     requested or running. TransfersOf orders by Created, newest first, ties
//     by the higher ID first; a limit of zero or less returns nothing; a
//     transfer whose sender is its receiver appears once.
//   - An outbox Seq is between 1 and MaxInt64 and must be above every Seq
//     ever appended for the box, acknowledged or not, since the box was last
//     deleted: a box drops a sequence number it has seen, so reusing one
//     would lose the message. Outbox and Seqs of an unknown box are empty
//     and zero.
//   - NextTransferID never returns zero, and never returns an ID that a
//     committed Update was given; an ID handed out in an Update that did not
//     commit may or may not come back.
//   - Activation codes are non-empty and at most MaxCodeLen bytes; adding a
//     code that exists (used or not) fails, so a used code cannot be revived.
//   - Update is all or nothing. fn's error is returned (errors.Is finds it)
//     and nothing is stored. ErrCodeUsed and ErrCodeUnknown are answers, not
//     failures: fn may carry on. Any other error from a Tx method spoils the
//     Update: it fails and stores nothing even if fn ignores the error and
//     returns nil (PostgreSQL cannot go on after a failed statement, and
//     bbolt is held to the same rule so both behave alike). A panic in fn
//     stores nothing and propagates with its value, leaving the store usable.
//     fn may be run more than once (PostgreSQL retries serialization
//     failures), so it must not do anything outside the Tx that it does not
//     redo from scratch each time. A Tx must not be used after fn returns;
//     its methods then fail.
//   - Concurrent Updates behave as if run one after another; each Load*
//     call sees one committed state, never part of an Update.
//   - What an Update stored survives Close and reopening. Close may be
//     called more than once.
package storetest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/media"
)

// MaxCodeLen is the longest activation code a backend must accept.
const MaxCodeLen = schedstore.MaxCodeLen

// Backend makes a new, empty backing location (a file, a database) and
// returns a function that opens a Store on it. The suite calls open again
// only after closing the Store it got before, and expects to find what was
// stored; it closes every Store it opens.
type Backend func(tb testing.TB) (open func(tb testing.TB) schedstore.Store)

// Run runs the conformance suite against a backend.
func Run(t *testing.T, backend Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h *harness)
	}{
		{"RoundTrip", testRoundTrip},
		{"Empty", testEmpty},
		{"PutReplaces", testPutReplaces},
		{"Delete", testDelete},
		{"DeleteBoxCascades", testDeleteBoxCascades},
		{"LoadStopsAtError", testLoadStopsAtError},
		{"ContextDone", testContextDone},
		{"Transfers", testTransfers},
		{"TransfersOf", testTransfersOf},
		{"Outbox", testOutbox},
		{"OutboxOrder", testOutboxOrder},
		{"Seqs", testSeqs},
		{"TransferIDs", testTransferIDs},
		{"ActivationCodes", testActivationCodes},
		{"Refused", testRefused},
		{"HostileStrings", testHostileStrings},
		{"UpdateError", testUpdateError},
		{"UpdatePanic", testUpdatePanic},
		{"UpdateSpoiled", testUpdateSpoiled},
		{"TxAfterUpdate", testTxAfterUpdate},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"ConcurrentCodeUse", testConcurrentCodeUse},
		{"SnapshotLoads", testSnapshotLoads},
		{"Reopen", testReopen},
		{"Model", testModel},
		{"Bulk", testBulk},
		{"ConcurrentBulk", testConcurrentBulk},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, &harness{backend: backend, open: backend(t)})
		})
	}
}

// harness opens stores on one location and closes them.
type harness struct {
	backend Backend
	open    func(tb testing.TB) schedstore.Store
}

// fresh returns a harness on a new location.
func (h *harness) fresh(t testing.TB) *harness {
	return &harness{backend: h.backend, open: h.backend(t)}
}

// store opens a Store that is closed when the test ends, unless close is
// called first.
func (h *harness) store(t testing.TB) (s schedstore.Store, close func()) {
	t.Helper()
	s = h.open(t)
	closeOnce := sync.OnceValue(s.Close)
	t.Cleanup(func() {
		if err := closeOnce(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s, func() {
		t.Helper()
		if err := closeOnce(); err != nil {
			t.Fatalf("close: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second close: %v", err)
		}
	}
}

// update runs fn in one Update and fails the test if it fails.
func update(t testing.TB, s schedstore.Store, fn func(schedstore.Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatalf("update: %v", err)
	}
}

// must turns a Tx call's error into a test failure inside an Update.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("tx: %v", err)
	}
}

// BoxID returns a box ID that is a function of n.
func BoxID(n uint64) api.BoxID {
	var id api.BoxID
	id[0] = 0xB0
	id[7] = byte(n * 37) // spreads the keys, as random IDs would be
	binary.BigEndian.PutUint64(id[8:], n)
	return id
}

// TitleID returns a title ID that is a function of n.
func TitleID(n uint64) media.ID {
	var id media.ID
	id[0] = 0x71
	id[7] = byte(n * 53)
	binary.BigEndian.PutUint64(id[8:], n)
	return id
}

// base is a time with nanoseconds and a zone, to see both handled.
var epoch = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.FixedZone("X", 5*3600+1800))

func at(n int) time.Time { return epoch.Add(time.Duration(n) * time.Second) }

// SampleBox returns a box with every field set, a function of n.
func SampleBox(n uint64) schedstore.Box {
	var cert [32]byte
	binary.BigEndian.PutUint64(cert[:], n^0xC0FFEE)
	cert[31] = 0xFF
	return schedstore.Box{
		ID:         BoxID(n),
		Account:    fmt.Sprintf("acct-%d", n/3),
		CertSHA256: cert,
		Server:     n%7 == 0,
		Cluster:    fmt.Sprintf("cluster-%d", n%4),
		Capacity:   int64(n) * 1 << 30,
		Free:       int64(n) * 1 << 20,
		UpKbps:     int(n%50) * 1000,
		DownKbps:   int(n%90) * 1000,
		NAT:        api.NATPortRestricted,
		Location:   api.Location{Region: "eu-west", ISP: fmt.Sprintf("AS%d", 3000+n%10)},
		PieceAddr:  fmt.Sprintf("10.0.%d.%d:7000", n/256%256, n%256),
		Activated:  at(int(n)),
		LastSeen:   at(int(n) + 3600),
	}
}

// SampleHolding returns a holding: complete for even t, partial otherwise.
func SampleHolding(box, title uint64) schedstore.Holding {
	h := schedstore.Holding{Box: BoxID(box), Title: TitleID(title), Complete: title%2 == 0}
	if !h.Complete {
		h.Have = []byte{0xF0, byte(box), byte(title), 0x01}
	}
	return h
}

// SampleList returns a priority list of n titles.
func SampleList(box uint64, n int, version uint64) schedstore.PriorityList {
	l := schedstore.PriorityList{Box: BoxID(box), Version: version}
	for i := range n {
		l.Titles = append(l.Titles, TitleID(uint64(i)*3+box))
	}
	return l
}

func sampleTitle(n uint64) schedstore.Title {
	var h [32]byte
	binary.BigEndian.PutUint64(h[24:], n)
	h[0] = 0xAB
	return schedstore.Title{ID: TitleID(n), Pieces: 1000 + int(n), PieceSize: 1 << 20,
		PayloadSize: int64(1000+n) << 20, PayloadHash: h, PublishAt: at(-int(n))}
}

func sampleTransfer(id uint64, receiver, sender uint64, state schedstore.TransferState, created int) schedstore.Transfer {
	return schedstore.Transfer{
		ID:        api.TransferID(id),
		Title:     TitleID(id % 5),
		Receiver:  BoxID(receiver),
		Sender:    BoxID(sender),
		Portions:  []api.PieceRange{{First: 0, Last: 9}, {First: 20, Last: int(id) + 20}},
		Initiator: BoxID(receiver),
		State:     state,
		Outcome:   string(state) + " outcome",
		Pieces:    int(id),
		Created:   at(created),
		Updated:   at(created + 5),
	}
}

func sampleMeasurement(from, to uint64) schedstore.Measurement {
	return schedstore.Measurement{From: BoxID(from), To: BoxID(to), Kbps: int(from*1000 + to), RTTMilli: int(to), At: at(int(from + to))}
}

// norm* put a record in the form a store returns it in.

func normTime(t time.Time) time.Time { return t.Truncate(time.Microsecond).UTC() }

func normBox(b schedstore.Box) schedstore.Box {
	b.Activated, b.LastSeen = normTime(b.Activated), normTime(b.LastSeen)
	return b
}

func normHolding(h schedstore.Holding) schedstore.Holding {
	if len(h.Have) == 0 {
		h.Have = nil
	}
	return h
}

func normList(l schedstore.PriorityList) schedstore.PriorityList {
	if len(l.Titles) == 0 {
		l.Titles = nil
	}
	return l
}

func normTitle(ti schedstore.Title) schedstore.Title {
	ti.PublishAt = normTime(ti.PublishAt)
	return ti
}

func normTransfer(tr schedstore.Transfer) schedstore.Transfer {
	if len(tr.Portions) == 0 {
		tr.Portions = nil
	}
	tr.Created, tr.Updated = normTime(tr.Created), normTime(tr.Updated)
	return tr
}

func normMeasurement(m schedstore.Measurement) schedstore.Measurement {
	m.At = normTime(m.At)
	return m
}

func normOutbound(o schedstore.Outbound) schedstore.Outbound {
	if len(o.Frame) == 0 {
		o.Frame = nil
	}
	return o
}

// show formats a value for a failure message, shortened: some test records
// hold 64 KiB.
func show(v any) string {
	s := fmt.Sprintf("%+v", v)
	if len(s) > 600 {
		s = s[:600] + fmt.Sprintf("... (%d more bytes)", len(s)-600)
	}
	return s
}

func equal(got, want any) bool { return reflect.DeepEqual(got, want) }

// checkEqual reports a difference between a stored record and the one
// expected, both already normalized.
func checkEqual(t testing.TB, what string, got, want any) {
	t.Helper()
	if !equal(got, want) {
		t.Errorf("%s:\n got  %s\n want %s", what, show(got), show(want))
	}
}

// pattern returns n bytes that are not all alike, so a store that loses or
// reorders bytes is caught.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

// containsNUL is a guard for the hostile-string table.
func containsNUL(s string) bool { return bytes.IndexByte([]byte(s), 0) >= 0 }

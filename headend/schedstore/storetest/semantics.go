package storetest

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
)

// fillBox writes box n with everything that hangs off it.
func fillBox(b *both, n uint64) {
	b.putBox(SampleBox(n))
	for ti := range uint64(4) {
		b.putHolding(SampleHolding(n, ti))
	}
	b.putList(SampleList(n, 7, n))
	for seq := uint64(1); seq <= 3; seq++ {
		b.appendOutbox(schedstore.Outbound{Box: BoxID(n), Seq: seq, Frame: []byte{byte(n), byte(seq)}})
	}
	b.setSeqs(BoxID(n), 10+n, 3)
}

func testDelete(t *testing.T, h *harness) {
	s, _ := h.store(t)
	m := newModel()
	m.update(t, s, func(b *both) { fillBox(b, 1) })
	m.update(t, s, func(b *both) {
		b.deleteHolding(BoxID(1), TitleID(2))
		b.deleteHolding(BoxID(1), TitleID(99)) // absent
		b.deleteHolding(BoxID(99), TitleID(1)) // absent
		b.deleteBox(BoxID(98))                 // absent
	})
	m.check(t, s)
	// Put and delete in one Update, and delete then put: order counts.
	m.update(t, s, func(b *both) {
		b.putHolding(SampleHolding(1, 7))
		b.deleteHolding(BoxID(1), TitleID(7))
		b.deleteHolding(BoxID(1), TitleID(3))
		b.putHolding(SampleHolding(1, 3))
	})
	m.check(t, s)
}

func testDeleteBoxCascades(t *testing.T, h *harness) {
	s, _ := h.store(t)
	m := newModel()
	m.update(t, s, func(b *both) {
		fillBox(b, 1)
		fillBox(b, 2)
		b.putTransfer(sampleTransfer(1, 1, 2, schedstore.TransferRunning, 0))
		b.putTransfer(sampleTransfer(2, 2, 1, schedstore.TransferDone, 1))
		b.putMeasurement(sampleMeasurement(1, 2))
		b.putMeasurement(sampleMeasurement(2, 1))
	})
	m.update(t, s, func(b *both) { b.deleteBox(BoxID(1)) })
	m.check(t, s)

	// The outbox starts again: nothing remembers box 1's sequence numbers.
	m.update(t, s, func(b *both) {
		b.appendOutbox(schedstore.Outbound{Box: BoxID(1), Seq: 1, Frame: []byte("again")})
	})
	// Deleting and re-registering in one Update leaves only the new state.
	m.update(t, s, func(b *both) {
		b.deleteBox(BoxID(2))
		b.putBox(SampleBox(2))
		b.putHolding(SampleHolding(2, 9))
		b.appendOutbox(schedstore.Outbound{Box: BoxID(2), Seq: 1, Frame: []byte("new life")})
	})
	m.check(t, s)
}

// loaders are the Load* methods, each with a record put so it has
// something to return.
func loaders() []struct {
	name string
	put  func(tx schedstore.Tx, n uint64) error
	load func(s schedstore.Store, ctx context.Context, fn func() error) error
} {
	return []struct {
		name string
		put  func(tx schedstore.Tx, n uint64) error
		load func(s schedstore.Store, ctx context.Context, fn func() error) error
	}{
		{"boxes", func(tx schedstore.Tx, n uint64) error { return tx.PutBox(SampleBox(n)) },
			func(s schedstore.Store, ctx context.Context, fn func() error) error {
				return s.LoadBoxes(ctx, func(schedstore.Box) error { return fn() })
			}},
		{"holdings", func(tx schedstore.Tx, n uint64) error { return tx.PutHolding(SampleHolding(n, n)) },
			func(s schedstore.Store, ctx context.Context, fn func() error) error {
				return s.LoadHoldings(ctx, func(schedstore.Holding) error { return fn() })
			}},
		{"priority lists", func(tx schedstore.Tx, n uint64) error { return tx.PutPriorityList(SampleList(n, 3, n)) },
			func(s schedstore.Store, ctx context.Context, fn func() error) error {
				return s.LoadPriorityLists(ctx, func(schedstore.PriorityList) error { return fn() })
			}},
		{"titles", func(tx schedstore.Tx, n uint64) error { return tx.PutTitle(sampleTitle(n)) },
			func(s schedstore.Store, ctx context.Context, fn func() error) error {
				return s.LoadTitles(ctx, func(schedstore.Title) error { return fn() })
			}},
		{"transfers", func(tx schedstore.Tx, n uint64) error {
			return tx.PutTransfer(sampleTransfer(n, n, n+1, schedstore.TransferRequested, 0))
		}, func(s schedstore.Store, ctx context.Context, fn func() error) error {
			return s.LoadTransfers(ctx, func(schedstore.Transfer) error { return fn() })
		}},
		{"measurements", func(tx schedstore.Tx, n uint64) error { return tx.PutMeasurement(sampleMeasurement(n, n)) },
			func(s schedstore.Store, ctx context.Context, fn func() error) error {
				return s.LoadMeasurements(ctx, func(schedstore.Measurement) error { return fn() })
			}},
		{"seqs", func(tx schedstore.Tx, n uint64) error { return tx.SetSeqs(BoxID(n), n, n) },
			func(s schedstore.Store, ctx context.Context, fn func() error) error {
				return s.LoadSeqs(ctx, func(schedstore.BoxSeqs) error { return fn() })
			}},
	}
}

// testLoadStopsAtError checks that every Load* stops at fn's first error
// and returns it.
func testLoadStopsAtError(t *testing.T, h *harness) {
	s, _ := h.store(t)
	ls := loaders()
	update(t, s, func(tx schedstore.Tx) error {
		for _, l := range ls {
			for n := range uint64(5) {
				must(t, l.put(tx, n+1))
			}
		}
		return nil
	})
	errStop := errors.New("stop here")
	for _, l := range ls {
		for _, stopAt := range []int{1, 3} {
			calls := 0
			err := l.load(s, context.Background(), func() error {
				calls++
				if calls == stopAt {
					return errStop
				}
				return nil
			})
			if !errors.Is(err, errStop) {
				t.Errorf("load %s stopping at call %d: %v, want fn's error", l.name, stopAt, err)
			}
			if calls != stopAt {
				t.Errorf("load %s: fn called %d times after failing at call %d", l.name, calls, stopAt)
			}
		}
		calls := 0
		if err := l.load(s, context.Background(), func() error { calls++; return nil }); err != nil || calls != 5 {
			t.Errorf("load %s: %d calls, %v; want 5, nil", l.name, calls, err)
		}
	}
}

// testContextDone checks that a done context stops every call, and that an
// Update whose context ends before it commits stores nothing.
func testContextDone(t *testing.T, h *harness) {
	s, _ := h.store(t)
	const n = 2000
	ls := loaders()
	update(t, s, func(tx schedstore.Tx) error {
		for _, l := range ls {
			for i := range uint64(n) {
				must(t, l.put(tx, i+1))
			}
		}
		return nil
	})
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for _, l := range ls {
		if err := l.load(s, done, func() error { return nil }); !errors.Is(err, context.Canceled) {
			t.Errorf("load %s with a done context: %v, want context.Canceled", l.name, err)
		}
		// Cancelled while loading: the load ends well before the end.
		ctx, cancel := context.WithCancel(context.Background())
		calls := 0
		err := l.load(s, ctx, func() error { calls++; cancel(); return nil })
		cancel()
		if !errors.Is(err, context.Canceled) || calls >= n/2 {
			t.Errorf("load %s cancelled at the first record: %v after %d records, want context.Canceled soon", l.name, err, calls)
		}
	}
	if _, err := s.Outbox(done, BoxID(1), 0); err == nil {
		t.Error("Outbox with a done context succeeded")
	}
	if _, err := s.Transfer(done, 1); err == nil {
		t.Error("Transfer with a done context succeeded")
	}
	if _, err := s.TransfersOf(done, BoxID(1), 5); err == nil {
		t.Error("TransfersOf with a done context succeeded")
	}
	if err := s.Update(done, func(tx schedstore.Tx) error { return tx.PutBox(SampleBox(n + 1)) }); !errors.Is(err, context.Canceled) {
		t.Errorf("Update with a done context: %v, want context.Canceled", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	err := s.Update(ctx, func(tx schedstore.Tx) error {
		must(t, tx.PutBox(SampleBox(n+2)))
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Update cancelled inside fn: %v, want context.Canceled", err)
	}
	count := 0
	if err := s.LoadBoxes(context.Background(), func(schedstore.Box) error { count++; return nil }); err != nil || count != n {
		t.Errorf("after cancelled Updates: %d boxes, %v; want %d", count, err, n)
	}
}

func testTransfers(t *testing.T, h *harness) {
	s, _ := h.store(t)
	m := newModel()
	states := []schedstore.TransferState{schedstore.TransferRequested, schedstore.TransferRunning,
		schedstore.TransferDone, schedstore.TransferFailed}
	m.update(t, s, func(b *both) {
		for i, st := range states {
			b.putTransfer(sampleTransfer(uint64(i+1), 1, 2, st, i))
		}
	})
	m.check(t, s) // LoadTransfers sees 1 and 2; Transfer finds all four
	// Ending and reviving move transfers out of and into LoadTransfers.
	m.update(t, s, func(b *both) {
		b.putTransfer(sampleTransfer(1, 1, 2, schedstore.TransferDone, 0))
		b.putTransfer(sampleTransfer(2, 1, 2, schedstore.TransferFailed, 1))
		b.putTransfer(sampleTransfer(3, 1, 2, schedstore.TransferRunning, 2))
	})
	m.check(t, s)
	if _, err := s.Transfer(context.Background(), 99); !errors.Is(err, schedstore.ErrNotFound) {
		t.Errorf("Transfer(99): %v, want ErrNotFound", err)
	}
}

func testTransfersOf(t *testing.T, h *harness) {
	s, _ := h.store(t)
	m := newModel()
	const a, b, c = 1, 2, 3
	m.update(t, s, func(w *both) {
		w.putTransfer(sampleTransfer(1, a, b, schedstore.TransferDone, 10))
		w.putTransfer(sampleTransfer(2, b, a, schedstore.TransferRunning, 20))
		w.putTransfer(sampleTransfer(3, a, a, schedstore.TransferFailed, 15)) // to itself: listed once
		w.putTransfer(sampleTransfer(5, a, c, schedstore.TransferRequested, 30))
		w.putTransfer(sampleTransfer(4, c, a, schedstore.TransferDone, 30)) // ties with 5: higher ID first
		w.putTransfer(sampleTransfer(6, b, c, schedstore.TransferDone, 40))
		w.putTransfer(sampleTransfer(7, a, b, schedstore.TransferDone, -1e6)) // before 1970
	})
	m.check(t, s)
	ids := func(trs []schedstore.Transfer) []api.TransferID {
		var out []api.TransferID
		for _, tr := range trs {
			out = append(out, tr.ID)
		}
		return out
	}
	cases := []struct {
		box   uint64
		limit int
		want  []api.TransferID
	}{
		{a, 100, []api.TransferID{5, 4, 2, 3, 1, 7}},
		{a, 3, []api.TransferID{5, 4, 2}},
		{a, 1, []api.TransferID{5}},
		{a, 0, nil},
		{a, -1, nil},
		{b, 100, []api.TransferID{6, 2, 1, 7}},
		{c, 2, []api.TransferID{6, 5}},
		{99, 10, nil},
	}
	check := func() {
		t.Helper()
		for _, tc := range cases {
			got, err := s.TransfersOf(context.Background(), BoxID(tc.box), tc.limit)
			if err != nil {
				t.Fatalf("TransfersOf(%d, %d): %v", tc.box, tc.limit, err)
			}
			if !equal(ids(got), tc.want) {
				t.Errorf("TransfersOf(%d, %d) = %v, want %v", tc.box, tc.limit, ids(got), tc.want)
			}
		}
	}
	check()
	// Moving a transfer to other boxes and times moves it in the listing.
	m.update(t, s, func(w *both) {
		w.putTransfer(sampleTransfer(7, c, b, schedstore.TransferDone, 50))
		w.putTransfer(sampleTransfer(7, b, c, schedstore.TransferDone, 50))
	})
	cases[0].want = []api.TransferID{5, 4, 2, 3, 1}
	cases[5].want = []api.TransferID{7, 6, 2, 1}
	cases[6].want = []api.TransferID{7, 6}
	check()
	m.check(t, s)
}

func testOutbox(t *testing.T, h *harness) {
	s, _ := h.store(t)
	m := newModel()
	x, y := BoxID(1), BoxID(2)
	m.update(t, s, func(b *both) {
		for seq := uint64(1); seq <= 5; seq++ {
			b.appendOutbox(schedstore.Outbound{Box: x, Seq: seq, Frame: []byte{'x', byte(seq)}})
		}
		b.appendOutbox(schedstore.Outbound{Box: y, Seq: 7, Frame: []byte("y7")})
		b.appendOutbox(schedstore.Outbound{Box: x, Seq: 9, Frame: []byte("gaps are allowed")})
	})
	m.check(t, s)
	after := []struct {
		after uint64
		want  []uint64
	}{
		{0, []uint64{1, 2, 3, 4, 5, 9}},
		{3, []uint64{4, 5, 9}},
		{5, []uint64{9}},
		{6, []uint64{9}},
		{9, nil},
		{math.MaxUint64, nil},
	}
	for _, tc := range after {
		got, err := s.Outbox(context.Background(), x, tc.after)
		if err != nil {
			t.Fatalf("Outbox(x, %d): %v", tc.after, err)
		}
		var seqs []uint64
		for _, o := range got {
			seqs = append(seqs, o.Seq)
			if o.Box != x {
				t.Errorf("Outbox(x, %d) returned a message for %s", tc.after, o.Box)
			}
		}
		if !equal(seqs, tc.want) {
			t.Errorf("Outbox(x, %d) = seqs %v, want %v", tc.after, seqs, tc.want)
		}
	}

	m.update(t, s, func(b *both) {
		b.ackOutbox(x, 3)
		b.ackOutbox(y, 6)         // below everything: drops nothing
		b.ackOutbox(x, 2)         // already acknowledged
		b.ackOutbox(BoxID(99), 4) // unknown box
	})
	m.check(t, s)

	// Refused: each in its own Update, which then stores nothing.
	refused := []struct {
		name string
		o    schedstore.Outbound
	}{
		{"repeat of the last", schedstore.Outbound{Box: x, Seq: 9}},
		{"below the last", schedstore.Outbound{Box: x, Seq: 7}},
		{"acknowledged", schedstore.Outbound{Box: x, Seq: 2}},
		{"zero", schedstore.Outbound{Box: BoxID(3), Seq: 0}},
		{"above MaxInt64", schedstore.Outbound{Box: BoxID(3), Seq: math.MaxInt64 + 1}},
	}
	for _, tc := range refused {
		err := s.Update(context.Background(), func(tx schedstore.Tx) error {
			must(t, tx.PutBox(SampleBox(50)))
			return tx.AppendOutbox(tc.o)
		})
		if err == nil {
			t.Errorf("appending %s (seq %d): accepted", tc.name, tc.o.Seq)
		}
	}
	m.check(t, s)

	// Acknowledging everything does not let an old number back in.
	m.update(t, s, func(b *both) { b.ackOutbox(x, math.MaxUint64) })
	if err := s.Update(context.Background(), func(tx schedstore.Tx) error {
		return tx.AppendOutbox(schedstore.Outbound{Box: x, Seq: 9})
	}); err == nil {
		t.Error("seq 9 accepted again after everything was acknowledged")
	}
	m.update(t, s, func(b *both) { b.appendOutbox(schedstore.Outbound{Box: x, Seq: 10, Frame: []byte("10")}) })
	m.check(t, s)
}

func testSeqs(t *testing.T, h *harness) {
	s, _ := h.store(t)
	m := newModel()
	cases := []struct {
		box     uint64
		in, out uint64
	}{
		{1, 1, 2},
		{2, 0, 0},
		{3, math.MaxUint64, math.MaxUint64},
		{1, 7, 3}, // replaces
		{4, 1 << 63, 1<<63 - 1},
	}
	for _, tc := range cases {
		m.update(t, s, func(b *both) { b.setSeqs(BoxID(tc.box), tc.in, tc.out) })
		got, ok := loadAll(t, s).seqs[BoxID(tc.box)]
		if want := (tc.in != 0 || tc.out != 0); ok != want || ok && got != [2]uint64{tc.in, tc.out} {
			t.Errorf("LoadSeqs for box %d = %v (returned %v); want %d, %d", tc.box, got, ok, tc.in, tc.out)
		}
	}
	// The outbox does not move the recorded numbers, nor they the outbox.
	m.update(t, s, func(b *both) {
		b.appendOutbox(schedstore.Outbound{Box: BoxID(1), Seq: 100})
		b.setSeqs(BoxID(5), 1, 200)
	})
	m.check(t, s)
}

func testTransferIDs(t *testing.T, h *harness) {
	s, closeStore := h.store(t)
	seen := map[api.TransferID]bool{}
	take := func(s schedstore.Store, n int, fail bool) {
		t.Helper()
		var got []api.TransferID
		errFail := errors.New("fail on purpose")
		err := s.Update(context.Background(), func(tx schedstore.Tx) error {
			got = got[:0]
			for range n {
				id, err := tx.NextTransferID()
				must(t, err)
				got = append(got, id)
			}
			if fail {
				return errFail
			}
			return nil
		})
		if fail {
			if !errors.Is(err, errFail) {
				t.Fatalf("update: %v, want the error fn returned", err)
			}
			return // these IDs may come back
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range got {
			if id == 0 || seen[id] {
				t.Fatalf("NextTransferID returned %d twice (or zero)", id)
			}
			seen[id] = true
		}
	}
	for i := range 5 {
		take(s, 200, i == 2)
	}
	closeStore()
	s, _ = h.store(t)
	take(s, 100, false)
	if len(seen) != 900 {
		t.Errorf("%d distinct IDs, want 900", len(seen))
	}
}

func testActivationCodes(t *testing.T, h *harness) {
	s, _ := h.store(t)
	ctx := context.Background()
	use := func(code string) (string, error) {
		var account string
		var useErr error
		if err := s.Update(ctx, func(tx schedstore.Tx) error {
			account, useErr = tx.UseActivationCode(code)
			return nil
		}); err != nil {
			t.Fatalf("update using a code: %v", err)
		}
		return account, useErr
	}
	add := func(code, account string) error {
		return s.Update(ctx, func(tx schedstore.Tx) error { return tx.AddActivationCode(code, account) })
	}
	longCode := strings.Repeat("7", MaxCodeLen)
	for _, c := range []struct{ code, account string }{
		{"ABCD-1234", "acct-1"},
		{"abcd-1234", "acct-2"}, // codes are case-sensitive
		{longCode, ""},
		{"x", strings.Repeat("a", 5000)},
	} {
		if err := add(c.code, c.account); err != nil {
			t.Fatalf("adding code %.10q: %v", c.code, err)
		}
	}
	steps := []struct {
		code    string
		account string
		err     error
	}{
		{"ABCD-1234", "acct-1", nil},
		{"ABCD-1234", "", schedstore.ErrCodeUsed},
		{"abcd-1234", "acct-2", nil},
		{"nope", "", schedstore.ErrCodeUnknown},
		{"", "", schedstore.ErrCodeUnknown},
		{longCode, "", nil},
		{"x", strings.Repeat("a", 5000), nil},
		{"x", "", schedstore.ErrCodeUsed},
	}
	for _, st := range steps {
		account, err := use(st.code)
		if !errors.Is(err, st.err) || (st.err == nil && account != st.account) {
			t.Errorf("using %.10q = %.20q, %v; want %.20q, %v", st.code, account, err, st.account, st.err)
		}
	}
	if err := add("ABCD-1234", "acct-3"); err == nil {
		t.Error("a used code was added again")
	}
	if err := add("fresh", "a"); err != nil {
		t.Fatal(err)
	}
	if err := add("fresh", "b"); err == nil {
		t.Error("an unused code was added twice")
	}

	// An Update that fails does not consume the code it used; a code used
	// up is an answer, not a failure: the rest of the Update commits.
	errFail := errors.New("fail on purpose")
	if err := s.Update(ctx, func(tx schedstore.Tx) error {
		if a, err := tx.UseActivationCode("fresh"); err != nil || a != "a" {
			t.Errorf("using fresh: %q, %v", a, err)
		}
		return errFail
	}); !errors.Is(err, errFail) {
		t.Fatalf("update: %v", err)
	}
	update(t, s, func(tx schedstore.Tx) error {
		if _, err := tx.UseActivationCode("ABCD-1234"); !errors.Is(err, schedstore.ErrCodeUsed) {
			t.Errorf("reusing a code: %v", err)
		}
		if _, err := tx.UseActivationCode("unknown"); !errors.Is(err, schedstore.ErrCodeUnknown) {
			t.Errorf("using an unknown code: %v", err)
		}
		must(t, tx.AddActivationCode("in-one", "acct-9"))
		if a, err := tx.UseActivationCode("in-one"); err != nil || a != "acct-9" {
			t.Errorf("using a code added in the same Update: %q, %v", a, err)
		}
		if _, err := tx.UseActivationCode("in-one"); !errors.Is(err, schedstore.ErrCodeUsed) {
			t.Errorf("using a code twice in one Update: %v", err)
		}
		return tx.PutBox(SampleBox(1))
	})
	if a, err := use("fresh"); err != nil || a != "a" {
		t.Errorf("using a code after a failed Update used it: %q, %v", a, err)
	}
	var n int
	if err := s.LoadBoxes(ctx, func(schedstore.Box) error { n++; return nil }); err != nil || n != 1 {
		t.Errorf("the Update that met used and unknown codes stored %d boxes, %v; want 1", n, err)
	}
}

// testRefused checks that both backends refuse the same values: those a
// backend cannot store faithfully.
func testRefused(t *testing.T, h *harness) {
	s, _ := h.store(t)
	badTimes := []time.Time{
		time.Date(0, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 0, 0, 0, time.FixedZone("ahead", 3600)).Add(2 * time.Hour),
	}
	type op = func(tx schedstore.Tx) error
	box := func(edit func(*schedstore.Box)) op {
		return func(tx schedstore.Tx) error {
			b := SampleBox(9)
			edit(&b)
			return tx.PutBox(b)
		}
	}
	transfer := func(edit func(*schedstore.Transfer)) op {
		return func(tx schedstore.Tx) error {
			tr := sampleTransfer(9, 1, 2, schedstore.TransferRunning, 0)
			edit(&tr)
			return tx.PutTransfer(tr)
		}
	}
	cases := []struct {
		name string
		op   op
	}{
		{"account not UTF-8", box(func(b *schedstore.Box) { b.Account = "caf\xe9" })},
		{"account with NUL", box(func(b *schedstore.Box) { b.Account = "a\x00b" })},
		{"cluster with NUL", box(func(b *schedstore.Box) { b.Cluster = "\x00" })},
		{"NAT not UTF-8", box(func(b *schedstore.Box) { b.NAT = "\xff" })},
		{"region with NUL", box(func(b *schedstore.Box) { b.Location.Region = "eu\x00" })},
		{"ISP not UTF-8", box(func(b *schedstore.Box) { b.Location.ISP = "\xc0\x80" })},
		{"piece address with NUL", box(func(b *schedstore.Box) { b.PieceAddr = "1.2.3.4:5\x00" })},
		{"activated in year 0", box(func(b *schedstore.Box) { b.Activated = badTimes[0] })},
		{"last seen in year 10000", box(func(b *schedstore.Box) { b.LastSeen = badTimes[1] })},
		{"last seen in year 10000 UTC", box(func(b *schedstore.Box) { b.LastSeen = badTimes[2] })},
		{"transfer state empty", transfer(func(tr *schedstore.Transfer) { tr.State = "" })},
		{"transfer state unknown", transfer(func(tr *schedstore.Transfer) { tr.State = "paused" })},
		{"transfer outcome with NUL", transfer(func(tr *schedstore.Transfer) { tr.Outcome = "\x00" })},
		{"transfer created in year 10000", transfer(func(tr *schedstore.Transfer) { tr.Created = badTimes[1] })},
		{"transfer updated in year 0", transfer(func(tr *schedstore.Transfer) { tr.Updated = badTimes[0] })},
		{"title published in year 10000", func(tx schedstore.Tx) error {
			ti := sampleTitle(1)
			ti.PublishAt = badTimes[1]
			return tx.PutTitle(ti)
		}},
		{"measurement in year 0", func(tx schedstore.Tx) error {
			me := sampleMeasurement(1, 2)
			me.At = badTimes[0]
			return tx.PutMeasurement(me)
		}},
		{"outbox seq 0", func(tx schedstore.Tx) error { return tx.AppendOutbox(schedstore.Outbound{Box: BoxID(1)}) }},
		{"outbox seq above MaxInt64", func(tx schedstore.Tx) error {
			return tx.AppendOutbox(schedstore.Outbound{Box: BoxID(1), Seq: math.MaxUint64})
		}},
		{"empty code", func(tx schedstore.Tx) error { return tx.AddActivationCode("", "a") }},
		{"code too long", func(tx schedstore.Tx) error { return tx.AddActivationCode(strings.Repeat("x", MaxCodeLen+1), "a") }},
		{"code not UTF-8", func(tx schedstore.Tx) error { return tx.AddActivationCode("\xff", "a") }},
		{"code with NUL", func(tx schedstore.Tx) error { return tx.AddActivationCode("a\x00", "a") }},
		{"code account with NUL", func(tx schedstore.Tx) error { return tx.AddActivationCode("a", "\x00") }},
	}
	m := newModel()
	for _, tc := range cases {
		var opErr error
		err := s.Update(context.Background(), func(tx schedstore.Tx) error {
			must(t, tx.PutBox(SampleBox(1)))
			opErr = tc.op(tx)
			return nil // ignores the error, as a careless caller would
		})
		if opErr == nil {
			t.Errorf("%s: accepted", tc.name)
		}
		if err == nil {
			t.Errorf("%s: the Update committed", tc.name)
		}
	}
	m.check(t, s)
}

// HostileStrings are values a store must keep exactly, however much they
// look like SQL, escapes or markup.
var HostileStrings = []string{
	"",
	" ",
	"'",
	"''",
	`"`,
	`\`,
	`\\'`,
	"'; DROP TABLE boxes; --",
	"\"; DROP TABLE boxes; --",
	"x'); DELETE FROM holdings; SELECT ('",
	"1 OR 1=1",
	"' OR '1'='1",
	"$1",
	"$$ || pg_sleep(10) || $$",
	"E'\\x00'",
	"%s%d%n%%",
	"\\N",
	"\t\n\r\v\f",
	"\x01\x02\x1b[31mred\x1b[0m\x7f",
	"<script>alert(1)</script>",
	"../../../../etc/passwd",
	"ünïcödé — “quotes” ‘single’ « » ‹ ›",
	"東京都 서울 Москва القاهرة",
	"🎬🍿📺👨‍👩‍👧‍👦🏳️‍🌈",
	"\u200b\u200c\u200d\u2028\u2029\ufeff\u202e",
	"\U0010ffff\ufffd\uffff",
	"a\u0301e\u0308", // combining marks
	strings.Repeat("'", 3000),
	strings.Repeat("x", 100000),
}

func testHostileStrings(t *testing.T, h *harness) {
	s, _ := h.store(t)
	m := newModel()
	for i, str := range HostileStrings {
		if containsNUL(str) {
			t.Fatalf("hostile string %d has a NUL, which no store accepts", i)
		}
	}
	m.update(t, s, func(b *both) {
		for i, str := range HostileStrings {
			n := uint64(i + 1)
			x := SampleBox(n)
			x.Account, x.Cluster, x.PieceAddr = str, str, str
			x.NAT, x.Location = api.NATType(str), api.Location{Region: str, ISP: str}
			b.putBox(x)
			tr := sampleTransfer(n, n, n+1, schedstore.TransferRunning, i)
			tr.Outcome = str
			b.putTransfer(tr)
			must(t, b.tx.AddActivationCode(codeFor(i, str), str))
		}
	})
	m.check(t, s)
	update(t, s, func(tx schedstore.Tx) error {
		for i, str := range HostileStrings {
			account, err := tx.UseActivationCode(codeFor(i, str))
			if err != nil || account != str {
				t.Errorf("code %d: %.40q, %v; want %.40q", i, account, err, str)
			}
		}
		return nil
	})
}

// codeFor makes an activation code from a hostile string: unique, and
// within the length limit.
func codeFor(i int, s string) string {
	if len(s) > MaxCodeLen-10 {
		s = s[:MaxCodeLen-10]
	}
	return s + "#" + string(rune('A'+i))
}

// testOutboxOrder checks the outbox's rules where a backend that holds
// writes could reorder them: against the stored mark, around a DeleteBox
// in the same Update, and with acknowledgements between appends.
func testOutboxOrder(t *testing.T, h *harness) {
	s, _ := h.store(t)
	m := newModel()
	m.update(t, s, func(b *both) { fillBox(b, 1); fillBox(b, 2) }) // marks at 3

	// A Seq at the stored mark fails the Update, whenever it is found.
	for _, seq := range []uint64{2, 3} {
		var opErr error
		err := s.Update(context.Background(), func(tx schedstore.Tx) error {
			must(t, tx.AppendOutbox(schedstore.Outbound{Box: BoxID(1), Seq: 9, Frame: []byte("fine")}))
			opErr = tx.AppendOutbox(schedstore.Outbound{Box: BoxID(2), Seq: seq, Frame: []byte("again")})
			return nil
		})
		if opErr == nil && err == nil {
			t.Errorf("seq %d, at or below the stored mark 3, was accepted", seq)
		}
	}
	m.check(t, s)

	m.update(t, s, func(b *both) {
		// What was appended before a DeleteBox goes with the box, and the
		// numbers start again after it.
		b.appendOutbox(schedstore.Outbound{Box: BoxID(1), Seq: 7, Frame: []byte("lost")})
		b.deleteBox(BoxID(1))
		b.appendOutbox(schedstore.Outbound{Box: BoxID(1), Seq: 1, Frame: []byte("first")})
		// An acknowledgement drops only what was there when it was made.
		b.appendOutbox(schedstore.Outbound{Box: BoxID(2), Seq: 5, Frame: []byte("5")})
		b.ackOutbox(BoxID(2), 6)
		b.appendOutbox(schedstore.Outbound{Box: BoxID(2), Seq: 6, Frame: []byte("6")})
		b.appendOutbox(schedstore.Outbound{Box: BoxID(2), Seq: 8, Frame: []byte("8")})
	})
	m.check(t, s)
}

package memstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/headend/schedstore/storetest"
	"github.com/boxswarm/boxswarm/media"
)

// backend gives each test a new Memory; reopening opens the same one.
func backend(testing.TB) func(testing.TB) schedstore.Store {
	mem := NewMemory()
	return func(tb testing.TB) schedstore.Store {
		s, err := mem.Open()
		if err != nil {
			tb.Fatal(err)
		}
		return s
	}
}

func TestConformance(t *testing.T) { storetest.Run(t, backend) }

func BenchmarkBulk(b *testing.B) { storetest.Bench(b, backend) }

func update(t testing.TB, s *Store, fn func(tx schedstore.Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatalf("update: %v", err)
	}
}

// TestOpenClose checks the Memory's rules: one open Store at a time, a
// closed Store refuses everything, and the Memory outlives it.
func TestOpenClose(t *testing.T) {
	mem := NewMemory()
	s, err := mem.Open()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mem.Open(); !errors.Is(err, ErrInUse) {
		t.Fatalf("second Open: %v, want ErrInUse", err)
	}
	update(t, s, func(tx schedstore.Tx) error { return tx.PutBox(storetest.SampleBox(1)) })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	closedCalls := map[string]error{
		"Update":      s.Update(ctx, func(schedstore.Tx) error { return nil }),
		"LoadBoxes":   s.LoadBoxes(ctx, func(schedstore.Box) error { return nil }),
		"LoadTitles":  s.LoadTitles(ctx, func(schedstore.Title) error { return nil }),
		"Close again": s.Close(),
	}
	_, closedCalls["Outbox"] = s.Outbox(ctx, storetest.BoxID(1), 0)
	_, closedCalls["Transfer"] = s.Transfer(ctx, 1)
	_, closedCalls["TransfersOf"] = s.TransfersOf(ctx, storetest.BoxID(1), 1)
	for name, err := range closedCalls {
		want := ErrClosed
		if name == "Close again" {
			want = nil
		}
		if !errors.Is(err, want) {
			t.Errorf("%s on a closed store: %v, want %v", name, err, want)
		}
	}
	s2, err := mem.Open()
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	defer s2.Close()
	n := 0
	if err := s2.LoadBoxes(ctx, func(schedstore.Box) error { n++; return nil }); err != nil || n != 1 {
		t.Errorf("reopened: %d boxes, %v; want 1", n, err)
	}
	// The first Store's second Close must not free the Memory for a third.
	if _, err := mem.Open(); !errors.Is(err, ErrInUse) {
		t.Errorf("Open while reopened: %v, want ErrInUse", err)
	}
}

// TestLoadOrder checks that every Load* returns records in key order,
// whatever order they were written in: the simulator's reproducibility
// rests on it.
func TestLoadOrder(t *testing.T) {
	s := New()
	defer s.Close()
	perm := []uint64{7, 3, 250, 1, 99, 42, 5, 300, 2, 64}
	update(t, s, func(tx schedstore.Tx) error {
		for i, n := range perm {
			errs := []error{
				tx.PutBox(storetest.SampleBox(n)),
				tx.PutPriorityList(storetest.SampleList(n, 2, n)),
				tx.SetSeqs(storetest.BoxID(n), n, n),
				tx.PutTitle(schedstore.Title{ID: storetest.TitleID(n)}),
				tx.PutTransfer(schedstore.Transfer{ID: api.TransferID(n), State: schedstore.TransferRunning}),
				tx.PutMeasurement(schedstore.Measurement{From: storetest.BoxID(n), To: storetest.BoxID(perm[(i+1)%len(perm)])}),
				tx.PutMeasurement(schedstore.Measurement{From: storetest.BoxID(n), To: storetest.BoxID(n)}),
			}
			for _, ti := range slices.Backward(perm[:4]) {
				errs = append(errs, tx.PutHolding(storetest.SampleHolding(n, ti)))
			}
			if err := errors.Join(errs...); err != nil {
				return err
			}
		}
		return nil
	})
	ctx := context.Background()
	var boxes, lists, seqs, titles []string
	var holdings, measurements []string
	var transfers []api.TransferID
	errs := []error{
		s.LoadBoxes(ctx, func(b schedstore.Box) error { boxes = append(boxes, b.ID.String()); return nil }),
		s.LoadPriorityLists(ctx, func(l schedstore.PriorityList) error { lists = append(lists, l.Box.String()); return nil }),
		s.LoadSeqs(ctx, func(sq schedstore.BoxSeqs) error { seqs = append(seqs, sq.Box.String()); return nil }),
		s.LoadTitles(ctx, func(ti schedstore.Title) error { titles = append(titles, fmt.Sprintf("%x", ti.ID)); return nil }),
		s.LoadHoldings(ctx, func(h schedstore.Holding) error {
			holdings = append(holdings, h.Box.String()+fmt.Sprintf("%x", h.Title))
			return nil
		}),
		s.LoadMeasurements(ctx, func(me schedstore.Measurement) error {
			measurements = append(measurements, me.From.String()+me.To.String())
			return nil
		}),
		s.LoadTransfers(ctx, func(tr schedstore.Transfer) error { transfers = append(transfers, tr.ID); return nil }),
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		keys []string
		n    int
	}{
		{"boxes", boxes, len(perm)},
		{"priority lists", lists, len(perm)},
		{"seqs", seqs, len(perm)},
		{"titles", titles, len(perm)},
		{"holdings", holdings, 4 * len(perm)},
		{"measurements", measurements, 2 * len(perm)},
	}
	for _, tc := range cases {
		if len(tc.keys) != tc.n || !slices.IsSorted(tc.keys) {
			t.Errorf("%s: %d records, sorted %v; want %d, sorted", tc.name, len(tc.keys), slices.IsSorted(tc.keys), tc.n)
		}
	}
	if len(transfers) != len(perm) || !slices.IsSorted(transfers) {
		t.Errorf("transfers: %v, want %d in ID order", transfers, len(perm))
	}
}

// TestNoAliasing changes every slice handed to the store after the put,
// and every slice it returned after the read: the store must not see
// either change.
func TestNoAliasing(t *testing.T) {
	s := New()
	defer s.Close()
	box := storetest.BoxID(1)
	have := []byte{1, 2, 3}
	titles := []media.ID{storetest.TitleID(1), storetest.TitleID(2)}
	portions := []api.PieceRange{{First: 1, Last: 2}}
	frame := []byte("frame")
	update(t, s, func(tx schedstore.Tx) error {
		return errors.Join(
			tx.PutHolding(schedstore.Holding{Box: box, Title: storetest.TitleID(1), Have: have}),
			tx.PutPriorityList(schedstore.PriorityList{Box: box, Titles: titles}),
			tx.PutTransfer(schedstore.Transfer{ID: 1, Receiver: box, State: schedstore.TransferRunning, Portions: portions}),
			tx.AppendOutbox(schedstore.Outbound{Box: box, Seq: 1, Frame: frame}),
		)
	})
	have[0], titles[0], portions[0].First, frame[0] = 99, media.ID{}, 99, 'X'

	ctx := context.Background()
	// Read everything twice, scribbling on the first answers.
	for round := range 2 {
		var h schedstore.Holding
		var l schedstore.PriorityList
		var trs []schedstore.Transfer
		errs := []error{
			s.LoadHoldings(ctx, func(x schedstore.Holding) error { h = x; return nil }),
			s.LoadPriorityLists(ctx, func(x schedstore.PriorityList) error { l = x; return nil }),
			s.LoadTransfers(ctx, func(x schedstore.Transfer) error { trs = append(trs, x); return nil }),
		}
		tr, err := s.Transfer(ctx, 1)
		errs = append(errs, err)
		of, err := s.TransfersOf(ctx, box, 1)
		errs = append(errs, err)
		out, err := s.Outbox(ctx, box, 0)
		errs = append(errs, err)
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		trs = append(trs, tr, of[0])
		if string(h.Have) != "\x01\x02\x03" || l.Titles[0] != storetest.TitleID(1) || string(out[0].Frame) != "frame" {
			t.Errorf("round %d: have %x, titles[0] %x, frame %q; the store shares memory with a caller",
				round, h.Have, l.Titles[0], out[0].Frame)
		}
		for _, tr := range trs {
			if tr.Portions[0].First != 1 {
				t.Errorf("round %d: portions %v; the store shares memory with a caller", round, tr.Portions)
			}
			tr.Portions[0].First = 77
		}
		h.Have[0], l.Titles[0], out[0].Frame[0] = 77, media.ID{}, 'Y'
	}
}

// TestRecordsGoAway checks that a box deleted leaves no record behind,
// while an outbox acknowledged to the end keeps its mark: memory at a
// million boxes must not grow with the boxes that came and went.
func TestRecordsGoAway(t *testing.T) {
	mem := NewMemory()
	s, err := mem.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, b := storetest.BoxID(1), storetest.BoxID(2)
	update(t, s, func(tx schedstore.Tx) error {
		return errors.Join(
			tx.PutBox(storetest.SampleBox(1)),
			tx.PutHolding(storetest.SampleHolding(1, 1)),
			tx.PutPriorityList(storetest.SampleList(1, 3, 1)),
			tx.AppendOutbox(schedstore.Outbound{Box: a, Seq: 1}),
			tx.SetSeqs(a, 1, 1),
			tx.AppendOutbox(schedstore.Outbound{Box: b, Seq: 5, Frame: []byte("x")}),
		)
	})
	update(t, s, func(tx schedstore.Tx) error {
		return errors.Join(tx.DeleteBox(a), tx.AckOutbox(b, 5))
	})
	if r, ok := mem.boxes[a]; ok {
		t.Errorf("deleted box left %+v", r)
	}
	if r := mem.boxes[b]; r == nil || r.appended != 5 || len(r.outbox) != 0 || r.outbox != nil {
		t.Errorf("box with its outbox acknowledged: %+v, want only the mark 5 and no array", r)
	}
	// SetSeqs of a box with nothing stored, then zeroed: nothing left.
	update(t, s, func(tx schedstore.Tx) error { return tx.SetSeqs(storetest.BoxID(3), 1, 0) })
	update(t, s, func(tx schedstore.Tx) error { return tx.SetSeqs(storetest.BoxID(3), 0, 0) })
	if len(mem.boxes) != 1 {
		t.Errorf("%d box records, want 1 (box 2's mark)", len(mem.boxes))
	}
}

// TestDropAcked checks that acknowledged messages no longer hold their
// frames, though the array they sat in is reused for the rest.
func TestDropAcked(t *testing.T) {
	cases := []struct {
		ack      uint64
		wantSeqs []uint64
	}{
		{0, []uint64{2, 4, 6, 8}},
		{1, []uint64{2, 4, 6, 8}},
		{4, []uint64{6, 8}},
		{5, []uint64{6, 8}},
		{8, nil},
		{1 << 62, nil},
	}
	for _, tc := range cases {
		ob := []outMsg{{2, "a"}, {4, "b"}, {6, "c"}, {8, "d"}}
		rest := dropAcked(ob, tc.ack)
		var seqs []uint64
		for _, o := range rest {
			seqs = append(seqs, o.seq)
		}
		if !slices.Equal(seqs, tc.wantSeqs) {
			t.Errorf("ack %d: left %v, want %v", tc.ack, seqs, tc.wantSeqs)
		}
		if rest == nil && len(tc.wantSeqs) == 0 {
			// Everything went: the array is let go whole.
			continue
		}
		for i, o := range ob[:len(ob)-len(rest)] {
			if o != (outMsg{}) {
				t.Errorf("ack %d: dropped entry %d still holds %+v", tc.ack, i, o)
			}
		}
	}
}

// TestUpdateCostIndependentOfSize counts the allocations of a small Update
// on a small and a large store: an implementation that copied the store
// per Update would allocate in proportion to its size.
func TestUpdateCostIndependentOfSize(t *testing.T) {
	allocs := map[int]float64{}
	for _, n := range []int{100, 20_000} {
		s := New()
		boxes := fill(t, s, n, false)
		var next uint64
		allocs[n] = testing.AllocsPerRun(50, func() {
			next++
			if err := s.Update(context.Background(), smallUpdate(boxes, next)); err != nil {
				t.Fatal(err)
			}
		})
		s.Close()
	}
	t.Logf("allocations per Update: %v", allocs)
	if allocs[20_000] > 2*allocs[100]+10 || allocs[20_000] > 60 {
		t.Errorf("allocations per small Update: %v by store size; want about the same, and few", allocs)
	}
}

// fill stores n benchmark boxes, with their holdings and lists if full,
// and returns the boxes.
func fill(tb testing.TB, s *Store, n int, full bool) []schedstore.Box {
	tb.Helper()
	boxes := make([]schedstore.Box, n)
	for start := 0; start < n; start += storetest.BenchBatch {
		err := s.Update(context.Background(), func(tx schedstore.Tx) error {
			for i := start; i < min(n, start+storetest.BenchBatch); i++ {
				box, holdings, list := storetest.BenchBox(i)
				boxes[i] = box
				if err := tx.PutBox(box); err != nil {
					return err
				}
				if !full {
					continue
				}
				for _, h := range holdings {
					if err := tx.PutHolding(h); err != nil {
						return err
					}
				}
				if err := tx.PutPriorityList(list); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	return boxes
}

// frame is an outbox message's frame, of a typical size.
var frame = []byte(`{"v":1,"seq":1,"type":"transfer","transfer":12345,"title":"00112233445566778899aabbccddeeff"}`)

// smallUpdate is one simulated scheduler step's worth of writes, the i-th:
// one box seen, one transfer requested, and two messages owed, spread over
// the boxes.
func smallUpdate(boxes []schedstore.Box, i uint64) func(tx schedstore.Tx) error {
	n := uint64(len(boxes))
	box, sender := boxes[i%n], boxes[(i+1)%n].ID
	box.LastSeen = time.Unix(int64(i), 0)
	seq := 2*(i/n) + 1 // each box's messages, numbered up
	return func(tx schedstore.Tx) error {
		if err := tx.PutBox(box); err != nil {
			return err
		}
		id, err := tx.NextTransferID()
		if err != nil {
			return err
		}
		err = tx.PutTransfer(schedstore.Transfer{ID: id, Title: storetest.ScatteredTitleID(int(i % 2000)), Receiver: box.ID,
			Sender: sender, Initiator: box.ID, Portions: []api.PieceRange{{First: 0, Last: 99}},
			State: schedstore.TransferRequested, Created: box.LastSeen, Updated: box.LastSeen})
		if err != nil {
			return err
		}
		for j := range uint64(2) {
			if err := tx.AppendOutbox(schedstore.Outbound{Box: box.ID, Seq: seq + j, Frame: frame}); err != nil {
				return err
			}
		}
		return nil
	}
}

// BenchmarkUpdate measures one scheduler step's Update (a box, a transfer,
// two outbox messages) on a store already holding 100,000 boxes with their
// holdings and lists, and a million boxes (records only) when
// storetest.Bench1MEnv is set. It also reports the heap the boxes take.
func BenchmarkUpdate(b *testing.B) {
	sizes := []struct {
		n    int
		full bool
	}{{100_000, true}}
	if testing.Short() {
		sizes[0].n = 10_000
	}
	if benchMillion() {
		sizes = append(sizes, struct {
			n    int
			full bool
		}{1_000_000, true})
	}
	for _, sz := range sizes {
		b.Run(fmt.Sprintf("boxes=%d", sz.n), func(b *testing.B) {
			before := heapInUse()
			s := New()
			defer s.Close()
			boxes := fill(b, s, sz.n, sz.full)
			perBox := float64(heapInUse()-before) / float64(sz.n)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			var i uint64
			for b.Loop() {
				i++
				if err := s.Update(ctx, smallUpdate(boxes, i)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(perBox, "heapB/box")
		})
	}
}

func benchMillion() bool { return os.Getenv(storetest.Bench1MEnv) == "1" }

func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

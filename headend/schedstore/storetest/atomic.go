package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
)

// writeEverything does one of every write, on top of what base left: a
// failed Update of it must leave no trace.
func writeEverything(t testing.TB, tx schedstore.Tx) {
	must(t, tx.PutBox(SampleBox(10)))
	must(t, tx.DeleteBox(BoxID(1)))
	must(t, tx.PutHolding(SampleHolding(10, 1)))
	must(t, tx.DeleteHolding(BoxID(2), TitleID(0)))
	must(t, tx.PutPriorityList(SampleList(2, 3, 99)))
	must(t, tx.PutTitle(sampleTitle(10)))
	must(t, tx.PutTransfer(sampleTransfer(1, 2, 3, schedstore.TransferDone, 0)))
	must(t, tx.PutMeasurement(sampleMeasurement(9, 9)))
	must(t, tx.AppendOutbox(schedstore.Outbound{Box: BoxID(2), Seq: 4, Frame: []byte("4")}))
	must(t, tx.AckOutbox(BoxID(2), 2))
	must(t, tx.SetSeqs(BoxID(2), 100, 100))
	if _, err := tx.NextTransferID(); err != nil {
		t.Fatal(err)
	}
	must(t, tx.AddActivationCode("new", "acct"))
	if _, err := tx.UseActivationCode("old"); err != nil {
		t.Fatal(err)
	}
}

// base writes what writeEverything then changes.
func base(t testing.TB, s schedstore.Store) *model {
	m := newModel()
	m.update(t, s, func(b *both) {
		fillBox(b, 1)
		fillBox(b, 2)
		b.putTransfer(sampleTransfer(1, 2, 3, schedstore.TransferRunning, 0))
		b.putTitle(sampleTitle(1))
		must(t, b.tx.AddActivationCode("old", "acct-old"))
	})
	return m
}

// checkCodesUntouched checks that a failed Update neither added "new" nor
// used "old".
func checkCodesUntouched(t testing.TB, s schedstore.Store) {
	t.Helper()
	var newErr, oldErr error
	var oldAccount string
	errRollback := errors.New("look, do not touch")
	err := s.Update(context.Background(), func(tx schedstore.Tx) error {
		_, newErr = tx.UseActivationCode("new")
		oldAccount, oldErr = tx.UseActivationCode("old")
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatalf("update: %v", err)
	}
	if !errors.Is(newErr, schedstore.ErrCodeUnknown) {
		t.Errorf("a code added by a failed Update: %v, want ErrCodeUnknown", newErr)
	}
	if oldErr != nil || oldAccount != "acct-old" {
		t.Errorf("a code used by a failed Update: %q, %v; want it unused", oldAccount, oldErr)
	}
}

func testUpdateError(t *testing.T, h *harness) {
	s, _ := h.store(t)
	m := base(t, s)
	errFail := errors.New("fail on purpose")
	err := s.Update(context.Background(), func(tx schedstore.Tx) error {
		writeEverything(t, tx)
		return fmt.Errorf("wrapped: %w", errFail)
	})
	if !errors.Is(err, errFail) {
		t.Fatalf("Update returned %v, want fn's error", err)
	}
	m.check(t, s)
	checkCodesUntouched(t, s)
}

func testUpdatePanic(t *testing.T, h *harness) {
	s, _ := h.store(t)
	m := base(t, s)
	type boom struct{ n int }
	func() {
		defer func() {
			if r := recover(); r != (boom{42}) {
				t.Errorf("recovered %v, want fn's panic value", r)
			}
		}()
		_ = s.Update(context.Background(), func(tx schedstore.Tx) error {
			writeEverything(t, tx)
			panic(boom{42})
		})
		t.Error("Update returned after fn panicked")
	}()
	m.check(t, s)
	checkCodesUntouched(t, s)
	// The store is still usable: the panic released what the Update held.
	m.update(t, s, func(b *both) { b.putBox(SampleBox(77)) })
	m.check(t, s)
}

func testUpdateSpoiled(t *testing.T, h *harness) {
	s, _ := h.store(t)
	m := base(t, s)
	spoilers := []struct {
		name string
		op   func(tx schedstore.Tx) error
	}{
		{"repeated outbox seq", func(tx schedstore.Tx) error {
			return tx.AppendOutbox(schedstore.Outbound{Box: BoxID(2), Seq: 1})
		}},
		{"code added twice", func(tx schedstore.Tx) error { return tx.AddActivationCode("old", "x") }},
		{"bad state", func(tx schedstore.Tx) error { return tx.PutTransfer(schedstore.Transfer{ID: 5, State: "?"}) }},
	}
	for _, sp := range spoilers {
		var opErr error
		err := s.Update(context.Background(), func(tx schedstore.Tx) error {
			writeEverything(t, tx)
			opErr = sp.op(tx)
			return nil
		})
		if opErr == nil {
			t.Errorf("%s: accepted", sp.name)
		}
		if err == nil {
			t.Errorf("%s: the Update committed although fn ignored a failed write", sp.name)
		}
	}
	m.check(t, s)
	checkCodesUntouched(t, s)
}

func testTxAfterUpdate(t *testing.T, h *harness) {
	s, _ := h.store(t)
	var kept schedstore.Tx
	update(t, s, func(tx schedstore.Tx) error { kept = tx; return nil })
	if err := kept.PutBox(SampleBox(1)); err == nil {
		t.Error("PutBox on a finished Tx succeeded")
	}
	if _, err := kept.NextTransferID(); err == nil {
		t.Error("NextTransferID on a finished Tx succeeded")
	}
	newModel().check(t, s)
}

// testConcurrentUpdates runs Updates from several goroutines: none may be
// lost, no transfer ID given twice, and each box's outbox stays in order.
func testConcurrentUpdates(t *testing.T, h *harness) {
	s, _ := h.store(t)
	const workers, rounds = 6, 12
	var mu sync.Mutex
	ids := map[api.TransferID]bool{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				var got []api.TransferID
				err := s.Update(context.Background(), func(tx schedstore.Tx) error {
					got = got[:0]
					n := uint64(w*1000 + r)
					if err := tx.PutBox(SampleBox(n)); err != nil {
						return err
					}
					if err := tx.PutHolding(SampleHolding(n, 1)); err != nil {
						return err
					}
					// Every worker writes the shared title too: the
					// last writer wins, whoever it is.
					if err := tx.PutTitle(sampleTitle(1)); err != nil {
						return err
					}
					if err := tx.AppendOutbox(schedstore.Outbound{Box: BoxID(uint64(w)), Seq: uint64(r + 1)}); err != nil {
						return err
					}
					for range 3 {
						id, err := tx.NextTransferID()
						if err != nil {
							return err
						}
						got = append(got, id)
					}
					return nil
				})
				if err != nil {
					t.Errorf("worker %d round %d: %v", w, r, err)
					return
				}
				mu.Lock()
				for _, id := range got {
					if ids[id] {
						t.Errorf("transfer ID %d given twice", id)
					}
					ids[id] = true
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	l := loadAll(t, s)
	if len(l.boxes) != workers*rounds || len(l.holdings) != workers*rounds || len(l.titles) != 1 {
		t.Errorf("stored %d boxes, %d holdings, %d titles; want %d, %d, 1",
			len(l.boxes), len(l.holdings), len(l.titles), workers*rounds, workers*rounds)
	}
	for w := range workers {
		out, err := s.Outbox(context.Background(), BoxID(uint64(w)), 0)
		if err != nil || len(out) != rounds {
			t.Errorf("outbox of worker %d: %d messages, %v; want %d", w, len(out), err, rounds)
		}
	}
}

// testConcurrentCodeUse races goroutines to one code: exactly one wins.
func testConcurrentCodeUse(t *testing.T, h *harness) {
	s, _ := h.store(t)
	update(t, s, func(tx schedstore.Tx) error { return tx.AddActivationCode("race", "acct") })
	const racers = 8
	results := make([]error, racers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			<-start
			err := s.Update(context.Background(), func(tx schedstore.Tx) error {
				_, results[i] = tx.UseActivationCode("race")
				return nil
			})
			if err != nil {
				t.Errorf("racer %d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	won := 0
	for i, err := range results {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, schedstore.ErrCodeUsed):
			t.Errorf("racer %d: %v, want ErrCodeUsed", i, err)
		}
	}
	if won != 1 {
		t.Errorf("%d racers used the code, want 1", won)
	}
}

// testSnapshotLoads loads while Updates rewrite every record: each load
// must see all records from one Update.
func testSnapshotLoads(t *testing.T, h *harness) {
	s, _ := h.store(t)
	const n, rounds = 300, 25
	write := func(k int) error {
		return s.Update(context.Background(), func(tx schedstore.Tx) error {
			for i := range uint64(n) {
				b := SampleBox(i)
				b.Capacity = int64(k)
				if err := tx.PutBox(b); err != nil {
					return err
				}
				if err := tx.PutPriorityList(SampleList(i, 2, uint64(k))); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := write(0); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(done)
		for k := 1; k <= rounds; k++ {
			if err := write(k); err != nil {
				t.Errorf("round %d: %v", k, err)
				return
			}
		}
	})
	loads := 0
	for reader := range 2 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				seen := map[int64]int{}
				var err error
				if reader == 0 {
					err = s.LoadBoxes(context.Background(), func(b schedstore.Box) error { seen[b.Capacity]++; return nil })
				} else {
					err = s.LoadPriorityLists(context.Background(), func(l schedstore.PriorityList) error {
						seen[int64(l.Version)]++
						return nil
					})
				}
				if err != nil {
					t.Errorf("load: %v", err)
					return
				}
				if len(seen) != 1 {
					t.Errorf("one load saw records from %d Updates: %v", len(seen), seen)
					return
				}
				for _, c := range seen {
					if c != n {
						t.Errorf("one load saw %d records, want %d", c, n)
						return
					}
				}
				if reader == 0 {
					loads++
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d box loads during %d Updates", loads, rounds)
}

// testReopen checks that everything survives Close and reopening.
func testReopen(t *testing.T, h *harness) {
	s, closeStore := h.store(t)
	m := base(t, s)
	m.update(t, s, func(b *both) {
		fillBox(b, 3)
		b.putMeasurement(sampleMeasurement(1, 3))
		b.putTransfer(sampleTransfer(2, 1, 3, schedstore.TransferDone, 4))
		b.ackOutbox(BoxID(3), 3)
		b.deleteHolding(BoxID(3), TitleID(1))
	})
	var before api.TransferID
	update(t, s, func(tx schedstore.Tx) error {
		var err error
		before, err = tx.NextTransferID()
		if err != nil {
			return err
		}
		if _, err := tx.UseActivationCode("old"); err != nil {
			return err
		}
		return tx.AddActivationCode("unused", "acct-u")
	})
	closeStore()

	s, _ = h.store(t)
	m.check(t, s)
	update(t, s, func(tx schedstore.Tx) error {
		if id, err := tx.NextTransferID(); err != nil || id == before {
			t.Errorf("after reopening, NextTransferID = %d, %v; it gave %d before", id, err, before)
		}
		if _, err := tx.UseActivationCode("old"); !errors.Is(err, schedstore.ErrCodeUsed) {
			t.Errorf("a code used before reopening: %v, want ErrCodeUsed", err)
		}
		if a, err := tx.UseActivationCode("unused"); err != nil || a != "acct-u" {
			t.Errorf("a code added before reopening: %q, %v", a, err)
		}
		return nil
	})
	// Box 3's outbox was acknowledged to the end; its numbers stay spent.
	if err := s.Update(context.Background(), func(tx schedstore.Tx) error {
		return tx.AppendOutbox(schedstore.Outbound{Box: BoxID(3), Seq: 3})
	}); err == nil {
		t.Error("after reopening, an acknowledged seq was accepted again")
	}
}

// testModel runs random Updates, some failing on purpose, and compares the
// store with the model after each.
func testModel(t *testing.T, h *harness) {
	s, _ := h.store(t)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	m := newModel()
	errFail := errors.New("fail on purpose")
	states := []schedstore.TransferState{schedstore.TransferRequested, schedstore.TransferRunning,
		schedstore.TransferDone, schedstore.TransferFailed}
	for round := range 60 {
		fail := rng.IntN(6) == 0
		ops := 1 + rng.IntN(20)
		// The ops are drawn before the Update, so a retried fn does the
		// same again.
		type op func(b *both)
		var todo []op
		for range ops {
			box, title := uint64(rng.IntN(8)), uint64(rng.IntN(6))
			v := rng.IntN(1000)
			switch rng.IntN(12) {
			case 0:
				todo = append(todo, func(b *both) {
					x := SampleBox(box)
					x.Free, x.LastSeen = int64(v), at(v)
					b.putBox(x)
				})
			case 1:
				if rng.IntN(3) == 0 {
					todo = append(todo, func(b *both) { b.deleteBox(BoxID(box)) })
				}
			case 2, 3:
				todo = append(todo, func(b *both) {
					x := SampleHolding(box, title)
					if v%3 == 0 {
						x.Have = pattern(v, byte(v))
					}
					b.putHolding(x)
				})
			case 4:
				todo = append(todo, func(b *both) { b.deleteHolding(BoxID(box), TitleID(title)) })
			case 5:
				todo = append(todo, func(b *both) { b.putList(SampleList(box, v%6, uint64(v))) })
			case 6:
				todo = append(todo, func(b *both) {
					x := sampleTitle(title)
					x.Pieces = v
					b.putTitle(x)
				})
			case 7:
				id, other, st := uint64(1+rng.IntN(10)), uint64(rng.IntN(8)), states[rng.IntN(4)]
				todo = append(todo, func(b *both) { b.putTransfer(sampleTransfer(id, box, other, st, v%5)) })
			case 8:
				todo = append(todo, func(b *both) { b.putMeasurement(sampleMeasurement(box, title)) })
			case 9:
				gap := uint64(rng.IntN(3))
				todo = append(todo, func(b *both) {
					seq := b.m.appended[BoxID(box)] + 1 + gap
					b.appendOutbox(schedstore.Outbound{Box: BoxID(box), Seq: seq, Frame: pattern(v%50, byte(seq))})
				})
			case 10:
				back := uint64(rng.IntN(4))
				todo = append(todo, func(b *both) {
					seq := b.m.appended[BoxID(box)]
					if seq >= back {
						seq -= back
					}
					b.ackOutbox(BoxID(box), seq)
				})
			case 11:
				todo = append(todo, func(b *both) { b.setSeqs(BoxID(box), uint64(v), uint64(v/2)) })
			}
		}
		var next *model
		err := s.Update(context.Background(), func(tx schedstore.Tx) error {
			next = m.clone()
			b := &both{t: t, tx: tx, m: next}
			for _, o := range todo {
				o(b)
			}
			if fail {
				return errFail
			}
			return nil
		})
		switch {
		case fail && !errors.Is(err, errFail):
			t.Fatalf("round %d: %v, want the error fn returned", round, err)
		case !fail && err != nil:
			t.Fatalf("round %d: %v", round, err)
		case !fail:
			*m = *next
		}
		m.check(t, s)
		if t.Failed() {
			t.Fatalf("round %d differs from the model", round)
		}
	}
}

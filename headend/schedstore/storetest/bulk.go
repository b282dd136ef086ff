package storetest

import (
	"context"
	"sync"
	"testing"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
)

// bulkBoxes is how many boxes the bulk tests write in one Update: more
// than a backend would send row by row (pgstore copies batches of 1,000
// rows or more).
const bulkBoxes = 1500

// testBulk writes Updates of thousands of rows, mixing new boxes, boxes
// rewritten, deleted and put again, and holdings added to boxes that have
// some: the paths a backend takes for large batches must keep every rule
// the small ones do.
func testBulk(t *testing.T, h *harness) {
	s, _ := h.store(t)
	m := newModel()
	putBox := func(b *both, n uint64, variant int) {
		x := SampleBox(n)
		x.Free = int64(variant)
		b.putBox(x)
		for ti := range uint64(3) {
			hd := SampleHolding(n, ti+uint64(variant))
			b.putHolding(hd)
		}
		b.putList(SampleList(n, 4, uint64(variant)))
	}
	m.update(t, s, func(b *both) {
		for n := range uint64(bulkBoxes) {
			putBox(b, n, 0)
		}
	})
	m.checkLoads(t, s)
	m.update(t, s, func(b *both) {
		for n := range uint64(10) { // deleted, then put again, in this Update
			b.deleteBox(BoxID(n))
		}
		for n := range uint64(bulkBoxes / 2) { // rewritten: replaced, and one new title each
			putBox(b, n, 1)
		}
		for n := uint64(bulkBoxes); n < bulkBoxes*3/2; n++ { // new
			putBox(b, n, 2)
		}
		for n := uint64(bulkBoxes - 10); n < bulkBoxes; n++ { // deleted after their puts
			putBox(b, n, 3)
			b.deleteBox(BoxID(n))
		}
		b.deleteHolding(BoxID(20), TitleID(1))
		b.putHolding(SampleHolding(20, 99))
		b.deleteHolding(BoxID(20), TitleID(99))
	})
	m.checkLoads(t, s)
	for _, n := range []uint64{0, 9, 10, bulkBoxes - 1} {
		m.touched = map[api.BoxID]bool{BoxID(n): true}
		m.checkBoxes(t, s)
	}
}

// testConcurrentBulk runs two large Updates of the same new boxes at once:
// whichever commits last wins, whole.
func testConcurrentBulk(t *testing.T, h *harness) {
	s, _ := h.store(t)
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			err := s.Update(context.Background(), func(tx schedstore.Tx) error {
				for n := range uint64(bulkBoxes) {
					x := SampleBox(n)
					x.Free = int64(w)
					if err := tx.PutBox(x); err != nil {
						return err
					}
					for ti := range uint64(2) {
						hd := SampleHolding(n, ti)
						hd.Have = []byte{byte(w)}
						if err := tx.PutHolding(hd); err != nil {
							return err
						}
					}
				}
				return nil
			})
			if err != nil {
				t.Errorf("writer %d: %v", w, err)
			}
		})
	}
	wg.Wait()
	l := loadAll(t, s)
	frees, haves := map[int64]int{}, map[byte]int{}
	for _, b := range l.boxes {
		frees[b.Free]++
	}
	for _, hd := range l.holdings {
		haves[hd.Have[0]]++
	}
	if len(l.boxes) != bulkBoxes || len(l.holdings) != 2*bulkBoxes || len(frees) != 1 || len(haves) != 1 {
		t.Errorf("%d boxes from writers %v, %d holdings from writers %v; want %d and %d from one writer",
			len(l.boxes), frees, len(l.holdings), haves, bulkBoxes, 2*bulkBoxes)
	}
}

package storetest

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/media"
)

// Bench1MEnv, set to 1, adds a million boxes to the sizes Bench measures.
const Bench1MEnv = "BOXSWARM_BENCH_1M"

// The shape of a registered box in the benchmark: what the scheduler's
// bulk registration and its start-up load cost.
const (
	BenchHoldings = 40     // titles each box holds
	BenchPartial  = 4      // of which partly, with a bitmap
	BenchBitmap   = 128    // bytes: a title of 1024 pieces
	BenchList     = 10     // titles on each box's priority list
	BenchBatch    = 10_000 // boxes per Update
	benchCatalog  = 2000   // titles to pick from
)

// Bench measures writing n boxes (each with its holdings and priority
// list) in Updates of BenchBatch boxes into an empty store, and loading
// them all back, for n of 10,000 and 100,000, and a million when
// Bench1MEnv is set. It reports records (boxes, holdings and lists) per
// second.
func Bench(b *testing.B, backend Backend) {
	sizes := []int{10_000, 100_000}
	if os.Getenv(Bench1MEnv) == "1" {
		sizes = append(sizes, 1_000_000)
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("boxes=%d", n), func(parent *testing.B) {
			// The load benchmark reads what the write benchmark left, or
			// writes it itself when run alone; stores live as long as
			// parent.
			var filled schedstore.Store
			fill := func(b *testing.B) {
				if filled != nil {
					if err := filled.Close(); err != nil {
						b.Fatal(err)
					}
				}
				s := backend(parent)(parent)
				parent.Cleanup(func() { s.Close() })
				filled = s
			}
			parent.Run("write", func(b *testing.B) {
				for range b.N {
					b.StopTimer()
					fill(b)
					b.StartTimer()
					benchWrite(b, filled, n)
				}
				reportRecords(b, n)
			})
			parent.Run("load", func(b *testing.B) {
				if filled == nil {
					fill(b)
					benchWrite(b, filled, n)
					b.ResetTimer()
				}
				for range b.N {
					benchLoad(b, filled, n)
				}
				reportRecords(b, n)
			})
		})
	}
}

func reportRecords(b *testing.B, n int) {
	records := float64(n*(1+BenchHoldings+1)) * float64(b.N)
	b.ReportMetric(records/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "boxes/s")
}

// mix spreads n over 64 bits (splitmix64), so benchmark IDs are as
// scattered as the random IDs of real boxes.
func mix(n uint64) uint64 {
	n += 0x9E3779B97F4A7C15
	n = (n ^ n>>30) * 0xBF58476D1CE4E5B9
	n = (n ^ n>>27) * 0x94D049BB133111EB
	return n ^ n>>31
}

// ScatteredBoxID returns box n's ID, scattered over the ID space as the
// random IDs of real boxes are.
func ScatteredBoxID(n int) api.BoxID {
	var id api.BoxID
	binary.BigEndian.PutUint64(id[:8], mix(uint64(n)))
	binary.BigEndian.PutUint64(id[8:], mix(uint64(n)^0xB0B0))
	return id
}

// ScatteredTitleID returns title n's ID, scattered like ScatteredBoxID.
func ScatteredTitleID(n int) media.ID {
	var id media.ID
	binary.BigEndian.PutUint64(id[:8], mix(uint64(n)|1<<40))
	binary.BigEndian.PutUint64(id[8:], mix(uint64(n)|1<<41))
	return id
}

// BenchBox returns box n of the benchmark population, with its holdings
// and priority list.
func BenchBox(n int) (schedstore.Box, []schedstore.Holding, schedstore.PriorityList) {
	box := SampleBox(uint64(n))
	box.ID = ScatteredBoxID(n)
	holdings := make([]schedstore.Holding, BenchHoldings)
	for j := range holdings {
		// 53 is prime to the catalog size, so the titles are distinct.
		h := schedstore.Holding{Box: box.ID, Title: ScatteredTitleID((n*7 + j*53) % benchCatalog), Complete: true}
		if j < BenchPartial {
			h.Complete = false
			h.Have = pattern(BenchBitmap, byte(n+j))
		}
		holdings[j] = h
	}
	list := schedstore.PriorityList{Box: box.ID, Version: uint64(n), Titles: make([]media.ID, BenchList)}
	for j := range list.Titles {
		list.Titles[j] = ScatteredTitleID((n*11 + j*13) % benchCatalog)
	}
	return box, holdings, list
}

func benchWrite(b *testing.B, s schedstore.Store, n int) {
	for start := 0; start < n; start += BenchBatch {
		err := s.Update(context.Background(), func(tx schedstore.Tx) error {
			for i := start; i < min(n, start+BenchBatch); i++ {
				box, holdings, list := BenchBox(i)
				if err := tx.PutBox(box); err != nil {
					return err
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
			b.Fatalf("writing boxes %d on: %v", start, err)
		}
	}
}

func benchLoad(b *testing.B, s schedstore.Store, n int) {
	ctx := context.Background()
	var boxes, holdings, lists int
	start := time.Now()
	if err := s.LoadBoxes(ctx, func(schedstore.Box) error { boxes++; return nil }); err != nil {
		b.Fatal(err)
	}
	tBoxes := time.Since(start)
	if err := s.LoadHoldings(ctx, func(schedstore.Holding) error { holdings++; return nil }); err != nil {
		b.Fatal(err)
	}
	tHoldings := time.Since(start) - tBoxes
	if err := s.LoadPriorityLists(ctx, func(schedstore.PriorityList) error { lists++; return nil }); err != nil {
		b.Fatal(err)
	}
	if boxes != n || holdings != n*BenchHoldings || lists != n {
		b.Fatalf("loaded %d boxes, %d holdings, %d lists; want %d, %d, %d",
			boxes, holdings, lists, n, n*BenchHoldings, n)
	}
	b.Logf("load of %d boxes: boxes %v, holdings %v, lists %v", n, tBoxes, tHoldings, time.Since(start)-tBoxes-tHoldings)
}

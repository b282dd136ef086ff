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
	"github.com/boxswarm/boxswarm/media"
)

// testRoundTrip stores records of every type, from all-zero to the largest
// the suite promises, and reads them back before and after reopening.
func testRoundTrip(t *testing.T, h *harness) {
	long := strings.Repeat("ø∑x", 10<<10/5)
	earliest := time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC)
	latest := time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("late", 11*3600))
	before1970 := time.Date(1969, 12, 31, 23, 59, 59, 999999500, time.UTC)

	cases := []struct {
		name  string
		write func(b *both)
	}{
		{"zero", func(b *both) {
			b.putBox(schedstore.Box{})
			b.putHolding(schedstore.Holding{})
			b.putList(schedstore.PriorityList{})
			b.putTitle(schedstore.Title{})
			b.putTransfer(schedstore.Transfer{State: schedstore.TransferRequested})
			b.putMeasurement(schedstore.Measurement{})
			b.appendOutbox(schedstore.Outbound{Seq: 1})
			b.setSeqs(api.BoxID{}, 0, 0)
		}},
		{"typical", func(b *both) {
			b.putBox(SampleBox(1))
			b.putHolding(SampleHolding(1, 1))
			b.putHolding(SampleHolding(1, 2))
			b.putList(SampleList(1, 10, 3))
			b.putTitle(sampleTitle(1))
			b.putTransfer(sampleTransfer(1, 1, 2, schedstore.TransferRunning, 0))
			b.putMeasurement(sampleMeasurement(1, 2))
			b.appendOutbox(schedstore.Outbound{Box: BoxID(1), Seq: 1, Frame: []byte(`{"v":1,"seq":1}`)})
			b.setSeqs(BoxID(1), 17, 1)
		}},
		{"large", func(b *both) {
			box := SampleBox(2)
			box.Account, box.Cluster, box.PieceAddr = long, long+"c", long+"p"
			box.Location = api.Location{Region: long + "r", ISP: long + "i"}
			box.NAT = api.NATType(long + "n")
			box.Capacity, box.Free = math.MaxInt64, math.MinInt64
			box.UpKbps, box.DownKbps = math.MaxInt, math.MinInt
			box.Activated, box.LastSeen = earliest, latest
			for i := range box.CertSHA256 {
				box.CertSHA256[i] = 0xFF
			}
			b.putBox(box)
			b.putHolding(schedstore.Holding{Box: BoxID(2), Title: TitleID(2), Have: pattern(64<<10, 2)})
			b.putList(SampleList(2, 4096, math.MaxUint64))
			b.putTitle(schedstore.Title{ID: TitleID(2), Pieces: math.MaxInt, PieceSize: math.MinInt,
				PayloadSize: math.MaxInt64, PayloadHash: [32]byte{31: 1}, PublishAt: before1970})
			tr := sampleTransfer(math.MaxUint64, 2, 3, schedstore.TransferFailed, 0)
			tr.Portions = nil
			for i := range 1000 {
				tr.Portions = append(tr.Portions, api.PieceRange{First: i * 10, Last: i*10 + 9})
			}
			tr.Portions = append(tr.Portions, api.PieceRange{First: math.MinInt, Last: math.MaxInt})
			tr.Outcome, tr.Pieces = long, math.MinInt
			tr.Created, tr.Updated = latest, earliest
			b.putTransfer(tr)
			b.putMeasurement(schedstore.Measurement{From: BoxID(2), To: BoxID(2), Kbps: math.MaxInt, RTTMilli: math.MinInt, At: latest})
			b.appendOutbox(schedstore.Outbound{Box: BoxID(2), Seq: math.MaxInt64, Frame: pattern(api.MaxFrame, 3)})
			b.setSeqs(BoxID(2), math.MaxUint64, math.MaxUint64-1)
		}},
		{"binary and unicode", func(b *both) {
			box := SampleBox(3)
			box.Account = "Zoë Ærøskøbing 東京 🎬 \u200f\ufeff"
			box.Location.Region = "ﻉﺮﺒﻳ"
			b.putBox(box)
			b.putHolding(schedstore.Holding{Box: BoxID(3), Title: TitleID(3), Complete: true, Have: []byte{0, 0, 0}})
			b.putList(schedstore.PriorityList{Box: BoxID(3), Titles: []media.ID{TitleID(0), {}, TitleID(0)}})
			b.appendOutbox(schedstore.Outbound{Box: BoxID(3), Seq: 5, Frame: []byte{0, 0xFF, 0, '\'', '\\'}})
			b.appendOutbox(schedstore.Outbound{Box: BoxID(3), Seq: 6, Frame: []byte{}})
		}},
	}
	s, closeStore := h.store(t)
	m := newModel()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m.update(t, s, tc.write)
			m.check(t, s)
		})
	}
	closeStore()
	s, _ = h.store(t)
	m.check(t, s)
}

// testEmpty checks what a new store answers.
func testEmpty(t *testing.T, h *harness) {
	s, _ := h.store(t)
	newModel().check(t, s)
	ctx := context.Background()
	if _, err := s.Transfer(ctx, 1); !errors.Is(err, schedstore.ErrNotFound) {
		t.Errorf("Transfer(1) on an empty store: %v, want ErrNotFound", err)
	}
	if got, err := s.Outbox(ctx, BoxID(1), 0); err != nil || len(got) != 0 {
		t.Errorf("Outbox of an unknown box = %v, %v; want nothing", got, err)
	}
	if got, err := s.TransfersOf(ctx, BoxID(1), 10); err != nil || len(got) != 0 {
		t.Errorf("TransfersOf an unknown box = %v, %v; want nothing", got, err)
	}
}

// testPutReplaces puts two records with one key, in one Update and in two,
// and expects only the second.
func testPutReplaces(t *testing.T, h *harness) {
	cases := []struct {
		name   string
		first  func(b *both)
		second func(b *both)
	}{
		{"box", func(b *both) { b.putBox(SampleBox(1)) }, func(b *both) {
			x := SampleBox(2)
			x.ID = BoxID(1)
			b.putBox(x)
		}},
		{"holding", func(b *both) { b.putHolding(SampleHolding(1, 1)) }, func(b *both) {
			b.putHolding(schedstore.Holding{Box: BoxID(1), Title: TitleID(1), Complete: true})
		}},
		{"holding bitmap", func(b *both) {
			b.putHolding(schedstore.Holding{Box: BoxID(1), Title: TitleID(2), Have: pattern(4096, 1)})
		}, func(b *both) {
			b.putHolding(schedstore.Holding{Box: BoxID(1), Title: TitleID(2), Have: []byte{1}})
		}},
		{"priority list", func(b *both) { b.putList(SampleList(1, 100, 1)) }, func(b *both) { b.putList(SampleList(1, 2, 2)) }},
		{"priority list emptied", func(b *both) { b.putList(SampleList(2, 5, 1)) }, func(b *both) { b.putList(SampleList(2, 0, 2)) }},
		{"title", func(b *both) { b.putTitle(sampleTitle(1)) }, func(b *both) {
			x := sampleTitle(2)
			x.ID = TitleID(1)
			b.putTitle(x)
		}},
		{"transfer", func(b *both) { b.putTransfer(sampleTransfer(1, 1, 2, schedstore.TransferRequested, 0)) }, func(b *both) {
			b.putTransfer(sampleTransfer(1, 3, 4, schedstore.TransferRunning, 9))
		}},
		{"measurement", func(b *both) { b.putMeasurement(sampleMeasurement(1, 2)) }, func(b *both) {
			x := sampleMeasurement(5, 6)
			x.From, x.To = BoxID(1), BoxID(2)
			b.putMeasurement(x)
		}},
		{"seqs", func(b *both) { b.setSeqs(BoxID(1), 5, 6) }, func(b *both) { b.setSeqs(BoxID(1), 2, 1) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Run("two updates", func(t *testing.T) {
				s, _ := h.fresh(t).store(t)
				m := newModel()
				m.update(t, s, tc.first)
				m.update(t, s, tc.second)
				m.check(t, s)
			})
		})
	}
	// One location for all the one-update cases: the keys do not overlap
	// across cases that would disturb each other, and the model knows.
	s, _ := h.store(t)
	m := newModel()
	for _, tc := range cases {
		t.Run(tc.name+"/one update", func(t *testing.T) {
			m.update(t, s, func(b *both) { tc.first(b); tc.second(b) })
			m.check(t, s)
		})
	}
}

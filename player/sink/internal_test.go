package sink

import (
	"bytes"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

func TestTo90k(t *testing.T) {
	cases := []struct {
		v         int64
		timescale uint32
		want      int64
	}{
		{0, 90000, 0},
		{123456789, 90000, 123456789},
		{-3000, 90000, -3000},
		{48000, 48000, 90000},
		{1, 48000, 2},   // 1.875
		{-1, 48000, -2}, // -1.875
		{1024, 48000, 1920},
		{1024, 44100, 2090}, // 2089.79
		{1, 180000, 1},      // 0.5 rounds up
		{-1, 180000, 0},     // -0.5 rounds up too
		{3, 180000, 2},      // 1.5
		{512, 12800, 3600},
		{1, 1, 90000},
		{-1, 1, -90000},
		{1<<32 - 1, 1<<32 - 1, 90000},
		{1, 1<<32 - 1, 0},
		{math.MaxInt64, 90000, math.MaxInt64},
		{math.MinInt64, 90000, math.MinInt64},
		// An hour of nanoseconds-like ticks: v*90000 would overflow int64.
		{3600 * 4_000_000_000, 4_000_000_000, 3600 * 90000},
	}
	for _, c := range cases {
		if got := to90k(c.v, c.timescale); got != c.want {
			t.Errorf("to90k(%d, %d) = %d, want %d", c.v, c.timescale, got, c.want)
		}
	}
}

// TestTo90kExact checks random values against exact rational arithmetic,
// and that the conversion never reorders.
func TestTo90kExact(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	timescales := []uint32{1, 1000, 12800, 15360, 25, 44100, 48000, 90000, 96000, 1_000_000, 1<<32 - 1}
	for i := 0; i < 20000; i++ {
		ts := timescales[r.IntN(len(timescales))]
		// Up to about a week at the timescale, either sign.
		v := r.Int64N(int64(ts)*600_000) - int64(ts)*300_000
		want := exact90k(v, ts)
		if got := to90k(v, ts); got != want {
			t.Fatalf("to90k(%d, %d) = %d, want %d", v, ts, got, want)
		}
		if to90k(v+1, ts) < want {
			t.Fatalf("to90k(%d, %d) > to90k(%d, %d)", v, ts, v+1, ts)
		}
	}
}

// exact90k is floor(v*90000/ts + 1/2) in big rationals.
func exact90k(v int64, ts uint32) int64 {
	x := new(big.Rat).SetFrac(new(big.Int).Mul(big.NewInt(v), big.NewInt(90000)), big.NewInt(int64(ts)))
	x.Add(x, big.NewRat(1, 2))
	q := new(big.Int).Div(x.Num(), x.Denom()) // Euclidean: floor for a positive denominator
	return q.Int64()
}

func TestEachNALU(t *testing.T) {
	cases := []struct {
		name    string
		in      []byte
		want    [][]byte
		wantErr bool
	}{
		{"4-byte start codes", []byte{0, 0, 0, 1, 9, 0xF0, 0, 0, 0, 1, 0x65, 1, 2}, [][]byte{{9, 0xF0}, {0x65, 1, 2}}, false},
		{"3-byte start codes", []byte{0, 0, 1, 0x67, 5, 0, 0, 1, 0x68, 6}, [][]byte{{0x67, 5}, {0x68, 6}}, false},
		{"leading and trailing zeros", []byte{0, 0, 0, 0, 0, 1, 0x41, 7, 0, 0, 0, 0, 0, 1, 0x41, 8, 0, 0}, [][]byte{{0x41, 7}, {0x41, 8}}, false},
		{"emulation prevention kept", []byte{0, 0, 1, 0x41, 0, 0, 3, 1}, [][]byte{{0x41, 0, 0, 3, 1}}, false},
		{"empty NAL units skipped", []byte{0, 0, 1, 0, 0, 1, 0x41, 9}, [][]byte{{0x41, 9}}, false},
		{"no start code", []byte{0x41, 9}, nil, true},
		{"garbage before the start code", []byte{7, 0, 0, 1, 0x41}, nil, true},
		{"start code only", []byte{0, 0, 0, 1}, nil, true},
		{"empty", nil, nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got [][]byte
			err := eachNALU(c.in, func(n []byte) error {
				got = append(got, n)
				return nil
			})
			if (err != nil) != c.wantErr {
				t.Fatalf("error %v, want error %t", err, c.wantErr)
			}
			if !c.wantErr && !equalNALUs(got, c.want) {
				t.Fatalf("NAL units %x, want %x", got, c.want)
			}
		})
	}
}

func equalNALUs(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// TestScrubBufferZeroesWhatItDrops checks that growing and resetting
// leave no copy of the contents behind.
func TestScrubBufferZeroesWhatItDrops(t *testing.T) {
	var s scrubBuffer
	s.Write([]byte{1, 2, 3})
	old := s.b[:cap(s.b)]
	s.Write(bytes.Repeat([]byte{4}, 100)) // forces a move
	if !bytes.Equal(old, make([]byte, len(old))) {
		t.Fatalf("the old array still holds %x", old)
	}
	cur := s.b
	s.reset()
	if !bytes.Equal(cur, make([]byte, len(cur))) {
		t.Fatalf("reset left %x", cur)
	}
}

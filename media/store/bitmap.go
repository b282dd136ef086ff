package store

import (
	"fmt"
	"math/bits"
)

// Bitmap records which pieces of a title are present. Bit i is bit 7-(i%8)
// of byte i/8, the order BitTorrent uses, so Bytes can go on a wire as is;
// the spare bits of the last byte are always zero.
//
// A Bitmap returned by Have is a copy: it does not change as pieces arrive.
type Bitmap struct {
	n    int
	bits []byte
}

// NewBitmap returns an empty bitmap for n pieces.
func NewBitmap(n int) Bitmap { return Bitmap{n: n, bits: make([]byte, (n+7)/8)} }

// BitmapFromBytes checks and copies the Bytes form of a bitmap for n
// pieces: exactly (n+7)/8 bytes with the spare bits clear.
func BitmapFromBytes(n int, b []byte) (Bitmap, error) {
	if n < 0 || len(b) != (n+7)/8 {
		return Bitmap{}, fmt.Errorf("bitmap of %d bytes for %d pieces: %w", len(b), n, ErrCorrupt)
	}
	if n%8 != 0 && b[len(b)-1]&(0xff>>(n%8)) != 0 {
		return Bitmap{}, fmt.Errorf("bitmap for %d pieces has bits past the last piece: %w", n, ErrCorrupt)
	}
	return Bitmap{n: n, bits: append([]byte(nil), b...)}, nil
}

// Len returns the number of pieces the bitmap covers.
func (m Bitmap) Len() int { return m.n }

// Has reports whether piece i is present; false for i out of range.
func (m Bitmap) Has(i int) bool {
	return i >= 0 && i < m.n && m.bits[i/8]&(0x80>>(i%8)) != 0
}

// Count returns the number of pieces present.
func (m Bitmap) Count() int {
	c := 0
	for _, b := range m.bits {
		c += bits.OnesCount8(b)
	}
	return c
}

// Complete reports whether every piece is present.
func (m Bitmap) Complete() bool { return m.Count() == m.n }

// ContiguousFrom returns the first missing piece at or after i, or Len if
// every piece from i on is present: a player may read up to there without
// waiting.
func (m Bitmap) ContiguousFrom(i int) int {
	i = max(i, 0)
	for i < m.n {
		if i%8 == 0 && i+8 <= m.n && m.bits[i/8] == 0xff {
			i += 8
			continue
		}
		if !m.Has(i) {
			return i
		}
		i++
	}
	return m.n
}

// Bytes returns a copy of the bitmap's bytes.
func (m Bitmap) Bytes() []byte { return append([]byte(nil), m.bits...) }

func (m Bitmap) clone() Bitmap { return Bitmap{n: m.n, bits: append([]byte(nil), m.bits...)} }

func (m Bitmap) set(i int)   { m.bits[i/8] |= 0x80 >> (i % 8) }
func (m Bitmap) clear(i int) { m.bits[i/8] &^= 0x80 >> (i % 8) }

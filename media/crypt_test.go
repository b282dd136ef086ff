package media

import (
	"bytes"
	"crypto/aes"
	"encoding/hex"
	"errors"
	"testing"
)

// TestCMACVector checks the PRF against RFC 4493's AES-CMAC construction
// with the NIST SP 800-38B AES-256 example (Example 10: one complete block).
func TestCMACVector(t *testing.T) {
	key, _ := hex.DecodeString("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
	msg, _ := hex.DecodeString("6bc1bee22e409f96e93d7e117393172a")
	want := "28a7023f452e8f82bd4bf28d8c37c35c"
	c, err := NewFrameCipher(key, ID{})
	if err != nil {
		t.Fatal(err)
	}
	var b [16]byte
	for i := range b {
		b[i] = msg[i] ^ c.k1[i]
	}
	blk, _ := aes.NewCipher(key)
	blk.Encrypt(b[:], b[:])
	if got := hex.EncodeToString(b[:]); got != want {
		t.Fatalf("CMAC = %s, want %s", got, want)
	}
}

func TestSealOpen(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	id := ID{1, 2, 3}
	c, _ := NewFrameCipher(key, id)
	m := FrameMeta{Track: 1, PTS: 9000, DTS: 6000, Duration: 3000, Keyframe: true}
	pt := []byte("an access unit")
	sealed, err := c.Seal(nil, 42, m, pt)
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed) != len(pt)+SealOverhead {
		t.Fatalf("sealed %d bytes", len(sealed))
	}
	got, err := c.Open(nil, 42, m, sealed)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	other, _ := NewFrameCipher(key, ID{9})
	wrongKey, _ := NewFrameCipher(bytes.Repeat([]byte{8}, 32), id)
	for _, tc := range []struct {
		name   string
		c      *FrameCipher
		index  uint64
		m      FrameMeta
		sealed []byte
	}{
		{"another index (swapped frames)", c, 43, m, sealed},
		{"another title (transplanted)", other, 42, m, sealed},
		{"another key", wrongKey, 42, m, sealed},
		{"re-timed", c, 42, FrameMeta{Track: 1, PTS: 9001, DTS: 6000, Duration: 3000, Keyframe: true}, sealed},
		{"another track", c, 42, FrameMeta{Track: 0, PTS: 9000, DTS: 6000, Duration: 3000, Keyframe: true}, sealed},
		{"keyframe flag", c, 42, FrameMeta{Track: 1, PTS: 9000, DTS: 6000, Duration: 3000}, sealed},
		{"flipped byte", c, 42, m, flip(sealed, 3)},
		{"truncated", c, 42, m, sealed[:10]},
	} {
		if _, err := tc.c.Open(nil, tc.index, tc.m, tc.sealed); !errors.Is(err, ErrFrameAuth) {
			t.Errorf("%s: Open = %v, want ErrFrameAuth", tc.name, err)
		}
	}
	if k1, k2 := c.FrameKey(1), c.FrameKey(2); k1 == k2 {
		t.Error("two frames share a key")
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 1
	return c
}

func TestOpenAllocations(t *testing.T) {
	c, _ := NewFrameCipher(make([]byte, 32), ID{})
	m := FrameMeta{Track: 0, PTS: 1}
	sealed, _ := c.Seal(nil, 5, m, make([]byte, 4000))
	dst := make([]byte, 0, 8192)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := c.Open(dst, 5, m, sealed); err != nil {
			t.Fatal(err)
		}
	})
	// crypto/aes.NewCipher and crypto/cipher.NewGCM allocate one object
	// each for the frame key's schedule; nothing else may.
	if allocs > 2 {
		t.Errorf("Open allocates %v times per frame, want at most the 2 of the standard library", allocs)
	}
}

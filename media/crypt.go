package media

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
)

// ContentKeySize is the size of a title's content key (AES-256).
const ContentKeySize = 32

// SealOverhead is what sealing adds to a frame: the GCM tag.
const SealOverhead = 16

// ErrFrameAuth is returned for a frame that fails to open: changed,
// swapped, re-timed, transplanted, or opened with the wrong key.
var ErrFrameAuth = errors.New("frame failed authentication")

// FrameCipher seals and opens the frames of one title.
//
// Frame keys come from the content key with the KDF of NIST SP 800-108r1 in
// counter mode, with CMAC-AES-256 as the PRF and a one-block input:
//
//	K_i = PRF(Kc, 0x01 || "BXFK" || 0x00 || [i]_64 || [256]_16) ||
//	      PRF(Kc, 0x02 || "BXFK" || 0x00 || [i]_64 || [256]_16)
//
// where i is the frame's index in the frame table. Each frame is sealed with
// AES-256-GCM under K_i, nonce "BXMN" || [i]_64, and associated data
//
//	"BXM1" || media ID || [track]_8 || [i]_64 || [PTS]_64 || [DTS]_64 ||
//	[duration]_32 || [flags]_8        (flags bit 0: keyframe)
//
// all integers big-endian. The derivation costs two AES block encryptions;
// the GCM key schedule for each frame key is what crypto/aes and
// crypto/cipher allocate (two objects per frame).
//
// A FrameCipher is used by one goroutine at a time: it keeps its scratch
// buffers (the frame key, nonce and associated data) inside itself, so that
// none of them escapes to a fresh heap allocation per frame.
type FrameCipher struct {
	prf   cipher.Block
	k1    [16]byte // CMAC subkey for complete blocks
	id    ID
	key   [32]byte // the current frame key, zeroed after use
	nonce [12]byte
	aad   [aadSize]byte
}

// NewFrameCipher prepares to seal or open the frames of title id.
func NewFrameCipher(contentKey []byte, id ID) (*FrameCipher, error) {
	if len(contentKey) != ContentKeySize {
		return nil, fmt.Errorf("content key has %d bytes, want %d", len(contentKey), ContentKeySize)
	}
	prf, err := aes.NewCipher(contentKey)
	if err != nil {
		return nil, err
	}
	c := &FrameCipher{prf: prf, id: id}
	// CMAC subkey K1 = dbl(AES_K(0^128)), computed in place.
	l := c.k1[:]
	prf.Encrypt(l, l)
	carry := l[0] >> 7
	for i := 0; i < 15; i++ {
		l[i] = l[i]<<1 | l[i+1]>>7
	}
	l[15] = l[15]<<1 ^ byte(subtle.ConstantTimeByteEq(carry, 1))*0x87
	return c, nil
}

// frameKey writes K_index into key.
func (c *FrameCipher) frameKey(index uint64, key *[32]byte) {
	for half := 0; half < 2; half++ {
		b := key[16*half : 16*half+16]
		b[0] = byte(half + 1)
		copy(b[1:5], "BXFK")
		b[5] = 0
		binary.BigEndian.PutUint64(b[6:14], index)
		binary.BigEndian.PutUint16(b[14:16], 256)
		subtle.XORBytes(b, b, c.k1[:])
		c.prf.Encrypt(b, b)
	}
}

// FrameKey returns K_index, for tests that look for key bytes where they
// must not be.
func (c *FrameCipher) FrameKey(index uint64) [32]byte {
	c.frameKey(index, &c.key)
	k := c.key
	clear(c.key[:])
	return k
}

// setup prepares the GCM instance, nonce and associated data for a frame.
func (c *FrameCipher) setup(index uint64, m FrameMeta) (cipher.AEAD, error) {
	c.frameKey(index, &c.key)
	b, err := aes.NewCipher(c.key[:])
	clear(c.key[:])
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	c.fillAAD(index, m)
	copy(c.nonce[0:4], "BXMN")
	binary.BigEndian.PutUint64(c.nonce[4:12], index)
	return g, nil
}

const aadSize = 4 + 16 + 1 + 8 + 8 + 8 + 4 + 1

func (c *FrameCipher) fillAAD(index uint64, m FrameMeta) {
	a := &c.aad
	copy(a[0:4], "BXM1")
	copy(a[4:20], c.id[:])
	a[20] = m.Track
	binary.BigEndian.PutUint64(a[21:29], index)
	binary.BigEndian.PutUint64(a[29:37], uint64(m.PTS))
	binary.BigEndian.PutUint64(a[37:45], uint64(m.DTS))
	binary.BigEndian.PutUint32(a[45:49], m.Duration)
	a[49] = 0
	if m.Keyframe {
		a[49] = 1
	}
}

// Seal appends the sealed frame to dst.
func (c *FrameCipher) Seal(dst []byte, index uint64, m FrameMeta, plaintext []byte) ([]byte, error) {
	g, err := c.setup(index, m)
	if err != nil {
		return nil, err
	}
	return g.Seal(dst, c.nonce[:], plaintext, c.aad[:]), nil
}

// Open appends the opened frame to dst. It fails with ErrFrameAuth unless
// sealed is exactly what Seal produced for this title, index and metadata.
func (c *FrameCipher) Open(dst []byte, index uint64, m FrameMeta, sealed []byte) ([]byte, error) {
	if len(sealed) < SealOverhead {
		return nil, fmt.Errorf("frame %d: %d bytes, shorter than the tag: %w", index, len(sealed), ErrFrameAuth)
	}
	g, err := c.setup(index, m)
	if err != nil {
		return nil, err
	}
	out, err := g.Open(dst, c.nonce[:], sealed, c.aad[:])
	if err != nil {
		return nil, fmt.Errorf("frame %d: %w", index, ErrFrameAuth)
	}
	return out, nil
}

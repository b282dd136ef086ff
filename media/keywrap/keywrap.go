// Package keywrap carries a title's content key from the key vault to one
// box: the head-end wraps it to the box's Ed25519 identity key, and only
// that box's private key unwraps it, into locked memory.
//
// A wrapped key is HPKE (RFC 9180) in base mode with DHKEM(X25519,
// HKDF-SHA256), HKDF-SHA256 and AES-256-GCM. The box's Ed25519 public key is
// mapped to its X25519 form (the Montgomery u-coordinate of the same point)
// and its private key to the clamped first half of SHA-512(seed), the
// standard conversion, so a box needs no second key pair. The byte layout
// is in FORMAT.md in this folder.
//
// Guarantees:
//   - Only the holder of the box's private key opens a wrapped key.
//   - The title, the box ID and the expiry travel in the clear and are bound
//     into the HPKE info: changing any of them, or the version, makes the
//     key fail to open, so a wrapped key cannot be moved to another title
//     or box, or have its life extended.
//   - Unwrap refuses an expired key, a key for another box or title, and
//     anything but the one canonical encoding, before any private-key
//     operation.
//   - Box keys that are not canonical point encodings, or of small order,
//     are refused at Wrap.
//   - Unwrap leaves the content key only in the keys.Secret it returns: the
//     decrypted copy HPKE returns, the hashed seed and the X25519 scalar are
//     zeroed before it returns. What it cannot reach itself (the scalar
//     copy inside crypto/ecdh, HPKE's key schedule, stack and registers) is
//     erased by runtime/secret in builds with GOEXPERIMENT=runtimesecret,
//     as the player daemon is built (see ErasesTemporaries); in other
//     builds it is garbage nobody zeroes.
//
// The expiry is enforced by the box's own software (the player destroys the
// key at expiry); it is not a cryptographic limit against a box that ignores
// it. What the format guarantees is that nobody can change it.
package keywrap

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"filippo.io/edwards25519"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/internal/tlv"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/keys"
)

// Format constants.
const (
	// Magic starts every wrapped key.
	Magic = "BXSWWKEY"
	// Version is the envelope version this build writes and reads.
	Version = 1
	// encSize is the X25519 encapsulated key HPKE sends.
	encSize = 32
	// SealedSize is the HPKE part: the encapsulated key, then the content
	// key sealed with AES-256-GCM (ciphertext and 16-byte tag).
	SealedSize = encSize + media.ContentKeySize + 16
	// Size is the length of every version 1 wrapped key.
	Size = len(Magic) + 4 + 4*tlv.HeaderSize + 16 + 16 + 8 + SealedSize
	// maxExpiry bounds the expiry (the start of year 10000), so every
	// accepted value is a time.Time that encodes back to itself.
	maxExpiry = 253402300800
)

// infoDomain starts the HPKE info; the version is part of it.
const infoDomain = "boxswarm wrapped content key v1\x00"

// Errors, each wrapped with what failed.
var (
	ErrMalformed          = errors.New("malformed wrapped key")
	ErrUnsupportedVersion = errors.New("unsupported wrapped key version")
	ErrBadPublicKey       = errors.New("public key cannot receive wrapped keys")
	ErrWrongBox           = errors.New("wrapped key is for another box")
	ErrWrongTitle         = errors.New("wrapped key is for another title")
	ErrExpired            = errors.New("wrapped key expired")
	// ErrAuth means the key did not open: the envelope was changed, or it
	// was wrapped to another box's key.
	ErrAuth = errors.New("wrapped key failed authentication")
)

// Header is the clear part of a wrapped key.
type Header struct {
	Title media.ID
	Box   api.BoxID
	// Expires is when the box must stop using the key; whole seconds
	// (Wrap rounds down).
	Expires time.Time
}

const (
	tagTitle   = 1
	tagBox     = 2
	tagExpires = 3
	tagSealed  = 4
)

var schema = []tlv.Field{
	{Tag: tagTitle, Name: "title", Kind: tlv.KindFixed, Max: 16, Required: true},
	{Tag: tagBox, Name: "box", Kind: tlv.KindFixed, Max: 16, Required: true},
	{Tag: tagExpires, Name: "expires", Kind: tlv.KindUint64, Required: true},
	{Tag: tagSealed, Name: "sealed key", Kind: tlv.KindFixed, Max: SealedSize, Required: true},
}

// The one HPKE suite.
func kdf() hpke.KDF   { return hpke.HKDFSHA256() }
func aead() hpke.AEAD { return hpke.AES256GCM() }

// Wrap seals a content key to the box whose identity key is to.
func Wrap(to ed25519.PublicKey, h Header, contentKey []byte) ([]byte, error) {
	if len(contentKey) != media.ContentKeySize {
		return nil, fmt.Errorf("wrap key for title %s: content key has %d bytes, want %d", h.Title, len(contentKey), media.ContentKeySize)
	}
	exp := h.Expires.Unix()
	if exp <= 0 || exp >= maxExpiry {
		return nil, fmt.Errorf("wrap key for title %s: expiry %s out of range", h.Title, h.Expires)
	}
	h.Expires = time.Unix(exp, 0).UTC()
	pub, err := X25519PublicKey(to)
	if err != nil {
		return nil, fmt.Errorf("wrap key for box %s: %w", h.Box, err)
	}
	hpub, err := hpke.NewDHKEMPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("wrap key for box %s: %w", h.Box, err)
	}
	var sealed []byte
	// The ephemeral key and the key schedule are worth erasing too: with
	// them, the content key can be recomputed from the wrapped key.
	erase(func() { sealed, err = hpke.Seal(hpub, kdf(), aead(), info(h), contentKey) })
	if err != nil {
		return nil, fmt.Errorf("wrap key for box %s: %w", h.Box, err)
	}
	if len(sealed) != SealedSize {
		return nil, fmt.Errorf("wrap key for box %s: HPKE gave %d bytes, want %d", h.Box, len(sealed), SealedSize)
	}
	return encode(h, sealed), nil
}

// Unwrap opens a wrapped key with the private key of box, checking that it
// is for this box and title and unexpired at now. The caller owns the
// returned Secret and must Destroy it.
func Unwrap(priv ed25519.PrivateKey, box api.BoxID, title media.ID, wrapped []byte, now time.Time) (*keys.Secret, Header, error) {
	h, sealed, err := parse(wrapped)
	if err != nil {
		return nil, Header{}, err
	}
	switch {
	case h.Box != box:
		return nil, h, fmt.Errorf("wrapped key names box %s, this is box %s: %w", h.Box, box, ErrWrongBox)
	case h.Title != title:
		return nil, h, fmt.Errorf("wrapped key names title %s, want %s: %w", h.Title, title, ErrWrongTitle)
	case !now.Before(h.Expires):
		return nil, h, fmt.Errorf("wrapped key for title %s expired at %s: %w", h.Title, h.Expires.Format(time.RFC3339), ErrExpired)
	}
	s, err := keys.NewSecret(media.ContentKeySize)
	if err != nil {
		return nil, h, err
	}
	erase(func() { err = open(priv, h, sealed, s.Bytes()) })
	if err != nil {
		s.Destroy()
		return nil, h, err
	}
	return s, h, nil
}

// open does Unwrap's private-key work, writing the content key into dst.
func open(priv ed25519.PrivateKey, h Header, sealed, dst []byte) error {
	sk, err := x25519PrivateKey(priv)
	if err != nil {
		return err
	}
	hk, err := hpke.NewDHKEMPrivateKey(sk)
	if err != nil {
		return fmt.Errorf("unwrap key for title %s: %w", h.Title, err)
	}
	plain, err := hpke.Open(hk, kdf(), aead(), info(h), sealed)
	if err != nil {
		return fmt.Errorf("unwrap key for title %s: %w", h.Title, ErrAuth)
	}
	defer clear(plain)
	if len(plain) != len(dst) {
		return fmt.Errorf("unwrap key for title %s: %d bytes, want %d: %w", h.Title, len(plain), len(dst), ErrMalformed)
	}
	copy(dst, plain)
	return nil
}

// Parse returns the clear header of a wrapped key, checking its encoding
// but not its seal.
func Parse(wrapped []byte) (Header, error) {
	h, _, err := parse(wrapped)
	return h, err
}

func info(h Header) []byte {
	b := make([]byte, 0, len(infoDomain)+16+16+8)
	b = append(b, infoDomain...)
	b = append(b, h.Title[:]...)
	b = append(b, h.Box[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(h.Expires.Unix()))
}

func encode(h Header, sealed []byte) []byte {
	var e tlv.Encoder
	e.Bytes(tagTitle, h.Title[:])
	e.Bytes(tagBox, h.Box[:])
	e.Uint64(tagExpires, uint64(h.Expires.Unix()))
	e.Bytes(tagSealed, sealed)
	b := make([]byte, 0, Size)
	b = append(b, Magic...)
	b = binary.BigEndian.AppendUint32(b, Version)
	return append(b, e.Encoded()...)
}

func parse(b []byte) (Header, []byte, error) {
	if len(b) > Size {
		return Header{}, nil, fmt.Errorf("wrapped key of %d bytes exceeds %d: %w", len(b), Size, ErrMalformed)
	}
	if len(b) < len(Magic)+4 || string(b[:len(Magic)]) != Magic {
		return Header{}, nil, fmt.Errorf("not a wrapped key (no %q header): %w", Magic, ErrMalformed)
	}
	if v := binary.BigEndian.Uint32(b[len(Magic):]); v != Version {
		return Header{}, nil, fmt.Errorf("wrapped key version %d (this build reads %d): %w", v, Version, ErrUnsupportedVersion)
	}
	f, err := tlv.Decode("wrapped key", b[len(Magic)+4:], schema)
	if err != nil {
		return Header{}, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	exp := f.Uint64(tagExpires)
	if exp == 0 || exp >= maxExpiry {
		return Header{}, nil, fmt.Errorf("wrapped key: expiry %d out of range: %w", exp, ErrMalformed)
	}
	var h Header
	copy(h.Title[:], f.Bytes(tagTitle))
	copy(h.Box[:], f.Bytes(tagBox))
	h.Expires = time.Unix(int64(exp), 0).UTC()
	return h, f.Bytes(tagSealed), nil
}

// X25519PublicKey maps an Ed25519 public key to the X25519 key of the same
// secret. It refuses non-canonical encodings and points of small order,
// whose shared secret would be predictable.
func X25519PublicKey(pub ed25519.PublicKey) (*ecdh.PublicKey, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("Ed25519 key of %d bytes: %w", len(pub), ErrBadPublicKey)
	}
	p, err := new(edwards25519.Point).SetBytes(pub)
	if err != nil {
		return nil, fmt.Errorf("Ed25519 key %x is not a curve point: %w", []byte(pub), ErrBadPublicKey)
	}
	if !bytes.Equal(p.Bytes(), pub) {
		return nil, fmt.Errorf("Ed25519 key %x is not canonically encoded: %w", []byte(pub), ErrBadPublicKey)
	}
	if new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1 {
		return nil, fmt.Errorf("Ed25519 key %x has small order: %w", []byte(pub), ErrBadPublicKey)
	}
	k, err := ecdh.X25519().NewPublicKey(p.BytesMontgomery())
	if err != nil {
		return nil, fmt.Errorf("Ed25519 key %x: %w: %w", []byte(pub), ErrBadPublicKey, err)
	}
	return k, nil
}

// x25519PrivateKey derives the X25519 scalar an Ed25519 key signs with:
// the clamped first half of SHA-512(seed) (RFC 8032, section 5.1.5).
func x25519PrivateKey(priv ed25519.PrivateKey) (*ecdh.PrivateKey, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("Ed25519 private key of %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	// priv[:SeedSize] rather than Seed(), which would copy the seed to the
	// heap where nothing clears it.
	h := sha512.Sum512(priv[:ed25519.SeedSize])
	defer clear(h[:])
	h[0] &= 248
	h[31] &= 127
	h[31] |= 64
	k, err := ecdh.X25519().NewPrivateKey(h[:32])
	if err != nil {
		return nil, fmt.Errorf("X25519 key from Ed25519 key: %w", err)
	}
	return k, nil
}

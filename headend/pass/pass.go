// Package pass is the media pass: the head-end's signed statement that one
// box may obtain one title's content key during a play window. Customer
// management decides whether a viewer may play (account, region, payment,
// rental rules) and issues a pass; the key vault checks the pass and
// nothing else. FORMAT.md in this folder is the byte-level description.
//
// Guarantees:
//   - A pass has exactly one encoding (internal/tlv, fixed field order),
//     and Parse accepts nothing else: no unknown version, unknown, repeated
//     or missing field, trailing byte, or pass larger than MaxSize.
//   - The signature is Ed25519 over a domain-separated message, so no other
//     record the head-end signs can be passed off as a pass, and the issuer
//     key ID is inside what is signed.
//   - A pass names one box twice, by ID and by identity public key, so it
//     is worthless to any other box, and carries a random 16-byte ID the
//     vault remembers until the pass expires, so it is good for one release.
//   - A pass lives five minutes by default and never more than MaxLifetime:
//     it is a ticket to fetch a key now, not the rental itself. The play
//     window is how long the released key may be used.
//   - Verify acts on nothing in a pass but its structure and issuer key ID
//     before the signature checks out, and reports each refusal with its
//     own error.
package pass

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/internal/tlv"
	"github.com/boxswarm/boxswarm/media"
)

// Format constants.
const (
	// Magic starts every pass.
	Magic = "BXSWPASS"
	// Version is the pass version this build writes and reads.
	Version = 1
	// MaxSize bounds a pass; it is checked before anything is decoded.
	MaxSize = 1024
	// MaxAccount bounds the account name.
	MaxAccount = 256
	// MaxLifetime bounds a pass's life from issue to expiry. The vault
	// remembers a pass's ID until it expires, so this also bounds how long
	// it remembers.
	MaxLifetime = time.Hour
	// DefaultTTL is a pass's life when the issuer is given none.
	DefaultTTL = 5 * time.Minute
	// MaxClockSkew is how far in the future a pass's issue time may be on
	// the verifier's clock.
	MaxClockSkew = time.Minute
	// maxTime bounds every time (the start of year 10000), so each accepted
	// value is a time.Time that encodes back to itself.
	maxTime = 253402300800
)

// signatureDomain starts the signed message.
const signatureDomain = "boxswarm media pass v1\x00"

// Errors, each wrapped with what failed.
var (
	ErrMalformed          = errors.New("malformed media pass")
	ErrUnsupportedVersion = errors.New("unsupported media pass version")
	ErrUnknownIssuer      = errors.New("media pass from an unknown issuer")
	ErrBadSignature       = errors.New("media pass signature invalid")
	ErrExpired            = errors.New("media pass expired")
	ErrNotYetValid        = errors.New("media pass not yet valid")
)

// ID names one pass: 16 random bytes, the nonce the vault remembers.
type ID [16]byte

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// KeyID names a pass signing key: the first 8 bytes of the SHA-256 of its
// public key.
type KeyID [8]byte

func (k KeyID) String() string { return hex.EncodeToString(k[:]) }

// KeyIDOf returns the key ID of a pass signing key.
func KeyIDOf(pub ed25519.PublicKey) KeyID {
	sum := sha256.Sum256(pub)
	return KeyID(sum[:8])
}

// Pass is a parsed media pass. Times are whole seconds in UTC.
type Pass struct {
	ID     ID
	Box    api.BoxID
	BoxKey ed25519.PublicKey // the box's identity key
	Title  media.ID
	// NotBefore and NotAfter are the play window: the key released for
	// this pass may be used from NotBefore until NotAfter.
	NotBefore, NotAfter time.Time
	IssuedAt            time.Time
	// Expires is when the pass stops being good for a key release.
	Expires time.Time
	// Account is customer management's name for the viewer's account; the
	// vault does not interpret it.
	Account string
	Issuer  KeyID
	// Signature is the issuer's signature over Message().
	Signature [ed25519.SignatureSize]byte
}

const (
	tagBody      = 1
	tagSignature = 2

	bodyTagID        = 1
	bodyTagBox       = 2
	bodyTagBoxKey    = 3
	bodyTagTitle     = 4
	bodyTagNotBefore = 5
	bodyTagNotAfter  = 6
	bodyTagIssuedAt  = 7
	bodyTagExpires   = 8
	bodyTagAccount   = 9
	bodyTagIssuer    = 10
)

var outerSchema = []tlv.Field{
	{Tag: tagBody, Name: "body", Kind: tlv.KindRecord, Max: MaxSize, Required: true},
	{Tag: tagSignature, Name: "signature", Kind: tlv.KindFixed, Max: ed25519.SignatureSize, Required: true},
}

var bodySchema = []tlv.Field{
	{Tag: bodyTagID, Name: "pass ID", Kind: tlv.KindFixed, Max: 16, Required: true},
	{Tag: bodyTagBox, Name: "box", Kind: tlv.KindFixed, Max: 16, Required: true},
	{Tag: bodyTagBoxKey, Name: "box key", Kind: tlv.KindFixed, Max: ed25519.PublicKeySize, Required: true},
	{Tag: bodyTagTitle, Name: "title", Kind: tlv.KindFixed, Max: 16, Required: true},
	{Tag: bodyTagNotBefore, Name: "not before", Kind: tlv.KindUint64, Required: true},
	{Tag: bodyTagNotAfter, Name: "not after", Kind: tlv.KindUint64, Required: true},
	{Tag: bodyTagIssuedAt, Name: "issued at", Kind: tlv.KindUint64, Required: true},
	{Tag: bodyTagExpires, Name: "expires", Kind: tlv.KindUint64, Required: true},
	{Tag: bodyTagAccount, Name: "account", Kind: tlv.KindString, Max: MaxAccount, Required: true},
	{Tag: bodyTagIssuer, Name: "issuer key ID", Kind: tlv.KindFixed, Max: 8, Required: true},
}

// body returns the canonical encoding of the signed fields.
func (p *Pass) body() []byte {
	var e tlv.Encoder
	e.Bytes(bodyTagID, p.ID[:])
	e.Bytes(bodyTagBox, p.Box[:])
	e.Bytes(bodyTagBoxKey, p.BoxKey)
	e.Bytes(bodyTagTitle, p.Title[:])
	e.Uint64(bodyTagNotBefore, uint64(p.NotBefore.Unix()))
	e.Uint64(bodyTagNotAfter, uint64(p.NotAfter.Unix()))
	e.Uint64(bodyTagIssuedAt, uint64(p.IssuedAt.Unix()))
	e.Uint64(bodyTagExpires, uint64(p.Expires.Unix()))
	e.String(bodyTagAccount, p.Account)
	e.Bytes(bodyTagIssuer, p.Issuer[:])
	return e.Encoded()
}

// Message returns what the issuer signs: a domain string, the magic, the
// version and the body.
func (p *Pass) Message() []byte {
	return message(p.body())
}

func message(body []byte) []byte {
	m := make([]byte, 0, len(signatureDomain)+len(Magic)+4+len(body))
	m = append(m, signatureDomain...)
	m = append(m, Magic...)
	m = binary.BigEndian.AppendUint32(m, Version)
	return append(m, body...)
}

// Encode returns the pass's bytes, signature included.
func (p *Pass) Encode() []byte {
	var e tlv.Encoder
	e.Bytes(tagBody, p.body())
	e.Bytes(tagSignature, p.Signature[:])
	b := make([]byte, 0, len(Magic)+4+len(e.Encoded()))
	b = append(b, Magic...)
	b = binary.BigEndian.AppendUint32(b, Version)
	return append(b, e.Encoded()...)
}

// Parse decodes a pass and checks its structure: the encoding, and that its
// times are consistent (a play window that ends after it starts, an expiry
// after the issue time and at most MaxLifetime later). It does not check
// the signature or the time: Verify does.
func Parse(b []byte) (*Pass, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("media pass of %d bytes exceeds %d: %w", len(b), MaxSize, ErrMalformed)
	}
	if len(b) < len(Magic)+4 || !bytes.Equal(b[:len(Magic)], []byte(Magic)) {
		return nil, fmt.Errorf("not a media pass (no %q header): %w", Magic, ErrMalformed)
	}
	if v := binary.BigEndian.Uint32(b[len(Magic):]); v != Version {
		return nil, fmt.Errorf("media pass version %d (this build reads %d): %w", v, Version, ErrUnsupportedVersion)
	}
	outer, err := tlv.Decode("media pass", b[len(Magic)+4:], outerSchema)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	f, err := tlv.Decode("media pass body", outer.Bytes(tagBody), bodySchema)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	p := &Pass{
		BoxKey:  ed25519.PublicKey(bytes.Clone(f.Bytes(bodyTagBoxKey))),
		Account: f.String(bodyTagAccount),
	}
	copy(p.ID[:], f.Bytes(bodyTagID))
	copy(p.Box[:], f.Bytes(bodyTagBox))
	copy(p.Title[:], f.Bytes(bodyTagTitle))
	copy(p.Issuer[:], f.Bytes(bodyTagIssuer))
	copy(p.Signature[:], outer.Bytes(tagSignature))
	for _, t := range []struct {
		tag  uint16
		name string
		dst  *time.Time
	}{
		{bodyTagNotBefore, "not before", &p.NotBefore},
		{bodyTagNotAfter, "not after", &p.NotAfter},
		{bodyTagIssuedAt, "issued at", &p.IssuedAt},
		{bodyTagExpires, "expires", &p.Expires},
	} {
		v := f.Uint64(t.tag)
		if v == 0 || v >= maxTime {
			return nil, fmt.Errorf("media pass %s: %s %d out of range: %w", p.ID, t.name, v, ErrMalformed)
		}
		*t.dst = time.Unix(int64(v), 0).UTC()
	}
	if err := p.checkTimes(); err != nil {
		return nil, err
	}
	return p, nil
}

// checkTimes is the structural rule on times, shared by Parse and Issue.
func (p *Pass) checkTimes() error {
	switch {
	case !p.NotAfter.After(p.NotBefore):
		return fmt.Errorf("media pass %s: play window ends at %s, not after it starts at %s: %w",
			p.ID, p.NotAfter.Format(time.RFC3339), p.NotBefore.Format(time.RFC3339), ErrMalformed)
	case !p.Expires.After(p.IssuedAt):
		return fmt.Errorf("media pass %s: expires at %s, not after it was issued at %s: %w",
			p.ID, p.Expires.Format(time.RFC3339), p.IssuedAt.Format(time.RFC3339), ErrMalformed)
	case p.Expires.Sub(p.IssuedAt) > MaxLifetime:
		return fmt.Errorf("media pass %s: lives %s, longer than %s: %w", p.ID, p.Expires.Sub(p.IssuedAt), MaxLifetime, ErrMalformed)
	}
	return nil
}

package pass

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/internal/tlv"
	"github.com/boxswarm/boxswarm/media"
)

var (
	issuerKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x50}, 32))
	issuerPub = issuerKey.Public().(ed25519.PublicKey)
	otherKey  = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x0f}, 32))
	otherPub  = otherKey.Public().(ed25519.PublicKey)
	boxPub    = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0xb0}, 32)).Public().(ed25519.PublicKey)
	t0        = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	trusted   = []ed25519.PublicKey{otherPub[:31], issuerPub}
)

func grant() Grant {
	return Grant{Box: api.BoxID{0xb0}, BoxKey: boxPub, Title: media.ID{0x71}, NotAfter: t0.Add(48 * time.Hour), Account: "alice"}
}

func issuer(t testing.TB, now time.Time, ttl time.Duration) *Issuer {
	t.Helper()
	i, err := NewIssuer(issuerKey, func() time.Time { return now }, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func issue(t testing.TB) ([]byte, *Pass) {
	t.Helper()
	b, p, err := issuer(t, t0.Add(300*time.Millisecond), 0).Issue(grant())
	if err != nil {
		t.Fatal(err)
	}
	return b, p
}

// resign signs p as it is, skipping Issue's checks, for passes that only
// the parser or the clock should refuse.
func resign(p *Pass, key ed25519.PrivateKey) []byte {
	copy(p.Signature[:], ed25519.Sign(key, p.Message()))
	return p.Encode()
}

// assemble builds a pass around raw body bytes.
func assemble(version uint32, body []byte, sig []byte) []byte {
	var e tlv.Encoder
	e.Bytes(tagBody, body)
	e.Bytes(tagSignature, sig)
	b := append([]byte(Magic), binary.BigEndian.AppendUint32(nil, version)...)
	return append(b, e.Encoded()...)
}

func TestIssueVerify(t *testing.T) {
	b, issued := issue(t)
	p, err := Verify(b, trusted, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	g := grant()
	switch {
	case p.Box != g.Box || !p.BoxKey.Equal(g.BoxKey) || p.Title != g.Title || p.Account != g.Account:
		t.Errorf("pass names %s/%x/%s/%q", p.Box, p.BoxKey, p.Title, p.Account)
	case !p.IssuedAt.Equal(t0) || !p.NotBefore.Equal(t0) || !p.NotAfter.Equal(g.NotAfter):
		t.Errorf("issued %s, window %s..%s", p.IssuedAt, p.NotBefore, p.NotAfter)
	case !p.Expires.Equal(t0.Add(DefaultTTL)):
		t.Errorf("expires %s, want %s", p.Expires, t0.Add(DefaultTTL))
	case p.Issuer != KeyIDOf(issuerPub) || p.ID == (ID{}) || p.ID != issued.ID:
		t.Errorf("issuer %s, ID %s (issued %s)", p.Issuer, p.ID, issued.ID)
	}
	if again := p.Encode(); !bytes.Equal(again, b) {
		t.Fatalf("re-encoding differs:\n %x\n %x", again, b)
	}
	// Passes for the same grant differ only in their ID and signature.
	b2, p2 := issue(t)
	if p2.ID == p.ID || bytes.Equal(b, b2) {
		t.Fatal("two passes share an ID")
	}
}

// TestRefusals checks every refusal and that it carries its own error.
func TestRefusals(t *testing.T) {
	good, p := issue(t)
	now := t0.Add(time.Minute)
	all := []error{ErrMalformed, ErrUnsupportedVersion, ErrUnknownIssuer, ErrBadSignature, ErrExpired, ErrNotYetValid}

	mod := func(f func(q *Pass)) *Pass { q := *p; f(&q); return &q }
	forged := func(f func(q *Pass)) []byte { q := mod(f); return q.Encode() } // old signature
	signed := func(f func(q *Pass)) []byte { return resign(mod(f), issuerKey) }

	outer, _ := tlv.Decode("pass", good[len(Magic)+4:], outerSchema)
	body, sig := outer.Bytes(tagBody), outer.Bytes(tagSignature)
	dup := append(bytes.Clone(body), body[:6+16]...) // the pass ID again
	withUnknown := append(bytes.Clone(body), 0, 11, 0, 0, 0, 0)
	truncatedBody := body[:len(body)-3]

	bodyOnly := ed25519.Sign(issuerKey, body) // no domain: must not verify
	flipSig := bytes.Clone(good)
	flipSig[len(flipSig)-1] ^= 1

	for _, tc := range []struct {
		name string
		b    []byte
		now  time.Time
		want error
	}{
		{"empty", nil, now, ErrMalformed},
		{"magic", append([]byte("BXSWPASZ"), good[8:]...), now, ErrMalformed},
		{"version 0", assemble(0, body, sig), now, ErrUnsupportedVersion},
		{"version 2", assemble(2, body, sig), now, ErrUnsupportedVersion},
		{"truncated", good[:len(good)-1], now, ErrMalformed},
		{"trailing byte", append(bytes.Clone(good), 0), now, ErrMalformed},
		{"oversize", append(bytes.Clone(good), make([]byte, MaxSize)...), now, ErrMalformed},
		{"duplicate field", assemble(Version, dup, sig), now, ErrMalformed},
		{"unknown field", assemble(Version, withUnknown, sig), now, ErrMalformed},
		{"truncated body", assemble(Version, truncatedBody, sig), now, ErrMalformed},
		{"short signature", assemble(Version, body, sig[:63]), now, ErrMalformed},
		{"NUL in account", signed(func(q *Pass) { q.Account = "a\x00b" }), now, ErrMalformed},
		{"account too long", signed(func(q *Pass) { q.Account = strings.Repeat("a", MaxAccount+1) }), now, ErrMalformed},
		{"zero time", signed(func(q *Pass) { q.NotBefore = time.Unix(0, 0) }), now, ErrMalformed},
		{"window backwards", signed(func(q *Pass) { q.NotAfter = q.NotBefore }), now, ErrMalformed},
		{"expires before issue", signed(func(q *Pass) { q.Expires = q.IssuedAt }), now, ErrMalformed},
		{"lives too long", signed(func(q *Pass) { q.Expires = q.IssuedAt.Add(MaxLifetime + time.Second) }), now, ErrMalformed},
		{"unknown issuer", resign(mod(func(q *Pass) { q.Issuer = KeyIDOf(otherPub) }), otherKey), now, ErrUnknownIssuer},
		{"signed by another key", resign(mod(func(*Pass) {}), otherKey), now, ErrBadSignature},
		{"signature flipped", flipSig, now, ErrBadSignature},
		{"no domain in signature", assemble(Version, body, bodyOnly), now, ErrBadSignature},
		{"title changed", forged(func(q *Pass) { q.Title[0] ^= 1 }), now, ErrBadSignature},
		{"box changed", forged(func(q *Pass) { q.Box[0] ^= 1 }), now, ErrBadSignature},
		{"box key changed", forged(func(q *Pass) { q.BoxKey = otherPub }), now, ErrBadSignature},
		{"ID changed", forged(func(q *Pass) { q.ID[0] ^= 1 }), now, ErrBadSignature},
		{"expiry extended", forged(func(q *Pass) { q.Expires = q.Expires.Add(time.Minute) }), now, ErrBadSignature},
		{"window extended", forged(func(q *Pass) { q.NotAfter = q.NotAfter.Add(time.Hour) }), now, ErrBadSignature},
		{"account changed", forged(func(q *Pass) { q.Account = "bob" }), now, ErrBadSignature},
		{"expired", good, p.Expires, ErrExpired},
		{"long expired", good, p.Expires.Add(24 * time.Hour), ErrExpired},
		{"issued in the future", good, t0.Add(-MaxClockSkew - time.Second), ErrNotYetValid},
		{"window not open", signed(func(q *Pass) { q.NotBefore = t0.Add(time.Hour) }), now, ErrNotYetValid},
		{"window closed", signed(func(q *Pass) { q.NotBefore, q.NotAfter = t0.Add(-time.Hour), t0 }), now, ErrExpired},
	} {
		got, err := Verify(tc.b, trusted, tc.now)
		if got != nil {
			t.Errorf("%s: verified", tc.name)
			continue
		}
		for _, e := range all {
			if errors.Is(err, e) != (e == tc.want) {
				t.Errorf("%s: Verify = %v, want %v", tc.name, err, tc.want)
				break
			}
		}
	}
	// Within the skew, a pass issued a little in the future is accepted.
	if _, err := Verify(good, trusted, t0.Add(-MaxClockSkew)); err != nil {
		t.Errorf("pass issued within the clock skew: %v", err)
	}
}

// TestEveryByte flips each byte of a pass: none of the results verifies.
func TestEveryByte(t *testing.T) {
	good, _ := issue(t)
	for i := range good {
		b := bytes.Clone(good)
		b[i] ^= 0x20
		if _, err := Verify(b, trusted, t0.Add(time.Minute)); err == nil {
			t.Fatalf("byte %d changed and the pass still verified", i)
		}
	}
}

func TestIssuerRefuses(t *testing.T) {
	if _, err := NewIssuer(issuerKey[:32], nil, 0); err == nil {
		t.Error("issuer with a seed for a key")
	}
	for _, ttl := range []time.Duration{time.Millisecond, MaxLifetime + time.Second, -time.Minute} {
		if _, err := NewIssuer(issuerKey, nil, ttl); err == nil {
			t.Errorf("issuer with TTL %s", ttl)
		}
	}
	i := issuer(t, t0, time.Minute)
	for name, f := range map[string]func(*Grant){
		"no window end":     func(g *Grant) { g.NotAfter = time.Time{} },
		"window over":       func(g *Grant) { g.NotAfter = t0 },
		"window backwards":  func(g *Grant) { g.NotBefore = t0.Add(72 * time.Hour) },
		"short box key":     func(g *Grant) { g.BoxKey = g.BoxKey[:31] },
		"long account name": func(g *Grant) { g.Account = strings.Repeat("x", MaxAccount+1) },
		"window too late":   func(g *Grant) { g.NotAfter = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
	} {
		g := grant()
		f(&g)
		if _, _, err := i.Issue(g); err == nil {
			t.Errorf("%s: issued", name)
		}
	}
	// The TTL is honoured.
	_, p, err := i.Issue(grant())
	if err != nil || !p.Expires.Equal(t0.Add(time.Minute)) {
		t.Fatalf("pass expires %v, %v; want %s", p, err, t0.Add(time.Minute))
	}
}

func BenchmarkIssueVerify(b *testing.B) {
	i := issuer(b, t0, 0)
	now := t0.Add(time.Second)
	for b.Loop() {
		raw, _, err := i.Issue(grant())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Verify(raw, trusted, now); err != nil {
			b.Fatal(err)
		}
	}
}

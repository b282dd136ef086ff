package pass

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
)

// Grant is what customer management decided: this box may play this title
// in this window, for this account.
type Grant struct {
	Box    api.BoxID
	BoxKey ed25519.PublicKey
	Title  media.ID
	// NotBefore is the start of the play window; the issue time if zero.
	NotBefore time.Time
	// NotAfter is the end of the play window; required.
	NotAfter time.Time
	Account  string
}

// Issuer signs passes with the pass service's key.
type Issuer struct {
	key   ed25519.PrivateKey
	keyID KeyID
	now   func() time.Time
	ttl   time.Duration
}

// NewIssuer returns an issuer signing with key, reading the time from now
// (time.Now if nil), giving each pass ttl to be used (DefaultTTL if zero).
func NewIssuer(key ed25519.PrivateKey, now func() time.Time, ttl time.Duration) (*Issuer, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("pass issuer: signing key of %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	if ttl == 0 {
		ttl = DefaultTTL
	}
	// Whole seconds, as the pass records them; a TTL under one second
	// would round to a pass that expires as it is issued.
	if ttl < time.Second || ttl > MaxLifetime {
		return nil, fmt.Errorf("pass issuer: TTL %s outside 1s..%s", ttl, MaxLifetime)
	}
	if now == nil {
		now = time.Now
	}
	return &Issuer{key: key, keyID: KeyIDOf(key.Public().(ed25519.PublicKey)), now: now, ttl: ttl}, nil
}

// KeyID returns the ID of the issuer's key, as passes name it.
func (i *Issuer) KeyID() KeyID { return i.keyID }

// Issue returns a signed pass for g and the pass it encodes.
func (i *Issuer) Issue(g Grant) ([]byte, *Pass, error) {
	if len(g.BoxKey) != ed25519.PublicKeySize {
		return nil, nil, fmt.Errorf("pass for box %s: box key of %d bytes, want %d", g.Box, len(g.BoxKey), ed25519.PublicKeySize)
	}
	if len(g.Account) > MaxAccount {
		return nil, nil, fmt.Errorf("pass for box %s: account name of %d bytes exceeds %d", g.Box, len(g.Account), MaxAccount)
	}
	if g.NotAfter.IsZero() {
		return nil, nil, errors.New("pass for box " + g.Box.String() + ": no end of the play window")
	}
	now := i.now().Truncate(time.Second)
	p := &Pass{
		Box:       g.Box,
		BoxKey:    g.BoxKey,
		Title:     g.Title,
		NotBefore: g.NotBefore.Truncate(time.Second).UTC(),
		NotAfter:  g.NotAfter.Truncate(time.Second).UTC(),
		IssuedAt:  now.UTC(),
		Expires:   now.Add(i.ttl).UTC(),
		Account:   g.Account,
		Issuer:    i.keyID,
	}
	if g.NotBefore.IsZero() {
		p.NotBefore = p.IssuedAt
	}
	if !p.NotAfter.After(now) {
		return nil, nil, fmt.Errorf("pass for box %s, title %s: play window ended at %s", g.Box, g.Title, p.NotAfter.Format(time.RFC3339))
	}
	if u := p.NotBefore.Unix(); u <= 0 || p.NotAfter.Unix() >= maxTime {
		return nil, nil, fmt.Errorf("pass for box %s, title %s: play window %s..%s out of range", g.Box, g.Title, p.NotBefore, p.NotAfter)
	}
	if err := p.checkTimes(); err != nil {
		return nil, nil, err
	}
	if _, err := rand.Read(p.ID[:]); err != nil {
		return nil, nil, err
	}
	copy(p.Signature[:], ed25519.Sign(i.key, p.Message()))
	b := p.Encode()
	if len(b) > MaxSize {
		return nil, nil, fmt.Errorf("pass for box %s: %d bytes exceeds %d", g.Box, len(b), MaxSize)
	}
	return b, p, nil
}

package pass

import (
	"crypto/ed25519"
	"fmt"
	"time"
)

// Verify parses a pass and checks it against the trusted issuer keys and
// the time now: the signature, then the pass's own life, then the play
// window. Nothing but the structure and the issuer key ID is acted on
// before the signature checks out.
func Verify(b []byte, trusted []ed25519.PublicKey, now time.Time) (*Pass, error) {
	p, err := Parse(b)
	if err != nil {
		return nil, err
	}
	if err := p.VerifySignature(trusted); err != nil {
		return nil, err
	}
	if err := p.ValidAt(now); err != nil {
		return nil, err
	}
	return p, nil
}

// VerifySignature checks the signature with the trusted key the pass names.
func (p *Pass) VerifySignature(trusted []ed25519.PublicKey) error {
	for _, k := range trusted {
		if KeyIDOf(k) != p.Issuer {
			continue
		}
		if !ed25519.Verify(k, p.Message(), p.Signature[:]) {
			return fmt.Errorf("media pass signed by key %s: %w", p.Issuer, ErrBadSignature)
		}
		return nil
	}
	return fmt.Errorf("media pass signed by key %s: %w", p.Issuer, ErrUnknownIssuer)
}

// ValidAt checks the pass's times against now: issued, not expired, and
// inside the play window. The starts (issue time and window start) allow
// MaxClockSkew, because the issuer's clock may be a little ahead of the
// verifier's; the ends allow nothing.
func (p *Pass) ValidAt(now time.Time) error {
	switch {
	case now.Add(MaxClockSkew).Before(p.IssuedAt):
		return fmt.Errorf("media pass %s issued at %s, in the future: %w", p.ID, p.IssuedAt.Format(time.RFC3339), ErrNotYetValid)
	case !now.Before(p.Expires):
		return fmt.Errorf("media pass %s expired at %s: %w", p.ID, p.Expires.Format(time.RFC3339), ErrExpired)
	case now.Add(MaxClockSkew).Before(p.NotBefore):
		return fmt.Errorf("media pass %s: play window opens at %s: %w", p.ID, p.NotBefore.Format(time.RFC3339), ErrNotYetValid)
	case !now.Before(p.NotAfter):
		return fmt.Errorf("media pass %s: play window closed at %s: %w", p.ID, p.NotAfter.Format(time.RFC3339), ErrExpired)
	}
	return nil
}

package api

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/boxswarm/boxswarm/media"
)

// Grant is what a transfer token allows: one sender to give one receiver
// these pieces of one title, until it expires. The scheduler signs it; the
// sender checks it before sending anything, so a peer without a valid token
// gets nothing and learns nothing.
type Grant struct {
	Transfer TransferID
	Sender   BoxID
	Receiver BoxID
	Title    media.ID
	Portions []PieceRange
	Expires  time.Time
}

// ErrToken is wrapped by every token verification failure.
var ErrToken = errors.New("invalid transfer token")

const tokenDomain = "boxswarm transfer token v1\x00"

func (g Grant) message() []byte {
	b := make([]byte, 0, 128+16*len(g.Portions))
	b = append(b, tokenDomain...)
	b = binary.BigEndian.AppendUint64(b, uint64(g.Transfer))
	b = append(b, g.Sender[:]...)
	b = append(b, g.Receiver[:]...)
	b = append(b, g.Title[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(g.Expires.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(len(g.Portions)))
	for _, p := range g.Portions {
		b = binary.BigEndian.AppendUint32(b, uint32(p.First))
		b = binary.BigEndian.AppendUint32(b, uint32(p.Last))
	}
	return b
}

// Sign returns the token for g: an Ed25519 signature over its fields.
func (g Grant) Sign(key ed25519.PrivateKey) []byte {
	return ed25519.Sign(key, g.message())
}

// Verify checks a token against the grant it claims and the time now.
func (g Grant) Verify(pub ed25519.PublicKey, token []byte, now time.Time) error {
	if !ed25519.Verify(pub, g.message(), token) {
		return fmt.Errorf("transfer %d: signature does not match: %w", g.Transfer, ErrToken)
	}
	if !now.Before(g.Expires) {
		return fmt.Errorf("transfer %d: expired at %s: %w", g.Transfer, g.Expires.UTC().Format(time.RFC3339), ErrToken)
	}
	return nil
}

// Covers reports whether the grant includes piece i.
func (g Grant) Covers(i int) bool {
	for _, p := range g.Portions {
		if i >= p.First && i <= p.Last {
			return true
		}
	}
	return false
}

// Fingerprint is a short hash of a grant, for logs.
func (g Grant) Fingerprint() string {
	s := sha256.Sum256(g.message())
	return fmt.Sprintf("%x", s[:6])
}

package daemon

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/boxswarm/boxswarm/board/identity"
	"github.com/boxswarm/boxswarm/firmware/keyfile"
	"github.com/boxswarm/boxswarm/media/keys"
)

// Identity is the box's identity key as the player uses it: only to open
// the content keys the key vault wraps to it (keywrap.Unwrap). The
// private key must stay valid until Close, which zeroes it.
// *identity.Identity is one.
type Identity interface {
	PrivateKey() ed25519.PrivateKey
	Close() error
}

// IdentitySource loads the identity key. The daemon calls it for each
// content key it unwraps and closes the key right after, so the private
// key is in the player's memory only while a content key is opened.
type IdentitySource func(ctx context.Context) (Identity, error)

// SealedIdentity loads the box's identity with board/identity (sealed by
// the TPM, or by the board's secret). openTPM, if not nil, opens the TPM
// for each load (o.TPM is then set to it and it is closed right after),
// so the daemon does not hold the device between content keys; a board
// with a TPM must pass it (see board/identity). It never creates an
// identity: the key the head-end certified is made at activation by the
// transfer daemon, and one made here would be a key nobody wraps to. An
// identity that is gone for good wraps identity.ErrNeedsReactivation.
func SealedIdentity(o identity.Options, openTPM func() (transport.TPMCloser, error)) IdentitySource {
	return func(ctx context.Context) (Identity, error) {
		// LoadOrCreate makes a key when the file is missing.
		if _, err := os.Stat(o.Path); err != nil {
			return nil, fmt.Errorf("box identity: %w", err)
		}
		if openTPM != nil {
			t, err := openTPM()
			if err != nil {
				return nil, fmt.Errorf("box identity: %w", err)
			}
			defer t.Close()
			o.TPM = t
		}
		id, err := identity.LoadOrCreate(ctx, o)
		if err != nil {
			return nil, fmt.Errorf("box identity: %w", err)
		}
		return id, nil
	}
}

// PEMIdentity loads the identity key from a PKCS #8 PEM file, the form
// the transfer daemon keeps today (its -key). The key is copied into
// locked memory (keys.Secret) and the copy the file reader made is
// zeroed.
func PEMIdentity(path string) IdentitySource {
	return func(context.Context) (Identity, error) {
		k, err := keyfile.ReadPrivateKey(path)
		if err != nil {
			return nil, fmt.Errorf("box identity: %w", err)
		}
		defer clear(k)
		s, err := keys.NewSecret(ed25519.PrivateKeySize)
		if err != nil {
			return nil, fmt.Errorf("box identity: %w", err)
		}
		copy(s.Bytes(), k)
		return secretKey{s}, nil
	}
}

// secretKey is an Ed25519 private key in a keys.Secret.
type secretKey struct{ s *keys.Secret }

func (k secretKey) PrivateKey() ed25519.PrivateKey { return k.s.Bytes() }
func (k secretKey) Close() error                   { k.s.Destroy(); return nil }

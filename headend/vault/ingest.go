package vault

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/keys"
	"github.com/boxswarm/boxswarm/media/keywrap"
)

// The ingest identity is how a content key reaches the vault from the
// import tool without ever being in the clear outside the two of them:
// the tool wraps the key (package keywrap, the same envelope the vault
// sends boxes) to the vault's ingest key, and PutWrapped unwraps it.
//
// The ingest key is an Ed25519 key pair made when a vault file is first
// opened by a build that knows it, its seed sealed under the data key like
// the content keys (meta "ingest key"), and unsealed into locked memory
// while the vault is open. It is never replaced: wrapped keys in flight
// stay good across restarts.
//
// Envelope convention: the header's box is IngestBox(the ingest public
// key), its title is the title the key is for, and its expiry is at most
// MaxIngestLifetime after the vault's clock (plus IngestClockSkew), so a
// wrapped key captured on its way is good only briefly, and only for that
// title, and only to this vault.

// MaxIngestLifetime bounds how far ahead a wrapped key sent to PutWrapped
// may expire.
const MaxIngestLifetime = 15 * time.Minute

// IngestClockSkew is how far the import tool's clock may run ahead of the
// vault's.
const IngestClockSkew = time.Minute

// ErrIngestLifetime is returned for a wrapped key that expires too far
// ahead (see MaxIngestLifetime).
var ErrIngestLifetime = errors.New("wrapped key lives too long")

var metaIngestKey = []byte("ingest key")

const (
	ingestKeyAAD    = "boxswarm vault ingest key v1"
	ingestBoxDomain = "boxswarm vault ingest box v1\x00"
	sealedSeedSize  = nonceSize + ed25519.SeedSize + 16
)

// IngestBox is the box ID a wrapped key sent to the vault names: the first
// 16 bytes of SHA-256("boxswarm vault ingest box v1" || 0x00 || the ingest
// public key). A derived ID, rather than a box's, keeps an ingest envelope
// from ever being taken for one addressed to a box.
func IngestBox(pub ed25519.PublicKey) api.BoxID {
	h := sha256.New()
	h.Write([]byte(ingestBoxDomain))
	h.Write(pub)
	var b api.BoxID
	copy(b[:], h.Sum(nil))
	return b
}

// initIngest unseals the ingest key, or makes and stores one for a file
// that has none. It runs once the data key is unsealed.
func (v *Vault) initIngest() error {
	seed, err := keys.NewSecret(ed25519.SeedSize)
	if err != nil {
		return err
	}
	defer seed.Destroy()
	err = v.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if sealed := meta.Get(metaIngestKey); sealed != nil {
			if len(sealed) != sealedSeedSize {
				return fmt.Errorf("ingest key has %d bytes, want %d: the vault file is damaged", len(sealed), sealedSeedSize)
			}
			if _, err := v.sealer.Open(seed.Bytes()[:0], sealed[:nonceSize], sealed[nonceSize:], []byte(ingestKeyAAD)); err != nil {
				return errors.New("ingest key does not open under the data key: the vault file is damaged")
			}
			return nil
		}
		rand.Read(seed.Bytes())
		sealed := make([]byte, nonceSize, sealedSeedSize)
		rand.Read(sealed)
		sealed = v.sealer.Seal(sealed, sealed, seed.Bytes(), []byte(ingestKeyAAD))
		return meta.Put(metaIngestKey, sealed)
	})
	if err != nil {
		return err
	}
	// The private key as keywrap takes it (seed || public key), in locked
	// memory. NewKeyFromSeed's own copy is cleared at once.
	priv, err := keys.NewSecret(ed25519.PrivateKeySize)
	if err != nil {
		return err
	}
	tmp := ed25519.NewKeyFromSeed(seed.Bytes())
	copy(priv.Bytes(), tmp)
	v.ingestPub = append(ed25519.PublicKey(nil), tmp[ed25519.SeedSize:]...)
	clear(tmp)
	v.ingest = priv
	return nil
}

// IngestKey returns the public key content keys are wrapped to for
// PutWrapped.
func (v *Vault) IngestKey() ed25519.PublicKey {
	return append(ed25519.PublicKey(nil), v.ingestPub...)
}

// PutWrapped registers a title's content key that arrives wrapped to the
// ingest key (see IngestBox for the envelope). Like Put, the same key
// again is not an error and a different one is ErrKeyExists. A wrapped
// key is refused, before anything is stored, when it:
//
//	is not one (keywrap.ErrMalformed, keywrap.ErrUnsupportedVersion)
//	names another box than IngestBox (keywrap.ErrWrongBox)
//	names another title than id (keywrap.ErrWrongTitle)
//	has expired (keywrap.ErrExpired)
//	expires more than MaxIngestLifetime ahead (ErrIngestLifetime)
//	was changed, or wrapped to another key (keywrap.ErrAuth)
func (v *Vault) PutWrapped(ctx context.Context, id media.ID, wrapped []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := v.putWrapped(ctx, id, wrapped)
	if err != nil && !errors.Is(err, ErrKeyExists) { // Put logged that one
		v.log.Warn("wrapped content key refused", "title", id, "err", err)
	}
	return err
}

func (v *Vault) putWrapped(ctx context.Context, id media.ID, wrapped []byte) error {
	now := v.now()
	h, err := keywrap.Parse(wrapped)
	if err != nil {
		return fmt.Errorf("content key for %s: %w", id, err)
	}
	if limit := now.Add(MaxIngestLifetime + IngestClockSkew); h.Expires.After(limit) {
		return fmt.Errorf("content key for %s: expires %s, more than %s ahead: %w", id, h.Expires.Format(time.RFC3339), MaxIngestLifetime, ErrIngestLifetime)
	}
	v.ingestMu.RLock()
	defer v.ingestMu.RUnlock()
	if v.ingest == nil {
		return errors.New("key vault: closed")
	}
	key, _, err := keywrap.Unwrap(ed25519.PrivateKey(v.ingest.Bytes()), IngestBox(v.ingestPub), id, wrapped, now)
	if err != nil {
		return fmt.Errorf("content key for %s: %w", id, err)
	}
	defer key.Destroy()
	return v.Put(ctx, id, key.Bytes())
}

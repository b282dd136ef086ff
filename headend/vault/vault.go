// Package vault is the key vault: it keeps every title's content key,
// encrypted, and releases one only against a valid media pass, wrapped to
// the box that presents it, writing down every release and every refusal.
//
// The vault knows nothing of accounts, prices or rental rules: customer
// management applies them before it issues a pass (package pass). The
// vault checks the pass and nothing else.
//
// Storage is one bbolt file. Content keys are sealed with AES-256-GCM under
// the vault's data key, each with its own random nonce and the title ID as
// associated data, so a sealed key moved to another title does not open.
// The data key is itself kept sealed by a KeyEncrypter (the KMS interface;
// MasterKeyFile is the embedded one) and is unsealed once, when the vault
// opens.
//
// Guarantees:
//   - Release hands out a key only for a pass that parses, is signed by a
//     trusted pass key, is inside its own life and its play window, names
//     the box that presents it by both ID and identity key, has not been
//     used before, and is for a title the vault holds. Each refusal has
//     its own error (see Release).
//   - A pass is good for one release: it is checked as unused and its ID
//     written in the same transaction as the release's log entry, which
//     is committed to disk before the wrapped key is returned, and kept
//     until the pass expires (and then pruned), across restarts.
//     Concurrent releases share commits (group commit, commit.go), each
//     with the outcome it would have had alone.
//   - A released key is wrapped to the box's identity key (package
//     keywrap) and expires at the end of the play window or after
//     MaxKeyLifetime, whichever is first.
//   - Every release and refusal is logged with slog and appended to the
//     durable release log (box, title, pass ID, time, outcome). Key
//     material is never logged and never leaves the vault unwrapped.
//   - Put never replaces a title's key with a different one.
//   - Keys arrive from the import tool wrapped to the vault's own ingest
//     key (PutWrapped, IngestKey), bound to the title and short-lived, so
//     they are never in the clear on the wire or on the operator's disk.
//   - A vault opened with the wrong master key fails with
//     ErrWrongMasterKey before it serves anything.
//
// What it cannot do: the unsealed data key's AES key schedule lives in the
// Go heap for as long as the vault is open (crypto/aes offers no way to
// zero it). Content keys are unsealed into locked memory and zeroed after
// wrapping; the wrapping's own temporaries are erased only in builds with
// GOEXPERIMENT=runtimesecret (keywrap.ErasesTemporaries). Reaching any of
// these takes code execution on the head-end.
package vault

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/keys"
)

// Format is the layout version of the vault file.
const Format = 1

// DefaultMaxKeyLifetime bounds a released key's life when the play window
// is longer.
const DefaultMaxKeyLifetime = 24 * time.Hour

// Errors the vault reports besides the pass package's.
var (
	ErrNoPass         = errors.New("no media pass")
	ErrWrongBox       = errors.New("media pass is for another box")
	ErrReplayed       = errors.New("media pass already used")
	ErrUnknownTitle   = errors.New("no content key for the title")
	ErrKeyExists      = errors.New("a different content key is registered for the title")
	ErrWrongMasterKey = errors.New("wrong master key for the vault")
)

// Buckets and meta keys.
var (
	bucketMeta     = []byte("meta")
	bucketKeys     = []byte("keys")      // title ID → nonce || sealed content key
	bucketNonces   = []byte("nonces")    // pass ID → expiry (Unix seconds)
	bucketExpiries = []byte("nonce-exp") // expiry || pass ID → nothing, in expiry order
	bucketLog      = []byte("log")       // sequence → log entry

	metaFormat  = []byte("format")
	metaDataKey = []byte("data key")
)

const (
	dataKeyAAD = "boxswarm vault data key v1"
	keyAADTag  = "boxswarm vault content key v1\x00"
	nonceSize  = 12
	// sealedKeySize is a stored content key: nonce, ciphertext, tag.
	sealedKeySize = nonceSize + media.ContentKeySize + 16
)

// Config says where the vault lives and whom it trusts.
type Config struct {
	// Path is the bbolt file, created (mode 0600) if missing.
	Path string
	// MasterKey seals the vault's data key.
	MasterKey KeyEncrypter
	// PassKeys are the pass service's public keys the vault trusts.
	PassKeys []ed25519.PublicKey
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// MaxKeyLifetime bounds a released key's life; DefaultMaxKeyLifetime
	// if zero.
	MaxKeyLifetime time.Duration
	// Logger receives a line per release and refusal; slog.Default() if
	// nil.
	Logger *slog.Logger
}

// Vault is an open key vault. It is safe for concurrent use.
type Vault struct {
	db         *bolt.DB
	commit     committer   // releases and the release log, on db
	sealer     cipher.AEAD // under the data key
	passKeys   []ed25519.PublicKey
	now        func() time.Time
	maxKeyLife time.Duration
	log        *slog.Logger
	pruneBatch int

	// The ingest identity (ingest.go). ingestMu keeps Close from
	// unmapping the private key while PutWrapped uses it.
	ingestMu  sync.RWMutex
	ingest    *keys.Secret // seed || public key
	ingestPub ed25519.PublicKey
}

// Open opens (or creates) the vault file and unseals its data key with the
// master key.
func Open(ctx context.Context, cfg Config) (*Vault, error) {
	if cfg.Path == "" || cfg.MasterKey == nil {
		return nil, errors.New("key vault: Path and MasterKey are required")
	}
	if len(cfg.PassKeys) == 0 {
		return nil, errors.New("key vault: no trusted pass keys")
	}
	for i, k := range cfg.PassKeys {
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("key vault: pass key %d has %d bytes, want %d", i, len(k), ed25519.PublicKeySize)
		}
	}
	v := &Vault{
		passKeys:   append([]ed25519.PublicKey(nil), cfg.PassKeys...),
		now:        cfg.Now,
		maxKeyLife: cfg.MaxKeyLifetime,
		log:        cfg.Logger,
		pruneBatch: 32,
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.maxKeyLife == 0 {
		v.maxKeyLife = DefaultMaxKeyLifetime
	}
	if v.maxKeyLife < time.Second {
		return nil, fmt.Errorf("key vault: maximum key lifetime %s is under a second", v.maxKeyLife)
	}
	if v.log == nil {
		v.log = slog.Default()
	}
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("key vault %s: %w", cfg.Path, err)
	}
	v.db = db
	v.commit.db = db
	if err := v.init(ctx, cfg.MasterKey); err != nil {
		db.Close()
		return nil, fmt.Errorf("key vault %s: %w", cfg.Path, err)
	}
	n, err := v.prune(v.now(), -1)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("key vault %s: prune used passes: %w", cfg.Path, err)
	}
	v.log.Info("key vault open", "path", cfg.Path, "pruned_passes", n)
	return v, nil
}

// init makes the buckets, checks the format and unseals (or makes) the
// data key.
func (v *Vault) init(ctx context.Context, kek KeyEncrypter) error {
	var sealedDK []byte
	var hasKeys bool
	err := v.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketKeys, bucketNonces, bucketExpiries, bucketLog} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch f := meta.Get(metaFormat); {
		case f == nil:
			if err := meta.Put(metaFormat, binary.BigEndian.AppendUint32(nil, Format)); err != nil {
				return err
			}
		case len(f) != 4 || binary.BigEndian.Uint32(f) != Format:
			return fmt.Errorf("vault format %x (this build reads %d)", f, Format)
		}
		sealedDK = clone(meta.Get(metaDataKey))
		hasKeys = tx.Bucket(bucketKeys).Stats().KeyN > 0
		return nil
	})
	if err != nil {
		return err
	}
	dk, err := keys.NewSecret(32)
	if err != nil {
		return err
	}
	defer dk.Destroy()
	if sealedDK == nil {
		if hasKeys {
			return errors.New("the vault holds content keys but no data key: the file is damaged")
		}
		rand.Read(dk.Bytes())
		if sealedDK, err = kek.Encrypt(ctx, dk.Bytes(), []byte(dataKeyAAD)); err != nil {
			return fmt.Errorf("seal the data key: %w", err)
		}
		err = v.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(metaDataKey, sealedDK)
		})
		if err != nil {
			return err
		}
	} else {
		plain, err := kek.Decrypt(ctx, sealedDK, []byte(dataKeyAAD))
		if err != nil {
			return fmt.Errorf("unseal the data key: %w", err)
		}
		n := copy(dk.Bytes(), plain)
		clear(plain)
		if n != 32 || len(plain) != 32 {
			return fmt.Errorf("unsealed data key has %d bytes, want 32", len(plain))
		}
	}
	b, err := aes.NewCipher(dk.Bytes())
	if err != nil {
		return err
	}
	if v.sealer, err = cipher.NewGCM(b); err != nil {
		return err
	}
	return v.initIngest()
}

// Close closes the vault file and destroys the unsealed ingest key.
func (v *Vault) Close() error {
	v.ingestMu.Lock()
	if v.ingest != nil {
		v.ingest.Destroy()
		v.ingest = nil
	}
	v.ingestMu.Unlock()
	return v.db.Close()
}

func keyAAD(id media.ID) []byte {
	return append([]byte(keyAADTag), id[:]...)
}

// Put registers a title's content key. Registering the same key again is
// not an error; a different key for a title that has one is ErrKeyExists.
func (v *Vault) Put(ctx context.Context, id media.ID, key []byte) error {
	if len(key) != media.ContentKeySize {
		return fmt.Errorf("content key for %s has %d bytes, want %d", id, len(key), media.ContentKeySize)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	sealed := make([]byte, nonceSize, sealedKeySize)
	rand.Read(sealed)
	sealed = v.sealer.Seal(sealed, sealed, key, keyAAD(id))
	var again bool
	err := v.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKeys)
		old := b.Get(id[:])
		if old == nil {
			return b.Put(id[:], sealed)
		}
		s, err := v.open(id, old)
		if err != nil {
			return err
		}
		defer s.Destroy()
		if subtle.ConstantTimeCompare(s.Bytes(), key) != 1 {
			return fmt.Errorf("title %s: %w", id, ErrKeyExists)
		}
		again = true
		return nil
	})
	if err != nil {
		v.log.Warn("content key refused", "title", id, "err", err)
		return err
	}
	v.log.Info("content key registered", "title", id, "again", again)
	return nil
}

// Has reports whether the vault holds a key for the title.
func (v *Vault) Has(ctx context.Context, id media.ID) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	var ok bool
	err := v.db.View(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bucketKeys).Get(id[:]) != nil
		return nil
	})
	return ok, err
}

// open unseals a stored content key into a Secret.
func (v *Vault) open(id media.ID, sealed []byte) (*keys.Secret, error) {
	if len(sealed) != sealedKeySize {
		return nil, fmt.Errorf("stored key for %s has %d bytes, want %d", id, len(sealed), sealedKeySize)
	}
	s, err := keys.NewSecret(media.ContentKeySize)
	if err != nil {
		return nil, err
	}
	// Open into the Secret's own memory: the plaintext never lands on the
	// heap.
	out, err := v.sealer.Open(s.Bytes()[:0], sealed[:nonceSize], sealed[nonceSize:], keyAAD(id))
	if err != nil || len(out) != media.ContentKeySize {
		s.Destroy()
		return nil, fmt.Errorf("stored key for %s does not open under the data key: the vault file is damaged", id)
	}
	return s, nil
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

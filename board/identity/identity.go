// Package identity keeps the box's identity key: an Ed25519 key pair made
// on the box at first boot, whose public half the head-end certifies at
// activation. The scheduler client proves the box with it in mutual TLS,
// and media/keywrap opens the content keys the key vault wraps to it (by
// mapping the Ed25519 key to X25519), so the key must be Ed25519 and its
// seed must be usable in the box's memory.
//
// TPM 2.0 has no Ed25519, so the key cannot live inside the TPM. Instead
// the 32-byte seed is sealed, and only the sealed form is on disk, in one
// file on the data partition (the layout is in blob.go):
//
//   - With a TPM: a TPM2 sealed data object under the TPM's storage
//     primary key in the owner hierarchy (ECC P-256, the TCG reference SRK
//     template, re-derived at each use), fixed to this TPM and that parent.
//     The file holds its TPM2B_PUBLIC and TPM2B_PRIVATE; only this TPM can
//     load it. Optionally the object is bound to PCR values with
//     TPM2_PolicyPCR, so that it unseals only while the measured software
//     runs (see "Which PCR" below). The seed never touches the disk in the
//     clear, and crosses the bus to and from the TPM encrypted by a session
//     salted to the storage key.
//   - Without a TPM, with a board secret ([board.DeviceSecreter]): the seed
//     is encrypted with AES-256-GCM under a key derived from the board's
//     per-unit secret. There is no hardware root here: this only stops a
//     copy of the data partition from working on another box. Anything that
//     runs on this box can read the board secret and open the file.
//   - With neither: the seed is stored in the clear in a 0600 file, and
//     every load logs, at error level, that the box's identity is
//     unprotected. Anyone who copies the data partition can then
//     impersonate the box and open every content key wrapped to it.
//
// Unsealed, the seed and the public key (the 64-byte ed25519.PrivateKey
// layout) live in one media/keys.Secret: locked in memory, out of core
// dumps, and zeroed by Close.
//
// A file must carry the strongest protection the box has: a box with a TPM
// accepts only a TPM-sealed file, and a box with a board secret refuses a
// clear one ([ErrWeakerProtection]). Otherwise someone with the disk could
// plant a key they know, have the box re-activated, and unwrap its content
// keys at leisure. For the same reason the caller must pass the TPM
// whenever the board has one: on such a board, failing to open the TPM
// must be an error, not a reason to pass nil.
//
// # Which PCR
//
// Stage one (boot/stage1) extends only rollback.ManifestPCR (8), with the
// SHA-256 of the verified manifest. That value changes with every image
// version, so an identity bound to PCR 8 would stop unsealing after every
// signed update. Re-sealing ahead of an update to the new image's predicted
// PCR 8 would work in principle but is fragile (a fallback to the other
// slot, or a power cut between sealing and switching, leaves the box with
// no identity it can open), and TPM2_PolicyAuthorize, the TPM's own answer
// ("any PCR value the vendor signed"), cannot verify our Ed25519 signing
// keys. No PCR stage one extends today is stable across signed updates, so
// the box binds to none for now: pass no PCRs, and the identity is bound to
// the TPM (its storage key) only.
//
// TODO(boot/stage1): extend a second PCR with a value that is stable across
// signed updates (e.g. PCR 9 with SHA-256 of a domain string, the ROM root
// key, the board ID and whether verification is compiled in), right after
// a slot verified and before Lock; then pass that PCR here. Existing files
// are re-sealed to the new binding the first time they are loaded with it.
//
// Nothing here is safe for concurrent use of one TPM unless its transport
// is; two processes going through the kernel's resource manager are fine.
package identity

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/boxswarm/boxswarm/board"
	"github.com/boxswarm/boxswarm/media/keys"
)

// Errors that callers tell apart. Every error from this package that is
// one of these cases wraps the sentinel.
var (
	// ErrNeedsReactivation is wrapped by every error that means this box's
	// identity is gone for good: the only way on is a new key ([Reset]) and
	// a new activation. Errors that do not wrap it (a missing TPM, a newer
	// file version, an I/O error) must not lead to Reset: fixing the cause
	// brings the old identity back.
	ErrNeedsReactivation = errors.New("the box needs re-activation")
	// ErrCorrupt: the file is truncated, damaged or edited.
	ErrCorrupt = fmt.Errorf("identity file is damaged: %w", ErrNeedsReactivation)
	// ErrOtherTPM: the file was sealed by another TPM, or this TPM's
	// owner hierarchy was cleared since.
	ErrOtherTPM = fmt.Errorf("identity sealed by another TPM, or this TPM was cleared: %w", ErrNeedsReactivation)
	// ErrSoftwareChanged: the PCRs the seed is bound to hold other values
	// than when it was sealed.
	ErrSoftwareChanged = fmt.Errorf("identity sealed to other software: %w", ErrNeedsReactivation)
	// ErrOtherDevice: the file does not open with this board's secret.
	ErrOtherDevice = fmt.Errorf("identity sealed on another box, or damaged: %w", ErrNeedsReactivation)
	// ErrWeakerProtection: the file is less protected than this box can
	// protect it, so it was planted or written while the TPM or board
	// secret was unavailable. It is refused; see the package comment.
	ErrWeakerProtection = fmt.Errorf("identity file is less protected than this box allows: %w", ErrNeedsReactivation)

	// ErrVersion: the file has a version this build does not read (a newer
	// image wrote it). Keep the file.
	ErrVersion = errors.New("identity file version not supported")
	// ErrNoTPM: the file is TPM-sealed and no TPM was given.
	ErrNoTPM = errors.New("identity is sealed by a TPM, but no TPM was given")
	// ErrDeviceSecretMissing: the file is sealed with the board's secret
	// and the board gave none.
	ErrDeviceSecretMissing = errors.New("identity is sealed with the board's device secret, but the board gave none")
	// ErrPCRNotMeasured: a PCR to seal to still holds its reset value, so
	// nothing measured the software into it and binding to it would mean
	// nothing.
	ErrPCRNotMeasured = errors.New("PCR was never extended since the TPM was reset")
	// ErrClosed: the identity was closed.
	ErrClosed = errors.New("identity closed")
)

// Options say where the identity is and what protects it.
type Options struct {
	// Path is the identity file on the data partition. Its folder is
	// created (0700) if missing.
	Path string
	// TPM seals the seed. Nil means the board has no TPM. The caller keeps
	// ownership: Close does not close it, and the identity does not use it
	// after LoadOrCreate returns.
	TPM transport.TPM
	// PCRs of the SHA-256 bank to bind the sealed seed to (TPM only). Empty
	// binds to the TPM only; see the package comment for why that is the
	// box's setting today.
	PCRs []uint32
	// DeviceSecret seals the seed where there is no TPM. Nil, or a board
	// that answers board.ErrNoDeviceSecret, means the seed is stored
	// unprotected.
	DeviceSecret board.DeviceSecreter
	// Log receives what happened; slog.Default() if nil.
	Log *slog.Logger
}

// config is Options, checked.
type config struct {
	Options
	mask uint32
	log  *slog.Logger
}

func (o Options) check() (*config, error) {
	if o.Path == "" {
		return nil, errors.New("identity: no file path")
	}
	c := &config{Options: o, log: o.Log}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.log = c.log.With("identity_file", o.Path)
	for _, p := range o.PCRs {
		if p > 23 {
			return nil, fmt.Errorf("identity: PCR %d: index above 23", p)
		}
		if c.mask&(1<<p) != 0 {
			return nil, fmt.Errorf("identity: PCR %d listed twice", p)
		}
		c.mask |= 1 << p
	}
	if c.mask != 0 && o.TPM == nil {
		return nil, fmt.Errorf("identity: PCRs %v given without a TPM", o.PCRs)
	}
	return c, nil
}

// Identity is the box's unsealed identity key. It is a crypto.Signer, so
// it stands for the private key of a tls.Certificate; PrivateKey gives the
// raw key to media/keywrap, and must not be used to sign (see there).
type Identity struct {
	mu         sync.RWMutex
	secret     *keys.Secret // seed || public key; nil after Close
	pub        ed25519.PublicKey
	protection Protection
	pcrs       []uint32
}

// LoadOrCreate opens the identity at o.Path, or makes a new one if there
// is no file. It never replaces an existing file: an identity that cannot
// be opened is an error (see ErrNeedsReactivation), and only Reset makes a
// new key over it. Two processes may call it at once at first boot; both
// end up with the same key.
//
// A TPM-sealed file bound to other PCRs than o.PCRs is re-sealed to
// o.PCRs once it opened, so a new binding reaches existing boxes.
func LoadOrCreate(ctx context.Context, o Options) (*Identity, error) {
	c, err := o.check()
	if err != nil {
		return nil, err
	}
	for range 2 {
		data, perm, err := readFile(o.Path)
		if errors.Is(err, fs.ErrNotExist) {
			id, created, err := c.create(ctx, false)
			if err != nil || created {
				return id, err
			}
			// Another process created it first: load theirs.
			continue
		}
		if err != nil {
			return nil, err
		}
		return c.load(ctx, data, perm)
	}
	return nil, fmt.Errorf("identity file %s: created by another process but cannot be read back", o.Path)
}

// Reset makes a new identity key and replaces the file, whatever it held.
// The old key is gone: the box must be activated again. Call it only on an
// error that wraps ErrNeedsReactivation, or on the viewer's request, and
// from one process.
func Reset(ctx context.Context, o Options) (*Identity, error) {
	c, err := o.check()
	if err != nil {
		return nil, err
	}
	id, _, err := c.create(ctx, true)
	if err != nil {
		return nil, err
	}
	c.log.Warn("identity replaced by a new key: the box must be activated again", "public_key", hex.EncodeToString(id.pub))
	return id, nil
}

// deviceSecret asks the board for its secret; nil without error means the
// board has none.
func (c *config) deviceSecret(ctx context.Context) ([]byte, error) {
	if c.DeviceSecret == nil {
		return nil, nil
	}
	s, err := c.DeviceSecret.DeviceSecret(ctx)
	if errors.Is(err, board.ErrNoDeviceSecret) {
		return nil, nil
	}
	if err != nil {
		// Not "no secret": going on would write the seed in the clear on
		// a box that has a secret, over a glitch.
		return nil, fmt.Errorf("identity: reading the board's device secret: %w", err)
	}
	if len(s) < minDeviceSecret {
		clear(s)
		return nil, fmt.Errorf("identity: the board's device secret has %d bytes, want at least %d", len(s), minDeviceSecret)
	}
	return s, nil
}

// create makes a new key, seals it and writes the file. created is false
// if replace is false and a file appeared meanwhile; the new key is then
// dropped.
func (c *config) create(ctx context.Context, replace bool) (_ *Identity, created bool, _ error) {
	secret, err := keys.NewSecret(ed25519.PrivateKeySize)
	if err != nil {
		return nil, false, fmt.Errorf("identity: %w", err)
	}
	id := &Identity{secret: secret, pcrs: maskList(c.mask)}
	ok := false
	defer func() {
		if !ok {
			id.Close()
		}
	}()
	buf := secret.Bytes()
	if err := c.newSeed(ctx, buf[:seedSize]); err != nil {
		return nil, false, err
	}
	id.pub = completeKey(buf)

	b := &blob{Public: id.pub}
	switch {
	case c.TPM != nil:
		b.Protection = ProtectionTPM
		if err := sealTPM(ctx, c.TPM, buf[:seedSize], c.mask, b); err != nil {
			return nil, false, fmt.Errorf("identity: %w", err)
		}
	default:
		ds, err := c.deviceSecret(ctx)
		if err != nil {
			return nil, false, err
		}
		if ds != nil {
			b.Protection = ProtectionDeviceSecret
			err = sealDevice(ds, buf[:seedSize], b)
			clear(ds)
			if err != nil {
				return nil, false, fmt.Errorf("identity: %w", err)
			}
		} else {
			b.Protection = ProtectionNone
			// Written as is; the clear seed is in the file by design here.
			b.Seed = buf[:seedSize]
		}
	}
	id.protection = b.Protection
	data := b.encode()
	written, err := writeFile(c.Path, data, replace)
	clear(data) // holds the clear seed under ProtectionNone
	if err != nil || !written {
		return nil, false, err
	}
	ok = true
	c.logOpened(id, "identity created")
	return id, true, nil
}

// newSeed fills dst with a new seed: SHA-256 over a domain string, 32
// bytes from the kernel and, if there is a TPM, 32 from the TPM's
// generator. The kernel's bytes alone would do; the TPM's are mixed in for
// boards whose kernel gathers entropy slowly at first boot. They cross the
// bus in the clear, which is why they are only mixed in.
func (c *config) newSeed(ctx context.Context, dst []byte) error {
	var fromTPM []byte
	if c.TPM != nil {
		var err error
		if fromTPM, err = tpmRandom(ctx, c.TPM, 32); err != nil {
			return fmt.Errorf("identity: %w", err)
		}
	}
	erase(func() {
		var k [32]byte
		rand.Read(k[:])
		h := sha256.New()
		h.Write([]byte("boxswarm identity seed v1\x00"))
		h.Write(k[:])
		h.Write(fromTPM)
		clear(k[:])
		// Sum appends: with dst[:0] it writes into dst's own memory.
		h.Sum(dst[:0])
	})
	return nil
}

// completeKey writes the public key derived from buf's seed into buf[32:],
// making buf an ed25519.PrivateKey, and returns a copy of the public key.
func completeKey(buf []byte) ed25519.PublicKey {
	erase(func() { derivePublic(buf[:seedSize], buf[seedSize:ed25519.PrivateKeySize]) })
	return slices.Clone(ed25519.PublicKey(buf[seedSize:ed25519.PrivateKeySize]))
}

// load opens an existing file.
func (c *config) load(ctx context.Context, data []byte, perm fs.FileMode) (*Identity, error) {
	// The caller's copy of the file: under ProtectionNone, the clear seed.
	// b's fields alias it.
	defer clear(data)
	b, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("identity file %s: %w", c.Path, err)
	}
	var ds []byte
	switch b.Protection {
	case ProtectionTPM:
		if c.TPM == nil {
			return nil, fmt.Errorf("identity file %s: %w (is the TPM driver missing?)", c.Path, ErrNoTPM)
		}
	case ProtectionDeviceSecret, ProtectionNone:
		if c.TPM != nil {
			return nil, fmt.Errorf("identity file %s is protected by %s, and this box has a TPM: %w", c.Path, b.Protection, ErrWeakerProtection)
		}
		if ds, err = c.deviceSecret(ctx); err != nil {
			return nil, err
		}
		defer clear(ds)
		if b.Protection == ProtectionDeviceSecret && ds == nil {
			return nil, fmt.Errorf("identity file %s: %w", c.Path, ErrDeviceSecretMissing)
		}
		if b.Protection == ProtectionNone && ds != nil {
			return nil, fmt.Errorf("identity file %s is not sealed, and this board has a device secret: %w", c.Path, ErrWeakerProtection)
		}
	}

	secret, err := keys.NewSecret(ed25519.PrivateKeySize)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	id := &Identity{secret: secret, protection: b.Protection, pcrs: maskList(b.PCRMask)}
	buf := secret.Bytes()
	switch b.Protection {
	case ProtectionTPM:
		err = unsealTPM(ctx, c.TPM, b, buf[:seedSize])
	case ProtectionDeviceSecret:
		err = unsealDevice(ds, b, buf[:seedSize])
	case ProtectionNone:
		copy(buf, b.Seed)
		if perm&0o077 != 0 {
			c.log.Warn("identity file readable by others: making it 0600", "mode", perm.String())
			if cerr := os.Chmod(c.Path, 0o600); cerr != nil {
				err = fmt.Errorf("identity file %s: %w", c.Path, cerr)
			}
		}
	}
	if err != nil {
		id.Close()
		return nil, fmt.Errorf("identity file %s: %w", c.Path, err)
	}
	id.pub = completeKey(buf)
	if !id.pub.Equal(b.Public) {
		id.Close()
		return nil, fmt.Errorf("identity file %s: the seed makes public key %x, the file records %x: %w", c.Path, []byte(id.pub), []byte(b.Public), ErrCorrupt)
	}
	c.logOpened(id, "identity loaded")

	if b.Protection == ProtectionTPM && b.PCRMask != c.mask {
		c.reseal(ctx, id, b.PCRMask)
	}
	return id, nil
}

// reseal seals an opened identity to the configured PCRs and replaces the
// file. A failure leaves the old file, which still opens, and is logged
// rather than returned: the box keeps its identity under the old binding.
func (c *config) reseal(ctx context.Context, id *Identity, from uint32) {
	log := c.log.With("from", describeMask(from), "to", describeMask(c.mask))
	b := &blob{Protection: ProtectionTPM, Public: id.pub}
	id.mu.RLock()
	err := sealTPM(ctx, c.TPM, id.secret.Bytes()[:seedSize], c.mask, b)
	id.mu.RUnlock()
	if err == nil {
		_, err = writeFile(c.Path, b.encode(), true)
	}
	if err != nil {
		log.Error("identity NOT re-sealed to the configured binding; keeping the old one", "err", err)
		return
	}
	id.mu.Lock()
	id.pcrs = maskList(c.mask)
	id.mu.Unlock()
	log.Info("identity re-sealed")
}

func (c *config) logOpened(id *Identity, msg string) {
	attrs := []any{"public_key", hex.EncodeToString(id.pub), "protection", id.protection.String()}
	switch id.protection {
	case ProtectionTPM:
		c.log.Info(msg, append(attrs, "bound_to", describeMask(listMask(id.pcrs)))...)
	case ProtectionDeviceSecret:
		c.log.Warn(msg+": sealed with the board's device secret only, which stops a copy of the data partition working on another box but not software on this one", attrs...)
	default:
		c.log.Error(msg+": IDENTITY KEY STORED UNPROTECTED: this board has neither a TPM nor a device secret, so anyone who copies the data partition can impersonate this box and open every content key wrapped to it", attrs...)
	}
}

// Public returns the ed25519.PublicKey; it is valid after Close.
func (id *Identity) Public() crypto.PublicKey { return id.PublicKey() }

// PublicKey returns the public key; it is valid after Close.
func (id *Identity) PublicKey() ed25519.PublicKey { return slices.Clone(id.pub) }

// Protection says what protects the seed on disk.
func (id *Identity) Protection() Protection { return id.protection }

// PCRs lists the PCRs the sealed seed is bound to (TPM only), nil if none.
func (id *Identity) PCRs() []uint32 {
	id.mu.RLock()
	defer id.mu.RUnlock()
	return slices.Clone(id.pcrs)
}

// Sign signs message with the identity key: pure Ed25519, so opts must be
// crypto.Hash(0) (what crypto/tls and crypto/x509 pass for Ed25519 keys);
// Ed25519ph and Ed25519ctx are refused. It fails with ErrClosed after
// Close. The signature is the one crypto/ed25519 would make.
func (id *Identity) Sign(_ io.Reader, message []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts.HashFunc() != crypto.Hash(0) {
		return nil, fmt.Errorf("identity: Ed25519 signs unhashed messages, got hash %v", opts.HashFunc())
	}
	if o, ok := opts.(*ed25519.Options); ok && o.Context != "" {
		return nil, errors.New("identity: Ed25519ctx is not supported")
	}
	id.mu.RLock()
	defer id.mu.RUnlock()
	if id.secret == nil {
		return nil, ErrClosed
	}
	var sig []byte
	erase(func() { sig = signEd25519(id.secret.Bytes(), message) })
	return sig, nil
}

// PrivateKey returns the private key itself, for media/keywrap.Unwrap: a
// slice of the locked memory, not a copy, so nothing is left on the heap.
//
// Never sign with it through crypto/ed25519 (ed25519.Sign, its Sign
// method, or as the PrivateKey of a tls.Certificate, which calls it): the
// standard library caches keys by a weak pointer, which the runtime cannot
// make to memory outside the Go heap, and the process dies with a fatal
// error. Use the Identity itself, a crypto.Signer, for signing and TLS.
//
// It is valid only until Close, which zeroes and unmaps it: using it
// afterwards crashes the process rather than leak. It returns nil after
// Close.
func (id *Identity) PrivateKey() ed25519.PrivateKey {
	id.mu.RLock()
	defer id.mu.RUnlock()
	if id.secret == nil {
		return nil
	}
	return ed25519.PrivateKey(id.secret.Bytes())
}

// Close zeroes and releases the key. It is safe to call more than once.
func (id *Identity) Close() error {
	id.mu.Lock()
	defer id.mu.Unlock()
	if id.secret != nil {
		id.secret.Destroy()
		id.secret = nil
	}
	return nil
}

func maskList(mask uint32) []uint32 {
	var out []uint32
	for _, p := range maskPCRs(mask) {
		out = append(out, uint32(p))
	}
	return out
}

func listMask(pcrs []uint32) uint32 {
	var m uint32
	for _, p := range pcrs {
		m |= 1 << p
	}
	return m
}

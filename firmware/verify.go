package firmware

import (
	"cmp"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"io"
	"slices"

	"github.com/boxswarm/boxswarm/firmware/verity"
)

// Policy is what a box requires of an image before running it.
type Policy struct {
	RootKey ed25519.PublicKey // the ROM root key
	BoardID string
	// MinKeyVersion and MinImageVersion are the floors: the higher of what
	// the ROM was built with and what the TPM has recorded.
	MinKeyVersion   uint32
	MinImageVersion uint64
}

// Verified is a slot's image after every check passed. Its byte slices are
// the only copy the caller may use: they were read from the disk once and
// hashed in memory, so a disk that answers differently the next time cannot
// change what runs.
type Verified struct {
	Manifest    *Manifest
	Digest      [32]byte // SHA-256 of the signed manifest bytes
	Certificate Certificate
	Kernel      []byte
	Initramfs   []byte
	DTB         []byte // nil if the image has none
	Cmdline     string
}

// LoadSlot reads the image in a slot of slotSize bytes and verifies it
// against p: certificate, key version, manifest signature, board, rollback
// floor, component bounds and every component's SHA-256. Each byte is read
// from slot exactly once. A root filesystem is only bounds-checked; the
// kernel verifies it block by block through dm-verity with the root hash
// from the manifest.
//
// Every error wraps one of the Err* reasons of this package.
func LoadSlot(slot io.ReaderAt, slotSize int64, p Policy) (*Verified, error) {
	env, err := ReadEnvelope(slot, slotSize)
	if err != nil {
		return nil, err
	}
	v, err := verifyEnvelope(env, p)
	if err != nil {
		return nil, err
	}
	if err := checkBounds(v.Manifest, slotSize); err != nil {
		return nil, err
	}
	for _, c := range v.Manifest.Components {
		if c.Kind == RootFS {
			continue
		}
		// The size was bounded by the signed manifest and Kind.maxSize
		// before this allocation.
		data := make([]byte, c.Size)
		if _, err := slot.ReadAt(data, int64(c.Offset)); err != nil {
			return nil, fmt.Errorf("component %s: read %d bytes at offset %d: %w: %w", c.Kind, c.Size, c.Offset, ErrRead, err)
		}
		if got := sha256.Sum256(data); got != c.SHA256 && !verificationDisabled {
			return nil, fmt.Errorf("component %s: SHA-256 %x, manifest says %x: %w", c.Kind, got[:8], c.SHA256[:8], ErrComponentHash)
		}
		switch c.Kind {
		case Kernel:
			v.Kernel = data
		case Initramfs:
			v.Initramfs = data
		case DTB:
			v.DTB = data
		case Cmdline:
			v.Cmdline = string(data)
		}
	}
	return v, nil
}

// VerifySignatures checks the certificate against the root key and the
// manifest against the certified key, on the raw bytes, and returns the
// certificate. It applies no policy.
func (env *Envelope) VerifySignatures(root ed25519.PublicKey) (Certificate, error) {
	sc := SignedCertificate{Raw: env.Certificate, Signature: env.CertificateSignature}
	if !verificationDisabled {
		if err := sc.Verify(root); err != nil {
			// The key ID is not named: the bytes naming it are not authentic.
			return Certificate{}, fmt.Errorf("signing key certificate not signed by root key %s: %w", KeyIDOf(root), ErrCertificateSignature)
		}
	}
	cert, err := ParseCertificate(env.Certificate)
	if err != nil {
		return Certificate{}, err
	}
	if !verificationDisabled && !ed25519.Verify(cert.PublicKey, signedMessage(manifestDomain, env.Manifest), env.ManifestSignature) {
		return Certificate{}, fmt.Errorf("manifest signature does not verify with signing key %s v%d: %w", cert.KeyID(), cert.KeyVersion, ErrManifestSignature)
	}
	return cert, nil
}

// verifyEnvelope checks signatures, then key version, board and rollback
// floor.
func verifyEnvelope(env *Envelope, p Policy) (*Verified, error) {
	cert, err := env.VerifySignatures(p.RootKey)
	if err != nil {
		return nil, err
	}
	if cert.KeyVersion < p.MinKeyVersion {
		return nil, fmt.Errorf("signing key %s version %d is revoked (minimum %d): %w", cert.KeyID(), cert.KeyVersion, p.MinKeyVersion, ErrKeyRevoked)
	}
	if cert.BoardID != "" && cert.BoardID != p.BoardID {
		return nil, fmt.Errorf("signing key %s v%d is certified for board %q, this is %q: %w", cert.KeyID(), cert.KeyVersion, cert.BoardID, p.BoardID, ErrWrongBoard)
	}
	m, err := ParseManifest(env.Manifest)
	if err != nil {
		return nil, err
	}
	if m.KeyID != cert.KeyID() || m.KeyVersion != cert.KeyVersion {
		return nil, fmt.Errorf("manifest names signing key %s v%d but is signed by %s v%d: %w", m.KeyID, m.KeyVersion, cert.KeyID(), cert.KeyVersion, ErrKeyMismatch)
	}
	if m.BoardID != p.BoardID {
		return nil, fmt.Errorf("image is for board %q, this is %q: %w", m.BoardID, p.BoardID, ErrWrongBoard)
	}
	if m.ImageVersion < p.MinImageVersion {
		return nil, fmt.Errorf("image version %d is below the floor %d: %w", m.ImageVersion, p.MinImageVersion, ErrRollback)
	}
	return &Verified{Manifest: m, Digest: sha256.Sum256(env.Manifest), Certificate: cert}, nil
}

// checkBounds makes sure every component lies inside the slot, after the
// reserved area, block-aligned and without overlapping another.
func checkBounds(m *Manifest, slotSize int64) error {
	type span struct {
		what       string
		start, end uint64
	}
	var spans []span
	add := func(what string, off, size uint64) error {
		end := off + size
		switch {
		case off%BlockSize != 0:
			return fmt.Errorf("%s: offset %d is not a multiple of %d: %w", what, off, BlockSize, ErrComponentBounds)
		case off < ReservedSize:
			return fmt.Errorf("%s: offset %d inside the header area: %w", what, off, ErrComponentBounds)
		case end < off || end > uint64(slotSize):
			return fmt.Errorf("%s: %d bytes at offset %d run past the end of the %d-byte slot: %w", what, size, off, slotSize, ErrComponentBounds)
		}
		spans = append(spans, span{what, off, end})
		return nil
	}
	for _, c := range m.Components {
		if err := add("component "+c.Kind.String(), c.Offset, c.Size); err != nil {
			return err
		}
		if v := c.Verity; v != nil {
			want, err := verity.TreeSize(int64(c.Size))
			if err != nil {
				return fmt.Errorf("component %s: %w: %w", c.Kind, ErrComponentBounds, err)
			}
			if v.HashSize != uint64(want) {
				return fmt.Errorf("component %s: hash tree of %d bytes, %d data bytes need %d: %w", c.Kind, v.HashSize, c.Size, want, ErrComponentBounds)
			}
			if err := add("component "+c.Kind.String()+" hash tree", v.HashOffset, v.HashSize); err != nil {
				return err
			}
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.start, b.start) })
	for i := 1; i < len(spans); i++ {
		if spans[i].start < spans[i-1].end {
			return fmt.Errorf("%s overlaps %s: %w", spans[i].what, spans[i-1].what, ErrComponentBounds)
		}
	}
	return nil
}

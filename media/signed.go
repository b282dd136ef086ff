package media

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/boxswarm/boxswarm/internal/tlv"
)

// ManifestMagic starts a signed manifest file.
const ManifestMagic = "BXSWMED1"

// ErrManifestSignature is returned for a manifest not signed by a trusted
// media key.
var ErrManifestSignature = errors.New("media manifest signature invalid")

const (
	sigTagManifest  = 1
	sigTagKeyID     = 2
	sigTagSignature = 3
)

var signedSchema = []tlv.Field{
	{Tag: sigTagManifest, Name: "manifest", Kind: tlv.KindBytes, Max: MaxFrames*FrameEntrySize + MaxPieces*32 + 1<<16, Required: true},
	{Tag: sigTagKeyID, Name: "key ID", Kind: tlv.KindFixed, Max: 8, Required: true},
	{Tag: sigTagSignature, Name: "signature", Kind: tlv.KindFixed, Max: ed25519.SignatureSize, Required: true},
}

const signatureDomain = "boxswarm media manifest v1\x00"

// KeyID names a media signing key: the first 8 bytes of the SHA-256 of
// its public key.
func KeyID(pub ed25519.PublicKey) [8]byte {
	sum := sha256.Sum256(pub)
	var id [8]byte
	copy(id[:], sum[:])
	return id
}

// Sign returns the signed manifest file for m: the operator's media key
// vouches for the frame table and the piece hashes.
func Sign(m *Manifest, key ed25519.PrivateKey) []byte {
	raw := m.Encode()
	msg := append([]byte(signatureDomain), raw...)
	id := KeyID(key.Public().(ed25519.PublicKey))
	var e tlv.Encoder
	e.Bytes(sigTagManifest, raw)
	e.Bytes(sigTagKeyID, id[:])
	e.Bytes(sigTagSignature, ed25519.Sign(key, msg))
	return append([]byte(ManifestMagic), e.Encoded()...)
}

// Verify checks a signed manifest file against the trusted media keys and
// parses it. Nothing in the manifest is looked at before the signature
// checks out.
func Verify(file []byte, trusted ...ed25519.PublicKey) (*Manifest, error) {
	if !bytes.HasPrefix(file, []byte(ManifestMagic)) {
		return nil, fmt.Errorf("not a signed media manifest (no %q header): %w", ManifestMagic, ErrMalformed)
	}
	f, err := tlv.Decode("signed media manifest", file[len(ManifestMagic):], signedSchema)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	raw := f.Bytes(sigTagManifest)
	keyID := f.Bytes(sigTagKeyID)
	for _, k := range trusted {
		if id := KeyID(k); !bytes.Equal(id[:], keyID) {
			continue
		}
		msg := append([]byte(signatureDomain), raw...)
		if !ed25519.Verify(k, msg, f.Bytes(sigTagSignature)) {
			return nil, fmt.Errorf("signed by media key %x: %w", keyID, ErrManifestSignature)
		}
		return ParseManifest(raw)
	}
	return nil, fmt.Errorf("signed by unknown media key %x: %w", keyID, ErrManifestSignature)
}

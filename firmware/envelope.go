package firmware

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/boxswarm/boxswarm/internal/tlv"
)

// Slot layout. A slot begins with a fixed header and the signed envelope in
// its first ReservedSize bytes; components follow at BlockSize-aligned
// offsets named by the manifest.
const (
	Magic          = "BXSWFWIM"
	EnvelopeFormat = 1
	HeaderSize     = 16
	ReservedSize   = 64 << 10
	BlockSize      = 4096
)

// Envelope holds the signed parts of a slot, as raw bytes: the signing key
// certificate with the root key's signature, and the manifest with the
// signing key's signature.
type Envelope struct {
	Certificate, CertificateSignature []byte
	Manifest, ManifestSignature       []byte
}

const (
	envTagCertificate          = 1
	envTagCertificateSignature = 2
	envTagManifest             = 3
	envTagManifestSignature    = 4
)

var envelopeSchema = []tlv.Field{
	{Tag: envTagCertificate, Name: "certificate", Kind: tlv.KindBytes, Max: maxCertificateLen, Required: true},
	{Tag: envTagCertificateSignature, Name: "certificate signature", Kind: tlv.KindFixed, Max: ed25519.SignatureSize, Required: true},
	{Tag: envTagManifest, Name: "manifest", Kind: tlv.KindBytes, Max: maxManifestLen, Required: true},
	{Tag: envTagManifestSignature, Name: "manifest signature", Kind: tlv.KindFixed, Max: ed25519.SignatureSize, Required: true},
}

// Encode returns the slot header followed by the envelope record.
func (e *Envelope) Encode() []byte {
	var r tlv.Encoder
	r.Bytes(envTagCertificate, e.Certificate)
	r.Bytes(envTagCertificateSignature, e.CertificateSignature)
	r.Bytes(envTagManifest, e.Manifest)
	r.Bytes(envTagManifestSignature, e.ManifestSignature)
	body := r.Encoded()
	b := make([]byte, 0, HeaderSize+len(body))
	b = append(b, Magic...)
	b = binary.BigEndian.AppendUint32(b, EnvelopeFormat)
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...)
}

// ParseEnvelope decodes a slot's reserved area (at least the header and
// the envelope; anything after the envelope is ignored, as the area is
// padding up to ReservedSize).
func ParseEnvelope(b []byte) (*Envelope, error) {
	if len(b) < HeaderSize {
		return nil, fmt.Errorf("slot header: %d bytes, want %d: %w", len(b), HeaderSize, ErrNoImage)
	}
	if magic := b[:len(Magic)]; string(magic) != Magic {
		if bytes.Count(b[:HeaderSize], []byte{0}) == HeaderSize {
			return nil, fmt.Errorf("slot is empty: %w", ErrNoImage)
		}
		return nil, fmt.Errorf("slot header: magic %q, want %q: %w", magic, Magic, ErrNoImage)
	}
	if v := binary.BigEndian.Uint32(b[8:]); v != EnvelopeFormat {
		return nil, fmt.Errorf("slot header: envelope format %d (this build reads %d): %w", v, EnvelopeFormat, ErrUnsupportedVersion)
	}
	n := binary.BigEndian.Uint32(b[12:])
	if n > ReservedSize-HeaderSize {
		return nil, fmt.Errorf("slot header: envelope length %d exceeds the limit of %d: %w", n, ReservedSize-HeaderSize, ErrMalformed)
	}
	if int(n) > len(b)-HeaderSize {
		return nil, fmt.Errorf("slot header: envelope length %d but only %d bytes follow: %w", n, len(b)-HeaderSize, ErrMalformed)
	}
	f, err := tlv.Decode("envelope", b[HeaderSize:HeaderSize+int(n)], envelopeSchema)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return &Envelope{
		Certificate:          f.Bytes(envTagCertificate),
		CertificateSignature: f.Bytes(envTagCertificateSignature),
		Manifest:             f.Bytes(envTagManifest),
		ManifestSignature:    f.Bytes(envTagManifestSignature),
	}, nil
}

// ReadEnvelope reads a slot's reserved area once and decodes its envelope.
func ReadEnvelope(slot io.ReaderAt, slotSize int64) (*Envelope, error) {
	if slotSize < ReservedSize {
		return nil, fmt.Errorf("slot of %d bytes is smaller than the %d-byte header area: %w", slotSize, ReservedSize, ErrComponentBounds)
	}
	area := make([]byte, ReservedSize)
	if _, err := slot.ReadAt(area, 0); err != nil {
		return nil, fmt.Errorf("read slot header area: %w: %w", ErrRead, err)
	}
	return ParseEnvelope(area)
}

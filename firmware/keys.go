package firmware

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/boxswarm/boxswarm/internal/tlv"
)

// KeyID names a signing key: the first 8 bytes of the SHA-256 of its public
// key, so it can be recomputed from the key and never disagrees with it.
type KeyID [8]byte

// KeyIDOf returns the ID of an Ed25519 public key.
func KeyIDOf(pub ed25519.PublicKey) KeyID {
	sum := sha256.Sum256(pub)
	var id KeyID
	copy(id[:], sum[:])
	return id
}

func (k KeyID) String() string { return hex.EncodeToString(k[:]) }

// Certificate is a signing key vouched for by the ROM root key. The key
// version is what revocation works on: a box refuses every certificate whose
// version is below its minimum, so a leaked signing key is retired by
// releasing an image signed with a newer version, not by changing the ROM.
type Certificate struct {
	KeyVersion uint32
	PublicKey  ed25519.PublicKey
	// BoardID restricts the key to one board; empty means any board.
	BoardID string
	// Name is a human label ("acme firmware 2026"), shown by inspection tools.
	Name string
}

// KeyID returns the ID of the certified key.
func (c Certificate) KeyID() KeyID { return KeyIDOf(c.PublicKey) }

const certificateFormat = 1

const (
	certTagFormat     = 1
	certTagKeyID      = 2
	certTagKeyVersion = 3
	certTagPublicKey  = 4
	certTagBoardID    = 5
	certTagName       = 6
)

var certificateSchema = []tlv.Field{
	{Tag: certTagFormat, Name: "format version", Kind: tlv.KindUint32, Required: true},
	{Tag: certTagKeyID, Name: "key ID", Kind: tlv.KindFixed, Max: 8, Required: true},
	{Tag: certTagKeyVersion, Name: "key version", Kind: tlv.KindUint32, Required: true},
	{Tag: certTagPublicKey, Name: "public key", Kind: tlv.KindFixed, Max: ed25519.PublicKeySize, Required: true},
	{Tag: certTagBoardID, Name: "board ID", Kind: tlv.KindString, Max: MaxBoardIDLen},
	{Tag: certTagName, Name: "name", Kind: tlv.KindString, Max: 128},
}

// Encode returns the certificate's canonical bytes, the ones the root key signs.
func (c Certificate) Encode() []byte {
	var e tlv.Encoder
	e.Uint32(certTagFormat, certificateFormat)
	id := c.KeyID()
	e.Bytes(certTagKeyID, id[:])
	e.Uint32(certTagKeyVersion, c.KeyVersion)
	e.Bytes(certTagPublicKey, c.PublicKey)
	if c.BoardID != "" {
		e.String(certTagBoardID, c.BoardID)
	}
	if c.Name != "" {
		e.String(certTagName, c.Name)
	}
	return e.Encoded()
}

// ParseCertificate decodes a certificate. It checks structure only; the
// signature is checked by SignedCertificate.Verify.
func ParseCertificate(b []byte) (Certificate, error) {
	f, err := tlv.Decode("signing key certificate", b, certificateSchema)
	if err != nil {
		return Certificate{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if v := f.Uint32(certTagFormat); v != certificateFormat {
		return Certificate{}, fmt.Errorf("signing key certificate: format version %d (this build reads %d): %w", v, certificateFormat, ErrUnsupportedVersion)
	}
	c := Certificate{
		KeyVersion: f.Uint32(certTagKeyVersion),
		PublicKey:  ed25519.PublicKey(f.Bytes(certTagPublicKey)),
		BoardID:    f.String(certTagBoardID),
		Name:       f.String(certTagName),
	}
	if id := c.KeyID(); string(id[:]) != string(f.Bytes(certTagKeyID)) {
		return Certificate{}, fmt.Errorf("signing key certificate: key ID %x does not match its public key (%s): %w", f.Bytes(certTagKeyID), id, ErrMalformed)
	}
	return c, nil
}

// SignedCertificate is a certificate with the root key's signature over its
// exact bytes.
type SignedCertificate struct {
	Certificate
	Raw       []byte // the signed bytes
	Signature []byte
}

// Certify signs c with the ROM root key.
func Certify(root ed25519.PrivateKey, c Certificate) SignedCertificate {
	raw := c.Encode()
	return SignedCertificate{Certificate: c, Raw: raw, Signature: ed25519.Sign(root, signedMessage(certificateDomain, raw))}
}

// Verify checks the root key's signature.
func (s SignedCertificate) Verify(root ed25519.PublicKey) error {
	if len(root) != ed25519.PublicKeySize {
		return fmt.Errorf("root public key has %d bytes, want %d", len(root), ed25519.PublicKeySize)
	}
	if !ed25519.Verify(root, signedMessage(certificateDomain, s.Raw), s.Signature) {
		return fmt.Errorf("signing key %s v%d: certificate is not signed by root key %s: %w", s.KeyID(), s.KeyVersion, KeyIDOf(root), ErrCertificateSignature)
	}
	return nil
}

// Signature domains keep a signature made for one kind of record from being
// accepted for another.
const (
	certificateDomain = "boxswarm firmware signing-key certificate v1\x00"
	manifestDomain    = "boxswarm firmware manifest v1\x00"
)

func signedMessage(domain string, b []byte) []byte {
	m := make([]byte, 0, len(domain)+len(b))
	return append(append(m, domain...), b...)
}

// PEM block types of the key files the tools read and write.
const (
	pemPrivateKey  = "PRIVATE KEY"
	pemPublicKey   = "PUBLIC KEY"
	pemCertificate = "BOXSWARM SIGNING KEY CERTIFICATE"
)

const (
	certFileTagCert      = 1
	certFileTagSignature = 2
)

var certFileSchema = []tlv.Field{
	{Tag: certFileTagCert, Name: "certificate", Kind: tlv.KindBytes, Max: maxCertificateLen, Required: true},
	{Tag: certFileTagSignature, Name: "signature", Kind: tlv.KindFixed, Max: ed25519.SignatureSize, Required: true},
}

// MarshalPEM encodes the signed certificate as a PEM file.
func (s SignedCertificate) MarshalPEM() []byte {
	var e tlv.Encoder
	e.Bytes(certFileTagCert, s.Raw)
	e.Bytes(certFileTagSignature, s.Signature)
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: e.Encoded()})
}

// ParseCertificatePEM decodes a file written by MarshalPEM. It does not
// verify the signature.
func ParseCertificatePEM(b []byte) (SignedCertificate, error) {
	blk, err := onePEM(b, pemCertificate)
	if err != nil {
		return SignedCertificate{}, err
	}
	f, err := tlv.Decode("certificate file", blk, certFileSchema)
	if err != nil {
		return SignedCertificate{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	c, err := ParseCertificate(f.Bytes(certFileTagCert))
	if err != nil {
		return SignedCertificate{}, err
	}
	return SignedCertificate{Certificate: c, Raw: f.Bytes(certFileTagCert), Signature: f.Bytes(certFileTagSignature)}, nil
}

// MarshalPrivateKeyPEM encodes an Ed25519 private key as PKCS #8 PEM.
func MarshalPrivateKeyPEM(k ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

// ParsePrivateKeyPEM decodes a PKCS #8 PEM Ed25519 private key.
func ParsePrivateKeyPEM(b []byte) (ed25519.PrivateKey, error) {
	blk, err := onePEM(b, pemPrivateKey)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(blk)
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key is %T, want an Ed25519 key", k)
	}
	return ek, nil
}

// MarshalPublicKeyPEM encodes an Ed25519 public key as PKIX PEM.
func MarshalPublicKeyPEM(k ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPublicKey, Bytes: der}), nil
}

// ParsePublicKeyPEM decodes a PKIX PEM Ed25519 public key.
func ParsePublicKeyPEM(b []byte) (ed25519.PublicKey, error) {
	blk, err := onePEM(b, pemPublicKey)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(blk)
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key is %T, want an Ed25519 key", k)
	}
	return ek, nil
}

func onePEM(b []byte, typ string) ([]byte, error) {
	blk, rest := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("no PEM %q block found", typ)
	}
	if blk.Type != typ {
		return nil, fmt.Errorf("PEM block is %q, want %q", blk.Type, typ)
	}
	for _, c := range rest {
		if c != ' ' && c != '\n' && c != '\r' && c != '\t' {
			return nil, errors.New("unexpected data after the PEM block")
		}
	}
	return blk.Bytes, nil
}

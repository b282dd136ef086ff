package firmware

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/boxswarm/boxswarm/firmware/verity"
)

// Signer signs manifests with a certified signing key.
type Signer struct {
	Key         ed25519.PrivateKey
	Certificate SignedCertificate
}

// Check makes sure the private key is the certified one.
func (s Signer) Check() error {
	if len(s.Key) != ed25519.PrivateKeySize {
		return fmt.Errorf("signing key has %d bytes, want %d", len(s.Key), ed25519.PrivateKeySize)
	}
	pub := s.Key.Public().(ed25519.PublicKey)
	if !pub.Equal(s.Certificate.PublicKey) {
		return fmt.Errorf("signing key %s does not match certificate for key %s v%d", KeyIDOf(pub), s.Certificate.KeyID(), s.Certificate.KeyVersion)
	}
	return nil
}

// Seal signs raw manifest bytes and returns the envelope holding them with
// the signer's certificate. BuildImage is the normal way to make an image;
// Seal exists for tools and tests that need exact control of the bytes.
func (s Signer) Seal(manifest []byte) Envelope {
	return Envelope{
		Certificate:          s.Certificate.Raw,
		CertificateSignature: s.Certificate.Signature,
		Manifest:             manifest,
		ManifestSignature:    ed25519.Sign(s.Key, signedMessage(manifestDomain, manifest)),
	}
}

// ImageSpec is everything that goes into one slot image.
type ImageSpec struct {
	BoardID      string
	ImageVersion uint64
	Build        string // human-readable description, shown by inspection
	BOM          []byte // bill of materials; only its hash is signed
	Kernel       []byte
	Initramfs    []byte
	DTB          []byte // optional
	Cmdline      string
	RootFS       []byte // optional; padded with zeros to a whole block
	VeritySalt   []byte // salt for the root filesystem's hash tree
}

// BuildImage lays out and signs an image. The result is what is written to
// the start of a slot; the same spec and key always give the same bytes.
func BuildImage(spec ImageSpec, s Signer) ([]byte, *Manifest, error) {
	if err := s.Check(); err != nil {
		return nil, nil, err
	}
	if spec.BoardID == "" || len(spec.BoardID) > MaxBoardIDLen {
		return nil, nil, fmt.Errorf("board ID %q must have 1 to %d bytes", spec.BoardID, MaxBoardIDLen)
	}
	if len(spec.Kernel) == 0 || len(spec.Initramfs) == 0 {
		return nil, nil, errors.New("an image needs a kernel and an initramfs")
	}
	m := &Manifest{
		BoardID:      spec.BoardID,
		ImageVersion: spec.ImageVersion,
		KeyID:        s.Certificate.KeyID(),
		KeyVersion:   s.Certificate.KeyVersion,
		BOMSHA256:    sha256.Sum256(spec.BOM),
		Build:        spec.Build,
	}
	img := make([]byte, ReservedSize)
	place := func(k Kind, data []byte) {
		c := Component{Kind: k, Offset: uint64(len(img)), Size: uint64(len(data)), SHA256: sha256.Sum256(data)}
		img = append(img, data...)
		img = padBlock(img)
		m.Components = append(m.Components, c)
	}
	place(Kernel, spec.Kernel)
	place(Initramfs, spec.Initramfs)
	if spec.DTB != nil {
		place(DTB, spec.DTB)
	}
	place(Cmdline, []byte(spec.Cmdline))
	if spec.RootFS != nil {
		rootfs := padBlock(bytes.Clone(spec.RootFS))
		place(RootFS, rootfs)
		root, tree, err := verity.Build(bytes.NewReader(rootfs), int64(len(rootfs)), spec.VeritySalt)
		if err != nil {
			return nil, nil, fmt.Errorf("root filesystem hash tree: %w", err)
		}
		c := &m.Components[len(m.Components)-1]
		c.Verity = &Verity{RootHash: root, Salt: bytes.Clone(spec.VeritySalt), HashOffset: uint64(len(img)), HashSize: uint64(len(tree))}
		img = append(img, tree...)
	}
	for _, c := range m.Components {
		if c.Size > c.Kind.maxSize() {
			return nil, nil, fmt.Errorf("component %s: %d bytes exceeds the limit of %d", c.Kind, c.Size, c.Kind.maxSize())
		}
	}
	env := s.Seal(m.Encode())
	hdr := env.Encode()
	if len(hdr) > ReservedSize {
		return nil, nil, fmt.Errorf("envelope of %d bytes does not fit the %d-byte header area", len(hdr), ReservedSize)
	}
	copy(img, hdr)
	return img, m, nil
}

func padBlock(b []byte) []byte {
	if r := len(b) % BlockSize; r != 0 {
		b = append(b, make([]byte, BlockSize-r)...)
	}
	return b
}

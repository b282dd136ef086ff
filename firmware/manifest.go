package firmware

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/boxswarm/boxswarm/internal/tlv"
)

// ManifestFormat is the manifest format version this build writes and reads.
const ManifestFormat = 1

// Limits checked before anything is read or allocated.
const (
	MaxBoardIDLen     = 64
	maxBuildLen       = 256
	maxCertificateLen = 1024
	maxManifestLen    = 16 << 10
	maxSaltLen        = 256
)

// Kind is the role of a component in the image.
type Kind uint16

// Component kinds, in the order they appear in a manifest.
const (
	Kernel    Kind = 1 // arm64 Linux Image of the second stage
	Initramfs Kind = 2 // newc cpio of the second stage
	DTB       Kind = 3 // device tree for the second stage (optional: the running one is reused)
	Cmdline   Kind = 4 // kernel command line
	RootFS    Kind = 5 // root filesystem mounted only through dm-verity (optional)
)

var kindNames = map[Kind]string{Kernel: "kernel", Initramfs: "initramfs", DTB: "dtb", Cmdline: "cmdline", RootFS: "rootfs"}

func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("kind(%d)", uint16(k))
}

// maxSize bounds each kind so that a signed but absurd manifest still cannot
// make the verifier allocate more than it has.
func (k Kind) maxSize() uint64 {
	switch k {
	case Kernel:
		return 64 << 20
	case Initramfs:
		return 256 << 20
	case DTB:
		return 1 << 20
	case Cmdline:
		return 1024
	default: // RootFS is never read into memory; the slot's size bounds it.
		return 1 << 40
	}
}

// Component is one part of the second stage, where it lies in the slot and
// what it must hash to.
type Component struct {
	Kind   Kind
	Offset uint64 // from the start of the slot; a multiple of BlockSize
	Size   uint64
	SHA256 [32]byte
	// Verity is set for RootFS only: the box never hashes the whole root
	// filesystem at boot; the kernel checks each block on read against this
	// tree.
	Verity *Verity
}

// End returns the offset just past the component's data, or past its hash
// tree for a root filesystem.
func (c Component) End() uint64 {
	if c.Verity != nil {
		return c.Verity.HashOffset + c.Verity.HashSize
	}
	return c.Offset + c.Size
}

// Verity describes a dm-verity hash tree (format 1, SHA-256, 4096-byte data
// and hash blocks, no superblock) stored in the slot after the data.
type Verity struct {
	RootHash   [32]byte
	Salt       []byte
	HashOffset uint64 // from the start of the slot; a multiple of BlockSize
	HashSize   uint64
}

// Manifest names everything a slot holds. It is the signed statement the
// first stage checks before it runs a single byte from the slot.
type Manifest struct {
	BoardID      string
	ImageVersion uint64 // the rollback index: never boot one below the TPM floor
	KeyID        KeyID
	KeyVersion   uint32
	Components   []Component // strictly increasing Kind
	BOMSHA256    [32]byte    // hash of the build's bill of materials
	Build        string      // human-readable build description
}

// Component returns the component of kind k.
func (m *Manifest) Component(k Kind) (Component, bool) {
	for _, c := range m.Components {
		if c.Kind == k {
			return c, true
		}
	}
	return Component{}, false
}

const (
	manTagFormat       = 1
	manTagBoardID      = 2
	manTagImageVersion = 3
	manTagKeyID        = 4
	manTagKeyVersion   = 5
	manTagComponents   = 6
	manTagBOM          = 7
	manTagBuild        = 8

	compTagOffset     = 1
	compTagSize       = 2
	compTagSHA256     = 3
	compTagRootHash   = 4
	compTagSalt       = 5
	compTagHashOffset = 6
	compTagHashSize   = 7
)

var manifestSchema = []tlv.Field{
	{Tag: manTagFormat, Name: "format version", Kind: tlv.KindUint32, Required: true},
	{Tag: manTagBoardID, Name: "board ID", Kind: tlv.KindString, Max: MaxBoardIDLen, Required: true},
	{Tag: manTagImageVersion, Name: "image version", Kind: tlv.KindUint64, Required: true},
	{Tag: manTagKeyID, Name: "key ID", Kind: tlv.KindFixed, Max: 8, Required: true},
	{Tag: manTagKeyVersion, Name: "key version", Kind: tlv.KindUint32, Required: true},
	{Tag: manTagComponents, Name: "components", Kind: tlv.KindRecord, Max: maxManifestLen, Required: true},
	{Tag: manTagBOM, Name: "bill of materials hash", Kind: tlv.KindFixed, Max: 32, Required: true},
	{Tag: manTagBuild, Name: "build", Kind: tlv.KindString, Max: maxBuildLen},
}

var componentsSchema = []tlv.Field{
	{Tag: uint16(Kernel), Name: "kernel", Kind: tlv.KindRecord, Max: 1024, Required: true},
	{Tag: uint16(Initramfs), Name: "initramfs", Kind: tlv.KindRecord, Max: 1024, Required: true},
	{Tag: uint16(DTB), Name: "dtb", Kind: tlv.KindRecord, Max: 1024},
	{Tag: uint16(Cmdline), Name: "cmdline", Kind: tlv.KindRecord, Max: 1024, Required: true},
	{Tag: uint16(RootFS), Name: "rootfs", Kind: tlv.KindRecord, Max: 1024},
}

var componentSchema = []tlv.Field{
	{Tag: compTagOffset, Name: "offset", Kind: tlv.KindUint64, Required: true},
	{Tag: compTagSize, Name: "size", Kind: tlv.KindUint64, Required: true},
	{Tag: compTagSHA256, Name: "sha256", Kind: tlv.KindFixed, Max: 32, Required: true},
	{Tag: compTagRootHash, Name: "verity root hash", Kind: tlv.KindFixed, Max: 32},
	{Tag: compTagSalt, Name: "verity salt", Kind: tlv.KindBytes, Max: maxSaltLen},
	{Tag: compTagHashOffset, Name: "verity hash offset", Kind: tlv.KindUint64},
	{Tag: compTagHashSize, Name: "verity hash size", Kind: tlv.KindUint64},
}

// Encode returns the manifest's canonical bytes, the ones that are signed.
func (m *Manifest) Encode() []byte {
	var e tlv.Encoder
	e.Uint32(manTagFormat, ManifestFormat)
	e.String(manTagBoardID, m.BoardID)
	e.Uint64(manTagImageVersion, m.ImageVersion)
	e.Bytes(manTagKeyID, m.KeyID[:])
	e.Uint32(manTagKeyVersion, m.KeyVersion)
	e.Record(manTagComponents, func(e *tlv.Encoder) {
		for _, c := range m.Components {
			e.Record(uint16(c.Kind), func(e *tlv.Encoder) {
				e.Uint64(compTagOffset, c.Offset)
				e.Uint64(compTagSize, c.Size)
				e.Bytes(compTagSHA256, c.SHA256[:])
				if v := c.Verity; v != nil {
					e.Bytes(compTagRootHash, v.RootHash[:])
					e.Bytes(compTagSalt, v.Salt)
					e.Uint64(compTagHashOffset, v.HashOffset)
					e.Uint64(compTagHashSize, v.HashSize)
				}
			})
		}
	})
	e.Bytes(manTagBOM, m.BOMSHA256[:])
	if m.Build != "" {
		e.String(manTagBuild, m.Build)
	}
	return e.Encoded()
}

// Digest returns the SHA-256 of the manifest's canonical bytes: the value
// measured into the TPM.
func (m *Manifest) Digest() [32]byte { return sha256.Sum256(m.Encode()) }

// ParseManifest decodes a manifest, refusing anything but its one canonical
// encoding: unknown versions or fields, repeated or reordered fields, wrong
// lengths and trailing bytes. It checks structure, not signatures.
func ParseManifest(b []byte) (*Manifest, error) {
	if len(b) > maxManifestLen {
		return nil, fmt.Errorf("manifest: %d bytes exceeds the limit of %d: %w", len(b), maxManifestLen, ErrMalformed)
	}
	f, err := tlv.Decode("manifest", b, manifestSchema)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if v := f.Uint32(manTagFormat); v != ManifestFormat {
		return nil, fmt.Errorf("manifest: format version %d (this build reads %d): %w", v, ManifestFormat, ErrUnsupportedVersion)
	}
	m := &Manifest{
		BoardID:      f.String(manTagBoardID),
		ImageVersion: f.Uint64(manTagImageVersion),
		KeyVersion:   f.Uint32(manTagKeyVersion),
		Build:        f.String(manTagBuild),
	}
	if m.BoardID == "" {
		return nil, fmt.Errorf("manifest: empty board ID: %w", ErrMalformed)
	}
	copy(m.KeyID[:], f.Bytes(manTagKeyID))
	copy(m.BOMSHA256[:], f.Bytes(manTagBOM))
	cf, err := tlv.Decode("manifest components", f.Bytes(manTagComponents), componentsSchema)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	for _, fd := range componentsSchema {
		if !cf.Has(fd.Tag) {
			continue
		}
		c, err := parseComponent(Kind(fd.Tag), cf.Bytes(fd.Tag))
		if err != nil {
			return nil, err
		}
		m.Components = append(m.Components, c)
	}
	return m, nil
}

func parseComponent(k Kind, b []byte) (Component, error) {
	what := "manifest component " + k.String()
	f, err := tlv.Decode(what, b, componentSchema)
	if err != nil {
		return Component{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	c := Component{Kind: k, Offset: f.Uint64(compTagOffset), Size: f.Uint64(compTagSize)}
	copy(c.SHA256[:], f.Bytes(compTagSHA256))
	verityFields := 0
	for _, t := range []uint16{compTagRootHash, compTagSalt, compTagHashOffset, compTagHashSize} {
		if f.Has(t) {
			verityFields++
		}
	}
	switch {
	case k == RootFS && verityFields != 4:
		return Component{}, fmt.Errorf("%s: a root filesystem needs a verity root hash, salt, hash offset and hash size: %w", what, ErrMalformed)
	case k != RootFS && verityFields != 0:
		return Component{}, fmt.Errorf("%s: verity fields are only allowed on the root filesystem: %w", what, ErrMalformed)
	case k == RootFS:
		v := &Verity{Salt: f.Bytes(compTagSalt), HashOffset: f.Uint64(compTagHashOffset), HashSize: f.Uint64(compTagHashSize)}
		copy(v.RootHash[:], f.Bytes(compTagRootHash))
		c.Verity = v
	}
	if c.Size > k.maxSize() {
		return Component{}, fmt.Errorf("%s: size %d exceeds the limit of %d: %w", what, c.Size, k.maxSize(), ErrComponentBounds)
	}
	return c, nil
}

// String renders the manifest for people, one fact per line.
func (m *Manifest) String() string {
	s := fmt.Sprintf("format version   %d\nboard            %s\nimage version    %d\nsigning key      %s v%d\nbill of materials sha256:%s\n",
		ManifestFormat, m.BoardID, m.ImageVersion, m.KeyID, m.KeyVersion, hex.EncodeToString(m.BOMSHA256[:]))
	if m.Build != "" {
		s += fmt.Sprintf("build            %s\n", m.Build)
	}
	for _, c := range m.Components {
		s += fmt.Sprintf("component %-9s offset %-10d size %-10d sha256:%s\n", c.Kind, c.Offset, c.Size, hex.EncodeToString(c.SHA256[:]))
		if v := c.Verity; v != nil {
			s += fmt.Sprintf("  verity root %s salt %s hash tree at %d (%d bytes)\n",
				hex.EncodeToString(v.RootHash[:]), hex.EncodeToString(v.Salt), v.HashOffset, v.HashSize)
		}
	}
	return s
}

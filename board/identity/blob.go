package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/google/go-tpm/tpm2"

	"github.com/boxswarm/boxswarm/internal/tlv"
)

// The identity file is the magic, a big-endian uint32 version, then one
// internal/tlv record (fields in increasing tag order, each exactly once,
// no unknown tags, nothing after the last):
//
//	tag  1  uint32    protection: 1 TPM, 2 device secret, 3 none
//	tag  2  32 bytes  the Ed25519 public key (a check on the unsealed seed,
//	                  and the key to name in logs without unsealing)
//
//	protection 1 (TPM) adds:
//	tag 10  uint32    PCR mask of the SHA-256 bank (bit i = PCR i, i <= 23);
//	                  absent when the object is bound to the TPM only
//	tag 11  32 bytes  SHA-256 over the selected PCRs' values at sealing, in
//	                  index order (the digest TPM2_PolicyPCR checks);
//	                  present exactly when tag 10 is
//	tag 12  34 bytes  Name of the storage primary key sealed under
//	                  (TPM_ALG_SHA256 || SHA-256 of its public area)
//	tag 13  bytes     TPM2B_PUBLIC of the sealed data object, size included
//	tag 14  bytes     TPM2B_PRIVATE of the sealed data object, size included
//
//	protection 2 (device secret) adds:
//	tag 20  32 bytes  HKDF salt
//	tag 21  12 bytes  AES-GCM nonce
//	tag 22  48 bytes  the seed sealed with AES-256-GCM; the additional data
//	                  is this whole file without tag 22
//
//	protection 3 (none) adds:
//	tag 30  32 bytes  the seed, in the clear
//
// A protection carries exactly its own fields. The TPM public area must be
// the one this package creates for the recorded PCR binding (a sealed
// data object, fixed to this TPM and parent, with the matching policy), so
// a file that claims one binding cannot carry an object with a weaker one.
const (
	// Magic starts every identity file.
	Magic = "BXSWIDKY"
	// Version is the file version this build writes and reads.
	Version = 1
	// maxFileSize bounds what is read: a version 1 file is well under 1 KiB.
	maxFileSize = 16 << 10
)

// Protection says what keeps the identity seed on the data partition
// secret.
type Protection uint32

const (
	// ProtectionTPM: sealed by the TPM, under its storage primary key in
	// the owner hierarchy, optionally bound to PCR values.
	ProtectionTPM Protection = 1
	// ProtectionDeviceSecret: encrypted with a key derived from the
	// board's per-unit secret. Protects only against copying the data
	// partition to another box.
	ProtectionDeviceSecret Protection = 2
	// ProtectionNone: the seed is in the clear in a 0600 file.
	ProtectionNone Protection = 3
)

func (p Protection) String() string {
	switch p {
	case ProtectionTPM:
		return "TPM"
	case ProtectionDeviceSecret:
		return "device secret"
	case ProtectionNone:
		return "none"
	}
	return fmt.Sprintf("protection(%d)", uint32(p))
}

const (
	tagProtection = 1
	tagPublicKey  = 2
	tagPCRMask    = 10
	tagPCRDigest  = 11
	tagParentName = 12
	tagTPMPublic  = 13
	tagTPMPrivate = 14
	tagSalt       = 20
	tagNonce      = 21
	tagSealed     = 22
	tagSeed       = 30

	seedSize   = ed25519.SeedSize
	saltSize   = 32
	nonceSize  = 12
	sealedSize = seedSize + 16
	nameSize   = 2 + 32
	// maxTPMBlob bounds TPM2B_PUBLIC and TPM2B_PRIVATE. A keyed-hash object
	// with a SHA-256 policy has a public area of about 80 bytes and a
	// private blob of about 130; 1 KiB leaves room and no more.
	maxTPMBlob = 1024
	// allPCRs is the mask of PCRs 0-23, all a PC Client TPM has.
	allPCRs = 1<<24 - 1
)

var schema = []tlv.Field{
	{Tag: tagProtection, Name: "protection", Kind: tlv.KindUint32, Required: true},
	{Tag: tagPublicKey, Name: "public key", Kind: tlv.KindFixed, Max: ed25519.PublicKeySize, Required: true},
	{Tag: tagPCRMask, Name: "PCR mask", Kind: tlv.KindUint32},
	{Tag: tagPCRDigest, Name: "PCR digest", Kind: tlv.KindFixed, Max: 32},
	{Tag: tagParentName, Name: "parent name", Kind: tlv.KindFixed, Max: nameSize},
	{Tag: tagTPMPublic, Name: "TPM public area", Kind: tlv.KindBytes, Max: maxTPMBlob},
	{Tag: tagTPMPrivate, Name: "TPM private area", Kind: tlv.KindBytes, Max: maxTPMBlob},
	{Tag: tagSalt, Name: "salt", Kind: tlv.KindFixed, Max: saltSize},
	{Tag: tagNonce, Name: "nonce", Kind: tlv.KindFixed, Max: nonceSize},
	{Tag: tagSealed, Name: "sealed seed", Kind: tlv.KindFixed, Max: sealedSize},
	{Tag: tagSeed, Name: "seed", Kind: tlv.KindFixed, Max: seedSize},
}

// fieldsOf lists the tags each protection carries besides 1 and 2.
var fieldsOf = map[Protection][]uint16{
	ProtectionTPM:          {tagPCRMask, tagPCRDigest, tagParentName, tagTPMPublic, tagTPMPrivate},
	ProtectionDeviceSecret: {tagSalt, tagNonce, tagSealed},
	ProtectionNone:         {tagSeed},
}

// blob is a parsed identity file. Byte slices alias the parsed input.
type blob struct {
	Protection Protection
	Public     ed25519.PublicKey

	// ProtectionTPM.
	PCRMask    uint32 // 0: bound to the TPM only
	PCRDigest  []byte // nil iff PCRMask == 0
	ParentName []byte
	TPMPublic  []byte // TPM2B_PUBLIC, size prefix included
	TPMPrivate []byte // TPM2B_PRIVATE, size prefix included

	// ProtectionDeviceSecret.
	Salt, Nonce, Sealed []byte

	// ProtectionNone.
	Seed []byte
}

func (b *blob) encode() []byte {
	out := make([]byte, 0, 512)
	out = append(out, Magic...)
	out = binary.BigEndian.AppendUint32(out, Version)
	var e tlv.Encoder
	e.Uint32(tagProtection, uint32(b.Protection))
	e.Bytes(tagPublicKey, b.Public)
	if b.PCRMask != 0 {
		e.Uint32(tagPCRMask, b.PCRMask)
		e.Bytes(tagPCRDigest, b.PCRDigest)
	}
	for _, f := range []struct {
		tag uint16
		v   []byte
	}{
		{tagParentName, b.ParentName}, {tagTPMPublic, b.TPMPublic}, {tagTPMPrivate, b.TPMPrivate},
		{tagSalt, b.Salt}, {tagNonce, b.Nonce}, {tagSealed, b.Sealed}, {tagSeed, b.Seed},
	} {
		if f.v != nil {
			e.Bytes(f.tag, f.v)
		}
	}
	return append(out, e.Encoded()...)
}

// sealedAAD is the additional data of the device-secret seal: the file as
// it will be written, without the sealed seed.
func (b *blob) sealedAAD() []byte {
	c := *b
	c.Sealed = nil
	return c.encode()
}

// parse decodes and checks an identity file. Every error wraps ErrCorrupt
// or ErrVersion.
func parse(data []byte) (*blob, error) {
	if len(data) < len(Magic)+4 {
		return nil, fmt.Errorf("%d bytes, shorter than the header (truncated?): %w", len(data), ErrCorrupt)
	}
	if string(data[:len(Magic)]) != Magic {
		return nil, fmt.Errorf("does not start with %q: %w", Magic, ErrCorrupt)
	}
	if v := binary.BigEndian.Uint32(data[len(Magic):]); v != Version {
		return nil, fmt.Errorf("file version %d, this software reads version %d: %w", v, Version, ErrVersion)
	}
	f, err := tlv.Decode("identity file", data[len(Magic)+4:], schema)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, ErrCorrupt)
	}
	b := &blob{
		Protection: Protection(f.Uint32(tagProtection)),
		Public:     ed25519.PublicKey(f.Bytes(tagPublicKey)),
	}
	want, ok := fieldsOf[b.Protection]
	if !ok {
		return nil, fmt.Errorf("unknown protection %d: %w", uint32(b.Protection), ErrCorrupt)
	}
	for tag, list := range fieldsOf {
		if tag == b.Protection {
			continue
		}
		for _, t := range list {
			if f.Has(t) {
				return nil, fmt.Errorf("field %d does not belong to protection %s: %w", t, b.Protection, ErrCorrupt)
			}
		}
	}
	for _, t := range want {
		if !f.Has(t) && t != tagPCRMask && t != tagPCRDigest {
			return nil, fmt.Errorf("protection %s without field %d: %w", b.Protection, t, ErrCorrupt)
		}
	}
	switch b.Protection {
	case ProtectionTPM:
		if f.Has(tagPCRMask) != f.Has(tagPCRDigest) {
			return nil, fmt.Errorf("PCR mask and PCR digest must come together: %w", ErrCorrupt)
		}
		if f.Has(tagPCRMask) {
			b.PCRMask = f.Uint32(tagPCRMask)
			b.PCRDigest = f.Bytes(tagPCRDigest)
			if b.PCRMask == 0 || b.PCRMask&^allPCRs != 0 {
				return nil, fmt.Errorf("PCR mask %#x: want a non-empty subset of PCRs 0-23: %w", b.PCRMask, ErrCorrupt)
			}
		}
		b.ParentName = f.Bytes(tagParentName)
		if binary.BigEndian.Uint16(b.ParentName) != uint16(tpm2.TPMAlgSHA256) {
			return nil, fmt.Errorf("parent name is not a SHA-256 name: %w", ErrCorrupt)
		}
		b.TPMPublic = f.Bytes(tagTPMPublic)
		b.TPMPrivate = f.Bytes(tagTPMPrivate)
		if err := checkTPM2B(b.TPMPrivate); err != nil {
			return nil, fmt.Errorf("TPM private area: %w", err)
		}
		if err := checkSealedPublic(b.TPMPublic, b.PCRMask, b.PCRDigest); err != nil {
			return nil, fmt.Errorf("TPM public area: %w", err)
		}
	case ProtectionDeviceSecret:
		b.Salt, b.Nonce, b.Sealed = f.Bytes(tagSalt), f.Bytes(tagNonce), f.Bytes(tagSealed)
	case ProtectionNone:
		b.Seed = f.Bytes(tagSeed)
	}
	return b, nil
}

// checkTPM2B checks that b is one non-empty TPM2B: a size and exactly that
// many bytes.
func checkTPM2B(b []byte) error {
	if len(b) < 2 {
		return fmt.Errorf("%d bytes, no size: %w", len(b), ErrCorrupt)
	}
	n := int(binary.BigEndian.Uint16(b))
	if n == 0 || n != len(b)-2 {
		return fmt.Errorf("size %d in %d bytes: %w", n, len(b)-2, ErrCorrupt)
	}
	return nil
}

// checkSealedPublic checks that tpm2bPublic is exactly the public area
// sealTemplate makes for this binding, apart from the unique field the TPM
// fills in.
func checkSealedPublic(tpm2bPublic []byte, mask uint32, pcrDigest []byte) (err error) {
	if err := checkTPM2B(tpm2bPublic); err != nil {
		return err
	}
	// go-tpm's reflection-based unmarshalling does not promise to reject
	// every malformed input without panicking; these bytes come from disk.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("unparseable (%v): %w", r, ErrCorrupt)
		}
	}()
	inner := tpm2bPublic[2:]
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](inner)
	if err != nil {
		return fmt.Errorf("%v: %w", err, ErrCorrupt)
	}
	if !bytes.Equal(tpm2.Marshal(*pub), inner) {
		return fmt.Errorf("not a canonical TPMT_PUBLIC: %w", ErrCorrupt)
	}
	unique, err := pub.Unique.KeyedHash()
	if err != nil || pub.Type != tpm2.TPMAlgKeyedHash || len(unique.Buffer) != 32 {
		return fmt.Errorf("not a keyed-hash object with a SHA-256 unique value: %w", ErrCorrupt)
	}
	want, err := sealTemplate(mask, pcrDigest)
	if err != nil {
		return err
	}
	want.Unique = pub.Unique
	if !bytes.Equal(tpm2.Marshal(want), inner) {
		return fmt.Errorf("attributes or policy differ from a sealed identity bound to %s: %w", describeMask(mask), ErrCorrupt)
	}
	return nil
}

// sealTemplate is the public area of the sealed data object.
//
//   - FixedTPM, FixedParent: the object can never be duplicated off this
//     TPM or moved to another parent.
//   - NoDA: unsealing does not count towards, nor stop at, dictionary
//     attack lockout, which anyone on the box could provoke.
//   - Bound to PCRs: UserWithAuth clear, so only a policy session that
//     passed TPM2_PolicyPCR with the sealed values unseals; AdminWithPolicy
//     set so that the admin role needs the same policy.
//   - Bound to the TPM only: UserWithAuth with an empty auth value; anyone
//     who can talk to this TPM and has the file can unseal.
//   - SensitiveDataOrigin clear: the data is ours (the seed), not the
//     TPM's; sign and decrypt clear make it a sealed data object that only
//     TPM2_Unseal reads.
func sealTemplate(mask uint32, pcrDigest []byte) (tpm2.TPMTPublic, error) {
	var policy []byte
	if mask != 0 {
		p, err := pcrPolicy(mask, pcrDigest)
		if err != nil {
			return tpm2.TPMTPublic{}, err
		}
		policy = p
	}
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgKeyedHash,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:        true,
			FixedParent:     true,
			NoDA:            true,
			UserWithAuth:    mask == 0,
			AdminWithPolicy: mask != 0,
		},
		AuthPolicy: tpm2.TPM2BDigest{Buffer: policy},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
			Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BDigest{}),
	}, nil
}

// pcrSelection selects the PCRs of mask in the SHA-256 bank.
func pcrSelection(mask uint32) tpm2.TPMLPCRSelection {
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash:      tpm2.TPMAlgSHA256,
		PCRSelect: tpm2.PCClientCompatible.PCRs(maskPCRs(mask)...),
	}}}
}

// pcrPolicy is the policy digest of one TPM2_PolicyPCR over mask with the
// given digest of the PCR values.
func pcrPolicy(mask uint32, pcrDigest []byte) ([]byte, error) {
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	cmd := tpm2.PolicyPCR{PcrDigest: tpm2.TPM2BDigest{Buffer: pcrDigest}, Pcrs: pcrSelection(mask)}
	if err := cmd.Update(calc); err != nil {
		return nil, fmt.Errorf("computing PCR policy: %w", err)
	}
	return calc.Hash().Digest, nil
}

func maskPCRs(mask uint32) []uint {
	out := make([]uint, 0, bits.OnesCount32(mask))
	for i := range uint(24) {
		if mask&(1<<i) != 0 {
			out = append(out, i)
		}
	}
	return out
}

func describeMask(mask uint32) string {
	if mask == 0 {
		return "the TPM only"
	}
	return fmt.Sprintf("PCRs %v", maskPCRs(mask))
}

package gpt

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// GUID is a 128-bit identifier in the byte order of its text form
// ("0FC63DAF-8483-4772-8E79-3D69D8477DE4" is 0x0F, 0xC6, ...), which is the
// order people and tools compare. On disk GPT stores the first three groups
// little-endian; the package converts when reading and writing, so a GUID
// here always prints the way sfdisk and sgdisk print it.
type GUID [16]byte

// Partition type GUIDs used by the box's disk, in text form for ParseGUID.
const (
	// TypeLinuxData is "Linux filesystem data", what sfdisk calls type L.
	TypeLinuxData = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
	// TypeBoxswarmSlot marks a signed firmware slot. It is our own type so
	// that no general-purpose tool mounts or resizes a slot.
	TypeBoxswarmSlot = "8F3C1A52-6D0E-4B7A-9E21-5B0C7D4E6A11"
	// TypeBoxswarmBootctl marks the A/B boot-control block.
	TypeBoxswarmBootctl = "8F3C1A52-6D0E-4B7A-9E21-5B0C7D4E6A12"
)

// ParseGUID parses the 36-character text form, in either case.
func ParseGUID(s string) (GUID, error) {
	var g GUID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return g, fmt.Errorf("gpt: GUID %q: want the form XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX", s)
	}
	h := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(g[:], []byte(h)); err != nil {
		return GUID{}, fmt.Errorf("gpt: GUID %q: %w", s, err)
	}
	return g, nil
}

// MustParseGUID is ParseGUID for constants known to be valid; it panics on a
// malformed string because that is a programming error, not bad input.
func MustParseGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// String returns the upper-case text form.
func (g GUID) String() string {
	h := strings.ToUpper(hex.EncodeToString(g[:]))
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// IsZero reports whether g is all zeros, which in a partition entry's type
// means "unused entry".
func (g GUID) IsZero() bool { return g == GUID{} }

// putDisk stores g at b[0:16] in GPT's mixed-endian on-disk order.
func (g GUID) putDisk(b []byte) {
	binary.LittleEndian.PutUint32(b[0:4], binary.BigEndian.Uint32(g[0:4]))
	binary.LittleEndian.PutUint16(b[4:6], binary.BigEndian.Uint16(g[4:6]))
	binary.LittleEndian.PutUint16(b[6:8], binary.BigEndian.Uint16(g[6:8]))
	copy(b[8:16], g[8:16])
}

// guidFromDisk is the inverse of putDisk.
func guidFromDisk(b []byte) GUID {
	var g GUID
	binary.BigEndian.PutUint32(g[0:4], binary.LittleEndian.Uint32(b[0:4]))
	binary.BigEndian.PutUint16(g[4:6], binary.LittleEndian.Uint16(b[4:6]))
	binary.BigEndian.PutUint16(g[6:8], binary.LittleEndian.Uint16(b[6:8]))
	copy(g[8:16], b[8:16])
	return g
}

// deriveGUID makes a name-based GUID (RFC 9562 version 8, the vendor-specific
// layout) from SHA-256 of the length-prefixed parts. Deriving instead of
// drawing random GUIDs is what makes baked images reproducible byte for byte;
// the domain string keeps disk and partition GUIDs from ever coinciding.
func deriveGUID(domain string, parts ...string) GUID {
	h := sha256.New()
	var n [8]byte
	for _, p := range append([]string{domain}, parts...) {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	var g GUID
	copy(g[:], h.Sum(nil))
	g[6] = g[6]&0x0f | 0x80 // version 8
	g[8] = g[8]&0x3f | 0x80 // RFC 4122/9562 variant
	return g
}

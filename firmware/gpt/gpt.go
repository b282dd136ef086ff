// Package gpt reads and writes GUID partition tables (UEFI 2.10 §5.3) on raw
// disks and disk image files, in pure Go, without root privileges or loop
// devices.
//
// The box's disk is GPT with partitions found by label: "slot_a" and
// "slot_b" (the signed firmware slots), "bootctl" (the A/B boot-control
// block) and "data". Stage one reads the table from the raw disk with Read and
// Find; the image baker makes one with Layout and writes it with Write.
//
// Guarantees:
//
//   - Read never panics, whatever the disk holds, and checks every count and
//     size it reads against fixed limits (at most MaxEntries entries of at
//     most 1024 bytes) before allocating, so it reads at most a few hundred
//     KiB.
//   - Every Partition that Read returns has a non-zero type GUID and lies
//     inside the usable range that a CRC-checked header declares, and no two
//     overlap. Offsets and sizes computed from them cannot overflow.
//   - Read prefers the primary table and falls back to the backup at the end
//     of the disk only when the primary is damaged; it then sets
//     Table.FromBackup and describes what it worked around in Table.Damage.
//     When both are damaged it returns an error naming both faults.
//   - Layout and Write are deterministic: the same seed, disk size and specs
//     give the same bytes, so baked images are reproducible.
//   - Only 512-byte logical sectors are supported. Read refuses a disk whose
//     table is at 4096-byte sector positions with an error that says so
//     rather than "no table".
//
// The table is not trusted for security: it only says where to look. What
// stage one boots is decided by signatures over the slot contents.
package gpt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"unicode/utf16"
)

// SectorSize is the only logical sector size the package supports.
const SectorSize = 512

// MaxEntries is the largest partition entry count Read accepts and the count
// Write always uses (the UEFI minimum array size, 16 KiB).
const MaxEntries = 128

// Alignment is where Layout starts partitions: 1 MiB, which suits every
// flash erase block and 4 KiB physical sector in practice.
const Alignment = 1 << 20

const (
	headerSize    = 92
	entrySize     = 128
	maxEntrySize  = 1024
	maxNameUnits  = 36 // UTF-16 code units in the 72-byte name field
	revision1_0   = 0x00010000
	signature     = "EFI PART"
	entrySectors  = MaxEntries * entrySize / SectorSize // 32
	firstUsable   = 2 + entrySectors                    // 34
	minWriteDisk  = (firstUsable + 1 + entrySectors + 1) * SectorSize
	minReadSector = 6 // MBR, header, entries, one usable sector, entries, header
)

// Errors that callers may want to tell apart with errors.Is.
var (
	// ErrNotFound means no partition has the requested label.
	ErrNotFound = errors.New("no partition with this label")
	// ErrDuplicate means several partitions share the requested label, so
	// choosing one would be a guess.
	ErrDuplicate = errors.New("several partitions with this label")
	// ErrNoTable means neither the primary nor the backup table is valid.
	ErrNoTable = errors.New("no valid GPT")
)

// Partition is one used entry of the table.
type Partition struct {
	// Name is the label, at most 36 UTF-16 code units.
	Name string
	// Type says what the partition holds (see the Type constants); GUID is
	// this partition's own identity (what PARTUUID= means to Linux).
	Type, GUID GUID
	// FirstLBA and LastLBA are inclusive, in 512-byte sectors.
	FirstLBA, LastLBA uint64
	// Attributes are the entry's attribute bits, kept as they are.
	Attributes uint64
}

// Offset returns where the partition starts on the disk, in bytes.
func (p Partition) Offset() int64 { return int64(p.FirstLBA) * SectorSize }

// Size returns the partition's length in bytes.
func (p Partition) Size() int64 { return int64(p.LastLBA-p.FirstLBA+1) * SectorSize }

// Table is a partition table: the disk's identity and its used entries in
// entry order (unused entries are dropped, so the index in Partitions is the
// Linux partition number minus one only for tables without gaps, which is
// every table Write makes).
type Table struct {
	// SectorSize is the logical sector size; Read sets 512, and Write accepts
	// 512 or zero (meaning 512) and refuses anything else.
	SectorSize int
	// DiskGUID identifies the disk.
	DiskGUID GUID
	// Partitions are the used entries.
	Partitions []Partition

	// FromBackup is set by Read when the primary table was damaged and the
	// table came from the backup at the end of the disk. Write ignores it.
	FromBackup bool
	// Damage lists what Read found wrong and worked around: a damaged
	// primary or backup, a backup not at the last sector, copies that
	// disagree. Empty for a healthy disk. Write ignores it.
	Damage []error
}

// Find returns the partition labelled name, or an error wrapping ErrNotFound
// or ErrDuplicate.
func (t *Table) Find(name string) (Partition, error) {
	var found []int
	for i, p := range t.Partitions {
		if p.Name == name {
			found = append(found, i)
		}
	}
	switch len(found) {
	case 0:
		return Partition{}, fmt.Errorf("gpt: partition %q: %w", name, ErrNotFound)
	case 1:
		return t.Partitions[found[0]], nil
	default:
		return Partition{}, fmt.Errorf("gpt: partition %q: %w (partitions %v of the table, counting from 0)", name, ErrDuplicate, found)
	}
}

// header is the decoded GPT header (UEFI 2.10 table 5-5).
type header struct {
	myLBA, alternateLBA           uint64
	firstUsableLBA, lastUsableLBA uint64
	diskGUID                      GUID
	entryLBA                      uint64
	numEntries, entrySize         uint32
	entriesCRC                    uint32
}

// Read reads and checks the partition table of a disk of diskSize bytes.
// A disk whose size is not a multiple of 512 is treated as if truncated to
// one. See the package comment for what Read guarantees about the result.
func Read(r io.ReaderAt, diskSize int64) (*Table, error) {
	if diskSize < minReadSector*SectorSize {
		return nil, fmt.Errorf("gpt: disk size %d: smaller than the %d bytes of the smallest GPT disk", diskSize, minReadSector*SectorSize)
	}
	lastLBA := uint64(diskSize/SectorSize) - 1

	sector := make([]byte, SectorSize)
	if err := readFull(r, sector, 0); err != nil {
		return nil, fmt.Errorf("gpt: protective MBR at LBA 0: %w", err)
	}
	if err := checkProtectiveMBR(sector); err != nil {
		return nil, fmt.Errorf("gpt: protective MBR at LBA 0: %w", err)
	}

	ph, pentries, perr := readCopy(r, 1, lastLBA)
	if perr == nil {
		t := &Table{SectorSize: SectorSize, DiskGUID: ph.diskGUID, Partitions: pentries}
		// The backup is read only to report damage: a verifier may boot
		// from a healthy primary, but the updater should learn that the
		// disk needs repair before the primary fails too.
		if ph.alternateLBA != lastLBA {
			t.Damage = append(t.Damage, fmt.Errorf("gpt: primary header says the backup is at LBA %d, not at the last LBA %d (disk resized?)", ph.alternateLBA, lastLBA))
		}
		if ph.alternateLBA > lastLBA {
			return t, nil
		}
		bh, _, berr := readCopy(r, ph.alternateLBA, lastLBA)
		switch {
		case berr != nil:
			t.Damage = append(t.Damage, fmt.Errorf("gpt: backup table damaged: %w", berr))
		case bh.diskGUID != ph.diskGUID || bh.entriesCRC != ph.entriesCRC ||
			bh.firstUsableLBA != ph.firstUsableLBA || bh.lastUsableLBA != ph.lastUsableLBA:
			t.Damage = append(t.Damage, errors.New("gpt: backup table differs from the primary"))
		}
		return t, nil
	}
	if isSector4096GPT(r) {
		return nil, fmt.Errorf("gpt: the table is laid out for 4096-byte sectors; only %d-byte sectors are supported", SectorSize)
	}

	candidates := []uint64{lastLBA}
	if alt, ok := primaryAlternate(r, lastLBA); ok && alt != lastLBA && alt <= lastLBA {
		candidates = append(candidates, alt)
	}
	var berrs []error
	for _, lba := range candidates {
		bh, bentries, berr := readCopy(r, lba, lastLBA)
		if berr != nil {
			berrs = append(berrs, berr)
			continue
		}
		return &Table{
			SectorSize: SectorSize,
			DiskGUID:   bh.diskGUID,
			Partitions: bentries,
			FromBackup: true,
			Damage:     []error{fmt.Errorf("gpt: primary table damaged, using the backup at LBA %d: %w", lba, perr)},
		}, nil
	}
	return nil, fmt.Errorf("gpt: %w: primary: %w; backup: %w", ErrNoTable, perr, errors.Join(berrs...))
}

// readCopy reads and checks one copy of the table (header at lba and its
// entry array).
func readCopy(r io.ReaderAt, lba, lastLBA uint64) (header, []Partition, error) {
	which := "backup"
	if lba == 1 {
		which = "primary"
	}
	sector := make([]byte, SectorSize)
	if err := readFull(r, sector, int64(lba)*SectorSize); err != nil {
		return header{}, nil, fmt.Errorf("%s header at LBA %d: %w", which, lba, err)
	}
	h, err := parseHeader(sector, lba, lastLBA)
	if err != nil {
		return header{}, nil, fmt.Errorf("%s header at LBA %d: %w", which, lba, err)
	}
	// Both factors were checked against MaxEntries and maxEntrySize.
	raw := make([]byte, int(h.numEntries)*int(h.entrySize))
	if err := readFull(r, raw, int64(h.entryLBA)*SectorSize); err != nil {
		return header{}, nil, fmt.Errorf("%s entries at LBA %d: %w", which, h.entryLBA, err)
	}
	if got := crc32.ChecksumIEEE(raw); got != h.entriesCRC {
		return header{}, nil, fmt.Errorf("%s entries at LBA %d: entry array CRC32 %#08x, header says %#08x", which, h.entryLBA, got, h.entriesCRC)
	}
	parts, err := parseEntries(raw, h)
	if err != nil {
		return header{}, nil, fmt.Errorf("%s entries at LBA %d: %w", which, h.entryLBA, err)
	}
	return h, parts, nil
}

// primaryAlternate returns the backup location a damaged primary claims,
// if the primary header itself is intact (only its entries are bad).
func primaryAlternate(r io.ReaderAt, lastLBA uint64) (uint64, bool) {
	sector := make([]byte, SectorSize)
	if readFull(r, sector, SectorSize) != nil {
		return 0, false
	}
	h, err := parseHeader(sector, 1, lastLBA)
	if err != nil {
		return 0, false
	}
	return h.alternateLBA, true
}

// isSector4096GPT reports whether a GPT signature sits where a 4Kn disk
// keeps its primary header, to turn "no table" into a precise refusal.
func isSector4096GPT(r io.ReaderAt) bool {
	b := make([]byte, len(signature))
	return readFull(r, b, 4096) == nil && string(b) == signature
}

// checkProtectiveMBR accepts any MBR with the boot signature and at least
// one 0xEE partition. Loosely, because hybrid MBRs and tools that size the
// 0xEE entry differently are common and harmless, but like Linux we do not
// look for a GPT on a disk whose MBR does not announce one.
func checkProtectiveMBR(mbr []byte) error {
	if mbr[510] != 0x55 || mbr[511] != 0xAA {
		return fmt.Errorf("boot signature %#02x %#02x, want 0x55 0xaa", mbr[510], mbr[511])
	}
	for i := range 4 {
		if mbr[446+16*i+4] == 0xEE {
			return nil
		}
	}
	return errors.New("no partition of type 0xEE: not a GPT disk")
}

// parseHeader decodes and checks a header sector that should sit at myLBA
// on a disk whose last sector is lastLBA.
func parseHeader(b []byte, myLBA, lastLBA uint64) (header, error) {
	le := binary.LittleEndian
	if string(b[0:8]) != signature {
		return header{}, fmt.Errorf("signature %q, want %q", b[0:8], signature)
	}
	if rev := le.Uint32(b[8:12]); rev != revision1_0 {
		return header{}, fmt.Errorf("revision %#08x, want %#08x (1.0)", rev, revision1_0)
	}
	hsize := le.Uint32(b[12:16])
	if hsize < headerSize || hsize > SectorSize {
		return header{}, fmt.Errorf("header size %d, want %d to %d", hsize, headerSize, SectorSize)
	}
	want := le.Uint32(b[16:20])
	tmp := make([]byte, hsize)
	copy(tmp, b[:hsize])
	clear(tmp[16:20])
	if got := crc32.ChecksumIEEE(tmp); got != want {
		return header{}, fmt.Errorf("header CRC32 %#08x, header says %#08x", got, want)
	}
	h := header{
		myLBA:          le.Uint64(b[24:32]),
		alternateLBA:   le.Uint64(b[32:40]),
		firstUsableLBA: le.Uint64(b[40:48]),
		lastUsableLBA:  le.Uint64(b[48:56]),
		diskGUID:       guidFromDisk(b[56:72]),
		entryLBA:       le.Uint64(b[72:80]),
		numEntries:     le.Uint32(b[80:84]),
		entrySize:      le.Uint32(b[84:88]),
		entriesCRC:     le.Uint32(b[88:92]),
	}
	if h.myLBA != myLBA {
		return header{}, fmt.Errorf("my LBA %d, but the header is at LBA %d", h.myLBA, myLBA)
	}
	if h.alternateLBA == h.myLBA || h.alternateLBA == 0 {
		return header{}, fmt.Errorf("alternate LBA %d", h.alternateLBA)
	}
	if h.numEntries > MaxEntries {
		return header{}, fmt.Errorf("entry count %d, more than %d", h.numEntries, MaxEntries)
	}
	if h.entrySize < entrySize || h.entrySize > maxEntrySize || h.entrySize&(h.entrySize-1) != 0 {
		return header{}, fmt.Errorf("entry size %d, want a power of two from %d to %d", h.entrySize, entrySize, maxEntrySize)
	}
	if h.firstUsableLBA < 2 || h.firstUsableLBA > h.lastUsableLBA || h.lastUsableLBA >= lastLBA {
		return header{}, fmt.Errorf("usable range LBA %d to %d does not fit between LBA 2 and %d", h.firstUsableLBA, h.lastUsableLBA, lastLBA-1)
	}
	// Everything is below 2^32 * 2^10 bytes per array and 2^64 sectors, but
	// entryLBA is arbitrary: compare without adding to it.
	arraySectors := (uint64(h.numEntries)*uint64(h.entrySize) + SectorSize - 1) / SectorSize
	if h.entryLBA < 1 || h.entryLBA > lastLBA || arraySectors > lastLBA-h.entryLBA+1 {
		return header{}, fmt.Errorf("entry array at LBA %d (%d sectors) is outside the disk", h.entryLBA, arraySectors)
	}
	arrayEnd := h.entryLBA + arraySectors // exclusive
	if arraySectors > 0 {
		if h.entryLBA <= myLBA && myLBA < arrayEnd {
			return header{}, fmt.Errorf("entry array at LBA %d (%d sectors) overlaps the header", h.entryLBA, arraySectors)
		}
		if h.entryLBA <= h.lastUsableLBA && h.firstUsableLBA < arrayEnd {
			return header{}, fmt.Errorf("entry array at LBA %d (%d sectors) overlaps the usable range LBA %d to %d", h.entryLBA, arraySectors, h.firstUsableLBA, h.lastUsableLBA)
		}
	}
	return h, nil
}

// parseEntries decodes the used entries and checks each lies in the usable
// range and that none overlap.
func parseEntries(raw []byte, h header) ([]Partition, error) {
	le := binary.LittleEndian
	var parts []Partition
	var numbers []int // 1-based entry number of each part, for messages
	for i := range int(h.numEntries) {
		e := raw[i*int(h.entrySize):][:entrySize]
		typ := guidFromDisk(e[0:16])
		if typ.IsZero() {
			continue
		}
		p := Partition{
			Type:       typ,
			GUID:       guidFromDisk(e[16:32]),
			FirstLBA:   le.Uint64(e[32:40]),
			LastLBA:    le.Uint64(e[40:48]),
			Attributes: le.Uint64(e[48:56]),
			Name:       decodeName(e[56:128]),
		}
		if p.LastLBA < p.FirstLBA {
			return nil, fmt.Errorf("partition entry %d: last LBA %d before first LBA %d", i+1, p.LastLBA, p.FirstLBA)
		}
		if p.FirstLBA < h.firstUsableLBA || p.LastLBA > h.lastUsableLBA {
			return nil, fmt.Errorf("partition entry %d: LBA %d to %d outside the usable range LBA %d to %d", i+1, p.FirstLBA, p.LastLBA, h.firstUsableLBA, h.lastUsableLBA)
		}
		parts = append(parts, p)
		numbers = append(numbers, i+1)
	}
	if a, b, ok := findOverlap(parts); ok {
		return nil, fmt.Errorf("partition entries %d and %d overlap (LBA %d to %d and %d to %d)",
			numbers[a], numbers[b], parts[a].FirstLBA, parts[a].LastLBA, parts[b].FirstLBA, parts[b].LastLBA)
	}
	return parts, nil
}

// findOverlap returns the indexes of two overlapping partitions, in index
// order, if there are any.
func findOverlap(parts []Partition) (int, int, bool) {
	order := make([]int, len(parts))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		if parts[a].FirstLBA != parts[b].FirstLBA {
			if parts[a].FirstLBA < parts[b].FirstLBA {
				return -1
			}
			return 1
		}
		return a - b
	})
	for k := 1; k < len(order); k++ {
		prev, cur := order[k-1], order[k]
		if parts[cur].FirstLBA <= parts[prev].LastLBA {
			return min(prev, cur), max(prev, cur), true
		}
	}
	return 0, 0, false
}

// decodeName decodes a NUL-terminated UTF-16LE name field; unpaired
// surrogates become U+FFFD rather than an error because the name is only
// compared, never trusted.
func decodeName(b []byte) string {
	units := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		u := binary.LittleEndian.Uint16(b[i:])
		if u == 0 {
			break
		}
		units = append(units, u)
	}
	return string(utf16.Decode(units))
}

// readFull reads len(p) bytes at off, accepting io.EOF together with a
// full read as io.ReaderAt allows.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("reading %d bytes at offset %d: %w", len(p), off, err)
}

// hasNUL reports whether s contains a NUL, which would end the name early
// when read back.
func hasNUL(s string) bool { return bytes.IndexByte([]byte(s), 0) >= 0 }

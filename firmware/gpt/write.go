package gpt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"unicode/utf16"
)

// Spec asks Layout for one partition.
type Spec struct {
	// Name is the label, unique within the table, at most 36 UTF-16 code
	// units.
	Name string
	// Size is the length in bytes, a multiple of 512; 0 means the rest of
	// the disk and is allowed only for the last spec.
	Size int64
	// Type is the partition type GUID; it must not be zero.
	Type GUID
}

// Layout places specs in order on a disk of diskSize bytes, each starting
// on a 1 MiB boundary. The disk GUID and every partition GUID are derived
// from seed (and the partition's name), so the same arguments always give
// the same table; use a different seed per product line if disks of
// different products must be told apart by GUID.
func Layout(seed string, diskSize int64, specs []Spec) (*Table, error) {
	first, last, err := usableRange(diskSize)
	if err != nil {
		return nil, err
	}
	if len(specs) > MaxEntries {
		return nil, fmt.Errorf("gpt: layout: %d partitions, more than %d", len(specs), MaxEntries)
	}
	const align = Alignment / SectorSize
	t := &Table{SectorSize: SectorSize, DiskGUID: deriveGUID("boxswarm gpt disk", seed)}
	next := first
	names := make(map[string]bool, len(specs))
	for i, s := range specs {
		if err := checkName(s.Name); err != nil {
			return nil, fmt.Errorf("gpt: layout: spec %d: %w", i, err)
		}
		// Find refuses duplicate labels, and the derived GUIDs would
		// collide too.
		if names[s.Name] {
			return nil, fmt.Errorf("gpt: layout: partition %q: duplicate name", s.Name)
		}
		names[s.Name] = true
		if s.Type.IsZero() {
			return nil, fmt.Errorf("gpt: layout: partition %q: zero type GUID (that marks an unused entry)", s.Name)
		}
		if s.Size < 0 || s.Size%SectorSize != 0 {
			return nil, fmt.Errorf("gpt: layout: partition %q: size %d is not a non-negative multiple of %d", s.Name, s.Size, SectorSize)
		}
		if s.Size == 0 && i != len(specs)-1 {
			return nil, fmt.Errorf("gpt: layout: partition %q: size 0 (rest of disk) is allowed only for the last partition", s.Name)
		}
		start := (next + align - 1) / align * align
		if start > last {
			return nil, fmt.Errorf("gpt: layout: partition %q: no room left on a %d-byte disk", s.Name, diskSize)
		}
		end := last
		if s.Size > 0 {
			n := uint64(s.Size / SectorSize)
			if n > last-start+1 {
				return nil, fmt.Errorf("gpt: layout: partition %q: %d bytes at LBA %d do not fit before the last usable LBA %d", s.Name, s.Size, start, last)
			}
			end = start + n - 1
		}
		t.Partitions = append(t.Partitions, Partition{
			Name:     s.Name,
			Type:     s.Type,
			GUID:     deriveGUID("boxswarm gpt partition", seed, s.Name),
			FirstLBA: start,
			LastLBA:  end,
		})
		next = end + 1
	}
	if err := checkTable(t, first, last); err != nil {
		return nil, fmt.Errorf("gpt: layout: %w", err)
	}
	return t, nil
}

// usableRange returns the usable LBA range of a disk of diskSize bytes with
// tables of MaxEntries entries.
func usableRange(diskSize int64) (first, last uint64, err error) {
	if diskSize%SectorSize != 0 {
		return 0, 0, fmt.Errorf("gpt: disk size %d: not a multiple of %d", diskSize, SectorSize)
	}
	if diskSize < minWriteDisk {
		return 0, 0, fmt.Errorf("gpt: disk size %d: smaller than the %d bytes two tables need", diskSize, minWriteDisk)
	}
	lastLBA := uint64(diskSize/SectorSize) - 1
	return firstUsable, lastLBA - 1 - entrySectors, nil
}

// checkName checks that a label survives the trip through the 72-byte
// UTF-16 name field unchanged.
func checkName(name string) error {
	if name == "" {
		return errors.New("empty name")
	}
	if hasNUL(name) {
		return fmt.Errorf("name %q contains NUL", name)
	}
	if n := len(utf16.Encode([]rune(name))); n > maxNameUnits {
		return fmt.Errorf("name %q is %d UTF-16 code units, more than %d", name, n, maxNameUnits)
	}
	if decodeName(encodeName(name)) != name {
		return fmt.Errorf("name %q is not valid UTF-8", name)
	}
	return nil
}

// checkTable checks what Write needs: encodable names, non-zero types, and
// partitions inside [first, last] that do not overlap.
func checkTable(t *Table, first, last uint64) error {
	if t.SectorSize != 0 && t.SectorSize != SectorSize {
		return fmt.Errorf("sector size %d: only %d is supported", t.SectorSize, SectorSize)
	}
	if len(t.Partitions) > MaxEntries {
		return fmt.Errorf("%d partitions, more than %d", len(t.Partitions), MaxEntries)
	}
	for i, p := range t.Partitions {
		if err := checkName(p.Name); err != nil {
			return fmt.Errorf("partition %d: %w", i, err)
		}
		if p.Type.IsZero() {
			return fmt.Errorf("partition %d (%q): zero type GUID (that marks an unused entry)", i, p.Name)
		}
		if p.LastLBA < p.FirstLBA {
			return fmt.Errorf("partition %d (%q): last LBA %d before first LBA %d", i, p.Name, p.LastLBA, p.FirstLBA)
		}
		if p.FirstLBA < first || p.LastLBA > last {
			return fmt.Errorf("partition %d (%q): LBA %d to %d outside the usable range LBA %d to %d", i, p.Name, p.FirstLBA, p.LastLBA, first, last)
		}
	}
	if a, b, ok := findOverlap(t.Partitions); ok {
		return fmt.Errorf("partitions %d (%q) and %d (%q) overlap", a, t.Partitions[a].Name, b, t.Partitions[b].Name)
	}
	return nil
}

// Write writes t to a disk of diskSize bytes: the protective MBR at LBA 0,
// the primary header and MaxEntries entries at LBA 1 and 2, and the backup
// entries and header in the last 33 sectors. It writes nothing else, so the
// partitions' contents are untouched; writing past the end of a shorter
// image file extends it. The backup is written first and the primary last,
// so that a Write interrupted on a live disk leaves at least one table that
// Read accepts.
func Write(w io.WriterAt, diskSize int64, t *Table) error {
	first, last, err := usableRange(diskSize)
	if err != nil {
		return err
	}
	if err := checkTable(t, first, last); err != nil {
		return fmt.Errorf("gpt: write: %w", err)
	}
	for _, s := range encodeTable(diskSize, t, MaxEntries) {
		if _, err := w.WriteAt(s.data, s.off); err != nil {
			return fmt.Errorf("gpt: write: %d bytes at offset %d: %w", len(s.data), s.off, err)
		}
	}
	return nil
}

// segment is a run of bytes to write at an offset.
type segment struct {
	off  int64
	data []byte
}

// encodeTable returns the sectors of a table with numEntries entries, in the
// order to write them. t must have passed checkTable. Tests use a small
// numEntries to make tiny disks for fuzzing seeds.
func encodeTable(diskSize int64, t *Table, numEntries int) []segment {
	le := binary.LittleEndian
	lastLBA := uint64(diskSize/SectorSize) - 1
	arraySectors := uint64((numEntries*entrySize + SectorSize - 1) / SectorSize)

	entries := make([]byte, arraySectors*SectorSize)
	for i, p := range t.Partitions {
		e := entries[i*entrySize : (i+1)*entrySize]
		p.Type.putDisk(e[0:16])
		p.GUID.putDisk(e[16:32])
		le.PutUint64(e[32:40], p.FirstLBA)
		le.PutUint64(e[40:48], p.LastLBA)
		le.PutUint64(e[48:56], p.Attributes)
		copy(e[56:128], encodeName(p.Name))
	}
	entriesCRC := crc32.ChecksumIEEE(entries[:numEntries*entrySize])

	hdr := func(my, alt, entryLBA uint64) []byte {
		b := make([]byte, SectorSize)
		copy(b[0:8], signature)
		le.PutUint32(b[8:12], revision1_0)
		le.PutUint32(b[12:16], headerSize)
		le.PutUint64(b[24:32], my)
		le.PutUint64(b[32:40], alt)
		le.PutUint64(b[40:48], 2+arraySectors)
		le.PutUint64(b[48:56], lastLBA-1-arraySectors)
		t.DiskGUID.putDisk(b[56:72])
		le.PutUint64(b[72:80], entryLBA)
		le.PutUint32(b[80:84], uint32(numEntries))
		le.PutUint32(b[84:88], entrySize)
		le.PutUint32(b[88:92], entriesCRC)
		le.PutUint32(b[16:20], crc32.ChecksumIEEE(b[:headerSize]))
		return b
	}

	mbr := make([]byte, SectorSize)
	pe := mbr[446:462]
	// CHS fields as every tool writes them: start 0/0/2, end "too big".
	copy(pe[1:4], []byte{0x00, 0x02, 0x00})
	pe[4] = 0xEE
	copy(pe[5:8], []byte{0xFF, 0xFF, 0xFF})
	le.PutUint32(pe[8:12], 1)
	le.PutUint32(pe[12:16], uint32(min(lastLBA, 0xFFFFFFFF)))
	mbr[510], mbr[511] = 0x55, 0xAA

	backupEntryLBA := lastLBA - arraySectors
	return []segment{
		{int64(backupEntryLBA) * SectorSize, entries},
		{int64(lastLBA) * SectorSize, hdr(lastLBA, 1, backupEntryLBA)},
		{2 * SectorSize, entries},
		{SectorSize, hdr(1, lastLBA, 2)},
		{0, mbr},
	}
}

// encodeName returns the 72-byte UTF-16LE name field for name, truncated
// to fit (checkName refuses names that would be truncated).
func encodeName(name string) []byte {
	b := make([]byte, 2*maxNameUnits)
	for i, u := range utf16.Encode([]rune(name)) {
		if i >= maxNameUnits {
			break
		}
		binary.LittleEndian.PutUint16(b[2*i:], u)
	}
	return b
}

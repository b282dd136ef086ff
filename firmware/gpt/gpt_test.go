package gpt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"slices"
	"strings"
	"testing"
)

// memDisk is an in-memory disk image that grows on write like a file.
type memDisk struct{ b []byte }

func (m *memDisk) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, errors.New("read past end")
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, errors.New("short read")
	}
	return n, nil
}

func (m *memDisk) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	return copy(m.b[off:], p), nil
}

const mib = 1 << 20

// boxSpecs is the box's layout with slots of slotMiB.
func boxSpecs(slotMiB int64) []Spec {
	slot := MustParseGUID(TypeBoxswarmSlot)
	return []Spec{
		{Name: "slot_a", Size: slotMiB * mib, Type: slot},
		{Name: "slot_b", Size: slotMiB * mib, Type: slot},
		{Name: "bootctl", Size: 1 * mib, Type: MustParseGUID(TypeBoxswarmBootctl)},
		{Name: "data", Size: 0, Type: MustParseGUID(TypeLinuxData)},
	}
}

// bakedDisk returns a diskSize image with the box layout written to it,
// with 16 MiB slots if the disk is large enough, 1 MiB ones otherwise.
func bakedDisk(t *testing.T, diskSize int64) (*Table, []byte) {
	t.Helper()
	slotMiB := int64(16)
	if diskSize < 40*mib {
		slotMiB = 1
	}
	tab, err := Layout("test", diskSize, boxSpecs(slotMiB))
	if err != nil {
		t.Fatal(err)
	}
	d := &memDisk{b: make([]byte, diskSize)}
	if err := Write(d, diskSize, tab); err != nil {
		t.Fatal(err)
	}
	return tab, d.b
}

func TestRoundTrip(t *testing.T) {
	const size = 64 * mib
	want, img := bakedDisk(t, size)
	got, err := Read(bytes.NewReader(img), size)
	if err != nil {
		t.Fatal(err)
	}
	if got.FromBackup || len(got.Damage) != 0 {
		t.Errorf("healthy disk: FromBackup=%v Damage=%v", got.FromBackup, got.Damage)
	}
	if got.DiskGUID != want.DiskGUID || !slices.Equal(got.Partitions, want.Partitions) || got.SectorSize != SectorSize {
		t.Errorf("read back\n%+v\nwant\n%+v", got, want)
	}
	for _, c := range []struct {
		name         string
		offset, size int64
	}{
		{"slot_a", 1 * mib, 16 * mib},
		{"slot_b", 17 * mib, 16 * mib},
		{"bootctl", 33 * mib, 1 * mib},
		{"data", 34 * mib, size - 34*mib - 33*SectorSize},
	} {
		p, err := got.Find(c.name)
		if err != nil {
			t.Fatal(err)
		}
		if p.Offset() != c.offset || p.Size() != c.size {
			t.Errorf("%s: offset %d size %d, want %d %d", c.name, p.Offset(), p.Size(), c.offset, c.size)
		}
	}
}

func TestReproducible(t *testing.T) {
	_, a := bakedDisk(t, 40*mib)
	_, b := bakedDisk(t, 40*mib)
	if !bytes.Equal(a, b) {
		t.Fatal("two bakes of the same layout differ")
	}
	tab, err := Layout("test", 40*mib, boxSpecs(16))
	if err != nil {
		t.Fatal(err)
	}
	// Pinned so that a change to the derivation, which would change every
	// baked image, is a deliberate one.
	if got, want := tab.DiskGUID.String(), "68FC7B6A-9EE3-89A2-8B2E-C4680C7C8A41"; got != want {
		t.Errorf("disk GUID %s, want %s", got, want)
	}
	other, err := Layout("other", 40*mib, boxSpecs(16))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[GUID]bool{tab.DiskGUID: true, other.DiskGUID: true}
	for _, p := range append(tab.Partitions, other.Partitions...) {
		seen[p.GUID] = true
		if p.GUID[6]>>4 != 8 || p.GUID[8]>>6 != 2 {
			t.Errorf("%s: GUID %s is not RFC 9562 version 8", p.Name, p.GUID)
		}
	}
	if len(seen) != 10 {
		t.Errorf("%d distinct GUIDs over two seeds, want 10", len(seen))
	}
}

func TestGUIDText(t *testing.T) {
	g, err := ParseGUID("0fc63daf-8483-4772-8e79-3d69d8477de4")
	if err != nil {
		t.Fatal(err)
	}
	if g.String() != TypeLinuxData {
		t.Errorf("String() = %s", g)
	}
	var disk [16]byte
	g.putDisk(disk[:])
	// The on-disk form of the Linux data type, as in every GPT.
	want := []byte{0xAF, 0x3D, 0xC6, 0x0F, 0x83, 0x84, 0x72, 0x47, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4}
	if !bytes.Equal(disk[:], want) || guidFromDisk(disk[:]) != g {
		t.Errorf("on disk % x", disk)
	}
	for _, bad := range []string{"", "0fc63daf84834772-8e79-3d69d8477de4x", "0fc63daf-8483-4772-8e79-3d69d8477dz4"} {
		if _, err := ParseGUID(bad); err == nil {
			t.Errorf("ParseGUID(%q) succeeded", bad)
		}
	}
}

// copyAt locates one copy of a table within an image made by bakedDisk.
type copyAt struct {
	name      string
	headerLBA int64
	entryLBA  int64
}

func copies(size int64) []copyAt {
	last := size/SectorSize - 1
	return []copyAt{{"primary", 1, 2}, {"backup", last, last - 32}}
}

// mutate changes one copy of the table in img; with fix set it then
// recomputes the entry array and header CRCs so that only the field
// check under test can fail.
func mutate(img []byte, c copyAt, fix bool, f func(h, e []byte)) {
	h := img[c.headerLBA*SectorSize:][:SectorSize]
	e := img[c.entryLBA*SectorSize:][:MaxEntries*entrySize]
	f(h, e)
	if fix {
		le := binary.LittleEndian
		le.PutUint32(h[88:92], crc32.ChecksumIEEE(e))
		clear(h[16:20])
		le.PutUint32(h[16:20], crc32.ChecksumIEEE(h[:headerSize]))
	}
}

func TestCorruption(t *testing.T) {
	le := binary.LittleEndian
	const size = 8 * mib
	cases := []struct {
		name   string
		fix    bool
		mutate func(h, e []byte)
		want   string
	}{
		{"signature", true, func(h, e []byte) { copy(h, "EFI HART") }, `signature "EFI HART"`},
		{"revision", true, func(h, e []byte) { le.PutUint32(h[8:], 0x00020000) }, "revision 0x00020000"},
		{"header size small", true, func(h, e []byte) { le.PutUint32(h[12:], 91) }, "header size 91"},
		{"header size large", true, func(h, e []byte) { le.PutUint32(h[12:], 513) }, "header size 513"},
		{"header CRC", false, func(h, e []byte) { h[16] ^= 1 }, "header CRC32"},
		{"header byte", false, func(h, e []byte) { h[60] ^= 1 }, "header CRC32"},
		{"my LBA", true, func(h, e []byte) { le.PutUint64(h[24:], 5) }, "my LBA 5"},
		{"alternate LBA", true, func(h, e []byte) { le.PutUint64(h[32:], 0) }, "alternate LBA 0"},
		{"usable range inverted", true, func(h, e []byte) { le.PutUint64(h[40:], 1<<20) }, "usable range LBA 1048576"},
		{"usable past disk", true, func(h, e []byte) { le.PutUint64(h[48:], 1<<40) }, "does not fit"},
		{"entry count huge", true, func(h, e []byte) { le.PutUint32(h[80:], 0xFFFFFFFF) }, "entry count 4294967295, more than 128"},
		{"entry count 129", true, func(h, e []byte) { le.PutUint32(h[80:], 129) }, "entry count 129"},
		{"entry size small", true, func(h, e []byte) { le.PutUint32(h[84:], 64) }, "entry size 64"},
		{"entry size odd", true, func(h, e []byte) { le.PutUint32(h[84:], 129) }, "entry size 129"},
		{"entry size huge", true, func(h, e []byte) { le.PutUint32(h[84:], 1<<31) }, "entry size 2147483648"},
		{"entry array outside disk", true, func(h, e []byte) { le.PutUint64(h[72:], 1<<40) }, "outside the disk"},
		{"entry array at end", true, func(h, e []byte) { le.PutUint64(h[72:], size/SectorSize-2) }, "outside the disk"},
		{"entry array in usable range", true, func(h, e []byte) { le.PutUint64(h[72:], 2048) }, "overlaps the usable range"},
		{"entries CRC", false, func(h, e []byte) { e[40] ^= 1 }, "entry array CRC32"},
		{"entries CRC field", false, func(h, e []byte) { h[88] ^= 1 }, "header CRC32"},
		{"last before first", true, func(h, e []byte) { le.PutUint64(e[128+40:], 2) }, "partition entry 2: last LBA 2 before first LBA 4096"},
		{"before usable", true, func(h, e []byte) { le.PutUint64(e[32:], 10) }, "partition entry 1: LBA 10 to 4095 outside the usable range LBA 34 to"},
		{"after usable", true, func(h, e []byte) { le.PutUint64(e[3*128+40:], size/SectorSize-1) }, "partition entry 4: LBA"},
		{"overlap", true, func(h, e []byte) { le.PutUint64(e[128+32:], 4095) }, "partition entries 1 and 2 overlap"},
		{"overlap out of order", true, func(h, e []byte) {
			copy(e[5*128:6*128], e[0:128])
			le.PutUint64(e[5*128+32:], 5000)
			le.PutUint64(e[5*128+40:], 5000)
		}, "partition entries 2 and 6 overlap"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, pristine := bakedDisk(t, size)
			cp := copies(size)

			img := bytes.Clone(pristine)
			mutate(img, cp[0], c.fix, c.mutate)
			got, err := Read(bytes.NewReader(img), size)
			if err != nil {
				t.Fatalf("primary damaged: %v", err)
			}
			if !got.FromBackup || len(got.Damage) != 1 || !strings.Contains(got.Damage[0].Error(), c.want) ||
				!slices.Equal(got.Partitions, want.Partitions) {
				t.Errorf("primary damaged: FromBackup=%v Damage=%v, want the backup and %q", got.FromBackup, got.Damage, c.want)
			}

			img = bytes.Clone(pristine)
			mutate(img, cp[1], c.fix, c.mutate)
			got, err = Read(bytes.NewReader(img), size)
			if err != nil {
				t.Fatalf("backup damaged: %v", err)
			}
			if got.FromBackup || len(got.Damage) != 1 || !strings.Contains(got.Damage[0].Error(), c.want) {
				t.Errorf("backup damaged: FromBackup=%v Damage=%v, want the primary and %q", got.FromBackup, got.Damage, c.want)
			}

			mutate(img, cp[0], c.fix, c.mutate)
			_, err = Read(bytes.NewReader(img), size)
			if err == nil || !errors.Is(err, ErrNoTable) || strings.Count(err.Error(), c.want) != 2 {
				t.Errorf("both damaged: %v, want ErrNoTable and %q twice", err, c.want)
			}
			t.Log(err)
		})
	}
}

func TestProtectiveMBR(t *testing.T) {
	const size = 8 * mib
	cases := []struct {
		name   string
		mutate func(mbr []byte)
		want   string // empty: Read succeeds
	}{
		{"ours", func([]byte) {}, ""},
		{"hybrid", func(m []byte) {
			copy(m[446+16:], m[446:462])
			m[446+4] = 0x0C // FAT32 first, 0xEE second: a hybrid MBR
		}, ""},
		{"no boot signature", func(m []byte) { m[511] = 0 }, "boot signature"},
		{"MBR-only disk", func(m []byte) { m[446+4] = 0x83 }, "no partition of type 0xEE"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, img := bakedDisk(t, size)
			c.mutate(img[:SectorSize])
			_, err := Read(bytes.NewReader(img), size)
			if c.want == "" && err != nil {
				t.Fatal(err)
			}
			if c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

func TestReadOddDisks(t *testing.T) {
	t.Run("grown", func(t *testing.T) {
		_, img := bakedDisk(t, 8*mib)
		img = append(img, make([]byte, 10*mib)...)
		got, err := Read(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			t.Fatal(err)
		}
		if got.FromBackup || len(got.Damage) != 1 || !strings.Contains(got.Damage[0].Error(), "not at the last LBA") {
			t.Errorf("FromBackup=%v Damage=%v", got.FromBackup, got.Damage)
		}
		// Damage the primary's entries but not its header: the backup
		// is found where the primary header says, not at the end.
		img[2*SectorSize+40] ^= 1
		got, err = Read(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			t.Fatal(err)
		}
		if !got.FromBackup || len(got.Partitions) != 4 {
			t.Errorf("FromBackup=%v Damage=%v", got.FromBackup, got.Damage)
		}
	})
	t.Run("4096-byte sectors", func(t *testing.T) {
		_, img := bakedDisk(t, 8*mib)
		copy(img[4096:], img[SectorSize:2*SectorSize])
		clear(img[SectorSize : 2*SectorSize])
		clear(img[len(img)-SectorSize:])
		_, err := Read(bytes.NewReader(img), int64(len(img)))
		if err == nil || !strings.Contains(err.Error(), "4096-byte sectors") {
			t.Errorf("error %v, want a refusal of 4096-byte sectors", err)
		}
	})
	t.Run("tiny", func(t *testing.T) {
		_, err := Read(bytes.NewReader(make([]byte, 1024)), 1024)
		if err == nil || !strings.Contains(err.Error(), "disk size 1024") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("short reader", func(t *testing.T) {
		_, img := bakedDisk(t, 40*mib)
		got, err := Read(bytes.NewReader(img[:20*mib]), 40*mib)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Damage) != 1 || !strings.Contains(got.Damage[0].Error(), "backup table damaged: backup header at LBA 81919: reading 512 bytes") {
			t.Errorf("Damage=%v", got.Damage)
		}
		_, err = Read(bytes.NewReader(img[:512]), 40*mib)
		if err == nil || !strings.Contains(err.Error(), "primary header at LBA 1: reading 512 bytes at offset 512") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("all zero", func(t *testing.T) {
		_, err := Read(bytes.NewReader(make([]byte, mib)), mib)
		if err == nil || !strings.Contains(err.Error(), "protective MBR") {
			t.Fatalf("error %v", err)
		}
	})
}

func TestFind(t *testing.T) {
	tab := &Table{Partitions: []Partition{{Name: "slot_a", FirstLBA: 1}, {Name: "x"}, {Name: "x"}}}
	if p, err := tab.Find("slot_a"); err != nil || p.FirstLBA != 1 {
		t.Errorf("Find(slot_a) = %+v, %v", p, err)
	}
	if _, err := tab.Find("slot_b"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"slot_b"`) {
		t.Errorf("Find(slot_b): %v", err)
	}
	if _, err := tab.Find("x"); !errors.Is(err, ErrDuplicate) {
		t.Errorf("Find(x): %v", err)
	}
}

func TestLayoutErrors(t *testing.T) {
	typ := MustParseGUID(TypeLinuxData)
	cases := []struct {
		name  string
		size  int64
		specs []Spec
		want  string
	}{
		{"odd disk size", 40*mib + 1, nil, "not a multiple of 512"},
		{"tiny disk", 20 * 1024, nil, "smaller than"},
		{"rest not last", 40 * mib, []Spec{{"a", 0, typ}, {"b", mib, typ}}, "only for the last"},
		{"negative size", 40 * mib, []Spec{{"a", -512, typ}}, "size -512"},
		{"unaligned size", 40 * mib, []Spec{{"a", 1000, typ}}, "size 1000"},
		{"too big", 40 * mib, []Spec{{"a", 40 * mib, typ}}, "do not fit"},
		{"no room", 40 * mib, []Spec{{"a", 38*mib + 512, typ}, {"b", 0, typ}}, "no room"},
		{"empty name", 40 * mib, []Spec{{"", mib, typ}}, "empty name"},
		{"long name", 40 * mib, []Spec{{strings.Repeat("n", 37), mib, typ}}, "37 UTF-16 code units"},
		{"NUL in name", 40 * mib, []Spec{{"a\x00b", mib, typ}}, "NUL"},
		{"bad UTF-8", 40 * mib, []Spec{{"a\xffb", mib, typ}}, "UTF-8"},
		{"zero type", 40 * mib, []Spec{{"a", mib, [16]byte{}}}, "zero type"},
		{"duplicate", 40 * mib, []Spec{{"a", mib, typ}, {"a", mib, typ}}, "duplicate"},
		{"fits exactly", 40 * mib, []Spec{{"a", 38 * mib, typ}, {"b", 0, typ}}, ""},
		{"36 units", 40 * mib, []Spec{{strings.Repeat("é", 36), mib, typ}}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tab, err := Layout("s", c.size, c.specs)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				d := &memDisk{}
				if err := Write(d, c.size, tab); err != nil {
					t.Fatal(err)
				}
				got, err := Read(bytes.NewReader(d.b), c.size)
				if err != nil || !slices.Equal(got.Partitions, tab.Partitions) {
					t.Fatalf("read back %+v, %v", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

func TestWriteErrors(t *testing.T) {
	const size = 40 * mib
	typ := MustParseGUID(TypeLinuxData)
	cases := []struct {
		name string
		tab  Table
		want string
	}{
		{"sector size", Table{SectorSize: 4096}, "sector size 4096: only 512"},
		{"before usable", Table{Partitions: []Partition{{Name: "a", Type: typ, FirstLBA: 33, LastLBA: 40}}}, "outside the usable range"},
		{"after usable", Table{Partitions: []Partition{{Name: "a", Type: typ, FirstLBA: 34, LastLBA: size/SectorSize - 33}}}, "outside the usable range"},
		{"inverted", Table{Partitions: []Partition{{Name: "a", Type: typ, FirstLBA: 40, LastLBA: 39}}}, "last LBA 39 before first LBA 40"},
		{"overlap", Table{Partitions: []Partition{{Name: "a", Type: typ, FirstLBA: 40, LastLBA: 50}, {Name: "b", Type: typ, FirstLBA: 50, LastLBA: 60}}}, `partitions 0 ("a") and 1 ("b") overlap`},
		{"zero type", Table{Partitions: []Partition{{Name: "a", FirstLBA: 40, LastLBA: 50}}}, "zero type"},
		{"too many", Table{Partitions: make([]Partition, 129)}, "129 partitions"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Write(&memDisk{}, size, &c.tab)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

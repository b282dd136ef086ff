package gpt

import (
	"bytes"
	"testing"
)

// tinyDisk makes a valid disk of sectors sectors whose tables have
// numEntries entries, small enough for the fuzzer to mutate quickly.
func tinyDisk(t testing.TB, sectors int64, numEntries int, parts []Partition) []byte {
	tab := &Table{DiskGUID: deriveGUID("tiny", "disk"), Partitions: parts}
	arraySectors := uint64((numEntries*entrySize + SectorSize - 1) / SectorSize)
	if err := checkTable(tab, 2+arraySectors, uint64(sectors)-2-arraySectors); err != nil {
		t.Fatal(err)
	}
	d := &memDisk{b: make([]byte, sectors*SectorSize)}
	for _, s := range encodeTable(sectors*SectorSize, tab, numEntries) {
		if _, err := d.WriteAt(s.data, s.off); err != nil {
			t.Fatal(err)
		}
	}
	return d.b
}

func tinyParts() []Partition {
	typ := MustParseGUID(TypeLinuxData)
	return []Partition{
		{Name: "slot_a", Type: typ, GUID: deriveGUID("tiny", "a"), FirstLBA: 3, LastLBA: 3},
		{Name: "slot_b", Type: typ, GUID: deriveGUID("tiny", "b"), FirstLBA: 4, LastLBA: 5, Attributes: 1 << 60},
	}
}

func TestTinyDisk(t *testing.T) {
	img := tinyDisk(t, 8, 4, tinyParts())
	tab, err := Read(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.Partitions) != 2 || len(tab.Damage) != 0 {
		t.Fatalf("%+v", tab)
	}
}

// FuzzRead checks that Read never panics and that whatever it accepts
// keeps the package's promises: partitions inside the disk, past the
// primary table, and not overlapping.
func FuzzRead(f *testing.F) {
	f.Add(tinyDisk(f, 8, 4, tinyParts()))
	f.Fuzz(func(t *testing.T, disk []byte) {
		size := int64(len(disk))
		tab, err := Read(bytes.NewReader(disk), size)
		if err != nil {
			if tab != nil {
				t.Fatal("table returned with an error")
			}
			return
		}
		for i, p := range tab.Partitions {
			if p.Type.IsZero() || p.FirstLBA > p.LastLBA || p.FirstLBA < 2 || p.Size() <= 0 || p.Offset()+p.Size() > size-SectorSize {
				t.Fatalf("partition %d out of bounds on a %d-byte disk: %+v", i, size, p)
			}
			if _, err := tab.Find(p.Name); err != nil && len(tab.Partitions) == 1 {
				t.Fatalf("Find(%q): %v", p.Name, err)
			}
		}
		if a, b, ok := findOverlap(tab.Partitions); ok {
			t.Fatalf("partitions %d and %d overlap", a, b)
		}
		if tab.FromBackup && len(tab.Damage) == 0 {
			t.Fatal("backup used without saying why")
		}
	})
}

// Package slotdisk is the layout of a box's disk: a GPT with the two
// firmware slots, the boot-control partition and the data partition, found
// by their labels wherever they lie.
package slotdisk

import (
	"fmt"
	"io"
	"os"

	"github.com/boxswarm/boxswarm/firmware/bootctl"
	"github.com/boxswarm/boxswarm/firmware/gpt"
)

// Partition labels.
const (
	LabelSlotA   = "slot_a"
	LabelSlotB   = "slot_b"
	LabelBootctl = "bootctl"
	LabelData    = "data"
)

// SlotLabel returns the partition label of a slot.
func SlotLabel(s bootctl.Slot) string {
	if s == bootctl.SlotB {
		return LabelSlotB
	}
	return LabelSlotA
}

// Device is a box's disk or a disk image, read and written in place.
type Device interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Size() int64
}

// File is a disk image file (or any file) used as a Device.
type File struct{ *os.File }

// OpenFile opens a disk image for reading and writing.
func OpenFile(path string) (File, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	return File{f}, err
}

// Size returns the file's current size, 0 if it cannot be read.
func (f File) Size() int64 {
	st, err := f.Stat()
	if err != nil {
		return 0
	}
	return st.Size()
}

// Layout is where the firmware's partitions lie on a disk.
type Layout struct {
	Slots   [2]gpt.Partition // indexed by bootctl.Slot
	Bootctl gpt.Partition
}

// ReadLayout reads the partition table of a disk of size bytes and finds
// the firmware partitions.
func ReadLayout(r io.ReaderAt, size int64) (Layout, error) {
	t, err := gpt.Read(r, size)
	if err != nil {
		return Layout{}, err
	}
	var l Layout
	for _, s := range []bootctl.Slot{bootctl.SlotA, bootctl.SlotB} {
		if l.Slots[s], err = t.Find(SlotLabel(s)); err != nil {
			return Layout{}, fmt.Errorf("firmware slot %s: %w", s, err)
		}
	}
	if l.Bootctl, err = t.Find(LabelBootctl); err != nil {
		return Layout{}, fmt.Errorf("boot control: %w", err)
	}
	return l, nil
}

// Slot returns a reader over one slot partition.
func (l Layout) Slot(r io.ReaderAt, s bootctl.Slot) *io.SectionReader {
	p := l.Slots[s]
	return io.NewSectionReader(r, p.Offset(), p.Size())
}

// LoadState reads the boot-control record.
func (l Layout) LoadState(r io.ReaderAt) (bootctl.State, error) {
	return bootctl.Load(r, l.Bootctl.Offset())
}

// SaveState writes the boot-control record durably.
func (l Layout) SaveState(d bootctl.Device, s bootctl.State) error {
	return bootctl.Save(d, l.Bootctl.Offset(), s)
}

// Package slotdisk is the layout of a box's disk: a GPT with the two
// firmware slots, the boot-control partition and the data partition, found
// by their labels wherever they lie.
package slotdisk

import (
	"fmt"
	"io"

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

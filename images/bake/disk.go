package bake

import (
	"fmt"
	"os"

	"github.com/boxswarm/boxswarm/firmware/bootctl"
	"github.com/boxswarm/boxswarm/firmware/gpt"
	"github.com/boxswarm/boxswarm/firmware/slotdisk"
	"github.com/boxswarm/boxswarm/images"
)

var (
	typeSlot    = gpt.MustParseGUID(gpt.TypeBoxswarmSlot)
	typeBootctl = gpt.MustParseGUID(gpt.TypeBoxswarmBootctl)
	typeData    = gpt.MustParseGUID(gpt.TypeLinuxData)
)

// DiskLayout returns the partition table the recipe asks for.
func DiskLayout(d images.Disk) (*gpt.Table, int64, error) {
	const mib = 1 << 20
	size := int64(d.SizeMiB) * mib
	t, err := gpt.Layout("boxswarm", size, []gpt.Spec{
		{Name: slotdisk.LabelSlotA, Size: int64(d.SlotMiB) * mib, Type: typeSlot},
		{Name: slotdisk.LabelSlotB, Size: int64(d.SlotMiB) * mib, Type: typeSlot},
		{Name: slotdisk.LabelBootctl, Size: int64(d.BootctlMiB) * mib, Type: typeBootctl},
		{Name: slotdisk.LabelData, Type: typeData},
	})
	return t, size, err
}

// WriteDisk writes a sparse disk image: the partition table, the slot
// images (nil leaves a slot empty) and the boot-control record. It replaces
// any file at path only once the new image is complete.
func WriteDisk(path string, d images.Disk, slotA, slotB []byte, st bootctl.State) error {
	t, size, err := DiskLayout(d)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	err = func() error {
		if err := f.Truncate(size); err != nil {
			return err
		}
		if err := gpt.Write(f, size, t); err != nil {
			return err
		}
		l, err := slotdisk.ReadLayout(f, size)
		if err != nil {
			return fmt.Errorf("reading back the new table: %w", err)
		}
		for s, img := range [][]byte{slotA, slotB} {
			if img == nil {
				continue
			}
			p := l.Slots[s]
			if int64(len(img)) > p.Size() {
				return fmt.Errorf("slot %s: image of %d bytes does not fit the %d-byte slot", bootctl.Slot(s), len(img), p.Size())
			}
			if _, err := f.WriteAt(img, p.Offset()); err != nil {
				return err
			}
		}
		return l.SaveState(f, st)
	}()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("disk image %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}

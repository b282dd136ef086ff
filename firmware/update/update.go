// Package update installs a firmware image into a slot so that the next
// boot tries it: on a box (the inactive slot of /dev/vda) or in a disk image
// on a manufacturer's host. The same code runs in both places.
//
// Install never leaves a half-written slot marked bootable: the slot is
// marked unbootable and that is made durable before its first byte is
// overwritten, the image is read back and compared after it is synced, and
// only then does the slot go on trial. A power cut at any point leaves the
// box booting the image it booted before.
package update

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/boxswarm/boxswarm/firmware"
	"github.com/boxswarm/boxswarm/firmware/bootctl"
	"github.com/boxswarm/boxswarm/firmware/slotdisk"
)

// Mode says what the installed slot becomes.
type Mode int

const (
	// Trial boots the new image next, with Tries attempts to report
	// healthy before the box returns to its current image.
	Trial Mode = iota
	// Proven marks the image as already healthy (a factory install, where
	// the image was tested before it was written).
	Proven
)

// Options controls an installation.
type Options struct {
	Slot  bootctl.Slot
	Mode  Mode
	Tries uint8 // for Trial; 1 if zero
	// Policy, if it has a root key, is checked against the image before
	// anything is written, as the box itself would check it.
	Policy firmware.Policy
	// AllowActive permits writing the slot the box currently boots from.
	AllowActive bool
}

// ErrActiveSlot refuses to overwrite the image the box is running.
var ErrActiveSlot = errors.New("slot holds the image the box boots")

// Install writes img into a slot of d and updates the boot-control record.
func Install(d slotdisk.Device, img []byte, o Options) error {
	l, err := slotdisk.ReadLayout(d, d.Size())
	if err != nil {
		return err
	}
	part := l.Slots[o.Slot]
	if int64(len(img)) > part.Size() {
		return fmt.Errorf("image of %d bytes does not fit slot %s (%d bytes)", len(img), o.Slot, part.Size())
	}
	if o.Policy.RootKey != nil {
		if _, err := firmware.LoadSlot(zeroPadded(img), part.Size(), o.Policy); err != nil {
			return fmt.Errorf("image refused before writing: %w", err)
		}
	}
	st, err := l.LoadState(d)
	if err != nil && !errors.Is(err, bootctl.ErrNoValidRecord) {
		return err
	}
	if active, ok := st.Active(); ok && active == o.Slot && !o.AllowActive {
		return fmt.Errorf("slot %s: %w", o.Slot, ErrActiveSlot)
	}
	st.MarkBad(o.Slot)
	if err := l.SaveState(d, st); err != nil {
		return fmt.Errorf("mark slot %s unbootable before writing: %w", o.Slot, err)
	}
	// The whole slot is written, so no byte of an older image remains.
	whole := make([]byte, part.Size())
	copy(whole, img)
	if _, err := d.WriteAt(whole, part.Offset()); err != nil {
		return fmt.Errorf("write slot %s: %w", o.Slot, err)
	}
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync slot %s: %w", o.Slot, err)
	}
	back := make([]byte, part.Size())
	if _, err := d.ReadAt(back, part.Offset()); err != nil {
		return fmt.Errorf("read back slot %s: %w", o.Slot, err)
	}
	if !bytes.Equal(back, whole) {
		return fmt.Errorf("slot %s reads back differently from what was written: the disk is failing", o.Slot)
	}
	switch o.Mode {
	case Proven:
		st.Slots[o.Slot] = bootctl.SlotState{Priority: 2, Successful: true}
		if other := &st.Slots[o.Slot.Other()]; other.Priority > 0 {
			other.Priority = 1
		}
	default:
		tries := o.Tries
		if tries == 0 {
			tries = 1
		}
		st.SetTrial(o.Slot, tries)
	}
	if err := l.SaveState(d, st); err != nil {
		return fmt.Errorf("put slot %s on trial: %w", o.Slot, err)
	}
	return nil
}

// zeroPadded serves LoadSlot from the image in memory, as the slot will
// read once written: the image, then zeros.
type zeroPadded []byte

func (z zeroPadded) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	if off < int64(len(z)) {
		n = copy(p, z[off:])
	}
	clear(p[n:])
	return len(p), nil
}

package slotdisk_test

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/boxswarm/boxswarm/firmware/bootctl"
	"github.com/boxswarm/boxswarm/firmware/slotdisk"
	"github.com/boxswarm/boxswarm/images"
	"github.com/boxswarm/boxswarm/images/bake"
)

func TestOpenDirectReads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	slotA := bytes.Repeat([]byte("0123456789abcdef"), 100000)
	var st bootctl.State
	st.Slots[bootctl.SlotA] = bootctl.SlotState{Priority: 1, Successful: true}
	if err := bake.WriteDisk(path, images.Disk{SizeMiB: 8, SlotMiB: 2, BootctlMiB: 1}, slotA, nil, st); err != nil {
		t.Fatal(err)
	}
	d, l, err := slotdisk.Open(path)
	if errors.Is(err, unix.EINVAL) {
		t.Skipf("the temporary folder's file system refuses O_DIRECT: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	slot := l.Slot(d, bootctl.SlotA)
	// Unaligned offsets and lengths, across block boundaries.
	for _, r := range []struct{ off, n int }{{0, 1}, {1, 4095}, {4095, 2}, {5000, 70000}, {len(slotA) - 3, 3}} {
		got := make([]byte, r.n)
		if _, err := slot.ReadAt(got, int64(r.off)); err != nil {
			t.Fatalf("ReadAt(%d, %d): %v", r.off, r.n, err)
		}
		if !bytes.Equal(got, slotA[r.off:r.off+r.n]) {
			t.Errorf("ReadAt(%d, %d) returned other bytes", r.off, r.n)
		}
	}
	got, err := l.LoadState(d)
	if err != nil || got.Slots != st.Slots {
		t.Fatalf("LoadState = %v, %v", got, err)
	}
	got.MarkBad(bootctl.SlotA)
	if err := l.SaveState(d, got); err != nil {
		t.Fatal(err)
	}
	if again, _ := l.LoadState(d); again.Slots[bootctl.SlotA].Priority != 0 {
		t.Errorf("state written through the disk not read back through the direct path: %v", again)
	}
}

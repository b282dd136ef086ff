package update_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"testing"

	"github.com/boxswarm/boxswarm/firmware"
	"github.com/boxswarm/boxswarm/firmware/bootctl"
	"github.com/boxswarm/boxswarm/firmware/slotdisk"
	"github.com/boxswarm/boxswarm/firmware/update"
	"github.com/boxswarm/boxswarm/images"
	"github.com/boxswarm/boxswarm/images/bake"
)

var root = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))

func image(t *testing.T, version uint64) []byte {
	k := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
	s := firmware.Signer{Key: k, Certificate: firmware.Certify(root, firmware.Certificate{KeyVersion: 1, PublicKey: k.Public().(ed25519.PublicKey)})}
	img, _, err := firmware.BuildImage(firmware.ImageSpec{BoardID: "b", ImageVersion: version, Kernel: []byte("k"), Initramfs: []byte("i")}, s)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func disk(t *testing.T, a, b []byte) slotdisk.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	st := bake.FactoryState()
	if err := bake.WriteDisk(p, images.Disk{SizeMiB: 8, SlotMiB: 2, BootctlMiB: 1}, a, b, st); err != nil {
		t.Fatal(err)
	}
	f, err := slotdisk.OpenFile(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func state(t *testing.T, d slotdisk.File) (bootctl.State, slotdisk.Layout) {
	l, err := slotdisk.ReadLayout(d, d.Size())
	if err != nil {
		t.Fatal(err)
	}
	st, err := l.LoadState(d)
	if err != nil {
		t.Fatal(err)
	}
	return st, l
}

func policy() firmware.Policy {
	return firmware.Policy{RootKey: root.Public().(ed25519.PublicKey), BoardID: "b"}
}

func TestInstallTrial(t *testing.T) {
	// Slot B once held a bigger image: none of it may remain.
	old := bytes.Repeat([]byte{0xEE}, 1<<20)
	d := disk(t, image(t, 1), old)
	v2 := image(t, 2)
	if err := update.Install(d, v2, update.Options{Slot: bootctl.SlotB, Policy: policy()}); err != nil {
		t.Fatal(err)
	}
	st, l := state(t, d)
	if order := st.BootOrder(); len(order) != 2 || order[0] != bootctl.SlotB || st.Slots[bootctl.SlotB].Successful || st.Slots[bootctl.SlotB].TriesLeft != 1 {
		t.Errorf("after install: %v, want slot B first on trial with one try", st)
	}
	got := make([]byte, l.Slots[bootctl.SlotB].Size())
	d.ReadAt(got, l.Slots[bootctl.SlotB].Offset())
	if !bytes.Equal(got[:len(v2)], v2) || bytes.IndexByte(got[len(v2):], 0xEE) >= 0 {
		t.Error("slot B does not hold exactly the new image")
	}
	if _, err := firmware.LoadSlot(l.Slot(d, bootctl.SlotB), l.Slots[bootctl.SlotB].Size(), policy()); err != nil {
		t.Errorf("installed image does not verify: %v", err)
	}
}

func TestInstallRefuses(t *testing.T) {
	v2 := image(t, 2)
	tampered := append([]byte(nil), v2...)
	tampered[firmware.ReservedSize] ^= 1 // the kernel
	for _, tc := range []struct {
		name string
		img  []byte
		o    update.Options
		want error
	}{
		{"active slot", v2, update.Options{Slot: bootctl.SlotA}, update.ErrActiveSlot},
		{"tampered image", tampered, update.Options{Slot: bootctl.SlotB, Policy: policy()}, firmware.ErrComponentHash},
		{"rollback", v2, update.Options{Slot: bootctl.SlotB, Policy: firmware.Policy{RootKey: policy().RootKey, BoardID: "b", MinImageVersion: 3}}, firmware.ErrRollback},
		{"too big", make([]byte, 3<<20), update.Options{Slot: bootctl.SlotB}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := disk(t, image(t, 1), nil)
			before, _ := state(t, d)
			err := update.Install(d, tc.img, tc.o)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("Install = %v, want %v", err, tc.want)
			}
			if after, _ := state(t, d); after.Slots != before.Slots {
				t.Errorf("refused install changed the boot record: %v -> %v", before, after)
			}
		})
	}
}

func TestInstallProven(t *testing.T) {
	d := disk(t, image(t, 1), nil)
	if err := update.Install(d, image(t, 2), update.Options{Slot: bootctl.SlotB, Mode: update.Proven}); err != nil {
		t.Fatal(err)
	}
	st, _ := state(t, d)
	if a, ok := st.Active(); !ok || a != bootctl.SlotB || !st.Slots[bootctl.SlotB].Successful {
		t.Errorf("after a proven install: %v", st)
	}
}

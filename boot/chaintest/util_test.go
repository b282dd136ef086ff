package chaintest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"testing"

	"github.com/boxswarm/boxswarm/firmware"
	"github.com/boxswarm/boxswarm/firmware/bootctl"
	"github.com/boxswarm/boxswarm/firmware/slotdisk"
	"github.com/boxswarm/boxswarm/firmware/update"
)

func newRoot(t *testing.T) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sha256Of(b []byte) [32]byte { return sha256.Sum256(b) }

// openDisk opens a disk image and reads its layout.
func openDisk(t *testing.T, path string) (slotdisk.File, slotdisk.Layout) {
	t.Helper()
	f, err := slotdisk.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	l, err := slotdisk.ReadLayout(f, f.Size())
	if err != nil {
		t.Fatal(err)
	}
	return f, l
}

// setState rewrites a disk image's boot-control record.
func setState(t *testing.T, disk string, st bootctl.State) {
	t.Helper()
	f, l := openDisk(t, disk)
	if err := l.SaveState(f, st); err != nil {
		t.Fatal(err)
	}
}

// install writes an image into the inactive slot of a disk image on trial.
func (f *fixture) install(t *testing.T, disk string, img []byte) {
	t.Helper()
	d, _ := openDisk(t, disk)
	p := firmware.Policy{RootKey: f.root.Public().(ed25519.PublicKey), BoardID: f.art.Recipe.Board}
	if err := update.Install(d, img, update.Options{Slot: bootctl.SlotB, Policy: p}); err != nil {
		t.Fatal(err)
	}
}

package bake

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/boxswarm/boxswarm/firmware/bootctl"
	"github.com/boxswarm/boxswarm/firmware/slotdisk"
	"github.com/boxswarm/boxswarm/images"
)

func TestDevKeys(t *testing.T) {
	dir := t.TempDir()
	k1, err := DevKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	readme, _ := os.ReadFile(filepath.Join(dir, "README"))
	if !strings.Contains(string(readme), "NOT FOR PRODUCTION") {
		t.Errorf("development keys are not labelled as such:\n%s", readme)
	}
	k2, err := DevKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Root.Equal(k2.Root) || !k1.Signer.Key.Equal(k2.Signer.Key) {
		t.Error("a second DevKeys replaced existing keys")
	}
	for _, f := range []string{RootKeyFile, SigningKeyFile, ROMKeyName + ".key"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v", f, st.Mode(), err)
		}
	}
	// A signing certificate from another root is refused.
	other := t.TempDir()
	if _, err := DevKeys(other); err != nil {
		t.Fatal(err)
	}
	cert, _ := os.ReadFile(filepath.Join(other, SigningCertFile))
	key, _ := os.ReadFile(filepath.Join(other, SigningKeyFile))
	os.WriteFile(filepath.Join(dir, SigningCertFile), cert, 0o644)
	os.WriteFile(filepath.Join(dir, SigningKeyFile), key, 0o600)
	if _, err := LoadKeys(dir); err == nil || !strings.Contains(err.Error(), "untrusted signing key") {
		t.Errorf("LoadKeys with a foreign certificate = %v", err)
	}
}

func TestWriteDisk(t *testing.T) {
	d := images.Disk{SizeMiB: 8, SlotMiB: 2, BootctlMiB: 1}
	path := filepath.Join(t.TempDir(), "disk.img")
	slotA := bytes.Repeat([]byte{0xA5}, 5000)
	if err := WriteDisk(path, d, slotA, nil, FactoryState()); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l, err := slotdisk.ReadLayout(f, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(slotA))
	f.ReadAt(got, l.Slots[bootctl.SlotA].Offset())
	if !bytes.Equal(got, slotA) {
		t.Error("slot A does not hold the image")
	}
	if st, err := l.LoadState(f); err != nil || st.Slots != FactoryState().Slots {
		t.Errorf("boot record %v, %v", st, err)
	}
	if err := WriteDisk(path, d, make([]byte, 3<<20), nil, FactoryState()); err == nil {
		t.Error("an image bigger than its slot was written")
	}
	if _, err := os.Stat(path + ".tmp"); err == nil {
		t.Error("a failed write left its temporary file")
	}
}

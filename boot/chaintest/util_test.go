package chaintest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"os"
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

type rwFile struct{ f *os.File }

func openRW(path string) (*rwFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return &rwFile{f}, nil
}

func (r *rwFile) WriteAt(b []byte, off int64) (int, error) { return r.f.WriteAt(b, off) }
func (r *rwFile) size() int64 {
	st, err := r.f.Stat()
	if err != nil {
		return 0
	}
	return st.Size()
}
func (r *rwFile) Close() error { return r.f.Close() }

// setState rewrites a disk image's boot-control record.
func setState(t *testing.T, disk string, st bootctl.State) {
	t.Helper()
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	l, err := slotdisk.ReadLayout(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SaveState(f, st); err != nil {
		t.Fatal(err)
	}
}

// install writes an image into the inactive slot of a disk image on trial.
func (f *fixture) install(t *testing.T, disk string, img []byte) {
	t.Helper()
	fh, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	d := sizedFile{fh}
	p := firmware.Policy{RootKey: f.root.Public().(ed25519.PublicKey), BoardID: f.art.Recipe.Board}
	if err := update.Install(d, img, update.Options{Slot: bootctl.SlotB, Policy: p}); err != nil {
		t.Fatal(err)
	}
}

type sizedFile struct{ *os.File }

func (s sizedFile) Size() int64 {
	st, err := s.Stat()
	if err != nil {
		return 0
	}
	return st.Size()
}

package chaintest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"os"
	"testing"

	"github.com/boxswarm/boxswarm/firmware/bootctl"
	"github.com/boxswarm/boxswarm/firmware/slotdisk"
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

package demo

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"

	"github.com/boxswarm/boxswarm/firmware/keyfile"
	"github.com/boxswarm/boxswarm/media"
)

// ScanDisk looks through a box's whole disk image (after it powered off)
// for the title's content key and for pieces of its decrypted frames, and
// returns what it found: nothing, if the box keeps its promises.
func (s *System) ScanDisk(disk string, t Title) ([]string, error) {
	data, err := os.ReadFile(disk)
	if err != nil {
		return nil, err
	}
	needles, err := s.plaintextSamples(t)
	if err != nil {
		return nil, err
	}
	var found []string
	if bytes.Contains(data, t.Key) {
		found = append(found, "the content key")
	}
	for name, n := range needles {
		if bytes.Contains(data, n) {
			found = append(found, name)
		}
	}
	return found, nil
}

// plaintextSamples decrypts some of the title's frames in memory and
// returns 64-byte pieces from their middles: what a disk holding any of
// those frames in the clear would contain.
func (s *System) plaintextSamples(t Title) (map[string][]byte, error) {
	pub, err := keyfile.ReadPublicKey(filepath.Join(s.data, "media.pub"))
	if err != nil {
		return nil, err
	}
	pkg, err := media.OpenPackage(filepath.Join(s.cfg.Dir, "packages", t.ID.String()), ed25519.PublicKey(pub))
	if err != nil {
		return nil, err
	}
	defer pkg.Close()
	fc, err := media.NewFrameCipher(t.Key, t.ID)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	n := pkg.Manifest.NumFrames()
	for i := 0; i < n; i += max(1, n/16) {
		fe := pkg.Manifest.Frame(i)
		sealed := make([]byte, fe.Size)
		if _, err := pkg.Payload.ReadAt(sealed, int64(fe.Offset)); err != nil {
			return nil, err
		}
		plain, err := fc.Open(nil, uint64(i), fe.FrameMeta, sealed)
		if err != nil {
			return nil, err
		}
		if len(plain) >= 256 {
			mid := len(plain)/2 - 32
			out[fmt.Sprintf("decrypted frame %d", i)] = plain[mid : mid+64]
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("demo: no frame of %s is long enough to look for", t.ID)
	}
	return out, nil
}

package admin

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/p2p/piece/piecetest"
)

// fuzzID is the title of the package the fuzz seeds carry.
var fuzzID = media.ID{0xf0, 0x0d, 0xfa, 0xce, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}

// fuzzPackage writes a small package of title fuzzID (one frame, one
// piece) under parent and returns its folder: small enough for a seed.
func fuzzPackage(t testing.TB, parent string) string {
	t.Helper()
	track := []media.Track{{Codec: media.H264, Timescale: 90000, Config: []byte{0, 0, 0, 1, 0x67, 1}, Width: 64, Height: 64}}
	w, err := media.NewWriter(parent, fuzzID, track, bytes.Repeat([]byte{7}, media.ContentKeySize), media.MinPieceSize)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		f := media.Frame{PTS: int64(i) * 3000, DTS: int64(i) * 3000, Duration: 3000, Keyframe: i == 0, Data: bytes.Repeat([]byte{byte(i)}, 40)}
		if err := w.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Finish(piecetest.MediaKey); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(parent, fuzzID.String())
}

// FuzzReceivePackage feeds upload streams to the package receiver: it
// must never panic, and whatever it accepts must be a whole package of the
// title, every piece matching the signed manifest, and nothing else.
func FuzzReceivePackage(f *testing.F) {
	var good bytes.Buffer
	if err := WritePackage(&good, fuzzPackage(f, f.TempDir())); err != nil {
		f.Fatal(err)
	}
	f.Add(good.Bytes())
	trusted := []ed25519.PublicKey{piecetest.MediaPub}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		m, err := receivePackage(bytes.NewReader(data), fuzzID, trusted, 1<<20, dir)
		if err != nil {
			return
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 2 {
			t.Fatalf("accepted, leaving %d entries", len(entries))
		}
		pkg, err := media.OpenPackage(dir, trusted...)
		if err != nil {
			t.Fatalf("accepted a package that does not open: %v", err)
		}
		defer pkg.Close()
		if pkg.Manifest.ID != fuzzID || m.ID != fuzzID {
			t.Fatalf("accepted title %s", pkg.Manifest.ID)
		}
		for i := range m.NumPieces() {
			off, n := m.PieceSpan(i)
			p := make([]byte, n)
			if _, err := pkg.Payload.ReadAt(p, off); err != nil || sha256.Sum256(p) != m.PieceHash(i) {
				t.Fatalf("accepted piece %d that does not match: %v", i, err)
			}
		}
	})
}

// FuzzParseTitleMeta: metadata the parser accepts passes Check and writes
// back to JSON that parses to the same.
func FuzzParseTitleMeta(f *testing.F) {
	b, _ := json.Marshal(meta)
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseTitleMeta(data)
		if err != nil {
			return
		}
		if err := m.Check(); err != nil {
			t.Fatalf("accepted metadata fails Check: %v", err)
		}
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("accepted metadata does not marshal: %v", err)
		}
		again, err := ParseTitleMeta(out)
		if err != nil {
			t.Fatalf("%s does not parse again: %v", out, err)
		}
		if out2, _ := json.Marshal(again); !bytes.Equal(out, out2) {
			t.Fatalf("round trip changed %s into %s", out, out2)
		}
	})
}

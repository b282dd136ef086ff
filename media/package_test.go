package media

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/boxswarm/boxswarm/internal/tlv"
)

var (
	testKey   = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))
	testPub   = testKey.Public().(ed25519.PublicKey)
	testCK    = bytes.Repeat([]byte{0x5c}, 32)
	testID    = ID{0xab, 0xcd}
	testTrack = []Track{
		{Codec: H264, Timescale: 90000, Config: []byte{0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x68, 2}, Width: 1280, Height: 720},
		{Codec: AAC, Timescale: 48000, Config: []byte{0x11, 0x90}, SampleRate: 48000, Channels: 2},
	}
)

// testFrames makes n video frames (every 10th a keyframe) interleaved with
// audio frames.
func testFrames(n int) []Frame {
	var fs []Frame
	for i := range n {
		fs = append(fs, Frame{Track: 0, PTS: int64(i) * 3000, DTS: int64(i) * 3000, Duration: 3000, Keyframe: i%10 == 0,
			Data: bytes.Repeat([]byte{byte(i), byte(i >> 8)}, 1000+i*37%5000)})
		fs = append(fs, Frame{Track: 1, PTS: int64(i) * 1600, DTS: int64(i) * 1600, Duration: 1600, Data: bytes.Repeat([]byte{0xa0, byte(i)}, 180)})
	}
	return fs
}

func writePackage(t testing.TB, dir string, frames []Frame, pieceSize uint32) *Manifest {
	t.Helper()
	w, err := NewWriter(dir, testID, testTrack, testCK, pieceSize)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		if err := w.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	m, err := w.Finish(testKey)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestPackageRoundTrip(t *testing.T) {
	dir := t.TempDir()
	frames := testFrames(300)
	m := writePackage(t, dir, frames, MinPieceSize)
	p, err := OpenPackage(filepath.Join(dir, testID.String()), testPub)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Manifest.NumFrames() != len(frames) || m.NumPieces() < 5 || len(p.Manifest.Tracks) != 2 {
		t.Fatalf("frames %d pieces %d tracks %d", p.Manifest.NumFrames(), m.NumPieces(), len(p.Manifest.Tracks))
	}
	payload, _ := io.ReadAll(p.Payload)
	if sha256.Sum256(payload) != m.PayloadHash {
		t.Error("payload hash does not match")
	}
	for i := range m.NumPieces() {
		off, n := m.PieceSpan(i)
		if sha256.Sum256(payload[off:off+n]) != m.PieceHash(i) {
			t.Errorf("piece %d hash does not match", i)
		}
	}
	c, _ := NewFrameCipher(testCK, testID)
	for i, f := range frames {
		e := p.Manifest.Frame(i)
		if e.FrameMeta != f.Meta() {
			t.Fatalf("frame %d: entry %+v, wrote %+v", i, e.FrameMeta, f.Meta())
		}
		got, err := c.Open(nil, uint64(i), e.FrameMeta, payload[e.Offset:e.End()])
		if err != nil || !bytes.Equal(got, f.Data) {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	if d := m.Duration(0); d != 300*3000 {
		t.Errorf("video duration %d", d)
	}
	// Nothing but the package is left behind.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("folder holds %d entries, want only the package", len(entries))
	}
}

func TestAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	w, err := NewWriter(dir, testID, testTrack, testCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.WriteFrame(testFrames(1)[0])
	w.Abort()
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("abort left %d entries", len(entries))
	}
}

func TestVerifyRefuses(t *testing.T) {
	dir := t.TempDir()
	m := writePackage(t, dir, testFrames(20), MinPieceSize)
	signed, _ := os.ReadFile(filepath.Join(dir, testID.String(), ManifestFile))
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{4}, 32))
	raw := m.Encode()
	tweak := func(f func([]byte)) []byte {
		b := bytes.Clone(raw)
		f(b)
		return b
	}
	frameTable := bytes.Index(raw, m.frames)
	for _, tc := range []struct {
		name string
		file []byte
		want error
	}{
		{"flipped manifest byte", func() []byte { b := bytes.Clone(signed); b[40] ^= 1; return b }(), ErrManifestSignature},
		{"unknown key", Sign(m, other), ErrManifestSignature},
		{"no magic", signed[8:], ErrMalformed},
		{"trailing bytes", append(bytes.Clone(signed), 0), ErrMalformed},
		{"frame out of place", resign(tweak(func(b []byte) { binary.BigEndian.PutUint64(b[frameTable+40:], 99) })), ErrMalformed},
		{"frame on a missing track", resign(tweak(func(b []byte) { b[frameTable+12] = 7 })), ErrMalformed},
		{"reserved bits", resign(tweak(func(b []byte) { b[frameTable+14] = 1 })), ErrMalformed},
		{"format version 2", resign(tweak(func(b []byte) { b[9] = 2 })), ErrMalformed},
	} {
		if _, err := Verify(tc.file, testPub); !errors.Is(err, tc.want) {
			t.Errorf("%s: Verify = %v, want %v", tc.name, err, tc.want)
		}
	}
}

// resign signs raw manifest bytes as they are, to test the parser behind a
// valid signature.
func resign(raw []byte) []byte {
	id := KeyID(testPub)
	var e tlv.Encoder
	e.Bytes(sigTagManifest, raw)
	e.Bytes(sigTagKeyID, id[:])
	e.Bytes(sigTagSignature, ed25519.Sign(testKey, append([]byte(signatureDomain), raw...)))
	return append([]byte(ManifestMagic), e.Encoded()...)
}

// FuzzVerify feeds arbitrary manifest files to the verifier: nothing may
// panic, and nothing unsigned may pass.
func FuzzVerify(f *testing.F) {
	dir := f.TempDir()
	writePackage(f, dir, testFrames(3), MinPieceSize)
	signed, _ := os.ReadFile(filepath.Join(dir, testID.String(), ManifestFile))
	f.Add(signed)
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := Verify(b, testPub); err == nil && !bytes.Equal(b, signed) {
			t.Fatal("a changed manifest file verified")
		}
	})
}

// FuzzParseManifest feeds arbitrary bytes to the parser behind the
// signature check: nothing may panic, every accepted table must tile its
// payload, and what is accepted re-encodes to the same bytes.
func FuzzParseManifest(f *testing.F) {
	dir := f.TempDir()
	m := writePackage(f, dir, testFrames(3), MinPieceSize)
	f.Add(m.Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error without ErrMalformed: %v", err)
			}
			return
		}
		if !bytes.Equal(m.Encode(), b) {
			t.Fatal("accepted a non-canonical encoding")
		}
		last := m.Frame(m.NumFrames() - 1)
		if last.End() != m.PayloadSize {
			t.Fatal("accepted a frame table that does not tile the payload")
		}
	})
}

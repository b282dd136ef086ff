package store

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/boxswarm/boxswarm/media"
)

var (
	testKey   = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	testPub   = testKey.Public().(ed25519.PublicKey)
	otherKey  = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, 32))
	testTrack = []media.Track{{Codec: media.H264, Timescale: 90000, Config: []byte{0, 0, 0, 1, 0x67, 1}, Width: 640, Height: 360}}
)

// pkg is a package folder made for a test.
type pkg struct {
	dir     string
	m       *media.Manifest
	signed  []byte
	payload []byte
}

func (p *pkg) piece(i int) []byte {
	off, n := p.m.PieceSpan(i)
	return p.payload[off : off+n]
}

// makePackage writes a package of random frames, about size payload
// bytes, under parent, signed by key.
func makePackage(t testing.TB, parent string, id media.ID, size int, pieceSize uint32, key ed25519.PrivateKey) *pkg {
	t.Helper()
	ck := make([]byte, 32)
	rand.Read(ck)
	w, err := media.NewWriter(parent, id, testTrack, ck, pieceSize)
	if err != nil {
		t.Fatal(err)
	}
	r := mrand.New(mrand.NewPCG(uint64(size), uint64(pieceSize)))
	for i, written := 0, 0; written < size; i++ {
		data := make([]byte, min(1+r.IntN(24<<10), size-written+1))
		rand.Read(data)
		written += len(data) + media.SealOverhead
		f := media.Frame{PTS: int64(i) * 3000, DTS: int64(i) * 3000, Duration: 3000, Keyframe: i%30 == 0, Data: data}
		if err := w.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	m, err := w.Finish(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, id.String())
	signed, err := os.ReadFile(filepath.Join(dir, media.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := os.ReadFile(filepath.Join(dir, media.PayloadFile))
	if err != nil {
		t.Fatal(err)
	}
	return &pkg{dir: dir, m: m, signed: signed, payload: payload}
}

func newID(t testing.TB) media.ID {
	id, err := media.NewID()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// logBuf collects a store's log for tests that check what it said.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testOptions(log *logBuf) Options {
	o := Options{MediaKeys: []ed25519.PublicKey{testPub}, SegmentSize: 256 << 10, Capacity: 1 << 40}
	if log != nil {
		o.Log = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	} else if testing.Verbose() {
		o.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return o
}

func openStore(t testing.TB, dir string, o Options) *Store {
	t.Helper()
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustAdd(t testing.TB, s *Store, p *pkg) {
	t.Helper()
	if _, err := s.AddTitle(p.signed); err != nil {
		t.Fatal(err)
	}
}

func writeAll(t testing.TB, s *Store, p *pkg) {
	t.Helper()
	var ps []Piece
	for i := range p.m.NumPieces() {
		ps = append(ps, Piece{Index: i, Data: p.piece(i)})
	}
	if err := s.WritePieces(t.Context(), p.m.ID, ps); err != nil {
		t.Fatal(err)
	}
}

// tree describes every file under dir: path, size and a hash of the
// contents, so a test can show that a failed call changed nothing.
func tree(t testing.TB, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			lines = append(lines, rel+"/")
			return nil
		}
		if rel == IndexFile {
			return nil // bbolt may rewrite it without changing anything
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		lines = append(lines, fmt.Sprintf("%s %d %x", rel, len(b), sum[:8]))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// state is everything a failed call must leave as it was.
func state(t testing.TB, s *Store) string {
	t.Helper()
	ts, err := s.Titles()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, ti := range ts {
		have, err := s.Have(ti.ID)
		if err != nil {
			t.Fatal(err)
		}
		pos, ok, err := s.Position(ti.ID)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %x %d %d %v\n", ti.ID, have.Bytes(), ti.PresentBytes, pos, ok)
	}
	used, reserved, _, err := s.Usage()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "used %d reserved %d\n", used, reserved)
	return b.String() + tree(t, s.dir)
}

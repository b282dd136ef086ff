// Package piecetest makes what the tests of the piece protocol, the
// transfer agent and the media server need: fixed media and scheduler
// keys, titles of random frames written as package folders, stores, and
// signed grants. It is for tests only.
package piecetest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/store"
)

// Keys the tests share.
var (
	MediaKey     = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x4d}, 32))
	MediaPub     = MediaKey.Public().(ed25519.PublicKey)
	SchedulerKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x53}, 32))
	SchedulerPub = SchedulerKey.Public().(ed25519.PublicKey)
	// OtherKey signs nothing anyone trusts.
	OtherKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x3f}, 32))
)

var track = []media.Track{{Codec: media.H264, Timescale: 90000, Config: []byte{0, 0, 0, 1, 0x67, 1}, Width: 640, Height: 360}}

// Title is a package folder made for a test.
type Title struct {
	Dir      string // the package folder
	Manifest *media.Manifest
	Signed   []byte
	Payload  []byte
}

// ID returns the title's media ID.
func (t *Title) ID() media.ID { return t.Manifest.ID }

// Piece returns piece i's bytes.
func (t *Title) Piece(i int) []byte {
	off, n := t.Manifest.PieceSpan(i)
	return t.Payload[off : off+n]
}

// All returns the one range of every piece.
func (t *Title) All() []api.PieceRange {
	return []api.PieceRange{{First: 0, Last: t.Manifest.NumPieces() - 1}}
}

// PayloadHash returns the SHA-256 of the payload.
func (t *Title) PayloadHash() [32]byte { return sha256.Sum256(t.Payload) }

// MakeTitle writes a package of random frames, about size payload bytes
// in pieces of pieceSize, under parent, signed by MediaKey.
func MakeTitle(t testing.TB, parent string, size int, pieceSize uint32) *Title {
	t.Helper()
	id, err := media.NewID()
	if err != nil {
		t.Fatal(err)
	}
	ck := make([]byte, 32)
	rand.Read(ck)
	w, err := media.NewWriter(parent, id, track, ck, pieceSize)
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
	m, err := w.Finish(MediaKey)
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
	return &Title{Dir: dir, Manifest: m, Signed: signed, Payload: payload}
}

// Logger returns a logger for a test: the test's log when -v is given,
// otherwise nothing.
func Logger(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// OpenStore opens a store in dir trusting MediaKey, closed when the test
// ends.
func OpenStore(t testing.TB, dir string) *store.Store {
	t.Helper()
	s, err := store.Open(dir, store.Options{MediaKeys: []ed25519.PublicKey{MediaPub}, SegmentSize: 1 << 20, Capacity: 1 << 40, Log: Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Fill adds the title to s and stores the pieces of ranges (all of them
// if none are given).
func Fill(t testing.TB, s *store.Store, ti *Title, ranges ...api.PieceRange) {
	t.Helper()
	if _, err := s.AddTitle(ti.Signed); err != nil {
		t.Fatal(err)
	}
	if len(ranges) == 0 {
		ranges = ti.All()
	}
	var ps []store.Piece
	for _, r := range ranges {
		for i := r.First; i <= r.Last; i++ {
			ps = append(ps, store.Piece{Index: i, Data: ti.Piece(i)})
		}
	}
	if err := s.WritePieces(context.Background(), ti.ID(), ps); err != nil {
		t.Fatal(err)
	}
}

// Complete fails the test unless s holds every piece of the title, with
// the right bytes.
func Complete(t testing.TB, s *store.Store, ti *Title) {
	t.Helper()
	have, err := s.Have(ti.ID())
	if err != nil {
		t.Fatal(err)
	}
	if !have.Complete() {
		t.Fatalf("store has %d of %d pieces", have.Count(), have.Len())
	}
	got := make([]byte, len(ti.Payload))
	if _, err := s.ReadAt(ti.ID(), got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, ti.Payload) {
		t.Fatal("stored payload differs")
	}
}

// Grant returns a grant for transfer id from sender to receiver of the
// portions of ti, valid for an hour, and its token signed by
// SchedulerKey.
func Grant(id api.TransferID, sender, receiver api.BoxID, ti *Title, portions ...api.PieceRange) (api.Grant, []byte) {
	if len(portions) == 0 {
		portions = ti.All()
	}
	g := api.Grant{Transfer: id, Sender: sender, Receiver: receiver, Title: ti.ID(), Portions: portions, Expires: time.Now().Add(time.Hour).Truncate(time.Second)}
	return g, g.Sign(SchedulerKey)
}

// BoxID returns a box ID made of one repeated byte.
func BoxID(b byte) api.BoxID {
	var id api.BoxID
	for i := range id {
		id[i] = b
	}
	return id
}

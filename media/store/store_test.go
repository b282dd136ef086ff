package store

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/boxswarm/boxswarm/media"
)

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name      string
		pieceSize uint32
		segSize   int64
		size      int
		batch     int // pieces per WritePieces; 1 = WritePiece
	}{
		{"small pieces, several segments, one at a time", 64 << 10, 256 << 10, 1<<20 + 12345, 1},
		{"small pieces, several segments, batched", 64 << 10, 256 << 10, 3<<20 + 777, 7},
		{"pieces larger than the segment size", 256 << 10, 64 << 10, 2<<20 + 99, 3},
		{"one segment", 64 << 10, DefaultSegmentSize, 1<<20 + 5, 100},
		{"payload shorter than a piece", 1 << 20, 256 << 10, 1000, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := makePackage(t, t.TempDir(), newID(t), tc.size, tc.pieceSize, testKey)
			o := testOptions(nil)
			o.SegmentSize = tc.segSize
			s := openStore(t, dir, o)
			mustAdd(t, s, p)
			r := mrand.New(mrand.NewPCG(1, 2))
			order := r.Perm(p.m.NumPieces())
			for len(order) > 0 {
				n := min(len(order), 1+r.IntN(tc.batch))
				var ps []Piece
				for _, i := range order[:n] {
					ps = append(ps, Piece{Index: i, Data: p.piece(i)})
				}
				var err error
				if tc.batch == 1 {
					err = s.WritePiece(t.Context(), p.m.ID, ps[0].Index, ps[0].Data)
				} else {
					err = s.WritePieces(t.Context(), p.m.ID, ps)
				}
				if err != nil {
					t.Fatal(err)
				}
				order = order[n:]
			}
			check := func(s *Store) {
				t.Helper()
				got := make([]byte, len(p.payload))
				if n, err := s.ReadAt(p.m.ID, got, 0); err != nil || n != len(got) || !bytes.Equal(got, p.payload) {
					t.Fatalf("ReadAt whole payload: %d, %v, equal %v", n, err, bytes.Equal(got, p.payload))
				}
				for range 50 {
					off := r.IntN(len(p.payload))
					buf := make([]byte, r.IntN(len(p.payload)+100))
					n, err := s.ReadAt(p.m.ID, buf, int64(off))
					want := p.payload[off:min(off+len(buf), len(p.payload))]
					wantErr := error(nil)
					if off+len(buf) > len(p.payload) {
						wantErr = io.EOF
					}
					if err != wantErr || !bytes.Equal(buf[:n], want) {
						t.Fatalf("ReadAt %d bytes at %d: %d, %v, want %d, %v", len(buf), off, n, err, len(want), wantErr)
					}
				}
				if n, err := s.ReadAt(p.m.ID, make([]byte, 10), int64(len(p.payload))); n != 0 || err != io.EOF {
					t.Fatalf("ReadAt at the end: %d, %v", n, err)
				}
				var buf []byte
				for i := range p.m.NumPieces() {
					var err error
					if buf, err = s.ReadPiece(p.m.ID, i, buf); err != nil || !bytes.Equal(buf, p.piece(i)) {
						t.Fatalf("ReadPiece %d: %v", i, err)
					}
				}
				ts, err := s.Titles()
				if err != nil || len(ts) != 1 || !ts[0].Complete || ts[0].PresentBytes != int64(len(p.payload)) || ts[0].Present != p.m.NumPieces() {
					t.Fatalf("Titles: %+v, %v", ts, err)
				}
				have, _ := s.Have(p.m.ID)
				if !have.Complete() || have.ContiguousFrom(0) != p.m.NumPieces() {
					t.Fatalf("Have: %d of %d", have.Count(), have.Len())
				}
				used, reserved, capacity, err := s.Usage()
				if err != nil || used != int64(len(p.payload)) || reserved != used || capacity != o.Capacity {
					t.Fatalf("Usage: %d %d %d %v", used, reserved, capacity, err)
				}
			}
			check(s)
			s.Close()
			check(openStore(t, dir, o))
		})
	}
}

// TestSegmentLayout checks where pieces land: piece i at byte i·P mod S of
// segment i·P / S, files sized S but the last.
func TestSegmentLayout(t *testing.T) {
	dir := t.TempDir()
	p := makePackage(t, t.TempDir(), newID(t), 1<<20+4000, 64<<10, testKey)
	s := openStore(t, dir, testOptions(nil))
	mustAdd(t, s, p)
	writeAll(t, s, p)
	const seg = 256 << 10
	for n := 0; n*seg < len(p.payload); n++ {
		b, err := os.ReadFile(filepath.Join(dir, SegmentFolder, p.m.ID.String(), fmt.Sprintf("%d.seg", n)))
		if err != nil {
			t.Fatal(err)
		}
		if want := p.payload[n*seg : min((n+1)*seg, len(p.payload))]; !bytes.Equal(b, want) {
			t.Fatalf("segment %d: %d bytes, not payload bytes %d to %d", n, len(b), n*seg, n*seg+len(want))
		}
	}
}

// TestWriteIsNoOpWhenPresent checks that a present piece is never
// rewritten, even with other bytes.
func TestWriteIsNoOpWhenPresent(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions(nil))
	p := makePackage(t, t.TempDir(), newID(t), 300<<10, 64<<10, testKey)
	mustAdd(t, s, p)
	if err := s.WritePiece(t.Context(), p.m.ID, 2, p.piece(2)); err != nil {
		t.Fatal(err)
	}
	before := state(t, s)
	junk := bytes.Repeat([]byte{1}, len(p.piece(2)))
	if err := s.WritePiece(t.Context(), p.m.ID, 2, junk); err != nil {
		t.Fatal(err)
	}
	if err := s.WritePieces(t.Context(), p.m.ID, []Piece{{2, p.piece(2)}, {2, p.piece(2)}}); err != nil {
		t.Fatal(err)
	}
	if after := state(t, s); after != before {
		t.Fatalf("state changed:\n%s\nto\n%s", before, after)
	}
}

// TestBadInput checks that each kind of bad input gets its error and
// changes nothing stored.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(nil))
	p := makePackage(t, t.TempDir(), newID(t), 600<<10, 64<<10, testKey)
	mustAdd(t, s, p)
	for _, i := range []int{0, 3, 4} {
		if err := s.WritePiece(t.Context(), p.m.ID, i, p.piece(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetPosition(p.m.ID, 3); err != nil {
		t.Fatal(err)
	}
	// Same ID, other payload, trusted key: a conflict. Same payload, key
	// not trusted: refused.
	conflict := makePackage(t, t.TempDir(), p.m.ID, 200<<10, 64<<10, testKey)
	untrusted := makePackage(t, t.TempDir(), newID(t), 200<<10, 64<<10, otherKey)
	unknown := newID(t)
	id := p.m.ID
	n := p.m.NumPieces()
	last := p.piece(n - 1)
	bad := bytes.Clone(p.piece(5))
	bad[100] ^= 1
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		call func() error
		want error
	}{
		{"wrong hash", func() error { return s.WritePiece(ctx, id, 5, bad) }, ErrPieceHash},
		{"wrong hash in a batch", func() error {
			return s.WritePieces(ctx, id, []Piece{{1, p.piece(1)}, {5, bad}, {6, p.piece(6)}})
		}, ErrPieceHash},
		{"another piece's bytes", func() error { return s.WritePiece(ctx, id, 6, p.piece(5)) }, ErrPieceHash},
		{"index -1", func() error { return s.WritePiece(ctx, id, -1, p.piece(0)) }, ErrRange},
		{"index past the end", func() error { return s.WritePiece(ctx, id, n, last) }, ErrRange},
		{"index past the end in a batch", func() error { return s.WritePieces(ctx, id, []Piece{{1, p.piece(1)}, {n, last}}) }, ErrRange},
		{"short piece", func() error { return s.WritePiece(ctx, id, 1, p.piece(1)[1:]) }, ErrRange},
		{"long last piece", func() error { return s.WritePiece(ctx, id, n-1, append(bytes.Clone(last), 0)) }, ErrRange},
		{"unknown title write", func() error { return s.WritePiece(ctx, unknown, 0, p.piece(0)) }, ErrUnknownTitle},
		{"unknown title read", func() error { _, err := s.ReadAt(unknown, make([]byte, 10), 0); return err }, ErrUnknownTitle},
		{"unknown title piece", func() error { _, err := s.ReadPiece(unknown, 0, nil); return err }, ErrUnknownTitle},
		{"unknown title have", func() error { _, err := s.Have(unknown); return err }, ErrUnknownTitle},
		{"unknown title manifest", func() error { _, _, err := s.Manifest(unknown); return err }, ErrUnknownTitle},
		{"unknown title lock", func() error { _, err := s.Lock(unknown, "x"); return err }, ErrUnknownTitle},
		{"unknown title delete", func() error { return s.DeleteTitle(unknown) }, ErrUnknownTitle},
		{"unknown title position", func() error { return s.SetPosition(unknown, 0) }, ErrUnknownTitle},
		{"unknown title verify", func() error { _, err := s.Verify(ctx, unknown); return err }, ErrUnknownTitle},
		{"untrusted manifest", func() error { _, err := s.AddTitle(untrusted.signed); return err }, media.ErrManifestSignature},
		{"untrusted package", func() error { return s.ImportPackage(ctx, untrusted.dir) }, media.ErrManifestSignature},
		{"garbage manifest", func() error { _, err := s.AddTitle([]byte("BXSWMED1 nonsense")); return err }, media.ErrMalformed},
		{"tampered manifest", func() error {
			b := bytes.Clone(p.signed)
			b[len(b)/2] ^= 1
			_, err := s.AddTitle(b)
			return err
		}, media.ErrManifestSignature},
		{"different manifest for the ID", func() error { _, err := s.AddTitle(conflict.signed); return err }, ErrConflict},
		{"different package for the ID", func() error { return s.ImportPackage(ctx, conflict.dir) }, ErrConflict},
		{"position past the end", func() error { return s.SetPosition(id, p.m.NumFrames()) }, ErrRange},
		{"negative position", func() error { return s.SetPosition(id, -1) }, ErrRange},
		{"read missing piece", func() error { _, err := s.ReadAt(id, make([]byte, 10), 64<<10+5); return err }, ErrMissing},
		{"read across a missing piece", func() error { _, err := s.ReadAt(id, make([]byte, 5<<16), 0); return err }, ErrMissing},
		{"read piece missing", func() error { _, err := s.ReadPiece(id, 1, nil); return err }, ErrMissing},
		{"read negative offset", func() error { _, err := s.ReadAt(id, make([]byte, 10), -1); return err }, ErrRange},
		{"read piece past the end", func() error { _, err := s.ReadPiece(id, n, nil); return err }, ErrRange},
		{"wait past the end", func() error { return s.Wait(ctx, id, n) }, ErrRange},
		{"cancelled write", func() error {
			ctx, cancel := context.WithCancel(ctx)
			cancel()
			return s.WritePiece(ctx, id, 1, p.piece(1))
		}, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := state(t, s)
			err := tc.call()
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			t.Log(err)
			if after := state(t, s); after != before {
				t.Fatalf("state changed:\n%s\nto\n%s", before, after)
			}
		})
	}
	s.Close()
	s = openStore(t, dir, testOptions(nil))
	have, _ := s.Have(id)
	if have.Count() != 3 || !have.Has(0) || !have.Has(3) || !have.Has(4) {
		t.Fatalf("after reopening: pieces %x", have.Bytes())
	}
}

func TestAddTitleIdempotent(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(nil))
	p := makePackage(t, t.TempDir(), newID(t), 300<<10, 64<<10, testKey)
	mustAdd(t, s, p)
	writeAll(t, s, p)
	before := state(t, s)
	m, err := s.AddTitle(p.signed)
	if err != nil || m.ID != p.m.ID {
		t.Fatal(err)
	}
	// The same manifest signed by another trusted key is the same title.
	o := testOptions(nil)
	o.MediaKeys = append(o.MediaKeys, otherKey.Public().(ed25519.PublicKey))
	s.Close()
	s = openStore(t, dir, o)
	if _, err := s.AddTitle(media.Sign(p.m, otherKey)); err != nil {
		t.Fatal(err)
	}
	if after := state(t, s); after != before {
		t.Fatalf("state changed:\n%s\nto\n%s", before, after)
	}
}

func TestCapacity(t *testing.T) {
	dir := t.TempDir()
	a := makePackage(t, t.TempDir(), newID(t), 500<<10, 64<<10, testKey)
	b := makePackage(t, t.TempDir(), newID(t), 400<<10, 64<<10, testKey)
	o := testOptions(nil)
	o.Capacity = int64(len(a.payload)+len(b.payload)) - 1
	s := openStore(t, dir, o)
	mustAdd(t, s, a)
	if err := s.WritePieces(t.Context(), a.m.ID, []Piece{{0, a.piece(0)}, {1, a.piece(1)}}); err != nil {
		t.Fatal(err)
	}
	usage := func(wantUsed, wantReserved int) {
		t.Helper()
		used, reserved, capacity, err := s.Usage()
		if err != nil || used != int64(wantUsed) || reserved != int64(wantReserved) || capacity != o.Capacity {
			t.Fatalf("Usage: %d %d %d %v, want %d %d %d", used, reserved, capacity, err, wantUsed, wantReserved, o.Capacity)
		}
	}
	usage(128<<10, len(a.payload))
	before := state(t, s)
	if _, err := s.AddTitle(b.signed); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("AddTitle beyond capacity: %v", err)
	}
	if after := state(t, s); after != before {
		t.Fatalf("state changed:\n%s\nto\n%s", before, after)
	}
	if err := s.DeleteTitle(a.m.ID); err != nil {
		t.Fatal(err)
	}
	usage(0, 0)
	mustAdd(t, s, b)
	usage(0, len(b.payload))
	writeAll(t, s, b)
	usage(len(b.payload), len(b.payload))
	s.Close()
	s = openStore(t, dir, o)
	usage(len(b.payload), len(b.payload))

	// Capacity 0: what the file system has.
	o.Capacity = 0
	s.Close()
	s = openStore(t, dir, o)
	used, _, capacity, err := s.Usage()
	if err != nil || capacity <= used {
		t.Fatalf("capacity from the file system: %d (used %d), %v", capacity, used, err)
	}
	o.Reserve = 1 << 62
	s.Close()
	s = openStore(t, dir, o)
	if _, err := s.AddTitle(a.signed); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("AddTitle with everything reserved: %v", err)
	}
}

func TestLockAndDelete(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(nil))
	p := makePackage(t, t.TempDir(), newID(t), 300<<10, 64<<10, testKey)
	mustAdd(t, s, p)
	writeAll(t, s, p)
	if err := s.SetPosition(p.m.ID, 2); err != nil {
		t.Fatal(err)
	}
	un1, err := s.Lock(p.m.ID, "playing")
	if err != nil {
		t.Fatal(err)
	}
	un2, err := s.Lock(p.m.ID, "sending to box 7")
	if err != nil {
		t.Fatal(err)
	}
	if ts, _ := s.Titles(); ts[0].Locks != 2 {
		t.Fatalf("Titles: %+v", ts)
	}
	before := state(t, s)
	err = s.DeleteTitle(p.m.ID)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "playing, sending to box 7") {
		t.Fatalf("DeleteTitle while locked: %v", err)
	}
	un1()
	un1()
	if err := s.DeleteTitle(p.m.ID); !errors.Is(err, ErrLocked) {
		t.Fatalf("DeleteTitle while locked once: %v", err)
	}
	if after := state(t, s); after != before {
		t.Fatalf("state changed:\n%s\nto\n%s", before, after)
	}
	un2()
	if err := s.DeleteTitle(p.m.ID); err != nil {
		t.Fatal(err)
	}
	un2()
	if ts, _ := s.Titles(); len(ts) != 0 {
		t.Fatalf("Titles after delete: %+v", ts)
	}
	if _, err := os.Stat(filepath.Join(dir, SegmentFolder, p.m.ID.String())); !os.IsNotExist(err) {
		t.Fatalf("segments after delete: %v", err)
	}
	if _, err := s.ReadAt(p.m.ID, make([]byte, 1), 0); !errors.Is(err, ErrUnknownTitle) {
		t.Fatalf("ReadAt after delete: %v", err)
	}
	if _, err := s.Lock(p.m.ID, "x"); !errors.Is(err, ErrUnknownTitle) {
		t.Fatalf("Lock after delete: %v", err)
	}
	// Added again, it starts empty, without its old position.
	mustAdd(t, s, p)
	if have, _ := s.Have(p.m.ID); have.Count() != 0 {
		t.Fatal("pieces survived deletion")
	}
	if _, ok, _ := s.Position(p.m.ID); ok {
		t.Fatal("position survived deletion")
	}
}

// TestDeleteCrash stops DeleteTitle after it marked the title, as a crash
// would, and checks that Open finishes the job.
func TestDeleteCrash(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(nil)
	s := openStore(t, dir, o)
	a := makePackage(t, t.TempDir(), newID(t), 300<<10, 64<<10, testKey)
	b := makePackage(t, t.TempDir(), newID(t), 200<<10, 64<<10, testKey)
	mustAdd(t, s, a)
	mustAdd(t, s, b)
	writeAll(t, s, a)
	writeAll(t, s, b)
	crash := errors.New("crash")
	s.hookAfterMark = func() error { return crash }
	if err := s.DeleteTitle(a.m.ID); err != crash {
		t.Fatal(err)
	}
	s.Close()
	// What the crash left: a record marked deleting, and the files.
	db, err := bbolt.Open(filepath.Join(dir, IndexFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *bbolt.Tx) error {
		rec, err := decodeTitleRecord(tx.Bucket(bucketTitles).Get(a.m.ID[:]))
		if err != nil || !rec.Deleting {
			t.Fatalf("record after the crash: %+v, %v", rec, err)
		}
		return nil
	})
	db.Close()
	if _, err := os.Stat(filepath.Join(dir, SegmentFolder, a.m.ID.String())); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, o)
	ts, _ := s.Titles()
	if len(ts) != 1 || ts[0].ID != b.m.ID || !ts[0].Complete {
		t.Fatalf("Titles after reopening: %+v", ts)
	}
	if _, err := os.Stat(filepath.Join(dir, SegmentFolder, a.m.ID.String())); !os.IsNotExist(err) {
		t.Fatalf("segments of the deleted title: %v", err)
	}
	if used, reserved, _, _ := s.Usage(); used != int64(len(b.payload)) || reserved != used {
		t.Fatalf("Usage: %d %d", used, reserved)
	}
	mustAdd(t, s, a)
}

func TestOpenBusy(t *testing.T) {
	dir := t.TempDir()
	openStore(t, dir, testOptions(nil))
	start := time.Now()
	_, err := Open(dir, testOptions(nil))
	if !errors.Is(err, ErrBusy) || time.Since(start) > 2*time.Second {
		t.Fatalf("second Open: %v after %v", err, time.Since(start))
	}
	t.Log(err)
}

// TestOpenRefusesDamagedIndex checks that Open refuses a damaged or
// missing index without touching the segments.
func TestOpenRefusesDamagedIndex(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, index string)
	}{
		{"garbage", func(t *testing.T, index string) {
			b := make([]byte, 64<<10)
			mrand.NewChaCha8([32]byte{1}).Read(b)
			os.WriteFile(index, b, 0o600)
		}},
		{"empty", func(t *testing.T, index string) { os.Truncate(index, 0) }},
		{"missing", func(t *testing.T, index string) { os.Remove(index) }},
		{"cut short", func(t *testing.T, index string) { os.Truncate(index, 3*int64(os.Getpagesize())) }},
		{"cut to the meta pages", func(t *testing.T, index string) { os.Truncate(index, 2*int64(os.Getpagesize())) }},
		{"pages overwritten", func(t *testing.T, index string) {
			f, err := os.OpenFile(index, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			st, _ := f.Stat()
			// Keep the two meta pages; trash every other page's header.
			for off := int64(2 * os.Getpagesize()); off < st.Size(); off += int64(os.Getpagesize()) {
				f.WriteAt(bytes.Repeat([]byte{0xee}, 16), off)
			}
		}},
		{"leaf pages overwritten", func(t *testing.T, index string) {
			f, err := os.OpenFile(index, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			st, _ := f.Stat()
			ps := int64(os.Getpagesize())
			for off := 2 * ps; off < st.Size(); off += ps {
				hdr := make([]byte, 16)
				f.ReadAt(hdr, off)
				if hdr[8] == 0x02 { // leaf
					f.WriteAt(bytes.Repeat([]byte{0xee}, 64), off+8)
				}
			}
		}},
		{"not a store index", func(t *testing.T, index string) {
			os.Remove(index)
			db, err := bbolt.Open(index, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err })
			db.Close()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir, testOptions(nil))
			if err != nil {
				t.Fatal(err)
			}
			p := makePackage(t, t.TempDir(), newID(t), 300<<10, 64<<10, testKey)
			mustAdd(t, s, p)
			writeAll(t, s, p)
			s.Close()
			tc.damage(t, filepath.Join(dir, IndexFile))
			before := tree(t, filepath.Join(dir, SegmentFolder))
			s, err = Open(dir, testOptions(nil))
			if err == nil {
				s.Close()
				t.Fatal("Open accepted a damaged index")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v, want ErrCorrupt", err)
			}
			t.Log(err)
			if after := tree(t, filepath.Join(dir, SegmentFolder)); after != before {
				t.Fatal("Open changed the segments")
			}
		})
	}
}

// TestOpenMissingSegments checks that pieces in segment files that are
// gone or short are marked missing on Open, and the rest kept.
func TestOpenMissingSegments(t *testing.T) {
	dir := t.TempDir()
	log := &logBuf{}
	o := testOptions(log)
	s := openStore(t, dir, o)
	a := makePackage(t, t.TempDir(), newID(t), 1<<20+1000, 64<<10, testKey) // 17 pieces, 5 segments
	b := makePackage(t, t.TempDir(), newID(t), 300<<10, 64<<10, testKey)
	mustAdd(t, s, a)
	mustAdd(t, s, b)
	writeAll(t, s, a)
	writeAll(t, s, b)
	s.Close()
	seg := func(id media.ID, n int) string {
		return filepath.Join(dir, SegmentFolder, id.String(), fmt.Sprintf("%d.seg", n))
	}
	os.Remove(seg(a.m.ID, 1))                                        // pieces 4-7
	os.Truncate(seg(a.m.ID, 2), 128<<10+1)                           // pieces 10, 11
	os.Truncate(seg(a.m.ID, 4), 0)                                   // piece 16
	os.RemoveAll(filepath.Join(dir, SegmentFolder, b.m.ID.String())) // all of b
	s = openStore(t, dir, o)
	have, _ := s.Have(a.m.ID)
	var missing []int
	for i := range have.Len() {
		if !have.Has(i) {
			missing = append(missing, i)
		}
	}
	if want := []int{4, 5, 6, 7, 10, 11, 16}; !slices.Equal(missing, want) {
		t.Fatalf("missing %v, want %v", missing, want)
	}
	if have, _ := s.Have(b.m.ID); have.Count() != 0 {
		t.Fatalf("title whose folder is gone has %d pieces", have.Count())
	}
	if !strings.Contains(log.String(), "segment files gone or short") {
		t.Fatalf("nothing logged:\n%s", log)
	}
	used, _, _, _ := s.Usage()
	if want := int64(len(a.payload) - 6*64<<10 - (len(a.payload) - 16*64<<10)); used != want {
		t.Fatalf("used %d, want %d", used, want)
	}
	for i := range a.m.NumPieces() {
		if have.Has(i) {
			if got, err := s.ReadPiece(a.m.ID, i, nil); err != nil || !bytes.Equal(got, a.piece(i)) {
				t.Fatalf("piece %d: %v", i, err)
			}
		}
	}
	writeAll(t, s, a)
	writeAll(t, s, b)
	s.Close()
	s = openStore(t, dir, o)
	if ts, _ := s.Titles(); !ts[0].Complete || !ts[1].Complete {
		t.Fatalf("Titles: %+v", ts)
	}
}

func TestOpenRemovesStrayFolders(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(nil))
	p := makePackage(t, t.TempDir(), newID(t), 100<<10, 64<<10, testKey)
	mustAdd(t, s, p)
	writeAll(t, s, p)
	s.Close()
	stray := filepath.Join(dir, SegmentFolder, newID(t).String())
	os.Mkdir(stray, 0o700)
	os.WriteFile(filepath.Join(stray, "0.seg"), []byte("x"), 0o600)
	s = openStore(t, dir, testOptions(nil))
	if _, err := os.Stat(stray); !os.IsNotExist(err) {
		t.Fatalf("stray folder: %v", err)
	}
	if ts, _ := s.Titles(); !ts[0].Complete {
		t.Fatal("title lost")
	}
}

func TestVerify(t *testing.T) {
	dir := t.TempDir()
	log := &logBuf{}
	s := openStore(t, dir, testOptions(log))
	p := makePackage(t, t.TempDir(), newID(t), 600<<10, 64<<10, testKey)
	mustAdd(t, s, p)
	writeAll(t, s, p)
	if bad, err := s.Verify(t.Context(), p.m.ID); err != nil || len(bad) != 0 {
		t.Fatalf("Verify of good pieces: %v, %v", bad, err)
	}
	// Flip a byte of piece 5 (segment 1, offset 64 KiB) behind the store's back.
	f, err := os.OpenFile(filepath.Join(dir, SegmentFolder, p.m.ID.String(), "1.seg"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{^p.piece(5)[10]}, 64<<10+10)
	f.Close()
	bad, err := s.Verify(t.Context(), p.m.ID)
	if err != nil || !slices.Equal(bad, []int{5}) {
		t.Fatalf("Verify: %v, %v", bad, err)
	}
	if !strings.Contains(log.String(), "piece=5") {
		t.Fatalf("not logged:\n%s", log)
	}
	if have, _ := s.Have(p.m.ID); have.Has(5) || have.Count() != p.m.NumPieces()-1 {
		t.Fatal("bad piece still present")
	}
	if _, err := s.ReadPiece(p.m.ID, 5, nil); !errors.Is(err, ErrMissing) {
		t.Fatal(err)
	}
	writeAll(t, s, p)
	if bad, err := s.Verify(t.Context(), p.m.ID); err != nil || len(bad) != 0 {
		t.Fatalf("Verify after repair: %v, %v", bad, err)
	}
}

func TestWait(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions(nil))
	p := makePackage(t, t.TempDir(), newID(t), 300<<10, 64<<10, testKey)
	mustAdd(t, s, p)
	id := p.m.ID
	waitFor := func(ctx context.Context, piece int) chan error {
		ch := make(chan error, 1)
		go func() { ch <- s.Wait(ctx, id, piece) }()
		return ch
	}
	w3 := waitFor(t.Context(), 3)
	select {
	case err := <-w3:
		t.Fatalf("Wait returned before the piece came: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := s.WritePiece(t.Context(), id, 2, p.piece(2)); err != nil {
		t.Fatal(err)
	}
	if err := s.WritePiece(t.Context(), id, 3, p.piece(3)); err != nil {
		t.Fatal(err)
	}
	if err := <-w3; err != nil {
		t.Fatal(err)
	}
	if err := s.Wait(t.Context(), id, 2); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := s.Wait(ctx, id, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with a deadline: %v", err)
	}
	w0 := waitFor(t.Context(), 0)
	time.Sleep(10 * time.Millisecond)
	if err := s.DeleteTitle(id); err != nil {
		t.Fatal(err)
	}
	if err := <-w0; !errors.Is(err, ErrUnknownTitle) {
		t.Fatalf("Wait on a deleted title: %v", err)
	}
	mustAdd(t, s, p)
	w1 := waitFor(t.Context(), 1)
	time.Sleep(10 * time.Millisecond)
	s.Close()
	if err := <-w1; !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait on a closed store: %v", err)
	}
}

func TestPosition(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(nil))
	p := makePackage(t, t.TempDir(), newID(t), 300<<10, 64<<10, testKey)
	mustAdd(t, s, p)
	if _, ok, err := s.Position(p.m.ID); ok || err != nil {
		t.Fatalf("Position before any: %v %v", ok, err)
	}
	for _, f := range []int{0, 7, p.m.NumFrames() - 1} {
		if err := s.SetPosition(p.m.ID, f); err != nil {
			t.Fatal(err)
		}
		if got, ok, err := s.Position(p.m.ID); got != f || !ok || err != nil {
			t.Fatalf("Position: %d %v %v, want %d", got, ok, err, f)
		}
	}
	s.Close()
	s = openStore(t, dir, testOptions(nil))
	if got, ok, err := s.Position(p.m.ID); got != p.m.NumFrames()-1 || !ok || err != nil {
		t.Fatalf("Position after reopening: %d %v %v", got, ok, err)
	}
}

func TestImportPackage(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions(nil))
	p := makePackage(t, t.TempDir(), newID(t), 2<<20+333, 64<<10, testKey)
	// Some pieces are there already, as after an import cut short.
	mustAdd(t, s, p)
	if err := s.WritePieces(t.Context(), p.m.ID, []Piece{{3, p.piece(3)}, {20, p.piece(20)}}); err != nil {
		t.Fatal(err)
	}
	if err := s.ImportPackage(t.Context(), p.dir); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(p.payload))
	if _, err := s.ReadAt(p.m.ID, got, 0); err != nil || !bytes.Equal(got, p.payload) {
		t.Fatalf("payload after import: %v", err)
	}
	if err := s.ImportPackage(t.Context(), p.dir); err != nil {
		t.Fatalf("second import: %v", err)
	}
	// A package whose payload does not match its manifest is refused
	// piece by piece.
	q := makePackage(t, t.TempDir(), newID(t), 300<<10, 64<<10, testKey)
	f, _ := os.OpenFile(filepath.Join(q.dir, media.PayloadFile), os.O_RDWR, 0)
	f.WriteAt([]byte{^q.payload[70000]}, 70000)
	f.Close()
	if err := s.ImportPackage(t.Context(), q.dir); !errors.Is(err, ErrPieceHash) {
		t.Fatalf("import of a damaged package: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	r := makePackage(t, t.TempDir(), newID(t), 300<<10, 64<<10, testKey)
	if err := s.ImportPackage(ctx, r.dir); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled import: %v", err)
	}
}

// TestManifestCache writes to more titles than the cache holds, so
// manifests are dropped and read back from the index.
func TestManifestCache(t *testing.T) {
	o := testOptions(nil)
	o.ManifestCache = 1
	s := openStore(t, t.TempDir(), o)
	var ps []*pkg
	for range 3 {
		p := makePackage(t, t.TempDir(), newID(t), 200<<10, 64<<10, testKey)
		mustAdd(t, s, p)
		ps = append(ps, p)
	}
	for i := range ps[0].m.NumPieces() {
		for _, p := range ps {
			if err := s.WritePiece(t.Context(), p.m.ID, i, p.piece(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if s.cached != 1 {
		t.Fatalf("%d manifests cached", s.cached)
	}
	for _, p := range ps {
		m, signed, err := s.Manifest(p.m.ID)
		if err != nil || m.ID != p.m.ID || !bytes.Equal(signed, p.signed) {
			t.Fatal(err)
		}
	}
	// A key no longer trusted: stored manifests stop loading.
	o.MediaKeys = []ed25519.PublicKey{otherKey.Public().(ed25519.PublicKey)}
	dir := s.Dir()
	s.Close()
	s = openStore(t, dir, o)
	if _, _, err := s.Manifest(ps[0].m.ID); !errors.Is(err, media.ErrManifestSignature) {
		t.Fatalf("manifest signed by a key no longer trusted: %v", err)
	}
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"no keys", Options{}},
		{"segment not a power of two", Options{MediaKeys: []ed25519.PublicKey{testPub}, SegmentSize: 3 << 20}},
		{"segment too small", Options{MediaKeys: []ed25519.PublicKey{testPub}, SegmentSize: 32 << 10}},
		{"segment too large", Options{MediaKeys: []ed25519.PublicKey{testPub}, SegmentSize: 2 << 30}},
		{"negative capacity", Options{MediaKeys: []ed25519.PublicKey{testPub}, Capacity: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := Open(t.TempDir(), tc.o); err == nil {
				s.Close()
				t.Fatal("Open accepted the options")
			}
		})
	}
}

func TestBitmap(t *testing.T) {
	for _, tc := range []struct {
		n          int
		set        []int
		count      int
		contiguous [][2]int // from, want
	}{
		{0, nil, 0, [][2]int{{0, 0}}},
		{1, []int{0}, 1, [][2]int{{0, 1}, {1, 1}}},
		{9, []int{0, 1, 2, 4}, 4, [][2]int{{0, 3}, {3, 3}, {4, 5}, {-1, 3}}},
		{20, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18}, 18, [][2]int{{0, 17}, {17, 17}, {18, 19}, {19, 19}, {25, 20}}},
		{16, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, 16, [][2]int{{0, 16}, {8, 16}}},
	} {
		m := NewBitmap(tc.n)
		for _, i := range tc.set {
			m.set(i)
		}
		if m.Count() != tc.count || m.Len() != tc.n {
			t.Errorf("n %d: count %d len %d", tc.n, m.Count(), m.Len())
		}
		for _, c := range tc.contiguous {
			if got := m.ContiguousFrom(c[0]); got != c[1] {
				t.Errorf("n %d: ContiguousFrom(%d) = %d, want %d", tc.n, c[0], got, c[1])
			}
		}
		back, err := BitmapFromBytes(tc.n, m.Bytes())
		if err != nil || !bytes.Equal(back.Bytes(), m.Bytes()) {
			t.Errorf("n %d: round trip: %v", tc.n, err)
		}
		if m.Has(-1) || m.Has(tc.n) {
			t.Errorf("n %d: Has out of range", tc.n)
		}
	}
	if m := NewBitmap(10); true {
		m.set(0)
		if m.Bytes()[0] != 0x80 {
			t.Error("piece 0 is not the high bit")
		}
	}
	for _, tc := range []struct {
		n int
		b []byte
	}{{9, []byte{0xff, 0x40}}, {8, []byte{0xff, 0}}, {8, nil}, {-1, nil}} {
		if _, err := BitmapFromBytes(tc.n, tc.b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("BitmapFromBytes(%d, %x): %v", tc.n, tc.b, err)
		}
	}
}

// TestOpenAfterRefusal checks that a refused index leaves no lock behind:
// once it is restored, the same process can open the store.
func TestOpenAfterRefusal(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(nil))
	p := makePackage(t, t.TempDir(), newID(t), 300<<10, 64<<10, testKey)
	mustAdd(t, s, p)
	writeAll(t, s, p)
	s.Close()
	index := filepath.Join(dir, IndexFile)
	good, err := os.ReadFile(index)
	if err != nil {
		t.Fatal(err)
	}
	os.Truncate(index, 3*int64(os.Getpagesize()))
	if _, err := Open(dir, testOptions(nil)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of a cut index: %v", err)
	}
	os.WriteFile(index, good, 0o600)
	s = openStore(t, dir, testOptions(nil))
	if ts, _ := s.Titles(); len(ts) != 1 || !ts[0].Complete {
		t.Fatalf("Titles after restoring the index: %+v", ts)
	}
}

// TestNothingMarkedWithoutSync makes the data sync fail and checks that
// the pieces it would have made durable are not marked present, while
// those of other segments synced in the same batch are.
func TestNothingMarkedWithoutSync(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions(nil))
	p := makePackage(t, t.TempDir(), newID(t), 1<<20, 64<<10, testKey)
	mustAdd(t, s, p)
	failed := errors.New("disk on fire")
	var mu sync.Mutex
	var synced []string
	s.datasync = func(f *os.File) error {
		mu.Lock()
		defer mu.Unlock()
		synced = append(synced, filepath.Base(f.Name()))
		if filepath.Base(f.Name()) == "1.seg" {
			return failed
		}
		return nil
	}
	// Pieces 1 and 2 are in segment 0, 5 in segment 1, 9 in segment 2.
	err := s.WritePieces(t.Context(), p.m.ID, []Piece{{9, p.piece(9)}, {1, p.piece(1)}, {5, p.piece(5)}, {2, p.piece(2)}})
	if !errors.Is(err, failed) {
		t.Fatalf("WritePieces: %v", err)
	}
	if slices.Sort(synced); !slices.Equal(synced, []string{"0.seg", "1.seg", "2.seg"}) {
		t.Fatalf("synced %v", synced)
	}
	have, _ := s.Have(p.m.ID)
	if have.Count() != 3 || !have.Has(1) || !have.Has(2) || !have.Has(9) {
		t.Fatalf("present after a failed sync: %x", have.Bytes())
	}
	s.datasync = func(*os.File) error { return failed }
	if err := s.WritePiece(t.Context(), p.m.ID, 5, p.piece(5)); !errors.Is(err, failed) {
		t.Fatalf("WritePiece: %v", err)
	}
	if have, _ := s.Have(p.m.ID); have.Count() != 3 {
		t.Fatalf("present after a failed sync: %x", have.Bytes())
	}
	if _, err := s.ReadAt(p.m.ID, make([]byte, 10), 5*64<<10); !errors.Is(err, ErrMissing) {
		t.Fatalf("ReadAt of a piece whose sync failed: %v", err)
	}
}

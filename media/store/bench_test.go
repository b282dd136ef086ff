package store

import (
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

const benchPayload = 64 << 20

// BenchmarkWritePieces writes a 64 MiB title of 1 MiB pieces in one
// batch: hashing, pwrite, one fdatasync per 16 MiB segment, one commit.
// Compare BenchmarkDiskReference.
func BenchmarkWritePieces(b *testing.B) {
	s := openStore(b, b.TempDir(), benchOptions())
	p := makePackage(b, b.TempDir(), newID(b), benchPayload, 1<<20, testKey)
	var ps []Piece
	for i := range p.m.NumPieces() {
		ps = append(ps, Piece{Index: i, Data: p.piece(i)})
	}
	b.SetBytes(int64(len(p.payload)))
	for b.Loop() {
		b.StopTimer()
		mustAdd(b, s, p)
		b.StartTimer()
		if err := s.WritePieces(b.Context(), p.m.ID, ps); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := s.DeleteTitle(p.m.ID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkWritePiece writes 1 MiB pieces one call each, as they come from
// peers: every piece pays an fdatasync and a commit.
func BenchmarkWritePiece(b *testing.B) {
	s := openStore(b, b.TempDir(), benchOptions())
	p := makePackage(b, b.TempDir(), newID(b), benchPayload, 1<<20, testKey)
	mustAdd(b, s, p)
	b.SetBytes(1 << 20)
	i := 0
	for b.Loop() {
		if i == p.m.NumPieces() {
			b.StopTimer()
			s.DeleteTitle(p.m.ID)
			mustAdd(b, s, p)
			i = 0
			b.StartTimer()
		}
		if err := s.WritePiece(b.Context(), p.m.ID, i, p.piece(i)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkImportPackage imports a 64 MiB package folder.
func BenchmarkImportPackage(b *testing.B) {
	s := openStore(b, b.TempDir(), benchOptions())
	p := makePackage(b, b.TempDir(), newID(b), benchPayload, 1<<20, testKey)
	b.SetBytes(int64(len(p.payload)))
	for b.Loop() {
		if err := s.ImportPackage(b.Context(), p.dir); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := s.DeleteTitle(p.m.ID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkDiskReference is what the disk does without the store: 64 MiB
// written in 1 MiB pwrites to a new file, then one fdatasync.
func BenchmarkDiskReference(b *testing.B) {
	dir := b.TempDir()
	buf := make([]byte, 1<<20)
	mrand.NewChaCha8([32]byte{}).Read(buf)
	b.SetBytes(benchPayload)
	for n := 0; b.Loop(); n++ {
		f, err := os.Create(filepath.Join(dir, fmt.Sprint(n)))
		if err != nil {
			b.Fatal(err)
		}
		for off := int64(0); off < benchPayload; off += int64(len(buf)) {
			if _, err := f.WriteAt(buf, off); err != nil {
				b.Fatal(err)
			}
		}
		if err := datasync(f); err != nil {
			b.Fatal(err)
		}
		f.Close()
		b.StopTimer()
		os.Remove(f.Name())
		b.StartTimer()
	}
}

// BenchmarkReadAt reads a complete title at random offsets, from the page
// cache: the store's own cost per read.
func BenchmarkReadAt(b *testing.B) {
	s := openStore(b, b.TempDir(), benchOptions())
	p := makePackage(b, b.TempDir(), newID(b), benchPayload, 1<<20, testKey)
	if err := s.ImportPackage(b.Context(), p.dir); err != nil {
		b.Fatal(err)
	}
	c := dial(b, func() string { path, _ := serveStore(b, s); return path }())
	for _, size := range []int{64 << 10, 1 << 20, 4 << 20} {
		b.Run(fmt.Sprintf("local/%dKiB", size>>10), func(b *testing.B) {
			benchReadAt(b, s, p, size)
		})
		b.Run(fmt.Sprintf("socket/%dKiB", size>>10), func(b *testing.B) {
			benchReadAt(b, c, p, size)
		})
	}
}

func benchReadAt(b *testing.B, r Reader, p *pkg, size int) {
	buf := make([]byte, size)
	rnd := mrand.New(mrand.NewPCG(1, 1))
	b.SetBytes(int64(size))
	for b.Loop() {
		off := rnd.Int64N(int64(len(p.payload) - size))
		if _, err := r.ReadAt(p.m.ID, buf, off); err != nil {
			b.Fatal(err)
		}
	}
}

func benchOptions() Options {
	o := testOptions(nil)
	o.SegmentSize = DefaultSegmentSize
	o.Log = nil
	return o
}

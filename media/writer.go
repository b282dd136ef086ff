package media

import (
	"bufio"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"
)

// Files of a package folder, as the import tool writes it and the store
// reads it.
const (
	ManifestFile = "manifest.bxm" // signed manifest
	PayloadFile  = "payload.bxp"  // the sealed frames, back to back
)

// Writer writes a package folder frame by frame. Nothing appears under the
// final name until Finish has written and synced everything; Abort (or a
// crash) leaves only a hidden temporary folder.
type Writer struct {
	final, tmp string
	payload    *os.File
	buf        *bufio.Writer
	cipher     *FrameCipher
	m          Manifest
	sealed     []byte
	whole      hash.Hash
	piece      hash.Hash
	pieceFill  uint32
	done       bool
}

// NewWriter starts package id in folder dir (the package goes to
// dir/<id>). pieceSize is a power of two from MinPieceSize to
// MaxPieceSize; 0 means 1 MiB.
func NewWriter(dir string, id ID, tracks []Track, contentKey []byte, pieceSize uint32) (*Writer, error) {
	if pieceSize == 0 {
		pieceSize = 1 << DefaultPieceLog
	}
	if len(tracks) == 0 || len(tracks) > MaxTracks {
		return nil, fmt.Errorf("package %s: %d tracks, want 1 to %d", id, len(tracks), MaxTracks)
	}
	for i, t := range tracks {
		if len(t.Config) > maxConfigLen {
			return nil, fmt.Errorf("package %s: track %d: codec configuration of %d bytes exceeds %d", id, i, len(t.Config), maxConfigLen)
		}
	}
	c, err := NewFrameCipher(contentKey, id)
	if err != nil {
		return nil, err
	}
	final := filepath.Join(dir, id.String())
	if _, err := os.Stat(final); err == nil {
		return nil, fmt.Errorf("package %s already exists in %s", id, dir)
	}
	tmp, err := os.MkdirTemp(dir, "."+id.String()+".tmp-")
	if err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(tmp, PayloadFile))
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	return &Writer{
		final: final, tmp: tmp, payload: f, buf: bufio.NewWriterSize(f, 1<<20), cipher: c,
		m:     Manifest{ID: id, Tracks: tracks, PieceSize: pieceSize},
		whole: sha256.New(), piece: sha256.New(),
	}, nil
}

// WriteFrame seals f and appends it. Frames get their index in the order
// they are written: the decoding order.
func (w *Writer) WriteFrame(f Frame) error {
	if w.done {
		return errors.New("package writer: WriteFrame after Finish or Abort")
	}
	if int(f.Track) >= len(w.m.Tracks) {
		return fmt.Errorf("package %s: frame for track %d of %d", w.m.ID, f.Track, len(w.m.Tracks))
	}
	index := w.m.NumFrames()
	if index >= MaxFrames {
		return fmt.Errorf("package %s: more than %d frames", w.m.ID, MaxFrames)
	}
	sealed, err := w.cipher.Seal(w.sealed[:0], uint64(index), f.Meta(), f.Data)
	if err != nil {
		return err
	}
	w.sealed = sealed
	e := FrameEntry{FrameMeta: f.Meta(), Offset: w.m.PayloadSize, Size: uint32(len(sealed))}
	var entry [FrameEntrySize]byte
	putFrame(entry[:], e)
	w.m.frames = append(w.m.frames, entry[:]...)
	if _, err := w.buf.Write(sealed); err != nil {
		return fmt.Errorf("package %s: write payload: %w", w.m.ID, err)
	}
	w.whole.Write(sealed)
	w.m.PayloadSize += uint64(len(sealed))
	for b := sealed; len(b) > 0; {
		n := min(len(b), int(w.m.PieceSize-w.pieceFill))
		w.piece.Write(b[:n])
		w.pieceFill += uint32(n)
		b = b[n:]
		if w.pieceFill == w.m.PieceSize {
			w.endPiece()
		}
	}
	if w.m.NumPieces() > MaxPieces {
		return fmt.Errorf("package %s: payload exceeds %d pieces", w.m.ID, MaxPieces)
	}
	return nil
}

func (w *Writer) endPiece() {
	w.m.pieceHashes = w.piece.Sum(w.m.pieceHashes)
	w.piece.Reset()
	w.pieceFill = 0
}

// Finish writes the signed manifest, syncs the package and moves it to its
// final name.
func (w *Writer) Finish(key ed25519.PrivateKey) (*Manifest, error) {
	if w.done {
		return nil, errors.New("package writer: Finish after Finish or Abort")
	}
	w.done = true
	fail := func(err error) (*Manifest, error) {
		w.payload.Close()
		os.RemoveAll(w.tmp)
		return nil, fmt.Errorf("package %s: %w", w.m.ID, err)
	}
	if w.m.NumFrames() == 0 {
		return fail(errors.New("no frames"))
	}
	if w.pieceFill > 0 {
		w.endPiece()
	}
	copy(w.m.PayloadHash[:], w.whole.Sum(nil))
	if err := w.buf.Flush(); err != nil {
		return fail(err)
	}
	if err := w.payload.Sync(); err != nil {
		return fail(err)
	}
	if err := w.payload.Close(); err != nil {
		return fail(err)
	}
	signed := Sign(&w.m, key)
	if err := writeSynced(filepath.Join(w.tmp, ManifestFile), signed); err != nil {
		return fail(err)
	}
	if err := syncDir(w.tmp); err != nil {
		return fail(err)
	}
	if err := os.Rename(w.tmp, w.final); err != nil {
		return fail(err)
	}
	if err := syncDir(filepath.Dir(w.final)); err != nil {
		return nil, err
	}
	// Hand back a manifest parsed from the signed bytes, like a reader gets.
	return Verify(signed, key.Public().(ed25519.PublicKey))
}

// Abort removes everything written so far.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.payload.Close()
	os.RemoveAll(w.tmp)
}

func writeSynced(path string, data []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Package is a package folder opened for reading.
type Package struct {
	Dir      string
	Manifest *Manifest
	Signed   []byte // the signed manifest file
	Payload  *os.File
}

// OpenPackage opens and verifies a package folder.
func OpenPackage(dir string, trusted ...ed25519.PublicKey) (*Package, error) {
	signed, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, err
	}
	m, err := Verify(signed, trusted...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	f, err := os.Open(filepath.Join(dir, PayloadFile))
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err != nil || uint64(st.Size()) != m.PayloadSize {
		f.Close()
		return nil, fmt.Errorf("%s: payload is not the %d bytes the manifest names", dir, m.PayloadSize)
	}
	return &Package{Dir: dir, Manifest: m, Signed: signed, Payload: f}, nil
}

// Close closes the payload.
func (p *Package) Close() error { return p.Payload.Close() }

package store

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"

	"go.etcd.io/bbolt"

	"github.com/boxswarm/boxswarm/media"
)

// Piece is a piece of a title's payload, as WritePieces takes it.
type Piece struct {
	Index int
	Data  []byte
}

// WritePiece stores one piece; see WritePieces.
func (s *Store) WritePiece(ctx context.Context, id media.ID, index int, data []byte) error {
	return s.WritePieces(ctx, id, []Piece{{Index: index, Data: data}})
}

// WritePieces stores pieces of a title and marks them present once they
// are durable: one pwrite per piece, one fdatasync per touched segment,
// one index transaction for the lot. Every piece is checked against the
// manifest first, and if any is out of range, of the wrong length or does
// not match its hash, nothing is written (ErrRange, ErrPieceHash). Pieces
// already present are skipped without being hashed. If a segment cannot be
// written or synced, the pieces of the segments that were synced are
// still marked, and the error names the segment that failed.
//
// A cancelled ctx stops WritePieces before it writes; once writing has
// begun it finishes, because a half-written batch would be wasted.
func (s *Store) WritePieces(ctx context.Context, id media.ID, pieces []Piece) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("title %s: write pieces: %w", id, err)
	}
	t, err := s.get(id)
	if err != nil {
		return err
	}
	m, _, err := s.manifestOf(t)
	if err != nil {
		return err
	}
	var todo []Piece
	seen := make(map[int]bool, len(pieces))
	s.mu.Lock()
	for _, p := range pieces {
		if p.Index < 0 || p.Index >= int(t.rec.Pieces) {
			s.mu.Unlock()
			return fmt.Errorf("title %s: piece %d of %d: %w", id, p.Index, t.rec.Pieces, ErrRange)
		}
		if _, n := t.rec.pieceSpan(p.Index); int64(len(p.Data)) != n {
			s.mu.Unlock()
			return fmt.Errorf("title %s: piece %d is %d bytes, want %d: %w", id, p.Index, len(p.Data), n, ErrRange)
		}
		if !t.have.Has(p.Index) && !seen[p.Index] {
			todo = append(todo, p)
			seen[p.Index] = true
		}
	}
	s.mu.Unlock()
	if len(todo) == 0 {
		return nil
	}
	if i := firstBadHash(m, todo); i >= 0 {
		return fmt.Errorf("title %s: piece %d: %w", id, todo[i].Index, ErrPieceHash)
	}
	slices.SortFunc(todo, func(a, b Piece) int { return cmp.Compare(a.Index, b.Index) })

	t.io.RLock()
	defer t.io.RUnlock()
	if _, err := s.get(id); err != nil {
		return err
	}
	// Segments are written and synced side by side: the copies into the
	// page cache use every core and the device sees the flushes together.
	var groups [][]Piece
	for i, p := range todo {
		if i == 0 || t.rec.segmentOf(p.Index) != t.rec.segmentOf(todo[i-1].Index) {
			groups = append(groups, nil)
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], p)
	}
	errs := make([]error, len(groups))
	sem := make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))
	var wg sync.WaitGroup
	for g, ps := range groups {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[g] = s.writeSegment(t, t.rec.segmentOf(ps[0].Index), ps)
		})
	}
	wg.Wait()
	// Whatever was synced counts, even if another segment failed.
	var synced []Piece
	for g, ps := range groups {
		if errs[g] == nil {
			synced = append(synced, ps...)
		}
	}
	err = errors.Join(errs...)
	if len(synced) > 0 {
		err = errors.Join(err, s.markPresent(t, synced))
	}
	return err
}

// firstBadHash hashes the pieces on every core and returns the position of
// the first that does not match its manifest hash, or -1.
func firstBadHash(m *media.Manifest, ps []Piece) int {
	if len(ps) == 1 {
		if sha256.Sum256(ps[0].Data) != m.PieceHash(ps[0].Index) {
			return 0
		}
		return -1
	}
	bad := make([]bool, len(ps))
	workers := min(runtime.GOMAXPROCS(0), len(ps))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(ps); i += workers {
				bad[i] = sha256.Sum256(ps[i].Data) != m.PieceHash(ps[i].Index)
			}
		})
	}
	wg.Wait()
	return slices.Index(bad, true)
}

// writeSegment writes pieces, all in segment seg, and syncs them.
func (s *Store) writeSegment(t *title, seg int, ps []Piece) error {
	f, err := s.openSegment(t, seg)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range ps {
		_, so := t.rec.locate(int64(p.Index) * int64(t.rec.PieceSize))
		if _, err := f.WriteAt(p.Data, so); err != nil {
			return fmt.Errorf("title %s: write piece %d: %w", t.id, p.Index, err)
		}
	}
	if err := s.datasync(f); err != nil {
		return fmt.Errorf("title %s: sync segment %d (pieces %d to %d): %w", t.id, seg, ps[0].Index, ps[len(ps)-1].Index, err)
	}
	return nil
}

// markPresent sets the pieces' bits in the index, then in memory, and
// wakes Wait. The caller has synced the pieces' bytes.
func (s *Store) markPresent(t *title, ps []Piece) error {
	err := s.db.Update(func(tx *bbolt.Tx) error {
		if rec := tx.Bucket(bucketTitles).Get(t.id[:]); rec == nil || rec[1]&flagDeleting != 0 {
			return fmt.Errorf("title %s: %w", t.id, ErrUnknownTitle)
		}
		b := tx.Bucket(bucketHave)
		bm, err := BitmapFromBytes(int(t.rec.Pieces), b.Get(t.id[:]))
		if err != nil {
			return fmt.Errorf("title %s: %w", t.id, err)
		}
		for _, p := range ps {
			bm.set(p.Index)
		}
		return b.Put(t.id[:], bm.bits)
	})
	if err != nil {
		return fmt.Errorf("title %s: mark pieces %d to %d present: %w", t.id, ps[0].Index, ps[len(ps)-1].Index, err)
	}
	s.mu.Lock()
	for _, p := range ps {
		if !t.have.Has(p.Index) {
			t.have.set(p.Index)
			t.present += int64(len(p.Data))
			s.used += int64(len(p.Data))
		}
	}
	close(t.changed)
	t.changed = make(chan struct{})
	s.mu.Unlock()
	return nil
}

func (s *Store) segPath(id media.ID, seg int) string {
	return filepath.Join(s.segDir, id.String(), strconv.Itoa(seg)+segmentExt)
}

// openSegment opens a segment for writing. The first time in this process
// it also makes sure the file has its full size and that it and its folder
// are in their folders durably: a file left by a process killed before
// its folder was synced could otherwise vanish in a power cut after its
// pieces were marked.
func (s *Store) openSegment(t *title, seg int) (*os.File, error) {
	path := s.segPath(t.id, seg)
	t.segMu.Lock()
	defer t.segMu.Unlock()
	if t.segReady[seg] {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("title %s: open segment %d: %w", t.id, seg, err)
		}
		return f, nil
	}
	fail := func(err error) (*os.File, error) {
		return nil, fmt.Errorf("title %s: prepare segment %d: %w", t.id, seg, err)
	}
	tdir := filepath.Dir(path)
	if len(t.segReady) == 0 {
		if err := os.Mkdir(tdir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fail(err)
		}
		if err := syncDir(s.segDir); err != nil {
			return fail(err)
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fail(err)
	}
	want := t.rec.segmentLen(seg)
	st, err := f.Stat()
	if err == nil && st.Size() < want {
		err = f.Truncate(want) // sparse: no blocks until pieces land
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = syncDir(tdir)
	}
	if err != nil {
		f.Close()
		return fail(err)
	}
	t.segReady[seg] = true
	return f, nil
}

// ReadPiece reads a present piece into buf, growing it if needed, and
// returns the piece's bytes. It does not rehash them.
func (s *Store) ReadPiece(id media.ID, index int, buf []byte) ([]byte, error) {
	t, err := s.get(id)
	if err != nil {
		return nil, err
	}
	return s.readPiece(t, index, buf)
}

func (s *Store) readPiece(t *title, index int, buf []byte) ([]byte, error) {
	if index < 0 || index >= int(t.rec.Pieces) {
		return nil, fmt.Errorf("title %s: piece %d of %d: %w", t.id, index, t.rec.Pieces, ErrRange)
	}
	off, n := t.rec.pieceSpan(index)
	buf = slices.Grow(buf[:0], int(n))[:n]
	if _, err := s.readPayload(t, buf, off); err != nil {
		return nil, err
	}
	return buf, nil
}

// ReadAt reads payload bytes at off, as io.ReaderAt does (io.EOF past the
// end of the payload), failing with ErrMissing if any of them lies in a
// piece not present.
func (s *Store) ReadAt(id media.ID, p []byte, off int64) (int, error) {
	t, err := s.get(id)
	if err != nil {
		return 0, err
	}
	size := int64(t.rec.PayloadSize)
	if off < 0 {
		return 0, fmt.Errorf("title %s: read at %d: %w", id, off, ErrRange)
	}
	if off >= size {
		return 0, io.EOF
	}
	short := int64(len(p)) > size-off
	if short {
		p = p[:size-off]
	}
	n, err := s.readPayload(t, p, off)
	if err == nil && short {
		err = io.EOF
	}
	return n, err
}

// readPayload reads len(p) payload bytes at off, all within the payload,
// after checking that their pieces are present.
func (s *Store) readPayload(t *title, p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	ps := int64(t.rec.PieceSize)
	first, last := int(off/ps), int((off+int64(len(p))-1)/ps)
	s.mu.Lock()
	for i := first; i <= last; i++ {
		if !t.have.Has(i) {
			s.mu.Unlock()
			return 0, fmt.Errorf("title %s: read %d bytes at %d: piece %d: %w", t.id, len(p), off, i, ErrMissing)
		}
	}
	s.mu.Unlock()
	t.io.RLock()
	defer t.io.RUnlock()
	if _, err := s.get(t.id); err != nil {
		return 0, err
	}
	done := 0
	for done < len(p) {
		seg, so := t.rec.locate(off + int64(done))
		n := int(min(int64(len(p)-done), int64(t.rec.SegmentSize)-so))
		if err := s.readSegment(t, seg, p[done:done+n], so); err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

func (s *Store) readSegment(t *title, seg int, p []byte, off int64) error {
	f, err := os.Open(s.segPath(t.id, seg))
	if err != nil {
		return fmt.Errorf("title %s: segment %d: %w", t.id, seg, err)
	}
	defer f.Close()
	if _, err := f.ReadAt(p, off); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("title %s: read %d bytes at %d of segment %d: %w", t.id, len(p), off, seg, err)
	}
	return nil
}

// importBatch is how many payload bytes ImportPackage hands WritePieces
// at a time: two 16 MiB segments, enough that the syncs and the commit are
// a small part of the time; larger batches measured no faster.
const importBatch = 32 << 20

// ImportPackage adds the title of a package folder (manifest.bxm and
// payload.bxp) and stores every piece it lacks, reading the next batch
// from the package while the last is written (two buffers of importBatch
// bytes). It is how a media server takes in a new title, and can be run
// again to finish one cut short.
func (s *Store) ImportPackage(ctx context.Context, dir string) error {
	pkg, err := media.OpenPackage(dir, s.o.MediaKeys...)
	if err != nil {
		return fmt.Errorf("import %s: %w", dir, err)
	}
	defer pkg.Close()
	m, err := s.AddTitle(pkg.Signed)
	if err != nil {
		return fmt.Errorf("import %s: %w", dir, err)
	}
	have, err := s.Have(m.ID)
	if err != nil {
		return fmt.Errorf("import %s: %w", dir, err)
	}
	perBatch := max(1, importBatch/int(m.PieceSize))
	type batch struct {
		pieces []Piece
		err    error
	}
	bufs := make(chan []byte, 2)
	for range 2 {
		bufs <- make([]byte, perBatch*int(m.PieceSize))
	}
	batches := make(chan batch, 1)
	ctx, cancel := context.WithCancel(ctx)
	reading := make(chan struct{})
	defer func() {
		cancel()
		<-reading // before the deferred Close of the package
	}()
	go func() {
		defer close(reading)
		defer close(batches)
		next := 0
		for next < m.NumPieces() {
			var buf []byte
			select {
			case buf = <-bufs:
			case <-ctx.Done():
				return
			}
			var b batch
			for next < m.NumPieces() && len(b.pieces) < perBatch {
				i := next
				next++
				if have.Has(i) {
					continue
				}
				off, n := m.PieceSpan(i)
				data := buf[len(b.pieces)*int(m.PieceSize):][:n]
				if _, err := pkg.Payload.ReadAt(data, off); err != nil {
					b.err = fmt.Errorf("import %s: read piece %d: %w", dir, i, err)
					break
				}
				b.pieces = append(b.pieces, Piece{Index: i, Data: data})
			}
			if len(b.pieces) == 0 && b.err == nil {
				bufs <- buf // the rest was present already
				continue
			}
			select {
			case batches <- b:
			case <-ctx.Done():
				return
			}
			if b.err != nil {
				return
			}
		}
	}()
	written := 0
	for b := range batches {
		if b.err != nil {
			return b.err
		}
		if err := s.WritePieces(ctx, m.ID, b.pieces); err != nil {
			return fmt.Errorf("import %s: %w", dir, err)
		}
		written += len(b.pieces)
		bufs <- b.pieces[0].Data[:cap(b.pieces[0].Data)] // the batch's buffer starts with its first piece
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("import %s: %w", dir, err)
	}
	s.log.Info("package imported", "title", m.ID, "dir", dir, "pieces written", written, "pieces", m.NumPieces())
	return nil
}

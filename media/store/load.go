package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"go.etcd.io/bbolt"

	"github.com/boxswarm/boxswarm/media"
)

// load reads the title records and bitmaps into memory, finishes deletions
// a crash cut short, marks missing the pieces of segment files that are
// gone or short, and removes segment folders the index does not name.
func (s *Store) load() error {
	var deleting []media.ID
	err := s.db.View(func(tx *bbolt.Tx) error {
		have := tx.Bucket(bucketHave)
		return tx.Bucket(bucketTitles).ForEach(func(k, v []byte) error {
			var id media.ID
			if len(k) != len(id) {
				return fmt.Errorf("title key %x: %w", k, ErrCorrupt)
			}
			copy(id[:], k)
			rec, err := decodeTitleRecord(v)
			if err != nil {
				return fmt.Errorf("title %s: %w", id, err)
			}
			if rec.Deleting {
				deleting = append(deleting, id)
				return nil
			}
			bm, err := BitmapFromBytes(int(rec.Pieces), have.Get(k))
			if err != nil {
				return fmt.Errorf("title %s: %w", id, err)
			}
			t := &title{id: id, rec: rec, have: bm, changed: make(chan struct{}), locks: map[uint64]string{}, segReady: map[int]bool{}}
			for i := range int(rec.Pieces) {
				if bm.Has(i) {
					_, n := rec.pieceSpan(i)
					t.present += n
				}
			}
			s.titles[id] = t
			s.used += t.present
			s.reserved += int64(rec.PayloadSize)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("open store %s: load index: %w", s.dir, err)
	}
	for _, id := range deleting {
		if err := s.finishDelete(id); err != nil {
			return fmt.Errorf("open store %s: finish deleting title %s: %w", s.dir, id, err)
		}
		s.log.Info("finished deleting title", "title", id)
	}
	for _, t := range s.titles {
		if err := s.checkSegments(t); err != nil {
			return fmt.Errorf("open store %s: %w", s.dir, err)
		}
	}
	names, err := s.segmentFolders()
	if err != nil {
		return err
	}
	for _, name := range names {
		if id, err := media.ParseID(name); err == nil && s.titles[id] != nil {
			continue
		}
		s.log.Warn("removing segment folder the index does not name", "folder", name)
		if err := os.RemoveAll(filepath.Join(s.segDir, name)); err != nil {
			return fmt.Errorf("open store %s: remove stray %s: %w", s.dir, name, err)
		}
	}
	var pieces int
	for _, t := range s.titles {
		pieces += t.have.Count()
	}
	s.log.Info("store open", "titles", len(s.titles), "pieces", pieces, "used", s.used, "reserved", s.reserved)
	return nil
}

// checkSegments marks missing the present pieces of t whose bytes lie
// beyond the end of their segment file, or in one that is gone. It only
// stats: pieces are marked present after their bytes are synced, so
// anything short of a lying disk or outside hands leaves the sizes right.
func (s *Store) checkSegments(t *title) error {
	var lost []int
	for seg := range t.rec.segments() {
		first := int(int64(seg) * int64(t.rec.SegmentSize) / int64(t.rec.PieceSize))
		last := min(first+int(t.rec.SegmentSize/uint64(t.rec.PieceSize)), int(t.rec.Pieces)) - 1
		var any bool
		for i := first; i <= last && !any; i++ {
			any = t.have.Has(i)
		}
		if !any {
			continue
		}
		var size int64
		st, err := os.Stat(s.segPath(t.id, seg))
		switch {
		case err == nil:
			size = st.Size()
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("title %s: segment %d: %w", t.id, seg, err)
		}
		for i := first; i <= last; i++ {
			off, n := t.rec.pieceSpan(i)
			if _, so := t.rec.locate(off); t.have.Has(i) && so+n > size {
				lost = append(lost, i)
			}
		}
	}
	if len(lost) == 0 {
		return nil
	}
	s.log.Warn("segment files gone or short; marking their pieces missing", "title", t.id, "pieces", len(lost), "first", lost[0])
	return s.clearPieces(t, lost)
}

// clearPieces marks pieces missing, in the index and then in memory.
func (s *Store) clearPieces(t *title, lost []int) error {
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketHave)
		bm, err := BitmapFromBytes(int(t.rec.Pieces), b.Get(t.id[:]))
		if err != nil {
			return err
		}
		for _, i := range lost {
			bm.clear(i)
		}
		return b.Put(t.id[:], bm.bits)
	})
	if err != nil {
		return fmt.Errorf("title %s: mark %d pieces missing: %w", t.id, len(lost), err)
	}
	s.mu.Lock()
	for _, i := range lost {
		if t.have.Has(i) {
			t.have.clear(i)
			_, n := t.rec.pieceSpan(i)
			t.present -= n
			if s.titles[t.id] == t {
				s.used -= n
			}
		}
	}
	s.mu.Unlock()
	return nil
}

// Verify rehashes every present piece of a title and marks missing, and
// logs, those that do not match the manifest or cannot be read. It
// returns their indexes.
func (s *Store) Verify(ctx context.Context, id media.ID) (bad []int, err error) {
	t, err := s.get(id)
	if err != nil {
		return nil, err
	}
	m, _, err := s.manifestOf(t)
	if err != nil {
		return nil, err
	}
	have, err := s.Have(id)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, t.rec.PieceSize)
	for i := range int(t.rec.Pieces) {
		if !have.Has(i) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("title %s: verify: %w", id, err)
		}
		data, err := s.readPiece(t, i, buf)
		switch {
		case errors.Is(err, ErrUnknownTitle) || errors.Is(err, ErrClosed):
			return nil, err
		case err != nil:
			s.log.Warn("piece unreadable; marking it missing", "title", id, "piece", i, "err", err)
			bad = append(bad, i)
		case sha256.Sum256(data) != m.PieceHash(i):
			s.log.Warn("piece does not match its hash; marking it missing", "title", id, "piece", i)
			bad = append(bad, i)
		}
	}
	if len(bad) > 0 {
		if err := s.clearPieces(t, bad); err != nil {
			return nil, err
		}
	}
	s.log.Info("title verified", "title", id, "present", have.Count(), "bad", len(bad))
	return bad, nil
}

package store

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/boxswarm/boxswarm/media"
)

// The index, index.db, is a bbolt database with these top-level buckets.
// Keys are the 16 bytes of a media ID; integers are big-endian.
//
//	meta       "schema"  → uint32 schemaVersion
//	titles     <id>      → titleRecord (below)
//	manifests  <id>      → a bucket holding "signed" → the signed manifest file
//	have       <id>      → the pieces-present Bitmap's bytes
//	positions  <id>      → uint32 resume frame index
//
// Each manifest sits alone in a bucket of its own because bbolt never
// splits a leaf of four keys or fewer: big manifests (tens of MiB for a
// long film) sharing a leaf with each other or with bitmaps would be
// copied again on every commit that touches the leaf. Bitmaps are small
// and change often, so they share a bucket.
var (
	bucketMeta      = []byte("meta")
	bucketTitles    = []byte("titles")
	bucketManifests = []byte("manifests")
	bucketHave      = []byte("have")
	bucketPositions = []byte("positions")

	keySchema = []byte("schema")
	keySigned = []byte("signed")
)

const schemaVersion = 1

// titleRecord is what Open needs of a title without reading its manifest:
// enough to check the bitmap and the segment files, and to account for
// capacity.
//
//	0   version (1)
//	1   flags (bit 0: being deleted)
//	2   piece size       uint32
//	6   payload size     uint64
//	14  pieces           uint32
//	18  frames           uint32
//	22  segment size     uint64
//	30  SHA-256 of the canonical manifest (what AddTitle compares)
//	62  added, Unix seconds int64
//	70
type titleRecord struct {
	Deleting     bool
	PieceSize    uint32
	PayloadSize  uint64
	Pieces       uint32
	Frames       uint32
	SegmentSize  uint64
	ManifestHash [32]byte
	Added        int64
}

const (
	titleRecordLen     = 70
	titleRecordVersion = 1
	flagDeleting       = 1
)

func (r titleRecord) encode() []byte {
	b := make([]byte, titleRecordLen)
	b[0] = titleRecordVersion
	if r.Deleting {
		b[1] = flagDeleting
	}
	binary.BigEndian.PutUint32(b[2:], r.PieceSize)
	binary.BigEndian.PutUint64(b[6:], r.PayloadSize)
	binary.BigEndian.PutUint32(b[14:], r.Pieces)
	binary.BigEndian.PutUint32(b[18:], r.Frames)
	binary.BigEndian.PutUint64(b[22:], r.SegmentSize)
	copy(b[30:62], r.ManifestHash[:])
	binary.BigEndian.PutUint64(b[62:], uint64(r.Added))
	return b
}

func decodeTitleRecord(b []byte) (titleRecord, error) {
	if len(b) != titleRecordLen || b[0] != titleRecordVersion || b[1]&^flagDeleting != 0 {
		return titleRecord{}, fmt.Errorf("title record of %d bytes, version %d: %w", len(b), firstByte(b), ErrCorrupt)
	}
	r := titleRecord{
		Deleting:    b[1]&flagDeleting != 0,
		PieceSize:   binary.BigEndian.Uint32(b[2:]),
		PayloadSize: binary.BigEndian.Uint64(b[6:]),
		Pieces:      binary.BigEndian.Uint32(b[14:]),
		Frames:      binary.BigEndian.Uint32(b[18:]),
		SegmentSize: binary.BigEndian.Uint64(b[22:]),
		Added:       int64(binary.BigEndian.Uint64(b[62:])),
	}
	copy(r.ManifestHash[:], b[30:62])
	ps := uint64(r.PieceSize)
	switch {
	case ps < media.MinPieceSize || ps > media.MaxPieceSize || bits.OnesCount64(ps) != 1,
		r.SegmentSize < ps || r.SegmentSize%ps != 0 || r.SegmentSize > maxSegmentSize,
		r.PayloadSize == 0 || r.Pieces == 0 || r.Pieces > media.MaxPieces,
		(r.PayloadSize+ps-1)/ps != uint64(r.Pieces),
		r.Frames == 0 || r.Frames > media.MaxFrames:
		return titleRecord{}, fmt.Errorf("title record: piece size %d, segment size %d, payload %d bytes in %d pieces, %d frames: %w",
			r.PieceSize, r.SegmentSize, r.PayloadSize, r.Pieces, r.Frames, ErrCorrupt)
	}
	return r, nil
}

func firstByte(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}

// pieceSpan returns where piece i lies in the payload.
func (r titleRecord) pieceSpan(i int) (off, size int64) {
	off = int64(i) * int64(r.PieceSize)
	return off, min(int64(r.PieceSize), int64(r.PayloadSize)-off)
}

// segments returns the number of segment files the title spans.
func (r titleRecord) segments() int {
	return int((r.PayloadSize + r.SegmentSize - 1) / r.SegmentSize)
}

// segmentLen returns the size of segment n: SegmentSize, but the last
// segment ends where the payload does.
func (r titleRecord) segmentLen(n int) int64 {
	start := int64(n) * int64(r.SegmentSize)
	return min(int64(r.SegmentSize), int64(r.PayloadSize)-start)
}

// segmentOf returns the segment holding piece i.
func (r titleRecord) segmentOf(i int) int {
	return int(int64(i) * int64(r.PieceSize) / int64(r.SegmentSize))
}

// locate returns the segment and the offset in it of payload byte off.
func (r titleRecord) locate(off int64) (seg int, segOff int64) {
	return int(off / int64(r.SegmentSize)), off % int64(r.SegmentSize)
}

func encodePosition(frame int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(frame)) }

func decodePosition(b []byte) (int, error) {
	if len(b) != 4 {
		return 0, fmt.Errorf("position record of %d bytes: %w", len(b), ErrCorrupt)
	}
	return int(binary.BigEndian.Uint32(b)), nil
}

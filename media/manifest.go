package media

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"github.com/boxswarm/boxswarm/internal/tlv"
)

// ManifestFormat is the manifest format version this build writes and reads.
const ManifestFormat = 1

// Limits, checked before anything is allocated for them.
const (
	MaxTracks       = 8
	MaxFrames       = 1 << 20
	MaxPieces       = 1 << 16
	MinPieceSize    = 64 << 10
	MaxPieceSize    = 16 << 20
	maxConfigLen    = 4 << 10
	FrameEntrySize  = 40
	DefaultPieceLog = 20 // 1 MiB pieces
)

// ErrMalformed is wrapped by every manifest parsing error.
var ErrMalformed = errors.New("malformed media manifest")

// Manifest is a parsed, checked manifest. The frame table stays in the
// bytes it was parsed from; Frame decodes one entry at a time.
type Manifest struct {
	ID          ID
	Tracks      []Track
	PieceSize   uint32
	PayloadSize uint64
	PayloadHash [32]byte
	pieceHashes []byte // NumPieces × 32
	frames      []byte // NumFrames × FrameEntrySize
}

// NumFrames returns the number of frames in the table.
func (m *Manifest) NumFrames() int { return len(m.frames) / FrameEntrySize }

// Frame returns entry i of the frame table.
func (m *Manifest) Frame(i int) FrameEntry {
	b := m.frames[i*FrameEntrySize : (i+1)*FrameEntrySize]
	return FrameEntry{
		Offset: binary.BigEndian.Uint64(b[0:8]),
		Size:   binary.BigEndian.Uint32(b[8:12]),
		FrameMeta: FrameMeta{
			Track:    b[12],
			Keyframe: b[13]&1 != 0,
			PTS:      int64(binary.BigEndian.Uint64(b[16:24])),
			DTS:      int64(binary.BigEndian.Uint64(b[24:32])),
			Duration: binary.BigEndian.Uint32(b[32:36]),
		},
	}
}

func putFrame(b []byte, e FrameEntry) {
	binary.BigEndian.PutUint64(b[0:8], e.Offset)
	binary.BigEndian.PutUint32(b[8:12], e.Size)
	b[12] = e.Track
	b[13] = 0
	if e.Keyframe {
		b[13] = 1
	}
	b[14], b[15] = 0, 0
	binary.BigEndian.PutUint64(b[16:24], uint64(e.PTS))
	binary.BigEndian.PutUint64(b[24:32], uint64(e.DTS))
	binary.BigEndian.PutUint32(b[32:36], e.Duration)
	binary.BigEndian.PutUint32(b[36:40], 0)
}

// NumPieces returns the number of pieces the payload is split into.
func (m *Manifest) NumPieces() int { return len(m.pieceHashes) / 32 }

// PieceHash returns the SHA-256 of piece i.
func (m *Manifest) PieceHash(i int) [32]byte {
	var h [32]byte
	copy(h[:], m.pieceHashes[32*i:])
	return h
}

// PieceSpan returns where piece i lies in the payload. Every piece but the
// last is PieceSize long.
func (m *Manifest) PieceSpan(i int) (offset, size int64) {
	offset = int64(i) * int64(m.PieceSize)
	size = min(int64(m.PieceSize), int64(m.PayloadSize)-offset)
	return offset, size
}

// PiecesOf returns the first and last piece holding bytes of frame i.
func (m *Manifest) PiecesOf(i int) (first, last int) {
	e := m.Frame(i)
	return int(e.Offset / uint64(m.PieceSize)), int((e.End() - 1) / uint64(m.PieceSize))
}

// Duration returns the presentation span of a track in its timescale:
// from its earliest PTS to the end of its last frame.
func (m *Manifest) Duration(track uint8) int64 {
	var lo, hi int64
	seen := false
	for i := range m.NumFrames() {
		e := m.Frame(i)
		if e.Track != track {
			continue
		}
		if !seen || e.PTS < lo {
			lo = e.PTS
		}
		if end := e.PTS + int64(e.Duration); !seen || end > hi {
			hi = end
		}
		seen = true
	}
	return hi - lo
}

const (
	tagFormat      = 1
	tagID          = 2
	tagTracks      = 3
	tagPieceSize   = 4
	tagPayloadSize = 5
	tagPayloadHash = 6
	tagPieceHashes = 7
	tagFrames      = 8

	trTagCodec      = 1
	trTagTimescale  = 2
	trTagConfig     = 3
	trTagWidth      = 4
	trTagHeight     = 5
	trTagSampleRate = 6
	trTagChannels   = 7
)

var manifestSchema = []tlv.Field{
	{Tag: tagFormat, Name: "format version", Kind: tlv.KindUint32, Required: true},
	{Tag: tagID, Name: "media ID", Kind: tlv.KindFixed, Max: 16, Required: true},
	{Tag: tagTracks, Name: "tracks", Kind: tlv.KindRecord, Max: MaxTracks * (maxConfigLen + 128), Required: true},
	{Tag: tagPieceSize, Name: "piece size", Kind: tlv.KindUint32, Required: true},
	{Tag: tagPayloadSize, Name: "payload size", Kind: tlv.KindUint64, Required: true},
	{Tag: tagPayloadHash, Name: "payload hash", Kind: tlv.KindFixed, Max: 32, Required: true},
	{Tag: tagPieceHashes, Name: "piece hashes", Kind: tlv.KindBytes, Max: MaxPieces * 32, Required: true},
	{Tag: tagFrames, Name: "frame table", Kind: tlv.KindBytes, Max: MaxFrames * FrameEntrySize, Required: true},
}

var trackSchema = []tlv.Field{
	{Tag: trTagCodec, Name: "codec", Kind: tlv.KindUint32, Required: true},
	{Tag: trTagTimescale, Name: "timescale", Kind: tlv.KindUint32, Required: true},
	{Tag: trTagConfig, Name: "codec configuration", Kind: tlv.KindBytes, Max: maxConfigLen, Required: true},
	{Tag: trTagWidth, Name: "width", Kind: tlv.KindUint32},
	{Tag: trTagHeight, Name: "height", Kind: tlv.KindUint32},
	{Tag: trTagSampleRate, Name: "sample rate", Kind: tlv.KindUint32},
	{Tag: trTagChannels, Name: "channels", Kind: tlv.KindUint32},
}

var tracksSchema = func() []tlv.Field {
	s := make([]tlv.Field, MaxTracks)
	for i := range s {
		s[i] = tlv.Field{Tag: uint16(i + 1), Name: fmt.Sprintf("track %d", i), Kind: tlv.KindRecord, Max: maxConfigLen + 128}
	}
	return s
}()

// Encode returns the manifest's canonical bytes, the ones that are signed.
func (m *Manifest) Encode() []byte {
	var e tlv.Encoder
	e.Uint32(tagFormat, ManifestFormat)
	e.Bytes(tagID, m.ID[:])
	e.Record(tagTracks, func(e *tlv.Encoder) {
		for i, t := range m.Tracks {
			e.Record(uint16(i+1), func(e *tlv.Encoder) {
				e.Uint32(trTagCodec, uint32(t.Codec))
				e.Uint32(trTagTimescale, t.Timescale)
				e.Bytes(trTagConfig, t.Config)
				if t.Codec.IsVideo() {
					e.Uint32(trTagWidth, uint32(t.Width))
					e.Uint32(trTagHeight, uint32(t.Height))
				} else {
					e.Uint32(trTagSampleRate, t.SampleRate)
					e.Uint32(trTagChannels, uint32(t.Channels))
				}
			})
		}
	})
	e.Uint32(tagPieceSize, m.PieceSize)
	e.Uint64(tagPayloadSize, m.PayloadSize)
	e.Bytes(tagPayloadHash, m.PayloadHash[:])
	e.Bytes(tagPieceHashes, m.pieceHashes)
	e.Bytes(tagFrames, m.frames)
	return e.Encoded()
}

// ParseManifest decodes and checks a manifest: one canonical encoding, known
// codecs, a frame table that tiles the payload exactly in order, and one
// hash per piece. The result refers to b, which must not change.
func ParseManifest(b []byte) (*Manifest, error) {
	f, err := tlv.Decode("media manifest", b, manifestSchema)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("media manifest: "+format+": %w", append(args, ErrMalformed)...)
	}
	if v := f.Uint32(tagFormat); v != ManifestFormat {
		return nil, bad("format version %d (this build reads %d)", v, ManifestFormat)
	}
	m := &Manifest{
		PieceSize:   f.Uint32(tagPieceSize),
		PayloadSize: f.Uint64(tagPayloadSize),
		pieceHashes: f.Bytes(tagPieceHashes),
		frames:      f.Bytes(tagFrames),
	}
	copy(m.ID[:], f.Bytes(tagID))
	copy(m.PayloadHash[:], f.Bytes(tagPayloadHash))
	if m.Tracks, err = parseTracks(f.Bytes(tagTracks)); err != nil {
		return nil, err
	}
	ps := m.PieceSize
	if ps < MinPieceSize || ps > MaxPieceSize || bits.OnesCount32(ps) != 1 {
		return nil, bad("piece size %d is not a power of two from %d to %d", ps, MinPieceSize, MaxPieceSize)
	}
	if m.PayloadSize == 0 {
		return nil, bad("empty payload")
	}
	pieces := (m.PayloadSize + uint64(ps) - 1) / uint64(ps)
	if pieces > MaxPieces || uint64(len(m.pieceHashes)) != 32*pieces {
		return nil, bad("%d bytes of piece hashes for %d pieces", len(m.pieceHashes), pieces)
	}
	if len(m.frames)%FrameEntrySize != 0 || len(m.frames) == 0 {
		return nil, bad("frame table of %d bytes is not a whole number of %d-byte entries", len(m.frames), FrameEntrySize)
	}
	var next uint64
	lastDTS := make([]int64, len(m.Tracks))
	seen := make([]bool, len(m.Tracks))
	for i := range m.NumFrames() {
		raw := m.frames[i*FrameEntrySize : (i+1)*FrameEntrySize]
		if raw[13]&^1 != 0 || raw[14] != 0 || raw[15] != 0 || binary.BigEndian.Uint32(raw[36:40]) != 0 {
			return nil, bad("frame %d: reserved bits set", i)
		}
		e := m.Frame(i)
		switch {
		case int(e.Track) >= len(m.Tracks):
			return nil, bad("frame %d: track %d of %d", i, e.Track, len(m.Tracks))
		case e.Offset != next:
			return nil, bad("frame %d: offset %d, want %d (frames must tile the payload in order)", i, e.Offset, next)
		case e.Size < SealOverhead:
			return nil, bad("frame %d: size %d is shorter than the tag", i, e.Size)
		case seen[e.Track] && e.DTS < lastDTS[e.Track]:
			return nil, bad("frame %d: DTS %d goes back on track %d (after %d)", i, e.DTS, e.Track, lastDTS[e.Track])
		}
		seen[e.Track], lastDTS[e.Track] = true, e.DTS
		next = e.End()
	}
	if next != m.PayloadSize {
		return nil, bad("frames end at %d, payload is %d bytes", next, m.PayloadSize)
	}
	return m, nil
}

func parseTracks(b []byte) ([]Track, error) {
	f, err := tlv.Decode("media manifest tracks", b, tracksSchema)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	var tracks []Track
	for i := range MaxTracks {
		if !f.Has(uint16(i + 1)) {
			break
		}
		tf, err := tlv.Decode(fmt.Sprintf("media manifest track %d", i), f.Bytes(uint16(i+1)), trackSchema)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		t := Track{
			Codec:     Codec(tf.Uint32(trTagCodec)),
			Timescale: tf.Uint32(trTagTimescale),
			Config:    tf.Bytes(trTagConfig),
		}
		if c := tf.Uint32(trTagCodec); c > 255 || (t.Codec != H264 && t.Codec != H265 && t.Codec != AAC) {
			return nil, fmt.Errorf("media manifest track %d: unknown codec %d: %w", i, c, ErrMalformed)
		}
		video := t.Codec.IsVideo()
		if video != (tf.Has(trTagWidth) && tf.Has(trTagHeight)) || video == (tf.Has(trTagSampleRate) && tf.Has(trTagChannels)) {
			return nil, fmt.Errorf("media manifest track %d: %v needs exactly its own dimension fields: %w", i, t.Codec, ErrMalformed)
		}
		w, h, sr, ch := tf.Uint32(trTagWidth), tf.Uint32(trTagHeight), tf.Uint32(trTagSampleRate), tf.Uint32(trTagChannels)
		if w > 0xFFFF || h > 0xFFFF || ch > 0xFF || t.Timescale == 0 {
			return nil, fmt.Errorf("media manifest track %d: dimensions out of range: %w", i, ErrMalformed)
		}
		t.Width, t.Height, t.SampleRate, t.Channels = uint16(w), uint16(h), sr, uint8(ch)
		tracks = append(tracks, t)
	}
	present := 0
	for i := range MaxTracks {
		if f.Has(uint16(i + 1)) {
			present++
		}
	}
	if len(tracks) == 0 || present != len(tracks) {
		return nil, fmt.Errorf("media manifest: tracks must be numbered from 1 without gaps: %w", ErrMalformed)
	}
	return tracks, nil
}

// Package demux turns a movie file into tracks and frames for the import
// tool: MPEG-TS (188-byte packets, or 192-byte M2TS packets) and ISO BMFF
// (MP4, progressive or fragmented), carrying H.264, H.265 and AAC (LC,
// with or without SBR/PS signalling).
//
// Guarantees:
//   - Every frame of every supported track comes out exactly once, in
//     decoding order across tracks: by DTS converted to seconds, video
//     before audio on a tie, then by track number. Video frames are Annex-B
//     access units with 4-byte start codes and without access unit
//     delimiters; parameter sets found in the stream stay where they are.
//     Keyframe is the bitstream's word: an H.264 IDR, an H.265 IRAP (BLA,
//     IDR, CRA) access unit; MP4 sync-sample flags that disagree with it
//     are logged. AAC frames are raw access units, all keyframes.
//     Frame.Data is the caller's to keep.
//   - Track.Config holds the parameter sets (VPS,) SPS and PPS with 4-byte
//     start codes, from avcC/hvcC or, when the sample entry or the
//     container has none, from the first access units that carry them
//     (read before Open returns); for AAC the AudioSpecificConfig.
//   - Timestamps are the container's own, in Track.Timescale units: 90 kHz
//     for MPEG-TS, 33-bit wraps unwrapped (every stream together); the
//     media timescale for MP4, decode times from the sample table or the
//     fragments' base media decode time, composition offsets applied
//     (signed, as ffmpeg reads them), edit lists ignored. DTS never
//     decreases within a track; an input whose DTS goes backwards is
//     refused. Durations are the MP4 tables'; in MPEG-TS, the DTS
//     difference to the track's next frame, the last frame taking the one
//     before it (AAC: one frame, 1024 samples, at 90 kHz).
//   - Memory is bounded whatever the input: MP4 samples are read one at a
//     time through the sample tables or one fragment's run table at a time,
//     seeking in the file; MPEG-TS keeps at most interleaveWindow seconds
//     (and MaxBuffered bytes) of frames to interleave the tracks. No input
//     makes the demuxer allocate more than a fixed bound, or more than the
//     file holds.
//   - No input makes it panic. Every error wraps ErrUnsupported,
//     ErrCorrupt, or the reader's own I/O error, and names what failed
//     where: the byte offset, the PID or track, the sample number.
//
// Tracks the package cannot carry (other codecs, subtitles, data) are
// skipped with a warning when the input has a supported video track, or
// when it has no video at all. An input whose only video is unsupported is
// refused rather than imported as sound without picture, and so is an
// input with no supported track.
package demux

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"strings"

	"github.com/boxswarm/boxswarm/media"
)

// Errors. Every error from this package wraps one of these or an I/O error
// of the reader.
var (
	// ErrUnsupported: a container, codec or feature the package does not
	// handle. The message names it.
	ErrUnsupported = errors.New("demux: unsupported")
	// ErrCorrupt: the input breaks its format: truncated, damaged, or
	// inconsistent. The message says where.
	ErrCorrupt = errors.New("demux: corrupt input")
)

// Source yields the frames of a movie.
type Source interface {
	// Tracks returns the supported tracks; Frame.Track indexes it. It is
	// complete, codec configuration included, as soon as Open returns.
	Tracks() []media.Track
	// Next returns the next frame in decoding order, io.EOF after the last.
	// After any other error the source is unusable.
	Next() (media.Frame, error)
}

// Limits. Inputs beyond them are refused with ErrUnsupported.
const (
	// MaxBuffered bounds the frame bytes MPEG-TS demuxing holds to
	// interleave tracks and to find the codec configuration before Open
	// returns.
	MaxBuffered = 32 << 20
	// MaxFrame bounds one access unit (a PES packet, an MP4 sample).
	MaxFrame = 16 << 20
	// MaxTracks bounds the tracks of an input.
	MaxTracks = 16
	// maxMoov bounds the moov box, the whole index of a progressive MP4:
	// a three-hour movie at 60 frames a second with B-frames and 48 kHz
	// audio needs about 15 MiB.
	maxMoov = 64 << 20
	// maxBoxes bounds the boxes of one container the demuxer walks, and
	// maxSkipped the tracks it skips.
	maxBoxes   = 1 << 16
	maxSkipped = 64
	// maxTopBoxes bounds the top-level boxes of an MP4: two per fragment,
	// and a fragment per frame of a three-hour movie is 1.3 million.
	maxTopBoxes = 1 << 22
	// maxMoof bounds one fragment's moof box.
	maxMoof = 4 << 20
	// interleaveWindow is how far apart in time (seconds) MPEG-TS tracks
	// may be muxed before frames leave without waiting for the others.
	interleaveWindow = 5
)

// Options configures Open. The zero value is ready to use.
type Options struct {
	// Log receives a warning for every skipped track and for MP4 sync
	// flags that disagree with the bitstream; nil means slog.Default().
	Log *slog.Logger
}

// Open reads the container's headers and enough of its start to know every
// track's configuration, and returns the source of its frames. size is the
// length of the input; r is read from its start and nothing is read past
// size. r must not be used by anyone else until the source is done.
func Open(r io.ReadSeeker, size int64) (Source, error) {
	return Options{}.Open(r, size)
}

// Open is Open with options.
func (o Options) Open(r io.ReadSeeker, size int64) (Source, error) {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	if size <= 0 {
		return nil, fmt.Errorf("%w: empty input", ErrCorrupt)
	}
	head := make([]byte, min(size, 1024))
	if err := readAt(r, 0, head); err != nil {
		return nil, ioErr("read the first bytes", 0, err)
	}
	switch k := sniff(head, size); k {
	case kindTS:
		return openTS(r, size, 188, log)
	case kindM2TS:
		return openTS(r, size, 192, log)
	case kindBMFF:
		return openMP4(r, size, log)
	case kindUnknown:
		n := min(len(head), 8)
		return nil, fmt.Errorf("%w: neither MPEG-TS nor ISO BMFF (first bytes % x)", ErrCorrupt, head[:n])
	default:
		return nil, fmt.Errorf("%w: container %s", ErrUnsupported, k)
	}
}

type containerKind string

const (
	kindUnknown containerKind = ""
	kindTS      containerKind = "MPEG-TS"
	kindM2TS    containerKind = "M2TS"
	kindBMFF    containerKind = "ISO BMFF"
)

// sniff recognises the container from the first bytes of the input: TS by
// its sync byte every 188 (or 192) bytes, ISO BMFF by the type of its first
// box. It also names a few containers it does not handle, for the error.
func sniff(b []byte, size int64) containerKind {
	syncEvery := func(first, stride int) bool {
		n := 0
		for i := first; i < len(b) && i < first+5*stride; i += stride {
			if b[i] != 0x47 {
				return false
			}
			n++
		}
		// One sync byte is enough only for an input of a single packet.
		return n >= 2 || (n == 1 && size <= int64(first+stride))
	}
	if syncEvery(0, 188) {
		return kindTS
	}
	if syncEvery(4, 192) {
		return kindM2TS
	}
	if len(b) >= 8 {
		switch string(b[4:8]) {
		case "ftyp", "styp", "moov", "moof", "mdat", "free", "skip", "wide", "pdin", "sidx":
			return kindBMFF
		}
	}
	switch {
	case bytes.HasPrefix(b, []byte{0x1a, 0x45, 0xdf, 0xa3}):
		return "Matroska/WebM"
	case bytes.HasPrefix(b, []byte("RIFF")):
		return "RIFF (AVI or WAVE)"
	case bytes.HasPrefix(b, []byte("FLV")):
		return "FLV"
	case bytes.HasPrefix(b, []byte("OggS")):
		return "Ogg"
	case bytes.HasPrefix(b, []byte{0, 0, 1, 0xba}):
		return "MPEG program stream"
	case bytes.HasPrefix(b, []byte("ID3")):
		return "MP3 (ID3)"
	case bytes.HasPrefix(b, []byte("fLaC")):
		return "FLAC"
	case len(b) >= 2 && b[0] == 0xff && b[1]&0xf6 == 0xf0:
		return "raw AAC (ADTS)"
	case bytes.HasPrefix(b, []byte{0, 0, 0, 1}) || bytes.HasPrefix(b, []byte{0, 0, 1}):
		return "raw H.264/H.265 elementary stream"
	}
	return kindUnknown
}

// readAt reads exactly len(p) bytes at off. A short read is reported as
// io.ErrUnexpectedEOF, which callers turn into ErrCorrupt: the caller has
// already checked off+len(p) against the input's stated size.
func readAt(r io.ReadSeeker, off int64, p []byte) error {
	if _, err := r.Seek(off, io.SeekStart); err != nil {
		return err
	}
	_, err := io.ReadFull(r, p)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// ioErr wraps an error of the reader: a short read becomes ErrCorrupt (the
// input is shorter than its stated size), anything else stays an I/O
// error.
func ioErr(what string, off int64, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %s at offset %d: input ends early: %w", ErrCorrupt, what, off, err)
	}
	return fmt.Errorf("demux: %s at offset %d: %w", what, off, err)
}

// at puts where in the message of an error, after its kind: "demux:
// corrupt input: track 2: ...". The error still wraps the original.
func at(where string, err error) error {
	for _, kind := range []error{ErrCorrupt, ErrUnsupported} {
		if errors.Is(err, kind) {
			msg := strings.TrimPrefix(err.Error(), kind.Error()+": ")
			return &placedError{msg: kind.Error() + ": " + where + ": " + msg, err: err}
		}
	}
	return fmt.Errorf("%s: %w", where, err)
}

type placedError struct {
	msg string
	err error
}

func (e *placedError) Error() string { return e.msg }
func (e *placedError) Unwrap() error { return e.err }

// safely runs a parser of another package and turns a panic into
// ErrCorrupt: the libraries are fuzzed, but a movie file must never take
// the import tool down.
func safely(what string, f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %s: parser panicked: %v", ErrCorrupt, what, p)
		}
	}()
	return f()
}

// cmpTime compares a/ta with b/tb using 128-bit products.
func cmpTime(a int64, ta uint32, b int64, tb uint32) int {
	if (a < 0) != (b < 0) {
		if a < 0 {
			return -1
		}
		return 1
	}
	neg := a < 0
	ua, ub := uint64(a), uint64(b)
	if neg {
		ua, ub = uint64(-a), uint64(-b) // -MinInt64 wraps to 1<<63, still right as uint64
	}
	h1, l1 := bits.Mul64(ua, uint64(tb))
	h2, l2 := bits.Mul64(ub, uint64(ta))
	c := 0
	switch {
	case h1 < h2 || (h1 == h2 && l1 < l2):
		c = -1
	case h1 > h2 || (h1 == h2 && l1 > l2):
		c = 1
	}
	if neg {
		c = -c
	}
	return c
}

// skipped describes a track the input has and the package does not carry.
type skipped struct {
	where string // "PID 257", "track 3"
	kind  string // "video", "audio", "subtitle", "data"
	what  string // codec name
}

func (s skipped) String() string {
	if s.kind == "" || s.kind == "data" {
		return fmt.Sprintf("%s in %s", s.what, s.where)
	}
	return fmt.Sprintf("%s codec %s in %s", s.kind, s.what, s.where)
}

// checkSkipped applies the policy on unsupported tracks: skip them with a
// warning, unless nothing supported is left, or the only video is
// unsupported.
func checkSkipped(log *slog.Logger, container string, tracks []media.Track, skip []skipped) error {
	hasVideo := false
	for _, t := range tracks {
		if t.Codec.IsVideo() {
			hasVideo = true
		}
	}
	for _, s := range skip {
		if len(tracks) == 0 || (s.kind == "video" && !hasVideo) {
			return fmt.Errorf("%w: %s", ErrUnsupported, s)
		}
	}
	if len(tracks) == 0 {
		return fmt.Errorf("%w: %s without any track", ErrUnsupported, container)
	}
	for _, s := range skip {
		log.Warn("demux: skipping unsupported track", "container", container, "track", s.where, "kind", s.kind, "codec", s.what)
	}
	return nil
}

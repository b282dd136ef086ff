// Package media defines the media package: how a title is stored,
// transferred and played without ever being in the clear outside the
// player's memory.
//
// A package is a signed manifest plus a payload. The payload is the
// concatenation of the title's frames in decoding order, each sealed with
// AES-256-GCM under its own key. The manifest is the clear index: the
// tracks and their codec configuration, and for every frame its track,
// timestamps, keyframe flag, size and place in the payload, so a box can
// seek and fast-forward without decrypting anything but the frames it
// shows; it also splits the payload into fixed-size pieces and gives the
// SHA-256 of each, so pieces can come from anywhere and be checked before
// they count. FORMAT.md in this folder is the byte-level description.
//
// Guarantees:
//   - A frame opens only at its own place in its own title: its key is
//     derived from the title's content key and its index, and the media ID,
//     track, index, timestamps, duration and keyframe flag are bound in as
//     associated data, so a changed, swapped, re-timed or transplanted
//     frame fails to open.
//   - Parsing a manifest refuses anything but its one canonical encoding
//     and checks every count and length against a limit before allocating;
//     the frame table is kept as the bytes it arrived in and decoded one
//     entry at a time.
//   - Opening a frame allocates nothing in this package.
package media

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// ID names a title's package: 16 random bytes.
type ID [16]byte

// NewID returns a random ID.
func NewID() (ID, error) {
	var id ID
	_, err := rand.Read(id[:])
	return id, err
}

// ParseID decodes the 32-hex-digit form.
func ParseID(s string) (ID, error) {
	var id ID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return ID{}, fmt.Errorf("media ID %q: want %d hex digits", s, 2*len(id))
	}
	copy(id[:], b)
	return id, nil
}

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Codec is a track's coding format.
type Codec uint8

// Supported codecs.
const (
	H264 Codec = 1
	H265 Codec = 2
	AAC  Codec = 3
)

func (c Codec) String() string {
	switch c {
	case H264:
		return "H.264"
	case H265:
		return "H.265"
	case AAC:
		return "AAC"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

// IsVideo reports whether the codec is a video codec.
func (c Codec) IsVideo() bool { return c == H264 || c == H265 }

// Track describes one elementary stream.
type Track struct {
	Codec Codec
	// Timescale is the number of timestamp ticks per second (90000 for
	// MPEG-TS sources).
	Timescale uint32
	// Config is the codec configuration: for H.264 the SPS and PPS, for
	// H.265 the VPS, SPS and PPS, each as an Annex-B NAL unit with a
	// 4-byte start code; for AAC the AudioSpecificConfig.
	Config []byte
	// Width and Height are set for video, SampleRate and Channels for
	// audio.
	Width, Height uint16
	SampleRate    uint32
	Channels      uint8
}

// Frame is one access unit of a track, in the clear. Video frames are
// Annex-B access units (NAL units with start codes); AAC frames are raw
// access units without ADTS headers.
type Frame struct {
	Track    uint8
	PTS, DTS int64 // in the track's timescale
	Duration uint32
	Keyframe bool
	Data     []byte
}

// Meta returns the frame's metadata, what the associated data binds.
func (f Frame) Meta() FrameMeta {
	return FrameMeta{Track: f.Track, PTS: f.PTS, DTS: f.DTS, Duration: f.Duration, Keyframe: f.Keyframe}
}

// FrameMeta is everything about a frame but its bytes.
type FrameMeta struct {
	Track    uint8
	PTS, DTS int64
	Duration uint32
	Keyframe bool
}

// FrameEntry is a frame's line in the manifest's clear frame table.
type FrameEntry struct {
	FrameMeta
	Offset uint64 // of the sealed frame in the payload
	Size   uint32 // of the sealed frame: ciphertext plus the 16-byte tag
}

// End returns the offset just past the sealed frame.
func (e FrameEntry) End() uint64 { return e.Offset + uint64(e.Size) }

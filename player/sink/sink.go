// Package sink is where the player's decrypted frames go: a decoder.
//
// The player opens one frame at a time in memory and hands it to a Sink.
// This package has three:
//
//   - TS muxes the frames into an MPEG-TS byte stream on an io.Writer,
//     the form a software decoder (ffmpeg, a media player) reads.
//   - Process runs a decoder program and feeds it that stream on its
//     standard input, through a pipe.
//   - Hash keeps the SHA-256 and metadata of every frame, for tests that
//     compare what the player delivered with what the import tool saw.
//
// Guarantees, for every Sink here:
//   - Plaintext never touches a disk: frames go to memory, an io.Writer
//     the caller chose, or a pipe.
//   - No reference to a frame's Data outlives the WriteFrame call: the
//     player zeroes and reuses that buffer. The copies TS makes while
//     muxing live in scratch buffers zeroed before WriteFrame returns,
//     except up to one TS packet's payload that go-astits keeps in its
//     own buffer until the next frame (what a decoder or the kernel's
//     pipe buffer does with the bytes is outside this package).
//   - TS and Process check frames rather than trust them: an unknown
//     track, a video track that starts (or restarts after a
//     Discontinuity) on a frame that is not a keyframe, a PTS before its
//     DTS, or a DTS going back without a Discontinuity is refused with
//     an error instead of handed to a decoder, and leaves the stream
//     intact. Hash records whatever it is given.
//
// # Hardware decoders
//
// A board's video decoder plugs in by implementing Sink; nothing in the
// player changes. For a V4L2 memory-to-memory (stateful) decoder, say:
//
//   - Start opens the device, sets the OUTPUT queue's format from the
//     track (V4L2_PIX_FMT_H264 or V4L2_PIX_FMT_HEVC, the size), sets up
//     the CAPTURE queue when the decoder reports the source change, and
//     keeps the track's Config: stateful decoders want parameter sets
//     in-band, so it goes in front of every keyframe that lacks them, as
//     TS does.
//   - WriteFrame copies Data into a dequeued, mmap'd OUTPUT buffer (the
//     copy is what keeps it from holding on to the player's buffer),
//     stamps it with the PTS and queues it; ctx bounds the wait for a
//     free buffer.
//   - Discontinuity runs the driver's seek sequence (VIDIOC_STREAMOFF and
//     VIDIOC_STREAMON on the OUTPUT queue), dropping what was queued
//     before the jump.
//   - Close drains (V4L2_DEC_CMD_STOP, then waits for the buffer flagged
//     V4L2_BUF_FLAG_LAST) and returns the first error the device
//     reported.
//
// Audio tracks the hardware cannot take go to a software decoder, for
// instance a Process.
package sink

import (
	"context"
	"fmt"

	"github.com/boxswarm/boxswarm/media"
)

// Sink receives a title's frames in decoding order. It is also the
// interface a hardware decoder implements.
type Sink interface {
	Start(ctx context.Context, tracks []media.Track) error
	WriteFrame(ctx context.Context, f media.Frame) error // f.Data is only valid during the call
	// Discontinuity is called after a seek or a jump in trick play: the
	// next frame does not follow the previous one (it is a keyframe).
	Discontinuity(ctx context.Context) error
	Close() error // flushes; returns the decoder's verdict
}

// maxTracks bounds a title's tracks so that the PMT fits one TS packet
// (astits writes no longer tables) and per-track state stays small.
const maxTracks = 16

func checkTracks(tracks []media.Track) error {
	if len(tracks) == 0 {
		return fmt.Errorf("no tracks")
	}
	if len(tracks) > maxTracks {
		return fmt.Errorf("%d tracks, at most %d", len(tracks), maxTracks)
	}
	for i, t := range tracks {
		switch t.Codec {
		case media.H264, media.H265, media.AAC:
		default:
			return fmt.Errorf("track %d: unsupported codec %v", i, t.Codec)
		}
		if t.Timescale == 0 {
			return fmt.Errorf("track %d: timescale 0", i)
		}
	}
	return nil
}

var (
	_ Sink = (*TS)(nil)
	_ Sink = (*Process)(nil)
	_ Sink = (*Hash)(nil)
)

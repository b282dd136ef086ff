package sink_test

import (
	"context"
	"crypto/sha256"
	"testing"

	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/player/sink"
)

func TestHash(t *testing.T) {
	ctx := context.Background()
	h := sink.NewHash()
	if err := h.WriteFrame(ctx, media.Frame{}); err == nil {
		t.Error("WriteFrame before Start worked")
	}
	tracks := testTracks(t)
	if err := h.Start(ctx, tracks); err != nil {
		t.Fatal(err)
	}
	tracks[0].Config[4] ^= 0xFF // the caller's copy is the caller's
	if got := h.Tracks(); got[0].Config[4] == tracks[0].Config[4] {
		t.Error("Hash kept the caller's Config")
	}

	frames := []media.Frame{
		{Track: 0, PTS: 1024, DTS: 0, Duration: 512, Keyframe: true, Data: []byte("key")},
		{Track: 1, PTS: 0, DTS: 0, Duration: 1024, Keyframe: true, Data: []byte("audio")},
		{Track: 0, PTS: 2048, DTS: 512, Duration: 512, Data: []byte("delta")},
		{Track: 0, PTS: 90000, DTS: 89000, Duration: 512, Keyframe: true, Data: []byte("after seek")},
		{Track: 1, PTS: 96000, DTS: 96000, Duration: 1024, Keyframe: true, Data: []byte("audio after seek")},
	}
	buf := make([]byte, 64)
	for i, f := range frames {
		if i == 3 {
			if err := h.Discontinuity(ctx); err != nil {
				t.Fatal(err)
			}
		}
		// Hand over a buffer and scribble on it afterwards, as the player does.
		f.Data = buf[:copy(buf, f.Data)]
		if err := h.WriteFrame(ctx, f); err != nil {
			t.Fatal(err)
		}
		clear(buf)
	}
	if err := h.WriteFrame(ctx, media.Frame{Track: 2}); err == nil {
		t.Error("a frame of an unknown track was recorded")
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.WriteFrame(ctx, frames[0]); err == nil {
		t.Error("WriteFrame after Close worked")
	}

	want := map[uint8][]sink.HashedFrame{}
	for i, f := range frames {
		want[f.Track] = append(want[f.Track], sink.HashedFrame{
			FrameMeta:          f.Meta(),
			Size:               len(f.Data),
			SHA256:             sha256.Sum256(f.Data),
			Seq:                i,
			AfterDiscontinuity: i == 3,
		})
	}
	for track := uint8(0); track < 2; track++ {
		got := h.Frames(track)
		if len(got) != len(want[track]) {
			t.Fatalf("track %d: %d frames, want %d", track, len(got), len(want[track]))
		}
		for i := range got {
			if got[i] != want[track][i] {
				t.Errorf("track %d, frame %d: %+v, want %+v", track, i, got[i], want[track][i])
			}
		}
	}
	if h.Frames(7) != nil {
		t.Error("frames of a track that does not exist")
	}
	if h.Received() != len(frames) || h.Discontinuities() != 1 {
		t.Errorf("%d frames and %d discontinuities, want %d and 1", h.Received(), h.Discontinuities(), len(frames))
	}
}

package demux

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/boxswarm/boxswarm/media"
)

// The seed corpus of FuzzOpen (testdata/fuzz/FuzzOpen) is tiny real files
// made with ffmpeg: 64x64, 0.3 s, H.264 or H.265, with AAC, in MPEG-TS,
// MP4 and fragmented MP4.

// fuzzLimits bound a fuzz run: inputs past maxFuzzInput are not tried,
// sources stop after maxFuzzFrames frames.
const (
	maxFuzzInput  = 1 << 20
	maxFuzzFrames = 20000
)

func wantKnownError(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
		t.Fatalf("error wraps neither ErrCorrupt nor ErrUnsupported: %v", err)
	}
}

// checkSource drains a source and checks what every source promises.
func checkSource(t *testing.T, src Source) {
	tracks := src.Tracks()
	if len(tracks) == 0 || len(tracks) > MaxTracks {
		t.Fatalf("%d tracks", len(tracks))
	}
	for i, tr := range tracks {
		if tr.Timescale == 0 || len(tr.Config) == 0 {
			t.Fatalf("track %d: %+v", i, tr)
		}
		if tr.Codec.IsVideo() && (tr.Width == 0 || tr.Height == 0 || !bytes.HasPrefix(tr.Config, startCode)) {
			t.Fatalf("video track %d: %+v", i, tr)
		}
		if tr.Codec == media.AAC && (tr.SampleRate == 0 || tr.Channels == 0) {
			t.Fatalf("audio track %d: %+v", i, tr)
		}
	}
	last := make([]int64, len(tracks))
	seen := make([]bool, len(tracks))
	for range maxFuzzFrames {
		f, err := src.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			wantKnownError(t, err)
			return
		}
		if int(f.Track) >= len(tracks) || len(f.Data) == 0 || len(f.Data) > MaxFrame {
			t.Fatalf("frame of track %d with %d bytes", f.Track, len(f.Data))
		}
		if seen[f.Track] && f.DTS < last[f.Track] {
			t.Fatalf("track %d: DTS %d after %d", f.Track, f.DTS, last[f.Track])
		}
		last[f.Track], seen[f.Track] = f.DTS, true
		if tracks[f.Track].Codec.IsVideo() && !bytes.HasPrefix(f.Data, startCode) {
			t.Fatalf("video frame without a start code")
		}
	}
}

func FuzzOpen(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 188))
	f.Add([]byte("\x00\x00\x00\x08moov"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxFuzzInput {
			return
		}
		src, err := quiet.Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			wantKnownError(t, err)
			return
		}
		checkSource(t, src)
	})
}

// FuzzTSPayloads muxes fuzzed PES payloads into a valid transport stream,
// to reach the PES, ADTS and NAL parsers past the packet layer: a video
// PES, then the audio bytes cut into two PES packets at split.
func FuzzTSPayloads(f *testing.F) {
	sps := []byte{0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x0a, 0xd9, 0x07, 0x3c, 0x04, 0x40, 0, 0, 3, 0, 0x40, 0, 0, 0x0c, 0xa3, 0xc4, 0x89, 0xe0}
	pps := []byte{0, 0, 0, 1, 0x68, 0xcb, 0x83, 0xcb, 0x20}
	idr := []byte{0, 0, 1, 0x65, 0x88, 0x84, 0x00, 0x2b, 0xff}
	au := append(append(append([]byte{0, 0, 0, 1, 0x09, 0xf0}, sps...), pps...), idr...)
	adts := []byte{0xff, 0xf1, 0x50, 0x80, 0x02, 0x1f, 0xfc, 0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c}
	f.Add(au, append(adts, adts...), uint16(10), uint8(3))
	f.Add(au, adts, uint16(0), uint8(0))
	f.Fuzz(func(t *testing.T, video, audio []byte, split uint16, flags uint8) {
		if len(video)+len(audio) > 1<<16 {
			return
		}
		b := muxPayloads(video, audio, split, flags)
		src, err := quiet.Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			wantKnownError(t, err)
			return
		}
		checkSource(t, src)
	})
}

// muxPayloads is the stream of FuzzTSPayloads. flags: 1 timestamps about
// to wrap, 2 bounded first video PES, 4 bounded first audio PES, 8 PTS on
// the second audio PES.
func muxPayloads(video, audio []byte, split uint16, flags uint8) []byte {
	m := newTSMux()
	m.pat(pmtPID)
	m.pmt(pmtPID, tsES{streamH264, videoPID, nil}, tsES{streamAACADT, audioPID, nil})
	pts := int64(90000)
	if flags&1 != 0 {
		pts = pts33 - 1000
	}
	m.pes(videoPID, 0xe0, pts+3000, pts, video, flags&2 != 0)
	s := min(int(split), len(audio))
	m.pes(audioPID, 0xc0, pts, -1, audio[:s], flags&4 != 0)
	ts2 := int64(-1)
	if flags&8 != 0 {
		ts2 = pts + 1920
	}
	m.pes(audioPID, 0xc0, ts2, -1, audio[s:], true)
	m.pes(videoPID, 0xe0, pts+6000, pts+3000, video, false)
	return m.out.Bytes()
}

// FuzzAccessUnit feeds bytes to the two video access unit parsers.
func FuzzAccessUnit(f *testing.F) {
	f.Add(false, []byte{0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x65, 0x88, 0, 0})
	f.Add(true, []byte{0, 0, 0, 3, 0x46, 0x01, 0x50, 0, 0, 0, 4, 0x2a, 0x01, 0xaf, 0x00})
	f.Fuzz(func(t *testing.T, h265 bool, b []byte) {
		c := media.H264
		if h265 {
			c = media.H265
		}
		for _, prefixed := range []bool{false, true} {
			ps := &paramSets{codec: c}
			var au accessUnit
			var err error
			if prefixed {
				au, err = lengthPrefixedToAU(c, bytes.Clone(b), ps)
			} else {
				au, err = annexBToAU(c, b, ps)
			}
			if err != nil {
				continue
			}
			// The result is Annex-B with 4-byte start codes that parses
			// back to itself (same NAL units), and it is never more than a
			// byte per NAL unit longer than its input.
			if !bytes.HasPrefix(au.data, startCode) {
				t.Fatalf("no start code: % x", au.data)
			}
			again, err := annexBToAU(c, au.data, nil)
			if err != nil || !bytes.Equal(again.data, au.data) || again.key != au.key {
				t.Fatalf("the output does not parse back the same: %v", err)
			}
			if n := bytes.Count(au.data, startCode); len(au.data) > len(b)+n {
				t.Fatalf("%d bytes out of %d", len(au.data), len(b))
			}
			if ps.complete() && len(ps.config()) == 0 {
				t.Fatal("complete parameter sets without a config")
			}
		}
	})
}

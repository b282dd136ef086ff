package sink_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/asticode/go-astits"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/player/sink"
)

// NAL units for tests of the muxer, which looks at nothing but their
// headers.
var (
	h264AUD    = []byte{0x09, 0xF0}
	h264SPS    = []byte{0x67, 0x64, 0x00, 0x1F, 0xAC}
	h264PPS    = []byte{0x68, 0xEE, 0x3C, 0x80}
	h264SEI    = []byte{0x06, 0x05, 0x01, 0xFF, 0x80}
	h264IDR    = []byte{0x65, 0x88, 0x84, 0x00, 0x33}
	h264NonIDR = []byte{0x41, 0x9A, 0x02, 0x04}
	h264SPS2   = []byte{0x67, 0x64, 0x00, 0x28, 0xAC} // another SPS, carried in-band

	h265AUD = []byte{0x46, 0x01, 0x50}
	h265VPS = []byte{0x40, 0x01, 0x0C}
	h265SPS = []byte{0x42, 0x01, 0x01}
	h265PPS = []byte{0x44, 0x01, 0xC1}
	h265IDR = []byte{0x26, 0x01, 0xAF, 0x08}
	h265CRA = []byte{0x2A, 0x01, 0xAF, 0x09}
)

func au(nalus ...[]byte) []byte { return annexB(nalus) }

func aacConfig(t *testing.T) []byte {
	t.Helper()
	b, err := mpeg4audio.AudioSpecificConfig{Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 48000, ChannelConfig: 2}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testTracks are an H.264 track with a 15360 Hz clock and an AAC track
// with a 48 kHz one.
func testTracks(t *testing.T) []media.Track {
	return []media.Track{
		{Codec: media.H264, Timescale: 15360, Config: au(h264SPS, h264PPS), Width: 640, Height: 360},
		{Codec: media.AAC, Timescale: 48000, Config: aacConfig(t), SampleRate: 48000, Channels: 2},
	}
}

// pes is one PES packet as a demuxer sees it.
type pes struct {
	pid      uint16
	pts, dts int64
	data     []byte
	pcr      int64 // -1 without
	rai      bool
}

// demux reads back a TS stream: the PMT and the PES packets, in the
// order they start in the stream.
func demux(t *testing.T, ts []byte) (*astits.PMTData, []pes) {
	t.Helper()
	if len(ts)%188 != 0 {
		t.Fatalf("%d bytes: not whole TS packets", len(ts))
	}
	// astits hands out a PES once it is complete, which interleaves
	// streams differently: take the order from the packets that start
	// one, the contents from the demuxer.
	var order []uint16
	d := astits.NewDemuxer(context.Background(), bytes.NewReader(ts))
	for {
		p, err := d.NextPacket()
		if errors.Is(err, astits.ErrNoMorePackets) {
			break
		}
		if err != nil {
			t.Fatalf("demux: %v", err)
		}
		if p.Header.PayloadUnitStartIndicator && p.Header.PID >= 256 && p.Header.PID < 0x1000 {
			order = append(order, p.Header.PID)
		}
	}

	var pmt *astits.PMTData
	byPID := map[uint16][]pes{}
	d = astits.NewDemuxer(context.Background(), bytes.NewReader(ts))
	for {
		data, err := d.NextData()
		if errors.Is(err, astits.ErrNoMorePackets) {
			break
		}
		if err != nil {
			t.Fatalf("demux: %v", err)
		}
		if data.PMT != nil {
			pmt = data.PMT
		}
		if data.PES == nil {
			continue
		}
		p := pes{pid: data.PID, data: data.PES.Data, pcr: -1}
		oh := data.PES.Header.OptionalHeader
		p.pts = oh.PTS.Base
		p.dts = p.pts
		if oh.DTS != nil {
			p.dts = oh.DTS.Base
		}
		if af := data.FirstPacket.AdaptationField; af != nil {
			p.rai = af.RandomAccessIndicator
			if af.HasPCR {
				p.pcr = af.PCR.Base
			}
		}
		byPID[p.pid] = append(byPID[p.pid], p)
	}
	var out []pes
	for _, pid := range order {
		if len(byPID[pid]) == 0 {
			t.Fatalf("PID %d: a PES starts but the demuxer has none", pid)
		}
		out = append(out, byPID[pid][0])
		byPID[pid] = byPID[pid][1:]
	}
	return pmt, out
}

func writeTS(t *testing.T, tracks []media.Track, calls ...any) []byte {
	t.Helper()
	var out bytes.Buffer
	s := sink.NewTS(&out)
	ctx := context.Background()
	if err := s.Start(ctx, tracks); err != nil {
		t.Fatal(err)
	}
	for i, c := range calls {
		var err error
		switch c := c.(type) {
		case media.Frame:
			err = s.WriteFrame(ctx, c)
		case discontinuity:
			err = s.Discontinuity(ctx)
		}
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

type discontinuity struct{}

func TestTSLayout(t *testing.T) {
	tracks := append(testTracks(t), media.Track{Codec: media.H265, Timescale: 90000, Config: au(h265VPS, h265SPS, h265PPS)})
	ts := writeTS(t, tracks,
		media.Frame{Track: 1, PTS: 0, DTS: 0, Duration: 1024, Keyframe: true, Data: []byte{1, 2, 3}},
		media.Frame{Track: 0, PTS: 1024, DTS: 0, Duration: 512, Keyframe: true, Data: au(h264IDR)},
		media.Frame{Track: 2, PTS: 0, DTS: 0, Duration: 3600, Keyframe: true, Data: au(h265IDR)},
		media.Frame{Track: 0, PTS: 1536, DTS: 512, Duration: 512, Data: au(h264NonIDR)},
	)
	pmt, packets := demux(t, ts)
	if pmt == nil {
		t.Fatal("no PMT")
	}
	wantStreams := []struct {
		pid uint16
		typ astits.StreamType
	}{{256, astits.StreamTypeH264Video}, {257, astits.StreamTypeAACAudio}, {258, astits.StreamTypeH265Video}}
	if len(pmt.ElementaryStreams) != len(wantStreams) {
		t.Fatalf("PMT has %d streams, want %d", len(pmt.ElementaryStreams), len(wantStreams))
	}
	for i, w := range wantStreams {
		if es := pmt.ElementaryStreams[i]; es.ElementaryPID != w.pid || es.StreamType != w.typ {
			t.Errorf("stream %d: PID %d type %v, want PID %d type %v", i, es.ElementaryPID, es.StreamType, w.pid, w.typ)
		}
	}
	// The first frame is audio, and still the PCR is on the video.
	if pmt.PCRPID != 256 {
		t.Errorf("PCR PID %d, want 256 (the first video track)", pmt.PCRPID)
	}
	if len(packets) != 4 {
		t.Fatalf("%d PES packets, want 4", len(packets))
	}
	for i, p := range packets {
		if (p.pcr >= 0) != (p.pid == 256) {
			t.Errorf("PES %d on PID %d: PCR %d; want one exactly on PID 256", i, p.pid, p.pcr)
		}
		if p.pcr >= 0 && p.pcr != p.dts-63000 {
			t.Errorf("PES %d: PCR %d, want the DTS %d less 700 ms", i, p.pcr, p.dts)
		}
	}
	if !packets[1].rai || packets[3].rai {
		t.Errorf("random access indicators %t, %t; want them on keyframes only", packets[1].rai, packets[3].rai)
	}
}

// TestTSTimestamps follows the output clock: every track converted to
// 90 kHz with one offset, the first DTS at 10 s, and after each
// discontinuity the clock going on 100 ms after the end of what came
// before, whatever the frames' own timestamps do.
func TestTSTimestamps(t *testing.T) {
	const start, gap = 900000, 9000
	video := func(pts, dts int64, key bool) media.Frame {
		d := au(h264NonIDR)
		if key {
			d = au(h264IDR)
		}
		return media.Frame{Track: 0, PTS: pts, DTS: dts, Duration: 512, Keyframe: key, Data: d}
	}
	audio := func(pts int64) media.Frame {
		return media.Frame{Track: 1, PTS: pts, DTS: pts, Duration: 1024, Keyframe: true, Data: []byte{0x21, 0x10}}
	}
	cases := []struct {
		name  string
		calls []any
		want  [][2]int64 // PTS, DTS of each PES
	}{{
		name: "one segment",
		calls: []any{
			video(1024, 0, true), // 1/15 s, 0
			audio(0),             // same instant as the video's DTS
			audio(1024),          // 1920 ticks
			video(1536, 512, false),
			audio(2048),
		},
		want: [][2]int64{{start + 6000, start}, {start, start}, {start + 1920, start + 1920},
			{start + 9000, start + 3000}, {start + 3840, start + 3840}},
	}, {
		name: "negative and odd timestamps",
		calls: []any{
			video(0, -1024, true),
			audio(-1), // -1.875 ticks before the video's 0
			audio(1023),
		},
		want: [][2]int64{{start + 6000, start}, {start + 6000 - 2, start + 6000 - 2}, {start + 6000 + 1918, start + 6000 + 1918}},
	}, {
		name: "seek forward",
		calls: []any{
			video(1024, 0, true),
			video(2048, 512, false), // ends at 2560: start+15000
			discontinuity{},
			video(307200, 306176, true), // 20 s on
			audio(960000),               // 20.0 s: before the video's PTS, after its DTS
		},
		want: [][2]int64{{start + 6000, start}, {start + 12000, start + 3000},
			{start + 15000 + gap + 6000, start + 15000 + gap}, {start + 15000 + gap + 6000, start + 15000 + gap + 6000}},
	}, {
		name: "seek back",
		calls: []any{
			video(30720, 30720, true), // 2 s
			audio(96000),              // 2 s, ends before the video's 3000 ticks
			discontinuity{},
			video(0, 0, true),
		},
		want: [][2]int64{{start, start}, {start, start}, {start + 3000 + gap, start + 3000 + gap}},
	}, {
		name: "discontinuity with nothing after it",
		calls: []any{
			video(0, 0, true),
			discontinuity{},
			discontinuity{},
			video(0, 0, true),
		},
		want: [][2]int64{{start, start}, {start + 3000 + gap, start + 3000 + gap}},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, packets := demux(t, writeTS(t, testTracks(t), c.calls...))
			if len(packets) != len(c.want) {
				t.Fatalf("%d PES packets, want %d", len(packets), len(c.want))
			}
			for i, p := range packets {
				if p.pts != c.want[i][0] || p.dts != c.want[i][1] {
					t.Errorf("PES %d: PTS %d DTS %d, want PTS %d DTS %d", i, p.pts, p.dts, c.want[i][0], c.want[i][1])
				}
			}
			var lastPCR int64 = -1
			for i, p := range packets {
				if p.pcr >= 0 {
					if p.pcr < lastPCR {
						t.Errorf("PES %d: PCR %d goes back from %d", i, p.pcr, lastPCR)
					}
					lastPCR = p.pcr
				}
			}
		})
	}
}

// TestTSPayload checks what goes into the PES packets: an AUD first,
// the parameter sets in front of keyframes that lack them, never twice,
// and ADTS around AAC.
func TestTSPayload(t *testing.T) {
	h265 := media.Track{Codec: media.H265, Timescale: 90000, Config: au(h265VPS, h265SPS, h265PPS)}
	cases := []struct {
		name  string
		track media.Track
		key   bool
		in    []byte
		want  []byte
	}{
		{"keyframe without parameter sets", testTracks(t)[0], true, au(h264IDR), au(h264AUD, h264SPS, h264PPS, h264IDR)},
		{"keyframe with an AUD", testTracks(t)[0], true, au(h264AUD, h264SEI, h264IDR), au(h264AUD, h264SPS, h264PPS, h264SEI, h264IDR)},
		{"own AUD kept", testTracks(t)[0], true, au([]byte{0x09, 0x10}, h264IDR), au([]byte{0x09, 0x10}, h264SPS, h264PPS, h264IDR)},
		{"keyframe with its own", testTracks(t)[0], true, au(h264SPS2, h264PPS, h264IDR), au(h264AUD, h264SPS2, h264PPS, h264IDR)},
		{"keyframe with an SPS only", testTracks(t)[0], true, au(h264SPS2, h264IDR), au(h264AUD, h264SPS, h264PPS, h264SPS2, h264IDR)},
		{"not a keyframe", testTracks(t)[0], false, au(h264NonIDR), au(h264AUD, h264NonIDR)},
		{"3-byte start codes", testTracks(t)[0], false, append([]byte{0, 0, 1}, append(h264NonIDR, 0, 0, 1, 0x01, 0x9B)...),
			au(h264AUD, h264NonIDR, []byte{0x01, 0x9B})},
		{"H.265 keyframe", h265, true, au(h265IDR), au(h265AUD, h265VPS, h265SPS, h265PPS, h265IDR)},
		{"H.265 keyframe without a VPS", h265, true, au(h265SPS, h265PPS, h265CRA), au(h265AUD, h265VPS, h265SPS, h265PPS, h265SPS, h265PPS, h265CRA)},
		{"H.265 keyframe with all three", h265, true, au(h265AUD, h265VPS, h265SPS, h265PPS, h265IDR), au(h265AUD, h265VPS, h265SPS, h265PPS, h265IDR)},
		{"no Config", media.Track{Codec: media.H264, Timescale: 90000}, true, au(h264IDR), au(h264AUD, h264IDR)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var calls []any
			if !c.key {
				// A track starts on a keyframe.
				calls = append(calls, media.Frame{PTS: 0, DTS: 0, Keyframe: true, Data: au(h264IDR)})
			}
			calls = append(calls, media.Frame{PTS: 3000, DTS: 3000, Keyframe: c.key, Data: c.in})
			_, packets := demux(t, writeTS(t, []media.Track{c.track}, calls...))
			if got := packets[len(packets)-1].data; !bytes.Equal(got, c.want) {
				t.Fatalf("payload\n%x\nwant\n%x", got, c.want)
			}
		})
	}

	t.Run("AAC", func(t *testing.T) {
		frame := []byte{0x21, 0x10, 0x05, 0x00, 0xA0}
		_, packets := demux(t, writeTS(t, testTracks(t)[1:], media.Frame{Keyframe: true, Data: frame}))
		var adts mpeg4audio.ADTSPackets
		if err := adts.Unmarshal(packets[0].data); err != nil {
			t.Fatalf("ADTS: %v", err)
		}
		p := adts[0]
		if len(adts) != 1 || p.Type != mpeg4audio.ObjectTypeAACLC || p.SampleRate != 48000 || p.ChannelConfig != 2 || !bytes.Equal(p.AU, frame) {
			t.Fatalf("ADTS %+v, want one AAC-LC 48 kHz stereo packet of %x", p, frame)
		}
	})
}

// TestTSRefuses checks that bad frames and calls out of order are
// refused, and that a refused frame leaves the stream good for the next.
func TestTSRefuses(t *testing.T) {
	key := media.Frame{Track: 0, PTS: 1024, DTS: 0, Keyframe: true, Data: au(h264IDR)}
	next := media.Frame{Track: 0, PTS: 2048, DTS: 512, Data: au(h264NonIDR)}
	with := func(f media.Frame, change func(*media.Frame)) media.Frame { change(&f); return f }
	cases := []struct {
		name   string
		before []any
		bad    media.Frame
		want   string
	}{
		{"unknown track", nil, with(key, func(f *media.Frame) { f.Track = 2 }), "track 2"},
		{"first frame not a keyframe", nil, next, "not a keyframe"},
		{"not a keyframe after a discontinuity", []any{key, discontinuity{}}, with(next, func(f *media.Frame) { f.DTS, f.PTS = 9000, 9000 }), "not a keyframe"},
		{"PTS before DTS", nil, with(key, func(f *media.Frame) { f.PTS = -1 }), "PTS -1 before DTS"},
		{"DTS going back", []any{key}, with(next, func(f *media.Frame) { f.DTS = -1 }), "DTS goes back"},
		{"empty", nil, with(key, func(f *media.Frame) { f.Data = nil }), "empty"},
		{"not Annex-B", nil, with(key, func(f *media.Frame) { f.Data = h264IDR }), "Annex-B"},
		{"AAC too long for ADTS", nil, media.Frame{Track: 1, Keyframe: true, Data: make([]byte, 8185)}, "ADTS carries at most"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			s := sink.NewTS(&out)
			ctx := context.Background()
			if err := s.Start(ctx, testTracks(t)); err != nil {
				t.Fatal(err)
			}
			for _, b := range c.before {
				var err error
				if f, ok := b.(media.Frame); ok {
					err = s.WriteFrame(ctx, f)
				} else {
					err = s.Discontinuity(ctx)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			before := out.Len()
			err := s.WriteFrame(ctx, c.bad)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
			if out.Len() != before {
				t.Fatal("a refused frame wrote bytes")
			}
			// The stream goes on.
			good := with(key, func(f *media.Frame) { f.DTS, f.PTS = 90000, 91024 })
			if err := s.WriteFrame(ctx, good); err != nil {
				t.Fatalf("the frame after a refused one: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			demux(t, out.Bytes())
		})
	}
}

func TestTSStartRefuses(t *testing.T) {
	var many []media.Track
	for len(many) <= 16 {
		many = append(many, testTracks(t)...)
	}
	with := func(i int, change func(*media.Track)) []media.Track {
		tracks := testTracks(t)
		change(&tracks[i])
		return tracks
	}
	cases := []struct {
		name   string
		tracks []media.Track
		want   string
	}{
		{"no tracks", nil, "no tracks"},
		{"too many tracks", many, "at most 16"},
		{"unknown codec", with(0, func(tr *media.Track) { tr.Codec = 9 }), "unsupported codec"},
		{"no timescale", with(1, func(tr *media.Track) { tr.Timescale = 0 }), "timescale 0"},
		{"H.264 Config without a PPS", with(0, func(tr *media.Track) { tr.Config = au(h264SPS) }), "lacks parameter sets"},
		{"H.265 Config without a VPS", []media.Track{{Codec: media.H265, Timescale: 90000, Config: au(h265SPS, h265PPS)}}, "lacks parameter sets"},
		{"Config not Annex-B", with(0, func(tr *media.Track) { tr.Config = h264SPS }), "Annex-B"},
		{"AAC without Config", with(1, func(tr *media.Track) { tr.Config = nil }), "AudioSpecificConfig"},
		{"AAC channel layout in a PCE", with(1, func(tr *media.Track) { tr.Config = []byte{0x11, 0x80, 0x00} }), "PCE"},
		{"AAC at 7 kHz", with(1, func(tr *media.Track) {
			tr.Config, _ = mpeg4audio.AudioSpecificConfig{Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 7000, ChannelConfig: 1}.Marshal()
		}), "ADTS"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := sink.NewTS(&bytes.Buffer{}).Start(context.Background(), c.tracks)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
		})
	}
}

func TestTSCallOrder(t *testing.T) {
	ctx := context.Background()
	frame := media.Frame{Keyframe: true, Data: au(h264IDR)}
	s := sink.NewTS(&bytes.Buffer{})
	if err := s.WriteFrame(ctx, frame); err == nil {
		t.Error("WriteFrame before Start worked")
	}
	if err := s.Discontinuity(ctx); err == nil {
		t.Error("Discontinuity before Start worked")
	}
	if err := s.Start(ctx, testTracks(t)); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx, testTracks(t)); err == nil {
		t.Error("a second Start worked")
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.WriteFrame(canceled, frame); !errors.Is(err, context.Canceled) {
		t.Errorf("WriteFrame with a canceled context: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteFrame(ctx, frame); err == nil {
		t.Error("WriteFrame after Close worked")
	}
	if err := s.Close(); err == nil {
		t.Error("a second Close worked")
	}
}

type failingWriter struct{ after int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after <= 0 {
		return 0, errors.New("disk full")
	}
	w.after--
	return len(p), nil
}

// TestTSBrokenWriter checks that a failed Write breaks the stream for
// good: after a torn packet nothing can follow.
func TestTSBrokenWriter(t *testing.T) {
	ctx := context.Background()
	s := sink.NewTS(&failingWriter{after: 1}) // PAT and PMT go through
	if err := s.Start(ctx, testTracks(t)); err != nil {
		t.Fatal(err)
	}
	frame := media.Frame{Keyframe: true, Data: au(h264IDR)}
	err := s.WriteFrame(ctx, frame)
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("error %v, want the writer's", err)
	}
	frame.PTS, frame.DTS = 3000, 3000
	if err2 := s.WriteFrame(ctx, frame); err2 == nil {
		t.Fatal("WriteFrame after a failed write worked")
	}
	if err2 := s.Close(); err2 == nil || !strings.Contains(err2.Error(), "disk full") {
		t.Fatalf("Close: %v, want the writer's error", err2)
	}
}

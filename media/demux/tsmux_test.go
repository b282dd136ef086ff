package demux

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/mediatest"
)

// tsMux writes MPEG-TS the simple way, for layouts ffmpeg does not make.
type tsMux struct {
	out bytes.Buffer
	cc  map[uint16]byte
}

func newTSMux() *tsMux { return &tsMux{cc: map[uint16]byte{}} }

// packet writes one packet carrying up to 184 bytes of payload and returns
// how many it took; short payloads are padded with adaptation stuffing.
func (m *tsMux) packet(pid uint16, pusi bool, payload []byte) int {
	n := min(len(payload), 184)
	h := []byte{0x47, byte(pid>>8) & 0x1f, byte(pid), 0x10 | m.cc[pid]}
	if pusi {
		h[1] |= 0x40
	}
	m.cc[pid] = (m.cc[pid] + 1) & 0x0f
	if n < 184 {
		h[3] |= 0x20
		af := 183 - n
		h = append(h, byte(af))
		if af > 0 {
			h = append(h, 0x00)
			h = append(h, bytes.Repeat([]byte{0xff}, af-1)...)
		}
	}
	m.out.Write(h)
	m.out.Write(payload[:n])
	return n
}

func (m *tsMux) section(pid uint16, sec []byte) {
	c := crc32MPEG(sec)
	sec = append(sec, byte(c>>24), byte(c>>16), byte(c>>8), byte(c))
	m.packet(pid, true, append([]byte{0}, sec...))
}

func (m *tsMux) pat(programs ...uint16) {
	sec := []byte{0x00, 0xb0, byte(9 + 4*len(programs)), 0, 1, 0xc1, 0, 0}
	for i, pid := range programs {
		sec = append(sec, 0, byte(i+1), 0xe0|byte(pid>>8), byte(pid))
	}
	m.section(0, sec)
}

type tsES struct {
	typ  byte
	pid  uint16
	desc []byte
}

func (m *tsMux) pmt(pid uint16, es ...tsES) {
	body := []byte{0, 1, 0xc1, 0, 0, 0xe1, 0x00, 0xf0, 0x00}
	for _, e := range es {
		body = append(body, e.typ, 0xe0|byte(e.pid>>8), byte(e.pid), 0xf0|byte(len(e.desc)>>8), byte(len(e.desc)))
		body = append(body, e.desc...)
	}
	sec := append([]byte{0x02, 0xb0, byte(len(body) + 4)}, body...)
	m.section(pid, sec)
}

// pes writes a PES packet; pts < 0 leaves the timestamps out, dts < 0
// leaves the DTS out.
func (m *tsMux) pes(pid uint16, sid byte, pts, dts int64, data []byte, bounded bool) {
	var opt []byte
	flags := byte(0)
	if pts >= 0 {
		flags = 0x80
		if dts >= 0 {
			flags = 0xc0
			opt = append(ts5(3, pts), ts5(1, dts)...)
		} else {
			opt = ts5(2, pts)
		}
	}
	h := []byte{0, 0, 1, sid, 0, 0, 0x80, flags, byte(len(opt))}
	h = append(h, opt...)
	if l := len(h) - 6 + len(data); bounded && l <= 0xffff {
		h[4], h[5] = byte(l>>8), byte(l)
	}
	b := append(h, data...)
	for first := true; len(b) > 0; first = false {
		b = b[m.packet(pid, first, b):]
	}
}

func ts5(prefix byte, v int64) []byte {
	v &= pts33 - 1
	return []byte{prefix<<4 | byte(v>>29)&0x0e | 1, byte(v >> 22), byte(v>>14)&0xfe | 1, byte(v >> 7), byte(v<<1) | 1}
}

// sampleFrames demuxes a short ffmpeg clip for frames to mux again.
func sampleFrames(t *testing.T) demuxed {
	t.Helper()
	c := mediatest.TSH264AAC
	c.Name, c.File, c.Seconds, c.Video = "sample", "sample.ts", 1, "testsrc=size=160x120:rate=30"
	return demuxAll(t, mediatest.Make(t, t.TempDir(), c), Options{})
}

// adtsBytes is the audio frames as one ADTS byte stream, with the byte
// offset where each frame starts.
func adtsBytes(t *testing.T, tr media.Track, frames []media.Frame) ([]byte, []int) {
	var b []byte
	var at []int
	for _, f := range frames {
		at = append(at, len(b))
		b = append(append(b, adtsFromASC(t, tr.Config, len(f.Data))...), f.Data...)
	}
	return b, at
}

func sameFrames(t *testing.T, what string, got, want []media.Frame) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d frames, want %d", what, len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.PTS != w.PTS || g.DTS != w.DTS || g.Keyframe != w.Keyframe || !bytes.Equal(g.Data, w.Data) {
			t.Fatalf("%s frame %d: PTS %d DTS %d key %v %d bytes, want %d %d %v %d bytes", what, i,
				g.PTS, g.DTS, g.Keyframe, len(g.Data), w.PTS, w.DTS, w.Keyframe, len(w.Data))
		}
	}
}

func openBytes(b []byte, o Options) (Source, error) {
	return o.Open(bytes.NewReader(b), int64(len(b)))
}

var quiet = Options{Log: slog.New(slog.DiscardHandler)}

// muxVideo writes the video frames, DTS shifted, one PES each.
func muxVideo(m *tsMux, frames []media.Frame, shift int64) {
	for _, f := range frames {
		m.pes(videoPID, 0xe0, f.PTS+shift, f.DTS+shift, f.Data, false)
	}
}

func TestTSLayouts(t *testing.T) {
	src := sampleFrames(t)
	vi, ai := src.trackOf(t, "v"), src.trackOf(t, "a")
	video, audio := src.frames[vi], src.frames[ai]
	adts, starts := adtsBytes(t, src.tracks[ai], audio)
	streams := []tsES{{streamH264, videoPID, nil}, {streamAACADT, audioPID, nil}}

	t.Run("ADTS frames straddle PES packets", func(t *testing.T) {
		m := newTSMux()
		m.pat(pmtPID)
		m.pmt(pmtPID, streams...)
		muxVideo(m, video, 0)
		// 700-byte PES packets; each takes the PTS of the first frame
		// starting in it, or none.
		next := 0
		for off := 0; off < len(adts); off += 700 {
			end := min(off+700, len(adts))
			pts := int64(-1)
			for next < len(starts) && starts[next] < off {
				next++
			}
			if next < len(starts) && starts[next] < end {
				pts = audio[next].PTS
			}
			m.pes(audioPID, 0xc0, pts, -1, adts[off:end], true)
		}
		s, err := openBytes(m.out.Bytes(), quiet)
		if err != nil {
			t.Fatal(err)
		}
		d := drain(t, s)
		sameFrames(t, "video", d.frames[0], video)
		sameFrames(t, "audio", d.frames[1], audio)
	})

	t.Run("M2TS", func(t *testing.T) {
		m := newTSMux()
		m.pat(pmtPID)
		m.pmt(pmtPID, streams...)
		muxVideo(m, video, 0)
		m.pes(audioPID, 0xc0, audio[0].PTS, -1, adts, false)
		ts := m.out.Bytes()
		var m2ts []byte
		for i := 0; i < len(ts); i += 188 {
			m2ts = append(append(m2ts, 0x12, 0x34, 0x56, byte(i)), ts[i:i+188]...)
		}
		s, err := openBytes(m2ts, quiet)
		if err != nil {
			t.Fatal(err)
		}
		d := drain(t, s)
		sameFrames(t, "video", d.frames[0], video)
		sameFrames(t, "audio", d.frames[1], audio)
	})

	t.Run("duplicate packets", func(t *testing.T) {
		m := newTSMux()
		m.pat(pmtPID)
		m.pmt(pmtPID, streams...)
		muxVideo(m, video[:5], 0)
		b := m.out.Bytes()
		var dup []byte
		for i := 0; i < len(b); i += 188 {
			dup = append(dup, b[i:i+188]...)
			if i/188%3 == 2 {
				dup = append(dup, b[i:i+188]...) // same continuity counter: a repeat
			}
		}
		s, err := openBytes(dup, quiet)
		if err != nil {
			t.Fatal(err)
		}
		sameFrames(t, "video", drain(t, s).frames[0], video[:5])
	})

	t.Run("audio ends early", func(t *testing.T) {
		// 12 s of video (the clip's frames again and again), 1 s of audio
		// at the start: the interleaver waits for audio only as long as
		// its window, then lets video go.
		m := newTSMux()
		m.pat(pmtPID)
		m.pmt(pmtPID, streams...)
		m.pes(audioPID, 0xc0, audio[0].PTS, -1, adts, false)
		span := video[len(video)-1].DTS + int64(video[len(video)-1].Duration) - video[0].DTS
		var want []media.Frame
		for i := int64(0); i < 12; i++ {
			muxVideo(m, video, i*span)
			for _, f := range video {
				f.PTS, f.DTS = f.PTS+i*span, f.DTS+i*span
				want = append(want, f)
			}
		}
		s, err := openBytes(m.out.Bytes(), quiet)
		if err != nil {
			t.Fatal(err)
		}
		d := drain(t, s)
		sameFrames(t, "video", d.frames[0], want)
		sameFrames(t, "audio", d.frames[1], audio)
		// Every frame out is at most the window behind the latest before it.
		var latest int64
		for i, f := range d.order {
			if f.DTS < latest-interleaveWindow*90000 {
				t.Fatalf("frame %d (track %d, DTS %d) comes %d ticks after DTS %d", i, f.Track, f.DTS, latest-f.DTS, latest)
			}
			latest = max(latest, f.DTS)
		}
		last := d.frames[1][len(audio)-1]
		if last.Duration != 1920 {
			t.Errorf("last audio frame: duration %d, want one AAC frame (1920)", last.Duration)
		}
	})

	for _, tc := range []struct {
		name string
		mux  func(m *tsMux)
		err  error
		want string // in the error, or in the log on success
		n    int    // tracks on success
	}{
		{"video PES without PTS", func(m *tsMux) {
			muxVideo(m, video[:2], 0)
			m.pes(videoPID, 0xe0, -1, -1, video[2].Data, false)
		}, ErrUnsupported, "PID 256: video PES at offset", 0},
		{"DTS goes backwards", func(m *tsMux) {
			muxVideo(m, video, 0)
			muxVideo(m, video, -90000)
		}, ErrUnsupported, "PID 256: DTS goes back", 0},
		{"first audio PES without PTS", func(m *tsMux) {
			muxVideo(m, video, 0)
			m.pes(audioPID, 0xc0, -1, -1, adts, false)
		}, ErrCorrupt, "PID 257: first audio PES at offset", 0},
		{"no parameter sets", func(m *tsMux) {
			for _, f := range video {
				au := bytes.Clone(f.Data)
				for _, ps := range bytes.SplitAfter(src.tracks[vi].Config, []byte{0, 0, 0, 1})[1:] {
					au = bytes.Replace(au, bytes.TrimSuffix(ps, []byte{0, 0, 0, 1}), nil, 1)
				}
				m.pes(videoPID, 0xe0, f.PTS, f.DTS, au, false)
			}
		}, ErrCorrupt, "PID 256 (H.264): no SPS and PPS", 0},
		{"declared stream without frames", func(m *tsMux) {
			muxVideo(m, video, 0)
		}, nil, "skipping a stream without frames", 1},
		{"AAC Main profile", func(m *tsMux) {
			muxVideo(m, video, 0)
			main := bytes.Clone(adts)
			for _, at := range starts {
				main[at+2] &^= 0xc0 // profile 0: AAC Main
			}
			m.pes(audioPID, 0xc0, audio[0].PTS, -1, main, false)
		}, nil, "codec=\"AAC Main\"", 1},
		{"AAC configuration changes", func(m *tsMux) {
			muxVideo(m, video, 0)
			changed := bytes.Clone(adts)
			changed[starts[5]+3] ^= 0x40 // channel configuration
			m.pes(audioPID, 0xc0, audio[0].PTS, -1, changed, false)
		}, ErrUnsupported, "PID 257: AAC configuration changes", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newTSMux()
			m.pat(pmtPID)
			m.pmt(pmtPID, streams...)
			tc.mux(m)
			var log bytes.Buffer
			s, err := openBytes(m.out.Bytes(), logTo(&log))
			for err == nil {
				_, err = s.Next()
			}
			if tc.err == nil {
				if err != io.EOF || len(s.Tracks()) != tc.n || !strings.Contains(log.String(), tc.want) {
					t.Fatalf("error %v, %d tracks, log %q; want %d tracks and %q logged", err, len(s.Tracks()), log.String(), tc.n, tc.want)
				}
				return
			}
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %v with %q", err, tc.err, tc.want)
			}
		})
	}

	t.Run("skipped streams and programs", func(t *testing.T) {
		m := newTSMux()
		m.pat(pmtPID, pmtPID+1)
		m.pmt(pmtPID, tsES{streamH264, videoPID, nil},
			tsES{0x06, 300, []byte{0x59, 0x08, 'e', 'n', 'g', 0x10, 0, 1, 0, 1}}, // DVB subtitles
			tsES{0x06, 301, []byte{0x05, 0x04, 'O', 'p', 'u', 's'}},
			tsES{0x86, 302, nil})
		muxVideo(m, video, 0)
		var log bytes.Buffer
		s, err := openBytes(m.out.Bytes(), logTo(&log))
		if err != nil {
			t.Fatal(err)
		}
		sameFrames(t, "video", drain(t, s).frames[0], video)
		for _, want := range []string{"several programs", `kind=subtitle codec="DVB subtitles"`, `kind=audio codec=Opus`, `codec="SCTE-35 splice information"`} {
			if !strings.Contains(log.String(), want) {
				t.Errorf("log %q lacks %q", log.String(), want)
			}
		}
	})
}

package demux

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/mediatest"
)

// demuxed is everything a source gave.
type demuxed struct {
	tracks []media.Track
	frames [][]media.Frame // per track
	order  []media.Frame   // as they came, without data
}

func openFile(t testing.TB, path string, o Options) (Source, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return o.Open(f, st.Size())
}

// demuxAll reads every frame; it fails the test on any error.
func demuxAll(t testing.TB, path string, o Options) demuxed {
	t.Helper()
	src, err := openFile(t, path, o)
	if err != nil {
		t.Fatalf("Open %s: %v", path, err)
	}
	return drain(t, src)
}

func drain(t testing.TB, src Source) demuxed {
	t.Helper()
	d := demuxed{tracks: src.Tracks(), frames: make([][]media.Frame, len(src.Tracks()))}
	for {
		f, err := src.Next()
		if err == io.EOF {
			return d
		}
		if err != nil {
			t.Fatalf("Next after %d frames: %v", len(d.order), err)
		}
		if int(f.Track) >= len(d.tracks) {
			t.Fatalf("frame of track %d, %d tracks", f.Track, len(d.tracks))
		}
		d.frames[f.Track] = append(d.frames[f.Track], f)
		meta := f
		meta.Data = nil
		d.order = append(d.order, meta)
	}
}

// trackOf returns the index of the first track of a kind ("v" or "a").
func (d demuxed) trackOf(t testing.TB, kind string) int {
	t.Helper()
	for i, tr := range d.tracks {
		if tr.Codec.IsVideo() == (kind == "v") {
			return i
		}
	}
	t.Fatalf("no %s track in %+v", kind, d.tracks)
	return -1
}

// probePacket is a packet as ffprobe sees it, in the stream's time base.
type probePacket struct {
	PTS      *int64 `json:"pts"`
	DTS      *int64 `json:"dts"`
	Duration *int64 `json:"duration"`
	Flags    string `json:"flags"`
}

type probeStream struct {
	TimeBase      string `json:"time_base"`
	NbReadPackets string `json:"nb_read_packets"`
}

func ffprobe(t testing.TB, args ...string) []byte {
	t.Helper()
	out, err := exec.Command("ffprobe", append([]string{"-v", "error", "-of", "json"}, args...)...).Output()
	if err != nil {
		t.Fatalf("ffprobe %v: %v", args, err)
	}
	return out
}

// probe returns the packets of the first stream of a kind and the stream's
// time base and counted packets.
func probe(t testing.TB, path, kind string) ([]probePacket, *big.Rat, int) {
	t.Helper()
	var p struct {
		Packets []probePacket `json:"packets"`
	}
	if err := json.Unmarshal(ffprobe(t, "-select_streams", kind+":0", "-show_entries", "packet=pts,dts,duration,flags", path), &p); err != nil {
		t.Fatal(err)
	}
	var s struct {
		Streams []probeStream `json:"streams"`
	}
	if err := json.Unmarshal(ffprobe(t, "-count_packets", "-select_streams", kind+":0", "-show_entries", "stream=time_base,nb_read_packets", path), &s); err != nil {
		t.Fatal(err)
	}
	if len(s.Streams) != 1 {
		t.Fatalf("ffprobe: %d %s streams", len(s.Streams), kind)
	}
	tb, ok := new(big.Rat).SetString(s.Streams[0].TimeBase)
	if !ok {
		t.Fatalf("time base %q", s.Streams[0].TimeBase)
	}
	n, err := strconv.Atoi(s.Streams[0].NbReadPackets)
	if err != nil {
		t.Fatal(err)
	}
	return p.Packets, tb, n
}

// convert turns ffprobe's value in time base tb into timescale ticks; it
// must be exact.
func convert(t testing.TB, v int64, tb *big.Rat, timescale uint32) int64 {
	t.Helper()
	r := new(big.Rat).Mul(new(big.Rat).SetInt64(v), tb)
	r.Mul(r, new(big.Rat).SetInt64(int64(timescale)))
	if !r.IsInt() {
		t.Fatalf("%d in time base %s is not a whole number of 1/%d", v, tb, timescale)
	}
	return r.Num().Int64()
}

// writeES writes a track's frames as an elementary stream ffmpeg can read
// on its own: Annex-B prefixed once with the configuration, or ADTS.
func writeES(t testing.TB, dir string, tr media.Track, frames []media.Frame) string {
	t.Helper()
	var buf bytes.Buffer
	var name string
	switch tr.Codec {
	case media.H264, media.H265:
		name = "es.h264"
		if tr.Codec == media.H265 {
			name = "es.hevc"
		}
		buf.Write(tr.Config)
		for _, f := range frames {
			buf.Write(f.Data)
		}
	case media.AAC:
		name = "es.aac"
		for _, f := range frames {
			buf.Write(adtsFromASC(t, tr.Config, len(f.Data)))
			buf.Write(f.Data)
		}
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// adtsFromASC builds the 7-byte ADTS header of an access unit of n bytes.
func adtsFromASC(t testing.TB, asc []byte, n int) []byte {
	t.Helper()
	var c mpeg4audio.AudioSpecificConfig
	if err := c.Unmarshal(asc); err != nil {
		t.Fatalf("AudioSpecificConfig % x: %v", asc, err)
	}
	ot := asc[0] >> 3
	sri := (asc[0]&7)<<1 | asc[1]>>7
	ch := (asc[1] >> 3) & 0x0f
	l := n + 7
	return []byte{0xff, 0xf1, (ot-1)<<6 | sri<<2 | ch>>2, (ch&3)<<6 | byte(l>>11), byte(l >> 3), byte(l&7)<<5 | 0x1f, 0xfc}
}

// checkConfig parses the configuration the way a player would.
func checkConfig(t testing.TB, tr media.Track) {
	t.Helper()
	switch tr.Codec {
	case media.H264, media.H265:
		var nals h264.AnnexB
		if err := nals.Unmarshal(tr.Config); err != nil {
			t.Fatalf("config: %v", err)
		}
		if !bytes.HasPrefix(tr.Config, []byte{0, 0, 0, 1}) || bytes.Count(tr.Config, []byte{0, 0, 0, 1}) != len(nals) {
			t.Errorf("config does not use 4-byte start codes: % x", tr.Config[:8])
		}
		var w, h int
		kinds := map[nalKind]int{}
		for _, n := range nals {
			k, err := classify(tr.Codec, n)
			if err != nil {
				t.Fatal(err)
			}
			kinds[k]++
			if k != nalSPS {
				continue
			}
			if tr.Codec == media.H264 {
				var s h264.SPS
				if err := s.Unmarshal(n); err != nil {
					t.Fatal(err)
				}
				w, h = s.Width(), s.Height()
			} else {
				var s h265.SPS
				if err := s.Unmarshal(n); err != nil {
					t.Fatal(err)
				}
				w, h = s.Width(), s.Height()
			}
		}
		want := map[nalKind]int{nalSPS: 1, nalPPS: 1}
		if tr.Codec == media.H265 {
			want[nalVPS] = 1
		}
		if fmt.Sprint(kinds) != fmt.Sprint(want) {
			t.Errorf("config NAL kinds %v, want %v", kinds, want)
		}
		if w != int(tr.Width) || h != int(tr.Height) || w == 0 {
			t.Errorf("track %dx%d, SPS %dx%d", tr.Width, tr.Height, w, h)
		}
	case media.AAC:
		var c mpeg4audio.AudioSpecificConfig
		if err := c.Unmarshal(tr.Config); err != nil {
			t.Fatalf("AudioSpecificConfig: %v", err)
		}
		if c.SampleRate != int(tr.SampleRate) || int(c.ChannelConfig) != int(tr.Channels) {
			t.Errorf("track %d Hz %d channels, config %d Hz channel configuration %d", tr.SampleRate, tr.Channels, c.SampleRate, c.ChannelConfig)
		}
	}
}

// checkAgainstProbe compares one track with what ffprobe reads of the
// source: packet count, PTS, DTS, duration, keyframe flag, packet by
// packet.
func checkAgainstProbe(t *testing.T, path, kind string, tr media.Track, frames []media.Frame, isTS bool) {
	pk, tb, count := probe(t, path, kind)
	if len(frames) != count || len(pk) != count {
		t.Fatalf("%s: %d frames, ffprobe counts %d (and lists %d)", kind, len(frames), count, len(pk))
	}
	for i, f := range frames {
		p := pk[i]
		if p.PTS == nil || p.DTS == nil {
			t.Fatalf("%s packet %d: ffprobe has no timestamps", kind, i)
		}
		pts, dts := convert(t, *p.PTS, tb, tr.Timescale), convert(t, *p.DTS, tb, tr.Timescale)
		if f.PTS != pts || f.DTS != dts {
			t.Fatalf("%s frame %d: PTS/DTS %d/%d, ffprobe %d/%d", kind, i, f.PTS, f.DTS, pts, dts)
		}
		// MPEG-TS has no durations: ffprobe takes the frame rate, the
		// demuxer the DTS difference (the last frame the one before); they
		// agree on a constant-rate clip. MP4 has them, and they agree,
		// except that ffmpeg replaces a short last duration of a fragment
		// run by the codec's frame size.
		if p.Duration != nil && (isTS || i < len(frames)-1) {
			if d := convert(t, *p.Duration, tb, tr.Timescale); int64(f.Duration) != d {
				t.Fatalf("%s frame %d: duration %d, ffprobe %d", kind, i, f.Duration, d)
			}
		}
		if i < len(frames)-1 && int64(f.Duration) != frames[i+1].DTS-f.DTS {
			t.Fatalf("%s frame %d: duration %d, next DTS %d later", kind, i, f.Duration, frames[i+1].DTS-f.DTS)
		}
		if key := strings.HasPrefix(p.Flags, "K"); f.Keyframe != key {
			t.Fatalf("%s frame %d: keyframe %v, ffprobe flags %q", kind, i, f.Keyframe, p.Flags)
		}
		if i > 0 && f.DTS < frames[i-1].DTS {
			t.Fatalf("%s frame %d: DTS %d after %d", kind, i, f.DTS, frames[i-1].DTS)
		}
	}
}

// checkOrder checks the interleaving: DTS in seconds never decreases,
// video first on a tie.
func checkOrder(t *testing.T, d demuxed) {
	for i := 1; i < len(d.order); i++ {
		a, b := d.order[i-1], d.order[i]
		at, bt := d.tracks[a.Track], d.tracks[b.Track]
		c := cmpTime(a.DTS, at.Timescale, b.DTS, bt.Timescale)
		if c > 0 || (c == 0 && !at.Codec.IsVideo() && bt.Codec.IsVideo()) {
			t.Fatalf("frame %d (track %d DTS %d) comes after frame %d (track %d DTS %d)", i, b.Track, b.DTS, i-1, a.Track, a.DTS)
		}
	}
}

// logTo returns options logging into buf.
func logTo(buf *bytes.Buffer) Options {
	return Options{Log: slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
}

func TestClips(t *testing.T) {
	for _, tc := range []struct {
		clip   mediatest.Clip
		video  media.Codec
		audio  bool
		isTS   bool
		w, h   uint16
		rate   uint32
		tscale uint32
	}{
		{mediatest.TSH264AAC, media.H264, true, true, 1280, 720, 48000, 90000},
		{mediatest.MP4H265, media.H265, true, false, 640, 360, 44100, 0},
		{mediatest.FragmentedMP4, media.H264, true, false, 640, 360, 48000, 0},
		{mediatest.TSH265, media.H265, false, true, 640, 360, 0, 90000},
	} {
		t.Run(tc.clip.Name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := mediatest.Make(t, dir, tc.clip)
			var log bytes.Buffer
			d := demuxAll(t, path, logTo(&log))
			if log.Len() > 0 {
				t.Errorf("log: %s", log.String()) // no skipped track, no sync flag disagreement
			}
			wantTracks := 1
			if tc.audio {
				wantTracks = 2
			}
			if len(d.tracks) != wantTracks {
				t.Fatalf("%d tracks: %+v", len(d.tracks), d.tracks)
			}
			checkOrder(t, d)

			vi := d.trackOf(t, "v")
			vt := d.tracks[vi]
			if vt.Codec != tc.video || vt.Width != tc.w || vt.Height != tc.h || (tc.tscale != 0 && vt.Timescale != tc.tscale) {
				t.Errorf("video track %v %dx%d timescale %d", vt.Codec, vt.Width, vt.Height, vt.Timescale)
			}
			checkConfig(t, vt)
			checkAgainstProbe(t, path, "v", vt, d.frames[vi], tc.isTS)
			for i, f := range d.frames[vi] {
				if !bytes.HasPrefix(f.Data, []byte{0, 0, 0, 1}) {
					t.Fatalf("video frame %d does not start with a 4-byte start code", i)
				}
				var au h264.AnnexB
				if err := au.Unmarshal(f.Data); err != nil {
					t.Fatalf("video frame %d: %v", i, err)
				}
				for _, n := range au {
					if k, _ := classify(vt.Codec, n); k == nalAUD {
						t.Fatalf("video frame %d keeps an access unit delimiter", i)
					}
				}
			}
			es := writeES(t, dir, vt, d.frames[vi])
			if err := mediatest.SameFrames(mediatest.FrameMD5(t, path, "v"), mediatest.FrameMD5(t, es, "v")); err != nil {
				t.Errorf("video written back as %s: %v", filepath.Base(es), err)
			}

			if !tc.audio {
				return
			}
			ai := d.trackOf(t, "a")
			at := d.tracks[ai]
			if at.Codec != media.AAC || at.SampleRate != tc.rate || at.Channels != 1 || (tc.tscale != 0 && at.Timescale != tc.tscale) {
				t.Errorf("audio track %+v", at)
			}
			checkConfig(t, at)
			checkAgainstProbe(t, path, "a", at, d.frames[ai], tc.isTS)
			es = writeES(t, dir, at, d.frames[ai])
			if err := mediatest.SameFrames(mediatest.FrameMD5(t, path, "a"), mediatest.FrameMD5(t, es, "a")); err != nil {
				t.Errorf("audio written back as ADTS: %v", err)
			}
		})
	}
}

// ffmpeg runs ffmpeg with arguments after the common ones.
func ffmpeg(t testing.TB, args ...string) {
	t.Helper()
	mediatest.RequireFFmpeg(t)
	all := append([]string{"-hide_banner", "-loglevel", "error", "-y"}, args...)
	if b, err := exec.Command("ffmpeg", all...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg %v: %v\n%s", args, err, b)
	}
}

// TestTimestampWrap: a TS whose 33-bit timestamps wrap in the middle comes
// out with continuous, increasing timestamps.
func TestTimestampWrap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clip := mediatest.TSH264AAC
	clip.Name, clip.File, clip.Seconds = "ts-wrap", "wrap.ts", 3
	clip.Video = "testsrc=size=320x240:rate=30"
	// 2^33 / 90000 = 95443.7 s: the wrap comes 1.7 s in.
	clip.Args = append([]string{"-output_ts_offset", "95442"}, clip.Args...)
	path := mediatest.Make(t, dir, clip)
	d := demuxAll(t, path, Options{})
	checkOrder(t, d)
	for i, tr := range d.tracks {
		fr := d.frames[i]
		_, _, count := probe(t, path, map[bool]string{true: "v", false: "a"}[tr.Codec.IsVideo()])
		if len(fr) != count {
			t.Errorf("track %d: %d frames, ffprobe %d", i, len(fr), count)
		}
		if fr[0].DTS >= pts33 || fr[len(fr)-1].DTS < pts33 {
			t.Errorf("track %d: DTS from %d to %d, want across 2^33", i, fr[0].DTS, fr[len(fr)-1].DTS)
		}
		for j := 1; j < len(fr); j++ {
			step := fr[j].DTS - fr[j-1].DTS
			want := int64(3000)
			if !tr.Codec.IsVideo() {
				want = 1920
			}
			if step != want || fr[j-1].Duration != uint32(want) || fr[j].PTS < fr[j].DTS || fr[j].PTS-fr[j].DTS > 90000 {
				t.Fatalf("track %d frame %d: DTS %d after %d (duration %d), PTS %d", i, j, fr[j].DTS, fr[j-1].DTS, fr[j-1].Duration, fr[j].PTS)
			}
		}
	}
}

// TestUnsupported: other codecs and containers are ErrUnsupported naming
// them; an unsupported extra track is skipped with a warning.
func TestUnsupported(t *testing.T) {
	const (
		v = "testsrc=size=160x120:rate=25"
		a = "sine=frequency=440:sample_rate=48000"
	)
	h264 := []string{"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"}
	aac := []string{"-c:a", "aac"}
	cat := func(l ...[]string) []string {
		var out []string
		for _, x := range l {
			out = append(out, x...)
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		file   string
		audio  bool
		args   []string
		err    string // ErrUnsupported and this text; "" for success
		tracks string // codecs of the tracks on success
		log    string // in the warning on success
	}{
		{"ts mpeg2 video", "a.ts", false, []string{"-c:v", "mpeg2video"}, "video codec MPEG-2 in PID 256", "", ""},
		{"ts mpeg2 video with aac", "a.ts", true, cat([]string{"-c:v", "mpeg2video"}, aac), "video codec MPEG-2 in PID 256", "", ""},
		{"ts mp2 audio only", "a.ts", true, []string{"-vn", "-c:a", "mp2"}, "audio codec MPEG-1 audio", "", ""},
		{"ts h264 with mp2", "a.ts", true, cat(h264, []string{"-c:a", "mp2"}), "", "H.264", "MPEG-1 audio"},
		{"ts h264 with ac3", "a.ts", true, cat(h264, []string{"-c:a", "ac3"}), "", "H.264", "AC-3"},
		{"ts aac only", "a.ts", true, cat([]string{"-vn"}, aac), "", "AAC", ""},
		{"mp4 vp9", "a.mp4", false, []string{"-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"}, "video codec VP9 in track 1", "", ""},
		{"mp4 mpeg4 part 2", "a.mp4", false, []string{"-c:v", "mpeg4"}, "video codec MPEG-4 Visual in track 1", "", ""},
		{"mp4 h264 with opus", "a.mp4", true, cat(h264, []string{"-c:a", "libopus"}), "", "H.264", "Opus"},
		{"mp4 h264 with mp3", "a.mp4", true, cat(h264, []string{"-c:a", "libmp3lame"}), "", "H.264", "MP3"},
		{"mp4 h264 with ac3", "a.mp4", true, cat(h264, []string{"-c:a", "ac3"}), "", "H.264", "AC-3"},
		{"mp4 opus only", "a.mp4", true, []string{"-vn", "-c:a", "libopus"}, "audio codec Opus in track 1", "", ""},
		{"matroska", "a.mkv", true, cat(h264, aac), "container Matroska/WebM", "", ""},
		{"avi", "a.avi", false, h264, "container RIFF", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, tc.file)
			args := []string{"-f", "lavfi", "-i", v}
			if tc.audio {
				args = append(args, "-f", "lavfi", "-i", a)
			}
			args = append(append(append(args, "-t", "1"), tc.args...), path)
			ffmpeg(t, args...)
			var log bytes.Buffer
			src, err := openFile(t, path, logTo(&log))
			if tc.err != "" {
				if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Open: %v, want ErrUnsupported with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			d := drain(t, src)
			var codecs []string
			for _, tr := range d.tracks {
				codecs = append(codecs, tr.Codec.String())
			}
			if strings.Join(codecs, ",") != tc.tracks {
				t.Errorf("tracks %v, want %s", codecs, tc.tracks)
			}
			switch l := log.String(); {
			case tc.log == "" && l != "":
				t.Errorf("log %q, want none", l)
			case tc.log != "" && (!strings.Contains(l, "skipping unsupported track") || !strings.Contains(l, tc.log)):
				t.Errorf("log %q, want a warning about skipping %q", l, tc.log)
			}
			for i := range d.tracks {
				if len(d.frames[i]) < 20 {
					t.Errorf("track %d: %d frames", i, len(d.frames[i]))
				}
			}
		})
	}
}

// TestMP4WithoutASC: ffmpeg remuxing ADTS into a fragmented MP4 with an
// empty moov leaves the AudioSpecificConfig out; the track is taken as AAC
// LC as its sample entry says, with a warning, and decodes the same.
func TestMP4WithoutASC(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := mediatest.TSH264AAC
	c.Name, c.File, c.Seconds, c.Video = "adts", "adts.ts", 2, "testsrc=size=160x120:rate=30"
	ts := mediatest.Make(t, dir, c)
	path := filepath.Join(dir, "noasc.mp4")
	ffmpeg(t, "-i", ts, "-c", "copy", "-bsf:a", "aac_adtstoasc", "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-f", "mp4", path)
	var log bytes.Buffer
	d := demuxAll(t, path, logTo(&log))
	if !strings.Contains(log.String(), "without an AudioSpecificConfig") {
		t.Errorf("log %q", log.String())
	}
	ai := d.trackOf(t, "a")
	at := d.tracks[ai]
	if !bytes.Equal(at.Config, []byte{0x11, 0x88}) || at.SampleRate != 48000 || at.Channels != 1 {
		t.Errorf("audio track %+v", at)
	}
	es := writeES(t, dir, at, d.frames[ai])
	if err := mediatest.SameFrames(mediatest.FrameMD5(t, ts, "a"), mediatest.FrameMD5(t, es, "a")); err != nil {
		t.Errorf("audio written back as ADTS: %v", err)
	}
}

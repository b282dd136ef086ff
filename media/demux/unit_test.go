package demux

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"

	"github.com/boxswarm/boxswarm/media"
)

func TestCmpTime(t *testing.T) {
	for _, tc := range []struct {
		a      int64
		ta     uint32
		b      int64
		tb     uint32
		want   int
		reason string
	}{
		{90000, 90000, 48000, 48000, 0, "one second each"},
		{3000, 90000, 1601, 48000, -1, "1/30 s vs 1601/48000 s"},
		{3000, 90000, 1600, 48000, 0, "1/30 s both"},
		{-1, 90000, 0, 1, -1, "negative first"},
		{-3000, 90000, -1600, 48000, 0, "negative equal"},
		{-3001, 90000, -1600, 48000, -1, "negative smaller"},
		{math.MaxInt64, math.MaxUint32, math.MaxInt64 - 1, math.MaxUint32, 1, "no overflow"},
		{math.MaxInt64, 1, math.MaxInt64, 2, 1, "no overflow across timescales"},
		{math.MinInt64, 1, math.MinInt64 + 1, 1, -1, "the smallest"},
	} {
		if got := cmpTime(tc.a, tc.ta, tc.b, tc.tb); got != tc.want {
			t.Errorf("%s: cmpTime(%d/%d, %d/%d) = %d, want %d", tc.reason, tc.a, tc.ta, tc.b, tc.tb, got, tc.want)
		}
	}
}

func TestUnwrap(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  []int64
		want []int64
	}{
		{"no wrap", []int64{100, 3100, 6100}, []int64{100, 3100, 6100}},
		{"wrap", []int64{pts33 - 3000, pts33 - 1000, 1000, 4000}, []int64{pts33 - 3000, pts33 - 1000, pts33 + 1000, pts33 + 4000}},
		{"two wraps", []int64{pts33 - 10, 5, pts33 / 2, pts33 - 10, 5}, []int64{pts33 - 10, pts33 + 5, pts33 + pts33/2, 2*pts33 - 10, 2*pts33 + 5}},
		{"small step back", []int64{5000, 4000}, []int64{5000, 4000}},
		{"back across the wrap", []int64{10, pts33 - 10}, []int64{10, -10}},
	} {
		var u unwrapper
		for i, r := range tc.raw {
			if got := u.unwrap(r); got != tc.want[i] {
				t.Errorf("%s: value %d: %d unwraps to %d, want %d", tc.name, i, r, got, tc.want[i])
			}
		}
	}
}

func TestSniff(t *testing.T) {
	ts := make([]byte, 188*3)
	ts[0], ts[188], ts[376] = 0x47, 0x47, 0x47
	m2ts := make([]byte, 192*3)
	m2ts[4], m2ts[196], m2ts[388] = 0x47, 0x47, 0x47
	for _, tc := range []struct {
		name string
		b    []byte
		size int64
		want containerKind
	}{
		{"ts", ts, 188 * 3, kindTS},
		{"one ts packet", ts[:188], 188, kindTS},
		{"a 0x47 alone", ts[:188], 188 * 3, kindUnknown},
		{"m2ts", m2ts, 192 * 3, kindM2TS},
		{"mp4", []byte("\x00\x00\x00\x18ftypisom"), 1000, kindBMFF},
		{"fragmented segment", []byte("\x00\x00\x00\x18stypmsdh"), 1000, kindBMFF},
		{"mkv", []byte{0x1a, 0x45, 0xdf, 0xa3, 1, 2}, 1000, "Matroska/WebM"},
		{"adts", []byte{0xff, 0xf1, 0x50, 0x80}, 1000, "raw AAC (ADTS)"},
		{"annex b", []byte{0, 0, 0, 1, 0x67}, 1000, "raw H.264/H.265 elementary stream"},
		{"zeros", make([]byte, 64), 64, kindUnknown},
	} {
		if got := sniff(tc.b, tc.size); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestParseADTS(t *testing.T) {
	// AAC LC, 48 kHz (index 3), stereo, frame of 100 bytes.
	good := []byte{0xff, 0xf1, 0x4c, 0x80, 0x0c, 0x9f, 0xfc}
	with := func(i int, v byte) []byte { b := bytes.Clone(good); b[i] = v; return b }
	for _, tc := range []struct {
		name string
		b    []byte
		want adtsHeader
		err  string
	}{
		{"lc 48k stereo", good, adtsHeader{objectType: 2, srIndex: 3, channelConfig: 2, headerLen: 7, frameLen: 100}, ""},
		{"with CRC", with(1, 0xf0), adtsHeader{objectType: 2, srIndex: 3, channelConfig: 2, headerLen: 9, frameLen: 100}, ""},
		{"MPEG-2 ID", with(1, 0xf9), adtsHeader{objectType: 2, srIndex: 3, channelConfig: 2, headerLen: 7, frameLen: 100}, ""},
		{"short", good[:6], adtsHeader{}, "too few"},
		{"no sync", with(0, 0xfe), adtsHeader{}, "no ADTS sync word"},
		{"layer 1", with(1, 0xf3), adtsHeader{}, "no ADTS sync word"},
		{"frequency index 13", with(2, 0x74), adtsHeader{}, "sampling frequency index 13"},
		{"frame shorter than header", []byte{0xff, 0xf1, 0x4c, 0x80, 0x00, 0xdf, 0xfc}, adtsHeader{}, "frame length 6"},
		{"two raw blocks", with(6, 0xfd), adtsHeader{}, "2 raw data blocks"},
	} {
		h, err := parseADTS(tc.b)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || h != tc.want {
			t.Errorf("%s: %+v %v, want %+v", tc.name, h, err, tc.want)
		}
	}
	if asc := (adtsHeader{objectType: 2, srIndex: 3, channelConfig: 2}).asc(); !bytes.Equal(asc, []byte{0x11, 0x90}) {
		t.Errorf("asc % x, want 11 90", asc)
	}
}

func TestAACTrack(t *testing.T) {
	for _, tc := range []struct {
		name     string
		asc      []byte
		rate     uint32
		channels uint8
		samples  int
		err      error
		msg      string
	}{
		{"lc 48k stereo", []byte{0x11, 0x90}, 48000, 2, 1024, nil, ""},
		{"lc 44.1k mono, 960", []byte{0x12, 0x0c}, 44100, 1, 960, nil, ""},
		{"lc 7.1", []byte{0x11, 0xb8}, 48000, 8, 1024, nil, ""},
		{"he-aac", []byte{0x2b, 0x92, 0x08, 0x00}, 44100, 2, 1024, nil, ""},
		{"he-aac v2", []byte{0xeb, 0x09, 0x88, 0x00}, 48000, 2, 1024, nil, ""},
		{"main", []byte{0x09, 0x90}, 0, 0, 0, ErrUnsupported, "audio codec AAC Main"},
		{"usac", []byte{0xf8, 0x40, 0x00}, 0, 0, 0, ErrUnsupported, "MPEG-4 audio object type 34"},
		{"pce", []byte{0x11, 0x80}, 0, 0, 0, ErrUnsupported, "program config element"},
		{"empty", nil, 0, 0, 0, ErrCorrupt, "empty"},
		{"truncated", []byte{0x11}, 0, 0, 0, ErrUnsupported, "AudioSpecificConfig 11"},
	} {
		info, err := aacTrack(tc.asc, 90000)
		if tc.err != nil {
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("%s: %v, want %v with %q", tc.name, err, tc.err, tc.msg)
			}
			continue
		}
		if err != nil || info.track.SampleRate != tc.rate || info.track.Channels != tc.channels || info.frameSamples != tc.samples ||
			info.track.Codec != media.AAC || !bytes.Equal(info.track.Config, tc.asc) {
			t.Errorf("%s: %+v %v", tc.name, info, err)
		}
	}
}

func TestAnnexB(t *testing.T) {
	sps, pps := []byte{0x67, 0x42, 0x00, 0x1e}, []byte{0x68, 0xce, 0x38, 0x80}
	aud, idr, slice := []byte{0x09, 0xf0}, []byte{0x65, 0x88, 0x84, 0x00, 0x33}, []byte{0x41, 0x9a, 0x02}
	sc3, sc4 := []byte{0, 0, 1}, []byte{0, 0, 0, 1}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name string
		in   []byte
		want []byte
		key  bool
		ps   bool // SPS and PPS collected
		err  string
	}{
		{"3-byte start codes, AUD dropped", cat(sc3, aud, sc3, sps, sc3, pps, sc3, idr), cat(sc4, sps, sc4, pps, sc4, idr), true, true, ""},
		{"leading and trailing zeros", cat([]byte{0, 0}, sc4, slice, []byte{0, 0}, sc4, slice, []byte{0}), cat(sc4, slice, sc4, slice), false, false, ""},
		{"empty NAL between start codes", cat(sc4, sc4, slice), cat(sc4, slice), false, false, ""},
		{"no start code", slice, nil, false, false, "no Annex-B start code"},
		{"junk before the start code", cat([]byte{7}, sc3, slice), nil, false, false, "1 bytes before the first start code"},
		{"only a delimiter", cat(sc4, aud), nil, false, false, "no NAL unit besides delimiters"},
		{"forbidden bit", cat(sc4, []byte{0xe5, 1}), nil, false, false, "NAL unit 0: bad NAL unit header (first byte 0xe5)"},
	} {
		ps := &paramSets{codec: media.H264}
		au, err := annexBToAU(media.H264, tc.in, ps)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || !bytes.Equal(au.data, tc.want) || au.key != tc.key || ps.complete() != tc.ps {
			t.Errorf("%s: % x key %v ps %v %v", tc.name, au.data, au.key, ps.complete(), err)
		}
	}
}

func TestLengthPrefixed(t *testing.T) {
	vps, sps, pps := []byte{0x40, 0x01, 0x0c}, []byte{0x42, 0x01, 0x01}, []byte{0x44, 0x01, 0xc1}
	aud, cra, trail := []byte{0x46, 0x01, 0x50}, []byte{0x2a, 0x01, 0xaf, 0x80}, []byte{0x02, 0x01, 0xd0}
	l := func(n []byte) []byte { return append([]byte{0, 0, 0, byte(len(n))}, n...) }
	sc4 := []byte{0, 0, 0, 1}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name string
		in   []byte
		want []byte
		key  bool
		err  string
	}{
		{"irap with parameter sets", cat(l(aud), l(vps), l(sps), l(pps), l(cra)), cat(sc4, vps, sc4, sps, sc4, pps, sc4, cra), true, ""},
		{"trailing picture", l(trail), cat(sc4, trail), false, ""},
		{"BLA is IRAP", l([]byte{0x20, 0x01, 0x80}), cat(sc4, []byte{0x20, 0x01, 0x80}), true, ""},
		{"trailing zeros dropped", l([]byte{0x02, 0x01, 0xd0, 0, 0}), cat(sc4, trail), false, ""},
		{"emulation prevented", l([]byte{0x02, 0x01, 0, 0, 3, 1}), cat(sc4, []byte{0x02, 0x01, 0, 0, 3, 1}), false, ""},
		{"start code inside", l([]byte{0x02, 0x01, 0xd0, 0, 0, 1, 0x26}), nil, false, "start code emulation at byte 3 of 7"},
		{"zeros inside", l([]byte{0x02, 0x01, 0, 0, 0, 7}), nil, false, "start code emulation at byte 2"},
		{"length past the end", append(l(trail), 0, 0, 0, 9, 1), nil, false, "NAL unit 1 at byte 7: length 9, 1 bytes left"},
		{"zero length", append(l(trail), 0, 0, 0, 0), nil, false, "length 0"},
		{"stray bytes", append(l(trail), 0, 0), nil, false, "2 bytes left at byte 7"},
		{"temporal id 0", l([]byte{0x02, 0x00, 0xd0}), nil, false, "bad NAL unit header"},
		{"only a delimiter", l(aud), nil, false, "no NAL unit besides delimiters"},
	} {
		au, err := lengthPrefixedToAU(media.H265, bytes.Clone(tc.in), nil)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || !bytes.Equal(au.data, tc.want) || au.key != tc.key {
			t.Errorf("%s: % x key %v %v", tc.name, au.data, au.key, err)
		}
	}
}

func TestParamSets(t *testing.T) {
	p := &paramSets{codec: media.H265}
	p.add(nalSPS, []byte{0x42, 0x01, 1})
	p.add(nalPPS, []byte{0x44, 0x01, 1})
	p.endAU()
	if p.complete() || p.done {
		t.Fatal("H.265 complete without a VPS")
	}
	p.add(nalVPS, []byte{0x40, 0x01, 1})
	p.add(nalSPS, []byte{0x42, 0x01, 1}) // a repeat
	p.add(nalPPS, []byte{0x44, 0x01, 2}) // a second PPS in the same access unit
	p.endAU()
	p.add(nalPPS, []byte{0x44, 0x01, 3}) // after: ignored
	want := []byte{0, 0, 0, 1, 0x40, 1, 1, 0, 0, 0, 1, 0x42, 1, 1, 0, 0, 0, 1, 0x44, 1, 1, 0, 0, 0, 1, 0x44, 1, 2}
	if !p.done || !bytes.Equal(p.config(), want) {
		t.Fatalf("config % x, want % x", p.config(), want)
	}
}

// bitsOf packs (value, width) pairs, most significant bit first.
func bitsOf(fields ...[2]int) []byte {
	var b []byte
	n := 0
	for _, f := range fields {
		for i := f[1] - 1; i >= 0; i-- {
			if n%8 == 0 {
				b = append(b, 0)
			}
			b[n/8] |= byte(f[0]>>i&1) << (7 - n%8)
			n++
		}
	}
	return b
}

func TestFirstChannelElement(t *testing.T) {
	sce, cpe, lfe, dse, fil := [2]int{0, 3}, [2]int{1, 3}, [2]int{3, 3}, [2]int{4, 3}, [2]int{6, 3}
	tag := [2]int{5, 4}
	for _, tc := range []struct {
		name string
		b    []byte
		want int
	}{
		{"SCE", bitsOf(sce, tag, [2]int{0xabc, 12}), 0},
		{"CPE", bitsOf(cpe, tag, [2]int{0xabc, 12}), 1},
		{"FIL of 2 bytes, then CPE", bitsOf(fil, [2]int{2, 4}, [2]int{0xffff, 16}, cpe, tag), 1},
		{"FIL with escape count", bitsOf(fil, [2]int{15, 4}, [2]int{3, 8}, [2]int{0, 17 * 8}, sce, tag), 0},
		{"FIL past the end", bitsOf(fil, [2]int{15, 4}, [2]int{3, 8}, [2]int{0, 8}), -1},
		{"DSE, then SCE", bitsOf(dse, tag, [2]int{0, 1}, [2]int{1, 8}, [2]int{0xaa, 8}, sce, tag), 0},
		{"empty FIL, DSE aligned, then LFE", bitsOf(fil, [2]int{0, 4}, dse, tag, [2]int{1, 1}, [2]int{1, 8}, [2]int{0, 1}, [2]int{0xaa, 8}, lfe, tag), 3},
		{"empty", nil, -1},
		{"only fill", bitsOf(fil, [2]int{0, 4}), -1},
	} {
		if got := firstChannelElement(tc.b); got != tc.want {
			t.Errorf("%s: %d, want %d (% x)", tc.name, got, tc.want, tc.b)
		}
	}
}

// ue is an Exp-Golomb code as bitsOf fields.
func ue(v int) [][2]int {
	v++
	n := 0
	for x := v; x > 1; x >>= 1 {
		n++
	}
	return [][2]int{{0, n}, {v, n + 1}}
}

// rbsp turns fields (and Exp-Golomb codes) into a NAL unit payload with
// its trailing bits and emulation prevention.
func rbsp(fields ...any) []byte {
	var all [][2]int
	for _, f := range fields {
		switch f := f.(type) {
		case [2]int:
			all = append(all, f)
		case [][2]int:
			all = append(all, f...)
		}
	}
	n := 0
	for _, f := range all {
		n += f[1]
	}
	all = append(all, [2]int{1, 1}, [2]int{0, (8 - (n+1)%8) % 8})
	var out []byte
	zeros := 0
	for _, c := range bitsOf(all...) {
		if zeros >= 2 && c <= 3 {
			out, zeros = append(out, 3), 0
		}
		out = append(out, c)
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

func TestVideoTrackSPS(t *testing.T) {
	u := func(v, n int) [2]int { return [2]int{v, n} }
	// An H.265 SPS with long-term reference pictures, which mediacommon
	// does not parse and mp4ff does.
	ltr := append([]byte{0x42, 0x01}, rbsp(
		u(0, 4), u(0, 3), u(1, 1), // VPS ID, max sub-layers - 1, temporal ID nesting
		u(0, 2), u(0, 1), u(1, 5), u(0x60000000, 32), u(0, 24), u(0, 24), u(93, 8), // profile, tier, level
		ue(0), ue(1), ue(160), ue(120), u(0, 1), // SPS ID, 4:2:0, 160x120, no conformance window
		ue(0), ue(0), ue(4), u(1, 1), ue(4), ue(0), ue(0), // bit depths, POC LSB bits - 4, ordering info
		ue(0), ue(2), ue(0), ue(3), ue(0), ue(0), // block sizes, hierarchy depths
		u(0, 1), u(0, 1), u(0, 1), u(0, 1), ue(0), // scaling lists, AMP, SAO, PCM, short-term RPS
		u(1, 1), ue(1), u(0, 8), u(1, 1), // long-term reference pictures: 1, POC LSB 0, used
		u(0, 1), u(0, 1), u(0, 1), u(0, 1), // TMVP, strong intra smoothing, VUI, extensions
	)...)
	for _, tc := range []struct {
		name string
		c    media.Codec
		sps  []byte
		w, h uint16
		err  string
	}{
		{"H.265 long-term reference pictures", media.H265, ltr, 160, 120, ""},
		{"H.264 baseline", media.H264, []byte{0x67, 0x42, 0xc0, 0x0a, 0xd9, 0x07, 0x3c, 0x04, 0x40, 0, 0, 3, 0, 0x40, 0, 0, 0x0c, 0xa3, 0xc4, 0x89, 0xe0}, 112, 112, ""},
		{"H.265 truncated", media.H265, ltr[:12], 0, 0, "H.265 SPS: "},
		{"H.264 of another NAL type", media.H264, []byte{0x68, 0xce, 0x38, 0x80}, 0, 0, "H.264 SPS: "},
	} {
		ps := &paramSets{codec: tc.c, vps: [][]byte{{0x40, 1}}, sps: [][]byte{tc.sps}, pps: [][]byte{{0x44, 1}}}
		tr, err := videoTrack(tc.c, 90000, ps)
		if tc.err != "" {
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want ErrCorrupt with %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || tr.Width != tc.w || tr.Height != tc.h {
			t.Errorf("%s: %dx%d %v, want %dx%d", tc.name, tr.Width, tr.Height, err, tc.w, tc.h)
		}
	}
	var s h265.SPS
	if err := s.Unmarshal(ltr); err == nil || !strings.Contains(err.Error(), "long term") {
		t.Errorf("mediacommon parses the SPS with long-term reference pictures now (%v): drop the fallback?", err)
	}
}

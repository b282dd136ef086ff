package sink_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/mediatest"
)

// source is a clip taken apart the way the player would get it: tracks
// (0 video, 1 audio) and frames in decoding order, plus what ffmpeg
// decodes from the clip itself.
type source struct {
	name, path   string
	tracks       []media.Track
	frames       []media.Frame
	video, audio []string  // frame MD5s of the clip, decoded by ffmpeg
	videoPTS     []int64   // every video frame's PTS, sorted: display order
	pcm          []float32 // the clip's audio decoded, once a test needs it
}

// loadSource makes the clip and splits it into frames with ffmpeg's help:
// ffmpeg extracts the elementary streams (Annex-B video, ADTS audio),
// this file cuts them into access units, and ffprobe gives each its
// timestamps. With strip, parameter sets are taken out of the access
// units and kept only in the track's Config, as an MP4 demuxer would
// leave them; without, they stay wherever ffmpeg put them.
func loadSource(t *testing.T, c mediatest.Clip, strip bool) *source {
	t.Helper()
	dir := t.TempDir()
	path := mediatest.Make(t, dir, c)

	streams := probeStreams(t, path)
	var vs, as probeStream
	for _, s := range streams {
		switch {
		case s.CodecType == "video" && vs.CodecName == "":
			vs = s
		case s.CodecType == "audio" && as.CodecName == "":
			as = s
		}
	}
	if vs.CodecName == "" || as.CodecName != "aac" {
		t.Fatalf("%s: want a video and an AAC stream, have %+v", c.Name, streams)
	}

	src := &source{name: c.Name, path: path}
	video, vtrack := loadVideo(t, dir, path, vs, strip)
	audio, atrack := loadAudio(t, dir, path, as)
	src.tracks = []media.Track{vtrack, atrack}
	for i := range audio {
		audio[i].Track = 1
	}
	for _, f := range video {
		src.videoPTS = append(src.videoPTS, f.PTS)
	}
	slices.Sort(src.videoPTS)

	// Interleave by DTS, as instants: the player gets one sequence.
	for len(video) > 0 || len(audio) > 0 {
		if len(audio) == 0 || len(video) > 0 &&
			video[0].DTS*int64(atrack.Timescale) <= audio[0].DTS*int64(vtrack.Timescale) {
			src.frames, video = append(src.frames, video[0]), video[1:]
		} else {
			src.frames, audio = append(src.frames, audio[0]), audio[1:]
		}
	}

	src.video = mediatest.FrameMD5(t, path, "v")
	src.audio = mediatest.FrameMD5(t, path, "a")
	return src
}

func loadVideo(t *testing.T, dir, path string, s probeStream, strip bool) ([]media.Frame, media.Track) {
	t.Helper()
	codec, format := media.H264, "h264"
	if s.CodecName == "hevc" {
		codec, format = media.H265, "hevc"
	}
	es := filepath.Join(dir, "video."+format)
	run(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-i", path, "-map", "0:v:0", "-c", "copy",
		"-bsf:v", format+"_mp4toannexb", "-f", format, es)
	b, err := os.ReadFile(es)
	if err != nil {
		t.Fatal(err)
	}
	aus := splitAccessUnits(t, codec, b)
	pkts := probePackets(t, path, "v:0")
	if len(aus) != len(pkts) {
		t.Fatalf("%d access units in the elementary stream, ffprobe says %d packets", len(aus), len(pkts))
	}

	track := media.Track{Codec: codec, Timescale: s.timescale(t), Width: uint16(s.Width), Height: uint16(s.Height)}
	frames := make([]media.Frame, len(aus))
	for i, au := range aus {
		var kept [][]byte
		for _, n := range au {
			if isParamSet(codec, n) {
				if i == 0 {
					track.Config = append(append(track.Config, 0, 0, 0, 1), n...)
				}
				if strip {
					continue
				}
			}
			kept = append(kept, n)
		}
		frames[i] = pkts[i].frame(0, annexB(kept))
	}
	if len(track.Config) == 0 {
		t.Fatal("no parameter sets in the first access unit")
	}
	return frames, track
}

func loadAudio(t *testing.T, dir, path string, s probeStream) ([]media.Frame, media.Track) {
	t.Helper()
	es := filepath.Join(dir, "audio.aac")
	run(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-i", path, "-map", "0:a:0", "-c", "copy", "-f", "adts", es)
	b, err := os.ReadFile(es)
	if err != nil {
		t.Fatal(err)
	}
	var adts mpeg4audio.ADTSPackets
	if err := adts.Unmarshal(b); err != nil {
		t.Fatalf("ADTS: %v", err)
	}
	pkts := probePackets(t, path, "a:0")
	if len(adts) != len(pkts) {
		t.Fatalf("%d ADTS frames, ffprobe says %d packets", len(adts), len(pkts))
	}
	asc := mpeg4audio.AudioSpecificConfig{Type: adts[0].Type, SampleRate: adts[0].SampleRate, ChannelConfig: adts[0].ChannelConfig}
	config, err := asc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	track := media.Track{Codec: media.AAC, Timescale: s.timescale(t), Config: config,
		SampleRate: uint32(asc.SampleRate), Channels: asc.ChannelConfig}
	frames := make([]media.Frame, len(adts))
	for i, p := range adts {
		frames[i] = pkts[i].frame(1, bytes.Clone(p.AU))
	}
	return frames, track
}

// splitAccessUnits cuts an Annex-B elementary stream into access units,
// each a list of NAL units: a new one begins at an AUD, at a parameter
// set or prefix SEI after a picture's slices, or at a slice that starts
// a picture.
func splitAccessUnits(t *testing.T, codec media.Codec, es []byte) [][][]byte {
	t.Helper()
	var aus [][][]byte
	var cur [][]byte
	var vcl bool
	for _, n := range nalUnits(es) {
		var starts, isVCL bool
		if codec == media.H264 {
			switch typ := h264.NALUType(n[0] & 0x1F); {
			case typ == h264.NALUTypeAccessUnitDelimiter:
				starts = true
			case typ == h264.NALUTypeSPS || typ == h264.NALUTypePPS || typ == h264.NALUTypeSEI ||
				typ >= h264.NALUTypePrefix && typ <= h264.NALUTypeReserved18:
				starts = vcl
			case typ >= h264.NALUTypeNonIDR && typ <= h264.NALUTypeIDR:
				isVCL = true
				starts = vcl && n[1]&0x80 != 0 // first_mb_in_slice == 0
			}
		} else {
			switch typ := h265.NALUType(n[0] >> 1 & 0x3F); {
			case typ == h265.NALUType_AUD_NUT:
				starts = true
			case typ == h265.NALUType_VPS_NUT || typ == h265.NALUType_SPS_NUT || typ == h265.NALUType_PPS_NUT ||
				typ == h265.NALUType_PREFIX_SEI_NUT || typ >= 41 && typ <= 44 || typ >= 48 && typ <= 55:
				starts = vcl
			case typ < 32:
				isVCL = true
				starts = vcl && n[2]&0x80 != 0 // first_slice_segment_in_pic_flag
			}
		}
		if starts && len(cur) > 0 {
			aus, cur, vcl = append(aus, cur), nil, false
		}
		cur = append(cur, n)
		vcl = vcl || isVCL
	}
	if len(cur) > 0 {
		aus = append(aus, cur)
	}
	return aus
}

// nalUnits splits an Annex-B stream at its start codes.
func nalUnits(b []byte) [][]byte {
	var out [][]byte
	for _, part := range bytes.Split(b, []byte{0, 0, 1}) {
		if n := bytes.TrimRight(part, "\x00"); len(n) > 0 {
			out = append(out, n)
		}
	}
	return out
}

func annexB(nalus [][]byte) []byte {
	var b []byte
	for _, n := range nalus {
		b = append(append(b, 0, 0, 0, 1), n...)
	}
	return b
}

func isParamSet(codec media.Codec, n []byte) bool {
	if codec == media.H264 {
		typ := h264.NALUType(n[0] & 0x1F)
		return typ == h264.NALUTypeSPS || typ == h264.NALUTypePPS
	}
	typ := h265.NALUType(n[0] >> 1 & 0x3F)
	return typ == h265.NALUType_VPS_NUT || typ == h265.NALUType_SPS_NUT || typ == h265.NALUType_PPS_NUT
}

type probeStream struct {
	CodecName string `json:"codec_name"`
	CodecType string `json:"codec_type"`
	TimeBase  string `json:"time_base"`
	Width     int    `json:"width"`
	Height    int    `json:"height"`
}

func (s probeStream) timescale(t *testing.T) uint32 {
	num, den, ok := strings.Cut(s.TimeBase, "/")
	n, err := strconv.ParseUint(den, 10, 32)
	if !ok || num != "1" || err != nil {
		t.Fatalf("time base %q: want 1/N", s.TimeBase)
	}
	return uint32(n)
}

type probePacket struct {
	PTS      *int64 `json:"pts"`
	DTS      *int64 `json:"dts"`
	Duration int64  `json:"duration"`
	Flags    string `json:"flags"`
}

func (p probePacket) frame(track uint8, data []byte) media.Frame {
	f := media.Frame{Track: track, Duration: uint32(p.Duration), Keyframe: strings.HasPrefix(p.Flags, "K"), Data: data}
	switch {
	case p.PTS != nil && p.DTS != nil:
		f.PTS, f.DTS = *p.PTS, *p.DTS
	case p.PTS != nil:
		f.PTS, f.DTS = *p.PTS, *p.PTS
	case p.DTS != nil:
		f.PTS, f.DTS = *p.DTS, *p.DTS
	}
	return f
}

func probeStreams(t *testing.T, path string) []probeStream {
	t.Helper()
	var out struct{ Streams []probeStream }
	probe(t, &out, "-show_entries", "stream=codec_name,codec_type,time_base,width,height", path)
	return out.Streams
}

func probePackets(t *testing.T, path, stream string) []probePacket {
	t.Helper()
	var out struct{ Packets []probePacket }
	probe(t, &out, "-select_streams", stream, "-show_entries", "packet=pts,dts,duration,flags", path)
	return out.Packets
}

func probe(t *testing.T, v any, args ...string) {
	t.Helper()
	b := run(t, "ffprobe", append([]string{"-v", "error", "-of", "json"}, args...)...)
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("ffprobe %v: %v", args, err)
	}
}

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, stderr.Bytes())
	}
	return out
}

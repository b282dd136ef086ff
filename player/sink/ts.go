package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/asticode/go-astits"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/boxswarm/boxswarm/media"
)

// The output clock, in 90 kHz ticks.
const (
	// firstDTS is where the first frame's DTS lands. Frames of other
	// tracks that come a little after it in decoding order may carry
	// earlier timestamps, and the PCR runs pcrDelay behind the video:
	// both must stay clear of zero, where the 33-bit clock would wrap.
	firstDTS = 10 * 90000
	// pcrDelay is how far the PCR runs behind the video DTS, ffmpeg's
	// default (max_delay, 0.7 s): it is the time a decoder gets between
	// a frame's arrival and its decoding, and it covers audio that is
	// interleaved a little late.
	pcrDelay = 63000
	// segmentGap separates what came before a Discontinuity from what
	// comes after, so that frames after it whose timestamps lie a little
	// before the first one's (audio around a keyframe) still do not
	// overlap the previous segment. It is short because a decoder that
	// presents by timestamp shows the last picture that much longer.
	segmentGap = 9000
	// tsClockMask keeps the 33 bits PTS, DTS and PCR bases have.
	tsClockMask = 1<<33 - 1
)

// PES stream IDs: the first video and the first audio stream. Streams are
// told apart by PID, so every track of a kind shares its ID.
const (
	streamIDVideo = 0xE0
	streamIDAudio = 0xC0
)

// TS is a Sink that writes an MPEG-TS byte stream: one program, one PID
// per track from 256 on in track order, the PCR on every PES of the
// first video track (of track 0 if there is no video) at its DTS less
// 700 ms, PAT and PMT before each of that track's keyframes and every 40
// PES packets.
//
// Timestamps are converted from each track's timescale to 90 kHz by
// rounding v*90000/timescale to the nearest tick, exactly, so equal
// instants map to equal ticks in every track and the order of
// timestamps survives. The stream's clock is continuous: the first
// frame's DTS is placed at 10 s, and after a Discontinuity the next
// frame's DTS is placed 100 ms after the end of everything written
// before it. A decoder thus never sees time jump or go back (with the
// frames' own timestamps, ffmpeg dropped a picture at a backward jump;
// a player that presents by timestamp would wait out a forward one),
// and A/V sync holds because all tracks of a segment share one offset.
// Frames after a Discontinuity whose timestamps lie more than
// 100 ms before the first one's overlap the previous segment, so the
// player should begin each segment with the video keyframe.
//
// H.264 and H.265 access units get an access unit delimiter when they
// lack one (H.222.0 requires it), and keyframes that do not carry their
// parameter sets get the track's Config after it, so a decoder can start
// at any keyframe. AAC access units are written with ADTS headers made
// from the track's AudioSpecificConfig.
//
// Every WriteFrame issues a single Write of whole TS packets. TS does not
// close the writer. It is not safe for concurrent use.
//
// TS drives go-astits directly rather than through mediacommon's
// mpegts.Writer, which (in v2.9.5) puts the PCR on whichever track is
// written first, so an audio frame first would take it off the video;
// takes random access from NAL unit types instead of the frame's
// keyframe flag; builds the adaptation field itself; and parses each
// access unit with h264.AnnexB, which refuses more than 50 NAL units.
// mediacommon still makes the ADTS headers and reads the
// AudioSpecificConfig.
type TS struct {
	w      io.Writer
	out    scrubBuffer // the TS packets of one call, written with one Write
	mux    *astits.Muxer
	tracks []tsTrack
	pcr    int // index of the track that carries the PCR

	started, closed bool
	err             error // sticky: once a Write failed, the stream is broken

	// Each segment (the frames between two discontinuities) gets one
	// offset from the tracks' converted timestamps to the output clock.
	rebase  bool  // the next frame starts a segment
	offset  int64 // of the current segment
	end     int64 // the latest end (PTS+duration) or DTS written, output clock
	lastPCR int64 // the PCR never goes back, even if a segment's video starts early
}

type tsTrack struct {
	media.Track
	pid      uint16
	streamID uint8
	params   [][]byte // the NAL units of Config
	adts     mpeg4audio.ADTSPacket

	needKey bool  // video: the next frame must be a keyframe
	seen    bool  // a frame of this track was written in this segment
	lastDTS int64 // of that frame, in the track's timescale
	scratch scrubBuffer
	nalus   [][]byte // reused between frames, emptied after each
}

// NewTS returns a TS writing to w.
func NewTS(w io.Writer) *TS {
	return &TS{w: w}
}

// Start sets up the program for the tracks and writes PAT and PMT.
func (t *TS) Start(ctx context.Context, tracks []media.Track) error {
	if t.started {
		return errors.New("ts: started twice")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ts: start: %w", err)
	}
	if err := checkTracks(tracks); err != nil {
		return fmt.Errorf("ts: %w", err)
	}
	t.tracks = make([]tsTrack, len(tracks))
	t.pcr = -1
	for i, tr := range tracks {
		tt := &t.tracks[i]
		tt.Track = tr
		tt.Config = bytes.Clone(tr.Config)
		tt.pid = 256 + uint16(i)
		if err := tt.setup(); err != nil {
			return fmt.Errorf("ts: track %d (%v): %w", i, tr.Codec, err)
		}
		if t.pcr < 0 && tr.Codec.IsVideo() {
			t.pcr = i
		}
	}
	if t.pcr < 0 {
		t.pcr = 0
	}

	// The muxer keeps its context but never consults it; cancellation is
	// checked here, per call.
	t.mux = astits.NewMuxer(context.Background(), &t.out)
	for _, tt := range t.tracks {
		st := astits.StreamTypeAACAudio
		switch tt.Codec {
		case media.H264:
			st = astits.StreamTypeH264Video
		case media.H265:
			st = astits.StreamTypeH265Video
		}
		if err := t.mux.AddElementaryStream(astits.PMTElementaryStream{ElementaryPID: tt.pid, StreamType: st}); err != nil {
			return fmt.Errorf("ts: add track PID %d: %w", tt.pid, err)
		}
	}
	t.mux.SetPCRPID(t.tracks[t.pcr].pid)
	t.started, t.rebase, t.end = true, true, firstDTS-segmentGap
	if _, err := t.mux.WriteTables(); err != nil {
		return fmt.Errorf("ts: write PAT/PMT: %w", err)
	}
	return t.flush()
}

func (tt *tsTrack) setup() error {
	switch tt.Codec {
	case media.H264, media.H265:
		tt.streamID = streamIDVideo
		tt.needKey = true
		if len(tt.Config) == 0 {
			// In-band parameter sets only (a TS source, say): nothing to
			// add, and joining works only at keyframes that carry them.
			return nil
		}
		err := eachNALU(tt.Config, func(n []byte) error {
			if len(n) < naluHeaderSize(tt.Codec) {
				return errors.New("NAL unit too short")
			}
			tt.params = append(tt.params, n)
			return nil
		})
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		if has := paramSets(tt.Codec, tt.params); !has.complete(tt.Codec) {
			return fmt.Errorf("config lacks parameter sets (have VPS %t, SPS %t, PPS %t)", has.vps, has.sps, has.pps)
		}
	case media.AAC:
		tt.streamID = streamIDAudio
		var asc mpeg4audio.AudioSpecificConfig
		if err := asc.Unmarshal(tt.Config); err != nil {
			return fmt.Errorf("AudioSpecificConfig: %w", err)
		}
		// ADTS headers can say neither of these.
		if asc.ChannelConfig == 0 {
			return errors.New("AudioSpecificConfig: channel layout in a PCE cannot be carried in ADTS")
		}
		if asc.FrameLengthFlag {
			return errors.New("AudioSpecificConfig: 960-sample frames cannot be carried in ADTS")
		}
		// For HE-AAC the ADTS header names the core, AAC-LC at half the
		// rate; decoders find SBR and PS in the access units.
		tt.adts = mpeg4audio.ADTSPacket{Type: asc.Type, SampleRate: asc.SampleRate, ChannelConfig: asc.ChannelConfig}
		probe := tt.adts
		if _, err := (mpeg4audio.ADTSPackets{&probe}).Marshal(); err != nil {
			return fmt.Errorf("ADTS header: %w", err)
		}
	}
	return nil
}

// WriteFrame muxes one frame and writes it out before returning.
func (t *TS) WriteFrame(ctx context.Context, f media.Frame) error {
	if err := t.usable(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ts: write frame: %w", err)
	}
	if int(f.Track) >= len(t.tracks) {
		return fmt.Errorf("ts: frame of track %d: title has %d tracks", f.Track, len(t.tracks))
	}
	tt := &t.tracks[f.Track]
	switch {
	case len(f.Data) == 0:
		return fmt.Errorf("ts: track %d, frame at DTS %d: empty", f.Track, f.DTS)
	case f.PTS < f.DTS:
		return fmt.Errorf("ts: track %d, frame at DTS %d: PTS %d before DTS", f.Track, f.DTS, f.PTS)
	case tt.needKey && !f.Keyframe:
		return fmt.Errorf("ts: track %d, frame at DTS %d: not a keyframe, at the start or after a discontinuity", f.Track, f.DTS)
	case tt.seen && f.DTS < tt.lastDTS:
		return fmt.Errorf("ts: track %d, frame at DTS %d: DTS goes back (after %d) without a discontinuity", f.Track, f.DTS, tt.lastDTS)
	}

	offset := t.offset
	if t.rebase {
		offset = t.end + segmentGap - to90k(f.DTS, tt.Timescale)
	}
	dts := to90k(f.DTS, tt.Timescale) + offset
	pts := to90k(f.PTS, tt.Timescale) + offset
	end := to90k(f.PTS+int64(f.Duration), tt.Timescale) + offset

	var payload []byte
	var err error
	if tt.Codec.IsVideo() {
		payload, err = tt.videoPayload(f)
	} else {
		payload, err = tt.audioPayload(f)
	}
	// Both payloads hold a copy of the plaintext.
	defer clear(payload)
	if err != nil {
		return fmt.Errorf("ts: track %d, frame at DTS %d: %w", f.Track, f.DTS, err)
	}

	oh := &astits.PESOptionalHeader{MarkerBits: 2, PTSDTSIndicator: astits.PTSDTSIndicatorOnlyPTS, PTS: clock(pts)}
	if dts != pts {
		oh.PTSDTSIndicator, oh.DTS = astits.PTSDTSIndicatorBothPresent, clock(dts)
	}
	var af *astits.PacketAdaptationField
	if f.Keyframe {
		// On the PCR PID this also makes the muxer repeat PAT and PMT.
		af = &astits.PacketAdaptationField{RandomAccessIndicator: true}
	}
	pcr := max(dts-pcrDelay, t.lastPCR)
	if int(f.Track) == t.pcr {
		if af == nil {
			af = &astits.PacketAdaptationField{}
		}
		af.HasPCR, af.PCR = true, clock(pcr)
	}
	_, err = t.mux.WriteData(&astits.MuxerData{
		PID:             tt.pid,
		AdaptationField: af,
		PES: &astits.PESData{
			Header: &astits.PESHeader{StreamID: tt.streamID, OptionalHeader: oh},
			Data:   payload,
		},
	})
	if err != nil {
		// The muxer's continuity counters have moved on: what follows
		// would not fit what came before.
		t.out.reset()
		t.err = fmt.Errorf("ts: mux track %d, frame at DTS %d: %w", f.Track, f.DTS, err)
		return t.err
	}
	if err := t.flush(); err != nil {
		return err
	}

	if t.rebase {
		t.offset, t.rebase = offset, false
	}
	if int(f.Track) == t.pcr {
		t.lastPCR = pcr
	}
	t.end = max(t.end, end, dts+1)
	tt.needKey, tt.seen, tt.lastDTS = false, true, f.DTS
	return nil
}

// Discontinuity starts a new segment of the output clock: the next
// frame's timestamps are placed after everything written so far. Each
// video track must go on with a keyframe.
func (t *TS) Discontinuity(ctx context.Context) error {
	if err := t.usable(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ts: discontinuity: %w", err)
	}
	t.rebase = true
	for i := range t.tracks {
		tt := &t.tracks[i]
		tt.needKey = tt.Codec.IsVideo()
		tt.seen = false
	}
	return nil
}

// Close ends the stream. Every frame has already been written, so there
// is nothing to flush; it returns the error that broke the stream, if
// any. It does not close the writer.
func (t *TS) Close() error {
	if t.closed {
		return errors.New("ts: closed twice")
	}
	t.closed = true
	t.tracks = nil
	return t.err
}

func (t *TS) usable() error {
	switch {
	case !t.started:
		return errors.New("ts: not started")
	case t.closed:
		return errors.New("ts: closed")
	}
	return t.err
}

// flush writes what the muxer produced in one Write, then zeroes it.
func (t *TS) flush() error {
	defer t.out.reset()
	if len(t.out.b) == 0 {
		return nil
	}
	if _, err := t.w.Write(t.out.b); err != nil {
		// A partial write leaves a torn packet: nothing can follow it.
		t.err = fmt.Errorf("ts: write: %w", err)
		return t.err
	}
	return nil
}

// videoPayload returns the access unit as it goes into the PES: an AUD
// first, then the parameter sets if it is a keyframe without them, then
// its NAL units, all with 4-byte start codes. It lives in the track's
// scratch buffer.
func (tt *tsTrack) videoPayload(f media.Frame) ([]byte, error) {
	nalus := tt.nalus[:0]
	defer func() {
		// These point into f.Data, which is not ours to keep.
		clear(nalus)
		tt.nalus = nalus[:0]
	}()
	var has paramSet
	hdr := naluHeaderSize(tt.Codec)
	err := eachNALU(f.Data, func(n []byte) error {
		if len(n) < hdr {
			return errors.New("NAL unit too short")
		}
		nalus = append(nalus, n)
		has.add(tt.Codec, n)
		return nil
	})
	if err != nil {
		return nil, err
	}

	aud := []byte{byte(h264.NALUTypeAccessUnitDelimiter), 0xF0} // primary_pic_type 7: any slice type
	audType := int(h264.NALUTypeAccessUnitDelimiter)
	if tt.Codec == media.H265 {
		aud = []byte{byte(h265.NALUType_AUD_NUT) << 1, 1, 0x50} // pic_type 2: any slice type
		audType = int(h265.NALUType_AUD_NUT)
	}
	rest := nalus
	if naluType(tt.Codec, nalus[0]) == audType {
		aud, rest = nalus[0], nalus[1:]
	}
	out := &tt.scratch
	out.reset()
	out.appendNALU(aud)
	if f.Keyframe && !has.complete(tt.Codec) {
		for _, p := range tt.params {
			out.appendNALU(p)
		}
	}
	for _, n := range rest {
		out.appendNALU(n)
	}
	return out.b, nil
}

// maxADTSPayload is what the 13-bit ADTS frame length leaves after the
// 7-byte header.
const maxADTSPayload = 1<<13 - 1 - 7

// audioPayload returns the access unit with an ADTS header, in a fresh
// buffer the caller zeroes.
func (tt *tsTrack) audioPayload(f media.Frame) ([]byte, error) {
	if len(f.Data) > maxADTSPayload {
		return nil, fmt.Errorf("AAC access unit of %d bytes, ADTS carries at most %d", len(f.Data), maxADTSPayload)
	}
	p := tt.adts
	p.AU = f.Data
	b, err := mpeg4audio.ADTSPackets{&p}.Marshal()
	if err != nil {
		return nil, fmt.Errorf("ADTS: %w", err)
	}
	return b, nil
}

func clock(v int64) *astits.ClockReference {
	return &astits.ClockReference{Base: v & tsClockMask}
}

// to90k converts v ticks of a clock running at timescale Hz to 90 kHz,
// rounding to the nearest tick (halves up). Splitting v into whole
// seconds and a remainder keeps it exact, with no intermediate overflow,
// whenever the result fits an int64; it is non-decreasing in v, so
// ordering survives.
func to90k(v int64, timescale uint32) int64 {
	ts := int64(timescale)
	q, r := v/ts, v%ts
	if r < 0 {
		q, r = q-1, r+ts
	}
	return q*90000 + (2*r*90000+ts)/(2*ts)
}

// eachNALU calls fn with every NAL unit of an Annex-B byte stream, in
// order, without its start code. It is written here rather than taken
// from mediacommon's h264.AnnexB because that one refuses access units
// of more than 50 NAL units, and encoders that cut a picture into one
// slice per macroblock row make more.
func eachNALU(b []byte, fn func(nalu []byte) error) error {
	i := bytes.Index(b, []byte{0, 0, 1})
	if i < 0 || bytes.ContainsFunc(b[:i], func(r rune) bool { return r != 0 }) {
		return errors.New("not Annex-B: no start code at the beginning")
	}
	n := 0
	for pos := i + 3; pos < len(b); {
		j := bytes.Index(b[pos:], []byte{0, 0, 1})
		next := len(b)
		if j >= 0 {
			next = pos + j
		}
		// Zero bytes before a start code are the 4-byte form's first byte
		// or trailing_zero_8bits: a NAL unit never ends in one.
		nalu := bytes.TrimRight(b[pos:next], "\x00")
		if len(nalu) > 0 {
			n++
			if err := fn(nalu); err != nil {
				return err
			}
		}
		if j < 0 {
			break
		}
		pos = next + 3
	}
	if n == 0 {
		return errors.New("no NAL units")
	}
	return nil
}

func naluHeaderSize(c media.Codec) int {
	if c == media.H265 {
		return 2
	}
	return 1
}

func naluType(c media.Codec, n []byte) int {
	if c == media.H265 {
		return int(n[0]>>1) & 0x3F
	}
	return int(n[0]) & 0x1F
}

// paramSet says which parameter sets an access unit carries.
type paramSet struct{ vps, sps, pps bool }

func paramSets(c media.Codec, nalus [][]byte) paramSet {
	var s paramSet
	for _, n := range nalus {
		s.add(c, n)
	}
	return s
}

func (s *paramSet) add(c media.Codec, n []byte) {
	switch typ := naluType(c, n); {
	case c == media.H264 && typ == int(h264.NALUTypeSPS),
		c == media.H265 && typ == int(h265.NALUType_SPS_NUT):
		s.sps = true
	case c == media.H264 && typ == int(h264.NALUTypePPS),
		c == media.H265 && typ == int(h265.NALUType_PPS_NUT):
		s.pps = true
	case c == media.H265 && typ == int(h265.NALUType_VPS_NUT):
		s.vps = true
	}
}

func (s paramSet) complete(c media.Codec) bool {
	return s.sps && s.pps && (s.vps || c != media.H265)
}

// scrubBuffer is a growing byte buffer that zeroes what it drops: its
// contents are plaintext.
type scrubBuffer struct{ b []byte }

func (s *scrubBuffer) Write(p []byte) (int, error) {
	s.grow(len(p))
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *scrubBuffer) appendNALU(n []byte) {
	s.grow(4 + len(n))
	s.b = append(append(s.b, 0, 0, 0, 1), n...)
}

// grow makes room for n more bytes. append would do it too, but would
// leave the old array, plaintext and all, to the garbage collector.
func (s *scrubBuffer) grow(n int) {
	if cap(s.b)-len(s.b) >= n {
		return
	}
	nb := make([]byte, len(s.b), 2*cap(s.b)+n)
	copy(nb, s.b)
	clear(s.b[:cap(s.b)])
	s.b = nb
}

func (s *scrubBuffer) reset() {
	clear(s.b)
	s.b = s.b[:0]
}

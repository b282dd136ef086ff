package demux

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"

	"github.com/boxswarm/boxswarm/media"
)

// MPEG-TS (ISO/IEC 13818-1). The demuxer reads the first PAT and the PMT of
// its first program, then reads the file again from the start, reassembling
// the PES packets of the program's supported streams. Each video PES must
// carry whole access units, one per PES, with a PTS (as every muxer of
// files does); ADTS frames may straddle PES packets. It checks sync bytes,
// continuity counters, PES lengths, PSI CRCs; it does not read PCRs.

const (
	tsPacket     = 188
	maxPSIScan   = 16 << 20 // bytes searched for the PAT and PMT
	maxSection   = 1024
	pts33        = int64(1) << 33
	tsTimescale  = 90000
	pidPAT       = 0
	pidNull      = 0x1fff
	streamH264   = 0x1b
	streamH265   = 0x24
	streamAACADT = 0x0f
)

type tsDemuxer struct {
	r      io.ReadSeeker
	br     *bufio.Reader
	size   int64
	stride int   // 188, or 192 for M2TS
	off    int64 // of the next packet
	pkt    []byte
	log    *slog.Logger

	streams []*tsStream // in PMT order
	byPID   map[uint16]*tsStream
	tracks  []media.Track // what Tracks returns
	il      interleaver
	eof     bool
	unwrap  unwrapper
	err     error
	opened  bool      // Open has returned
	skip    []skipped // streams left out
}

type tsStream struct {
	pid   uint16
	codec media.Codec
	q     int // interleaver queue
	index int // Frame.Track; -1 until Open decides
	drop  bool

	cc      int // last continuity counter, -1 before the first packet
	pes     []byte
	pesOff  int64
	pesLen  int // expected bytes, header included; 0: until the next PES; -1: not known yet
	started bool

	// video
	ps *paramSets
	// audio
	adts adtsStream
	aac  *aacInfo
}

func openTS(r io.ReadSeeker, size int64, stride int, log *slog.Logger) (Source, error) {
	if size%int64(stride) != 0 {
		return nil, fmt.Errorf("%w: MPEG-TS of %d bytes is not a whole number of %d-byte packets (%d bytes over)",
			ErrCorrupt, size, stride, size%int64(stride))
	}
	d := &tsDemuxer{r: r, size: size, stride: stride, pkt: make([]byte, stride), log: log, byPID: map[uint16]*tsStream{}}
	if err := d.rewind(); err != nil {
		return nil, err
	}
	skip, err := d.readPSI()
	if err != nil {
		return nil, err
	}
	d.skip = skip
	if len(d.streams) == 0 {
		if err := checkSkipped(log, "MPEG-TS", nil, d.skip); err != nil {
			return nil, err
		}
	}
	// Read again from the start with the streams known, until every track
	// knows its configuration.
	if err := d.rewind(); err != nil {
		return nil, err
	}
	queues := make([]ilTrack, len(d.streams))
	for i, s := range d.streams {
		s.q = i
		queues[i] = ilTrack{codec: s.codec, timescale: tsTimescale}
	}
	d.il = interleaver{q: queues}
	for !d.configured() && !d.eof && d.il.bytes <= MaxBuffered {
		if err := d.step(); err != nil {
			return nil, err
		}
	}
	for _, s := range d.streams {
		if s.drop || d.streamConfigured(s) {
			continue
		}
		if len(d.il.q[s.q].frames) > 0 {
			what := "SPS and PPS"
			if s.codec == media.H265 {
				what = "VPS, SPS and PPS"
			}
			return nil, fmt.Errorf("%w: PID %d (%s): no %s in the first %d bytes", ErrCorrupt, s.pid, s.codec, what, d.off)
		}
		// A declared stream without a single frame: leave it out.
		s.drop = true
		d.il.q[s.q].ended = true
		log.Warn("demux: skipping a stream without frames", "container", "MPEG-TS", "pid", s.pid, "codec", s.codec.String(), "read", d.off)
	}
	for _, s := range d.streams {
		if s.drop {
			continue
		}
		var t media.Track
		if s.codec.IsVideo() {
			if t, err = videoTrack(s.codec, tsTimescale, s.ps); err != nil {
				return nil, at(fmt.Sprintf("PID %d", s.pid), err)
			}
		} else {
			t = s.aac.track
			rate := int64(s.aac.coreRate)
			d.il.q[s.q].frameDur = uint32((int64(s.aac.frameSamples)*tsTimescale + rate/2) / rate)
		}
		s.index = len(d.tracks)
		d.il.q[s.q].index = uint8(s.index)
		d.tracks = append(d.tracks, t)
	}
	if err := checkSkipped(log, "MPEG-TS", d.tracks, d.skip); err != nil {
		return nil, err
	}
	d.opened = true
	return d, nil
}

func (d *tsDemuxer) Tracks() []media.Track { return d.tracks }

func (d *tsDemuxer) Next() (media.Frame, error) {
	if d.err != nil {
		return media.Frame{}, d.err
	}
	for {
		if f, ok := d.il.pop(); ok {
			return f, nil
		}
		if d.eof {
			return media.Frame{}, io.EOF
		}
		if err := d.step(); err != nil {
			d.err = err
			return media.Frame{}, err
		}
	}
}

func (d *tsDemuxer) configured() bool {
	for _, s := range d.streams {
		if !s.drop && !d.streamConfigured(s) {
			return false
		}
	}
	return true
}

func (d *tsDemuxer) streamConfigured(s *tsStream) bool {
	if s.codec.IsVideo() {
		return s.ps.done
	}
	return s.aac != nil
}

func (d *tsDemuxer) rewind() error {
	if _, err := d.r.Seek(0, io.SeekStart); err != nil {
		return ioErr("seek", 0, err)
	}
	if d.br == nil {
		d.br = bufio.NewReaderSize(d.r, 64<<10)
	} else {
		d.br.Reset(d.r)
	}
	d.off = 0
	return nil
}

// readPacket reads the next packet into d.pkt and returns the 188 bytes
// of the transport packet proper; io.EOF at the end of the input.
func (d *tsDemuxer) readPacket() ([]byte, error) {
	if d.off >= d.size {
		return nil, io.EOF
	}
	if _, err := io.ReadFull(d.br, d.pkt); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, ioErr("read TS packet", d.off, err)
	}
	p := d.pkt[d.stride-tsPacket:]
	if p[0] != 0x47 {
		return nil, fmt.Errorf("%w: lost sync: TS packet at offset %d starts with 0x%02x, not 0x47", ErrCorrupt, d.off+int64(d.stride-tsPacket), p[0])
	}
	return p, nil
}

// tsHeader is what the demuxer uses of a packet header.
type tsHeader struct {
	pid           uint16
	pusi          bool
	cc            int
	payload       []byte // nil when the packet has none
	discontinuity bool
}

func (d *tsDemuxer) parseHeader(p []byte, off int64) (tsHeader, error) {
	h := tsHeader{pid: uint16(p[1]&0x1f)<<8 | uint16(p[2]), pusi: p[1]&0x40 != 0, cc: int(p[3] & 0x0f)}
	if p[1]&0x80 != 0 {
		return h, fmt.Errorf("%w: TS packet at offset %d (PID %d) has its transport error indicator set", ErrCorrupt, off, h.pid)
	}
	afc := (p[3] >> 4) & 0x03
	if afc == 0 {
		return h, fmt.Errorf("%w: TS packet at offset %d (PID %d): reserved adaptation_field_control 0", ErrCorrupt, off, h.pid)
	}
	pos := 4
	if afc&0x02 != 0 {
		// 183 bytes without payload, at most 182 with.
		l := int(p[4])
		if 5+l > tsPacket || (afc == 0x03 && 5+l == tsPacket) {
			return h, fmt.Errorf("%w: TS packet at offset %d (PID %d): adaptation field of %d bytes", ErrCorrupt, off, h.pid, l)
		}
		if l > 0 {
			h.discontinuity = p[5]&0x80 != 0
		}
		pos = 5 + l
	}
	if afc&0x01 != 0 {
		h.payload = p[pos:]
	}
	if sc := p[3] >> 6; sc != 0 && h.pid != pidNull {
		return h, fmt.Errorf("%w: scrambled TS packet at offset %d (PID %d)", ErrUnsupported, off, h.pid)
	}
	return h, nil
}

// readPSI finds the first PAT, takes its first program, and reads that
// program's PMT: the streams, supported or skipped.
func (d *tsDemuxer) readPSI() ([]skipped, error) {
	var pat, pmt sectionReader
	pmtPID := -1
	for d.off < maxPSIScan {
		p, err := d.readPacket()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		off := d.off
		d.off += int64(d.stride)
		pid := int(p[1]&0x1f)<<8 | int(p[2])
		var sr *sectionReader
		switch {
		case pid == pidPAT && pmtPID < 0:
			sr = &pat
		case pid == pmtPID:
			sr = &pmt
		default:
			continue
		}
		h, err := d.parseHeader(p, off)
		if err != nil {
			return nil, err
		}
		sec, err := sr.feed(h, off)
		if err != nil || sec == nil {
			if err != nil {
				return nil, err
			}
			continue
		}
		if sr == &pat {
			if pmtPID, err = parsePAT(sec, off, d.log); err != nil {
				return nil, err
			}
			continue
		}
		return d.parsePMT(sec, off)
	}
	if pmtPID < 0 {
		return nil, fmt.Errorf("%w: no PAT in the first %d bytes of the MPEG-TS", ErrCorrupt, d.off)
	}
	return nil, fmt.Errorf("%w: no PMT (PID %d) in the first %d bytes of the MPEG-TS", ErrCorrupt, pmtPID, d.off)
}

// sectionReader reassembles one PSI section from a PID's packets.
type sectionReader struct {
	buf  []byte
	on   bool
	from int64
}

func (s *sectionReader) feed(h tsHeader, off int64) ([]byte, error) {
	pl := h.payload
	if len(pl) == 0 {
		return nil, nil
	}
	if h.pusi {
		ptr := int(pl[0])
		if 1+ptr > len(pl) {
			return nil, fmt.Errorf("%w: PSI packet at offset %d (PID %d): pointer field %d past the packet", ErrCorrupt, off, h.pid, ptr)
		}
		s.buf, s.on, s.from = append(s.buf[:0], pl[1+ptr:]...), true, off
	} else if s.on {
		s.buf = append(s.buf, pl...)
	} else {
		return nil, nil
	}
	if len(s.buf) < 3 {
		return nil, nil
	}
	l := int(binary.BigEndian.Uint16(s.buf[1:]) & 0x0fff)
	if l > maxSection-3 || l < 9 {
		return nil, fmt.Errorf("%w: PSI section at offset %d (PID %d): section length %d", ErrCorrupt, s.from, h.pid, l)
	}
	if len(s.buf) < 3+l {
		return nil, nil
	}
	sec := s.buf[:3+l]
	s.on = false
	if crc32MPEG(sec) != 0 {
		return nil, fmt.Errorf("%w: PSI section at offset %d (PID %d, table 0x%02x): CRC mismatch", ErrCorrupt, s.from, h.pid, sec[0])
	}
	return sec, nil
}

// crc32MPEG is the CRC of MPEG-2 sections; over a section with its CRC it
// is zero.
func crc32MPEG(b []byte) uint32 {
	crc := uint32(0xffffffff)
	for _, c := range b {
		crc ^= uint32(c) << 24
		for range 8 {
			if crc&0x80000000 != 0 {
				crc = crc<<1 ^ 0x04c11db7
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

func parsePAT(sec []byte, off int64, log *slog.Logger) (int, error) {
	if sec[0] != 0x00 {
		return 0, fmt.Errorf("%w: PAT at offset %d: table ID 0x%02x", ErrCorrupt, off, sec[0])
	}
	body := sec[8 : len(sec)-4]
	if len(body)%4 != 0 {
		return 0, fmt.Errorf("%w: PAT at offset %d: %d bytes of programs", ErrCorrupt, off, len(body))
	}
	pid, programs := -1, 0
	for i := 0; i+4 <= len(body); i += 4 {
		prog := binary.BigEndian.Uint16(body[i:])
		if prog == 0 { // network PID
			continue
		}
		programs++
		if pid < 0 {
			pid = int(binary.BigEndian.Uint16(body[i+2:]) & 0x1fff)
		}
	}
	if pid < 0 {
		return 0, fmt.Errorf("%w: PAT at offset %d lists no program", ErrCorrupt, off)
	}
	if programs > 1 {
		log.Warn("demux: MPEG-TS with several programs, reading the first", "programs", programs, "pmt_pid", pid)
	}
	return pid, nil
}

func (d *tsDemuxer) parsePMT(sec []byte, off int64) ([]skipped, error) {
	if sec[0] != 0x02 {
		return nil, fmt.Errorf("%w: PMT at offset %d: table ID 0x%02x", ErrCorrupt, off, sec[0])
	}
	end := len(sec) - 4
	infoLen := int(binary.BigEndian.Uint16(sec[10:]) & 0x0fff)
	pos := 12 + infoLen
	if pos > end {
		return nil, fmt.Errorf("%w: PMT at offset %d: program info of %d bytes", ErrCorrupt, off, infoLen)
	}
	var skip []skipped
	for pos < end {
		if pos+5 > end {
			return nil, fmt.Errorf("%w: PMT at offset %d: truncated stream entry", ErrCorrupt, off)
		}
		st := sec[pos]
		pid := binary.BigEndian.Uint16(sec[pos+1:]) & 0x1fff
		esLen := int(binary.BigEndian.Uint16(sec[pos+3:]) & 0x0fff)
		if pos+5+esLen > end {
			return nil, fmt.Errorf("%w: PMT at offset %d: stream info of %d bytes for PID %d", ErrCorrupt, off, esLen, pid)
		}
		desc := sec[pos+5 : pos+5+esLen]
		pos += 5 + esLen
		if _, dup := d.byPID[pid]; dup || pid == pidPAT || pid == pidNull {
			return nil, fmt.Errorf("%w: PMT at offset %d: PID %d listed twice or reserved", ErrCorrupt, off, pid)
		}
		var codec media.Codec
		switch st {
		case streamH264:
			codec = media.H264
		case streamH265:
			codec = media.H265
		case streamAACADT:
			codec = media.AAC
		default:
			kind, name := tsStreamType(st, desc)
			skip = append(skip, skipped{where: fmt.Sprintf("PID %d", pid), kind: kind, what: name})
			continue
		}
		if len(d.streams) == MaxTracks {
			return nil, fmt.Errorf("%w: more than %d streams", ErrUnsupported, MaxTracks)
		}
		s := &tsStream{pid: pid, codec: codec, cc: -1, index: -1}
		if codec.IsVideo() {
			s.ps = &paramSets{codec: codec}
		}
		d.streams = append(d.streams, s)
		d.byPID[pid] = s
	}
	return skip, nil
}

// tsStreamType names a stream type the package does not carry.
func tsStreamType(st byte, desc []byte) (kind, name string) {
	switch st {
	case 0x01:
		return "video", "MPEG-1"
	case 0x02:
		return "video", "MPEG-2"
	case 0x10:
		return "video", "MPEG-4 Visual"
	case 0x1e, 0x1f, 0x20:
		return "video", fmt.Sprintf("H.264 SVC/MVC (stream type 0x%02x)", st)
	case 0x21:
		return "video", "JPEG 2000"
	case 0x42:
		return "video", "AVS"
	case 0xd1:
		return "video", "Dirac"
	case 0xea:
		return "video", "VC-1"
	case 0x03:
		return "audio", "MPEG-1 audio (MP1/MP2/MP3)"
	case 0x04:
		return "audio", "MPEG-2 audio (MP2/MP3)"
	case 0x11:
		return "audio", "AAC in LATM"
	case 0x1c:
		return "audio", "MPEG-4 audio without ADTS"
	case 0x81:
		return "audio", "AC-3"
	case 0x82:
		return "audio", "DTS"
	case 0x83:
		return "audio", "TrueHD"
	case 0x84, 0x87:
		return "audio", "E-AC-3"
	case 0x85, 0x86:
		if st == 0x86 {
			return "data", "SCTE-35 splice information"
		}
		return "audio", "DTS-HD"
	case 0x90:
		return "subtitle", "PGS subtitles"
	case 0x15:
		return "data", "metadata (ID3/KLV)"
	case 0x05, 0x0a, 0x0b, 0x0c, 0x0d:
		return "data", fmt.Sprintf("private sections / DSM-CC (stream type 0x%02x)", st)
	case 0x06:
		// Private PES: the descriptors say what it is.
		for len(desc) >= 2 {
			tag, l := desc[0], int(desc[1])
			if 2+l > len(desc) {
				break
			}
			body := desc[2 : 2+l]
			switch tag {
			case 0x6a:
				return "audio", "AC-3"
			case 0x7a:
				return "audio", "E-AC-3"
			case 0x7b:
				return "audio", "DTS"
			case 0x59:
				return "subtitle", "DVB subtitles"
			case 0x56:
				return "subtitle", "teletext"
			case 0x05:
				if l >= 4 {
					switch string(body[:4]) {
					case "Opus":
						return "audio", "Opus"
					case "AC-3":
						return "audio", "AC-3"
					case "EAC3":
						return "audio", "E-AC-3"
					case "AV01":
						return "video", "AV1"
					case "VC-1":
						return "video", "VC-1"
					case "BSSD":
						return "audio", "SMPTE 302M PCM"
					case "KLVA", "ID3 ":
						return "data", "metadata"
					}
				}
			}
			desc = desc[2+l:]
		}
		return "data", "private data (stream type 0x06)"
	}
	return "", fmt.Sprintf("stream type 0x%02x", st)
}

// step reads one packet and processes it; at the end of the input it
// flushes the streams and marks every queue ended.
func (d *tsDemuxer) step() error {
	p, err := d.readPacket()
	if err == io.EOF {
		return d.finish()
	}
	if err != nil {
		return err
	}
	off := d.off
	d.off += int64(d.stride)
	s := d.byPID[uint16(p[1]&0x1f)<<8|uint16(p[2])]
	if s == nil || s.drop {
		return nil // PSI, PCR, null packets, streams left out
	}
	h, err := d.parseHeader(p, off)
	if err != nil {
		return err
	}
	if h.payload != nil {
		if s.cc >= 0 && !h.discontinuity {
			if h.cc == s.cc {
				return nil // a duplicate packet
			}
			if h.cc != (s.cc+1)&0x0f {
				return fmt.Errorf("%w: PID %d: continuity counter jumps from %d to %d at offset %d (packets lost)", ErrCorrupt, s.pid, s.cc, h.cc, off)
			}
		}
		s.cc = h.cc
	}
	if len(h.payload) == 0 {
		return nil
	}
	if h.pusi {
		if s.started {
			if err := d.endPES(s); err != nil {
				return err
			}
		}
		s.pes, s.pesOff, s.pesLen, s.started = append(s.pes[:0], h.payload...), off, -1, true
	} else {
		if !s.started {
			return nil // the tail of a PES that began before the file did
		}
		if len(s.pes)+len(h.payload) > MaxFrame {
			return fmt.Errorf("%w: PID %d: PES at offset %d is larger than %d bytes", ErrUnsupported, s.pid, s.pesOff, MaxFrame)
		}
		s.pes = append(s.pes, h.payload...)
	}
	if s.pesLen < 0 && len(s.pes) >= 6 { // PES_packet_length, 0: unbounded
		if s.pesLen = int(binary.BigEndian.Uint16(s.pes[4:])); s.pesLen > 0 {
			s.pesLen += 6
		}
	}
	if s.pesLen > 0 && len(s.pes) >= s.pesLen {
		if len(s.pes) > s.pesLen {
			return fmt.Errorf("%w: PID %d: PES at offset %d has %d bytes, more than its length %d", ErrCorrupt, s.pid, s.pesOff, len(s.pes), s.pesLen)
		}
		return d.endPES(s)
	}
	return nil
}

// finish ends every stream at the end of the input.
func (d *tsDemuxer) finish() error {
	for _, s := range d.streams {
		if s.drop {
			continue
		}
		if s.started {
			if err := d.endPES(s); err != nil {
				return err
			}
		}
		if s.codec == media.AAC && len(s.adts.buf) > 0 {
			return fmt.Errorf("%w: PID %d: the input ends inside an ADTS frame (%d bytes of it)", ErrCorrupt, s.pid, len(s.adts.buf))
		}
	}
	d.eof = true
	d.il.endAll()
	return nil
}

// endPES parses a complete PES packet and queues its frames.
func (d *tsDemuxer) endPES(s *tsStream) error {
	b, off := s.pes, s.pesOff
	s.started = false
	fail := func(format string, a ...any) error {
		return fmt.Errorf("%w: PID %d: PES at offset %d: %s", ErrCorrupt, s.pid, off, fmt.Sprintf(format, a...))
	}
	if len(b) < 9 {
		return fail("%d bytes, too few for a header", len(b))
	}
	if b[0] != 0 || b[1] != 0 || b[2] != 1 {
		return fail("no start code (% x)", b[:3])
	}
	if s.pesLen > 0 && len(b) < s.pesLen {
		return fail("truncated: %d of %d bytes", len(b), s.pesLen)
	}
	if b[6]&0xc0 != 0x80 {
		return fail("bad optional header marker 0x%02x (stream ID 0x%02x)", b[6], b[3])
	}
	flags := b[7] >> 6
	hl := int(b[8])
	if 9+hl > len(b) {
		return fail("header of %d bytes", 9+hl)
	}
	payload := b[9+hl:]
	var ptsRaw, dtsRaw int64
	switch flags {
	case 0:
	case 1:
		return fail("PTS_DTS_flags 01 (forbidden)")
	case 2, 3:
		need := 5
		if flags == 3 {
			need = 10
		}
		if hl < need {
			return fail("PTS/DTS past its %d-byte header", hl)
		}
		var ok1, ok2 bool
		ptsRaw, ok1 = readTimestamp(b[9:])
		dtsRaw, ok2 = ptsRaw, true
		if flags == 3 {
			dtsRaw, ok2 = readTimestamp(b[14:])
		}
		if !ok1 || !ok2 {
			return fail("bad PTS/DTS marker bits")
		}
	}
	hasPTS := flags >= 2
	var pts, dts int64
	if hasPTS {
		dts = d.unwrap.unwrap(dtsRaw)
		pts = dts + signed33(ptsRaw-dtsRaw)
		if pts < dts {
			return fail("PTS %d before DTS %d", ptsRaw, dtsRaw)
		}
	}
	if s.codec.IsVideo() {
		if !hasPTS {
			return fmt.Errorf("%w: PID %d: video PES at offset %d without PTS (each access unit needs its own timestamped PES)", ErrUnsupported, s.pid, off)
		}
		var ps *paramSets
		if !s.ps.done {
			ps = s.ps
		}
		au, err := annexBToAU(s.codec, payload, ps)
		if err != nil {
			return fail("%s access unit: %v", s.codec, err)
		}
		return d.push(s, media.Frame{PTS: pts, DTS: dts, Keyframe: au.key, Data: au.data}, off)
	}
	return d.audio(s, payload, hasPTS, pts, off)
}

// audio splits ADTS frames out of a PES payload. Frames take the PES's
// PTS, and the next ones follow at one frame's duration each; a frame that
// began in an earlier PES keeps that PES's timing.
func (d *tsDemuxer) audio(s *tsStream, payload []byte, hasPTS bool, pts int64, off int64) error {
	a := &s.adts
	if hasPTS {
		a.anchors = append(a.anchors, adtsAnchor{pos: a.consumed + int64(len(a.buf)), pts: pts, off: off})
	} else if len(a.anchors) == 0 && !a.timed {
		return fmt.Errorf("%w: PID %d: first audio PES at offset %d has no PTS", ErrCorrupt, s.pid, off)
	}
	a.buf = append(a.buf, payload...)
	for {
		if len(a.buf) < adtsMinHeader {
			return nil
		}
		h, err := parseADTS(a.buf)
		if err != nil {
			if errors.Is(err, ErrUnsupported) {
				return at(fmt.Sprintf("PID %d: PES at offset %d", s.pid, off), err)
			}
			return fmt.Errorf("%w: PID %d: ADTS frame at byte %d of the stream (PES at offset %d): %v", ErrCorrupt, s.pid, a.consumed, off, err)
		}
		if len(a.buf) < h.frameLen {
			return nil
		}
		if s.aac == nil {
			info, err := aacTrack(h.asc(), tsTimescale)
			if ce, ok := errors.AsType[*codecError](err); ok && !d.opened {
				// Known only from the first frame: skip like any
				// unsupported stream.
				s.drop, a.buf, a.anchors = true, nil, nil
				d.il.q[s.q].ended = true
				d.skip = append(d.skip, skipped{where: fmt.Sprintf("PID %d", s.pid), kind: ce.kind, what: ce.name})
				return nil
			}
			if err != nil {
				return at(fmt.Sprintf("PID %d", s.pid), err)
			}
			s.aac, a.first = &info, h
		} else if !h.sameConfig(a.first) {
			return fmt.Errorf("%w: PID %d: AAC configuration changes in the PES at offset %d", ErrUnsupported, s.pid, off)
		}
		// The timing: the last anchor at or before this frame's start.
		for len(a.anchors) > 0 && a.anchors[0].pos <= a.consumed {
			a.base, a.n, a.timed = a.anchors[0].pts, 0, true
			a.anchors = a.anchors[1:]
		}
		rate := int64(s.aac.coreRate)
		ts := a.base + (a.n*int64(s.aac.frameSamples)*tsTimescale+rate/2)/rate
		a.n++
		data := append([]byte(nil), a.buf[h.headerLen:h.frameLen]...)
		a.buf = a.buf[h.frameLen:]
		a.consumed += int64(h.frameLen)
		if err := d.push(s, media.Frame{PTS: ts, DTS: ts, Keyframe: true, Data: data}, off); err != nil {
			return err
		}
		if len(a.buf) == 0 {
			a.buf = a.buf[:0:0] // let the PES buffer go
		}
	}
}

// adtsStream is the ADTS byte stream of an audio PID across its PES
// packets.
type adtsStream struct {
	buf      []byte // not yet split
	consumed int64  // stream bytes before buf
	anchors  []adtsAnchor
	timed    bool
	base     int64 // PTS of the current anchor
	n        int64 // frames since it
	first    adtsHeader
}

type adtsAnchor struct {
	pos int64 // stream byte where the PES payload began
	pts int64
	off int64
}

func (d *tsDemuxer) push(s *tsStream, f media.Frame, off int64) error {
	q := &d.il.q[s.q]
	if q.pushed {
		last := q.lastDTS
		if f.DTS < last {
			return fmt.Errorf("%w: PID %d: DTS goes back from %d to %d at offset %d (timestamp discontinuity)", ErrUnsupported, s.pid, last, f.DTS, off)
		}
		if f.DTS-last > math.MaxUint32 { // 13 hours: a duration must fit in 32 bits
			return fmt.Errorf("%w: PID %d: DTS jumps from %d to %d at offset %d (timestamp discontinuity)", ErrUnsupported, s.pid, last, f.DTS, off)
		}
	}
	if len(f.Data) > MaxFrame {
		return fmt.Errorf("%w: PID %d: frame of %d bytes at offset %d", ErrUnsupported, s.pid, len(f.Data), off)
	}
	d.il.push(s.q, f)
	return nil
}

// readTimestamp reads a 33-bit PES timestamp and checks its marker bits.
func readTimestamp(b []byte) (int64, bool) {
	ok := b[0]&1 == 1 && b[2]&1 == 1 && b[4]&1 == 1
	v := int64(b[0]>>1&0x07)<<30 | int64(b[1])<<22 | int64(b[2]>>1)<<15 | int64(b[3])<<7 | int64(b[4]>>1)
	return v, ok
}

// signed33 maps a difference of 33-bit timestamps to [-2^32, 2^32).
func signed33(v int64) int64 {
	v &= pts33 - 1
	if v >= pts33/2 {
		v -= pts33
	}
	return v
}

// unwrapper undoes the 33-bit wrap of MPEG-TS timestamps: every value is
// taken as the one congruent to it modulo 2^33 that is closest to the
// previous one, whatever the stream, so tracks wrap together.
type unwrapper struct {
	ref  int64
	init bool
}

func (u *unwrapper) unwrap(raw int64) int64 {
	if !u.init {
		u.ref, u.init = raw, true
		return raw
	}
	v := u.ref + signed33(raw-u.ref)
	u.ref = v
	return v
}

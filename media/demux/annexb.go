package demux

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/Eyevinn/mp4ff/avc"
	"github.com/Eyevinn/mp4ff/hevc"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"

	"github.com/boxswarm/boxswarm/media"
)

var startCode = []byte{0, 0, 0, 1}

// NAL unit types the package looks at.
const (
	h264IDR = 5
	h264SPS = 7
	h264PPS = 8
	h264AUD = 9

	h265IRAPFirst = 16 // BLA_W_LP
	h265IRAPLast  = 23 // RSV_IRAP_VCL23
	h265VPS       = 32
	h265SPS       = 33
	h265PPS       = 34
	h265AUD       = 35
)

// nalKind classifies a NAL unit of codec c. It checks the header: the
// forbidden zero bit, and for H.265 the two-byte header.
type nalKind uint8

const (
	nalOther nalKind = iota
	nalAUD
	nalKey // H.264 IDR slice, H.265 IRAP slice
	nalVPS
	nalSPS
	nalPPS
)

var errNALHeader = errors.New("bad NAL unit header")

func classify(c media.Codec, nal []byte) (nalKind, error) {
	if len(nal) == 0 || nal[0]&0x80 != 0 {
		return 0, errNALHeader
	}
	if c == media.H264 {
		switch nal[0] & 0x1f {
		case h264IDR:
			return nalKey, nil
		case h264SPS:
			return nalSPS, nil
		case h264PPS:
			return nalPPS, nil
		case h264AUD:
			return nalAUD, nil
		}
		return nalOther, nil
	}
	// H.265: forbidden bit, 6-bit type, 6-bit layer, 3-bit temporal ID + 1
	// (never zero).
	if len(nal) < 2 || nal[1]&0x07 == 0 {
		return 0, errNALHeader
	}
	switch t := (nal[0] >> 1) & 0x3f; {
	case t >= h265IRAPFirst && t <= h265IRAPLast:
		return nalKey, nil
	case t == h265VPS:
		return nalVPS, nil
	case t == h265SPS:
		return nalSPS, nil
	case t == h265PPS:
		return nalPPS, nil
	case t == h265AUD:
		return nalAUD, nil
	}
	return nalOther, nil
}

// accessUnit is what the package learnt of one video access unit.
type accessUnit struct {
	data []byte // Annex-B, 4-byte start codes, no AUD
	key  bool
}

// auBuilder turns the NAL units of one access unit into an accessUnit and
// feeds the parameter sets to a collector.
type auBuilder struct {
	codec media.Codec
	ps    *paramSets
	out   []byte
	key   bool
	nals  int
}

func (b *auBuilder) add(nal []byte) error {
	k, err := classify(b.codec, nal)
	if err != nil {
		return fmt.Errorf("NAL unit %d: %w (first byte 0x%02x)", b.nals, err, first(nal))
	}
	b.nals++
	switch k {
	case nalAUD:
		return nil
	case nalKey:
		b.key = true
	case nalVPS, nalSPS, nalPPS:
		if b.ps != nil {
			b.ps.add(k, nal)
		}
	}
	b.out = append(b.out, startCode...)
	b.out = append(b.out, nal...)
	return nil
}

func (b *auBuilder) finish() (accessUnit, error) {
	if len(b.out) == 0 {
		return accessUnit{}, errors.New("access unit has no NAL unit besides delimiters")
	}
	if b.ps != nil {
		b.ps.endAU()
	}
	return accessUnit{data: b.out, key: b.key}, nil
}

// startCodeIn returns where 00 00 00, 00 00 01 or 00 00 02 occurs in b,
// or -1.
func startCodeIn(b []byte) int {
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte{0, 0})
		if j < 0 || i+j+2 >= len(b) {
			return -1
		}
		if b[i+j+2] <= 2 {
			return i + j
		}
		i += j + 1
	}
}

func first(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// annexBToAU parses an Annex-B byte stream holding one access unit. Bytes
// before the first start code must be zero; trailing zero bytes of every
// NAL unit are dropped.
func annexBToAU(c media.Codec, b []byte, ps *paramSets) (accessUnit, error) {
	ab := auBuilder{codec: c, ps: ps, out: make([]byte, 0, len(b)+len(b)/64+8)}
	i := bytes.Index(b, startCode[1:])
	if i < 0 {
		return accessUnit{}, errors.New("no Annex-B start code")
	}
	for _, z := range b[:i] {
		if z != 0 {
			return accessUnit{}, fmt.Errorf("%d bytes before the first start code", i)
		}
	}
	pos := i + 3
	for pos < len(b) {
		j := bytes.Index(b[pos:], startCode[1:])
		end := len(b)
		if j >= 0 {
			end = pos + j
		}
		nal := bytes.TrimRight(b[pos:end], "\x00")
		if len(nal) > 0 {
			if err := ab.add(nal); err != nil {
				return accessUnit{}, err
			}
		}
		if j < 0 {
			break
		}
		pos = end + 3
	}
	return ab.finish()
}

// lengthPrefixedToAU converts an MP4 sample (NAL units each preceded by a
// 4-byte big-endian length) to an Annex-B access unit in place: the lengths
// become start codes and delimiters are squeezed out. The result aliases
// sample.
func lengthPrefixedToAU(c media.Codec, sample []byte, ps *paramSets) (accessUnit, error) {
	w, pos, n := 0, 0, 0
	key := false
	for pos < len(sample) {
		if len(sample)-pos < 4 {
			return accessUnit{}, fmt.Errorf("NAL unit %d: %d bytes left at byte %d, too few for a length", n, len(sample)-pos, pos)
		}
		l := binary.BigEndian.Uint32(sample[pos:])
		if l == 0 || uint64(l) > uint64(len(sample)-pos-4) {
			return accessUnit{}, fmt.Errorf("NAL unit %d at byte %d: length %d, %d bytes left", n, pos, l, len(sample)-pos-4)
		}
		// Trailing zero bytes go, as in Annex-B; what is left must not
		// hold a start code (valid NAL units never do, thanks to emulation
		// prevention) or the access unit would split differently.
		nal := bytes.TrimRight(sample[pos+4:pos+4+int(l)], "\x00")
		k, err := classify(c, nal)
		if err != nil {
			return accessUnit{}, fmt.Errorf("NAL unit %d at byte %d: %w (first byte 0x%02x)", n, pos, err, first(nal))
		}
		if i := startCodeIn(nal); i >= 0 {
			return accessUnit{}, fmt.Errorf("NAL unit %d at byte %d: start code emulation at byte %d of %d", n, pos, i, len(nal))
		}
		switch k {
		case nalKey:
			key = true
		case nalVPS, nalSPS, nalPPS:
			if ps != nil {
				ps.add(k, nal)
			}
		}
		pos += 4 + int(l)
		n++
		if k == nalAUD {
			continue
		}
		copy(sample[w:], startCode)
		copy(sample[w+4:], nal) // w <= the NAL's old start: a forward-safe move
		w += 4 + len(nal)
	}
	if w == 0 {
		return accessUnit{}, errors.New("sample has no NAL unit besides delimiters")
	}
	if ps != nil {
		ps.endAU()
	}
	return accessUnit{data: sample[:w], key: key}, nil
}

// paramSets collects a video track's first parameter sets: every VPS, SPS
// and PPS of the access units up to the first one after which all the
// kinds the codec needs have been seen.
type paramSets struct {
	codec         media.Codec
	vps, sps, pps [][]byte
	size          int
	done          bool
}

const (
	maxParamSets    = 32
	maxParamSetSize = 64 << 10
)

func (p *paramSets) add(k nalKind, nal []byte) {
	if p.done || p.size+len(nal) > maxParamSetSize {
		return
	}
	list := &p.pps
	switch k {
	case nalVPS:
		if p.codec != media.H265 {
			return
		}
		list = &p.vps
	case nalSPS:
		list = &p.sps
	}
	if len(*list) >= maxParamSets {
		return
	}
	for _, have := range *list {
		if bytes.Equal(have, nal) {
			return
		}
	}
	*list = append(*list, bytes.Clone(nal))
	p.size += len(nal)
}

func (p *paramSets) complete() bool {
	return len(p.sps) > 0 && len(p.pps) > 0 && (p.codec != media.H265 || len(p.vps) > 0)
}

// endAU freezes the collection once it is complete.
func (p *paramSets) endAU() {
	if p.complete() {
		p.done = true
	}
}

// config returns Track.Config: VPS, SPS, PPS, each with a 4-byte start
// code.
func (p *paramSets) config() []byte {
	var out []byte
	for _, l := range [][][]byte{p.vps, p.sps, p.pps} {
		for _, nal := range l {
			out = append(out, startCode...)
			out = append(out, nal...)
		}
	}
	return out
}

// videoTrack fills a video track from its parameter sets: Config, and
// Width and Height from the first SPS. mediacommon's SPS parsers come
// first; the H.265 one refuses some valid streams (sub-layer levels,
// long-term reference pictures in the SPS), so mp4ff's parsers are asked
// when it fails, and only if both fail is the SPS corrupt.
func videoTrack(c media.Codec, timescale uint32, p *paramSets) (media.Track, error) {
	t := media.Track{Codec: c, Timescale: timescale, Config: p.config()}
	sps := p.sps[0]
	var w, h int
	err1 := safely("SPS", func() error {
		if c == media.H264 {
			var s h264.SPS
			if err := s.Unmarshal(sps); err != nil {
				return err
			}
			w, h = s.Width(), s.Height()
			return nil
		}
		var s h265.SPS
		if err := s.Unmarshal(sps); err != nil {
			return err
		}
		w, h = s.Width(), s.Height()
		return nil
	})
	if err1 != nil {
		err2 := safely("SPS", func() error {
			if c == media.H264 {
				s, err := avc.ParseSPSNALUnit(sps, false)
				if err != nil {
					return err
				}
				w, h = int(s.Width), int(s.Height)
				return nil
			}
			s, err := hevc.ParseSPSNALUnit(sps)
			if err != nil {
				return err
			}
			sw, sh := s.ImageSize()
			w, h = int(sw), int(sh)
			return nil
		})
		if err2 != nil {
			return t, fmt.Errorf("%w: %s SPS: %w (and %w)", ErrCorrupt, c, err1, err2)
		}
	}
	// The SPS parsers compute in unsigned integers and do not check the
	// cropping against the picture size; a bad SPS wraps around.
	if w <= 0 || h <= 0 || w > 0xffff || h > 0xffff {
		return t, fmt.Errorf("%w: %s SPS: picture size %dx%d", ErrCorrupt, c, w, h)
	}
	t.Width, t.Height = uint16(w), uint16(h)
	return t, nil
}

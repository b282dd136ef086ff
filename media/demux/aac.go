package demux

import (
	"errors"
	"fmt"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/boxswarm/boxswarm/media"
)

// adtsHeader is the fixed and variable header of an ADTS frame (ISO/IEC
// 14496-3 1.A.2.2).
type adtsHeader struct {
	objectType    uint8 // profile + 1
	srIndex       uint8
	channelConfig uint8
	headerLen     int // 7, or 9 with a CRC
	frameLen      int // header included
}

const adtsMinHeader = 7

var aacObjectTypes = map[uint8]string{1: "AAC Main", 2: "AAC LC", 3: "AAC SSR", 4: "AAC LTP", 5: "HE-AAC (SBR)", 29: "HE-AACv2 (PS)"}

func aacName(ot uint8) string {
	if n, ok := aacObjectTypes[ot]; ok {
		return n
	}
	return fmt.Sprintf("MPEG-4 audio object type %d", ot)
}

// parseADTS parses the header at the start of b (at least 7 bytes).
func parseADTS(b []byte) (adtsHeader, error) {
	if len(b) < adtsMinHeader {
		return adtsHeader{}, fmt.Errorf("%d bytes, too few for an ADTS header", len(b))
	}
	if b[0] != 0xff || b[1]&0xf6 != 0xf0 { // syncword, layer 00
		return adtsHeader{}, fmt.Errorf("no ADTS sync word (% x)", b[:2])
	}
	h := adtsHeader{
		objectType:    b[2]>>6 + 1,
		srIndex:       (b[2] >> 2) & 0x0f,
		channelConfig: (b[2]&0x01)<<2 | b[3]>>6,
		headerLen:     7,
		frameLen:      int(b[3]&0x03)<<11 | int(b[4])<<3 | int(b[5])>>5,
	}
	if b[1]&0x01 == 0 {
		h.headerLen = 9 // CRC follows the header
	}
	if h.srIndex > 12 {
		return h, fmt.Errorf("ADTS sampling frequency index %d", h.srIndex)
	}
	if h.frameLen <= h.headerLen {
		return h, fmt.Errorf("ADTS frame length %d", h.frameLen)
	}
	if blocks := b[6] & 0x03; blocks != 0 {
		return h, fmt.Errorf("%w: ADTS frames of %d raw data blocks", ErrUnsupported, blocks+1)
	}
	return h, nil
}

// asc returns the AudioSpecificConfig the header stands for.
func (h adtsHeader) asc() []byte {
	return []byte{h.objectType<<3 | h.srIndex>>1, (h.srIndex&1)<<7 | h.channelConfig<<3}
}

func (h adtsHeader) sameConfig(o adtsHeader) bool {
	return h.objectType == o.objectType && h.srIndex == o.srIndex && h.channelConfig == o.channelConfig
}

// aacInfo is what the demuxer needs of an AudioSpecificConfig.
type aacInfo struct {
	track media.Track
	// coreRate and frameSamples give the duration of one access unit:
	// frameSamples/coreRate seconds.
	coreRate     int
	frameSamples int
}

// aacTrack checks an AudioSpecificConfig and fills the track. Supported:
// what mediacommon parses, AAC LC with or without explicit SBR or PS
// signalling. SampleRate is the output rate (the SBR rate when signalled),
// Channels the channel configuration's count (2 with PS).
func aacTrack(asc []byte, timescale uint32) (aacInfo, error) {
	if len(asc) == 0 {
		return aacInfo{}, fmt.Errorf("%w: empty AudioSpecificConfig", ErrCorrupt)
	}
	if len(asc) > 64 {
		return aacInfo{}, fmt.Errorf("%w: AudioSpecificConfig of %d bytes", ErrCorrupt, len(asc))
	}
	ot := asc[0] >> 3
	if ot == 31 && len(asc) > 1 {
		ot = 32 + (asc[0]&0x07)<<3 | asc[1]>>5
	}
	switch ot {
	case 2, 5, 29:
	default:
		return aacInfo{}, &codecError{kind: "audio", name: aacName(ot)}
	}
	var c mpeg4audio.AudioSpecificConfig
	if err := safely("AudioSpecificConfig", func() error { return c.Unmarshal(asc) }); err != nil {
		if errors.Is(err, ErrCorrupt) {
			return aacInfo{}, err
		}
		return aacInfo{}, &codecError{kind: "audio", name: fmt.Sprintf("AAC with AudioSpecificConfig % x (%v)", asc, err)}
	}
	if c.ChannelConfig == 0 {
		return aacInfo{}, &codecError{kind: "audio", name: "AAC with a program config element (channel configuration 0)"}
	}
	if c.SampleRate <= 0 || c.SampleRate > 192000 || c.ExtensionSampleRate < 0 || c.ExtensionSampleRate > 192000 {
		return aacInfo{}, fmt.Errorf("%w: AAC sample rate %d/%d", ErrCorrupt, c.SampleRate, c.ExtensionSampleRate)
	}
	ch := int(c.ChannelConfig)
	if ch == 7 {
		ch = 8
	}
	if c.ExtensionType == mpeg4audio.ObjectTypePS && ch == 1 {
		ch = 2
	}
	rate := c.SampleRate
	if c.ExtensionSampleRate > 0 {
		rate = c.ExtensionSampleRate
	}
	info := aacInfo{
		track: media.Track{Codec: media.AAC, Timescale: timescale, Config: append([]byte(nil), asc...),
			SampleRate: uint32(rate), Channels: uint8(ch)},
		coreRate:     c.SampleRate,
		frameSamples: 1024,
	}
	if c.FrameLengthFlag {
		info.frameSamples = 960
	}
	return info, nil
}

// codecError is an ErrUnsupported naming a codec, so that a demuxer can
// skip the track instead of failing.
type codecError struct{ kind, name string }

func (e *codecError) Error() string {
	return fmt.Sprintf("%v: %s codec %s", ErrUnsupported, e.kind, e.name)
}

func (e *codecError) Is(target error) bool { return target == ErrUnsupported }

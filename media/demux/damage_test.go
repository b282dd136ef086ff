package demux

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/boxswarm/boxswarm/media/mediatest"
)

// Small clips for the damage tests, derived from the shared ones.
var (
	damageTS = func() mediatest.Clip {
		c := mediatest.TSH264AAC
		c.Name, c.File, c.Seconds, c.Video = "damage-ts", "damage.ts", 2, "testsrc=size=320x240:rate=30"
		return c
	}()
	damageMP4 = mediatest.Clip{Name: "damage-mp4", File: "damage.mp4", Seconds: 2,
		Video: "testsrc=size=320x240:rate=25", Audio: "sine=frequency=300:sample_rate=44100",
		Args: []string{"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
			"-movflags", "faststart", "-use_editlist", "0", "-f", "mp4"}}
	damageMP4MoovLast = func() mediatest.Clip {
		c := damageMP4
		c.Name, c.File, c.Args = "damage-mp4-moov-last", "moovlast.mp4", append(c.Args[:8:8], "-f", "mp4")
		return c
	}()
	damageFMP4 = func() mediatest.Clip {
		c := mediatest.FragmentedMP4
		c.Name, c.File, c.Seconds, c.Video = "damage-fmp4", "damage-frag.mp4", 2, "testsrc=size=320x240:rate=30"
		c.Args = append([]string{"-g", "15"}, c.Args...)
		return c
	}()
)

// tsPacketAt describes packet i of a 188-byte TS.
type tsPkt struct {
	off     int
	pid     uint16
	pusi    bool
	payload int // offset of the payload in the file
}

func tsPackets(b []byte) []tsPkt {
	var out []tsPkt
	for off := 0; off+188 <= len(b); off += 188 {
		p := b[off:]
		pl := 4
		if p[3]&0x20 != 0 {
			pl += 1 + int(p[4])
		}
		out = append(out, tsPkt{off: off, pid: uint16(p[1]&0x1f)<<8 | uint16(p[2]), pusi: p[1]&0x40 != 0, payload: off + pl})
	}
	return out
}

// nthPacket returns the n-th packet (from the middle of the file on) of a
// PID with or without payload start.
func nthPacket(t testing.TB, b []byte, pid uint16, pusi bool, n int) tsPkt {
	t.Helper()
	for _, p := range tsPackets(b) {
		if p.pid == pid && p.pusi == pusi && p.off > len(b)/3 {
			if n == 0 {
				return p
			}
			n--
		}
	}
	t.Fatalf("no packet of PID %d", pid)
	return tsPkt{}
}

// box returns the offset of the n-th box of a type (its size field).
func boxAt(t testing.TB, b []byte, typ string, n int) int {
	t.Helper()
	from := 0
	for {
		i := bytes.Index(b[from:], []byte(typ))
		if i < 0 {
			t.Fatalf("no box %q number %d", typ, n)
		}
		if n == 0 {
			return from + i - 4
		}
		n--
		from += i + 4
	}
}

func lastBox(b []byte, typ string) int { return bytes.LastIndex(b, []byte(typ)) - 4 }

const (
	videoPID = 256 // ffmpeg's first elementary stream
	audioPID = 257
	pmtPID   = 4096
)

func TestDamaged(t *testing.T) {
	dir := t.TempDir()
	clips := map[string][]byte{}
	for _, c := range []mediatest.Clip{damageTS, damageMP4, damageMP4MoovLast, damageFMP4} {
		b, err := os.ReadFile(mediatest.Make(t, dir, c))
		if err != nil {
			t.Fatal(err)
		}
		clips[c.Name] = b
	}
	for _, tc := range []struct {
		name   string
		clip   string
		damage func(t testing.TB, b []byte) []byte
		want   string // in the message of an ErrCorrupt
	}{
		// MPEG-TS
		{"ts truncated mid-packet", "damage-ts", func(_ testing.TB, b []byte) []byte { return b[:len(b)-100] },
			"is not a whole number of 188-byte packets (88 bytes over)"},
		{"ts truncated to one packet and a bit", "damage-ts", func(_ testing.TB, b []byte) []byte { return b[:200] },
			"not a whole number"},
		{"ts truncated in an audio PES", "damage-ts", func(t testing.TB, b []byte) []byte {
			p := nthPacket(t, b, audioPID, true, 0)
			return b[:p.off+188]
		}, "PID 257: PES at offset"},
		{"ts truncated to the PSI", "damage-ts", func(_ testing.TB, b []byte) []byte { return b[:188*2] },
			"no PMT"},
		{"ts lost sync", "damage-ts", func(_ testing.TB, b []byte) []byte { b[188*40] = 0x46; return b },
			"lost sync: TS packet at offset 7520 starts with 0x46"},
		{"ts zeroed region", "damage-ts", func(_ testing.TB, b []byte) []byte { clear(b[30000:34096]); return b },
			"lost sync: TS packet at offset 30080"},
		{"ts PMT byte flipped", "damage-ts", func(t testing.TB, b []byte) []byte {
			for _, p := range tsPackets(b) {
				if p.pid == pmtPID {
					b[p.payload+1+10] ^= 0x01 // in the program info length
					return b
				}
			}
			t.Fatal("no PMT")
			return nil
		}, "CRC mismatch"},
		{"ts continuity counter", "damage-ts", func(t testing.TB, b []byte) []byte {
			p := nthPacket(t, b, videoPID, false, 3)
			b[p.off+3] = b[p.off+3]&0xf0 | (b[p.off+3]+5)&0x0f
			return b
		}, "PID 256: continuity counter jumps"},
		{"ts packet dropped", "damage-ts", func(t testing.TB, b []byte) []byte {
			p := nthPacket(t, b, audioPID, false, 2)
			return append(b[:p.off], b[p.off+188:]...)
		}, "PID 257: continuity counter jumps"},
		{"ts transport error", "damage-ts", func(t testing.TB, b []byte) []byte {
			b[nthPacket(t, b, videoPID, false, 0).off+1] |= 0x80
			return b
		}, "transport error indicator"},
		{"ts PES start code", "damage-ts", func(t testing.TB, b []byte) []byte {
			b[nthPacket(t, b, videoPID, true, 1).payload+2] = 0x02
			return b
		}, "PID 256: PES at offset"},
		{"ts PTS marker bit", "damage-ts", func(t testing.TB, b []byte) []byte {
			b[nthPacket(t, b, videoPID, true, 1).payload+9] &^= 0x01
			return b
		}, "bad PTS/DTS marker bits"},
		{"ts ADTS sync word", "damage-ts", func(t testing.TB, b []byte) []byte {
			p := nthPacket(t, b, audioPID, true, 1)
			b[p.payload+9+int(b[p.payload+8])] = 0x00
			return b
		}, "no ADTS sync word"},
		{"ts video bitstream", "damage-ts", func(t testing.TB, b []byte) []byte {
			p := nthPacket(t, b, videoPID, true, 2)
			at := p.payload + 9 + int(b[p.payload+8])
			copy(b[at:], []byte{0, 0, 0, 1, 0x89}) // forbidden zero bit set
			return b
		}, "H.264 access unit: NAL unit 0: bad NAL unit header"},
		{"garbage", "damage-ts", func(_ testing.TB, b []byte) []byte {
			r := rand.New(rand.NewPCG(1, 2))
			for i := range b[:5000] {
				b[i] = byte(r.Uint32())
			}
			return b[:5000]
		}, "neither MPEG-TS nor ISO BMFF"},

		// Progressive MP4, moov first
		{"mp4 truncated in mdat", "damage-mp4", func(_ testing.TB, b []byte) []byte { return b[:len(b)*2/3] },
			"media data box is short"},
		{"mp4 truncated in moov", "damage-mp4", func(_ testing.TB, b []byte) []byte { return b[:600] },
			`"moov" box at offset 32 declares`},
		{"mp4 truncated in a box header", "damage-mp4", func(t testing.TB, b []byte) []byte { return b[:boxAt(t, b, "moov", 0)+4] },
			"4 stray bytes at offset 32"},
		{"mp4 mdat grown", "damage-mp4", func(t testing.TB, b []byte) []byte {
			binary.BigEndian.PutUint32(b[boxAt(t, b, "mdat", 0):], 0x7fffffff)
			return b
		}, "media data box is short"},
		{"mp4 chunk offset past the end", "damage-mp4", func(t testing.TB, b []byte) []byte {
			binary.BigEndian.PutUint32(b[boxAt(t, b, "stco", 0)+16:], uint32(len(b)-10))
			return b
		}, "track 1 sample 1 "},
		{"mp4 sample count flipped", "damage-mp4", func(t testing.TB, b []byte) []byte {
			b[boxAt(t, b, "stsz", 0)+19] ^= 0x04
			return b
		}, "stsz: expected size"},
		{"mp4 stts zeroed", "damage-mp4", func(t testing.TB, b []byte) []byte {
			at := boxAt(t, b, "stts", 0)
			clear(b[at+16 : at+int(binary.BigEndian.Uint32(b[at:]))])
			return b
		}, "track 1 sample 1: no stts entry"},
		{"mp4 first video sample zeroed", "damage-mp4", func(t testing.TB, b []byte) []byte {
			at := int(binary.BigEndian.Uint32(b[boxAt(t, b, "stco", 0)+16:]))
			clear(b[at : at+16])
			return b
		}, "track 1 sample 1 ("},
		{"mp4 avcC zeroed", "damage-mp4", func(t testing.TB, b []byte) []byte {
			at := boxAt(t, b, "avcC", 0)
			clear(b[at+8 : at+int(binary.BigEndian.Uint32(b[at:]))])
			return b
		}, "avcC"},
		{"mp4 garbage after ftyp", "damage-mp4", func(t testing.TB, b []byte) []byte {
			r := rand.New(rand.NewPCG(3, 4))
			at := boxAt(t, b, "moov", 0)
			for i := at; i < len(b); i++ {
				b[i] = byte(r.Uint32())
			}
			return b
		}, "box at offset 32"},

		// Progressive MP4, moov last
		{"mp4 moov last truncated", "damage-mp4-moov-last", func(_ testing.TB, b []byte) []byte { return b[:len(b)-100] },
			`"moov" box at offset`},
		{"mp4 moov last, moov cut off", "damage-mp4-moov-last", func(t testing.TB, b []byte) []byte { return b[:boxAt(t, b, "moov", 0)] },
			"without a moov box"},

		// Fragmented MP4
		{"fmp4 truncated last fragment", "damage-fmp4", func(t testing.TB, b []byte) []byte { return b[:lastBox(b, "mdat")+100] },
			"media data box is short"},
		{"fmp4 last mdat missing", "damage-fmp4", func(t testing.TB, b []byte) []byte { return b[:lastBox(b, "mdat")] },
			"points past the end of the file"},
		{"fmp4 trun count flipped", "damage-fmp4", func(t testing.TB, b []byte) []byte {
			b[boxAt(t, b, "trun", 2)+15] ^= 0x01
			return b
		}, "trun: expected size"},
		{"fmp4 tfdt goes back", "damage-fmp4", func(t testing.TB, b []byte) []byte {
			at := boxAt(t, b, "tfdt", 2) // the video's second fragment
			clear(b[at+12 : at+20])
			return b
		}, "fragment decode time 0 goes back"},
		{"fmp4 moof zeroed", "damage-fmp4", func(t testing.TB, b []byte) []byte {
			at := boxAt(t, b, "traf", 1)
			clear(b[at : at+64])
			return b
		}, "bad box header at offset"},
		{"fmp4 without moov", "damage-fmp4", func(t testing.TB, b []byte) []byte { return b[boxAt(t, b, "moof", 0):] },
			"ErrUnsupported: media segment without its moov"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.damage(t, bytes.Clone(clips[tc.clip]))
			src, err := quiet.Open(bytes.NewReader(b), int64(len(b)))
			frames := 0
			for err == nil {
				_, err = src.Next()
				frames++
			}
			if err == io.EOF {
				t.Fatalf("no error after %d frames", frames)
			}
			want, kind := tc.want, ErrCorrupt
			if s, ok := strings.CutPrefix(want, "ErrUnsupported: "); ok {
				want, kind = s, ErrUnsupported
			}
			if !errors.Is(err, kind) || !strings.Contains(err.Error(), want) {
				t.Fatalf("after %d frames: %v\nwant %v with %q", frames, err, kind, want)
			}
			t.Logf("after %d frames: %v", frames, err)
		})
	}
	t.Run("truncated at a dozen points", func(t *testing.T) { truncations(t, clips) })
}

// truncations cuts each clip at a dozen points. An MPEG-TS cut inside a
// packet, and an MP4 cut anywhere but between two top-level boxes, must
// be ErrCorrupt; an MP4 cut between boxes must be ErrCorrupt too, unless
// it only drops whole fragments (a shorter, valid fragmented file).
func truncations(t *testing.T, clips map[string][]byte) {
	for _, c := range []mediatest.Clip{damageTS, damageMP4, damageMP4MoovLast, damageFMP4} {
		b := clips[c.Name]
		boundary := map[int]bool{}
		isTS := strings.HasSuffix(c.File, ".ts")
		if !isTS {
			for off := 0; off < len(b); off += int(binary.BigEndian.Uint32(b[off:])) {
				boundary[off] = true
			}
		}
		for k := 1; k <= 12; k++ {
			cut := len(b) * k / 13
			if isTS && cut%188 == 0 {
				cut++
			}
			src, err := quiet.Open(bytes.NewReader(b[:cut]), int64(cut))
			for err == nil {
				_, err = src.Next()
			}
			if err == io.EOF && boundary[cut] && c.Name == damageFMP4.Name && bytes.Equal(b[cut+4:cut+8], []byte("moof")) {
				continue
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s cut to %d of %d bytes: %v, want ErrCorrupt", c.Name, cut, len(b), err)
			}
		}
	}
}

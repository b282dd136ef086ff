package demux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"

	"github.com/Eyevinn/mp4ff/avc"
	"github.com/Eyevinn/mp4ff/bits"
	"github.com/Eyevinn/mp4ff/hevc"
	"github.com/Eyevinn/mp4ff/mp4"

	"github.com/boxswarm/boxswarm/media"
)

// ISO BMFF (ISO/IEC 14496-12, 14496-15). The demuxer walks the top-level
// boxes once to find the moov and check that every box fits in the file,
// then reads each track through its own cursor: the sample table of the
// moov, then (when the moov has an mvex) the track's runs in every moof,
// one fragment at a time. Next takes the earliest of the tracks' next
// samples and reads just that sample: the order across tracks is exact
// however the file interleaves them, for one seek per sample, and nothing
// is buffered. Edit lists are ignored: timestamps are the media
// timeline's.
//
// An AAC sample entry without an AudioSpecificConfig (what ffmpeg writes
// when it remuxes ADTS into a fragmented MP4 with an empty moov) is taken
// as AAC LC, as ffmpeg itself decodes it; see guessASC.
//
// mp4ff decodes the leaf boxes (sample descriptions, tables, fragment
// headers, runs); the demuxer walks the containers itself, so boxes it
// does not need (udta, meta, edts, sgpd...) cannot fail the input.

// sampleNonSync is sample_is_non_sync_sample in the sample flags.
const sampleNonSync = 0x00010000

type mp4Demuxer struct {
	r      io.ReadSeeker
	size   int64
	log    *slog.Logger
	trex   map[uint32]*mp4.TrexBox
	frag   bool // the moov has an mvex: samples may follow in moofs
	tracks []media.Track
	t      []*mp4Track // parallel to tracks
	err    error
}

type mp4Track struct {
	id        uint32
	index     int
	codec     media.Codec
	timescale uint32
	tab       *sampleTables // nil for a moov without samples
	it        sampleIter
	cur       sample
	have      bool
	done      bool
	// sync flags of the container that disagree with the bitstream
	mismatches int
}

// sample is one sample of a track as the tables describe it.
type sample struct {
	n    int64 // 1-based sample number in the track
	off  int64
	size uint32
	dts  int64
	cto  int32
	dur  uint32
	sync bool
}

// box is a box header.
type box struct {
	typ  string
	off  int64 // of the header
	hdr  int64 // header length
	size int64 // header included
}

func (b box) end() int64 { return b.off + b.size }

// readBoxHeader reads the header of the top-level box at off. Boxes must
// end within the file.
func readBoxHeader(r io.ReadSeeker, off, size int64) (box, error) {
	if size-off < 8 {
		return box{}, fmt.Errorf("%w: %d stray bytes at offset %d, too few for a box", ErrCorrupt, size-off, off)
	}
	var h [16]byte
	n := int64(8)
	if size-off >= 16 {
		n = 16
	}
	if err := readAt(r, off, h[:n]); err != nil {
		return box{}, ioErr("read box header", off, err)
	}
	b, err := parseBoxHeader(h[:n], off, size-off)
	if err != nil {
		return box{}, err
	}
	return b, nil
}

// parseBoxHeader parses the header at the start of h, a box at file offset
// off with room bytes available to it.
func parseBoxHeader(h []byte, off, room int64) (box, error) {
	b := box{off: off, hdr: 8, typ: fourCC(h[4:8])}
	switch s := binary.BigEndian.Uint32(h); s {
	case 0: // to the end of the enclosing space
		b.size = room
	case 1:
		if len(h) < 16 {
			return b, fmt.Errorf("%w: %q box at offset %d: 64-bit size past the end", ErrCorrupt, b.typ, off)
		}
		b.hdr = 16
		ls := binary.BigEndian.Uint64(h[8:])
		if ls > math.MaxInt64 {
			return b, fmt.Errorf("%w: %q box at offset %d: size %d", ErrCorrupt, b.typ, off, ls)
		}
		b.size = int64(ls)
	default:
		b.size = int64(s)
	}
	if b.size < b.hdr {
		return b, fmt.Errorf("%w: %q box at offset %d: size %d is smaller than its header", ErrCorrupt, b.typ, off, b.size)
	}
	if b.size > room {
		what := ""
		switch b.typ {
		case "mdat":
			what = "media data box is short: "
		case "moof":
			what = "fragment is truncated: "
		}
		return b, fmt.Errorf("%w: %s%q box at offset %d declares %d bytes, only %d remain", ErrCorrupt, what, b.typ, off, b.size, room)
	}
	return b, nil
}

func fourCC(b []byte) string {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return fmt.Sprintf("%x", b)
		}
	}
	return string(b)
}

func plainType(t []byte) bool {
	for _, c := range t {
		if (c < 0x20 || c > 0x7e) && c != 0xa9 {
			return false
		}
	}
	return true
}

// child is a box inside a container held in memory.
type child struct {
	typ  string
	off  int64  // file offset
	raw  []byte // the whole box
	body []byte
}

// children returns the boxes of a container body at file offset base.
func children(body []byte, base int64, path string) ([]child, error) {
	var out []child
	for pos := 0; pos < len(body); {
		if len(body)-pos < 8 {
			return nil, fmt.Errorf("%w: %s: %d stray bytes at offset %d", ErrCorrupt, path, len(body)-pos, base+int64(pos))
		}
		h := body[pos:min(pos+16, len(body))]
		b, err := parseBoxHeader(h, base+int64(pos), int64(len(body)-pos))
		if err != nil {
			return nil, at(path, err)
		}
		// Size 0 (up to the end) is for the last top-level box only, and
		// the containers walked here hold only boxes with plain names: a
		// zeroed or overwritten header must not hide the boxes after it.
		if binary.BigEndian.Uint32(h) == 0 || !plainType(h[4:8]) {
			return nil, fmt.Errorf("%w: %s: bad box header at offset %d (% x)", ErrCorrupt, path, b.off, h[:8])
		}
		if len(out) == maxBoxes {
			return nil, fmt.Errorf("%w: %s: more than %d boxes", ErrUnsupported, path, maxBoxes)
		}
		raw := body[pos : pos+int(b.size)]
		out = append(out, child{typ: b.typ, off: b.off, raw: raw, body: raw[b.hdr:]})
		pos += int(b.size)
	}
	return out, nil
}

// decodeLeaf decodes one box with mp4ff.
func decodeLeaf[T mp4.Box](c child, path string) (T, error) {
	var zero T
	var bx mp4.Box
	err := safely(path+"/"+c.typ, func() error {
		var err error
		bx, err = mp4.DecodeBoxSR(uint64(c.off), bits.NewFixedSliceReader(c.raw))
		return err
	})
	if err != nil {
		if errors.Is(err, avc.ErrLengthSize) || errors.Is(err, hevc.ErrLengthSize) {
			return zero, fmt.Errorf("%w: %s: NAL unit lengths of other than 4 bytes", ErrUnsupported, path)
		}
		if errors.Is(err, ErrCorrupt) {
			return zero, err
		}
		return zero, fmt.Errorf("%w: %s/%s box at offset %d: %w", ErrCorrupt, path, c.typ, c.off, err)
	}
	t, ok := bx.(T)
	if !ok {
		return zero, fmt.Errorf("%w: %s/%s box at offset %d decodes as %T", ErrCorrupt, path, c.typ, c.off, bx)
	}
	return t, nil
}

func openMP4(r io.ReadSeeker, size int64, log *slog.Logger) (Source, error) {
	d := &mp4Demuxer{r: r, size: size, log: log, trex: map[uint32]*mp4.TrexBox{}}
	var moov *box
	segment := false
	for off, n := int64(0), 0; off < size; n++ {
		if n == maxTopBoxes {
			return nil, fmt.Errorf("%w: more than %d top-level boxes", ErrUnsupported, maxTopBoxes)
		}
		b, err := readBoxHeader(r, off, size)
		if err != nil {
			return nil, err
		}
		switch b.typ {
		case "moov":
			if moov != nil {
				return nil, fmt.Errorf("%w: a second moov box at offset %d", ErrCorrupt, b.off)
			}
			moov = &b
		case "moof", "styp", "sidx":
			segment = true
		}
		off = b.end()
	}
	if moov == nil {
		if segment {
			return nil, fmt.Errorf("%w: a fragmented MP4 media segment without its moov (initialization segment)", ErrUnsupported)
		}
		return nil, fmt.Errorf("%w: ISO BMFF without a moov box", ErrCorrupt)
	}
	if moov.size > maxMoov {
		return nil, fmt.Errorf("%w: moov box of %d bytes (limit %d)", ErrUnsupported, moov.size, maxMoov)
	}
	raw := make([]byte, moov.size)
	if err := readAt(r, moov.off, raw); err != nil {
		return nil, ioErr("read moov", moov.off, err)
	}
	skip, err := d.parseMoov(raw[moov.hdr:], moov.off+moov.hdr)
	if err != nil {
		return nil, err
	}
	// Tracks without a single sample are left out; avc3/hev1 tracks whose
	// sample entry lacks parameter sets take them from the first samples.
	var keep []*mp4Track
	for _, t := range d.t {
		t.it = d.newIter(t)
		s, err := t.it.next()
		if err == io.EOF {
			log.Warn("demux: skipping a track without samples", "container", "MP4", "track", t.id, "codec", t.codec.String())
			continue
		}
		if err != nil {
			return nil, err
		}
		t.cur, t.have = s, true
		keep = append(keep, t)
	}
	d.t = d.t[:0]
	d.tracks = d.tracks[:0]
	for _, t := range keep {
		tr := t.tab.track
		if t.codec.IsVideo() && !t.tab.ps.complete() {
			if tr, err = d.inBandConfig(t); err != nil {
				return nil, err
			}
		}
		if t.tab.noASC != nil {
			if tr, err = d.guessASC(t); err != nil {
				return nil, err
			}
		}
		t.index = len(d.tracks)
		d.t = append(d.t, t)
		d.tracks = append(d.tracks, tr)
	}
	if err := checkSkipped(log, "MP4", d.tracks, skip); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *mp4Demuxer) Tracks() []media.Track { return d.tracks }

func (d *mp4Demuxer) Next() (media.Frame, error) {
	if d.err != nil {
		return media.Frame{}, d.err
	}
	f, err := d.next()
	if err != nil {
		d.err = err
	}
	return f, err
}

func (d *mp4Demuxer) next() (media.Frame, error) {
	var best *mp4Track
	for _, t := range d.t {
		if !t.have && !t.done {
			s, err := t.it.next()
			if err == io.EOF {
				t.done = true
				if t.mismatches > 0 {
					d.log.Warn("demux: MP4 sync flags disagree with the bitstream", "track", t.id, "samples", t.mismatches)
				}
				continue
			}
			if err != nil {
				return media.Frame{}, err
			}
			t.cur, t.have = s, true
		}
		if t.have && (best == nil || mp4Before(t, best)) {
			best = t
		}
	}
	if best == nil {
		return media.Frame{}, io.EOF
	}
	s := best.cur
	best.have = false
	data, key, err := d.read(best, s, nil)
	if err != nil {
		return media.Frame{}, err
	}
	if best.codec.IsVideo() && key != s.sync {
		if best.mismatches == 0 {
			d.log.Warn("demux: MP4 sync flag disagrees with the bitstream; the bitstream wins",
				"track", best.id, "sample", s.n, "sync", s.sync, "idr_or_irap", key)
		}
		best.mismatches++
	}
	return media.Frame{Track: uint8(best.index), PTS: s.dts + int64(s.cto), DTS: s.dts, Duration: s.dur, Keyframe: key, Data: data}, nil
}

func mp4Before(a, b *mp4Track) bool {
	if c := cmpTime(a.cur.dts, a.timescale, b.cur.dts, b.timescale); c != 0 {
		return c < 0
	}
	if av, bv := a.codec.IsVideo(), b.codec.IsVideo(); av != bv {
		return av
	}
	return a.index < b.index
}

// read reads a sample; video becomes an Annex-B access unit.
func (d *mp4Demuxer) read(t *mp4Track, s sample, ps *paramSets) ([]byte, bool, error) {
	where := func() string {
		return fmt.Sprintf("track %d sample %d (%d bytes at offset %d)", t.id, s.n, s.size, s.off)
	}
	if s.size == 0 {
		return nil, false, fmt.Errorf("%w: %s is empty", ErrCorrupt, where())
	}
	if s.size > MaxFrame {
		return nil, false, fmt.Errorf("%w: %s is larger than %d bytes", ErrUnsupported, where(), MaxFrame)
	}
	if s.off < 0 || s.off > d.size-int64(s.size) {
		return nil, false, fmt.Errorf("%w: %s points past the end of the file (%d bytes)", ErrCorrupt, where(), d.size)
	}
	buf := make([]byte, s.size)
	if err := readAt(d.r, s.off, buf); err != nil {
		return nil, false, ioErr(fmt.Sprintf("read track %d sample %d", t.id, s.n), s.off, err)
	}
	if !t.codec.IsVideo() {
		return buf, true, nil
	}
	au, err := lengthPrefixedToAU(t.codec, buf, ps)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %s: %s: %v", ErrCorrupt, where(), t.codec, err)
	}
	return au.data, au.key, nil
}

// inBandConfig takes the parameter sets of a video track whose sample
// entry has none from its first samples.
func (d *mp4Demuxer) inBandConfig(t *mp4Track) (media.Track, error) {
	const maxScan = 256
	ps := t.tab.ps
	it := d.newIter(t)
	for i := 0; i < maxScan && !ps.done; i++ {
		s, err := it.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return media.Track{}, err
		}
		if _, _, err := d.read(t, s, ps); err != nil {
			return media.Track{}, err
		}
	}
	if !ps.complete() {
		return media.Track{}, fmt.Errorf("%w: track %d (%s): no parameter sets in the sample entry nor in the first %d samples", ErrCorrupt, t.id, t.codec, maxScan)
	}
	tr, err := videoTrack(t.codec, t.timescale, ps)
	if err != nil {
		return tr, at(fmt.Sprintf("track %d", t.id), err)
	}
	return tr, nil
}

// sampleTables is a track's moov description.
type sampleTables struct {
	track media.Track // config complete unless ps is incomplete
	ps    *paramSets  // video
	stts  *mp4.SttsBox
	ctts  *mp4.CttsBox
	stsc  *mp4.StscBox
	stsz  *mp4.StszBox
	stco  *mp4.StcoBox
	co64  *mp4.Co64Box
	stss  *mp4.StssBox
	// noASC is the sample entry of an AAC track without an
	// AudioSpecificConfig.
	noASC *mp4.AudioSampleEntryBox
}

func (d *mp4Demuxer) parseMoov(body []byte, base int64) ([]skipped, error) {
	kids, err := children(body, base, "moov")
	if err != nil {
		return nil, err
	}
	var skip []skipped
	for _, c := range kids {
		if c.typ != "mvex" {
			continue
		}
		d.frag = true
		mk, err := children(c.body, c.off+8, "moov/mvex")
		if err != nil {
			return nil, err
		}
		for _, m := range mk {
			if m.typ == "trex" {
				trex, err := decodeLeaf[*mp4.TrexBox](m, "moov/mvex")
				if err != nil {
					return nil, err
				}
				d.trex[trex.TrackID] = trex
			}
		}
	}
	ids := map[uint32]bool{}
	for _, c := range kids {
		if c.typ != "trak" {
			continue
		}
		id, t, sk, err := d.parseTrak(c)
		if err != nil {
			return nil, err
		}
		if ids[id] {
			return nil, fmt.Errorf("%w: two tracks with ID %d", ErrCorrupt, id)
		}
		ids[id] = true
		if sk != nil {
			if len(skip) == maxSkipped {
				return nil, fmt.Errorf("%w: more than %d tracks", ErrUnsupported, maxSkipped)
			}
			skip = append(skip, *sk)
			continue
		}
		if len(d.t) == MaxTracks {
			return nil, fmt.Errorf("%w: more than %d tracks", ErrUnsupported, MaxTracks)
		}
		d.t = append(d.t, t)
	}
	return skip, nil
}

// find returns the only box of a type among kids, nil if there is none.
func find(kids []child, typ, path string) (*child, error) {
	var f *child
	for i := range kids {
		if kids[i].typ == typ {
			if f != nil {
				return nil, fmt.Errorf("%w: %s: two %q boxes (offsets %d, %d)", ErrCorrupt, path, typ, f.off, kids[i].off)
			}
			f = &kids[i]
		}
	}
	return f, nil
}

func need(kids []child, typ, path string) (*child, error) {
	c, err := find(kids, typ, path)
	if err == nil && c == nil {
		err = fmt.Errorf("%w: %s has no %q box", ErrCorrupt, path, typ)
	}
	return c, err
}

// descend returns the children of the one box of type typ among kids.
func descend(kids []child, typ, path string) ([]child, string, error) {
	c, err := need(kids, typ, path)
	if err != nil {
		return nil, "", err
	}
	p := path + "/" + typ
	k, err := children(c.body, c.off+int64(len(c.raw)-len(c.body)), p)
	return k, p, err
}

// parseTrak reads a trak box: a supported track, or why it is skipped.
func (d *mp4Demuxer) parseTrak(c child) (uint32, *mp4Track, *skipped, error) {
	kids, err := children(c.body, c.off+int64(len(c.raw)-len(c.body)), "moov/trak")
	if err != nil {
		return 0, nil, nil, err
	}
	tkhd, err := need(kids, "tkhd", "moov/trak")
	if err != nil {
		return 0, nil, nil, err
	}
	id, err := fullBoxField(tkhd, 12, 20, "moov/trak")
	if err != nil {
		return 0, nil, nil, err
	}
	path := fmt.Sprintf("track %d", id)
	mdia, mpath, err := descend(kids, "mdia", path)
	if err != nil {
		return 0, nil, nil, err
	}
	mdhd, err := need(mdia, "mdhd", mpath)
	if err != nil {
		return 0, nil, nil, err
	}
	timescale, err := fullBoxField(mdhd, 12, 20, mpath)
	if err != nil {
		return 0, nil, nil, err
	}
	hdlr, err := need(mdia, "hdlr", mpath)
	if err != nil {
		return 0, nil, nil, err
	}
	if len(hdlr.body) < 12 {
		return 0, nil, nil, fmt.Errorf("%w: %s/hdlr at offset %d: %d bytes", ErrCorrupt, mpath, hdlr.off, len(hdlr.body))
	}
	handler := fourCC(hdlr.body[8:12])
	minf, ipath, err := descend(mdia, "minf", mpath)
	if err != nil {
		return 0, nil, nil, err
	}
	stbl, spath, err := descend(minf, "stbl", ipath)
	if err != nil {
		return 0, nil, nil, err
	}
	stsd, err := need(stbl, "stsd", spath)
	if err != nil {
		return 0, nil, nil, err
	}
	if len(stsd.body) < 16 {
		return 0, nil, nil, fmt.Errorf("%w: %s/stsd at offset %d: no sample entry", ErrCorrupt, spath, stsd.off)
	}
	entry := fourCC(stsd.body[12:16])
	where := fmt.Sprintf("track %d", id)
	var codec media.Codec
	switch {
	case handler == "vide" && (entry == "avc1" || entry == "avc3"):
		codec = media.H264
	case handler == "vide" && (entry == "hvc1" || entry == "hev1"):
		codec = media.H265
	case handler == "soun" && entry == "mp4a":
		codec = media.AAC
	default:
		kind, name := mp4EntryName(handler, entry)
		return id, nil, &skipped{where: where, kind: kind, what: name}, nil
	}
	if timescale == 0 {
		return 0, nil, nil, fmt.Errorf("%w: %s: media timescale 0", ErrCorrupt, mpath)
	}
	sd, err := decodeLeaf[*mp4.StsdBox](*stsd, spath)
	if err != nil {
		return 0, nil, nil, err
	}
	if len(sd.Children) != 1 {
		return 0, nil, nil, fmt.Errorf("%w: %s has %d sample descriptions", ErrUnsupported, where, len(sd.Children))
	}
	tab := &sampleTables{}
	switch codec {
	case media.H264, media.H265:
		v, ok := sd.Children[0].(*mp4.VisualSampleEntryBox)
		if !ok {
			return 0, nil, nil, fmt.Errorf("%w: %s: %s sample entry decodes as %T", ErrCorrupt, where, entry, sd.Children[0])
		}
		tab.ps = &paramSets{codec: codec}
		if codec == media.H264 {
			if v.AvcC == nil {
				return 0, nil, nil, fmt.Errorf("%w: %s: %s sample entry without avcC", ErrCorrupt, where, entry)
			}
			addParamSets(tab.ps, codec, v.AvcC.SPSnalus, v.AvcC.PPSnalus)
		} else {
			if v.HvcC == nil {
				return 0, nil, nil, fmt.Errorf("%w: %s: %s sample entry without hvcC", ErrCorrupt, where, entry)
			}
			h := v.HvcC.DecConfRec
			addParamSets(tab.ps, codec, h.GetNalusForType(hevc.NALU_VPS), h.GetNalusForType(hevc.NALU_SPS), h.GetNalusForType(hevc.NALU_PPS))
		}
		tab.track = media.Track{Codec: codec, Timescale: timescale}
		if tab.ps.complete() {
			tab.ps.done = true
			if tab.track, err = videoTrack(codec, timescale, tab.ps); err != nil {
				return 0, nil, nil, at(where, err)
			}
		}
	case media.AAC:
		a, ok := sd.Children[0].(*mp4.AudioSampleEntryBox)
		if !ok || a.Esds == nil || a.Esds.DecConfigDescriptor == nil {
			return 0, nil, nil, fmt.Errorf("%w: %s: mp4a sample entry without an elementary stream descriptor", ErrCorrupt, where)
		}
		dcd := a.Esds.DecConfigDescriptor
		switch dcd.ObjectType {
		case 0x40, 0x66, 0x67, 0x68: // MPEG-4 audio, MPEG-2 AAC
		default:
			return id, nil, &skipped{where: where, kind: "audio", what: mp4aObjectName(dcd.ObjectType)}, nil
		}
		var asc []byte
		if dcd.DecSpecificInfo != nil {
			asc = dcd.DecSpecificInfo.DecConfig
		}
		if len(asc) == 0 {
			// ffmpeg writes this when it remuxes ADTS into an MP4 with an
			// empty moov. Open makes one up from the first sample.
			if dcd.ObjectType != 0x40 && dcd.ObjectType != 0x67 {
				return 0, nil, nil, fmt.Errorf("%w: %s: mp4a (object type indication 0x%02x) without an AudioSpecificConfig", ErrCorrupt, where, dcd.ObjectType)
			}
			tab.noASC = a
			tab.track = media.Track{Codec: codec, Timescale: timescale}
			break
		}
		info, err := aacTrack(asc, timescale)
		if ce, ok := errors.AsType[*codecError](err); ok {
			return id, nil, &skipped{where: where, kind: ce.kind, what: ce.name}, nil
		}
		if err != nil {
			return 0, nil, nil, at(where, err)
		}
		tab.track = info.track
	}
	for _, l := range []struct {
		typ string
		dst any
	}{{"stts", &tab.stts}, {"ctts", &tab.ctts}, {"stsc", &tab.stsc}, {"stsz", &tab.stsz}, {"stco", &tab.stco}, {"co64", &tab.co64}, {"stss", &tab.stss}} {
		c, err := find(stbl, l.typ, spath)
		if err != nil {
			return 0, nil, nil, err
		}
		if c == nil {
			continue
		}
		switch dst := l.dst.(type) {
		case **mp4.SttsBox:
			*dst, err = decodeLeaf[*mp4.SttsBox](*c, spath)
		case **mp4.CttsBox:
			*dst, err = decodeLeaf[*mp4.CttsBox](*c, spath)
		case **mp4.StscBox:
			*dst, err = decodeLeaf[*mp4.StscBox](*c, spath)
		case **mp4.StszBox:
			*dst, err = decodeLeaf[*mp4.StszBox](*c, spath)
		case **mp4.StcoBox:
			*dst, err = decodeLeaf[*mp4.StcoBox](*c, spath)
		case **mp4.Co64Box:
			*dst, err = decodeLeaf[*mp4.Co64Box](*c, spath)
		case **mp4.StssBox:
			*dst, err = decodeLeaf[*mp4.StssBox](*c, spath)
		}
		if err != nil {
			return 0, nil, nil, err
		}
	}
	if c, _ := find(stbl, "stz2", spath); c != nil && tab.stsz == nil {
		return 0, nil, nil, fmt.Errorf("%w: %s: compact sample sizes (stz2)", ErrUnsupported, where)
	}
	switch {
	case tab.stts == nil || tab.stsc == nil || tab.stsz == nil:
		return 0, nil, nil, fmt.Errorf("%w: %s lacks stts, stsc or stsz", ErrCorrupt, spath)
	case tab.stco == nil && tab.co64 == nil:
		return 0, nil, nil, fmt.Errorf("%w: %s has neither stco nor co64", ErrCorrupt, spath)
	case tab.stco != nil && tab.co64 != nil:
		return 0, nil, nil, fmt.Errorf("%w: %s has both stco and co64", ErrCorrupt, spath)
	}
	for i, e := range tab.stsc.Entries {
		if (i == 0 && e.FirstChunk != 1) || (i > 0 && e.FirstChunk <= tab.stsc.Entries[i-1].FirstChunk) {
			return 0, nil, nil, fmt.Errorf("%w: %s/stsc entry %d: first chunk %d", ErrCorrupt, spath, i, e.FirstChunk)
		}
	}
	return id, &mp4Track{id: id, codec: codec, timescale: timescale, tab: tab}, nil, nil
}

// fullBoxField reads the 32-bit field at v0 (version 0) or v1 (version 1)
// bytes into a full box's body.
func fullBoxField(c *child, v0, v1 int, path string) (uint32, error) {
	at := v0
	if len(c.body) > 0 && c.body[0] == 1 {
		at = v1
	}
	if len(c.body) < at+4 {
		return 0, fmt.Errorf("%w: %s/%s at offset %d: %d bytes", ErrCorrupt, path, c.typ, c.off, len(c.body))
	}
	return binary.BigEndian.Uint32(c.body[at:]), nil
}

func addParamSets(ps *paramSets, c media.Codec, lists ...[][]byte) {
	for _, l := range lists {
		for _, nal := range l {
			if k, err := classify(c, nal); err == nil && (k == nalVPS || k == nalSPS || k == nalPPS) {
				ps.add(k, nal)
			}
		}
	}
}

// mp4EntryName names a sample entry the package does not carry.
func mp4EntryName(handler, entry string) (kind, name string) {
	names := map[string]string{
		"mp4v": "MPEG-4 Visual", "vp08": "VP8", "vp09": "VP9", "av01": "AV1", "dvh1": "Dolby Vision", "dvhe": "Dolby Vision",
		"dva1": "Dolby Vision", "dvav": "Dolby Vision", "encv": "encrypted video", "mjpa": "Motion JPEG", "jpeg": "Motion JPEG",
		"mjpg": "Motion JPEG", "apch": "ProRes", "apcn": "ProRes", "apcs": "ProRes", "apco": "ProRes", "ap4h": "ProRes",
		"vvc1": "H.266", "vvi1": "H.266", "s263": "H.263", "avs3": "AVS3", "mp2v": "MPEG-2",
		".mp3": "MP3", "ac-3": "AC-3", "ec-3": "E-AC-3", "ac-4": "AC-4", "Opus": "Opus", "fLaC": "FLAC", "alac": "ALAC",
		"lpcm": "PCM", "sowt": "PCM", "twos": "PCM", "in24": "PCM", "in32": "PCM", "fl32": "PCM", "fl64": "PCM", "raw ": "PCM",
		"enca": "encrypted audio", "samr": "AMR", "sawb": "AMR-WB", "dtsc": "DTS", "dtsh": "DTS-HD", "dtsl": "DTS-HD",
		"dtse": "DTS Express", "mha1": "MPEG-H 3D Audio", "mha2": "MPEG-H 3D Audio", "mhm1": "MPEG-H 3D Audio",
		"mhm2": "MPEG-H 3D Audio", "iamf": "IAMF", "ulaw": "G.711", "alaw": "G.711",
		"tx3g": "3GPP timed text", "wvtt": "WebVTT", "stpp": "TTML", "c608": "CEA-608 captions", "c708": "CEA-708 captions",
		"tmcd": "timecode",
	}
	switch handler {
	case "vide":
		kind = "video"
	case "soun":
		kind = "audio"
	case "subt", "sbtl", "text", "clcp":
		kind = "subtitle"
	default:
		kind = "data"
	}
	name = names[entry]
	if name == "" {
		name = fmt.Sprintf("sample entry %q", entry)
	}
	switch {
	case kind == "data":
		name = fmt.Sprintf("%s track (handler %q)", name, handler)
	case entry == "avc1" || entry == "avc3" || entry == "hvc1" || entry == "hev1" || entry == "mp4a":
		name = fmt.Sprintf("%q in a %q track", entry, handler)
	}
	return kind, name
}

func mp4aObjectName(oti byte) string {
	switch oti {
	case 0x69, 0x6b:
		return "MP3"
	case 0x6a:
		return "MPEG-1 video in audio"
	case 0xa5:
		return "AC-3"
	case 0xa6:
		return "E-AC-3"
	case 0xa9:
		return "DTS"
	case 0xaa, 0xab:
		return "DTS-HD"
	case 0xac:
		return "DTS Express"
	case 0xad:
		return "Opus"
	case 0xdd:
		return "Vorbis"
	case 0xe1:
		return "QCELP"
	}
	return fmt.Sprintf("mp4a object type indication 0x%02x", oti)
}

// guessASC makes up the AudioSpecificConfig of an AAC track that has
// none, as ffmpeg does to play it: AAC LC at the sample entry's rate. The
// entry's channel count is not to be trusted (ffmpeg writes 2 when it does
// not know), so the first syntax element of the first access unit decides
// between mono and stereo: a single channel element (SCE) starts mono, and
// the layouts of 3 channels and more; a channel pair (CPE) only stereo.
// Fill and data elements before it (ffmpeg's encoder starts with a fill
// element) are skipped.
func (d *mp4Demuxer) guessASC(t *mp4Track) (media.Track, error) {
	a := t.tab.noASC
	fail := func(why string) (media.Track, error) {
		return media.Track{}, fmt.Errorf("%w: track %d: mp4a without an AudioSpecificConfig, %s", ErrCorrupt, t.id, why)
	}
	data, _, err := d.read(t, t.cur, nil)
	if err != nil {
		return media.Track{}, err
	}
	sri := -1
	for i, r := range []int{96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350} {
		if r == int(a.SampleRate) {
			sri = i
		}
	}
	if sri < 0 {
		return fail(fmt.Sprintf("and a sample rate of %d Hz", a.SampleRate))
	}
	var cc byte
	switch el := firstChannelElement(data); {
	case el == 1: // CPE
		cc = 2
	case el == 0 && a.ChannelCount >= 3 && a.ChannelCount <= 6:
		cc = byte(a.ChannelCount)
	case el == 0 && a.ChannelCount == 8:
		cc = 7
	case el == 0:
		cc = 1
	default:
		return fail(fmt.Sprintf("and a first AAC element of type %d", el))
	}
	asc := adtsHeader{objectType: 2, srIndex: uint8(sri), channelConfig: cc}.asc()
	info, err := aacTrack(asc, t.timescale)
	if err != nil {
		return media.Track{}, at(fmt.Sprintf("track %d", t.id), err)
	}
	d.log.Warn("demux: mp4a without an AudioSpecificConfig; assuming AAC LC", "track", t.id,
		"rate", a.SampleRate, "channels", info.track.Channels, "entry_channels", a.ChannelCount)
	return info.track, nil
}

// firstChannelElement returns the type of the first element of an AAC
// raw_data_block (ISO/IEC 14496-3 4.4.2.1) that is not a fill or data
// stream element; -1 if the block ends first.
func firstChannelElement(b []byte) int {
	pos, short := 0, false
	read := func(n int) int {
		v := 0
		for range n {
			if pos >= 8*len(b) {
				short = true
				return 0
			}
			v = v<<1 | int(b[pos/8]>>(7-pos%8)&1)
			pos++
		}
		return v
	}
	for range 16 {
		el := read(3)
		switch el {
		case 4: // DSE: tag, align flag, count, data
			read(4)
			align := read(1)
			n := read(8)
			if n == 255 {
				n += read(8)
			}
			if align == 1 {
				pos = (pos + 7) &^ 7
			}
			pos += 8 * n
		case 6: // FIL: count, payload
			n := read(4)
			if n == 15 {
				n += read(8) - 1
			}
			pos += 8 * n
		}
		if short || pos > 8*len(b) {
			return -1
		}
		if el != 4 && el != 6 {
			return el
		}
	}
	return -1
}

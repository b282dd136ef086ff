package demux

import (
	"fmt"
	"io"
	"math"

	"github.com/Eyevinn/mp4ff/mp4"
)

// sampleIter walks one track's samples: first the moov's sample table,
// then, in a fragmented file, the track's runs in each moof in file
// order. It holds the tables and at most one fragment's run table.
type sampleIter struct {
	d *mp4Demuxer
	t *mp4Track
	n int64 // samples returned

	tab     stblCursor
	inTable bool

	nextBox int64 // top-level offset where the search for moofs resumes
	frag    fragCursor
	lastDTS int64 // of the last sample returned
	endDTS  int64 // where the next sample starts without a tfdt

	gapLogged bool
}

func (d *mp4Demuxer) newIter(t *mp4Track) sampleIter {
	it := sampleIter{d: d, t: t, inTable: true, lastDTS: math.MinInt64}
	it.tab = stblCursor{t: t.tab, chunk: -1}
	return it
}

func (it *sampleIter) next() (sample, error) {
	if it.inTable {
		s, err := it.tab.next(it.t.id)
		if err == nil {
			return it.ret(s), nil
		}
		if err != io.EOF {
			return s, err
		}
		it.inTable, it.endDTS = false, it.tab.dts
	}
	if !it.d.frag {
		return sample{}, io.EOF
	}
	for {
		s, ok, err := it.frag.next(it)
		if err != nil {
			return s, err
		}
		if ok {
			return it.ret(s), nil
		}
		// The fragment is done: find the next moof.
		found := false
		for it.nextBox < it.d.size && !found {
			b, err := readBoxHeader(it.d.r, it.nextBox, it.d.size)
			if err != nil {
				return sample{}, err
			}
			it.nextBox = b.end()
			if b.typ == "moof" {
				if err := it.loadMoof(b); err != nil {
					return sample{}, err
				}
				found = true
			}
		}
		if !found {
			return sample{}, io.EOF
		}
	}
}

func (it *sampleIter) ret(s sample) sample {
	it.n++
	s.n = it.n
	it.lastDTS = s.dts
	return s
}

// stblCursor walks a sample table: stts for decode times and durations,
// ctts for composition offsets, stsc and stco/co64 for chunks, stsz for
// sizes, stss for sync samples.
type stblCursor struct {
	t *sampleTables
	i uint32 // samples done

	sttsIdx  int
	sttsLeft uint32
	delta    uint32
	cttsIdx  int
	cttsLeft uint32
	cto      int32
	stscIdx  int
	chunk    int64 // current chunk, 0-based; -1 before the first
	left     uint32
	pos      int64
	stssIdx  int
	dts      int64
}

func (c *stblCursor) chunks() int64 {
	if c.t.co64 != nil {
		return int64(len(c.t.co64.ChunkOffset))
	}
	return int64(len(c.t.stco.ChunkOffset))
}

func (c *stblCursor) chunkOffset(i int64) int64 {
	if c.t.co64 != nil {
		o := c.t.co64.ChunkOffset[i]
		if o > math.MaxInt64 {
			return -1
		}
		return int64(o)
	}
	return int64(c.t.stco.ChunkOffset[i])
}

func (c *stblCursor) next(track uint32) (sample, error) {
	t := c.t
	if t == nil || c.i >= t.stsz.SampleNumber {
		return sample{}, io.EOF
	}
	n := int64(c.i) + 1
	fail := func(format string, a ...any) (sample, error) {
		return sample{}, fmt.Errorf("%w: track %d sample %d: %s", ErrCorrupt, track, n, fmt.Sprintf(format, a...))
	}
	for c.sttsLeft == 0 {
		if c.sttsIdx >= len(t.stts.SampleCount) {
			return fail("no stts entry (stsz lists %d samples)", t.stsz.SampleNumber)
		}
		c.sttsLeft, c.delta = t.stts.SampleCount[c.sttsIdx], t.stts.SampleTimeDelta[c.sttsIdx]
		c.sttsIdx++
	}
	c.sttsLeft--
	if t.ctts != nil {
		for c.cttsLeft == 0 {
			if c.cttsIdx >= len(t.ctts.SampleOffset) {
				return fail("no ctts entry (stsz lists %d samples)", t.stsz.SampleNumber)
			}
			// mp4ff keeps running totals in uint32; the difference undoes a wrap.
			c.cttsLeft = t.ctts.EndSampleNr[c.cttsIdx+1] - t.ctts.EndSampleNr[c.cttsIdx]
			c.cto = t.ctts.SampleOffset[c.cttsIdx]
			c.cttsIdx++
		}
		c.cttsLeft--
	}
	for c.left == 0 {
		c.chunk++
		if c.chunk >= c.chunks() {
			return fail("past the last of %d chunks", c.chunks())
		}
		e := t.stsc.Entries
		if len(e) == 0 {
			return fail("empty stsc")
		}
		for c.stscIdx+1 < len(e) && int64(e[c.stscIdx+1].FirstChunk) <= c.chunk+1 {
			c.stscIdx++
		}
		c.left = e[c.stscIdx].SamplesPerChunk
		c.pos = c.chunkOffset(c.chunk)
	}
	size := t.stsz.SampleUniformSize
	if size == 0 {
		size = t.stsz.SampleSize[c.i]
	}
	sync := true
	if t.stss != nil {
		for c.stssIdx < len(t.stss.SampleNumber) && int64(t.stss.SampleNumber[c.stssIdx]) < n {
			c.stssIdx++
		}
		sync = c.stssIdx < len(t.stss.SampleNumber) && int64(t.stss.SampleNumber[c.stssIdx]) == n
	}
	s := sample{off: c.pos, size: size, dts: c.dts, cto: c.cto, dur: c.delta, sync: sync}
	if c.pos < 0 || c.pos > math.MaxInt64-int64(size) {
		return fail("offset %d", c.pos)
	}
	if c.dts > math.MaxInt64-int64(c.delta) {
		return fail("decode time overflows")
	}
	c.pos += int64(size)
	c.dts += int64(c.delta)
	c.left--
	c.i++
	return s, nil
}

// fragCursor walks one moof's runs of a track.
type fragCursor struct {
	runs []fragRun
	ri   int
	si   int
	pos  int64
	dts  int64
}

type fragRun struct {
	tfhd  *mp4.TfhdBox
	trun  *mp4.TrunBox
	trex  *mp4.TrexBox
	start int64 // data offset of the run's first sample
	dts   int64 // decode time of the run's first sample, -1: continue
}

// next returns the fragment's next sample of the track, ok false when the
// fragment has no more.
func (f *fragCursor) next(it *sampleIter) (sample, bool, error) {
	for f.ri < len(f.runs) {
		r := &f.runs[f.ri]
		if f.si == 0 {
			f.pos = r.start
			if r.dts >= 0 {
				if r.dts < it.lastDTS {
					return sample{}, false, fmt.Errorf("%w: track %d: fragment decode time %d goes back before %d (sample %d)", ErrCorrupt, it.t.id, r.dts, it.lastDTS, it.n+1)
				}
				if r.dts != it.endDTS && it.n > 0 && !it.gapLogged {
					// Legal, but it is also what a lost fragment looks like.
					it.d.log.Warn("demux: fragment decode time leaves a gap or overlap", "track", it.t.id, "sample", it.n+1, "tfdt", r.dts, "expected", it.endDTS)
					it.gapLogged = true
				}
				f.dts = r.dts
			} else if f.ri == 0 {
				f.dts = it.endDTS
			}
		}
		if f.si >= len(r.trun.Samples) {
			f.ri, f.si = f.ri+1, 0
			continue
		}
		i := f.si
		f.si++
		dur, size, flags := runDefaults(r, i)
		cto := int32(0)
		if r.trun.HasSampleCompositionTimeOffset() {
			cto = r.trun.Samples[i].CompositionTimeOffset
		}
		s := sample{off: f.pos, size: size, dts: f.dts, cto: cto, dur: dur, sync: flags&sampleNonSync == 0}
		if f.pos > math.MaxInt64-int64(size) || f.dts > math.MaxInt64-int64(dur) {
			return sample{}, false, fmt.Errorf("%w: track %d sample %d: offset or decode time overflows", ErrCorrupt, it.t.id, it.n+1)
		}
		f.pos += int64(size)
		f.dts += int64(dur)
		it.endDTS = f.dts
		return s, true, nil
	}
	return sample{}, false, nil
}

// runDefaults resolves a run sample's duration, size and flags: the run's
// own, else the first-sample flags, the tfhd defaults, the trex defaults.
func runDefaults(r *fragRun, i int) (dur, size, flags uint32) {
	s := r.trun.Samples[i]
	switch {
	case r.trun.HasSampleDuration():
		dur = s.Dur
	case r.tfhd.HasDefaultSampleDuration():
		dur = r.tfhd.DefaultSampleDuration
	case r.trex != nil:
		dur = r.trex.DefaultSampleDuration
	}
	switch {
	case r.trun.HasSampleSize():
		size = s.Size
	case r.tfhd.HasDefaultSampleSize():
		size = r.tfhd.DefaultSampleSize
	case r.trex != nil:
		size = r.trex.DefaultSampleSize
	}
	switch {
	case r.trun.HasSampleFlags():
		flags = s.Flags
	case i == 0 && r.trun.HasFirstSampleFlags():
		flags, _ = r.trun.FirstSampleFlags()
	case r.tfhd.HasDefaultSampleFlags():
		flags = r.tfhd.DefaultSampleFlags
	case r.trex != nil:
		flags = r.trex.DefaultSampleFlags
	}
	return dur, size, flags
}

// loadMoof reads a moof and keeps the runs of the iterator's track. Data
// offsets follow ISO/IEC 14496-12 8.8.7: the tfhd's base data offset, else
// the moof's start when default-base-is-moof is set or for the first traf,
// else the end of the previous traf's data.
func (it *sampleIter) loadMoof(b box) error {
	if b.size > maxMoof {
		return fmt.Errorf("%w: moof at offset %d has %d bytes (limit %d)", ErrUnsupported, b.off, b.size, maxMoof)
	}
	raw := make([]byte, b.size)
	if err := readAt(it.d.r, b.off, raw); err != nil {
		return ioErr("read moof", b.off, err)
	}
	path := fmt.Sprintf("moof at offset %d", b.off)
	kids, err := children(raw[b.hdr:], b.off+b.hdr, path)
	if err != nil {
		return err
	}
	it.frag = fragCursor{}
	prevEnd := b.off
	firstTraf := true
	for _, c := range kids {
		if c.typ != "traf" {
			continue
		}
		tpath := path + "/traf"
		tk, err := children(c.body, c.off+int64(len(c.raw)-len(c.body)), tpath)
		if err != nil {
			return err
		}
		th, err := need(tk, "tfhd", tpath)
		if err != nil {
			return err
		}
		tfhd, err := decodeLeaf[*mp4.TfhdBox](*th, tpath)
		if err != nil {
			return err
		}
		mine := tfhd.TrackID == it.t.id
		var base int64
		switch {
		case tfhd.HasBaseDataOffset():
			if tfhd.BaseDataOffset > math.MaxInt64 {
				return fmt.Errorf("%w: %s: base data offset %d", ErrCorrupt, tpath, tfhd.BaseDataOffset)
			}
			base = int64(tfhd.BaseDataOffset)
		case tfhd.DefaultBaseIfMoof() || firstTraf:
			base = b.off
		default:
			base = prevEnd
		}
		firstTraf = false
		dts := int64(-1)
		if mine {
			if c, err := find(tk, "tfdt", tpath); err != nil {
				return err
			} else if c != nil {
				tfdt, err := decodeLeaf[*mp4.TfdtBox](*c, tpath)
				if err != nil {
					return err
				}
				if tfdt.BaseMediaDecodeTime() > math.MaxInt64/2 {
					return fmt.Errorf("%w: %s: base media decode time %d", ErrCorrupt, tpath, tfdt.BaseMediaDecodeTime())
				}
				dts = int64(tfdt.BaseMediaDecodeTime())
			}
		}
		trex := it.d.trex[tfhd.TrackID]
		pos := base
		for _, rc := range tk {
			if rc.typ != "trun" {
				continue
			}
			trun, err := decodeLeaf[*mp4.TrunBox](rc, tpath)
			if err != nil {
				return err
			}
			if trun.HasDataOffset() {
				pos = base + int64(trun.DataOffset)
			}
			r := fragRun{tfhd: tfhd, trun: trun, trex: trex, start: pos, dts: dts}
			dts = -1 // later runs continue
			for i := range trun.Samples {
				_, size, _ := runDefaults(&r, i)
				pos += int64(size)
			}
			if mine {
				it.frag.runs = append(it.frag.runs, r)
			}
		}
		prevEnd = pos
	}
	return nil
}

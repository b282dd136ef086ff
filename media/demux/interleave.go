package demux

import (
	"github.com/boxswarm/boxswarm/media"
)

// interleaver puts the frames of a multiplex that arrive track by track
// (MPEG-TS) in decoding order across tracks, and sets each frame's
// duration from the next frame of its track.
//
// A frame leaves when it is the earliest head of all queues, its track's
// next frame is known (or the track ended), and no live track's queue is
// empty, since an empty queue could still deliver something earlier. If
// the queued frames span more than interleaveWindow seconds or hold more
// than MaxBuffered bytes, the input is not interleaved as a multiplex
// should be (a track ended early, or paused): then the earliest head
// leaves at once, without waiting for empty queues, taking the track's
// previous duration (AAC: one frame's) if its successor is not known yet.
// Order within a track is kept whatever happens; order across tracks is
// exact whenever the input keeps its tracks within the window.
type interleaver struct {
	q     []ilTrack
	bytes int
}

type ilTrack struct {
	codec     media.Codec
	timescale uint32
	index     uint8 // Frame.Track
	// frameDur is the fallback duration of the last frame: AAC one
	// frame's duration, video 0 (then the previous frame's duration).
	frameDur uint32

	frames  []media.Frame // FIFO
	ended   bool
	pushed  bool   // a frame was ever pushed
	lastDTS int64  // of the last pushed frame
	lastDur uint32 // the last duration learnt from a successor
}

func (il *interleaver) push(i int, f media.Frame) {
	q := &il.q[i]
	if n := len(q.frames); n > 0 {
		last := &q.frames[n-1]
		last.Duration = uint32(f.DTS - last.DTS) // the caller checked the range
		q.lastDur = last.Duration
	}
	q.frames = append(q.frames, f)
	q.pushed, q.lastDTS = true, f.DTS
	il.bytes += len(f.Data)
}

func (il *interleaver) endAll() {
	for i := range il.q {
		il.q[i].ended = true
	}
}

// pop returns the next frame if it can be known without reading more.
func (il *interleaver) pop() (media.Frame, bool) {
	forced := il.bytes > MaxBuffered || il.spanOver(interleaveWindow)
	best := -1
	for i := range il.q {
		q := &il.q[i]
		if len(q.frames) == 0 {
			if !q.ended && !forced {
				return media.Frame{}, false
			}
			continue
		}
		if best < 0 || il.before(i, best) {
			best = i
		}
	}
	if best < 0 {
		return media.Frame{}, false
	}
	q := &il.q[best]
	f := q.frames[0]
	if len(q.frames) == 1 {
		if !q.ended && !forced {
			return media.Frame{}, false
		}
		f.Duration = q.frameDur
		if f.Duration == 0 {
			f.Duration = q.lastDur
		}
	}
	q.frames[0] = media.Frame{}
	q.frames = q.frames[1:]
	if len(q.frames) == 0 {
		q.frames = nil
	}
	il.bytes -= len(f.Data)
	f.Track = q.index
	return f, true
}

func (il *interleaver) before(i, j int) bool {
	a, b := &il.q[i], &il.q[j]
	if c := cmpTime(a.frames[0].DTS, a.timescale, b.frames[0].DTS, b.timescale); c != 0 {
		return c < 0
	}
	if av, bv := a.codec.IsVideo(), b.codec.IsVideo(); av != bv {
		return av
	}
	return a.index < b.index
}

// spanOver reports whether the queued frames span more than sec seconds
// of decoding time.
func (il *interleaver) spanOver(sec int64) bool {
	lo, hi := -1, -1
	for i := range il.q {
		q := &il.q[i]
		if len(q.frames) == 0 {
			continue
		}
		if lo < 0 || cmpTime(q.frames[0].DTS, q.timescale, il.q[lo].frames[0].DTS, il.q[lo].timescale) < 0 {
			lo = i
		}
		if hi < 0 || cmpTime(q.lastDTS, q.timescale, il.q[hi].lastDTS, il.q[hi].timescale) > 0 {
			hi = i
		}
	}
	if lo < 0 {
		return false
	}
	// hi/ts_hi - lo/ts_lo > sec, exactly: hi/ts_hi > (lo + sec*ts_lo)/ts_lo.
	l, h := &il.q[lo], &il.q[hi]
	return cmpTime(h.lastDTS, h.timescale, l.frames[0].DTS+sec*int64(l.timescale), l.timescale) > 0
}

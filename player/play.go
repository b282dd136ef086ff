package player

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/player/sink"
)

// Play plays title id into s until the title ends, ctx ends, Stop is
// called, or a frame fails. It calls s.Start before the first frame and
// s.Close at the end, and returns the first error of the two.
func (p *Player) Play(ctx context.Context, id media.ID, s sink.Sink, from From) (err error) {
	log := p.opts.Log.With("title", id)
	_, signed, err := p.src.Manifest(id)
	if err != nil {
		return fmt.Errorf("title %s: %w", id, err)
	}
	// The manifest is checked here with the player's own keys, whatever
	// the store did: the player trusts no other process.
	m, err := media.Verify(signed, p.opts.MediaKeys...)
	if err != nil {
		return fmt.Errorf("title %s: %w", id, err)
	}
	if m.ID != id {
		return fmt.Errorf("title %s: the store returned the manifest of %s", id, m.ID)
	}
	t, err := openTitle(m, id)
	if err != nil {
		return err
	}
	unlock, err := p.src.Lock(id, "playing")
	if err != nil {
		return fmt.Errorf("title %s: %w", id, err)
	}
	defer unlock()
	if p.opts.Keys == nil {
		return fmt.Errorf("title %s: no key source", id)
	}
	secret, err := p.opts.Keys.ContentKey(ctx, id)
	if err != nil {
		return fmt.Errorf("title %s: %w", id, err)
	}
	defer secret.Destroy()
	var fc *media.FrameCipher
	erase(func() { fc, err = media.NewFrameCipher(secret.Bytes(), id) })
	if err != nil {
		return fmt.Errorf("title %s: %w", id, err)
	}
	if err := s.Start(ctx, m.Tracks); err != nil {
		return fmt.Errorf("title %s: start decoder: %w", id, err)
	}
	pl := &playback{p: p, t: t, sink: s, fc: fc, speed: 1, lastShown: -1, log: log}
	pl.pace.on = p.opts.Paced
	defer pl.wipe()
	start, err := pl.startIndex(from)
	if err != nil {
		s.Close()
		return err
	}
	var dur time.Duration
	if t.video >= 0 {
		dur = ticks(m.Duration(uint8(t.video)), m.Tracks[t.video].Timescale)
	}
	p.setStatus(func(st *Status) { *st = Status{Title: id, State: Playing, Speed: 1, Duration: dur} })
	defer p.setStatus(func(st *Status) { st.State = Stopped })
	log.Info("playback started", "frame", start, "frames", m.NumFrames(), "erases_key_schedules", ErasesKeySchedules)
	runErr := pl.run(ctx, start)
	closeErr := s.Close()
	switch {
	case runErr == nil:
		// Finished: the next play starts from the beginning.
		if err := p.src.SetPosition(id, 0); err != nil {
			log.Warn("reset resume position", "err", err)
		}
		log.Info("playback finished")
		if closeErr != nil {
			return fmt.Errorf("title %s: decoder: %w", id, closeErr)
		}
		return nil
	default:
		pl.savePosition()
		var fe *FrameError
		if errors.As(runErr, &fe) {
			log.Error("playback stopped on a bad frame", "frame", fe.Index, "track", fe.Track, "pts", fe.PTS, "err", fe.Err)
		}
		return runErr
	}
}

// playback is one run of Play.
type playback struct {
	p          *Player
	t          *title
	sink       sink.Sink
	fc         *media.FrameCipher
	log        *slog.Logger
	sealed     []byte
	plain      []byte
	speed      int
	paused     bool
	lastShown  int // last video frame handed to the sink, -1 before any
	savedAt    time.Duration
	contiguous int // pieces below this are known present
	pace       pacer
}

func (pl *playback) startIndex(from From) (int, error) {
	t := pl.t
	if from.Resume {
		f, ok, err := pl.p.src.Position(t.id)
		if err != nil {
			return 0, fmt.Errorf("title %s: resume position: %w", t.id, err)
		}
		if ok && f > 0 && f < t.m.NumFrames() {
			return t.keyframes[t.keyframeSlot(f)], nil
		}
		return t.keyframes[0], nil
	}
	return t.keyframeAtOrBefore(from.At), nil
}

func (pl *playback) run(ctx context.Context, i int) error {
	n := pl.t.m.NumFrames()
	pl.pace.reset(pl.t.pts(i))
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		jump, err := pl.controls(ctx, &i)
		if err != nil {
			return err
		}
		if jump {
			if err := pl.sink.Discontinuity(ctx); err != nil {
				return fmt.Errorf("decoder: %w", err)
			}
			pl.pace.reset(pl.t.pts(i))
		}
		if pl.speed != 1 {
			done, err := pl.trickStep(ctx, &i)
			if err != nil || done {
				return err
			}
			continue
		}
		if i >= n {
			return nil
		}
		if err := pl.show(ctx, i); err != nil {
			return err
		}
		i++
	}
}

// controls applies pending commands; while paused it waits for one. It
// reports whether playback jumps to a new place (i changed).
func (pl *playback) controls(ctx context.Context, i *int) (jump bool, err error) {
	for {
		var c command
		if pl.paused {
			select {
			case c = <-pl.p.ctl:
			case <-ctx.Done():
				return jump, ctx.Err()
			}
		} else {
			select {
			case c = <-pl.p.ctl:
			default:
				return jump, nil
			}
		}
		switch c.kind {
		case cmdPause:
			if !pl.paused {
				pl.paused = true
				pl.pace.pause()
				pl.savePosition()
				pl.p.setStatus(func(st *Status) { st.State = Paused })
			}
		case cmdResume:
			if pl.paused {
				pl.paused = false
				pl.pace.resume()
				pl.p.setStatus(func(st *Status) { st.State = Playing })
			}
		case cmdSeek:
			*i = pl.t.keyframeAtOrBefore(c.at)
			jump = true
		case cmdSpeed:
			if c.speed == pl.speed {
				continue
			}
			if c.speed == 1 && pl.lastShown >= 0 {
				// Back to normal play from the keyframe last shown.
				*i = pl.t.keyframes[pl.t.keyframeSlot(pl.lastShown)]
				jump = true
			}
			pl.speed = c.speed
			pl.p.setStatus(func(st *Status) { st.Speed = c.speed })
		case cmdStop:
			return jump, ErrStopped
		}
	}
}

// trickStep shows the next keyframe in the direction of travel. It reports
// done when fast-forward runs past the last keyframe.
func (pl *playback) trickStep(ctx context.Context, i *int) (done bool, err error) {
	t := pl.t
	cur := *i
	if pl.lastShown >= 0 {
		cur = pl.lastShown
	}
	slot := t.keyframeSlot(cur)
	step := time.Duration(absInt(pl.speed)) * pl.p.opts.TrickInterval
	target := t.pts(cur) + step
	if pl.speed < 0 {
		target = t.pts(cur) - step
	}
	next := slot
	if pl.speed > 0 {
		for next < len(t.keyframes) && (t.keyframes[next] <= cur || t.pts(t.keyframes[next]) < target) {
			next++
		}
		if next == len(t.keyframes) {
			return true, nil
		}
	} else {
		for next >= 0 && (t.keyframes[next] >= cur || t.pts(t.keyframes[next]) > target) {
			next--
		}
		if next < 0 {
			// Rewound to the start: play on from there.
			next = 0
			pl.speed = 1
			pl.p.setStatus(func(st *Status) { st.Speed = 1 })
		}
	}
	*i = t.keyframes[next]
	if err := pl.sink.Discontinuity(ctx); err != nil {
		return false, fmt.Errorf("decoder: %w", err)
	}
	if err := pl.show(ctx, *i); err != nil {
		return false, err
	}
	if pl.pace.on {
		select {
		case <-time.After(pl.p.opts.TrickInterval):
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	if pl.speed == 1 {
		*i++ // the keyframe is shown; continue after it
		pl.pace.reset(t.pts(*i - 1))
	}
	return false, nil
}

// show reads, opens and hands frame i to the sink.
func (pl *playback) show(ctx context.Context, i int) error {
	t := pl.t
	e := t.m.Frame(i)
	fail := func(err error) error {
		return &FrameError{Title: t.id, Index: i, Track: e.Track, PTS: e.PTS, Err: err}
	}
	if err := pl.await(ctx, i); err != nil {
		return err
	}
	if cap(pl.sealed) < int(e.Size) {
		pl.sealed = make([]byte, e.Size)
		pl.plain = make([]byte, 0, e.Size)
	}
	sealed := pl.sealed[:e.Size]
	if _, err := pl.p.src.ReadAt(t.id, sealed, int64(e.Offset)); err != nil {
		return fail(fmt.Errorf("read: %w", err))
	}
	var plain []byte
	var err error
	erase(func() { plain, err = pl.fc.Open(pl.plain[:0], uint64(i), e.FrameMeta, sealed) })
	if err != nil {
		return fail(err)
	}
	if err := pl.pace.wait(ctx, t.pts(i)); err != nil {
		clear(plain)
		return err
	}
	err = pl.sink.WriteFrame(ctx, media.Frame{Track: e.Track, PTS: e.PTS, DTS: e.DTS, Duration: e.Duration, Keyframe: e.Keyframe, Data: plain})
	clear(plain)
	if err != nil {
		return fmt.Errorf("title %s frame %d: decoder: %w", t.id, i, err)
	}
	if int(e.Track) == t.video || t.video < 0 {
		pl.lastShown = i
		pos := t.pts(i)
		pl.p.setStatus(func(st *Status) { st.Position = pos })
		if pos-pl.savedAt >= pl.p.opts.PositionEvery || pos < pl.savedAt {
			pl.savePosition()
		}
	}
	return nil
}

// await makes sure every piece of frame i is present: a title that is
// still arriving plays up to its contiguous verified range and then waits.
func (pl *playback) await(ctx context.Context, i int) error {
	first, last := pl.t.m.PiecesOf(i)
	for piece := max(first, pl.contiguous); piece <= last; piece++ {
		waitStart := time.Now()
		// Show "buffering" only if the wait lasts long enough to be seen.
		var waiting atomic.Bool
		waiting.Store(true)
		timer := time.AfterFunc(200*time.Millisecond, func() {
			pl.p.setStatus(func(st *Status) {
				if waiting.Load() {
					st.State = Buffering
				}
			})
		})
		err := pl.p.src.Wait(ctx, pl.t.id, piece)
		waiting.Store(false)
		if !timer.Stop() {
			pl.p.setStatus(func(st *Status) {
				if st.State == Buffering {
					st.State = Playing
				}
			})
			pl.pace.shift(time.Since(waitStart))
		}
		if err != nil {
			return fmt.Errorf("title %s: waiting for piece %d: %w", pl.t.id, piece, err)
		}
		if piece == pl.contiguous {
			pl.contiguous++
		}
	}
	return nil
}

func (pl *playback) savePosition() {
	if pl.lastShown < 0 {
		return
	}
	k := pl.t.keyframes[pl.t.keyframeSlot(pl.lastShown)]
	if err := pl.p.src.SetPosition(pl.t.id, k); err != nil {
		pl.log.Warn("save resume position", "err", err)
		return
	}
	pl.savedAt = pl.t.pts(pl.lastShown)
}

// wipe zeroes the buffers that held plaintext and drops the cipher, whose
// key schedule runtime/secret erases once it is collected.
func (pl *playback) wipe() {
	clear(pl.plain[:cap(pl.plain)])
	pl.fc = nil
}

// pacer releases frames at the wall-clock time their timestamps say.
type pacer struct {
	on       bool
	origin   time.Time     // wall time of base
	base     time.Duration // content time at origin
	pausedAt time.Time
}

func (c *pacer) reset(at time.Duration) { c.origin, c.base = time.Now(), at }
func (c *pacer) pause()                 { c.pausedAt = time.Now() }
func (c *pacer) resume()                { c.shift(time.Since(c.pausedAt)) }
func (c *pacer) shift(d time.Duration)  { c.origin = c.origin.Add(d) }

func (c *pacer) wait(ctx context.Context, pos time.Duration) error {
	if !c.on {
		return nil
	}
	d := time.Until(c.origin.Add(pos - c.base))
	if d <= 0 {
		return nil
	}
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

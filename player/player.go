// Package player plays a title from the store: it opens one frame at a time
// in memory with a key derived for that frame alone, hands it to a decoder
// sink, and forgets it. It supports pause, seek to the nearest keyframe,
// fast-forward and rewind from 2× to 32× on keyframes only, resuming where
// the viewer left off, and streaming a title that is still arriving.
//
// Guarantees:
//   - Plaintext frames and keys exist only in memory. The content key is
//     held in a keys.Secret (locked, zeroed when playback stops, finishes or
//     fails); each frame's plaintext buffer is zeroed after the sink returns.
//     Built with GOEXPERIMENT=runtimesecret, the key schedules the standard
//     library allocates for each frame are erased too (see ErasesKeySchedules).
//   - A frame that fails authentication stops playback before it or anything
//     after it reaches the sink; the error names the title and the frame.
//   - Only verified bytes are read: the store serves a piece only once it
//     matched the signed manifest, and the manifest is verified here again
//     against the player's own media keys.
package player

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/keys"
)

// Source is where titles are read: the store, in this process or through
// the daemon that owns it.
type Source interface {
	// Manifest returns the title's manifest and the signed file it came from.
	Manifest(id media.ID) (*media.Manifest, []byte, error)
	// ReadAt reads payload bytes; it fails if they are not all present.
	ReadAt(id media.ID, p []byte, off int64) (int, error)
	// Wait returns once a piece is present.
	Wait(ctx context.Context, id media.ID, piece int) error
	// Lock keeps the title from being deleted while it plays.
	Lock(id media.ID, reason string) (unlock func(), err error)
	// Position and SetPosition keep the resume point (a frame index).
	Position(id media.ID) (frame int, ok bool, err error)
	SetPosition(id media.ID, frame int) error
}

// Options configure a Player.
type Options struct {
	// MediaKeys are the operator's media signing keys; a manifest signed by
	// none of them is not played.
	MediaKeys []ed25519.PublicKey
	Keys      keys.Source
	Log       *slog.Logger
	// Paced plays in real time, by the frames' timestamps. Unpaced plays
	// as fast as the sink accepts frames (tests, benchmarks, a decoder that
	// paces itself).
	Paced bool
	// PositionEvery is how much content plays between saves of the resume
	// position; 5 s if zero.
	PositionEvery time.Duration
	// TrickInterval is the wall time between keyframes shown in
	// fast-forward and rewind; 250 ms if zero. At speed n the content moves
	// n × TrickInterval per keyframe shown.
	TrickInterval time.Duration
}

// From says where playback starts.
type From struct {
	// Resume starts at the saved position (the start if there is none).
	Resume bool
	// At starts at the keyframe at or before this offset from the start,
	// when Resume is false.
	At time.Duration
}

// State is what the player is doing.
type State int

// Player states.
const (
	Stopped State = iota
	Playing
	Paused
	Buffering
)

func (s State) String() string {
	return [...]string{"stopped", "playing", "paused", "buffering"}[s]
}

// Status is a snapshot for the user interface.
type Status struct {
	Title    media.ID
	State    State
	Speed    int           // 1 for normal play, ±2 to ±32 in trick play
	Position time.Duration // of the last frame shown, from the title's start
	Duration time.Duration
}

// FrameError is a frame that failed authentication, or could not be read.
type FrameError struct {
	Title media.ID
	Index int
	Track uint8
	PTS   int64
	Err   error
}

func (e *FrameError) Error() string {
	return fmt.Sprintf("title %s frame %d (track %d, pts %d): %v", e.Title, e.Index, e.Track, e.PTS, e.Err)
}

func (e *FrameError) Unwrap() error { return e.Err }

// ErrStopped is returned by Play after Stop.
var ErrStopped = errors.New("playback stopped")

// Speeds are the trick-play speeds, besides 1.
var Speeds = []int{2, 4, 8, 16, 32}

// Player plays one title at a time.
type Player struct {
	src  Source
	opts Options
	ctl  chan command

	mu     sync.Mutex
	status Status
}

type command struct {
	kind  int
	speed int
	at    time.Duration
}

const (
	cmdPause = iota
	cmdResume
	cmdSeek
	cmdSpeed
	cmdStop
)

// New returns a player reading from src.
func New(src Source, o Options) *Player {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.PositionEvery == 0 {
		o.PositionEvery = 5 * time.Second
	}
	if o.TrickInterval == 0 {
		o.TrickInterval = 250 * time.Millisecond
	}
	return &Player{src: src, opts: o, ctl: make(chan command, 16)}
}

// Pause holds playback on the current frame.
func (p *Player) Pause() { p.send(command{kind: cmdPause}) }

// Resume continues after Pause.
func (p *Player) Resume() { p.send(command{kind: cmdResume}) }

// Seek jumps to the keyframe at or before d from the title's start.
func (p *Player) Seek(d time.Duration) { p.send(command{kind: cmdSeek, at: d}) }

// SetSpeed sets normal play (1), fast-forward (2 to 32) or rewind (-2 to
// -32). Other values are rounded to the nearest supported speed.
func (p *Player) SetSpeed(n int) { p.send(command{kind: cmdSpeed, speed: normalizeSpeed(n)}) }

// Stop ends playback; Play returns ErrStopped.
func (p *Player) Stop() { p.send(command{kind: cmdStop}) }

func (p *Player) send(c command) {
	select {
	case p.ctl <- c:
	default:
		p.opts.Log.Warn("player: control dropped, too many pending", "command", c.kind)
	}
}

func normalizeSpeed(n int) int {
	if n >= -1 && n <= 1 {
		return 1
	}
	sign := 1
	if n < 0 {
		sign, n = -1, -n
	}
	best := Speeds[0]
	for _, s := range Speeds {
		if absInt(s-n) < absInt(best-n) {
			best = s
		}
	}
	return sign * best
}

func absInt(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// Status returns what the player is doing.
func (p *Player) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

func (p *Player) setStatus(f func(*Status)) {
	p.mu.Lock()
	f(&p.status)
	p.mu.Unlock()
}

// title is what Play keeps about the title it plays.
type title struct {
	id        media.ID
	m         *media.Manifest
	video     int   // index of the video track, -1 if none
	keyframes []int // frame indices of video keyframes (all frames without video)
	start     int64 // earliest video PTS (track timescale)
}

func (t *title) pts(i int) time.Duration {
	e := t.m.Frame(i)
	return ticks(e.PTS-t.start, t.m.Tracks[e.Track].Timescale)
}

func ticks(v int64, timescale uint32) time.Duration {
	return time.Duration(v) * time.Second / time.Duration(timescale)
}

// keyframeAtOrBefore returns the last keyframe whose presentation time is
// at or before d, or the first keyframe.
func (t *title) keyframeAtOrBefore(d time.Duration) int {
	k := sort.Search(len(t.keyframes), func(j int) bool { return t.pts(t.keyframes[j]) > d })
	if k > 0 {
		k--
	}
	return t.keyframes[k]
}

// keyframeBefore returns the index in t.keyframes of the last keyframe at
// or before frame i.
func (t *title) keyframeSlot(i int) int {
	k := sort.SearchInts(t.keyframes, i+1) - 1
	return max(k, 0)
}

func openTitle(m *media.Manifest, id media.ID) (*title, error) {
	t := &title{id: id, m: m, video: -1}
	for i, tr := range m.Tracks {
		if tr.Codec.IsVideo() {
			t.video = i
			break
		}
	}
	first := true
	for i := range m.NumFrames() {
		e := m.Frame(i)
		if t.video >= 0 && int(e.Track) != t.video {
			continue
		}
		if t.video < 0 || e.Keyframe {
			t.keyframes = append(t.keyframes, i)
		}
		if first || e.PTS < t.start {
			t.start, first = e.PTS, false
		}
	}
	if len(t.keyframes) == 0 {
		return nil, fmt.Errorf("title %s has no keyframe to start from", id)
	}
	return t, nil
}

package sink

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/boxswarm/boxswarm/media"
)

// Hash is a Sink that keeps, per track and in the order received, every
// frame's metadata and the SHA-256 of its bytes, for tests of the player
// to compare with what the import tool saw. It refuses only what it
// cannot record (a frame of an unknown track, calls out of order); it
// does not check decoding rules, so a test can see exactly what the
// player sent.
//
// Hash is safe for concurrent use: a test may read it while the player
// writes.
type Hash struct {
	mu              sync.Mutex
	tracks          []media.Track
	frames          [][]HashedFrame
	received        int
	discontinuities int
	pending         bool // a Discontinuity came since the last frame
	started, closed bool
}

// HashedFrame is what Hash keeps of a frame.
type HashedFrame struct {
	media.FrameMeta
	Size   int
	SHA256 [sha256.Size]byte
	// Seq is the frame's position among all frames the sink received,
	// from 0, across tracks.
	Seq int
	// AfterDiscontinuity is set when a Discontinuity came between the
	// previous frame (of any track) and this one.
	AfterDiscontinuity bool
}

// NewHash returns an empty Hash.
func NewHash() *Hash { return &Hash{} }

// Start records the tracks.
func (h *Hash) Start(ctx context.Context, tracks []media.Track) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.started {
		return errors.New("hash: started twice")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("hash: start: %w", err)
	}
	if err := checkTracks(tracks); err != nil {
		return fmt.Errorf("hash: %w", err)
	}
	h.tracks = make([]media.Track, len(tracks))
	for i, t := range tracks {
		t.Config = bytes.Clone(t.Config)
		h.tracks[i] = t
	}
	h.frames = make([][]HashedFrame, len(tracks))
	h.started = true
	return nil
}

// WriteFrame records the frame's metadata and hash.
func (h *Hash) WriteFrame(ctx context.Context, f media.Frame) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.usable(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("hash: write frame: %w", err)
	}
	if int(f.Track) >= len(h.tracks) {
		return fmt.Errorf("hash: frame of track %d: title has %d tracks", f.Track, len(h.tracks))
	}
	h.frames[f.Track] = append(h.frames[f.Track], HashedFrame{
		FrameMeta:          f.Meta(),
		Size:               len(f.Data),
		SHA256:             sha256.Sum256(f.Data),
		Seq:                h.received,
		AfterDiscontinuity: h.pending,
	})
	h.received++
	h.pending = false
	return nil
}

// Discontinuity marks the next frame.
func (h *Hash) Discontinuity(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.usable(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("hash: discontinuity: %w", err)
	}
	h.discontinuities++
	h.pending = true
	return nil
}

// Close ends the recording; what was recorded stays readable.
func (h *Hash) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return errors.New("hash: closed twice")
	}
	h.closed = true
	return nil
}

func (h *Hash) usable() error {
	switch {
	case !h.started:
		return errors.New("hash: not started")
	case h.closed:
		return errors.New("hash: closed")
	}
	return nil
}

// Tracks returns the tracks given to Start.
func (h *Hash) Tracks() []media.Track {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]media.Track, len(h.tracks))
	for i, t := range h.tracks {
		t.Config = bytes.Clone(t.Config)
		out[i] = t
	}
	return out
}

// Frames returns what was recorded of a track's frames, in order.
func (h *Hash) Frames(track uint8) []HashedFrame {
	h.mu.Lock()
	defer h.mu.Unlock()
	if int(track) >= len(h.frames) {
		return nil
	}
	return slices.Clone(h.frames[track])
}

// Received returns the number of frames received, all tracks together.
func (h *Hash) Received() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.received
}

// Discontinuities returns the number of Discontinuity calls.
func (h *Hash) Discontinuities() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.discontinuities
}

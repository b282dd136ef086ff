package player

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/keys"
)

var (
	mediaKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	mediaPub = mediaKey.Public().(ed25519.PublicKey)
)

// memSource is a store in memory whose pieces can be held back.
type memSource struct {
	mu        sync.Mutex
	cond      *sync.Cond
	manifests map[media.ID][]byte
	payloads  map[media.ID][]byte
	present   map[media.ID][]bool
	positions map[media.ID]int
	locks     map[media.ID]int
}

func newMemSource() *memSource {
	s := &memSource{manifests: map[media.ID][]byte{}, payloads: map[media.ID][]byte{}, present: map[media.ID][]bool{},
		positions: map[media.ID]int{}, locks: map[media.ID]int{}}
	s.cond = sync.NewCond(&s.mu)
	return s
}

func (s *memSource) add(t *testing.T, dir string, id media.ID) {
	p, err := media.OpenPackage(filepath.Join(dir, id.String()), mediaPub)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	payload, _ := os.ReadFile(filepath.Join(dir, id.String(), media.PayloadFile))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.manifests[id], s.payloads[id] = p.Signed, payload
	s.present[id] = make([]bool, p.Manifest.NumPieces())
	for i := range s.present[id] {
		s.present[id][i] = true
	}
}

func (s *memSource) setPresent(id media.ID, upTo int, v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.present[id] {
		if i < upTo {
			s.present[id][i] = v
		} else {
			s.present[id][i] = !v
		}
	}
	s.cond.Broadcast()
}

func (s *memSource) Manifest(id media.ID) (*media.Manifest, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.manifests[id]
	if !ok {
		return nil, nil, fmt.Errorf("no title %s", id)
	}
	m, err := media.Verify(b, mediaPub)
	return m, b, err
}

func (s *memSource) ReadAt(id media.ID, p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return copy(p, s.payloads[id][off:]), nil
}

func (s *memSource) Wait(ctx context.Context, id media.ID, piece int) error {
	stop := context.AfterFunc(ctx, func() { s.mu.Lock(); s.cond.Broadcast(); s.mu.Unlock() })
	defer stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for !s.present[id][piece] {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.cond.Wait()
	}
	return nil
}

func (s *memSource) Lock(id media.ID, _ string) (func(), error) {
	s.mu.Lock()
	s.locks[id]++
	s.mu.Unlock()
	return func() { s.mu.Lock(); s.locks[id]--; s.mu.Unlock() }, nil
}

func (s *memSource) Position(id media.ID) (int, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.positions[id]
	return f, ok, nil
}

func (s *memSource) SetPosition(id media.ID, f int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.positions[id] = f
	return nil
}

// recorder is a sink that keeps what it was given.
type recorder struct {
	mu      sync.Mutex
	frames  []media.Frame // Data copied
	jumps   []int         // number of frames received before each discontinuity
	started bool
	closed  bool
	onFrame func(n int)
}

func (r *recorder) Start(context.Context, []media.Track) error { r.started = true; return nil }
func (r *recorder) WriteFrame(_ context.Context, f media.Frame) error {
	r.mu.Lock()
	f.Data = bytes.Clone(f.Data)
	r.frames = append(r.frames, f)
	n := len(r.frames)
	cb := r.onFrame
	r.mu.Unlock()
	if cb != nil {
		cb(n)
	}
	return nil
}
func (r *recorder) Discontinuity(context.Context) error {
	r.mu.Lock()
	r.jumps = append(r.jumps, len(r.frames))
	r.mu.Unlock()
	return nil
}
func (r *recorder) Close() error { r.closed = true; return nil }

// secretSpy records the secrets handed out, to check they are destroyed.
type secretSpy struct {
	keys.Source
	got []*keys.Secret
}

func (s *secretSpy) ContentKey(ctx context.Context, id media.ID) (*keys.Secret, error) {
	k, err := s.Source.ContentKey(ctx, id)
	if err == nil {
		s.got = append(s.got, k)
	}
	return k, err
}

// fixture: a title of 100 video frames (keyframe every 10, 10 fps) and
// 150 audio frames, in 64 KiB pieces.
type fixture struct {
	src    *memSource
	keys   *secretSpy
	id     media.ID
	frames []media.Frame
	dir    string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{src: newMemSource(), dir: dir, id: media.ID{0x42}}
	kd := keys.Dir(filepath.Join(dir, "keys"))
	f.keys = &secretSpy{Source: kd}
	f.write(t, f.id, &f.frames)
	return f
}

func (f *fixture) write(t *testing.T, id media.ID, out *[]media.Frame) {
	t.Helper()
	ck := bytes.Repeat([]byte{id[0]}, 32)
	tracks := []media.Track{
		{Codec: media.H264, Timescale: 90000, Config: []byte{0, 0, 0, 1, 0x67}, Width: 64, Height: 64},
		{Codec: media.AAC, Timescale: 48000, Config: []byte{0x11, 0x90}, SampleRate: 48000, Channels: 2},
	}
	w, err := media.NewWriter(f.dir, id, tracks, ck, media.MinPieceSize)
	if err != nil {
		t.Fatal(err)
	}
	var frames []media.Frame
	for i := range 100 {
		frames = append(frames, media.Frame{Track: 0, PTS: int64(i) * 9000, DTS: int64(i) * 9000, Duration: 9000, Keyframe: i%10 == 0,
			Data: bytes.Repeat([]byte{byte(i), 0xee}, 2000)})
		if i%2 == 0 {
			for a := range 3 {
				n := i/2*3 + a
				frames = append(frames, media.Frame{Track: 1, PTS: int64(n) * 3200, DTS: int64(n) * 3200, Duration: 3200,
					Data: bytes.Repeat([]byte{byte(n), 0xaa}, 100)})
			}
		}
	}
	for _, fr := range frames {
		if err := w.WriteFrame(fr); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Finish(mediaKey); err != nil {
		t.Fatal(err)
	}
	if err := keys.Dir(filepath.Join(f.dir, "keys")).Put(context.Background(), id, ck); err != nil {
		t.Fatal(err)
	}
	f.src.add(t, f.dir, id)
	*out = frames
}

func (f *fixture) player(opts ...func(*Options)) *Player {
	o := Options{MediaKeys: []ed25519.PublicKey{mediaPub}, Keys: f.keys}
	for _, fn := range opts {
		fn(&o)
	}
	return New(f.src, o)
}

func TestPlaysEveryFrame(t *testing.T) {
	f := newFixture(t)
	r := &recorder{}
	if err := f.player().Play(context.Background(), f.id, r, From{}); err != nil {
		t.Fatal(err)
	}
	if len(r.frames) != len(f.frames) {
		t.Fatalf("sink got %d frames, want %d", len(r.frames), len(f.frames))
	}
	for i, got := range r.frames {
		want := f.frames[i]
		if got.Meta() != want.Meta() || !bytes.Equal(got.Data, want.Data) {
			t.Fatalf("frame %d differs", i)
		}
	}
	if !r.started || !r.closed || f.src.locks[f.id] != 0 {
		t.Errorf("started %v closed %v locks %d", r.started, r.closed, f.src.locks[f.id])
	}
	for _, s := range f.keys.got {
		if s.Bytes() != nil {
			t.Error("content key not destroyed after playback")
		}
	}
}

// TestTamper damages the stored payload three ways; each must stop
// playback at the damaged frame with nothing from it or after it shown.
func TestTamper(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, f *fixture, m *media.Manifest) int // returns the first bad frame
	}{
		{"flipped ciphertext byte", func(t *testing.T, f *fixture, m *media.Manifest) int {
			e := m.Frame(40)
			f.src.payloads[f.id][e.Offset+100] ^= 1
			return 40
		}},
		{"two swapped frames", func(t *testing.T, f *fixture, m *media.Manifest) int {
			var video []int // two video frames of equal size
			for i := 20; len(video) < 2; i++ {
				if m.Frame(i).Track == 0 {
					video = append(video, i)
				}
			}
			a, b := m.Frame(video[0]), m.Frame(video[1])
			if a.Size != b.Size {
				t.Fatal("fixture video frames differ in size")
			}
			p := f.src.payloads[f.id]
			tmp := bytes.Clone(p[a.Offset:a.End()])
			copy(p[a.Offset:], p[b.Offset:b.End()])
			copy(p[b.Offset:], tmp)
			return video[0]
		}},
		{"frame transplanted from another title", func(t *testing.T, f *fixture, m *media.Manifest) int {
			var other []media.Frame
			otherID := media.ID{0x43}
			f.write(t, otherID, &other)
			om, _, _ := f.src.Manifest(otherID)
			e := m.Frame(33)
			copy(f.src.payloads[f.id][e.Offset:], f.src.payloads[otherID][om.Frame(33).Offset:om.Frame(33).End()])
			return 33
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			m, _, _ := f.src.Manifest(f.id)
			bad := tc.damage(t, f, m)
			r := &recorder{}
			err := f.player().Play(context.Background(), f.id, r, From{})
			var fe *FrameError
			if !errors.As(err, &fe) || !errors.Is(err, media.ErrFrameAuth) || fe.Index != bad || fe.Title != f.id {
				t.Fatalf("Play = %v, want an authentication failure at frame %d", err, bad)
			}
			if len(r.frames) != bad {
				t.Errorf("sink got %d frames, want exactly the %d before the bad one", len(r.frames), bad)
			}
			for _, s := range f.keys.got {
				if s.Bytes() != nil {
					t.Error("content key not destroyed after the failure")
				}
			}
		})
	}
}

func TestSeek(t *testing.T) {
	f := newFixture(t)
	p := f.player()
	r := &recorder{}
	r.onFrame = func(n int) {
		if n == 5 {
			p.Seek(6500 * time.Millisecond) // keyframe at 6.0 s: video frame 60
		}
	}
	if err := p.Play(context.Background(), f.id, r, From{}); err != nil {
		t.Fatal(err)
	}
	if len(r.jumps) != 1 {
		t.Fatalf("%d discontinuities, want 1", len(r.jumps))
	}
	next := r.frames[r.jumps[0]]
	if next.Track != 0 || !next.Keyframe || next.PTS != 60*9000 {
		t.Fatalf("after the seek: %+v, want the keyframe at 6 s", next.Meta())
	}
}

func TestTrickPlay(t *testing.T) {
	for _, speed := range []int{2, 8, 32} {
		t.Run(fmt.Sprintf("fast-forward %dx", speed), func(t *testing.T) {
			f := newFixture(t)
			p := f.player(func(o *Options) { o.TrickInterval = 500 * time.Millisecond })
			r := &recorder{}
			r.onFrame = func(n int) {
				if n == 1 {
					p.SetSpeed(speed)
				}
			}
			if err := p.Play(context.Background(), f.id, r, From{}); err != nil {
				t.Fatal(err)
			}
			step := int64(speed) * 500 * 90 // content per shown frame, in 90 kHz ticks
			prev := r.frames[0].PTS
			for _, fr := range r.frames[1:] {
				if fr.Track != 0 || !fr.Keyframe {
					t.Fatalf("trick play showed %+v, want video keyframes only", fr.Meta())
				}
				if fr.PTS-prev < step {
					t.Fatalf("keyframes %d and %d are closer than %dx allows", prev, fr.PTS, speed)
				}
				prev = fr.PTS
			}
		})
	}
	t.Run("rewind 4x then play", func(t *testing.T) {
		f := newFixture(t)
		p := f.player(func(o *Options) { o.TrickInterval = 500 * time.Millisecond })
		r := &recorder{}
		r.onFrame = func(n int) {
			if n == 120 { // well into the title
				p.SetSpeed(-4)
			}
		}
		if err := p.Play(context.Background(), f.id, r, From{}); err != nil {
			t.Fatal(err)
		}
		// After the rewind reached the start, normal play resumed to the end.
		var rewound []int64
		for _, fr := range r.frames[120:] {
			if fr.Keyframe && fr.Track == 0 {
				rewound = append(rewound, fr.PTS)
			}
			if fr.PTS == 0 && fr.Track == 0 {
				break
			}
		}
		for i := 1; i < len(rewound); i++ {
			if rewound[i] >= rewound[i-1] {
				t.Fatalf("rewind went forward: %v", rewound)
			}
		}
		if last := r.frames[len(r.frames)-1]; last.PTS < 90*9000 {
			t.Errorf("play did not continue to the end after rewinding")
		}
	})
}

func TestPauseStopResume(t *testing.T) {
	f := newFixture(t)
	p := f.player()
	r := &recorder{}
	paused := make(chan struct{})
	r.onFrame = func(n int) {
		if n == 80 {
			p.Pause()
			go func() {
				for p.Status().State != Paused {
					time.Sleep(time.Millisecond)
				}
				close(paused)
			}()
		}
	}
	done := make(chan error)
	go func() { done <- p.Play(context.Background(), f.id, r, From{}) }()
	<-paused
	r.mu.Lock()
	n := len(r.frames)
	r.mu.Unlock()
	time.Sleep(50 * time.Millisecond)
	r.mu.Lock()
	if len(r.frames) != n {
		t.Errorf("frames arrived while paused")
	}
	r.mu.Unlock()
	p.Stop()
	if err := <-done; !errors.Is(err, ErrStopped) {
		t.Fatalf("Play after Stop = %v", err)
	}
	pos, ok, _ := f.src.Position(f.id)
	var lastVideo media.Frame
	for _, fr := range r.frames {
		if fr.Track == 0 {
			lastVideo = fr
		}
	}
	m, _, _ := f.src.Manifest(f.id)
	if !ok || !m.Frame(pos).Keyframe || m.Frame(pos).PTS > lastVideo.PTS {
		t.Fatalf("saved position frame %d (%+v), last shown %+v", pos, m.Frame(pos).FrameMeta, lastVideo.Meta())
	}
	// Play again from the saved position.
	r2 := &recorder{}
	if err := f.player().Play(context.Background(), f.id, r2, From{Resume: true}); err != nil {
		t.Fatal(err)
	}
	if first := r2.frames[0]; first.PTS != m.Frame(pos).PTS || !first.Keyframe {
		t.Errorf("resumed at %+v, want the saved keyframe %+v", first.Meta(), m.Frame(pos).FrameMeta)
	}
	if pos, _, _ := f.src.Position(f.id); pos != 0 {
		t.Errorf("position after finishing = %d, want 0", pos)
	}
}

// TestStreaming plays a title while its pieces arrive.
func TestStreaming(t *testing.T) {
	f := newFixture(t)
	m, _, _ := f.src.Manifest(f.id)
	half := m.NumPieces() / 2
	f.src.setPresent(f.id, half, true)
	p := f.player()
	r := &recorder{}
	done := make(chan error)
	go func() { done <- p.Play(context.Background(), f.id, r, From{}) }()
	deadline := time.Now().Add(5 * time.Second)
	for p.Status().State != Buffering && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if p.Status().State != Buffering {
		t.Fatalf("state %v, want buffering at the end of the delivered range", p.Status().State)
	}
	r.mu.Lock()
	got := len(r.frames)
	r.mu.Unlock()
	_, lastPiece := m.PiecesOf(got - 1)
	if lastPiece >= half || got == 0 {
		t.Fatalf("played %d frames (through piece %d) with %d pieces present", got, lastPiece, half)
	}
	f.src.setPresent(f.id, m.NumPieces(), true)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(r.frames) != len(f.frames) {
		t.Errorf("got %d frames after the rest arrived, want %d", len(r.frames), len(f.frames))
	}
}

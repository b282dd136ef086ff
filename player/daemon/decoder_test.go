package daemon

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/media/mediatest"
	"github.com/boxswarm/boxswarm/media/store"
	"github.com/boxswarm/boxswarm/player"
)

// TestFirstPictureSoon plays a clip in real time, as the box does, into
// ffmpeg with the default input options: its first picture must come
// long before the clip's end (ffmpeg's own 5 s of probing kept the TV
// black for that long), and the frames must still be the source's.
func TestFirstPictureSoon(t *testing.T) {
	src, want := sourceClip(t)
	e := newEnv(t)
	m := e.importTitle(src)
	dir := t.TempDir()
	picture := filepath.Join(dir, "picture.bmp")
	report := filepath.Join(dir, "frames.md5")
	// Each decoded picture is written over one file: its appearance is
	// the first picture's time.
	f := FFmpeg{Video: []string{"-f", "image2", "-update", "1", picture}, Report: report}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sc, err := store.Dial(ctx, filepath.Join(e.dir, "run", "store.sock"), e.mediaPub())
	must(t, err)
	defer sc.Close()
	p := player.New(sc, player.Options{MediaKeys: []ed25519.PublicKey{e.mediaPub()}, Keys: e.keyDir, Paced: true})
	dec, err := f.Decoder(slog.New(slog.DiscardHandler))(ctx)
	must(t, err)
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- p.Play(ctx, m.ID, dec, player.From{}) }()
	var first time.Duration
	for first == 0 {
		if _, err := os.Stat(picture); err == nil {
			first = time.Since(start)
			break
		}
		select {
		case err := <-done:
			t.Fatalf("playback ended (%v) with no picture", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	must(t, <-done) // Play closes the decoder, waiting for ffmpeg
	played := time.Since(start)
	got, err := os.ReadFile(report)
	must(t, err)
	if err := mediatest.SameFrames(want, mediatest.ParseFrameMD5(string(got))); err != nil {
		t.Errorf("the decoder's frames: %v", err)
	}
	// The clip plays for about 4 s; ffmpeg's default probing showed
	// nothing before its end.
	if limit := played / 2; first > limit {
		t.Errorf("first picture after %v of a %v playback, want within %v", first, played, limit)
	}
	t.Logf("first picture after %v of a %v playback", first.Round(time.Millisecond), played.Round(time.Millisecond))
}

package demo

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/media/mediatest"
)

// TestEndToEnd is `make demo` as a test: the whole system on this
// machine, two boxes in QEMU each behind its own kernel NAT, checked
// against what the issue asks: both boxes activated, box 2's pieces from
// box 1 and not from the media server, box 2's decoder output equal to
// the source frame for frame, screenshots of the TV, and no content key
// or decrypted frame on either box's disk.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("boots two boxes in QEMU; skipped with -short")
	}
	images := os.Getenv("BOXSWARM_IMAGES")
	if images == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("BOXSWARM_IMAGES is not set: run this test through make test")
		}
		t.Skip("BOXSWARM_IMAGES not set; make test bakes the images and sets it")
	}
	mediatest.RequireFFmpeg(t)
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	shots := t.ArtifactDir()
	if d := os.Getenv("BOXSWARM_ARTIFACTS"); d != "" {
		shots = filepath.Join(d, "tv")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	s, err := Start(ctx, Config{Repo: repo, Images: images, Dir: t.TempDir(), Log: testLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := Scenario(ctx, s, shots)
	if err != nil {
		t.Fatal(err)
	}

	if len(res.Activated) != 2 || res.Activated[0] == res.Activated[1] {
		t.Errorf("activated boxes %v, want two", res.Activated)
	}
	fromBox1 := false
	for _, tr := range res.Box2Received {
		if tr.Sender != res.Box1.ID {
			t.Errorf("box 2 received %d pieces from %s (%s), not from box 1", tr.Pieces, tr.Sender, tr.State)
		}
		fromBox1 = fromBox1 || tr.Pieces > 0
	}
	if !fromBox1 {
		t.Errorf("the scheduler recorded no pieces from box 1 to box 2: %+v", res.Box2Received)
	}
	if err := mediatest.SameFrames(res.SourceFrames, res.DecodedFrames); err != nil {
		t.Errorf("box 2's decoder against the source: %v", err)
	}
	t.Logf("screenshots: %v", res.Screenshots)
	t.Logf("adding on the web to playable on box 2: %v; power-on to the first TV screen: %v", res.AddedToPlayable, res.FirstScreen)

	for _, b := range []*Box{res.Box1, res.Box2} {
		b.Shutdown()
		found, err := s.ScanDisk(b.Disk, res.Title)
		if err != nil {
			t.Fatal(err)
		}
		if len(found) > 0 {
			t.Errorf("%s's disk holds %v", b.Name, found)
		}
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(string(b))
	return len(b), nil
}

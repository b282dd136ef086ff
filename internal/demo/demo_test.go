package demo

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/media/mediatest"
)

// TestEndToEnd is `make demo` as a test: the whole system on this
// machine, two boxes in QEMU each behind its own kernel NAT, checked
// against what the issue asks: both boxes activated; My List caught with
// a title downloaded, one downloading and one not started; a power cut in
// the middle of a download, after which the download resumes and nothing
// corrupt counts as present; box 2's pieces from box 1 and not from the
// media server; box 2's decoder output equal to the source frame for
// frame; screenshots of the TV; and no content key or decrypted frame on
// either box's disk.
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
	artifacts := t.ArtifactDir()
	if d := os.Getenv("BOXSWARM_ARTIFACTS"); d != "" {
		artifacts = d
	}
	shots := filepath.Join(artifacts, "tv")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	consoles, err := os.Create(filepath.Join(artifacts, "box-consoles.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer consoles.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	s, err := Start(ctx, Config{Repo: repo, Images: images, Dir: t.TempDir(), Log: testLog{t}, Console: consoles})
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
	checkMixedStates(t, res.MixedStates)
	checkPowerCut(t, res.PowerCut)
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

	// After shutdown: each store holds what the scheduler says, every
	// piece it counts present matches its manifest, and no key or
	// decrypted frame is anywhere on the disk.
	for _, x := range []struct {
		b    *Box
		want []Title
	}{{res.Box1, res.Titles}, {res.Box2, []Title{res.Title}}} {
		x.b.Shutdown()
		sc, err := s.CheckStore(ctx, x.b.Disk)
		if err != nil {
			t.Fatal(err)
		}
		if len(sc.Titles) != len(x.want) {
			t.Errorf("%s's store holds %d titles, want %d", x.b.Name, len(sc.Titles), len(x.want))
		}
		for _, ti := range x.want {
			got := sc.Titles[ti.ID]
			if got.Pieces != ti.Pieces || got.Present != ti.Pieces || len(got.Bad) > 0 {
				t.Errorf("%s's store after shutdown: %q has %d of %d pieces present (manifest: %d), %d failing their hash %v",
					x.b.Name, ti.Name, got.Present, got.Pieces, ti.Pieces, len(got.Bad), got.Bad)
			}
		}
		for _, ti := range res.Titles {
			found, err := s.ScanDisk(x.b.Disk, ti)
			if err != nil {
				t.Fatal(err)
			}
			if len(found) > 0 {
				t.Errorf("%s's disk holds %v of %q", x.b.Name, found, ti.Name)
			}
		}
	}
}

// checkMixedStates checks that the scheduler had box 1 holding the first
// title, part of the second and none of the third both before and after
// the My List screenshot, so the screenshot shows all three states.
func checkMixedStates(t *testing.T, ms *MixedStates) {
	t.Helper()
	if ms == nil {
		t.Error("no My List with mixed states")
		return
	}
	for _, x := range []struct {
		when string
		p    []TitleProgress
	}{{"before", ms.Before}, {"after", ms.After}} {
		p := x.p
		if len(p) != 3 || !p[0].Complete || p[1].Complete || p[1].Present == 0 || p[1].Present >= p[1].Pieces ||
			p[2].Complete || p[2].Present != 0 {
			t.Errorf("box 1's holdings %s the My List screenshot: %+v, want downloaded, downloading, not started", x.when, p)
		}
	}
	if _, err := os.Stat(ms.Screenshot); err != nil {
		t.Error(err)
	}
}

// checkPowerCut checks the power cut: it hit in the middle of the
// download; every piece box 1 had reported was on its disk after the
// cut, and every piece its store counted present there matched the
// manifest; after the reboot the download resumed with only the missing
// pieces and completed.
func checkPowerCut(t *testing.T, pc *PowerCut) {
	t.Helper()
	if pc == nil {
		t.Error("no power cut")
		return
	}
	n := pc.Title.Pieces
	at, ok := pc.AtCut.Titles[pc.Title.ID]
	if !ok {
		t.Fatalf("box 1's store after the cut has no %q: %+v", pc.Title.Name, pc.AtCut.Titles)
	}
	if at.Present == 0 || at.Present >= n {
		t.Errorf("after the cut box 1's store has %d of %d pieces of %q: not a cut in the middle of a download", at.Present, n, pc.Title.Name)
	}
	if len(at.Bad) > 0 {
		t.Errorf("after the cut box 1's store counts %d pieces present that fail their hash: %v", len(at.Bad), at.Bad)
	}
	for i := range n {
		if pc.Reported.Has(i) && !at.Have.Has(i) {
			t.Errorf("piece %d was reported to the scheduler before the cut but was not present after it", i)
		}
	}
	if len(pc.Before) == 0 {
		t.Error("no transfer of the title to box 1 before the cut")
	}
	for _, tr := range pc.Before {
		if tr.State == schedstore.TransferDone {
			t.Errorf("transfer %d, cut by the power cut, recorded as done", tr.ID)
		}
	}
	moved := 0
	for _, tr := range pc.After {
		moved += tr.Pieces
	}
	if len(pc.After) == 0 || pc.After[len(pc.After)-1].State != schedstore.TransferDone {
		t.Errorf("transfers of the title to box 1 after the reboot: %+v, want the last done", pc.After)
	}
	// Resumed, not restarted: only the pieces missing after the cut moved.
	if moved == 0 || moved > n-at.Present {
		t.Errorf("after the reboot %d pieces moved; %d of %d were missing", moved, n-at.Present, n)
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(string(b))
	return len(b), nil
}

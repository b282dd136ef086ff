package demo

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/mediatest"
)

// Result is what the scenario saw, for the test to check and the demo to
// print.
type Result struct {
	Title        Title
	Box1, Box2   *Box
	Activated    []api.BoxID
	Box2Received []schedstore.Transfer // box 2's transfers of the title, as the scheduler recorded them
	MediaServer  api.BoxID
	// SourceFrames and DecodedFrames are the framemd5 lines of the
	// source's video and of what box 2's decoder produced.
	SourceFrames, DecodedFrames []string
	Screenshots                 []string
	// AddedToPlayable is the time from adding the title on the web to
	// box 2 holding all of it.
	AddedToPlayable time.Duration
	// FirstScreen is the time from box 1's power-on to its first TV
	// screen (the activation screen drawn).
	FirstScreen time.Duration
}

// Scenario runs the demo's story: a movie imported, two viewers signed
// up, two boxes (each behind its own NAT) activated with the remote, the
// movie added on the web, box 1 filled from the media server, box 2 from
// box 1, and box 2 buying and playing it. Screenshots go to shots.
func Scenario(ctx context.Context, s *System, shots string) (*Result, error) {
	if err := os.MkdirAll(shots, 0o755); err != nil {
		return nil, err
	}
	res := &Result{}
	shot := func(b *Box, name string) error {
		p := filepath.Join(shots, name+".png")
		if err := b.Screenshot(ctx, p); err != nil {
			return err
		}
		res.Screenshots = append(res.Screenshots, p)
		s.logf("screenshot of %s: %s", b.Name, p)
		return nil
	}
	var err error
	if res.Title, err = s.Import(ctx, "Night Train"); err != nil {
		return nil, err
	}
	ann, err := s.SignUp(ctx, "Ann")
	if err != nil {
		return nil, err
	}
	bob, err := s.SignUp(ctx, "Bob")
	if err != nil {
		return nil, err
	}
	disk, err := s.BakeImage(ctx)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if res.Box1, err = s.Boot(ctx, "box1", 0, disk); err != nil {
		return nil, err
	}
	if res.Box2, err = s.Boot(ctx, "box2", 1, disk); err != nil {
		return nil, err
	}
	b1, b2 := res.Box1, res.Box2
	if _, err := b1.WaitFor(ctx, `playerd.*(screen|ready)|READY`); err != nil {
		return nil, err
	}
	res.FirstScreen = time.Since(start)
	for _, x := range []struct {
		b *Box
		v *Viewer
	}{{b1, ann}, {b2, bob}} {
		if err := x.b.Activate(ctx, x.v.Code); err != nil {
			return nil, fmt.Errorf("demo: activate %s: %w", x.b.Name, err)
		}
		res.Activated = append(res.Activated, x.b.ID)
		s.logf("%s activated with %s's code: it is box %s", x.b.Name, x.v.Name, x.b.ID)
	}

	// Box 1 gets the movie from the media server.
	if err := ann.Web.Add(ctx, res.Title.ID); err != nil {
		return nil, err
	}
	s.logf("Ann added %q to her list on the web", res.Title.Name)
	if err := s.waitHolds(ctx, b1, res.Title.ID); err != nil {
		return nil, err
	}
	s.logf("box1 holds %q, from the media server", res.Title.Name)
	if err := shot(b1, "my-list"); err != nil {
		return nil, err
	}
	if err := b1.Keys(ctx, "f2"); err != nil { // Menu: the catalog
		return nil, err
	}
	time.Sleep(2 * time.Second)
	if err := shot(b1, "catalog"); err != nil {
		return nil, err
	}

	// Box 2 gets it from box 1, across both NATs.
	added := time.Now()
	if err := bob.Web.Add(ctx, res.Title.ID); err != nil {
		return nil, err
	}
	s.logf("Bob added %q to his list on the web", res.Title.Name)
	if err := s.waitHolds(ctx, b2, res.Title.ID); err != nil {
		return nil, err
	}
	res.AddedToPlayable = time.Since(added)
	ts, err := s.Admin.Transfers(ctx, b2.ID, 50)
	if err != nil {
		return nil, err
	}
	for _, t := range ts {
		if t.Title == res.Title.ID {
			res.Box2Received = append(res.Box2Received, t)
		}
	}
	s.logf("box2 holds %q after %v; the scheduler's records name its senders: %s", res.Title.Name,
		res.AddedToPlayable.Round(100*time.Millisecond), senders(res.Box2Received, b1))

	// Box 2 buys and plays it: OK on the title, the price, OK to confirm.
	time.Sleep(2 * time.Second) // My List shows it as downloaded
	if err := b2.Keys(ctx, "ret"); err != nil {
		return nil, err
	}
	time.Sleep(3 * time.Second) // the pass request and its price
	if err := shot(b2, "purchase"); err != nil {
		return nil, err
	}
	if err := b2.Keys(ctx, "ret"); err != nil {
		return nil, err
	}
	s.logf("box2: Bob confirmed the price; the box gets a pass and the key, and plays")
	time.Sleep(4 * time.Second)
	if err := shot(b2, "playback"); err != nil {
		return nil, err
	}
	if res.SourceFrames, err = sourceFrames(ctx, res.Title.Source); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		res.DecodedFrames = reportedFrames(b2.Report)
		if len(res.DecodedFrames) >= len(res.SourceFrames) || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	s.logf("box2's decoder reported %d frames; the source has %d", len(res.DecodedFrames), len(res.SourceFrames))
	return res, nil
}

// waitHolds waits until the scheduler knows the box holds all of the
// title.
func (s *System) waitHolds(ctx context.Context, b *Box, title media.ID) error {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		st, err := s.Admin.Box(ctx, b.ID)
		if err == nil && slices.ContainsFunc(st.Holdings, func(h api.TitleState) bool { return h.Title == title && h.Complete }) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("demo: %s did not get %s within 5 minutes\n%s", b.Name, title, tail(b.Console(), 40))
}

func senders(ts []schedstore.Transfer, b1 *Box) string {
	var out []string
	for _, t := range ts {
		who := t.Sender.String()
		if t.Sender == b1.ID {
			who = "box1"
		}
		out = append(out, fmt.Sprintf("%s (%s)", who, t.State))
	}
	return strings.Join(out, ", ")
}

// sourceFrames is the framemd5 of the source's video, decoded on the host.
func sourceFrames(ctx context.Context, path string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-i", path,
		"-map", "0:v:0", "-f", "framemd5", "-").Output()
	if err != nil {
		return nil, fmt.Errorf("demo: framemd5 of %s: %w", path, err)
	}
	return mediatest.ParseFrameMD5(string(out)), nil
}

// reportedFrames reads the frame lines the box's decoder reported.
func reportedFrames(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	// Each playback starts a new block, headed by comments.
	if i := bytes.LastIndex(b, []byte("#format")); i >= 0 {
		b = b[i:]
	}
	return mediatest.ParseFrameMD5(string(b))
}

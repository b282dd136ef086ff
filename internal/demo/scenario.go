package demo

import (
	"bytes"
	"cmp"
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
	"github.com/boxswarm/boxswarm/media/store"
)

// Result is what the scenario saw, for the test to check and the demo to
// print.
type Result struct {
	// Title is the title box 2 buys and plays: the last on Ann's list,
	// whose download on box 1 the power cut interrupted.
	Title Title
	// Titles are the titles on Ann's list, in its order.
	Titles       []Title
	Box1, Box2   *Box
	Activated    []api.BoxID
	Box2Received []schedstore.Transfer // box 2's transfers of the title, as the scheduler recorded them
	MediaServer  api.BoxID
	// SourceFrames and DecodedFrames are the framemd5 lines of the
	// source's video and of what box 2's decoder produced.
	SourceFrames, DecodedFrames []string
	Screenshots                 []string
	// MixedStates is box 1's My List caught with one title downloaded,
	// one downloading and one not started; nil with MainPathOnly.
	MixedStates *MixedStates
	// PowerCut is box 1's power cut in the middle of a download; nil with
	// MainPathOnly.
	PowerCut *PowerCut
	// AddedToPlayable is the time from adding the title on the web to
	// box 2 holding all of it.
	AddedToPlayable time.Duration
	// FirstScreen is the time from box 1's power-on to its first TV
	// screen: playerd's console line saying it shows the activation
	// screen, which it draws in the same step.
	FirstScreen time.Duration
	// Stage2 is the time from box 1's power-on to the first console line
	// of its second stage (the supervisor starting the daemons): the
	// part of FirstScreen spent before any of the box's own programs ran.
	Stage2 time.Duration
}

// MixedStates is My List with mixed states, as the scheduler saw box 1's
// holdings just before and just after the screenshot.
type MixedStates struct {
	Screenshot    string
	Before, After []TitleProgress // in list order
}

// TitleProgress is how much of a title a box holds, as the scheduler knows
// it.
type TitleProgress struct {
	Title           media.ID
	Present, Pieces int
	Complete        bool
}

// State is the title's download state as My List shows it.
func (p TitleProgress) State() string {
	switch {
	case p.Complete:
		return "downloaded"
	case p.Present > 0:
		return fmt.Sprintf("downloading (%d of %d pieces)", p.Present, p.Pieces)
	}
	return "not started"
}

// PowerCut is what happened around box 1's power cut.
type PowerCut struct {
	Title Title
	// Reported are the pieces the scheduler knew box 1 held just before
	// the cut (from its progress reports).
	Reported store.Bitmap
	// AtCut is box 1's store as the cut left its disk, checked on the
	// host before the box was powered on again.
	AtCut StoreCheck
	// Before and After are box 1's transfers of the title created before
	// and after it was powered on again, oldest first.
	Before, After []schedstore.Transfer
	// Off is how long the power was off; Back the time from power-on to
	// the box reconnected, Complete to the title complete again.
	Off, Back, Complete time.Duration
}

// The demo's titles, all the sample movie. The last on Ann's list is the
// one box 2 buys: its copy on box 1 survived a power cut mid-download.
var titleNames = []string{"Harbour Lights", "Paper Moon", "Night Train"}

// Scenario runs the demo's story: the movies imported, two viewers signed
// up, two boxes (each behind its own NAT) activated with the remote, three
// movies added to Ann's list on the web and box 1 filling from the media
// server (My List caught with one downloaded, one downloading, one not
// started; the power cut in the middle of the last, and the download
// resumed after the reboot), the last movie added to Bob's list, box 2
// filled from box 1, and box 2 buying and playing it. Screenshots go to
// shots. With Config.MainPathOnly, one movie and no power cut.
func Scenario(ctx context.Context, s *System, shots string) (*Result, error) {
	if err := os.MkdirAll(shots, 0o755); err != nil {
		return nil, err
	}
	res := &Result{}
	shot := func(b *Box, name string) (string, error) {
		p := filepath.Join(shots, name+".png")
		if err := b.Screenshot(ctx, p); err != nil {
			return "", err
		}
		res.Screenshots = append(res.Screenshots, p)
		s.logf("screenshot of %s: %s", b.Name, p)
		return p, nil
	}
	names := titleNames
	if s.cfg.MainPathOnly {
		names = names[len(names)-1:]
	}
	for _, n := range names {
		t, err := s.Import(ctx, n)
		if err != nil {
			return nil, err
		}
		res.Titles = append(res.Titles, t)
	}
	res.Title = res.Titles[len(res.Titles)-1]
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
	if res.Box1, err = s.Boot(ctx, "box1", 0, disk); err != nil {
		return nil, err
	}
	if res.Box2, err = s.Boot(ctx, "box2", 1, disk); err != nil {
		return nil, err
	}
	b1, b2 := res.Box1, res.Box2
	if _, err := b1.WaitFor(ctx, firstScreenLine); err != nil {
		return nil, err
	}
	at, _, _ := b1.LineAt(firstScreenLine)
	res.FirstScreen = at.Sub(b1.PoweredOn)
	if at, _, ok := b1.LineAt(stage2Line); ok {
		res.Stage2 = at.Sub(b1.PoweredOn)
	}
	s.logf("box1 showed its first TV screen (activation) %v after power-on; its second stage started after %v",
		res.FirstScreen.Round(100*time.Millisecond), res.Stage2.Round(100*time.Millisecond))
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

	// Box 1 gets the movies from the media server, one after the other.
	for _, t := range res.Titles {
		if err := ann.Web.Add(ctx, t.ID); err != nil {
			return nil, err
		}
		s.logf("Ann added %q to her list on the web", t.Name)
	}
	if !s.cfg.MainPathOnly {
		if err := s.checkListOrder(ctx, b1, res.Titles); err != nil {
			return nil, err
		}
		if res.MixedStates, err = s.mixedStates(ctx, b1, res.Titles, func() (string, error) { return shot(b1, "my-list") }); err != nil {
			return nil, err
		}
		if res.PowerCut, err = s.powerCut(ctx, b1, res.Title); err != nil {
			return nil, err
		}
	}
	for _, t := range res.Titles {
		if err := s.waitHolds(ctx, b1, t.ID); err != nil {
			return nil, err
		}
	}
	s.logf("box1 holds all of its list, from the media server")
	if s.cfg.MainPathOnly {
		if _, err := shot(b1, "my-list"); err != nil {
			return nil, err
		}
	}
	if err := b1.Keys(ctx, "f2"); err != nil { // Menu: the catalog
		return nil, err
	}
	time.Sleep(2 * time.Second)
	if _, err := shot(b1, "catalog"); err != nil {
		return nil, err
	}

	// Box 2 gets it from box 1, across both NATs.
	if st, err := s.Admin.Box(ctx, b2.ID); err != nil {
		return nil, err
	} else if len(st.Holdings) > 0 {
		return nil, fmt.Errorf("demo: box2 holds titles before Bob asked for any: %+v", st.Holdings)
	}
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
		if t.Title == res.Title.ID && t.Receiver == b2.ID {
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
	if _, err := shot(b2, "purchase"); err != nil {
		return nil, err
	}
	if err := b2.Keys(ctx, "ret"); err != nil {
		return nil, err
	}
	s.logf("box2: Bob confirmed the price; the box gets a pass and the key, and plays")
	time.Sleep(4 * time.Second)
	if _, err := shot(b2, "playback"); err != nil {
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

// Console lines that time box 1's start: playerd logs the first as it
// puts the activation screen up (a factory-fresh box's first screen); the
// second is the second stage's init's first line, when the verified chain
// has handed over and none of the box's own programs has run yet.
const (
	firstScreenLine = `playerd.*showing the activation screen`
	stage2Line      = `^stage2: `
)

// checkListOrder checks that the scheduler has the box's list in the
// order the titles were added: the order it fetches them in.
func (s *System) checkListOrder(ctx context.Context, b *Box, titles []Title) error {
	want := make([]media.ID, len(titles))
	for i, t := range titles {
		want[i] = t.ID
	}
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := s.Admin.Box(ctx, b.ID)
		if err == nil && slices.Equal(st.List, want) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: %s's list is %v (%v), want %v", b.Name, st.List, err, want)
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// progress reads the scheduler's view of the box's holdings of titles.
func (s *System) progress(ctx context.Context, b *Box, titles []Title) ([]TitleProgress, error) {
	st, err := s.Admin.Box(ctx, b.ID)
	if err != nil {
		return nil, err
	}
	out := make([]TitleProgress, len(titles))
	for i, t := range titles {
		out[i] = TitleProgress{Title: t.ID, Pieces: t.Pieces}
		for _, h := range st.Holdings {
			if h.Title != t.ID {
				continue
			}
			out[i].Complete = h.Complete
			if h.Complete {
				out[i].Present = t.Pieces
			} else if bm, err := store.BitmapFromBytes(t.Pieces, h.Have); err == nil {
				out[i].Present = bm.Count()
			}
		}
	}
	return out, nil
}

// mixedStates waits until the scheduler sees box 1 holding the first title,
// part of the second and none of the third, takes the screenshot, and
// reads the holdings again.
func (s *System) mixedStates(ctx context.Context, b *Box, titles []Title, screenshot func() (string, error)) (*MixedStates, error) {
	want := func(p []TitleProgress) bool {
		return p[0].Complete && !p[1].Complete && p[1].Present > 0 && p[2].Present == 0 && !p[2].Complete
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		p, err := s.progress(ctx, b, titles)
		switch {
		case err != nil:
		case want(p):
			// The TV got the same progress report as the scheduler; it
			// rereads the transfer daemon at most every 0.5 s and draws
			// every 0.1 s.
			if err := sleepCtx(ctx, time.Second); err != nil {
				return nil, err
			}
			ms := &MixedStates{Before: p}
			if ms.Screenshot, err = screenshot(); err != nil {
				return nil, err
			}
			if ms.After, err = s.progress(ctx, b, titles); err != nil {
				return nil, err
			}
			s.logf("%s's My List: %s, %s, %s", b.Name, p[0].State(), p[1].State(), p[2].State())
			return ms, nil
		case p[1].Complete || p[2].Present > 0:
			return nil, fmt.Errorf("demo: %s's downloads went past the mixed states before they were seen: %+v", b.Name, p)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("demo: %s's My List never had mixed states within 3 minutes: %+v, %v\n%s", b.Name, p, err, tail(b.Console(), 40))
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// powerCut waits until box 1 is part-way through t, cuts its power,
// checks its store as the cut left it, powers it on again and waits until
// it holds t complete.
func (s *System) powerCut(ctx context.Context, b *Box, t Title) (*PowerCut, error) {
	pc := &PowerCut{Title: t}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		st, err := s.Admin.Box(ctx, b.ID)
		if err == nil {
			if i := slices.IndexFunc(st.Holdings, func(h api.TitleState) bool { return h.Title == t.ID }); i >= 0 {
				h := st.Holdings[i]
				if h.Complete {
					return nil, fmt.Errorf("demo: %s finished %q before the power cut", b.Name, t.Name)
				}
				if bm, err := store.BitmapFromBytes(t.Pieces, h.Have); err == nil && bm.Count() > 0 {
					pc.Reported = bm
					break
				}
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("demo: %s never started %q within 3 minutes\n%s", b.Name, t.Name, tail(b.Console(), 40))
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return nil, err
		}
	}
	b.PowerCut()
	cut := time.Now()
	s.logf("power cut on %s, with %d of %d pieces of %q reported", b.Name, pc.Reported.Count(), t.Pieces, t.Name)
	var err error
	if pc.AtCut, err = s.CheckStore(ctx, b.Disk); err != nil {
		return nil, err
	}
	at := pc.AtCut.Titles[t.ID]
	s.logf("%s's store as the cut left it: %d of %d pieces of %q present, %d of them failing their hash (e2fsck exit %d)",
		b.Name, at.Present, at.Pieces, t.Name, len(at.Bad), pc.AtCut.Fsck)
	// The power comes back at once: the box registers as a new instance,
	// and the scheduler ends the transfers it forgot.
	pc.Off = time.Since(cut)
	if err := s.PowerOn(ctx, b); err != nil {
		return nil, err
	}
	if _, err := b.WaitFor(ctx, `transferd: box ([0-9a-f]{32}) pieces`); err != nil {
		return nil, err
	}
	pc.Back = time.Since(b.PoweredOn)
	if err := s.waitHolds(ctx, b, t.ID); err != nil {
		return nil, err
	}
	pc.Complete = time.Since(b.PoweredOn)
	ts, err := s.Admin.Transfers(ctx, b.ID, 50)
	if err != nil {
		return nil, err
	}
	for _, x := range slices.Backward(ts) {
		switch {
		case x.Title != t.ID || x.Receiver != b.ID:
		case x.Created.Before(b.PoweredOn):
			pc.Before = append(pc.Before, x)
		default:
			pc.After = append(pc.After, x)
		}
	}
	s.logf("%s off for %v, back %v after power-on, %q complete after %v; transfers before the cut: %s; after: %s", b.Name,
		pc.Off.Round(100*time.Millisecond), pc.Back.Round(100*time.Millisecond), t.Name, pc.Complete.Round(100*time.Millisecond), transfers(pc.Before), transfers(pc.After))
	return pc, nil
}

func transfers(ts []schedstore.Transfer) string {
	var out []string
	for _, t := range ts {
		why := ""
		if t.Outcome != "" {
			why = ": " + t.Outcome
		}
		out = append(out, fmt.Sprintf("%d (%s, %d pieces%s)", t.ID, t.State, t.Pieces, why))
	}
	return cmp.Or(strings.Join(out, ", "), "none")
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
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

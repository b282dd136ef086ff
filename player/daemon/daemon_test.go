package daemon

import (
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/board/remote"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/keys"
	"github.com/boxswarm/boxswarm/media/mediatest"
	"github.com/boxswarm/boxswarm/p2p/local"
	"github.com/boxswarm/boxswarm/player/tv"
)

const rentReason = "Renting this title costs 3.99 EUR and lets you watch it for 48 hours. Confirm to rent it and play."

// TestViewerJourney walks a box from its activation screen to a rented
// title played through ffmpeg: the decoded frames must be the source's,
// and the content key must be destroyed once playback ends.
func TestViewerJourney(t *testing.T) {
	src, want := sourceClip(t)
	e := newEnv(t)
	movie := e.importTitle(src)
	downloading, notStarted, extra := media.ID{0xd1}, media.ID{0xd2}, media.ID{0xd3}
	e.be.catalog = []api.CatalogItem{
		{Title: movie.ID, Name: "Big Buck Bunny", Genre: "Animation", Minutes: 10},
		{Title: downloading, Name: "Charade", Genre: "Thriller", Minutes: 113},
		{Title: notStarted, Name: "Metropolis", Genre: "Drama", Minutes: 153},
		{Title: extra, Name: "Nosferatu", Genre: "Horror", Minutes: 94},
	}
	e.be.list = api.PriorityList{Titles: []media.ID{movie.ID, downloading, notStarted}, Version: 1}
	e.be.progress = map[media.ID]local.Progress{
		movie.ID:    {Complete: true, Have: 1, Pieces: 1},
		downloading: {Have: 3, Pieces: 10},
	}
	e.be.pass = func(req api.PassRequest) api.PassResponse {
		if !req.Confirm {
			return api.PassResponse{Title: req.Title, Price: "3.99 EUR", Offer: api.OfferRent, WindowSeconds: 48 * 3600, Reason: rentReason}
		}
		if req.Price != "3.99 EUR" {
			return api.PassResponse{Title: req.Title, Price: "3.99 EUR", Reason: "The price is now 3.99 EUR; confirm again to pay it."}
		}
		return e.grant(req.Title, 48*time.Hour)
	}
	e.be.key = e.release
	ready := make(chan struct{})
	o := e.options()
	o.Ready = func() { close(ready) }
	e.start(o)

	// Activation: a refused code shows the head-end's reason and stays
	// for correction; the right one leads to My List.
	waitScreen[tv.ActivationView](e, "the activation screen", tv.ScreenActivation, nil)
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	e.typeText("AAAABBBBCCCCDDDE")
	e.press(remote.OK)
	v := waitScreen(e, "the refusal", tv.ScreenActivation, func(v tv.ActivationView) bool { return v.Error != "" })
	if v.Error != "unknown activation code" {
		t.Errorf("activation refusal shows %q, want the head-end's reason", v.Error)
	}
	e.press(remote.Delete)
	e.typeText("D")
	e.press(remote.OK)

	// My List with every download state.
	list := waitScreen(e, "My List", tv.ScreenMyList, func(v tv.MyListView) bool { return len(v.Items) == 3 })
	for i, want := range []struct {
		name  string
		state tv.DownloadState
		prog  float64
	}{{"Big Buck Bunny", tv.Downloaded, 0}, {"Charade", tv.Downloading, 0.3}, {"Metropolis", tv.NotStarted, 0}} {
		it := list.Items[i]
		if it.Name != want.name || it.Download != want.state || it.Progress != want.prog || it.Viewable() {
			t.Errorf("My List item %d: %s %v %.2f viewable %v, want %s %v %.2f not viewable",
				i+1, it.Name, it.Download, it.Progress, it.Viewable(), want.name, want.state, want.prog)
		}
	}
	// The catalog has no prices: a title nobody has asked about is
	// offered for rent, not shown free.
	if got, want := tv.StatusLine(1, list.Items[0]), "Priority 1 · Downloaded · Rent to watch"; got != want || list.Items[0].Price.Known() {
		t.Errorf("status of the downloaded title %q (price %+v), want %q and no price", got, list.Items[0].Price, want)
	}
	if calls := e.be.Calls(); !slices.Contains(calls, "Activate AAAA-BBBB-CCCC-DDDD") {
		t.Errorf("calls %q: no activation with the typed code", calls)
	}

	// The catalog, and a title added from it at priority 2.
	e.press(remote.Menu)
	cat := waitScreen(e, "the catalog", tv.ScreenCatalog, func(v tv.CatalogView) bool { return len(v.Rows) == 4 })
	if cat.Rows[3].Title.Name != "Nosferatu" || cat.Rows[3].Rank != 0 || cat.Rows[0].Rank != 1 {
		t.Errorf("catalog rows %+v", cat.Rows)
	}
	e.press(remote.Char('N'), remote.Char('2'), remote.OK)
	e.waitFor("the list edit", func(Snapshot) bool {
		l, _ := e.be.List(context.Background())
		return slices.Equal(l.Titles, []media.ID{movie.ID, extra, downloading, notStarted})
	})
	e.press(remote.Back)
	waitScreen(e, "My List with the new title", tv.ScreenMyList, func(v tv.MyListView) bool {
		return len(v.Items) == 4 && v.Items[1].Name == "Nosferatu"
	})

	// OK on the downloaded title: the price comes from the head-end.
	e.press(remote.OK)
	buy := waitScreen[tv.PurchaseView](e, "the purchase screen", tv.ScreenPurchase, nil)
	if buy.Title.Price != (tv.Price{Amount: 399, Currency: "EUR"}) || buy.Title.Window != 48*time.Hour || buy.Title.Name != "Big Buck Bunny" {
		t.Errorf("purchase screen shows %+v, want 3.99 EUR for 48 h", buy.Title)
	}
	e.press(remote.OK)
	key := e.nextKey()
	e.waitFor("the end of playback", func(s Snapshot) bool { return s.Played == 1 && s.Screen == tv.ScreenMyList })
	if key.Bytes() != nil {
		t.Error("content key not destroyed after playback")
	}
	if err := mediatest.SameFrames(want, e.readReport()); err != nil {
		t.Errorf("the decoder's frames: %v", err)
	} else {
		t.Logf("%d frames decoded in the box identical to the source", len(want))
	}
	calls := e.be.Calls()
	if !slices.Contains(calls, "Pass "+movie.ID.String()+` confirm=true price="3.99 EUR"`) {
		t.Errorf("calls %q: no confirmation at the price shown", calls)
	}
	// The pass's window now shows as time left.
	list = waitScreen(e, "the rental's time left", tv.ScreenMyList, func(v tv.MyListView) bool { return v.Items[0].Viewable() })
	if left := list.Items[0].ViewLeft; left < 47*time.Hour || left > 48*time.Hour {
		t.Errorf("time left %s, want about 48 h", left)
	}
	if _, _, shows := e.screen.counts(); shows == 0 {
		t.Error("nothing was shown on the display")
	}
}

// TestRefusals shows the head-end's and the vault's reasons where the
// viewer is, and the purchase screen again when a rental has ended.
func TestRefusals(t *testing.T) {
	src, _ := sourceClip(t)
	e := newEnv(t)
	region, rented, vaultSays := e.importTitle(src), e.importTitle(src), e.importTitle(src)
	e.be.status = local.Status{Box: e.be.box, Activated: true, Connected: true, StoreSocket: e.be.status.StoreSocket}
	e.be.catalog = []api.CatalogItem{{Title: region.ID, Name: "A Region"}, {Title: rented.ID, Name: "B Rented"}, {Title: vaultSays.ID, Name: "C Vault"}}
	e.be.list = api.PriorityList{Titles: []media.ID{region.ID, rented.ID, vaultSays.ID}, Version: 1}
	for _, id := range e.be.list.Titles {
		e.be.progress[id] = local.Progress{Complete: true, Have: 1, Pieces: 1}
	}
	const regionReason = "This title is not available in the region where your box is installed."
	const over = "Your rental of this title has ended. Renting this title again costs 2.49 EUR and lets you watch it for 24 hours. Confirm to rent it and play."
	rentalOver := false
	e.be.pass = func(req api.PassRequest) api.PassResponse {
		switch {
		case req.Title == region.ID:
			return api.PassResponse{Title: req.Title, Reason: regionReason}
		case req.Title == rented.ID && rentalOver:
			return api.PassResponse{Title: req.Title, Price: "2.49 EUR", Offer: api.OfferRent, WindowSeconds: 24 * 3600, Reason: over}
		}
		return e.grant(req.Title, time.Hour) // rented on the web
	}
	e.be.key = func(raw []byte) api.KeyResponse {
		if r := e.release(raw); r.Title != vaultSays.ID {
			return r
		}
		return api.KeyResponse{Title: vaultSays.ID, Reason: "unknown-title: This title cannot be played at the moment."}
	}
	e.start(e.options())

	// A region refusal, in the status line.
	waitScreen(e, "My List", tv.ScreenMyList, func(v tv.MyListView) bool { return len(v.Items) == 3 })
	e.press(remote.OK)
	waitScreen(e, "the region refusal", tv.ScreenMyList, func(v tv.MyListView) bool { return v.Notice == regionReason })

	// A title rented elsewhere plays at once, with no purchase screen.
	e.press(remote.Down, remote.OK)
	key := e.nextKey()
	e.waitFor("the end of playback", func(s Snapshot) bool { return s.Played == 1 && s.Screen == tv.ScreenMyList })
	if key.Bytes() != nil {
		t.Error("content key not destroyed after playback")
	}
	waitScreen(e, "the rental shown", tv.ScreenMyList, func(v tv.MyListView) bool { return v.Items[1].Viewable() })

	// Its rental ends: Play brings the purchase screen with the new price
	// and the reason.
	rentalOver = true
	e.press(remote.OK)
	buy := waitScreen(e, "the purchase screen", tv.ScreenPurchase, func(v tv.PurchaseView) bool { return v.Error != "" })
	if buy.Title.Price != (tv.Price{Amount: 249, Currency: "EUR"}) || buy.Title.Window != 24*time.Hour || buy.Error != over {
		t.Errorf("purchase screen %+v, want 2.49 EUR for 24 h with the reason", buy)
	}
	e.press(remote.Back)
	// My List now knows the price the head-end said.
	back := waitScreen[tv.MyListView](e, "My List after the purchase screen", tv.ScreenMyList, nil)
	if got, want := tv.StatusLine(2, back.Items[1]), "Priority 2 · Downloaded · 2.49 EUR for 24 h"; got != want {
		t.Errorf("status of the title whose rental ended %q, want %q", got, want)
	}

	// The vault refuses: its sentence, without its code.
	e.press(remote.Down, remote.OK)
	waitScreen(e, "the vault's refusal", tv.ScreenMyList, func(v tv.MyListView) bool {
		return v.Notice == "This title cannot be played at the moment."
	})
	select {
	case <-e.hooked:
		t.Error("a key reached the player after the vault refused")
	default:
	}
}

// TestStopDestroysKey plays in real time and checks who owns the screen
// (the decoder while playing, the daemon's overlay while paused), then
// stops mid-title: the key must be destroyed at once.
func TestStopDestroysKey(t *testing.T) {
	src, _ := sourceClip(t)
	e := newEnv(t)
	m := e.importTitle(src)
	e.be.status = local.Status{Box: e.be.box, Activated: true, Connected: true, StoreSocket: e.be.status.StoreSocket}
	e.be.catalog = []api.CatalogItem{{Title: m.ID, Name: "Sintel"}}
	e.be.list = api.PriorityList{Titles: []media.ID{m.ID}, Version: 1}
	e.be.progress[m.ID] = local.Progress{Complete: true, Have: 1, Pieces: 1}
	e.be.pass = func(req api.PassRequest) api.PassResponse { return e.grant(req.Title, time.Hour) }
	e.be.key = e.release
	o := e.options()
	o.Unpaced = false
	e.start(o)

	waitScreen(e, "My List", tv.ScreenMyList, func(v tv.MyListView) bool { return len(v.Items) == 1 })
	e.press(remote.OK)
	key := e.nextKey()
	e.waitFor("the decoder to own the screen", func(s Snapshot) bool { return s.DecoderOwnsScreen })
	time.Sleep(100 * time.Millisecond)
	opens, closes, shows := e.screen.counts()
	if opens != closes {
		t.Errorf("display opened %d times and closed %d: still held while the decoder plays", opens, closes)
	}

	e.press(remote.PlayPause)
	waitScreen(e, "the pause overlay", tv.ScreenPlayback, func(v tv.PlaybackView) bool { return v.Speed == 0 && v.Overlay })
	e.waitFor("the overlay drawn", func(s Snapshot) bool {
		_, _, n := e.screen.counts()
		return !s.DecoderOwnsScreen && n > shows
	})
	if key.Bytes() == nil {
		t.Fatal("content key destroyed while paused")
	}
	e.press(remote.PlayPause)
	e.waitFor("the decoder to own the screen again", func(s Snapshot) bool { return s.DecoderOwnsScreen })
	// Past the first keyframe after the start, so that a resume point is
	// saved.
	waitScreen(e, "playback past 1.2 s", tv.ScreenPlayback, func(v tv.PlaybackView) bool { return v.Position >= 1200*time.Millisecond })

	e.press(remote.Stop)
	start := time.Now()
	e.waitFor("the key destroyed", func(Snapshot) bool { return key.Bytes() == nil })
	if d := time.Since(start); d > time.Second {
		t.Errorf("key destroyed %s after Stop", d)
	}
	s := e.waitFor("the end of playback", func(s Snapshot) bool { return s.Played == 1 })
	if s.Screen != tv.ScreenMyList {
		t.Errorf("after Stop the TV shows %s", s.Screen)
	}
	pos, ok, err := e.st.Position(m.ID)
	if err != nil || !ok || pos == 0 {
		t.Errorf("resume position %d (%v, %v): want one saved mid-title", pos, ok, err)
	}
}

// TestServiceScreen: a transfer daemon that does not answer brings the
// service screen, and one that comes back takes it away. The display
// comes late: the daemon starts headless and takes it once it is there.
func TestServiceScreen(t *testing.T) {
	dir := shortTemp(t)
	sock := filepath.Join(dir, "run", "transferd.sock")
	e := &env{t: t, screen: &screen{fail: 3}, keys: make(keypad, 8), hooked: make(chan *keys.Secret, 1)}
	o := Options{Local: sock, MediaKeys: []ed25519.PublicKey{make(ed25519.PublicKey, 32)}, Identity: PEMIdentity(filepath.Join(dir, "none")),
		OpenDisplay: e.screen.opener, DisplayRetry: 20 * time.Millisecond,
		ServiceAfter: 300 * time.Millisecond, RefreshEvery: 10 * time.Millisecond, RenderEvery: 5 * time.Millisecond}
	readyCalled := make(chan struct{})
	o.Ready = func() { close(readyCalled) }
	e.start(o)
	sv := waitScreen[tv.ServiceView](e, "the service screen", tv.ScreenService, nil)
	if !strings.Contains(sv.Detail, "transferd.sock") {
		t.Errorf("service detail %q does not say what is unreachable", sv.Detail)
	}
	e.waitFor("the service screen on the late display", func(Snapshot) bool {
		_, _, shows := e.screen.counts()
		return shows > 0
	})
	select {
	case <-readyCalled:
		t.Fatal("ready reported while the transfer daemon does not answer")
	default:
	}
	be := &backend{changed: make(chan struct{}), change: 1, status: local.Status{NeedsCode: true}}
	l, err := local.Listen(sock)
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { local.NewServer(be, local.ServerOptions{}).Serve(ctx, l); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitScreen[tv.ActivationView](e, "the activation screen", tv.ScreenActivation, nil)
	select {
	case <-readyCalled:
	case <-time.After(5 * time.Second):
		t.Fatal("not ready once the transfer daemon answers")
	}
}

// shortTemp is a temporary folder with a path short enough for sockets.
func shortTemp(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "pd")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func TestFFmpegArgs(t *testing.T) {
	for _, tc := range []struct {
		name         string
		f            FFmpeg
		video, audio bool
		want         string
	}{
		{"default", FFmpeg{}, true, true,
			"-y -analyzeduration 500000 -hide_banner -nostats -loglevel error -f mpegts -i pipe:0 -map 0:v:0 -an -pix_fmt bgra -f fbdev /dev/fb0"},
		{"report", FFmpeg{Report: "/run/f.md5"}, true, false,
			"-y -analyzeduration 500000 -hide_banner -nostats -loglevel error -f mpegts -i pipe:0 -map 0:v:0 -an -pix_fmt bgra -f fbdev /dev/fb0 -map 0:v:0 -an -f framemd5 /run/f.md5"},
		{"audio", FFmpeg{Video: []string{"-f", "null", "-"}, Audio: []string{"-f", "alsa", "default"}}, true, true,
			"-y -analyzeduration 500000 -hide_banner -nostats -loglevel error -f mpegts -i pipe:0 -map 0:v:0 -an -f null - -map 0:a:0 -vn -f alsa default"},
		{"audio output, title without audio", FFmpeg{Audio: []string{"-f", "alsa", "default"}}, true, false,
			"-y -analyzeduration 500000 -hide_banner -nostats -loglevel error -f mpegts -i pipe:0 -map 0:v:0 -an -pix_fmt bgra -f fbdev /dev/fb0"},
		{"no video output", FFmpeg{Video: []string{}}, true, true, ""},
		{"no input options", FFmpeg{Input: []string{}}, true, false,
			"-y -hide_banner -nostats -loglevel error -f mpegts -i pipe:0 -map 0:v:0 -an -pix_fmt bgra -f fbdev /dev/fb0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(tc.f.Args(tc.video, tc.audio), " "); got != tc.want {
				t.Errorf("Args =\n %s\nwant\n %s", got, tc.want)
			}
		})
	}
}

func TestParseOffer(t *testing.T) {
	for _, tc := range []struct {
		resp   api.PassResponse
		ok     bool
		want   tv.Price
		window time.Duration
		buy    bool
	}{
		{api.PassResponse{Price: "3.99 EUR", Offer: api.OfferRent, WindowSeconds: 48 * 3600}, true, tv.Price{Amount: 399, Currency: "EUR"}, 48 * time.Hour, false},
		{api.PassResponse{Price: "12.00 USD", Offer: api.OfferBuy}, true, tv.Price{Amount: 1200, Currency: "USD"}, 0, true},
		{api.PassResponse{Price: "12.00 USD", Offer: api.OfferBuy, WindowSeconds: 60}, true, tv.Price{Amount: 1200, Currency: "USD"}, 0, true},
		{api.PassResponse{Price: "0.50 EUR", Offer: api.OfferRent, WindowSeconds: 90 * 60}, true, tv.Price{Amount: 50, Currency: "EUR"}, 90 * time.Minute, false},
		{api.PassResponse{Price: "0.50 EUR"}, true, tv.Price{Amount: 50, Currency: "EUR"}, 0, false},
		{api.PassResponse{Price: "no price"}, false, tv.Price{}, 0, false},
		{api.PassResponse{Price: "3,99 EUR"}, false, tv.Price{}, 0, false},
		{api.PassResponse{Price: "3.9 EUR"}, false, tv.Price{}, 0, false},
	} {
		o, ok := parseOffer(tc.resp, time.Now())
		if ok != tc.ok || o.price != tc.want || o.window != tc.window || o.buy != tc.buy || (ok && o.raw != tc.resp.Price) {
			t.Errorf("parseOffer(%+v) = %+v, %v; want %+v, %s, buy %v, %v", tc.resp, o, ok, tc.want, tc.window, tc.buy, tc.ok)
		}
		if ok && formatPrice(o.price) != tc.resp.Price {
			t.Errorf("formatPrice(%+v) = %q, want %q", o.price, formatPrice(o.price), tc.resp.Price)
		}
	}
}

func TestSplitOutcome(t *testing.T) {
	for _, tc := range []struct{ in, code, rest string }{
		{"replayed: The media pass has already been used.", "replayed", "The media pass has already been used."},
		{"no-pass: No media pass was presented.", "no-pass", "No media pass was presented."},
		{"Something went wrong on our side. Please try again: later", "", "Something went wrong on our side. Please try again: later"},
		{"", "", ""},
	} {
		code, rest := splitOutcome(tc.in)
		if code != tc.code || rest != tc.rest {
			t.Errorf("splitOutcome(%q) = %q, %q; want %q, %q", tc.in, code, rest, tc.code, tc.rest)
		}
	}
}

func TestOptionsChecked(t *testing.T) {
	for _, o := range []Options{
		{},
		{Local: "x"},
		{Local: "x", MediaKeys: []ed25519.PublicKey{make(ed25519.PublicKey, 32)}},
	} {
		if _, err := New(o); !errors.Is(err, ErrOptions) {
			t.Errorf("New(%+v) = %v, want ErrOptions", o, err)
		}
	}
}

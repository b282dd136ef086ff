package tv

import (
	"image"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/board/remote"
)

var fuzzKeys = []remote.Key{
	up, down, left, right, ok, back, menu, home, playPause, ff, rew, stop, del, info, pgUp, pgDown,
	char('0'), char('1'), char('2'), char('5'), char('9'), char('A'), char('N'), char('Z'),
}

var codeFormat = regexp.MustCompile(`^[A-Z2-7]{4}(-[A-Z2-7]{4}){3}$`)

// FuzzApp drives the interface with arbitrary keys and daemon reports and
// checks that it never panics, never points outside the list, and only asks
// the daemon for things that make sense.
func FuzzApp(f *testing.F) {
	f.Add([]byte{0, 1, 1, 4, 4, 3, 0, 0, 4})
	f.Add([]byte{6, 1, 18, 4, 200, 4, 6, 16, 4, 201})
	f.Add([]byte{202, 21, 22, 23, 3, 2, 0, 4, 203, 4})
	f.Add([]byte{3, 1, 0, 0, 4, 12, 4, 2, 4, 204, 1, 1, 205})
	r, err := NewRenderer()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 400 {
			return
		}
		clock := &fakeClock{t: time.Unix(1e9, 0)}
		a := NewApp(Config{Now: clock.now})
		a.SetData(testData())
		known := map[string]bool{}
		for _, c := range catalog() {
			known[c.ID] = true
		}
		img := image.NewRGBA(image.Rect(0, 0, 160, 90))
		for i, op := range ops {
			clock.t = clock.t.Add(time.Second)
			if int(op) < len(fuzzKeys) {
				before := a.Screen()
				act := a.HandleKey(fuzzKeys[op])
				checkAction(t, a, before, act)
			} else {
				daemon(a, op, i)
			}
			checkState(t, a)
			if i%16 == 0 {
				a.Render(r, img)
			}
		}
		a.Render(r, img)
	})
}

// daemon plays the other side: fresh data, playback reports, answers.
func daemon(a *App, op byte, i int) {
	switch op % 8 {
	case 0:
		d := testData()
		if i%2 == 0 {
			slices.Reverse(d.List)
		}
		d.List = d.List[:len(d.List)-i%len(d.List)]
		a.SetData(d)
	case 1:
		a.SetPlayback(Playback{Title: "t01", Speed: 1 + i%3, Position: time.Duration(i) * time.Second, Duration: time.Hour})
	case 2:
		a.SetPlayback(Playback{Ended: true})
	case 3:
		a.PurchaseFailed("declined")
	case 4:
		a.ShowActivation()
	case 5:
		a.ActivationFailed("bad code")
	case 6:
		a.Activated()
	case 7:
		a.SetData(Data{})
	}
}

func checkState(t *testing.T, a *App) {
	t.Helper()
	seen := map[string]bool{}
	for _, it := range a.data.List {
		if seen[it.ID] {
			t.Fatalf("%s twice on the list", it.ID)
		}
		seen[it.ID] = true
	}
	if v, ok := a.View().(MyListView); ok && len(v.Items) > 0 && (v.Selected < 0 || v.Selected >= len(v.Items)) {
		t.Fatalf("selection %d of %d", v.Selected, len(v.Items))
	}
	if v, ok := a.View().(CatalogView); ok && len(v.Rows) > 0 && (v.Selected < 0 || v.Selected >= len(v.Rows)) {
		t.Fatalf("catalog selection %d of %d", v.Selected, len(v.Rows))
	}
	if v, ok := a.View().(ActivationView); ok && (v.Cursor < 0 || v.Cursor >= len(v.Slots)) {
		t.Fatalf("activation cursor %d of %d", v.Cursor, len(v.Slots))
	}
}

func checkAction(t *testing.T, a *App, before Screen, act Action) {
	t.Helper()
	listed := func(id string) (int, bool) {
		i := indexOf(a.data.List, id)
		return i + 1, i >= 0
	}
	switch x := act.(type) {
	case nil:
	case AddToList:
		rank, ok := listed(x.Title)
		if before != ScreenCatalog || !ok || (x.Rank != 0 && x.Rank != rank) {
			t.Fatalf("%#v from %v; now at %d (%v)", x, before, rank, ok)
		}
	case Move:
		rank, ok := listed(x.Title)
		if !ok || x.Rank != rank || x.Rank < 1 {
			t.Fatalf("%#v; now at %d (%v)", x, rank, ok)
		}
	case Remove:
		if _, ok := listed(x.Title); ok || before != ScreenRemove {
			t.Fatalf("%#v from %v, still listed %v", x, before, ok)
		}
	case Buy:
		if before != ScreenPurchase || x.Price.Amount <= 0 {
			t.Fatalf("%#v from %v", x, before)
		}
	case Play:
		rank, ok := listed(x.Title)
		if before != ScreenMyList || !ok || !a.data.List[rank-1].Viewable() {
			t.Fatalf("%#v from %v", x, before)
		}
	case SetSpeed:
		s := abs(x.Speed)
		if before != ScreenPlayback || !(s <= 1 || (s >= 2 && s <= 32 && s&(s-1) == 0)) {
			t.Fatalf("%#v from %v", x, before)
		}
	case Seek:
		if before != ScreenPlayback || x.To < 0 || (a.play.Duration > 0 && x.To > a.play.Duration) {
			t.Fatalf("%#v from %v (duration %v)", x, before, a.play.Duration)
		}
	case Stop:
		if before != ScreenPlayback {
			t.Fatalf("stop from %v", before)
		}
	case Activate:
		if before != ScreenActivation || !codeFormat.MatchString(x.Code) {
			t.Fatalf("%#v from %v", x, before)
		}
	default:
		t.Fatalf("unknown action %#v", act)
	}
}

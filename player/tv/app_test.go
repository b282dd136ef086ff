package tv

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/board/remote"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func newTestApp() (*App, *fakeClock) {
	c := &fakeClock{t: time.Date(2025, 3, 1, 20, 0, 0, 0, time.UTC)}
	a := NewApp(Config{Now: c.now})
	a.SetData(testData())
	return a, c
}

func listIDs(a *App) string {
	var ids []string
	for _, it := range a.data.List {
		ids = append(ids, it.ID)
	}
	return strings.Join(ids, " ")
}

type step struct {
	key    remote.Key
	want   Action // nil: no action
	screen Screen
}

func run(t *testing.T, a *App, steps []step) {
	t.Helper()
	for i, s := range steps {
		got := a.HandleKey(s.key)
		if got != s.want {
			t.Fatalf("step %d (%v): action %#v, want %#v", i, s.key, got, s.want)
		}
		if a.Screen() != s.screen {
			t.Fatalf("step %d (%v): screen %v, want %v", i, s.key, a.Screen(), s.screen)
		}
	}
}

func TestMyListKeys(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		check func(t *testing.T, a *App)
	}{
		{"play a viewable title", []step{
			{ok, Play{Title: "t01"}, ScreenPlayback},
		}, nil},
		{"rent a downloaded title", []step{
			{down, nil, ScreenMyList}, {down, nil, ScreenMyList},
			{ok, nil, ScreenPurchase},
			{ok, Buy{Title: "t04", Price: eur(349)}, ScreenPurchase},
			{back, nil, ScreenPurchase}, // busy: waits for the answer
		}, func(t *testing.T, a *App) {
			if v := a.View().(PurchaseView); !v.Busy {
				t.Error("not busy after Buy")
			}
		}},
		{"cancel a rental", []step{
			{char('3'), nil, ScreenMyList}, {ok, nil, ScreenPurchase},
			{right, nil, ScreenPurchase}, {ok, nil, ScreenMyList},
		}, nil},
		{"back out of a rental", []step{
			{char('3'), nil, ScreenMyList}, {playPause, nil, ScreenPurchase}, {back, nil, ScreenMyList},
		}, nil},
		{"downloading title explains", []step{
			{char('4'), nil, ScreenMyList}, {ok, nil, ScreenMyList},
		}, func(t *testing.T, a *App) {
			if v := a.View().(MyListView); !strings.Contains(v.Notice, "62 %") {
				t.Errorf("notice %q", v.Notice)
			}
		}},
		{"move up two places", []step{
			{down, nil, ScreenMyList}, {down, nil, ScreenMyList}, {right, nil, ScreenMyList},
			{up, nil, ScreenMyList}, {up, nil, ScreenMyList}, {up, nil, ScreenMyList},
			{ok, Move{Title: "t04", Rank: 1}, ScreenMyList},
		}, func(t *testing.T, a *App) {
			if got := listIDs(a); !strings.HasPrefix(got, "t04 t01 t03 t02") {
				t.Errorf("list %s", got)
			}
			if v := a.View().(MyListView); v.Selected != 0 || v.Moving {
				t.Errorf("view %+v", v)
			}
		}},
		{"move cancelled", []step{
			{right, nil, ScreenMyList}, {down, nil, ScreenMyList}, {pgDown, nil, ScreenMyList}, {back, nil, ScreenMyList},
		}, func(t *testing.T, a *App) {
			if got := listIDs(a); got != "t01 t03 t04 t02 t05 t06 t13 t08" {
				t.Errorf("list %s", got)
			}
		}},
		{"move to the same place", []step{
			{right, nil, ScreenMyList}, {down, nil, ScreenMyList}, {up, nil, ScreenMyList}, {ok, nil, ScreenMyList},
		}, nil},
		{"remove asks first", []step{
			{char('6'), nil, ScreenMyList}, {del, nil, ScreenRemove}, {ok, nil, ScreenMyList},
			{del, nil, ScreenRemove}, {left, nil, ScreenRemove}, {ok, Remove{Title: "t06"}, ScreenMyList},
		}, func(t *testing.T, a *App) {
			if got := listIDs(a); got != "t01 t03 t04 t02 t05 t13 t08" {
				t.Errorf("list %s", got)
			}
			if v := a.View().(MyListView); v.Selected != 5 {
				t.Errorf("selection %d after removal, want the next title", v.Selected)
			}
		}},
		{"digit 0 selects the tenth, out of range ignored", []step{
			{char('8'), nil, ScreenMyList}, {char('0'), nil, ScreenMyList}, {char('9'), nil, ScreenMyList},
		}, func(t *testing.T, a *App) {
			if v := a.View().(MyListView); v.Selected != 7 {
				t.Errorf("selection %d", v.Selected)
			}
		}},
		{"selection stops at the ends", []step{
			{up, nil, ScreenMyList}, {pgDown, nil, ScreenMyList}, {pgDown, nil, ScreenMyList}, {down, nil, ScreenMyList},
			{pgUp, nil, ScreenMyList}, {pgDown, nil, ScreenMyList},
		}, func(t *testing.T, a *App) {
			if v := a.View().(MyListView); v.Selected != 7 {
				t.Errorf("selection %d", v.Selected)
			}
		}},
		{"menu to the catalog and back", []step{
			{menu, nil, ScreenCatalog}, {menu, nil, ScreenMyList}, {menu, nil, ScreenCatalog}, {back, nil, ScreenMyList},
			{menu, nil, ScreenCatalog}, {home, nil, ScreenMyList},
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _ := newTestApp()
			run(t, a, tt.steps)
			if tt.check != nil {
				tt.check(t, a)
			}
		})
	}
}

func catalogNames(v CatalogView) string {
	var s []string
	for _, r := range v.Rows {
		s = append(s, r.Title.Name)
	}
	return strings.Join(s, ", ")
}

func TestCatalog(t *testing.T) {
	a, _ := newTestApp()
	a.HandleKey(menu)
	v := a.View().(CatalogView)
	names := strings.Split(catalogNames(v), ", ")
	if !slices.IsSortedFunc(names, func(x, y string) int { return strings.Compare(strings.ToLower(x), strings.ToLower(y)) }) || len(names) != 14 {
		t.Fatalf("catalog not alphabetical: %v", names)
	}
	if got := strings.Join(v.Genres, ","); got != "All,Animation,Comedy,Drama,Fantasy,Horror,Science fiction,Thriller" {
		t.Fatalf("genres %s", got)
	}
	ranks := map[string]int{}
	for _, r := range v.Rows {
		ranks[r.Title.ID] = r.Rank
	}
	if ranks["t04"] != 3 || ranks["t11"] != 0 || v.Rows[0].Download != Downloading {
		t.Fatalf("ranks %v, first row %+v", ranks, v.Rows[0])
	}

	a.HandleKey(right)
	if got := catalogNames(a.View().(CatalogView)); got != "Big Buck Bunny, Sintel" {
		t.Fatalf("Animation: %s", got)
	}
	a.HandleKey(left)
	a.HandleKey(left)
	if v := a.View().(CatalogView); v.Genres[v.Genre] != "Thriller" || catalogNames(v) != "Charade, Detour" {
		t.Fatalf("left from All: genre %q, %s", v.Genres[v.Genre], catalogNames(v))
	}
	// The selection stays on a title the new genre has.
	a.HandleKey(down)  // Detour
	a.HandleKey(right) // All
	if v := a.View().(CatalogView); v.Rows[v.Selected].Title.ID != "t07" {
		t.Fatalf("selection moved to %s", v.Rows[v.Selected].Title.Name)
	}
}

func TestCatalogKeys(t *testing.T) {
	// Alphabetically: 0 Big Buck Bunny (#5), 1 Carnival of Souls, 2 Charade
	// (#6), 3 Detour, 4 His Girl Friday, 5 Metropolis (#3), 6 Night of the
	// Living Dead (#4), 7 Nosferatu, 8 Sherlock Jr., 9 Sintel (#2), ...
	tests := []struct {
		name  string
		steps []step
		list  string // the list afterwards
		check func(t *testing.T, a *App)
	}{
		{"add at the end", []step{
			{down, nil, ScreenCatalog}, {ok, AddToList{Title: "t11"}, ScreenCatalog},
		}, "t01 t03 t04 t02 t05 t06 t13 t08 t11", func(t *testing.T, a *App) {
			v := a.View().(CatalogView)
			if v.Rows[1].Rank != 9 || !strings.Contains(v.Notice, "priority 9") {
				t.Errorf("row %+v, notice %q", v.Rows[1], v.Notice)
			}
		}},
		{"add at a priority", []step{
			{down, nil, ScreenCatalog}, {char('2'), nil, ScreenCatalog}, {ok, AddToList{Title: "t11", Rank: 2}, ScreenCatalog},
		}, "t01 t11 t03 t04 t02 t05 t06 t13 t08", nil},
		{"priority past the end adds at the end", []step{
			{down, nil, ScreenCatalog}, {char('4'), nil, ScreenCatalog}, {char('0'), nil, ScreenCatalog},
			{ok, AddToList{Title: "t11", Rank: 9}, ScreenCatalog},
		}, "t01 t03 t04 t02 t05 t06 t13 t08 t11", nil},
		{"typed digits edited", []step{
			{down, nil, ScreenCatalog}, {char('0'), nil, ScreenCatalog}, {char('7'), nil, ScreenCatalog}, {char('5'), nil, ScreenCatalog},
			{del, nil, ScreenCatalog}, {ok, AddToList{Title: "t11", Rank: 7}, ScreenCatalog},
		}, "t01 t03 t04 t02 t05 t06 t11 t13 t08", nil},
		{"back clears the digits, then leaves", []step{
			{char('2'), nil, ScreenCatalog}, {back, nil, ScreenCatalog}, {ok, nil, ScreenMyList},
		}, "t01 t03 t04 t02 t05 t06 t13 t08", func(t *testing.T, a *App) {
			if v := a.View().(MyListView); v.Selected != 4 {
				t.Errorf("OK on a listed title selected %d on My List, want 4 (Big Buck Bunny)", v.Selected)
			}
		}},
		{"priority for a listed title moves it", []step{
			{char('1'), nil, ScreenCatalog}, {ok, Move{Title: "t05", Rank: 1}, ScreenCatalog},
		}, "t05 t01 t03 t04 t02 t06 t13 t08", nil},
		{"letters jump", []step{
			{char('N'), nil, ScreenCatalog}, {char('N'), nil, ScreenCatalog}, {ok, AddToList{Title: "t09"}, ScreenCatalog},
		}, "t01 t03 t04 t02 t05 t06 t13 t08 t09", nil},
		{"letter with no title stays", []step{
			{char('Q'), nil, ScreenCatalog}, {ok, nil, ScreenMyList},
		}, "t01 t03 t04 t02 t05 t06 t13 t08", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _ := newTestApp()
			a.HandleKey(menu)
			run(t, a, tt.steps)
			if got := listIDs(a); got != tt.list {
				t.Errorf("list %s, want %s", got, tt.list)
			}
			if tt.check != nil {
				tt.check(t, a)
			}
		})
	}
}

func TestPlaybackKeys(t *testing.T) {
	a, clock := newTestApp()
	run(t, a, []step{{ok, Play{Title: "t01"}, ScreenPlayback}})
	a.SetPlayback(Playback{Title: "t01", Speed: 1, Position: 10 * time.Minute, Duration: 78 * time.Minute})
	speeds := []struct {
		key  remote.Key
		want int
	}{
		{ff, 2}, {ff, 4}, {ff, 8}, {ff, 16}, {ff, 32}, {ff, 32},
		{rew, -2}, {rew, -4}, {ok, 1}, {rew, -2}, {ff, 2}, {playPause, 1},
		{playPause, 0}, {playPause, 1}, {rew, -2}, {playPause, 1},
	}
	for i, s := range speeds {
		if got := a.HandleKey(s.key); got != (SetSpeed{Speed: s.want}) {
			t.Fatalf("speed step %d (%v): %#v, want speed %d", i, s.key, got, s.want)
		}
		if v := a.View().(PlaybackView); v.Speed != s.want {
			t.Fatalf("speed step %d: view speed %d", i, v.Speed)
		}
	}
	seeks := []struct {
		key  remote.Key
		want time.Duration
	}{
		{right, 10*time.Minute + 30*time.Second},
		{left, 10*time.Minute + 20*time.Second},
		{char('5'), 39 * time.Minute},
		{char('0'), 0},
		{left, 0},
		{char('9'), 70*time.Minute + 12*time.Second},
		{right, 70*time.Minute + 42*time.Second},
	}
	for i, s := range seeks {
		if got := a.HandleKey(s.key); got != (Seek{To: s.want}) {
			t.Fatalf("seek step %d (%v): %#v, want %v", i, s.key, got, s.want)
		}
	}
	a.play.Position = 77*time.Minute + 50*time.Second
	if got := a.HandleKey(right); got != (Seek{To: 78 * time.Minute}) {
		t.Fatalf("seek past the end: %#v", got)
	}

	// The bar hides a while after the last key in normal play, never while
	// paused or in trick play.
	if !a.View().(PlaybackView).Overlay {
		t.Fatal("no overlay right after a key")
	}
	clock.t = clock.t.Add(6 * time.Second)
	if a.View().(PlaybackView).Overlay {
		t.Fatal("overlay still up 6 s after the last key")
	}
	a.HandleKey(playPause)
	clock.t = clock.t.Add(time.Minute)
	if !a.View().(PlaybackView).Overlay {
		t.Fatal("overlay hidden while paused")
	}
	a.HandleKey(playPause)
	a.HandleKey(info)
	if a.View().(PlaybackView).Overlay {
		t.Fatal("Info did not hide the overlay")
	}
	run(t, a, []step{{stop, Stop{}, ScreenMyList}})
}

func TestPlaybackReports(t *testing.T) {
	a, _ := newTestApp()
	// A rental confirmed: the daemon starts playback and says so.
	run(t, a, []step{{char('3'), nil, ScreenMyList}, {ok, nil, ScreenPurchase}, {ok, Buy{Title: "t04", Price: eur(349)}, ScreenPurchase}})
	a.SetPlayback(Playback{Title: "t04", Name: "Metropolis", Speed: 1, Duration: time.Hour})
	if a.Screen() != ScreenPlayback || a.View().(PlaybackView).Name != "Metropolis" {
		t.Fatalf("screen %v view %+v", a.Screen(), a.View())
	}
	a.SetPlayback(Playback{Title: "t04", Speed: 1, Position: time.Minute, Duration: time.Hour})
	if v := a.View().(PlaybackView); v.Name != "Metropolis" || v.Position != time.Minute {
		t.Fatalf("view %+v", v)
	}
	a.SetPlayback(Playback{Title: "t04", Ended: true})
	if a.Screen() != ScreenMyList {
		t.Fatalf("screen %v after the end", a.Screen())
	}
	// A failed rental stays on the dialog with the reason, keys work again.
	run(t, a, []step{{ok, nil, ScreenPurchase}, {ok, Buy{Title: "t04", Price: eur(349)}, ScreenPurchase}})
	a.PurchaseFailed("card declined")
	if v := a.View().(PurchaseView); v.Busy || v.Error != "card declined" {
		t.Fatalf("view %+v", v)
	}
	run(t, a, []step{{back, nil, ScreenMyList}})
}

func typeCode(a *App, s string) {
	for _, r := range s {
		a.HandleKey(remote.Char(r))
	}
}

func TestActivation(t *testing.T) {
	a, _ := newTestApp()
	a.ShowActivation()
	if a.Screen() != ScreenActivation {
		t.Fatal(a.Screen())
	}
	// Incomplete codes are not sent.
	typeCode(a, "KQ3Z")
	if got := a.HandleKey(ok); got != nil || !strings.Contains(a.View().(ActivationView).Error, "12 still to type") {
		t.Fatalf("incomplete: %#v, %q", got, a.View().(ActivationView).Error)
	}
	// 0, 1 and 8 read as O, I and B; 9 is refused.
	typeCode(a, "7m018")
	if v := a.View().(ActivationView); string(v.Slots[4:9]) != "7MOIB" {
		t.Fatalf("slots %q", string(v.Slots))
	}
	a.HandleKey(char('9'))
	if v := a.View().(ActivationView); !strings.Contains(v.Error, "9 is not used") || v.Cursor != 9 || v.Slots[9] != 0 {
		t.Fatalf("after 9: %+v", v)
	}
	// Letters picked with Up and Down, wrapping round the alphabet.
	a.HandleKey(up) // A
	a.HandleKey(up) // B
	a.HandleKey(right)
	a.HandleKey(down) // 7 (from empty)
	a.HandleKey(right)
	a.HandleKey(up)
	a.HandleKey(down) // from A back round to 7
	if v := a.View().(ActivationView); string(v.Slots[9:12]) != "B77" || v.Cursor != 11 {
		t.Fatalf("picked %q, cursor %d", string(v.Slots[9:12]), v.Cursor)
	}
	// Right does not pass an empty box; Delete clears backwards.
	a.HandleKey(right)
	a.HandleKey(right)
	a.HandleKey(del)
	a.HandleKey(del)
	if v := a.View().(ActivationView); string(v.Slots[9:12]) != "B\x00\x00" || v.Cursor != 10 {
		t.Fatalf("after deleting %q, cursor %d", string(v.Slots[9:12]), v.Cursor)
	}
	typeCode(a, "XYZABC")
	if v := a.View().(ActivationView); v.Cursor != 15 {
		t.Fatalf("cursor %d at the end", v.Cursor)
	}
	typeCode(a, "D") // the last box is overwritten, the cursor stays
	if got := a.HandleKey(ok); got != (Activate{Code: "KQ3Z-7MOI-BBXY-ZABD"}) {
		t.Fatalf("activate: %#v", got)
	}
	// Busy until the head-end answers.
	if got := a.HandleKey(del); got != nil || !a.View().(ActivationView).Busy {
		t.Fatal("keys taken while activating")
	}
	a.ActivationFailed("code already used")
	v := a.View().(ActivationView)
	if v.Busy || v.Error != "code already used" || string(v.Slots) != "KQ3Z7MOIBBXYZABD" {
		t.Fatalf("after failure %+v", v)
	}
	if got := a.HandleKey(ok); got != (Activate{Code: "KQ3Z-7MOI-BBXY-ZABD"}) {
		t.Fatalf("retry: %#v", got)
	}
	a.Activated()
	if a.Screen() != ScreenMyList {
		t.Fatal(a.Screen())
	}
	// Playback reports do not pull the box off the activation screen.
	a.ShowActivation()
	a.SetPlayback(Playback{Title: "t01", Speed: 1})
	if a.Screen() != ScreenActivation || string(a.View().(ActivationView).Slots) != strings.Repeat("\x00", 16) {
		t.Fatal("activation screen not fresh, or left for playback")
	}
}

func TestServiceScreenIgnoresKeys(t *testing.T) {
	a, _ := newTestApp()
	a.ShowService(ServiceView{Reason: "disk failed"})
	for k := remote.Up; k.Valid(); k++ {
		if got := a.HandleKey(k); got != nil || a.Screen() != ScreenService {
			t.Fatalf("%v: %#v on %v", k, got, a.Screen())
		}
	}
	a.SetPlayback(Playback{Title: "t01", Speed: 1})
	if a.Screen() != ScreenService {
		t.Fatal("left the service screen")
	}
}

// Fresh data from the daemon keeps the viewer's place.
func TestSetDataKeepsSelection(t *testing.T) {
	a, _ := newTestApp()
	a.HandleKey(char('4')) // Night of the Living Dead
	d := testData()
	slices.Reverse(d.List)
	d.List[4].Progress = 0.7
	a.SetData(d)
	v := a.View().(MyListView)
	if v.Items[v.Selected].ID != "t02" || v.Items[v.Selected].Progress != 0.7 {
		t.Fatalf("selection on %s (%v)", v.Items[v.Selected].ID, v.Items[v.Selected].Progress)
	}
	// The selected title leaves the list: the selection stays at its place.
	d.List = slices.Delete(d.List, 4, 5)
	a.SetData(d)
	if v := a.View().(MyListView); v.Selected != 4 || v.Items[4].ID != "t04" {
		t.Fatalf("selected %d (%s)", v.Selected, v.Items[v.Selected].ID)
	}
	// While moving, the moved title stays where the viewer has put it.
	a, _ = newTestApp()
	for _, k := range keys(right, down, down) { // t01 moved to index 2
		a.HandleKey(k)
	}
	d = testData()
	d.List[0].ViewLeft = time.Hour
	a.SetData(d)
	if got := listIDs(a); got != "t03 t04 t01 t02 t05 t06 t13 t08" || a.data.List[2].ViewLeft != time.Hour {
		t.Fatalf("list during a move %s", got)
	}
	if got := a.HandleKey(ok); got != (Move{Title: "t01", Rank: 3}) {
		t.Fatalf("drop: %#v", got)
	}
	// An empty catalog and list still work.
	a = NewApp(Config{})
	for k := remote.Up; k.Valid(); k++ {
		a.HandleKey(k)
	}
	_ = fmt.Sprint(a.View())
}

func TestStatusLine(t *testing.T) {
	tests := []struct {
		rank int
		it   ListItem
		want string
	}{
		{1, ListItem{Download: Downloaded, ViewLeft: time.Hour}, "Priority 1 · Downloaded · Viewable"},
		{2, ListItem{Title: tMetro, Download: Downloaded}, "Priority 2 · Downloaded · 3.49 EUR for 48 h"},
		// The box's catalog has no prices: until the head-end has said
		// one, a rental is offered without one (not as free).
		{1, ListItem{Title: Title{Name: "Night Train"}, Download: Downloaded}, "Priority 1 · Downloaded · Rent to watch"},
		{1, ListItem{Title: Title{Price: eur(299)}, Download: Downloaded}, "Priority 1 · Downloaded · 2.99 EUR to rent"},
		{1, ListItem{Title: Title{Price: eur(0)}, Download: Downloaded}, "Priority 1 · Downloaded · Free to watch"},
		{1, ListItem{Title: Title{Price: eur(0), Window: 24 * time.Hour}, Download: Downloaded}, "Priority 1 · Downloaded · Free for 24 h"},
		{1, ListItem{Title: Title{Window: 24 * time.Hour}, Download: Downloaded}, "Priority 1 · Downloaded · Rent to watch"},
		{3, ListItem{Download: Downloading, Progress: 0.425}, "Priority 3 · Downloading 42 %"},
		{4, ListItem{Download: Downloading, Progress: 1.7}, "Priority 4 · Downloading 100 %"},
		{12, ListItem{}, "Priority 12 · Not downloaded yet"},
	}
	for _, tt := range tests {
		if got := StatusLine(tt.rank, tt.it); got != tt.want {
			t.Errorf("StatusLine = %q, want %q", got, tt.want)
		}
	}
	for d, want := range map[time.Duration]string{
		0: "0 min", 30 * time.Second: "1 min", 45 * time.Minute: "45 min", 47*time.Hour + 59*time.Minute: "47 h", 96 * time.Hour: "4 days",
	} {
		if got := Hours(d); got != want {
			t.Errorf("Hours(%v) = %q, want %q", d, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		-time.Second: "0:00", 65 * time.Second: "1:05", time.Hour + 2*time.Minute + 3*time.Second: "1:02:03",
	} {
		if got := Clock(d); got != want {
			t.Errorf("Clock(%v) = %q, want %q", d, got, want)
		}
	}
	for _, tt := range []struct {
		p     Price
		known bool
		want  string
	}{
		{Price{Amount: -5, Currency: "EUR"}, true, "-0.05 EUR"},
		{eur(299), true, "2.99 EUR"},
		{eur(0), true, "Free"},
		{Price{}, false, ""},
		{Price{Amount: 299}, false, ""},
	} {
		if got := tt.p.String(); got != tt.want || tt.p.Known() != tt.known {
			t.Errorf("%#v: String %q, Known %v; want %q, %v", tt.p, got, tt.p.Known(), tt.want, tt.known)
		}
	}
}

func TestCatalogStatus(t *testing.T) {
	for _, tt := range []struct {
		row  CatalogRow
		want string
	}{
		{CatalogRow{Title: tMetro}, "Not on your list · 3.49 EUR for 48 h"},
		{CatalogRow{Title: Title{Name: "Night Train"}}, "Not on your list"},
		{CatalogRow{Title: Title{Name: "Night Train", Window: time.Hour}}, "Not on your list"},
		{CatalogRow{Title: Title{Price: eur(299)}}, "Not on your list · 2.99 EUR to rent"},
	} {
		if got := catalogStatus(tt.row); got != tt.want {
			t.Errorf("catalogStatus(%+v) = %q, want %q", tt.row.Title, got, tt.want)
		}
	}
}

func TestNextSpeed(t *testing.T) {
	tests := []struct{ cur, dir, want int }{
		{1, 1, 2}, {0, 1, 2}, {-8, 1, 2}, {2, 1, 4}, {16, 1, 32}, {32, 1, 32}, {3, 1, 4}, {33, 1, 32},
		{1, -1, -2}, {0, -1, -2}, {4, -1, -2}, {-2, -1, -4}, {-32, -1, -32}, {-5, -1, -8},
	}
	for _, tt := range tests {
		if got := nextSpeed(tt.cur, tt.dir); got != tt.want {
			t.Errorf("nextSpeed(%d, %d) = %d, want %d", tt.cur, tt.dir, got, tt.want)
		}
	}
}

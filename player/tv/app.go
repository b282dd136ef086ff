package tv

import (
	"fmt"
	"image"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/boxswarm/boxswarm/board/remote"
)

// Screen names what the TV shows.
type Screen int

// Screens.
const (
	ScreenMyList Screen = iota
	ScreenCatalog
	ScreenPurchase
	ScreenRemove
	ScreenPlayback
	ScreenActivation
	ScreenService
)

func (s Screen) String() string {
	return [...]string{"My List", "Catalog", "Purchase", "Remove", "Playback", "Activation", "Service needed"}[s]
}

// Config tunes the App; the zero value works.
type Config struct {
	// Now is the clock that hides the playback overlay; time.Now if nil.
	Now func() time.Time
	// OverlayTimeout is how long the playback bar stays after a key in
	// normal play; 5 s if zero.
	OverlayTimeout time.Duration
	// SeekStep is how far Left and Right jump in playback; 10 s back and
	// three times as far forward if zero.
	SeekStep time.Duration
	// SignupURL is shown on the activation screen.
	SignupURL string
	// CodeLength, CodeGroup and CodeAlphabet describe activation codes;
	// zero values give the head-end's: 16 characters of base32 (A-Z, 2-7)
	// in groups of 4 joined by '-'.
	CodeLength   int
	CodeGroup    int
	CodeAlphabet string
	// Underlay draws playback over the frame already in the image (the
	// decoder's) rather than over black.
	Underlay bool
}

const defaultAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

// App is the TV interface's navigation: it turns remote keys into screen
// changes and into Actions for the daemon, and draws the current screen.
// The daemon feeds it what changes underneath (SetData, SetPlayback, the
// answers to actions). It is pure, apart from the clock in Config, and not
// safe for concurrent use.
type App struct {
	cfg    Config
	screen Screen
	page   int // list rows on screen at the last render

	data    Data
	sorted  []Title // the catalog, alphabetically
	genres  []string
	notice  string
	listSel int
	listID  string
	moving  bool
	moveTo  int // where the moved item was, to put it back on Back

	catID    string
	catGenre string
	rank     string

	buy     PurchaseView
	remove  RemoveView
	play    Playback
	overlay time.Time // the bar shows until then

	slots  []rune
	cursor int
	actErr string
	actBsy bool

	service ServiceView
}

// NewApp returns the interface on the My List screen with no data.
func NewApp(c Config) *App {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.OverlayTimeout == 0 {
		c.OverlayTimeout = 5 * time.Second
	}
	if c.SeekStep == 0 {
		c.SeekStep = 10 * time.Second
	}
	if c.CodeLength == 0 {
		c.CodeLength = 16
	}
	if c.CodeGroup == 0 {
		c.CodeGroup = 4
	}
	if c.CodeAlphabet == "" {
		c.CodeAlphabet = defaultAlphabet
	}
	return &App{cfg: c, page: 8, catGenre: allGenres, slots: make([]rune, c.CodeLength)}
}

const allGenres = "All"

// Screen is the screen showing.
func (a *App) Screen() Screen { return a.screen }

// ---- what the daemon tells the interface --------------------------------------

// SetData replaces the list and catalog. Selections stay on the same
// titles; an item being moved stays where the viewer has it so far.
func (a *App) SetData(d Data) {
	d.List = slices.Clone(d.List)
	if a.moving {
		if i := indexOf(d.List, a.listID); i >= 0 {
			it := d.List[i]
			d.List = slices.Delete(d.List, i, i+1)
			to := min(a.listSel, len(d.List))
			d.List = slices.Insert(d.List, to, it)
			a.moveTo = min(a.moveTo, len(d.List)-1)
		} else {
			a.moving = false
		}
	}
	a.data = d
	a.sorted = slices.Clone(d.Catalog)
	sort.SliceStable(a.sorted, func(i, j int) bool { return titleLess(a.sorted[i], a.sorted[j]) })
	set := map[string]bool{}
	for _, t := range d.Catalog {
		for _, g := range t.Genres {
			set[g] = true
		}
	}
	a.genres = []string{allGenres}
	for g := range set {
		a.genres = append(a.genres, g)
	}
	sort.Strings(a.genres[1:])
	if !set[a.catGenre] {
		a.catGenre = allGenres
	}
	a.fixListSel()
}

func titleLess(x, y Title) bool {
	kx, ky := strings.ToLower(x.Name), strings.ToLower(y.Name)
	if kx != ky {
		return kx < ky
	}
	return x.ID < y.ID
}

func indexOf(l []ListItem, id string) int {
	return slices.IndexFunc(l, func(it ListItem) bool { return it.ID == id })
}

// fixListSel keeps the list selection on its title, or at its place if the
// title left the list.
func (a *App) fixListSel() {
	if i := indexOf(a.data.List, a.listID); i >= 0 {
		a.listSel = i
	}
	a.selectList(a.listSel)
}

// Notify shows a message in the status line until the next key.
func (a *App) Notify(msg string) { a.notice = msg }

// ShowActivation shows the activation screen with an empty code.
func (a *App) ShowActivation() {
	a.screen = ScreenActivation
	a.slots = make([]rune, a.cfg.CodeLength)
	a.cursor, a.actErr, a.actBsy = 0, "", false
}

// ActivationFailed shows why the head-end refused the code; the code stays
// for the viewer to correct.
func (a *App) ActivationFailed(msg string) {
	a.actBsy, a.actErr = false, msg
}

// Activated leaves the activation screen for My List.
func (a *App) Activated() {
	a.actBsy = false
	a.screen = ScreenMyList
}

// PurchaseFailed shows why a rental did not go through.
func (a *App) PurchaseFailed(msg string) {
	a.buy.Busy, a.buy.Error = false, msg
}

// SetPlayback reports the player's state: a title playing brings up the
// playback screen, one ended goes back to My List.
func (a *App) SetPlayback(p Playback) {
	if a.screen == ScreenService || a.screen == ScreenActivation {
		return
	}
	if p.Ended {
		if a.screen == ScreenPlayback {
			a.screen = ScreenMyList
		}
		a.play = Playback{}
		return
	}
	if a.screen != ScreenPlayback {
		a.screen = ScreenPlayback
		a.showOverlay()
	}
	if p.Name == "" {
		p.Name = a.play.Name
	}
	a.play = p
}

// ShowService shows the service-needed screen, which no key leaves.
func (a *App) ShowService(v ServiceView) {
	a.screen = ScreenService
	a.service = v
}

// ---- keys -------------------------------------------------------------------

// HandleKey applies a key to the screen showing and returns what the daemon
// must do, or nil.
func (a *App) HandleKey(k remote.Key) Action {
	a.notice = ""
	switch a.screen {
	case ScreenMyList:
		return a.keyList(k)
	case ScreenCatalog:
		return a.keyCatalog(k)
	case ScreenPurchase:
		return a.keyPurchase(k)
	case ScreenRemove:
		return a.keyRemove(k)
	case ScreenPlayback:
		return a.keyPlayback(k)
	case ScreenActivation:
		return a.keyActivation(k)
	}
	return nil // the service screen: nothing the viewer presses helps
}

func (a *App) selectList(i int) {
	a.listSel = clampIndex(i, len(a.data.List))
	a.listID = ""
	if len(a.data.List) > 0 {
		a.listID = a.data.List[a.listSel].ID
	}
}

func (a *App) keyList(k remote.Key) Action {
	l := a.data.List
	if a.moving {
		return a.keyMoving(k)
	}
	if d, ok := k.Digit(); ok && len(l) > 0 {
		if d == 0 {
			d = 10
		}
		if d <= len(l) {
			a.selectList(d - 1)
		}
		return nil
	}
	switch k {
	case remote.Up:
		a.selectList(a.listSel - 1)
	case remote.Down:
		a.selectList(a.listSel + 1)
	case remote.PageUp:
		a.selectList(a.listSel - a.page)
	case remote.PageDown:
		a.selectList(a.listSel + a.page)
	case remote.Menu:
		a.screen = ScreenCatalog
	case remote.OK, remote.PlayPause:
		if len(l) == 0 {
			return nil
		}
		it := l[a.listSel]
		switch {
		case it.Download == Downloaded && it.Viewable():
			a.startPlay(it.Title)
			return Play{Title: it.ID}
		case it.Download == Downloaded:
			a.buy = PurchaseView{Title: it.Title}
			a.screen = ScreenPurchase
		case it.Download == Downloading:
			a.notice = fmt.Sprintf("“%s” is still downloading: %d %%", it.Name, percent(it.Progress))
		default:
			a.notice = fmt.Sprintf("“%s” will download when its turn comes", it.Name)
		}
	case remote.Right:
		if len(l) > 1 {
			a.moving, a.moveTo = true, a.listSel
		}
	case remote.Delete:
		if len(l) > 0 {
			a.remove = RemoveView{Title: l[a.listSel].Title, Rank: a.listSel + 1, Focus: Cancel}
			a.screen = ScreenRemove
		}
	}
	return nil
}

// keyMoving moves the selected item with Up and Down; OK places it, Back
// puts it back.
func (a *App) keyMoving(k remote.Key) Action {
	l := a.data.List
	to := a.listSel
	switch k {
	case remote.Up:
		to--
	case remote.Down:
		to++
	case remote.PageUp:
		to -= a.page
	case remote.PageDown:
		to += a.page
	case remote.OK, remote.Right, remote.Left:
		a.moving = false
		if a.listSel == a.moveTo {
			return nil
		}
		return Move{Title: a.listID, Rank: a.listSel + 1}
	case remote.Back:
		a.moving = false
		to = a.moveTo
	default:
		return nil
	}
	to = clampIndex(to, len(l))
	it := l[a.listSel]
	l = slices.Delete(l, a.listSel, a.listSel+1)
	a.data.List = slices.Insert(l, to, it)
	a.listSel = to
	return nil
}

// catalogRows is the catalog as the screen shows it: the chosen genre,
// alphabetically, with each title's rank and download state.
func (a *App) catalogRows() []CatalogRow {
	rank := map[string]int{}
	for i, it := range a.data.List {
		rank[it.ID] = i + 1
	}
	var rows []CatalogRow
	for _, t := range a.sorted {
		if a.catGenre != allGenres && !slices.Contains(t.Genres, a.catGenre) {
			continue
		}
		r := CatalogRow{Title: t, Rank: rank[t.ID]}
		if r.Rank > 0 {
			it := a.data.List[r.Rank-1]
			r.Download, r.Progress = it.Download, it.Progress
		}
		rows = append(rows, r)
	}
	return rows
}

func catIndex(rows []CatalogRow, id string) int {
	return max(0, slices.IndexFunc(rows, func(r CatalogRow) bool { return r.Title.ID == id }))
}

func (a *App) keyCatalog(k remote.Key) Action {
	rows := a.catalogRows()
	sel := catIndex(rows, a.catID)
	move := func(i int) {
		if len(rows) > 0 {
			a.catID = rows[clampIndex(i, len(rows))].Title.ID
		}
	}
	if d, ok := k.Digit(); ok {
		if len(a.rank) < 3 && !(d == 0 && a.rank == "") {
			a.rank += fmt.Sprint(d)
		}
		return nil
	}
	if r, ok := k.Rune(); ok && len(rows) > 0 {
		// A letter jumps to the next title starting with it.
		for n := 1; n <= len(rows); n++ {
			i := (sel + n) % len(rows)
			if first, _ := firstRune(rows[i].Title.Name); first == r {
				move(i)
				break
			}
		}
		return nil
	}
	switch k {
	case remote.Up:
		move(sel - 1)
	case remote.Down:
		move(sel + 1)
	case remote.PageUp:
		move(sel - a.page)
	case remote.PageDown:
		move(sel + a.page)
	case remote.Left, remote.Right:
		i := slices.Index(a.genres, a.catGenre)
		if k == remote.Left {
			i = (i + len(a.genres) - 1) % len(a.genres)
		} else {
			i = (i + 1) % len(a.genres)
		}
		a.catGenre = a.genres[i]
		// Stay on the title if the new genre has it, else start at the top.
		rows := a.catalogRows()
		if !slices.ContainsFunc(rows, func(r CatalogRow) bool { return r.Title.ID == a.catID }) {
			a.catID = ""
			if len(rows) > 0 {
				a.catID = rows[0].Title.ID
			}
		}
	case remote.Delete:
		if a.rank != "" {
			a.rank = a.rank[:len(a.rank)-1]
		}
	case remote.Back:
		if a.rank != "" {
			a.rank = ""
			return nil
		}
		a.screen = ScreenMyList
	case remote.Menu, remote.Home:
		a.rank = ""
		a.screen = ScreenMyList
	case remote.OK:
		if len(rows) == 0 {
			return nil
		}
		return a.catalogOK(rows[sel])
	}
	return nil
}

func firstRune(s string) (rune, bool) {
	for _, r := range s {
		return unicode.ToUpper(r), true
	}
	return 0, false
}

// catalogOK adds the selected title to the list (at the typed priority, or
// at the end), or moves it there if listed; without a priority, a listed
// title is shown on My List.
func (a *App) catalogOK(r CatalogRow) Action {
	entry := a.rank
	a.rank = ""
	var n int
	if entry != "" {
		fmt.Sscan(entry, &n)
	}
	l := a.data.List
	if r.Rank > 0 {
		if n == 0 || n == r.Rank {
			a.listID = r.Title.ID
			a.fixListSel()
			a.screen = ScreenMyList
			return nil
		}
		n = min(n, len(l))
		it := l[r.Rank-1]
		l = slices.Delete(l, r.Rank-1, r.Rank)
		a.data.List = slices.Insert(l, n-1, it)
		a.fixListSel()
		a.notice = fmt.Sprintf("“%s” moved to priority %d", r.Title.Name, n)
		return Move{Title: r.Title.ID, Rank: n}
	}
	it := ListItem{Title: r.Title}
	if n == 0 || n > len(l) {
		a.data.List = append(l, it)
		a.notice = fmt.Sprintf("“%s” added to My List at priority %d", r.Title.Name, len(a.data.List))
		if n == 0 {
			return AddToList{Title: r.Title.ID}
		}
		return AddToList{Title: r.Title.ID, Rank: len(a.data.List)}
	}
	a.data.List = slices.Insert(l, n-1, it)
	a.fixListSel()
	a.notice = fmt.Sprintf("“%s” added to My List at priority %d", r.Title.Name, n)
	return AddToList{Title: r.Title.ID, Rank: n}
}

func (a *App) keyPurchase(k remote.Key) Action {
	if a.buy.Busy {
		return nil
	}
	switch k {
	case remote.Left, remote.Right:
		a.buy.Focus = 1 - a.buy.Focus
	case remote.Back, remote.Home:
		a.screen = ScreenMyList
	case remote.OK:
		if a.buy.Focus == Cancel {
			a.screen = ScreenMyList
			return nil
		}
		a.buy.Busy, a.buy.Error = true, ""
		return Buy{Title: a.buy.Title.ID, Price: a.buy.Title.Price}
	}
	return nil
}

func (a *App) keyRemove(k remote.Key) Action {
	switch k {
	case remote.Left, remote.Right:
		a.remove.Focus = 1 - a.remove.Focus
	case remote.Back, remote.Home:
		a.screen = ScreenMyList
	case remote.OK:
		a.screen = ScreenMyList
		if a.remove.Focus == Cancel {
			return nil
		}
		id := a.remove.Title.ID
		if i := indexOf(a.data.List, id); i >= 0 {
			a.data.List = slices.Delete(slices.Clone(a.data.List), i, i+1)
			a.listID = ""
			a.fixListSel()
		}
		a.notice = fmt.Sprintf("“%s” removed from My List", a.remove.Title.Name)
		return Remove{Title: id}
	}
	return nil
}

func (a *App) startPlay(t Title) {
	a.screen = ScreenPlayback
	a.play = Playback{Title: t.ID, Name: t.Name, Speed: 1, Duration: t.Length}
	a.showOverlay()
}

func (a *App) showOverlay() { a.overlay = a.cfg.Now().Add(a.cfg.OverlayTimeout) }

// trickSpeeds are the player's fast-forward and rewind speeds.
var trickSpeeds = []int{2, 4, 8, 16, 32}

// nextSpeed is the next trick-play speed in direction dir (1 forward, -1
// back): from play, pause or the other direction it starts at 2×, then
// doubles up to 32×, where it stays. A speed the player reported that is
// not on the ladder steps to the next one above it.
func nextSpeed(cur, dir int) int {
	if cur*dir < 2 {
		return 2 * dir
	}
	for _, s := range trickSpeeds {
		if s > cur*dir {
			return s * dir
		}
	}
	return trickSpeeds[len(trickSpeeds)-1] * dir
}

func (a *App) keyPlayback(k remote.Key) Action {
	a.showOverlay()
	p := &a.play
	setSpeed := func(s int) Action {
		p.Speed = s
		return SetSpeed{Speed: s}
	}
	seek := func(to time.Duration) Action {
		to = max(0, to)
		if p.Duration > 0 {
			to = min(to, p.Duration)
		}
		p.Position = to
		return Seek{To: to}
	}
	if d, ok := k.Digit(); ok && p.Duration > 0 {
		return seek(p.Duration * time.Duration(d) / 10)
	}
	switch k {
	case remote.PlayPause:
		if p.Speed == 1 {
			return setSpeed(0)
		}
		return setSpeed(1)
	case remote.OK:
		if p.Speed != 1 {
			return setSpeed(1)
		}
	case remote.FastForward:
		return setSpeed(nextSpeed(p.Speed, 1))
	case remote.Rewind:
		return setSpeed(nextSpeed(p.Speed, -1))
	case remote.Left:
		return seek(p.Position - a.cfg.SeekStep)
	case remote.Right:
		return seek(p.Position + 3*a.cfg.SeekStep)
	case remote.Stop, remote.Back, remote.Home:
		a.screen = ScreenMyList
		a.play = Playback{}
		return Stop{}
	case remote.Info:
		a.overlay = time.Time{}
	}
	return nil
}

func (a *App) keyActivation(k remote.Key) Action {
	if a.actBsy {
		return nil
	}
	a.actErr = ""
	n := len(a.slots)
	alpha := []rune(a.cfg.CodeAlphabet)
	if r, ok := k.Rune(); ok {
		c, ok := a.codeRune(r)
		if !ok {
			a.actErr = fmt.Sprintf("%c is not used in activation codes", r)
			return nil
		}
		a.slots[a.cursor] = c
		if a.cursor < n-1 {
			a.cursor++
		}
		return nil
	}
	switch k {
	case remote.Up, remote.Down:
		i := slices.Index(alpha, a.slots[a.cursor])
		switch {
		case i < 0 && k == remote.Up:
			i = 0
		case i < 0:
			i = len(alpha) - 1
		case k == remote.Up:
			i = (i + 1) % len(alpha)
		default:
			i = (i + len(alpha) - 1) % len(alpha)
		}
		a.slots[a.cursor] = alpha[i]
	case remote.Right:
		if a.slots[a.cursor] != 0 && a.cursor < n-1 {
			a.cursor++
		}
	case remote.Left:
		if a.cursor > 0 {
			a.cursor--
		}
	case remote.Delete, remote.Back:
		if a.slots[a.cursor] == 0 && a.cursor > 0 {
			a.cursor--
		}
		a.slots[a.cursor] = 0
	case remote.OK:
		missing := 0
		for _, c := range a.slots {
			if c == 0 {
				missing++
			}
		}
		if missing > 0 {
			a.actErr = fmt.Sprintf("The code has %d characters; %d still to type", n, missing)
			return nil
		}
		a.actBsy = true
		return Activate{Code: a.code()}
	}
	return nil
}

// codeRune maps a typed character into the code alphabet. Base32 leaves
// out 0, 1 and 8 because they read like O, I and B, so a viewer who types
// them means those letters.
func (a *App) codeRune(r rune) (rune, bool) {
	if strings.ContainsRune(a.cfg.CodeAlphabet, r) {
		return r, true
	}
	alias := map[rune]rune{'0': 'O', '1': 'I', '8': 'B'}[r]
	if alias != 0 && strings.ContainsRune(a.cfg.CodeAlphabet, alias) {
		return alias, true
	}
	return 0, false
}

// code joins the slots in groups, as the head-end prints codes.
func (a *App) code() string {
	var b strings.Builder
	for i, c := range a.slots {
		if i > 0 && i%a.cfg.CodeGroup == 0 {
			b.WriteByte('-')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// ---- drawing ------------------------------------------------------------------

// View returns the current screen's view: one of MyListView, CatalogView,
// PurchaseView, RemoveView, PlaybackView, ActivationView or ServiceView.
func (a *App) View() any {
	switch a.screen {
	case ScreenCatalog:
		rows := a.catalogRows()
		return CatalogView{Rows: rows, Selected: catIndex(rows, a.catID), Genres: a.genres,
			Genre: max(0, slices.Index(a.genres, a.catGenre)), RankEntry: a.rank, Notice: a.notice}
	case ScreenPurchase:
		return a.buy
	case ScreenRemove:
		return a.remove
	case ScreenPlayback:
		p := a.play
		return PlaybackView{Name: p.Name, Position: p.Position, Duration: p.Duration, Speed: p.Speed,
			Overlay: p.Speed != 1 || a.cfg.Now().Before(a.overlay), Underlay: a.cfg.Underlay}
	case ScreenActivation:
		return ActivationView{Slots: slices.Clone(a.slots), GroupLen: a.cfg.CodeGroup, Cursor: a.cursor,
			URL: a.cfg.SignupURL, Error: a.actErr, Busy: a.actBsy}
	case ScreenService:
		return a.service
	}
	return MyListView{Items: a.data.List, Selected: a.listSel, Moving: a.moving, Notice: a.notice}
}

// Render draws the current screen into dst.
func (a *App) Render(r *Renderer, dst *image.RGBA) Layout {
	var lay Layout
	switch v := a.View().(type) {
	case MyListView:
		lay = r.MyList(dst, v)
	case CatalogView:
		lay = r.Catalog(dst, v)
	case PurchaseView:
		lay = r.Purchase(dst, v)
	case RemoveView:
		lay = r.Remove(dst, v)
	case PlaybackView:
		lay = r.Playback(dst, v)
	case ActivationView:
		lay = r.Activation(dst, v)
	case ServiceView:
		lay = r.ServiceNeeded(dst, v)
	}
	if len(lay.Rows) > 0 {
		a.page = len(lay.Rows)
	}
	return lay
}

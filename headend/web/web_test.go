package web_test

import (
	"context"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/headend/customers/boltstore"
	"github.com/boxswarm/boxswarm/headend/customers/custtest"
	"github.com/boxswarm/boxswarm/headend/customers/pgstore"
	"github.com/boxswarm/boxswarm/headend/web"
	"github.com/boxswarm/boxswarm/internal/pgtest"
	"github.com/boxswarm/boxswarm/media"
)

var (
	ctx   = context.Background()
	quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
	start = time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC)
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const evilTitle = `<script>alert("title")</script> Evil`

// backend is a customer store the pages are tested over.
type backend struct {
	name string
	// open returns a new, empty store, and for PostgreSQL the DSN of its
	// database ("" for bbolt), for checking it with plain SQL.
	open func(testing.TB) (customers.Store, string)
}

var backends = []backend{
	{"bolt", func(tb testing.TB) (customers.Store, string) {
		s, err := boltstore.Open(filepath.Join(tb.TempDir(), "customers.db"), boltstore.WithLogger(quiet))
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { s.Close() })
		return s, ""
	}},
	{"postgres", func(tb testing.TB) (customers.Store, string) {
		dsn := pgtest.Start(tb)
		s, err := pgstore.Open(ctx, dsn, pgstore.WithLogger(quiet))
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { s.Close() })
		return s, dsn
	}},
}

// eachBackend runs fn as a subtest on each backend.
func eachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { fn(t, b) })
	}
}

// fixture is the pages over a Service on a fresh store.
type fixture struct {
	t      testing.TB
	svc    *customers.Service
	h      http.Handler
	clock  *custtest.Clock
	prog   *fakeProgress
	ids    map[string]media.ID // title name → media ID
	titles []customers.Title   // every title put, for working out what a search should find
	dsn    string              // PostgreSQL's, "" for bbolt
	errs   *errorLog
}

// fakeProgress answers from a fixed map.
type fakeProgress struct {
	m map[media.ID]web.TitleProgress
}

func (f *fakeProgress) Progress(_ context.Context, _ customers.Box, titles []media.ID) (map[media.ID]web.TitleProgress, error) {
	out := map[media.ID]web.TitleProgress{}
	for _, id := range titles {
		if p, ok := f.m[id]; ok {
			out[id] = p
		}
	}
	return out, nil
}

// errorLog keeps what the pages and the Service log as errors: each is a
// failure on the server's side (a 500 or worse), which no test expects.
type errorLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *errorLog) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelError }
func (l *errorLog) WithAttrs([]slog.Attr) slog.Handler            { return l }
func (l *errorLog) WithGroup(string) slog.Handler                 { return l }

func (l *errorLog) Handle(_ context.Context, r slog.Record) error {
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool { msg += " " + a.String(); return true })
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, msg)
	return nil
}

func (l *errorLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	msgs := l.msgs
	l.msgs = nil
	return msgs
}

// titleNames are the fixture's titles: with a page size of 5, three pages.
var titleNames = []string{
	"Alpha Dawn", "Bravo Night", "Charlie Sky", "Delta Force Five", "Echo Valley", "Foxtrot Rain",
	"Golf Course", "Hotel Lobby", "India Ink", "Juliet Balcony", evilTitle,
}

// newFixtureOn is the pages on a backend, with the fixture's titles put
// before the pages are made; adjust may change either configuration.
func newFixtureOn(tb testing.TB, b backend, adjust ...func(*customers.Config, *web.Config)) *fixture {
	tb.Helper()
	store, dsn := b.open(tb)
	clock := custtest.NewClock(start)
	errs := &errorLog{}
	log := slog.New(errs)
	ccfg := customers.Config{
		Store: store, Payments: custtest.NewPayments(), Activator: custtest.NewActivator(), Lists: &custtest.ListSink{},
		Log: log, Now: clock.Now,
		Password: customers.PasswordParams{Memory: 64, Time: 1, Threads: 1},
		Throttle: customers.ThrottlePolicy{EmailFree: 2, AddrFree: 50, Base: time.Minute, Max: time.Hour, Forget: time.Hour},
	}
	wcfg := web.Config{
		Log:      log,
		Catalogs: []customers.CatalogID{"studio"}, Supplier: "Test Shop", PageSize: 5,
	}
	for _, a := range adjust {
		a(&ccfg, &wcfg)
	}
	svc, err := customers.New(ccfg)
	if err != nil {
		tb.Fatal(err)
	}
	f := &fixture{t: tb, svc: svc, clock: clock, prog: &fakeProgress{m: map[media.ID]web.TitleProgress{}},
		ids: map[string]media.ID{}, dsn: dsn, errs: errs}
	tb.Cleanup(func() {
		if msgs := errs.take(); len(msgs) > 0 {
			tb.Errorf("the server logged %d errors:\n%s", len(msgs), strings.Join(msgs, "\n"))
		}
	})
	for _, c := range []customers.Catalog{{ID: "studio", Vendor: "Big Studio", Name: "Classics"}} {
		if err := svc.PutCatalog(ctx, c); err != nil {
			tb.Fatal(err)
		}
	}
	genres := []string{"Drama", "Comedy", "Sci-Fi"}
	for i, name := range titleNames {
		f.putTitle(customers.Title{
			Media: media.ID{0xAB, byte(i + 1)}, Name: name, Year: 1990 + i, Genre: genres[i%len(genres)],
			Actors: []string{"Actor " + name},
		})
	}
	wcfg.Customers, wcfg.Progress = svc, f.prog
	f.h, err = web.New(wcfg)
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// putTitle puts a title in the studio catalog, filling in what it leaves
// out: prices, a 48-hour window, every region, published an hour ago.
func (f *fixture) putTitle(ti customers.Title) {
	f.t.Helper()
	if ti.Catalog == "" {
		ti.Catalog = "studio"
	}
	if ti.Rent.IsZero() {
		ti.Rent = customers.Money{Amount: 399, Currency: "EUR"}
	}
	if ti.Buy.IsZero() {
		ti.Buy = customers.Money{Amount: 1299, Currency: "EUR"}
	}
	if ti.Window == 0 {
		ti.Window = 48 * time.Hour
	}
	if ti.Regions == nil {
		ti.Regions = []string{"*"}
	}
	if ti.PublishAt.IsZero() {
		ti.PublishAt = start.Add(-time.Hour)
	}
	if err := f.svc.PutTitle(ctx, ti); err != nil {
		f.t.Fatal(err)
	}
	f.ids[ti.Name] = ti.Media
	f.titles = append(f.titles, ti)
}

// client is a browser without the browser: it keeps cookies and sends
// requests straight to the handler.
type client struct {
	f       *fixture
	cookies map[string]*http.Cookie
	addr    string
}

func (f *fixture) client() *client {
	return &client{f: f, cookies: map[string]*http.Cookie{}, addr: "192.0.2.1:40000"}
}

type response struct {
	*http.Response
	body string
}

func (c *client) do(method, path string, form url.Values, header ...string) response {
	c.f.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, path, body)
	r.RemoteAddr = c.addr
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	for _, ck := range c.cookies {
		r.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
	}
	w := httptest.NewRecorder()
	c.f.h.ServeHTTP(w, r)
	res := w.Result()
	for _, ck := range res.Cookies() {
		if ck.MaxAge < 0 || ck.Value == "" {
			delete(c.cookies, ck.Name)
		} else {
			c.cookies[ck.Name] = ck
		}
	}
	b, _ := io.ReadAll(res.Body)
	return response{res, string(b)}
}

func (c *client) get(path string) response { return c.do(http.MethodGet, path, nil) }

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]*)"`)

// csrf is the token in a page's forms.
func csrf(t testing.TB, r response) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(r.body)
	if m == nil {
		t.Fatalf("no CSRF field in the page:\n%s", r.body)
	}
	return html.UnescapeString(m[1])
}

func password(name string) string { return "correct horse " + name }

// signUp signs up through the sign-up form, after edit changes its
// fields, and returns the new account's first box and the welcome page.
func (c *client) signUp(name, email string, edit ...func(url.Values)) (customers.BoxRef, response) {
	t := c.f.t
	t.Helper()
	tok := csrf(t, c.get("/signup"))
	form := url.Values{
		"csrf": {tok}, "name": {name}, "email": {email}, "password": {password(email)},
		"street": {"1 Main Street"}, "city": {"Town"}, "postcode": {"12345"}, "region": {"de"},
		"payment_token": {custtest.TokenOK + "_x"},
	}
	for _, e := range edit {
		e(form)
	}
	r := c.do(http.MethodPost, "/signup", form)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("sign-up of %s: %s\n%s", email, r.Status, r.body)
	}
	acct := c.account()
	boxes, err := c.f.svc.Boxes(ctx, acct)
	if err != nil || len(boxes) != 1 {
		t.Fatalf("boxes after sign-up: %v, %v", boxes, err)
	}
	if !strings.Contains(r.body, `id="activation-code">`+boxes[0].Code+`<`) {
		t.Fatalf("welcome page does not show the activation code %s:\n%s", boxes[0].Code, r.body)
	}
	return boxes[0].Ref, r
}

// login logs in through the form.
func (c *client) login(email, pw string) response {
	c.f.t.Helper()
	tok := csrf(c.f.t, c.get("/login"))
	return c.do(http.MethodPost, "/login", url.Values{"csrf": {tok}, "email": {email}, "password": {pw}})
}

func (c *client) sessionID() string {
	for name, ck := range c.cookies {
		if strings.HasSuffix(name, "sid") {
			return ck.Value
		}
	}
	return ""
}

// account is the account of the client's session.
func (c *client) account() customers.AccountID {
	c.f.t.Helper()
	_, a, err := c.f.svc.Authenticate(ctx, c.sessionID())
	if err != nil {
		c.f.t.Fatalf("client's session: %v", err)
	}
	return a.ID
}

func (c *client) list(box customers.BoxRef) []media.ID {
	c.f.t.Helper()
	l, err := c.f.svc.List(ctx, c.account(), box)
	if err != nil {
		c.f.t.Fatal(err)
	}
	return l.Titles
}

func TestUnauthenticatedRedirectsToLogin(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		f := newFixtureOn(t, be)
		c := f.client()
		for _, tc := range []struct{ method, path string }{
			{"GET", "/"}, {"GET", "/catalog"}, {"GET", "/catalog?q=alpha"}, {"GET", "/titles/" + f.ids["Alpha Dawn"].String()},
			{"GET", "/list"}, {"GET", "/boxes/whatever/list"}, {"GET", "/account"},
			{"POST", "/boxes/whatever/list/add"}, {"POST", "/logout"},
		} {
			t.Run(tc.method+" "+tc.path, func(t *testing.T) {
				var form url.Values
				if tc.method == "POST" {
					form = url.Values{"title": {f.ids["Alpha Dawn"].String()}}
				}
				r := c.do(tc.method, tc.path, form)
				if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/login" {
					t.Errorf("got %s to %q, want 303 to /login", r.Status, r.Header.Get("Location"))
				}
			})
		}
		// And with a session cookie that is not a session.
		c.cookies["sid"] = &http.Cookie{Name: "sid", Value: "forged-session-id"}
		if r := c.get("/account"); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/login" {
			t.Errorf("forged session: got %s to %q, want 303 to /login", r.Status, r.Header.Get("Location"))
		}
	})
}

func TestCSRF(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		f := newFixtureOn(t, be)
		c := f.client()
		box, _ := c.signUp("Alice", "alice@example.com")
		page := c.get("/titles/" + f.ids["Alpha Dawn"].String())
		good := csrf(t, page)
		add := "/boxes/" + string(box) + "/list/add"
		title := f.ids["Alpha Dawn"].String()

		// Another browser's valid session token is still the wrong token.
		other := f.client()
		other.signUp("Mallory", "mallory@example.com")
		othersToken := csrf(t, other.get("/catalog"))

		for _, tc := range []struct {
			name   string
			path   string
			form   url.Values
			header []string
			want   int
		}{
			{"add without token", add, url.Values{"title": {title}}, nil, http.StatusForbidden},
			{"add with empty token", add, url.Values{"title": {title}, "csrf": {""}}, nil, http.StatusForbidden},
			{"add with wrong token", add, url.Values{"title": {title}, "csrf": {good[:len(good)-1] + "x"}}, nil, http.StatusForbidden},
			{"add with another session's token", add, url.Values{"title": {title}, "csrf": {othersToken}}, nil, http.StatusForbidden},
			{"add from another site", add, url.Values{"title": {title}, "csrf": {good}}, []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
			{"log-out without token", "/logout", url.Values{}, nil, http.StatusForbidden},
			{"log-out with wrong token", "/logout", url.Values{"csrf": {othersToken}}, nil, http.StatusForbidden},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := c.do(http.MethodPost, tc.path, tc.form, tc.header...)
				if r.StatusCode != tc.want {
					t.Fatalf("got %s, want %d", r.Status, tc.want)
				}
				if !strings.Contains(r.body, "refused") || !strings.Contains(r.body, "Nothing was changed") {
					t.Errorf("403 page does not say the form was refused:\n%s", r.body)
				}
				if !strings.Contains(r.body, `role="alert"`) {
					t.Errorf("refusal is not marked as an alert")
				}
			})
		}
		if got := c.list(box); len(got) != 0 {
			t.Fatalf("list changed by refused forms: %v", got)
		}
		if c.sessionID() == "" {
			t.Fatal("refused log-out dropped the cookie")
		}
		c.account() // the session still works

		// The right token works.
		if r := c.do(http.MethodPost, add, url.Values{"title": {title}, "csrf": {good}}); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("add with the right token: %s\n%s", r.Status, r.body)
		}
		if got := c.list(box); !slices.Equal(got, []media.ID{f.ids["Alpha Dawn"]}) {
			t.Fatalf("list after add: %v", got)
		}

		// Forms before a session: the token must match the pre-session cookie.
		for _, tc := range []struct {
			name   string
			cookie bool
			token  string
		}{
			{"log-in without cookie", false, "anything"},
			{"log-in without token", true, ""},
			{"log-in with wrong token", true, "wrong"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				b := f.client()
				if tc.cookie {
					csrf(t, b.get("/login")) // sets the cookie
				}
				r := b.do(http.MethodPost, "/login", url.Values{"csrf": {tc.token}, "email": {"alice@example.com"}, "password": {password("alice@example.com")}})
				if r.StatusCode != http.StatusForbidden || b.sessionID() != "" {
					t.Fatalf("got %s, session %q; want 403 and no session", r.Status, b.sessionID())
				}
			})
		}
		b := f.client()
		b.get("/signup")
		if r := b.do(http.MethodPost, "/signup", url.Values{"csrf": {"wrong"}, "name": {"Eve"}}); r.StatusCode != http.StatusForbidden {
			t.Fatalf("sign-up with wrong token: %s", r.Status)
		}
	})
}

func TestSessionFixation(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		f := newFixtureOn(t, be)
		victim := f.client()
		victim.signUp("Victim", "victim@example.com")
		victim.do(http.MethodPost, "/logout", url.Values{"csrf": {csrf(t, victim.get("/catalog"))}})
		if victim.sessionID() != "" {
			t.Fatal("log-out left the session cookie")
		}

		attacker := f.client()
		attacker.signUp("Attacker", "attacker@example.com")
		attackersSession := attacker.sessionID()

		for _, tc := range []struct{ name, planted string }{
			{"made-up ID", "planted-by-the-attacker-0123456789"},
			{"the attacker's own session", attackersSession},
		} {
			t.Run(tc.name, func(t *testing.T) {
				b := f.client()
				b.cookies["sid"] = &http.Cookie{Name: "sid", Value: tc.planted}
				r := b.login("victim@example.com", password("victim@example.com"))
				if r.StatusCode != http.StatusSeeOther {
					t.Fatalf("log-in: %s\n%s", r.Status, r.body)
				}
				got := b.sessionID()
				if got == "" || got == tc.planted {
					t.Fatalf("session after log-in is %q, planted %q", got, tc.planted)
				}
				if _, _, err := f.svc.Authenticate(ctx, tc.planted); err == nil {
					t.Fatal("the planted session ID still authenticates after log-in")
				}
				if r := b.get("/account"); r.StatusCode != http.StatusOK || !strings.Contains(r.body, "Victim") {
					t.Fatalf("account page after log-in: %s", r.Status)
				}
			})
		}
	})
}

func TestCookieAttributes(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		for _, tc := range []struct {
			secure   bool
			name     string
			wantFlag bool
		}{{false, "sid", false}, {true, "__Host-sid", true}} {
			t.Run(fmt.Sprint("secure=", tc.secure), func(t *testing.T) {
				f := newFixtureOn(t, be, func(_ *customers.Config, w *web.Config) { w.Secure = tc.secure })
				c := f.client()
				c.signUp("Carol", "carol@example.com")
				c.do(http.MethodPost, "/logout", url.Values{"csrf": {csrf(t, c.get("/catalog"))}})
				tok := csrf(t, c.get("/login"))
				r := c.do(http.MethodPost, "/login", url.Values{"csrf": {tok}, "email": {"carol@example.com"}, "password": {password("carol@example.com")}})
				var sid *http.Cookie
				for _, ck := range r.Cookies() {
					if ck.Name == tc.name {
						sid = ck
					}
				}
				if sid == nil {
					t.Fatalf("no %s cookie set at log-in: %v", tc.name, r.Header["Set-Cookie"])
				}
				if !sid.HttpOnly || sid.SameSite != http.SameSiteLaxMode || sid.Path != "/" || sid.Secure != tc.wantFlag || sid.Domain != "" {
					t.Errorf("cookie %+v: want HttpOnly, SameSite=Lax, Path=/, Secure=%v, no Domain", sid, tc.wantFlag)
				}
			})
		}
	})
}

func TestLoginThrottling(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		f := newFixtureOn(t, be)
		c := f.client()
		c.signUp("Dave", "dave@example.com")
		c.do(http.MethodPost, "/logout", url.Values{"csrf": {csrf(t, c.get("/catalog"))}})

		b := f.client()
		b.addr = "198.51.100.7:5555"
		steps := []struct {
			pw         string
			want       int
			retryAfter string
		}{
			{"wrong password 1", http.StatusUnauthorized, ""},
			{"wrong password 2", http.StatusUnauthorized, ""},
			{"wrong password 3", http.StatusUnauthorized, ""}, // the first failure past the free ones locks for a minute
			{"wrong password 4", http.StatusTooManyRequests, "60"},
			{password("dave@example.com"), http.StatusTooManyRequests, "60"}, // not even checked while locked
		}
		for i, s := range steps {
			r := b.login("dave@example.com", s.pw)
			if r.StatusCode != s.want {
				t.Fatalf("attempt %d: got %s, want %d\n%s", i+1, r.Status, s.want, r.body)
			}
			if got := r.Header.Get("Retry-After"); got != s.retryAfter {
				t.Errorf("attempt %d: Retry-After %q, want %q", i+1, got, s.retryAfter)
			}
			switch s.want {
			case http.StatusTooManyRequests:
				if !strings.Contains(r.body, "Too many failed log-ins") || !strings.Contains(r.body, "1 minute") {
					t.Errorf("attempt %d: throttling not explained:\n%s", i+1, r.body)
				}
			case http.StatusUnauthorized:
				if !strings.Contains(r.body, "Wrong e-mail address or password.") {
					t.Errorf("attempt %d: wrong password not explained", i+1)
				}
			}
			if b.sessionID() != "" {
				t.Fatalf("attempt %d: got a session", i+1)
			}
		}
		f.clock.Advance(61 * time.Second)
		if r := b.login("dave@example.com", password("dave@example.com")); r.StatusCode != http.StatusSeeOther || b.sessionID() == "" {
			t.Fatalf("log-in after the lock-out: %s", r.Status)
		}
	})
}

// Markup in what viewers and operators write, for TestOutputEscaped.
const (
	evilName     = `<img src=x onerror="alert('name')">`
	evilStreet   = `<svg onload=alert(1)>1 Main Street`
	evilGenre    = `<b onmouseover=alert(1)>Noir</b> & "Pulp"`
	evilActor    = `</dd><script>alert("actor")</script>`
	evilDirector = `<iframe src=//evil.example>`
)

// escaped is s as html/template writes it in text and quoted attributes.
func escaped(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}

// TestOutputEscaped puts markup in every text a page shows that viewers
// (their name and address) or catalogs (titles' names, genres and
// people) supply, and checks that each page shows it as text.
func TestOutputEscaped(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		f := newFixtureOn(t, be)
		noir := media.ID{0xEE, 1}
		f.putTitle(customers.Title{Media: noir, Name: "Aardvark Noir", Year: 1950, Genre: evilGenre,
			Actors: []string{evilActor}, Directors: []string{evilDirector}})
		c := f.client()
		box, welcome := c.signUp(evilName, "eve@example.com", func(v url.Values) { v.Set("street", evilStreet) })
		evil := f.ids[evilTitle]
		tok := csrf(t, welcome)
		for _, id := range []media.ID{evil, noir} {
			if r := c.do(http.MethodPost, "/boxes/"+string(box)+"/list/add", url.Values{"csrf": {tok}, "title": {id.String()}}); r.StatusCode != http.StatusSeeOther {
				t.Fatalf("add %s: %s", id, r.Status)
			}
		}
		pages := []struct {
			path string
			want []string // shown, escaped
		}{
			{"/catalog", []string{evilName, evilTitle, evilGenre}},
			{"/catalog?q=" + url.QueryEscape(`<script>`), []string{evilName, evilTitle, `<script>`}},
			{"/catalog?genre=" + url.QueryEscape(evilGenre), []string{evilName, evilGenre, "Aardvark Noir"}},
			{"/catalog?genre=" + url.QueryEscape(`<i>Unknown</i>`), []string{evilName, `<i>Unknown</i> (no titles)`}},
			{"/titles/" + evil.String(), []string{evilName, evilTitle}},
			{"/titles/" + noir.String(), []string{evilName, evilGenre, evilActor, evilDirector}},
			{"/boxes/" + string(box) + "/list", []string{evilName, evilTitle, "Move " + evilTitle + " down", "Remove " + evilTitle}},
			{"/account", []string{evilName, evilStreet}},
		}
		check := func(t *testing.T, r response, want []string) {
			t.Helper()
			for _, raw := range []string{"<script", "<img", "<svg", "<b ", "<i>", "<iframe", "</dd><"} {
				if strings.Contains(r.body, raw) {
					t.Errorf("page holds raw %q:\n%s", raw, r.body)
				}
			}
			for _, w := range want {
				if !strings.Contains(r.body, escaped(w)) {
					t.Errorf("page does not show %q escaped (as %q):\n%s", w, escaped(w), r.body)
				}
			}
		}
		t.Run("welcome", func(t *testing.T) { check(t, welcome, []string{evilName}) })
		for _, p := range pages {
			t.Run(p.path, func(t *testing.T) {
				r := c.get(p.path)
				if r.StatusCode != http.StatusOK {
					t.Fatalf("%s", r.Status)
				}
				check(t, r, p.want)
			})
		}
	})
}

func TestSecurityHeaders(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		f := newFixtureOn(t, be)
		c := f.client()
		c.signUp("Frank", "frank@example.com")
		for _, path := range []string{"/login", "/catalog", "/account", "/style.css", "/titles/nope"} {
			r := c.get(path)
			h := r.Header
			csp := h.Get("Content-Security-Policy")
			if !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
				t.Errorf("%s: CSP %q", path, csp)
			}
			if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") == "" {
				t.Errorf("%s: headers %v", path, h)
			}
		}
		if r := c.get("/catalog"); r.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("session page may be cached: %q", r.Header.Get("Cache-Control"))
		}
		if r := c.get("/titles/nope"); r.StatusCode != http.StatusNotFound {
			t.Errorf("unknown title: %s", r.Status)
		}
	})
}

// TestPages walks the pages the way a viewer does: sign-up, catalog with
// search, genre, sort and pages, a title, My List with progress and edits.
func TestPages(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		f := newFixtureOn(t, be)
		c := f.client()
		box, welcome := c.signUp("Grace", "grace@example.com")
		if !strings.Contains(welcome.body, `<html lang="en">`) {
			t.Error("no lang attribute")
		}

		links := regexp.MustCompile(`<a href="/titles/[0-9a-f]+">([^<]*)</a>`)
		names := func(r response) []string {
			var out []string
			for _, m := range links.FindAllStringSubmatch(r.body, -1) {
				out = append(out, html.UnescapeString(m[1]))
			}
			return out
		}
		for _, tc := range []struct {
			query string
			want  []string
			total string
		}{
			{"", []string{evilTitle, "Alpha Dawn", "Bravo Night", "Charlie Sky", "Delta Force Five"}, "Showing 1 to 5 of 11."},
			{"?page=3", []string{"Juliet Balcony"}, "Showing 11 to 11 of 11."},
			{"?q=night", []string{"Bravo Night"}, "of 1."},
			{"?q=actor+golf", []string{"Golf Course"}, "of 1."},
			{"?genre=comedy", []string{evilTitle, "Bravo Night", "Echo Valley", "Hotel Lobby"}, "of 4."},
			{"?sort=year", []string{evilTitle, "Juliet Balcony", "India Ink", "Hotel Lobby", "Golf Course"}, "of 11."},
			{"?q=nothing+like+this", nil, "No titles match."},
		} {
			r := c.get("/catalog" + tc.query)
			if got := names(r); !slices.Equal(got, tc.want) || !strings.Contains(r.body, tc.total) {
				t.Errorf("catalog%s: got %q, want %q and %q", tc.query, got, tc.want, tc.total)
			}
		}
		if r := c.get("/catalog?q=o&sort=year"); !strings.Contains(r.body, `href="/catalog?page=2&amp;q=o&amp;sort=year" rel="next"`) {
			t.Errorf("next-page link does not keep the query and sort:\n%s", r.body)
		}
		if r := c.get("/catalog?page=2"); !strings.Contains(r.body, `rel="prev"`) || !strings.Contains(r.body, `rel="next"`) {
			t.Errorf("middle page lacks previous and next links")
		}
		for _, tc := range []struct {
			query    string
			options  []string
			selected string
		}{
			{"", []string{"All genres", "Comedy", "Drama", "Sci-Fi"}, ""},
			{"?genre=comedy", []string{"All genres", "Comedy", "Drama", "Sci-Fi"}, "Comedy"},
			{"?genre=+DRAMA+&q=a", []string{"All genres", "Comedy", "Drama", "Sci-Fi"}, "Drama"},
			// A genre no title has stays chosen, said to have none.
			{"?genre=Western", []string{"All genres", "Comedy", "Drama", "Sci-Fi", "Western (no titles)"}, "Western"},
		} {
			r := c.get("/catalog" + tc.query)
			options, selected := genreMenu(t, r)
			if !slices.Equal(options, tc.options) || selected != tc.selected {
				t.Errorf("genre menu of catalog%s: %q with %q selected; want %q with %q", tc.query, options, selected, tc.options, tc.selected)
			}
			if !strings.Contains(r.body, `<label for="genre">Genre</label>`) {
				t.Errorf("genre menu of catalog%s has no label", tc.query)
			}
		}
		if r := c.get("/catalog?page=10001"); r.StatusCode != http.StatusNotFound {
			t.Errorf("page past the last one a link can ask for: %s", r.Status)
		}
		if r := c.get("/catalog?page=9&q=o"); r.StatusCode != http.StatusOK || !strings.Contains(r.body, "past the results: the search found 11.") ||
			!strings.Contains(r.body, `href="/catalog?page=3&amp;q=o" rel="prev"`) {
			t.Errorf("page past the results: %s, no link back to the last page:\n%s", r.Status, r.body)
		}

		tp := c.get("/titles/" + f.ids["Alpha Dawn"].String())
		for _, want := range []string{"<h1>Alpha Dawn</h1>", "3.99 EUR, to watch within 2 days", "12.99 EUR", "Add to My List"} {
			if !strings.Contains(tp.body, want) {
				t.Errorf("title page lacks %q", want)
			}
		}

		tok := csrf(t, tp)
		post := func(action string, form url.Values) {
			t.Helper()
			form.Set("csrf", tok)
			if r := c.do(http.MethodPost, "/boxes/"+string(box)+"/list/"+action, form); r.StatusCode != http.StatusSeeOther {
				t.Fatalf("%s %v: %s\n%s", action, form, r.Status, r.body)
			}
		}
		a, b, ch := f.ids["Alpha Dawn"], f.ids["Bravo Night"], f.ids["Charlie Sky"]
		for _, id := range []media.ID{a, b, ch} {
			post("add", url.Values{"title": {id.String()}})
		}
		f.prog.m[a] = web.TitleProgress{State: web.Downloaded}
		f.prog.m[b] = web.TitleProgress{State: web.Downloading, Percent: 42}

		lp := c.get("/boxes/" + string(box) + "/list")
		for _, want := range []string{"Downloaded", "Downloading, 42%", `value="42"`, "Not started"} {
			if !strings.Contains(lp.body, want) {
				t.Errorf("list page lacks %q:\n%s", want, lp.body)
			}
		}
		// The page's own buttons: move Charlie up (before Bravo), then Alpha
		// down (before Charlie's successor, Bravo).
		moveForm := regexp.MustCompile(`action="/boxes/[^"]+/list/move"[^>]*>\s*<input type="hidden" name="csrf" value="[^"]*">\s*<input type="hidden" name="title" value="([0-9a-f]+)">\s*<input type="hidden" name="before" value="([0-9a-f]*)">\s*<button type="submit" aria-label="Move [^"]* (up|down)"`)
		press := func(title media.ID, dir string) {
			t.Helper()
			page := c.get("/boxes/" + string(box) + "/list")
			for _, m := range moveForm.FindAllStringSubmatch(page.body, -1) {
				if m[1] == title.String() && m[3] == dir {
					post("move", url.Values{"title": {m[1]}, "before": {m[2]}})
					return
				}
			}
			t.Fatalf("no %s button for %s", dir, title)
		}
		press(ch, "up")
		if got := c.list(box); !slices.Equal(got, []media.ID{a, ch, b}) {
			t.Fatalf("after moving Charlie up: %v", got)
		}
		press(a, "down")
		if got := c.list(box); !slices.Equal(got, []media.ID{ch, a, b}) {
			t.Fatalf("after moving Alpha down: %v", got)
		}
		press(a, "down")
		if got := c.list(box); !slices.Equal(got, []media.ID{ch, b, a}) {
			t.Fatalf("after moving Alpha down to the end: %v", got)
		}
		post("remove", url.Values{"title": {b.String()}})
		if got := c.list(box); !slices.Equal(got, []media.ID{ch, a}) {
			t.Fatalf("after removing Bravo: %v", got)
		}
		// Adding twice is explained, not a 500.
		r := c.do(http.MethodPost, "/boxes/"+string(box)+"/list/add", url.Values{"csrf": {tok}, "title": {a.String()}})
		if r.StatusCode != http.StatusConflict || !strings.Contains(r.body, "already on My List") {
			t.Errorf("adding twice: %s", r.Status)
		}
		// Another account's box is not found.
		other := f.client()
		otherBox, _ := other.signUp("Heidi", "heidi@example.com")
		if r := c.get("/boxes/" + string(otherBox) + "/list"); r.StatusCode != http.StatusNotFound {
			t.Errorf("another account's list: %s", r.Status)
		}
		r = c.do(http.MethodPost, "/boxes/"+string(otherBox)+"/list/add", url.Values{"csrf": {tok}, "title": {a.String()}})
		if r.StatusCode != http.StatusNotFound || len(other.list(otherBox)) != 0 {
			t.Errorf("adding to another account's list: %s", r.Status)
		}

		acct := c.get("/account")
		for _, want := range []string{"Grace", "1 Main Street, 12345 Town, DE", "Active", "Test Shop", "Waiting for activation"} {
			if !strings.Contains(acct.body, want) {
				t.Errorf("account page lacks %q", want)
			}
		}
	})
}

var (
	genreSelect = regexp.MustCompile(`(?s)<select id="genre" name="genre">(.*?)</select>`)
	option      = regexp.MustCompile(`<option value="([^"]*)"( selected)?>([^<]*)</option>`)
)

// genreMenu is the labels of the catalog page's genre menu and the value
// selected, unescaped.
func genreMenu(t testing.TB, r response) (labels []string, selected string) {
	t.Helper()
	m := genreSelect.FindStringSubmatch(r.body)
	if m == nil {
		t.Fatalf("no genre menu on the page (%s):\n%s", r.Status, r.body)
	}
	n := 0
	for _, o := range option.FindAllStringSubmatch(m[1], -1) {
		labels = append(labels, html.UnescapeString(o[3]))
		if o[2] != "" {
			selected = html.UnescapeString(o[1])
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d genres selected, want 1", n)
	}
	return labels, selected
}

func TestSignUpErrors(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		f := newFixtureOn(t, be)
		c := f.client()
		c.signUp("Ivan", "ivan@example.com")
		for _, tc := range []struct {
			name string
			edit func(url.Values)
			want int
			msg  string
		}{
			{"short password", func(v url.Values) { v.Set("password", "short") }, http.StatusBadRequest, "Please check what you entered"},
			{"taken e-mail", func(v url.Values) { v.Set("email", "ivan@example.com") }, http.StatusConflict, "already an account"},
			{"declined payment", func(v url.Values) { v.Set("payment_token", custtest.TokenDeclined) }, http.StatusBadRequest, "declined"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				b := f.client()
				form := url.Values{
					"csrf": {csrf(t, b.get("/signup"))}, "name": {"Judy"}, "email": {"judy@example.com"}, "password": {password("judy")},
					"street": {"2 Side Street"}, "city": {"Town"}, "postcode": {"12345"}, "region": {"DE"}, "payment_token": {custtest.TokenOK},
				}
				tc.edit(form)
				r := b.do(http.MethodPost, "/signup", form)
				if r.StatusCode != tc.want || !strings.Contains(r.body, tc.msg) {
					t.Fatalf("got %s, want %d with %q:\n%s", r.Status, tc.want, tc.msg, r.body)
				}
				if !strings.Contains(r.body, `value="2 Side Street"`) {
					t.Error("the form was not filled in again")
				}
				if b.sessionID() != "" {
					t.Error("a refused sign-up logged in")
				}
			})
		}
	})
}

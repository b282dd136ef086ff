package web_test

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/media"
)

// chromiumPath finds Debian's chromium (tools/deps.sh installs it).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (tools/deps.sh installs it); the browser test cannot run")
	}
	t.Skip("chromium is not installed (apt-get install chromium, or tools/deps.sh): browser test not run")
	return ""
}

// artifactDir is where the screenshots go: $BOXSWARM_ARTIFACTS/web/sub
// if set, else the test's artifact directory (kept with go test
// -artifacts).
func artifactDir(t *testing.T, sub string) string {
	if d := os.Getenv("BOXSWARM_ARTIFACTS"); d != "" {
		d = filepath.Join(d, "web", sub)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.ArtifactDir()
}

// TestBrowser drives headless Chromium through the pages as a viewer
// would, with nothing but clicks and typing: no request is made by hand.
func TestBrowser(t *testing.T) {
	exe := chromiumPath(t)
	eachBackend(t, func(t *testing.T, be backend) { browse(t, exe, be.name, newFixtureOn(t, be)) })
}

// browse is the walk on one backend, whose name keeps its screenshots
// apart.
func browse(t *testing.T, exe, name string, f *fixture) {
	begin := time.Now()
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	dir := artifactDir(t, name)
	t.Logf("screenshots in %s", dir)

	// Generous: make test runs this beside QEMU boxes on two cores, where
	// one walk has taken close to a minute.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	actx, acancel := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // root in a container: no user namespaces for the sandbox
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), // containers' /dev/shm is often 64 MB
		chromedp.WindowSize(1000, 900),
		chromedp.UserDataDir(t.TempDir()),
	)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer bcancel()

	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	// pollCtx bounds one look at the page while polling. A query waits for
	// its element, and one that raced a form's navigation waits for a node
	// of the old document that never comes back: without a bound the walk
	// hung there until its 4-minute deadline, now and then, on a loaded
	// machine.
	pollCtx := func() (context.Context, context.CancelFunc) { return context.WithTimeout(bctx, 3*time.Second) }
	// peek is text for polling: a page still loading has none.
	peek := func(sel string) string {
		pctx, cancel := pollCtx()
		defer cancel()
		s, err := chromedp.Run(pctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			return ""
		}
		return s
	}
	// shot saves a screenshot of the viewport, best effort: screenshots
	// are artifacts, not assertions, and on a loaded machine Chromium has
	// been seen to take a capture past any deadline.
	shot := func(name string) {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 10*time.Second)
		defer cancel()
		png, err := chromedp.Run(sctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Logf("screenshot %s not taken: %v", name, err)
			return
		}
		if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// waitFor polls until cond holds: clicks that submit a form return
	// before the next page has loaded.
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				shot("failed")
				t.Fatalf("waiting for %s: timed out; page:\n%s", what, peek("body"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	at := func(path string) func() bool {
		return func() bool {
			pctx, cancel := pollCtx()
			defer cancel()
			loc, err := chromedp.Run(pctx, chromedp.Location())
			return err == nil && strings.HasPrefix(strings.TrimPrefix(loc, srv.URL), path)
		}
	}
	// listOrder is the names on the My List page, in order.
	// listOrder is read in one evaluation, so that it cannot mix two
	// documents.
	listOrder := func() []string {
		pctx, cancel := pollCtx()
		defer cancel()
		names, err := chromedp.Run(pctx, chromedp.Evaluate[[]string](
			`Array.from(document.querySelectorAll("#list .name"), e => e.textContent.trim())`))
		if err != nil {
			return nil // the page is changing; poll again
		}
		return names
	}
	listIs := func(want ...string) func() bool {
		return func() bool { return at("/boxes/")() && slices.Equal(listOrder(), want) }
	}

	// Sign up and see the activation code.
	launched := time.Now()
	do("open sign-up", chromedp.Navigate(srv.URL+"/signup"), chromedp.WaitVisible(chromedp.ID("name")))
	t.Logf("browser up and first page loaded in %v", time.Since(launched).Round(time.Millisecond))
	for id, v := range map[string]string{
		"name": "Browser Viewer", "email": "viewer@example.com", "password": "correct horse battery",
		"street": "1 Main Street", "city": "Town", "postcode": "12345", "region": "DE", "payment_token": "tok_ok_browser",
	} {
		do("type "+id, chromedp.SendKeys(chromedp.ID(id), v))
	}
	shot("01-signup")
	do("sign up", chromedp.Click(chromedp.ID("signup")), chromedp.WaitVisible(chromedp.ID("activation-code")))
	code := strings.TrimSpace(text("#activation-code"))
	accounts := boxesOfEmail(t, f, "viewer@example.com")
	if len(accounts) != 1 || accounts[0].Code != code || code == "" {
		t.Fatalf("activation code on the page %q, boxes %+v", code, accounts)
	}
	shot("02-activation-code")

	// Browse, then search with genre and sort.
	do("catalog", chromedp.Click(chromedp.CSS(`a[href="/catalog"]`)), chromedp.WaitVisible(chromedp.ID("results")))
	waitFor("catalog page 1", func() bool { return strings.Contains(peek("#count"), "Showing 1 to 5 of 11") })
	do("next page", chromedp.Click(chromedp.CSS(`a[rel="next"]`)))
	waitFor("catalog page 2", func() bool { return strings.Contains(peek("#count"), "Showing 6 to 10 of 11") })
	shot("03-catalog-page-2")
	// The genre is picked from its menu with the keyboard, as type-ahead.
	do("search", chromedp.SendKeys(chromedp.ID("q"), "l"), chromedp.SendKeys(chromedp.ID("genre"), "Comedy"),
		chromedp.SetValue(chromedp.ID("sort"), "year"), chromedp.Click(chromedp.ID("search")))
	waitFor("search results", func() bool { return strings.Contains(peek("#count"), "of 3.") })
	// The title with markup in its name shows as text, not as an element.
	if got := text("#results"); !strings.HasPrefix(got, evilTitle) || strings.Contains(got, "Bravo Night") ||
		!(strings.Index(got, "Hotel Lobby") < strings.Index(got, "Echo Valley")) {
		t.Fatalf("search for l in comedy by year: %q", got)
	}
	if got, err := chromedp.Run(bctx, chromedp.Value(chromedp.ID("genre"))); err != nil || got != "Comedy" {
		t.Fatalf("genre menu after the search: %q, %v; want Comedy kept", got, err)
	}
	shot("04-search")

	// Add three titles, each found by searching for it.
	for _, name := range []string{"Alpha Dawn", "Bravo Night", "Charlie Sky"} {
		do("search "+name, chromedp.Navigate(srv.URL+"/catalog"), chromedp.WaitVisible(chromedp.ID("q")),
			chromedp.SendKeys(chromedp.ID("q"), name), chromedp.Click(chromedp.ID("search")))
		waitFor("result "+name, func() bool { return strings.Contains(peek("#count"), "of 1.") })
		do("open "+name, chromedp.Click(chromedp.CSS(`#results a`)))
		waitFor("title page "+name, func() bool { return peek("h1") == name })
		if name == "Alpha Dawn" {
			if got := text("#rent"); got != "3.99 EUR, to watch within 2 days" {
				t.Fatalf("rent on the title page: %q", got)
			}
			shot("05-title")
		}
		do("add "+name, chromedp.Click(chromedp.ID("add")))
		waitFor("list with "+name, func() bool { return at("/boxes/")() && slices.Contains(listOrder(), name) })
	}
	waitFor("three titles", listIs("Alpha Dawn", "Bravo Night", "Charlie Sky"))
	shot("06-list-added")

	do("move Charlie up", chromedp.Click(chromedp.CSS(`button[aria-label="Move Charlie Sky up"]`)))
	waitFor("Charlie moved up", listIs("Alpha Dawn", "Charlie Sky", "Bravo Night"))
	do("move Alpha down", chromedp.Click(chromedp.CSS(`button[aria-label="Move Alpha Dawn down"]`)))
	waitFor("Alpha moved down", listIs("Charlie Sky", "Alpha Dawn", "Bravo Night"))
	shot("07-list-reordered")
	do("remove Bravo", chromedp.Click(chromedp.CSS(`button[aria-label="Remove Bravo Night"]`)))
	waitFor("Bravo removed", listIs("Charlie Sky", "Alpha Dawn"))
	shot("08-list-removed")

	// Log out, log back in, and the list is as it was left.
	do("log out", chromedp.Click(chromedp.ID("logout")))
	waitFor("log-in page", at("/login"))
	do("account after log-out", chromedp.Navigate(srv.URL+"/account"))
	waitFor("account page sends to log-in after log-out", at("/login"))
	do("log in", chromedp.WaitVisible(chromedp.ID("email")),
		chromedp.SendKeys(chromedp.ID("email"), "viewer@example.com"),
		chromedp.SendKeys(chromedp.ID("password"), "correct horse battery"),
		chromedp.Click(chromedp.ID("login")))
	waitFor("list after log-in", listIs("Charlie Sky", "Alpha Dawn"))
	shot("09-list-after-login")

	do("account", chromedp.Click(chromedp.CSS(`a[href="/account"]`)))
	waitFor("account page", func() bool { return at("/account")() && strings.Contains(peek("#account-name"), "Browser Viewer") })
	shot("10-account")

	ids := []media.ID{f.ids["Charlie Sky"], f.ids["Alpha Dawn"]}
	bs := boxesOfEmail(t, f, "viewer@example.com")
	l, err := f.svc.List(ctx, bs[0].Account, bs[0].Ref)
	if err != nil || !slices.Equal(l.Titles, ids) {
		t.Fatalf("stored list %v, %v; want %v", l.Titles, err, ids)
	}
	t.Logf("browser test took %v", time.Since(begin).Round(time.Millisecond))
}

// boxesOfEmail finds an account's boxes by logging in as the service would
// not let the test look accounts up by e-mail otherwise.
func boxesOfEmail(t *testing.T, f *fixture, email string) []customers.Box {
	t.Helper()
	iss, err := f.svc.Login(ctx, customers.Login{Email: email, Password: "correct horse battery", RemoteAddr: "203.0.113.9:1"})
	if err != nil {
		t.Fatalf("log-in of %s to look at its boxes: %v", email, err)
	}
	defer f.svc.Logout(ctx, iss.ID)
	bs, err := f.svc.Boxes(ctx, iss.Account)
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

package web

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/headend/customers/boltstore"
	"github.com/boxswarm/boxswarm/headend/customers/custtest"
	"github.com/boxswarm/boxswarm/headend/customers/pgstore"
	"github.com/boxswarm/boxswarm/internal/pgtest"
	"github.com/boxswarm/boxswarm/media"
)

// BenchmarkPages measures how long the catalog search and My List take to
// render on a large customer base: custtest.LoadBulk's titles and accounts
// (BOXSWARM_PAGES_TITLES, BOXSWARM_PAGES_ACCOUNTS; small by default, make
// bench sets 15,000 and 100,000) on each backend (BOXSWARM_PAGES_BACKENDS,
// "bolt,postgres"). A few of the accounts log in through the log-in form;
// then, for each of BOXSWARM_PAGES_ROUNDS rounds, their catalog searches
// (text, genre, sort, page) and My List pages are requested one at a time
// through the handler with httptest.NewRecorder, each followed by the
// reference: html/template rendering a page of the same size from values
// in memory, through the same recorder. Each round is one sub-benchmark
// reporting p50 and p99 of both, in µs; "load" reports the load time.
//
// Run it with -benchtime 1x: each sub-benchmark does a fixed amount of
// work.
func BenchmarkPages(b *testing.B) {
	titles := benchEnvInt(b, "BOXSWARM_PAGES_TITLES", 2000)
	accounts := benchEnvInt(b, "BOXSWARM_PAGES_ACCOUNTS", 5000)
	rounds := benchEnvInt(b, "BOXSWARM_PAGES_ROUNDS", 3)
	catalogN := benchEnvInt(b, "BOXSWARM_PAGES_CATALOG_REQUESTS", 240)
	listN := benchEnvInt(b, "BOXSWARM_PAGES_LIST_REQUESTS", 1000)
	backends := "bolt,postgres"
	if v := os.Getenv("BOXSWARM_PAGES_BACKENDS"); v != "" {
		backends = v
	}
	for _, backend := range strings.Split(backends, ",") {
		b.Run(backend, func(b *testing.B) {
			store := benchStore(b, backend)
			svc, err := customers.New(customers.Config{
				Store: store, Payments: custtest.NewPayments(), Activator: custtest.NewActivator(),
				Log: benchQuiet, Password: customers.DefaultPasswordParams,
			})
			if err != nil {
				b.Fatal(err)
			}
			var l *custtest.Loaded
			b.Run("load", func(b *testing.B) {
				started := time.Now()
				l, err = custtest.LoadBulk(context.Background(), svc, store, custtest.Bulk{
					Titles: titles, Accounts: accounts, Password: "correct horse battery staple",
					Now: customers.StoreTime(started), Seed: 1,
				})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(time.Since(started).Seconds(), "load-s")
				b.ReportMetric(float64(titles), "titles")
				b.ReportMetric(float64(accounts), "accounts")
			})
			if l == nil {
				b.FailNow()
			}
			h, err := New(Config{Customers: svc, Progress: benchProgress{}, Log: benchQuiet, Catalogs: l.Catalogs})
			if err != nil {
				b.Fatal(err)
			}
			r := newBenchRun(b, h, l)
			for round := 1; round <= rounds; round++ {
				b.Run(fmt.Sprintf("round=%d", round), func(b *testing.B) {
					runtime.GC()
					cat, catRef := r.time(b, catalogN, r.catalogURLs)
					list, listRef := r.time(b, listN, r.listURLs)
					for _, m := range []struct {
						name string
						d    []time.Duration
					}{{"catalog", cat}, {"catalog-ref", catRef}, {"list", list}, {"list-ref", listRef}} {
						b.ReportMetric(benchPercentile(m.d, 50), m.name+"-p50-us")
						b.ReportMetric(benchPercentile(m.d, 99), m.name+"-p99-us")
					}
					b.ReportMetric(r.meanSize(r.catalogURLs), "catalog-bytes")
					b.ReportMetric(r.meanSize(r.listURLs), "list-bytes")
				})
			}
		})
	}
}

var benchQuiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func benchEnvInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// benchStore opens an empty store on the backend, closed when b ends.
func benchStore(b *testing.B, backend string) customers.Store {
	var (
		s   customers.Store
		err error
	)
	switch backend {
	case "bolt":
		s, err = boltstore.Open(filepath.Join(b.TempDir(), "customers.db"), boltstore.WithLogger(benchQuiet))
	case "postgres":
		// No TestMain here (the package's tests need none), so the
		// cluster is stopped when the benchmark is done with it; this
		// cleanup runs after the one that drops the database.
		b.Cleanup(func() {
			if err := pgtest.Stop(); err != nil {
				b.Errorf("stop PostgreSQL: %v", err)
			}
		})
		s, err = pgstore.Open(context.Background(), pgtest.Start(b), pgstore.WithLogger(benchQuiet))
	default:
		b.Fatalf("unknown backend %q (want bolt or postgres)", backend)
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// benchProgress says every third title is downloaded and every third is
// on its way, as the scheduler would from memory.
type benchProgress struct{}

func (benchProgress) Progress(_ context.Context, _ customers.Box, titles []media.ID) (map[media.ID]TitleProgress, error) {
	out := make(map[media.ID]TitleProgress, len(titles))
	for _, id := range titles {
		switch id[1] % 3 {
		case 0:
			out[id] = TitleProgress{State: Downloaded}
		case 1:
			out[id] = TitleProgress{State: Downloading, Percent: int(id[2]) * 100 / 256}
		}
	}
	return out, nil
}

// benchUser is a logged-in browser: its session cookie and box.
type benchUser struct {
	cookie string
	box    customers.BoxRef
}

// benchURL is one page a user asks for, with the reference page made the
// same size as the first answer.
type benchURL struct {
	user int
	path string
	size int
	ref  []benchRow
}

type benchRun struct {
	h           http.Handler
	ref         *template.Template
	users       []benchUser
	catalogURLs []*benchURL
	listURLs    []*benchURL
}

// benchUsers is how many accounts log in; spread over the whole base.
const benchUsers = 8

func newBenchRun(b *testing.B, h http.Handler, l *custtest.Loaded) *benchRun {
	r := &benchRun{h: h, ref: template.Must(template.New("ref").Parse(benchRefPage))}
	for k := range benchUsers {
		i := k * (l.Accounts() - 1) / (benchUsers - 1)
		r.users = append(r.users, benchUser{cookie: benchLogin(b, h, l.Email(i), l.Password), box: l.Box(i)})
	}
	// Searches a viewer makes: browsing in each order, deep pages, genres,
	// words of titles, actors famous and not, a first name (titles and
	// actors both), a word within a genre, and nothing found.
	words := []string{l.Words[0], l.Words[len(l.Words)/2], l.Words[len(l.Words)-1], "the"}
	queries := []url.Values{
		{}, {"sort": {"year"}}, {"sort": {"newest"}}, {"page": {"40"}}, {"page": {"3"}, "sort": {"year"}},
		{"genre": {l.Genres[0]}}, {"genre": {l.Genres[3]}, "page": {"2"}}, {"genre": {strings.ToLower(l.Genres[7])}, "sort": {"newest"}},
		{"q": {l.Actors[0]}}, {"q": {l.Actors[40]}}, {"q": {l.Actors[len(l.Actors)-1]}},
		{"q": {strings.Fields(l.Actors[5])[0]}}, {"q": {"zqxv"}}, {"q": {words[0]}, "genre": {l.Genres[1]}},
	}
	for _, w := range words {
		queries = append(queries, url.Values{"q": {strings.ToLower(w)}}, url.Values{"q": {w}, "page": {"2"}})
	}
	for i, q := range queries {
		r.catalogURLs = append(r.catalogURLs, &benchURL{user: i % benchUsers, path: "/catalog?" + q.Encode()})
	}
	for u, usr := range r.users {
		r.listURLs = append(r.listURLs, &benchURL{user: u, path: "/boxes/" + url.PathEscape(string(usr.box)) + "/list"})
	}
	// One request each to check the pages and size the references.
	for _, u := range append(slices.Clone(r.catalogURLs), r.listURLs...) {
		body := r.get(b, u)
		u.size = len(body)
		u.ref = r.sizedRef(u.size)
	}
	return r
}

var benchCSRF = regexp.MustCompile(`name="csrf" value="([^"]*)"`)

// benchLogin logs in through the log-in form and returns the session ID.
func benchLogin(b *testing.B, h http.Handler, email, password string) string {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/login", nil))
	var pre string
	for _, c := range w.Result().Cookies() {
		if c.Name == preSessionCookie {
			pre = c.Value
		}
	}
	m := benchCSRF.FindStringSubmatch(w.Body.String())
	if pre == "" || m == nil {
		b.Fatalf("log-in form: no pre-session cookie or CSRF field:\n%s", w.Body)
	}
	form := url.Values{"csrf": {html.UnescapeString(m[1])}, "email": {email}, "password": {password}}
	req := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: preSessionCookie, Value: pre})
	req.RemoteAddr = "192.0.2.10:40000"
	w = httptest.NewRecorder()
	h.ServeHTTP(w, req)
	for _, c := range w.Result().Cookies() {
		if c.Name == sessionCookie && c.Value != "" {
			return c.Value
		}
	}
	b.Fatalf("log-in of %s: %d, no session cookie:\n%s", email, w.Code, w.Body)
	return ""
}

// get asks for a page as its user, failing b on anything but the page.
func (r *benchRun) get(b *testing.B, u *benchURL) []byte {
	req := httptest.NewRequest(http.MethodGet, u.path, nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: r.users[u.user].cookie})
	w := httptest.NewRecorder()
	r.h.ServeHTTP(w, req)
	if w.Code != http.StatusOK || !bytes.Contains(w.Body.Bytes(), []byte("<main>")) {
		b.Fatalf("GET %s: %d\n%s", u.path, w.Code, w.Body)
	}
	return w.Body.Bytes()
}

// time asks for n pages, cycling through urls, each followed by its
// reference, and returns the durations of both.
func (r *benchRun) time(b *testing.B, n int, urls []*benchURL) (ours, ref []time.Duration) {
	refHandler := http.HandlerFunc(r.serveRef)
	for i := range n {
		u := urls[i%len(urls)]
		req := httptest.NewRequest(http.MethodGet, u.path, nil)
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: r.users[u.user].cookie})
		w := httptest.NewRecorder()
		t0 := time.Now()
		r.h.ServeHTTP(w, req)
		t1 := time.Now()
		if w.Code != http.StatusOK {
			b.Fatalf("GET %s: %d\n%s", u.path, w.Code, w.Body)
		}
		req = httptest.NewRequest(http.MethodGet, u.path, nil)
		req = req.WithContext(context.WithValue(req.Context(), benchRefKey{}, u.ref))
		w = httptest.NewRecorder()
		t2 := time.Now()
		refHandler.ServeHTTP(w, req)
		t3 := time.Now()
		ours, ref = append(ours, t1.Sub(t0)), append(ref, t3.Sub(t2))
	}
	return ours, ref
}

func (r *benchRun) meanSize(urls []*benchURL) float64 {
	total := 0
	for _, u := range urls {
		total += u.size
	}
	return float64(total) / float64(len(urls))
}

type benchRefKey struct{}

// serveRef renders the reference page as the real pages are rendered:
// into a buffer, then written with the same headers.
func (r *benchRun) serveRef(w http.ResponseWriter, req *http.Request) {
	rows, _ := req.Context().Value(benchRefKey{}).([]benchRow)
	var buf bytes.Buffer
	if err := r.ref.Execute(&buf, benchRefData{Title: "Catalog", CSRF: "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG", Rows: rows}); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

type benchRow struct {
	ID    string
	Name  string
	Year  int
	Genre string
}

type benchRefData struct {
	Title, CSRF string
	Rows        []benchRow
}

// sizedRef returns rows that make the reference page about size bytes.
func (r *benchRun) sizedRef(size int) []benchRow {
	render := func(rows []benchRow) int {
		var buf bytes.Buffer
		_ = r.ref.Execute(&buf, benchRefData{Title: "Catalog", CSRF: "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG", Rows: rows})
		return buf.Len()
	}
	row := func(i int) benchRow {
		return benchRow{ID: fmt.Sprintf("%032x", i+1), Name: fmt.Sprintf("The Silent Harbor <%d> & Co", i), Year: 1950 + i%70, Genre: "Drama"}
	}
	var rows []benchRow
	for len(rows) < 10000 && render(rows) < size {
		rows = append(rows, row(len(rows)))
	}
	return rows
}

// benchRefPage is the reference: the real layout's shape with a list of
// escaped rows, and nothing to look up.
const benchRefPage = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · BoxSwarm</title>
<link rel="stylesheet" href="/style.css">
</head>
<body>
<header>
<p class="brand"><a href="/">BoxSwarm</a></p>
<nav aria-label="Main"><ul><li><a href="/catalog">Catalog</a></li><li><a href="/list">My List</a></li></ul>
<form method="post" action="/logout" class="inline"><input type="hidden" name="csrf" value="{{.CSRF}}">
<button type="submit">Log out</button></form></nav>
</header>
<main>
<h1>{{.Title}}</h1>
<ul class="titles">
{{range .Rows}}<li><a href="/titles/{{.ID}}">{{.Name}}</a> ({{.Year}}, {{.Genre}})</li>
{{end}}</ul>
</main>
</body>
</html>
`

// benchPercentile returns the p-th percentile of d in µs (nearest rank).
func benchPercentile(d []time.Duration, p int) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	i = min(max(i, 1), len(s)) - 1
	return float64(s[i]) / float64(time.Microsecond)
}

package web_test

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/headend/web"
	"github.com/boxswarm/boxswarm/media"
)

// Long attempts: one over every field's limit but short enough to be
// read, and one over the 64 KiB a form may have.
var (
	longInjection = strings.Repeat("' OR 1=1 -- ", 100)                      // 1,200 bytes
	hugeInjection = strings.Repeat("'; DROP TABLE cust_accounts; -- ", 3000) // 96,000 bytes
)

// injections are SQL injection attempts: quoting, stacked statements,
// UNION, comments, escapes, LIKE wildcards, time delays, and bytes
// PostgreSQL refuses in text (NUL, invalid UTF-8), plus markup, which must
// come back escaped.
var injections = []string{
	`' OR '1'='1`,
	`' OR '1'='1' --`,
	`' OR 1=1 --`,
	`" OR ""="`,
	`1 OR 1=1`,
	`') OR ('1'='1`,
	`'; DROP TABLE cust_accounts; --`,
	`'; DROP TABLE cust_titles; --`,
	`'); DELETE FROM cust_ledger; --`,
	`'; UPDATE cust_accounts SET status = 'suspended'; --`,
	`'; TRUNCATE cust_sessions; --`,
	`' UNION SELECT id, email, password_hash, NULL FROM cust_accounts --`,
	`' UNION ALL SELECT NULL, NULL, NULL --`,
	`1' ORDER BY 99 --`,
	`admin'--`,
	`admin' #`,
	`' /* comment */ OR /**/ 1=1 --`,
	`*/ OR 1=1 /*`,
	`'; SELECT pg_sleep(20); --`,
	`$$ || pg_sleep(20) || $$`,
	`'||(SELECT password_hash FROM cust_accounts LIMIT 1)||'`,
	`\' OR 1=1 --`,
	`\`,
	`\\'`,
	`%`,
	`_`,
	`%' OR name LIKE '%`,
	`E'\x27 OR 1=1 --`,
	`$1`,
	"line\nbreak' --",
	"tab\t' OR 1=1 --",
	"nul\x00' OR 1=1 --",
	"\x00",
	"\xff' OR 1=1 --",
	"\xc3\x28",
	"\xed\xa0\x80", // a UTF-16 surrogate: not UTF-8
	`<script>alert('sql')</script>' --`,
	longInjection,
	hugeInjection,
}

// maxForm is what the pages read of a form.
const maxForm = 64 << 10

// maxSearchText is customers' limit on a search's text and genre.
const maxSearchText = 1000

// answerCheck holds an attempt's answer to what every answer must be.
type answerCheck struct {
	t      *testing.T
	forbid []string // must not be in any body: what would be a leak
}

// timed does a request and checks its answer: a status allowed, no leak,
// and quickly (a pg_sleep that ran would take 20 s).
func (a answerCheck) timed(c *client, what, method, path string, form url.Values, allowed ...int) response {
	a.t.Helper()
	begin := time.Now()
	r := c.do(method, path, form)
	if took := time.Since(begin); took > 10*time.Second {
		a.t.Errorf("%s: took %v: did a delay in the input run?", what, took)
	}
	if !slices.Contains(allowed, r.StatusCode) {
		a.t.Errorf("%s: %s, want one of %v\n%.3000s", what, r.Status, allowed, r.body)
	}
	for _, f := range a.forbid {
		if strings.Contains(r.body, f) {
			a.t.Errorf("%s: the answer holds %q", what, f)
		}
	}
	if strings.Contains(r.body, "<script>") {
		a.t.Errorf("%s: the answer holds raw markup", what)
	}
	return r
}

// state is what the attempts must not change.
type state struct {
	rows   map[string]int // PostgreSQL: rows in each table
	titles int            // the titles the victim can find
	victim customers.Account
	list   []media.ID
}

func (f *fixture) state(t *testing.T, victim customers.AccountID, box customers.BoxRef) state {
	t.Helper()
	var s state
	var err error
	if s.victim, err = f.svc.Account(ctx, victim); err != nil {
		t.Fatal(err)
	}
	p, err := f.svc.Search(ctx, victim, customers.Query{})
	if err != nil {
		t.Fatal(err)
	}
	s.titles = p.Total
	l, err := f.svc.List(ctx, victim, box)
	if err != nil {
		t.Fatal(err)
	}
	s.list = l.Titles
	if f.dsn == "" {
		return s
	}
	conn, err := pgx.Connect(ctx, f.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	s.rows = map[string]int{}
	for _, table := range tables {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&n); err != nil {
			t.Fatalf("rows of %s: %v", table, err)
		}
		s.rows[table] = n
	}
	return s
}

// TestSQLInjection sends SQL injection attempts through every field and
// path part the pages pass on to customer management: log-in, sign-up,
// the catalog's search, genre, sort and page, title IDs, list forms, box
// references and the session cookie. Each must be answered with a page
// or a clear 4xx (never a 500: the server logging an error fails the
// test), must find exactly what a literal match finds, and must leave the
// database as it was, its tables and rows counted with plain SQL on
// PostgreSQL. It runs on bbolt too, which must answer alike.
func TestSQLInjection(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		f := newFixtureOn(t, be, func(c *customers.Config, _ *web.Config) {
			// Every attempt is judged on its own, none refused for being
			// one too many (TestLoginThrottling tests that).
			c.Throttle = customers.ThrottlePolicy{EmailFree: 1 << 20, AddrFree: 1 << 20, Base: time.Second, Max: time.Second, Forget: time.Hour}
		})
		// A title that really holds such text: searches for it find it.
		f.putTitle(customers.Title{Media: media.ID{0xEE, 1}, Name: `O'Brien's 100% \ Story`, Year: 1980, Genre: `' OR ''='`,
			Actors: []string{`' OR '1'='1`}, Directors: []string{`Robert'); DROP TABLE cust_titles; --`}})

		victim := f.client()
		victimBox, welcome := victim.signUp("Victor", "victor@example.com")
		victimID := victim.account()
		if r := victim.do(http.MethodPost, "/boxes/"+string(victimBox)+"/list/add",
			url.Values{"csrf": {csrf(t, welcome)}, "title": {f.ids["Alpha Dawn"].String()}}); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("victim's add: %s", r.Status)
		}
		attacker := f.client()
		attacker.addr = "198.51.100.66:6666"
		attackerBox, page := attacker.signUp("Mallory", "mallory@example.com")
		tok := csrf(t, page)
		before := f.state(t, victimID, victimBox)
		created := map[string]bool{"victor@example.com": true, "mallory@example.com": true}
		// Nothing of the victim's, nor any password hash, may reach the
		// attacker.
		leaks := answerCheck{t: t, forbid: []string{"$argon2", "victor@example.com"}}

		t.Run("log-in", func(t *testing.T) {
			chk := answerCheck{t: t, forbid: []string{"$argon2"}}
			for i, p := range injections {
				for _, tc := range []struct{ email, password string }{
					{p, password("victor@example.com")},
					{p + "@example.com", password("victor@example.com")},
					{"victor@example.com" + p, password("victor@example.com")},
					{"victor@example.com", p},
					{"victor@example.com", password("victor@example.com") + p},
				} {
					b := f.client()
					tok := csrf(t, b.get("/login"))
					form := url.Values{"csrf": {tok}, "email": {tc.email}, "password": {tc.password}}
					want := http.StatusUnauthorized
					if email, err := customers.NormalizeEmail(tc.email); err == nil && email == "victor@example.com" && tc.password == password(email) {
						want = http.StatusSeeOther // no attempt is this, but the check is the rule
					}
					if len(form.Encode()) > maxForm {
						want = http.StatusBadRequest
					}
					chk.timed(b, fmt.Sprintf("log-in %d %.60q / %.60q", i, tc.email, tc.password), http.MethodPost, "/login", form, want)
					if want != http.StatusSeeOther && b.sessionID() != "" {
						t.Errorf("log-in %d %.60q / %.60q: logged in", i, tc.email, tc.password)
					}
				}
			}
		})

		t.Run("sign-up", func(t *testing.T) {
			chk := answerCheck{t: t, forbid: []string{"$argon2", "victor@example.com"}}
			text := func(p string, minLen int) int { // customers' rule for names and address lines
				if customers.ValidText(p) != nil || len(strings.TrimSpace(p)) < minLen || len(p) > 200 {
					return http.StatusBadRequest
				}
				return http.StatusOK
			}
			for i, p := range injections {
				for _, field := range []string{"name", "email", "street", "city", "postcode", "region"} {
					b := f.client()
					form := url.Values{
						"csrf": {csrf(t, b.get("/signup"))}, "name": {"Sam"}, "email": {fmt.Sprintf("s%d-%s@example.com", i, field)},
						"password": {"correct horse battery"}, "street": {"2 Side Street"}, "city": {"Town"}, "postcode": {"12345"},
						"region": {"DE"}, "payment_token": {"tok_ok_sam"},
					}
					var want int
					stored := p
					switch field {
					case "name", "street", "city":
						form.Set(field, p)
						want = text(p, 1)
					case "postcode":
						form.Set(field, p)
						want = text(p, 0)
					case "region":
						form.Set(field, p)
						want = http.StatusBadRequest // no injection is a region code
					case "email":
						form.Set(field, p+"@example.com")
						email, err := customers.NormalizeEmail(p + "@example.com")
						stored = email
						switch {
						case err != nil:
							want = http.StatusBadRequest
						case created[email]:
							want = http.StatusConflict
						default:
							want = http.StatusOK
						}
					}
					if len(form.Encode()) > maxForm {
						want = http.StatusBadRequest
					}
					what := fmt.Sprintf("sign-up %d with %s %.60q", i, field, form.Get(field))
					r := chk.timed(b, what, http.MethodPost, "/signup", form, want)
					if r.StatusCode != http.StatusOK {
						if b.sessionID() != "" {
							t.Errorf("%s: refused, but logged in", what)
						}
						continue
					}
					// Stored byte for byte, whatever it looks like.
					a, err := f.svc.Account(ctx, b.account())
					if err != nil {
						t.Fatalf("%s: %v", what, err)
					}
					created[a.Email] = true
					got := map[string]string{"name": a.Name, "email": a.Email, "street": a.Address.Street, "city": a.Address.City, "postcode": a.Address.Postcode}[field]
					if got != stored {
						t.Errorf("%s: stored %.60q, want %.60q", what, got, stored)
					}
				}
			}
		})

		results := regexp.MustCompile(`<a href="/titles/([0-9a-f]+)">([^<]*)</a>`)
		names := func(r response) []string {
			var out []string
			for _, m := range results.FindAllStringSubmatch(r.body, -1) {
				out = append(out, html.UnescapeString(m[2]))
			}
			return out
		}
		// expect is what a literal search finds: customers.Search over the
		// titles put, as the attacker (DE, the studio catalog) sees them.
		expect := func(q customers.Query) ([]string, int) {
			q.Limit = 5
			p := customers.Search(customers.TitleQuery{Query: q, Catalogs: []customers.CatalogID{"studio"}, Region: "DE", Now: f.clock.Now()}, f.titles)
			var out []string
			for _, ti := range p.Titles {
				out = append(out, ti.Name)
			}
			return out, p.Total
		}
		checkResults := func(t *testing.T, what string, r response, q customers.Query) {
			t.Helper()
			want, total := expect(q)
			got := names(r)
			if !slices.Equal(got, want) {
				t.Errorf("%s: found %q, want %q", what, got, want)
			}
			count := fmt.Sprintf("of %d.", total)
			switch {
			case total == 0:
				count = "No titles match."
			case len(want) == 0:
				count = fmt.Sprintf("This page is past the results: the search found %d.", total)
			}
			if !strings.Contains(r.body, count) {
				t.Errorf("%s: the page does not say %q", what, count)
			}
		}

		t.Run("catalog", func(t *testing.T) {
			leaks := leaks
			leaks.t = t
			for _, param := range []string{"q", "genre"} {
				for i, p := range injections {
					what := fmt.Sprintf("catalog %s %d %.60q", param, i, p)
					want := http.StatusOK
					if customers.ValidText(p) != nil || len(p) > maxSearchText {
						want = http.StatusBadRequest
					}
					r := leaks.timed(attacker, what, http.MethodGet, "/catalog?"+url.Values{param: {p}}.Encode(), nil, want)
					if r.StatusCode != http.StatusOK {
						continue
					}
					q := customers.Query{Text: p}
					if param == "genre" {
						q = customers.Query{Genre: p}
					}
					checkResults(t, what, r, q)
				}
			}
			// What really matches is found, and only that.
			for _, q := range []customers.Query{{Text: `' OR '1'='1`}, {Text: `100%`}, {Text: `'s 100% \ s`}, {Text: "DROP TABLE"}, {Genre: `' or ''='`}} {
				if want, _ := expect(q); len(want) != 1 {
					t.Fatalf("the fixture should have one title for %+v, has %q", q, want)
				}
				r := leaks.timed(attacker, fmt.Sprintf("catalog %+v", q), http.MethodGet,
					"/catalog?"+url.Values{"q": {q.Text}, "genre": {q.Genre}}.Encode(), nil, http.StatusOK)
				checkResults(t, fmt.Sprintf("catalog %+v", q), r, q)
			}
			// Sort and page are not text to search: an attempt in sort is
			// the default order, in page the first page.
			for i, p := range injections {
				what := fmt.Sprintf("catalog sort %d %.60q", i, p)
				r := leaks.timed(attacker, what, http.MethodGet, "/catalog?"+url.Values{"sort": {p}}.Encode(), nil, http.StatusOK)
				checkResults(t, what, r, customers.Query{})
			}
			for i, p := range append(slices.Clone(injections), "0", "-1", "+2", "2 OR 1=1", "1e2", "0x10", "3", "10000",
				"9223372036854775807", "99999999999999999999", "1; DROP TABLE cust_titles") {
				what := fmt.Sprintf("catalog page %d %.60q", i, p)
				n, _ := strconv.Atoi(p)
				n = max(n, 1)
				if n > 10_000 {
					leaks.timed(attacker, what, http.MethodGet, "/catalog?"+url.Values{"page": {p}}.Encode(), nil, http.StatusNotFound)
					continue
				}
				r := leaks.timed(attacker, what, http.MethodGet, "/catalog?"+url.Values{"page": {p}}.Encode(), nil, http.StatusOK)
				checkResults(t, what, r, customers.Query{Offset: (n - 1) * 5})
			}
		})

		t.Run("title pages", func(t *testing.T) {
			leaks := leaks
			leaks.t = t
			id := f.ids["Alpha Dawn"].String()
			for i, p := range injections {
				for _, path := range []string{"/titles/" + url.PathEscape(p), "/titles/" + id + url.PathEscape(p), "/titles/" + url.PathEscape(p) + id} {
					leaks.timed(attacker, fmt.Sprintf("title page %d %.80q", i, path), http.MethodGet, path, nil, http.StatusNotFound)
				}
			}
		})

		t.Run("list forms", func(t *testing.T) {
			leaks := leaks
			leaks.t = t
			id := f.ids["Alpha Dawn"].String()
			for i, p := range injections {
				for _, action := range []string{"add", "move", "remove"} {
					for _, form := range []url.Values{
						{"title": {p}},
						{"title": {id + p}},
						{"title": {id}, "before": {p}},
					} {
						form.Set("csrf", tok)
						leaks.timed(attacker, fmt.Sprintf("list %s %d %.80q", action, i, form.Encode()), http.MethodPost,
							"/boxes/"+string(attackerBox)+"/list/"+action, form, http.StatusBadRequest)
					}
				}
			}
			if got := attacker.list(attackerBox); len(got) != 0 {
				t.Errorf("the attacker's list changed: %v", got)
			}
		})

		t.Run("box refs", func(t *testing.T) {
			leaks := leaks
			leaks.t = t
			id := f.ids["Bravo Night"].String()
			for i, p := range injections {
				for _, ref := range []string{p, string(victimBox) + p, p + string(victimBox), string(attackerBox) + p} {
					path := "/boxes/" + url.PathEscape(ref) + "/list"
					leaks.timed(attacker, fmt.Sprintf("box list %d %.80q", i, ref), http.MethodGet, path, nil, http.StatusNotFound)
					for _, action := range []string{"add", "move", "remove"} {
						leaks.timed(attacker, fmt.Sprintf("box %s %d %.80q", action, i, ref), http.MethodPost, path+"/"+action,
							url.Values{"csrf": {tok}, "title": {id}}, http.StatusNotFound)
					}
				}
			}
		})

		t.Run("session cookie", func(t *testing.T) {
			for i, p := range injections {
				// Sent as it is: net/http's cookie writer would drop bytes.
				r := f.client().do(http.MethodGet, "/account", nil, "Cookie", "sid="+p)
				if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/login" {
					t.Errorf("session cookie %d %.60q: %s to %q, want 303 to /login", i, p, r.Status, r.Header.Get("Location"))
				}
			}
		})

		// The database is as it was: every table, the same rows but the
		// accounts (and their first boxes) signed up above, sessions and
		// failed log-ins.
		after := f.state(t, victimID, victimBox)
		if after.titles != before.titles || after.titles != len(f.titles) {
			t.Errorf("the victim finds %d titles, %d before, %d put", after.titles, before.titles, len(f.titles))
		}
		if after.victim.Name != "Victor" || after.victim.Status != customers.StatusActive || !after.victim.Updated.Equal(before.victim.Updated) {
			t.Errorf("the victim's account changed: %+v", after.victim)
		}
		if !slices.Equal(after.list, before.list) {
			t.Errorf("the victim's list changed: %v, was %v", after.list, before.list)
		}
		if f.dsn != "" {
			newAccounts := len(created) - 2
			for _, table := range []string{"cust_schema_version", "cust_accounts", "cust_sessions", "cust_throttles", "cust_boxes",
				"cust_catalogs", "cust_titles", "cust_lists", "cust_purchases", "cust_ledger"} {
				if _, ok := after.rows[table]; !ok {
					t.Errorf("table %s is gone", table)
				}
			}
			for table, n := range before.rows {
				want := n
				switch table {
				case "cust_accounts", "cust_boxes":
					want += newAccounts
				case "cust_sessions", "cust_throttles":
					continue
				}
				if got, ok := after.rows[table]; !ok || got != want {
					t.Errorf("table %s: %d rows (there: %v), want %d", table, got, ok, want)
				}
			}
			if len(after.rows) != len(before.rows) {
				t.Errorf("tables before: %v; after: %v", before.rows, after.rows)
			}
			if after.rows["cust_titles"] != len(f.titles) || after.rows["cust_accounts"] < 30 {
				t.Errorf("rows: %v", after.rows)
			}
		}
		// The victim can still log in, and is still logged in.
		b := f.client()
		if r := b.login("victor@example.com", password("victor@example.com")); r.StatusCode != http.StatusSeeOther || b.account() != victimID {
			t.Errorf("the victim's log-in after the attempts: %s", r.Status)
		}
		if r := victim.get("/account"); r.StatusCode != http.StatusOK || !strings.Contains(r.body, "victor@example.com") {
			t.Errorf("the victim's account page after the attempts: %s", r.Status)
		}
	})
}

package web

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/media"
)

// pageNames are the templates in templates/, each with layout.html.
var pageNames = []string{"error", "signup", "welcome", "login", "catalog", "title", "list", "account"}

func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"duration": humanDuration,
		"inc":      func(i int) int { return i + 1 },
	}
	pages := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// view is what every page gets: the layout's fields and the page's Data.
type view struct {
	Title    string // the <title> and the page's <h1>
	LoggedIn bool
	Name     string // the viewer's name, when logged in
	CSRF     string // the token forms carry
	Error    string // shown above the page's content
	Data     any
}

// render writes a page. A template that fails is a bug: the viewer gets a
// plain 500, not half a page.
func (s *server) render(w http.ResponseWriter, status int, name string, v view) {
	var buf bytes.Buffer
	if err := s.pages[name].Execute(&buf, v); err != nil {
		s.log.Error("rendering a page", "page", name, "err", err)
		http.Error(w, "Internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (s *server) userView(u *user, title string) view {
	v := view{Title: title}
	if u != nil {
		v.LoggedIn, v.Name, v.CSRF = true, u.account.Name, u.session.CSRF
	}
	return v
}

// fail shows an error page.
func (s *server) fail(w http.ResponseWriter, _ *http.Request, u *user, status int, msg string) {
	v := s.userView(u, http.StatusText(status))
	v.Error = msg
	s.render(w, status, "error", v)
}

// failErr shows the error page for an error from customers: what the
// viewer can do something about is said; the rest is logged.
func (s *server) failErr(w http.ResponseWriter, r *http.Request, u *user, what string, err error) {
	status, msg := explain(err)
	if status == http.StatusInternalServerError {
		s.log.Error(what, "path", r.URL.Path, "err", err)
	}
	s.fail(w, r, u, status, msg)
}

// explain maps customers' errors to a status and a message for viewers.
func explain(err error) (int, string) {
	switch {
	case errors.Is(err, customers.ErrInvalid):
		return http.StatusBadRequest, "Please check what you entered: " + detail(err)
	case errors.Is(err, customers.ErrEmailTaken):
		return http.StatusConflict, "There is already an account with this e-mail address. Please log in instead."
	case errors.Is(err, customers.ErrPaymentDeclined):
		return http.StatusBadRequest, "The payment method was declined."
	case errors.Is(err, customers.ErrUnknownTitle), errors.Is(err, customers.ErrNotSubscribed),
		errors.Is(err, customers.ErrNotPublished), errors.Is(err, customers.ErrNotYourBox):
		return http.StatusNotFound, "There is no such page."
	case errors.Is(err, customers.ErrRegionBlocked):
		return http.StatusForbidden, "This title is not offered where the box is."
	case errors.Is(err, customers.ErrSuspended):
		return http.StatusForbidden, "Your account is suspended, so it cannot be changed."
	case errors.Is(err, customers.ErrAlreadyListed):
		return http.StatusConflict, "That title is already on My List."
	case errors.Is(err, customers.ErrNotListed):
		return http.StatusConflict, "That title is no longer on My List."
	case errors.Is(err, customers.ErrListFull):
		return http.StatusConflict, "My List is full. Remove a title first."
	}
	return http.StatusInternalServerError, "Something went wrong on our side. Please try again later."
}

// detail is the part of an ErrInvalid's text after "invalid input: ",
// which names the field.
func detail(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, customers.ErrInvalid.Error()+": "); i >= 0 {
		return msg[i+len(customers.ErrInvalid.Error())+2:]
	}
	return msg
}

func (s *server) home(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.authenticate(r); ok {
		http.Redirect(w, r, "/catalog", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// Sign-up.

type signUpForm struct {
	Name, Email, Street, City, Postcode, Region, PaymentToken string
}

func (s *server) signUpForm(w http.ResponseWriter, r *http.Request) {
	v := view{Title: "Sign up", CSRF: s.preSessionToken(w, r), Data: signUpForm{}}
	s.render(w, http.StatusOK, "signup", v)
}

func (s *server) signUp(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	form := signUpForm{
		Name: f.Get("name"), Email: f.Get("email"), Street: f.Get("street"), City: f.Get("city"),
		Postcode: f.Get("postcode"), Region: strings.ToUpper(strings.TrimSpace(f.Get("region"))),
		PaymentToken: f.Get("payment_token"),
	}
	password := f.Get("password")
	a, b, err := s.cust.SignUp(r.Context(), customers.SignUp{
		Name: form.Name, Email: form.Email, Password: password,
		Address:      customers.Address{Street: form.Street, City: form.City, Postcode: form.Postcode, Region: form.Region},
		PaymentToken: form.PaymentToken, Catalogs: s.catalogs, Supplier: s.supplier,
	})
	if err != nil {
		status, msg := explain(err)
		if status == http.StatusInternalServerError {
			s.log.Error("sign-up", "err", err)
		}
		form.PaymentToken = "" // entered again, as the password is
		v := view{Title: "Sign up", CSRF: f.Get("csrf"), Error: msg, Data: form}
		s.render(w, status, "signup", v)
		return
	}
	// Logged in straight away, so the next pages work.
	iss, err := s.cust.Login(r.Context(), customers.Login{
		Email: a.Email, Password: password, RemoteAddr: r.RemoteAddr, Previous: s.cookie(r, sessionCookie),
	})
	if err != nil {
		s.log.Error("log-in after sign-up", "account", a.ID, "err", err)
		s.render(w, http.StatusOK, "welcome", view{Title: "Welcome", Data: welcome{Code: b.Code, Name: a.Name}})
		return
	}
	s.setCookie(w, r, sessionCookie, iss.ID, iss.Expires)
	s.setCookie(w, r, preSessionCookie, "", time.Time{})
	u := user{sessionID: iss.ID, session: customers.Session{CSRF: iss.CSRF}, account: a}
	v := s.userView(&u, "Welcome")
	v.Data = welcome{Code: b.Code, Name: a.Name, Box: b.Ref}
	s.render(w, http.StatusOK, "welcome", v)
}

type welcome struct {
	Name string
	Code string
	Box  customers.BoxRef
}

// Log-in and log-out.

type loginForm struct{ Email string }

func (s *server) loginForm(w http.ResponseWriter, r *http.Request) {
	s.render(w, http.StatusOK, "login", view{Title: "Log in", CSRF: s.preSessionToken(w, r), Data: loginForm{}})
}

func (s *server) login(w http.ResponseWriter, r *http.Request) {
	email := r.PostForm.Get("email")
	iss, err := s.cust.Login(r.Context(), customers.Login{
		Email: email, Password: r.PostForm.Get("password"), RemoteAddr: r.RemoteAddr,
		Previous: s.cookie(r, sessionCookie),
	})
	if err != nil {
		v := view{Title: "Log in", CSRF: r.PostForm.Get("csrf"), Data: loginForm{Email: email}}
		var te *customers.ThrottledError
		switch {
		case errors.As(err, &te):
			secs := int(te.RetryAfter() / time.Second)
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			v.Error = fmt.Sprintf("Too many failed log-ins. For your safety, log-in is paused: please try again in %s.", humanDuration(te.RetryAfter()))
			s.render(w, http.StatusTooManyRequests, "login", v)
		case errors.Is(err, customers.ErrBadCredentials):
			v.Error = "Wrong e-mail address or password."
			s.render(w, http.StatusUnauthorized, "login", v)
		default:
			s.failErr(w, r, nil, "log-in", err)
		}
		return
	}
	s.setCookie(w, r, sessionCookie, iss.ID, iss.Expires)
	s.setCookie(w, r, preSessionCookie, "", time.Time{})
	http.Redirect(w, r, "/list", http.StatusSeeOther)
}

func (s *server) logout(w http.ResponseWriter, r *http.Request, u user) {
	if err := s.cust.Logout(r.Context(), u.sessionID); err != nil {
		s.failErr(w, r, &u, "log-out", err)
		return
	}
	s.setCookie(w, r, sessionCookie, "", time.Time{})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// Catalog.

type catalogPage struct {
	Query      customers.Query
	Titles     []customers.Title
	Total      int
	From, To   int
	Prev, Next string // links to the neighbouring pages; empty if none
	Sorts      []sortOption
	Genres     []genreOption
}

type sortOption struct {
	Value    customers.Sort
	Label    string
	Selected bool
}

type genreOption struct {
	Value    string // "" for every genre
	Label    string
	Selected bool
}

// maxPage bounds the page number a catalog link may ask for, so that the
// offset it makes cannot overflow: with MaxPageSize, a million titles.
const maxPage = 10_000

func (s *server) catalog(w http.ResponseWriter, r *http.Request, u user) {
	q := r.URL.Query()
	query := customers.Query{
		Text: q.Get("q"), Genre: q.Get("genre"), Sort: customers.Sort(q.Get("sort")), Limit: s.pageSize,
	}
	if !query.Sort.Valid() {
		query.Sort = ""
	}
	page, _ := strconv.Atoi(q.Get("page"))
	page = max(page, 1)
	if page > maxPage {
		s.fail(w, r, &u, http.StatusNotFound, "There is no such page of results.")
		return
	}
	query.Offset = (page - 1) * s.pageSize
	res, err := s.cust.Search(r.Context(), u.account.ID, query)
	if err != nil {
		s.failErr(w, r, &u, "search", err)
		return
	}
	genres, err := s.genres.get(r.Context(), u.account)
	if err != nil {
		// The menu is a convenience: the results are still shown, with
		// "All genres" and the genre asked for to choose from.
		s.log.Error("genre menu", "account", u.account.ID, "err", err)
	}
	genresKnown := err == nil
	link := func(p int) string {
		v := url.Values{}
		for k, val := range map[string]string{"q": query.Text, "genre": query.Genre, "sort": string(query.Sort)} {
			if val != "" {
				v.Set(k, val)
			}
		}
		if p > 1 {
			v.Set("page", strconv.Itoa(p))
		}
		if len(v) == 0 {
			return "/catalog"
		}
		return "/catalog?" + v.Encode()
	}
	cp := catalogPage{Query: query, Titles: res.Titles, Total: res.Total}
	if len(res.Titles) > 0 {
		cp.From, cp.To = res.Offset+1, res.Offset+len(res.Titles)
	}
	switch last := (res.Total + s.pageSize - 1) / s.pageSize; {
	case page > last && last > 0:
		cp.Prev = link(last) // past the results: back to the last page
	case page > 1:
		cp.Prev = link(page - 1)
	}
	if res.Offset+len(res.Titles) < res.Total {
		cp.Next = link(page + 1)
	}
	for _, o := range []sortOption{{customers.SortTitle, "Title, A to Z", false}, {customers.SortYear, "Year, newest first", false}, {customers.SortNewest, "Recently added", false}} {
		o.Selected = o.Value == query.Sort || query.Sort == "" && o.Value == customers.SortTitle
		cp.Sorts = append(cp.Sorts, o)
	}
	cp.Genres = genreOptions(genres, genresKnown, query.Genre)
	v := s.userView(&u, "Catalog")
	v.Data = cp
	s.render(w, http.StatusOK, "catalog", v)
}

// genreOptions is the genre menu: every genre, the one asked for
// selected. A genre asked for that is not among them (from an old link,
// or typed into the address) is kept as an option of its own, so that the
// menu says what the results were filtered by and the next search keeps
// it until the viewer picks another; it is said to have no titles when
// the genres are known.
func genreOptions(genres []string, known bool, asked string) []genreOption {
	fold := customers.FoldText(asked)
	opts := []genreOption{{Value: "", Label: "All genres", Selected: fold == ""}}
	found := fold == ""
	for _, g := range genres {
		sel := !found && customers.FoldText(g) == fold
		found = found || sel
		opts = append(opts, genreOption{Value: g, Label: g, Selected: sel})
	}
	if !found {
		label := asked
		if known {
			label += " (no titles)"
		}
		opts = append(opts, genreOption{Value: asked, Label: label, Selected: true})
	}
	return opts
}

// A title.

type titlePage struct {
	T     customers.Title
	Boxes []boxOption
}

type boxOption struct {
	Ref   customers.BoxRef
	Label string
}

func boxLabel(i int, b customers.Box) string {
	return fmt.Sprintf("Box %d (%s)", i+1, b.Region)
}

func (s *server) title(w http.ResponseWriter, r *http.Request, u user) {
	id, err := media.ParseID(r.PathValue("id"))
	if err != nil {
		s.fail(w, r, &u, http.StatusNotFound, "There is no such page.")
		return
	}
	t, err := s.cust.Title(r.Context(), u.account.ID, id)
	if err != nil {
		s.failErr(w, r, &u, "title", err)
		return
	}
	boxes, err := s.cust.Boxes(r.Context(), u.account.ID)
	if err != nil {
		s.failErr(w, r, &u, "boxes", err)
		return
	}
	tp := titlePage{T: t}
	for i, b := range boxes {
		tp.Boxes = append(tp.Boxes, boxOption{Ref: b.Ref, Label: boxLabel(i, b)})
	}
	v := s.userView(&u, t.Name)
	v.Data = tp
	s.render(w, http.StatusOK, "title", v)
}

// My List.

type listPage struct {
	Box     customers.BoxRef
	Label   string
	Others  []boxOption
	Entries []listEntry
}

type listEntry struct {
	ID       media.ID
	Name     string // empty if the title is no longer visible to the account
	Up, Down bool   // whether the buttons make sense
	UpBefore string // the title to move before to go up one
	DnBefore string // the title to move before to go down one; empty for the end
	Pos      int    // 1-based
	Total    int    // entries in all
	State    string // in words
	Percent  int    // while downloading
}

func (s *server) firstList(w http.ResponseWriter, r *http.Request, u user) {
	boxes, err := s.cust.Boxes(r.Context(), u.account.ID)
	if err != nil {
		s.failErr(w, r, &u, "boxes", err)
		return
	}
	if len(boxes) == 0 {
		s.fail(w, r, &u, http.StatusNotFound, "Your account has no box yet.")
		return
	}
	http.Redirect(w, r, "/boxes/"+url.PathEscape(string(boxes[0].Ref))+"/list", http.StatusSeeOther)
}

func (s *server) list(w http.ResponseWriter, r *http.Request, u user) {
	ctx := r.Context()
	ref, ok := boxRef(r)
	if !ok {
		s.fail(w, r, &u, http.StatusNotFound, "There is no such page.")
		return
	}
	boxes, err := s.cust.Boxes(ctx, u.account.ID)
	if err != nil {
		s.failErr(w, r, &u, "boxes", err)
		return
	}
	lp := listPage{Box: ref}
	var box *customers.Box
	for i, b := range boxes {
		if b.Ref == ref {
			box, lp.Label = &boxes[i], boxLabel(i, b)
		} else {
			lp.Others = append(lp.Others, boxOption{Ref: b.Ref, Label: boxLabel(i, b)})
		}
	}
	if box == nil {
		s.fail(w, r, &u, http.StatusNotFound, "There is no such page.")
		return
	}
	l, err := s.cust.List(ctx, u.account.ID, ref)
	if err != nil {
		s.failErr(w, r, &u, "list", err)
		return
	}
	var prog map[media.ID]TitleProgress
	progressKnown := false
	if s.progress != nil {
		if prog, err = s.progress.Progress(ctx, *box, l.Titles); err != nil {
			s.log.Warn("download progress", "box", ref, "err", err)
		} else {
			progressKnown = true
		}
	}
	n := len(l.Titles)
	for i, id := range l.Titles {
		e := listEntry{ID: id, Pos: i + 1, Total: n, Up: i > 0, Down: i < n-1}
		if t, err := s.cust.Title(ctx, u.account.ID, id); err == nil {
			e.Name = t.Name
		}
		if i > 0 {
			e.UpBefore = l.Titles[i-1].String()
		}
		if i+2 < n {
			e.DnBefore = l.Titles[i+2].String()
		}
		switch p := prog[id]; {
		case !progressKnown:
			e.State = "Status unknown"
		case p.State == Downloaded:
			e.State = "Downloaded"
		case p.State == Downloading:
			e.State, e.Percent = "Downloading", min(max(p.Percent, 0), 100)
		default:
			e.State = "Not started"
		}
		lp.Entries = append(lp.Entries, e)
	}
	v := s.userView(&u, "My List")
	v.Data = lp
	s.render(w, http.StatusOK, "list", v)
}

// boxRef is the box named in the path, or false if it names none that
// could exist: a box reference is text a store can hold (customers.ValidText)
// of at most customers.MaxKeyLen bytes. Anything else is refused here,
// before a store sees it, because stores differ on looking such a key up:
// bbolt finds nothing, PostgreSQL fails the query (it refuses invalid
// UTF-8 and NUL in text), which would be a 500.
func boxRef(r *http.Request) (customers.BoxRef, bool) {
	ref := r.PathValue("box")
	if ref == "" || len(ref) > customers.MaxKeyLen || customers.ValidText(ref) != nil {
		return "", false
	}
	return customers.BoxRef(ref), true
}

// formID reads a media ID from a form field; empty is the zero ID.
func formID(r *http.Request, field string) (media.ID, error) {
	v := r.PostForm.Get(field)
	if v == "" {
		return media.ID{}, nil
	}
	return media.ParseID(v)
}

// listEdit runs one edit of the box's list from a form and sends the
// browser back to the list.
func (s *server) listEdit(w http.ResponseWriter, r *http.Request, u user,
	edit func(box customers.BoxRef, title, before media.ID) (customers.List, error)) {
	ref, ok := boxRef(r)
	if !ok {
		s.fail(w, r, &u, http.StatusNotFound, "There is no such page.")
		return
	}
	title, err1 := formID(r, "title")
	before, err2 := formID(r, "before")
	if err := errors.Join(err1, err2); err != nil || title == (media.ID{}) {
		s.fail(w, r, &u, http.StatusBadRequest, "The form did not say which title.")
		return
	}
	if _, err := edit(ref, title, before); err != nil {
		s.failErr(w, r, &u, "list edit", err)
		return
	}
	target := "/boxes/" + url.PathEscape(string(ref)) + "/list"
	if r.PostForm.Get("from") == "title" {
		target += "?added=" + title.String()
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

func (s *server) listAdd(w http.ResponseWriter, r *http.Request, u user) {
	s.listEdit(w, r, u, func(box customers.BoxRef, title, before media.ID) (customers.List, error) {
		return s.cust.ListAddBefore(r.Context(), u.account.ID, box, title, before)
	})
}

func (s *server) listMove(w http.ResponseWriter, r *http.Request, u user) {
	s.listEdit(w, r, u, func(box customers.BoxRef, title, before media.ID) (customers.List, error) {
		return s.cust.ListMove(r.Context(), u.account.ID, box, title, before)
	})
}

func (s *server) listRemove(w http.ResponseWriter, r *http.Request, u user) {
	s.listEdit(w, r, u, func(box customers.BoxRef, title, _ media.ID) (customers.List, error) {
		return s.cust.ListRemove(r.Context(), u.account.ID, box, title)
	})
}

// Account.

type accountPage struct {
	A     customers.Account
	Boxes []accountBox
}

type accountBox struct {
	Label string
	B     customers.Box
}

func (s *server) account(w http.ResponseWriter, r *http.Request, u user) {
	boxes, err := s.cust.Boxes(r.Context(), u.account.ID)
	if err != nil {
		s.failErr(w, r, &u, "boxes", err)
		return
	}
	ap := accountPage{A: u.account}
	for i, b := range boxes {
		ap.Boxes = append(ap.Boxes, accountBox{Label: boxLabel(i, b), B: b})
	}
	v := s.userView(&u, "Your account")
	v.Data = ap
	s.render(w, http.StatusOK, "account", v)
}

// humanDuration says d in words, to the unit that matters.
func humanDuration(d time.Duration) string {
	plural := func(n int, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d >= 48*time.Hour && d%(24*time.Hour) == 0:
		return plural(int(d/(24*time.Hour)), "day")
	case d >= time.Hour && d%time.Hour == 0:
		return plural(int(d/time.Hour), "hour")
	case d >= time.Minute && d%time.Minute == 0:
		return plural(int(d/time.Minute), "minute")
	case d >= time.Minute:
		return plural(int((d+time.Minute-1)/time.Minute), "minute")
	}
	return plural(int((d+time.Second-1)/time.Second), "second")
}

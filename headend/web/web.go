// Package web serves customer management (headend/customers) to viewers
// as server-rendered HTML pages: sign-up with the box's activation code,
// log-in and log-out, the catalog with search, a menu of the genres the
// viewer's catalogs hold, and sort, a title's page, each box's My List
// with its download progress, and the account.
//
// The pages need no JavaScript: every action is a plain form, GET for
// searches and POST (answered with a redirect) for changes.
//
// Guarantees:
//   - Everything shown passes through html/template's contextual escaping.
//   - The session cookie is HttpOnly, SameSite=Lax, Path=/, and Secure when
//     configured or when the request came over TLS (configured, it is also
//     named with the __Host- prefix). Every log-in issues a new session ID
//     and ends the one the browser presented (customers.Login).
//   - Every POST carries a CSRF token in a hidden field: the session's
//     (customers.CheckCSRF) once logged in, and before that (sign-up and
//     log-in forms) a random token also set in a short-lived cookie, so
//     that another site cannot log a browser into its own account. A
//     missing or wrong token is answered 403 with a page saying so, and
//     nothing is changed. Cross-origin browser POSTs are refused as well
//     (http.CrossOriginProtection).
//   - What a path or form names is checked before customers sees it: a
//     title ID that does not parse is a 404 in a path and a 400 in a form,
//     and a box reference no store could hold (not UTF-8, a NUL, longer
//     than customers.MaxKeyLen) is a 404, the same on every backend.
//   - A throttled log-in is answered 429 with Retry-After.
//   - Every answer carries a Content-Security-Policy that allows only this
//     origin (no inline script or style) and no framing, nosniff, and a
//     same-origin Referrer-Policy. Pages of a session are not cached.
package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"time"

	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/media"
)

// State is how far a box has a title.
type State int

// Download states.
const (
	NotStarted State = iota
	Downloading
	Downloaded
)

// TitleProgress is how far a box has one title. Percent matters only
// while Downloading.
type TitleProgress struct {
	State   State
	Percent int
}

// Progress tells the pages how far a box has the titles on its list. The
// scheduler knows; tests use a fake.
type Progress interface {
	// Progress returns the progress of each title asked about; a title
	// missing from the map has not started. A box that has not activated
	// yet has nothing.
	Progress(ctx context.Context, box customers.Box, titles []media.ID) (map[media.ID]TitleProgress, error)
}

// Config configures the pages. Customers is required.
type Config struct {
	Customers *customers.Service
	// Progress reports download progress on My List; without it, every
	// title shows "status unknown".
	Progress Progress
	// Secure marks cookies Secure (and names them __Host-…) even when the
	// request itself did not come over TLS, as behind a TLS-terminating
	// proxy. Set it in production.
	Secure bool
	Log    *slog.Logger

	// Catalogs are subscribed for every account signed up here.
	Catalogs []customers.CatalogID
	// Supplier is recorded as the supplier of a box ordered at sign-up;
	// "web sign-up" if empty.
	Supplier string
	// PageSize is how many titles a catalog page shows; 20 if zero.
	PageSize int
}

// server holds what the handlers share. Its only mutable state is the
// genre menus' cache, which guards itself.
type server struct {
	cust     *customers.Service
	progress Progress
	secure   bool
	log      *slog.Logger
	catalogs []customers.CatalogID
	supplier string
	pageSize int
	pages    map[string]*template.Template
	genres   *genreCache
}

// New returns the pages as one handler.
func New(cfg Config) (http.Handler, error) {
	if cfg.Customers == nil {
		return nil, errors.New("web: Customers is required")
	}
	s := &server{
		cust: cfg.Customers, progress: cfg.Progress, secure: cfg.Secure, log: cfg.Log,
		catalogs: cfg.Catalogs, supplier: cfg.Supplier, pageSize: cfg.PageSize,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.supplier == "" {
		s.supplier = "web sign-up"
	}
	if s.pageSize <= 0 {
		s.pageSize = 20
	}
	s.pageSize = min(s.pageSize, customers.MaxPageSize)
	s.genres = newGenreCache(s.cust.Genres, s.log)
	var err error
	if s.pages, err = parsePages(); err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /style.css", s.style)
	mux.HandleFunc("GET /{$}", s.home)
	mux.HandleFunc("GET /signup", s.signUpForm)
	mux.HandleFunc("POST /signup", s.preSession(s.signUp))
	mux.HandleFunc("GET /login", s.loginForm)
	mux.HandleFunc("POST /login", s.preSession(s.login))
	mux.HandleFunc("POST /logout", s.post(s.logout))
	mux.HandleFunc("GET /catalog", s.get(s.catalog))
	mux.HandleFunc("GET /titles/{id}", s.get(s.title))
	mux.HandleFunc("GET /list", s.get(s.firstList))
	mux.HandleFunc("GET /boxes/{box}/list", s.get(s.list))
	mux.HandleFunc("POST /boxes/{box}/list/add", s.post(s.listAdd))
	mux.HandleFunc("POST /boxes/{box}/list/move", s.post(s.listMove))
	mux.HandleFunc("POST /boxes/{box}/list/remove", s.post(s.listRemove))
	mux.HandleFunc("GET /account", s.get(s.account))

	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, nil, http.StatusForbidden, "This form was sent from another web site, so it was refused. Nothing was changed.")
	}))
	return s.headers(cop.Handler(mux)), nil
}

//go:embed templates/*.html templates/style.css
var files embed.FS

// headers sets the security headers every answer carries.
func (s *server) headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		if s.secure {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		next.ServeHTTP(w, r)
	})
}

func (s *server) style(w http.ResponseWriter, r *http.Request) {
	http.ServeFileFS(w, r, files, "templates/style.css")
}

// Cookies.
const (
	sessionCookie    = "sid"
	preSessionCookie = "pre"
	hostPrefix       = "__Host-" // requires Secure, Path=/ and no Domain: no subdomain can set it
	preSessionTTL    = time.Hour
)

func (s *server) cookieName(base string) string {
	if s.secure {
		return hostPrefix + base
	}
	return base
}

func (s *server) setCookie(w http.ResponseWriter, r *http.Request, base, value string, expires time.Time) {
	c := &http.Cookie{
		Name: s.cookieName(base), Value: value, Path: "/",
		HttpOnly: true, Secure: s.secure || r.TLS != nil, SameSite: http.SameSiteLaxMode,
	}
	if value == "" {
		c.MaxAge = -1
	} else {
		c.Expires = expires
	}
	http.SetCookie(w, c)
}

func (s *server) cookie(r *http.Request, base string) string {
	c, err := r.Cookie(s.cookieName(base))
	if err != nil {
		return ""
	}
	return c.Value
}

// randomToken returns 256 random bits, base64url.
func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// preSessionToken returns the browser's pre-session CSRF token, setting a
// new one if it has none.
func (s *server) preSessionToken(w http.ResponseWriter, r *http.Request) string {
	if t := s.cookie(r, preSessionCookie); len(t) == 43 {
		return t
	}
	t := randomToken()
	s.setCookie(w, r, preSessionCookie, t, time.Now().Add(preSessionTTL))
	return t
}

// user is a logged-in viewer.
type user struct {
	sessionID string
	session   customers.Session
	account   customers.Account
}

// authenticate returns the request's session, or false.
func (s *server) authenticate(r *http.Request) (user, bool) {
	id := s.cookie(r, sessionCookie)
	if id == "" {
		return user{}, false
	}
	sess, a, err := s.cust.Authenticate(r.Context(), id)
	if err != nil {
		if !errors.Is(err, customers.ErrNoSession) {
			s.log.Error("authenticating a session", "err", err)
		}
		return user{}, false
	}
	return user{sessionID: id, session: sess, account: a}, true
}

// get wraps a page that needs a session; without one, the browser is sent
// to log in.
func (s *server) get(h func(http.ResponseWriter, *http.Request, user)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, ok := s.authenticate(r)
		if !ok {
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		h(w, r, u)
	}
}

// post wraps a change that needs a session and the session's CSRF token.
func (s *server) post(h func(http.ResponseWriter, *http.Request, user)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			s.fail(w, r, nil, http.StatusBadRequest, "The form could not be read.")
			return
		}
		u, ok := s.authenticate(r)
		if !ok {
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		if err := customers.CheckCSRF(u.session, r.PostForm.Get("csrf")); err != nil {
			s.log.Warn("form refused: CSRF token", "account", u.account.ID, "path", r.URL.Path, "addr", r.RemoteAddr)
			s.fail(w, r, &u, http.StatusForbidden, csrfMessage)
			return
		}
		h(w, r, u)
	}
}

const csrfMessage = "This form has expired or did not come from this site, so it was refused. Nothing was changed. Please go back, reload the page and try again."

// preSession wraps the forms sent before there is a session (sign-up and
// log-in): their token must match the pre-session cookie.
func (s *server) preSession(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			s.fail(w, r, nil, http.StatusBadRequest, "The form could not be read.")
			return
		}
		want, got := s.cookie(r, preSessionCookie), r.PostForm.Get("csrf")
		if want == "" || subtle.ConstantTimeCompare([]byte(want), []byte(got)) != 1 {
			s.log.Warn("form refused: pre-session CSRF token", "path", r.URL.Path, "addr", r.RemoteAddr)
			s.fail(w, r, nil, http.StatusForbidden, csrfMessage)
			return
		}
		h(w, r)
	}
}

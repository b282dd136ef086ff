package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
)

// Backend is what a Server answers from: the transfer daemon. The Server
// checks every request before it calls the Backend (lengths, duplicates,
// zero IDs), so a Backend sees only well-formed input. Errors wrap the
// package's sentinels to choose the answer (ErrNotActivated...); any other
// error is an internal one.
type Backend interface {
	Status(ctx context.Context) (Status, error)
	// Activate trades the code for the box's certificate; a refusal wraps
	// ErrRefused with the head-end's reason.
	Activate(ctx context.Context, code string) error
	// Catalog returns the items published by now, sorted by name.
	Catalog(ctx context.Context) ([]api.CatalogItem, error)
	List(ctx context.Context) (api.PriorityList, error)
	// SetList stores the list with the version after the one held and
	// sends it to the head-end.
	SetList(ctx context.Context, titles []media.ID) (api.PriorityList, error)
	Progress(ctx context.Context, titles []media.ID) (map[media.ID]Progress, error)
	// Pass and Key wait for the head-end's answer until ctx ends (the
	// Server bounds it with ServerOptions.AnswerTimeout).
	Pass(ctx context.Context, req api.PassRequest) (api.PassResponse, error)
	Key(ctx context.Context, pass []byte) (api.KeyResponse, error)
	// Changes returns the current change number once it differs from
	// since, or ctx's error.
	Changes(ctx context.Context, since uint64) (uint64, error)
}

// ServerOptions tune a Server; zero values take the defaults.
type ServerOptions struct {
	// AnswerTimeout bounds the wait for the head-end's answer to a pass or
	// key request (default 30 s).
	AnswerTimeout time.Duration
	// PollWait is how long a Changes request is held before it is answered
	// with the unchanged number, which the Client asks again with
	// (default 50 s).
	PollWait time.Duration
	// ReadTimeout bounds reading a request's headers and, separately, its
	// body (default 10 s).
	ReadTimeout time.Duration
	// MaxInFlight bounds the requests being answered at once; more get
	// ErrBusy (default 64).
	MaxInFlight int
	Log         *slog.Logger
}

// Defaults for ServerOptions.
const (
	DefaultAnswerTimeout = 30 * time.Second
	DefaultPollWait      = 50 * time.Second
	DefaultReadTimeout   = 10 * time.Second
	DefaultMaxInFlight   = 64
)

// Server answers the API from a Backend. It is an http.Handler; Serve runs
// it on a listener (see Listen).
type Server struct {
	b      Backend
	o      ServerOptions
	slots  chan struct{}
	routes map[string]map[string]func(http.ResponseWriter, *http.Request) error
}

// NewServer returns a Server over b.
func NewServer(b Backend, o ServerOptions) *Server {
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&o.AnswerTimeout, DefaultAnswerTimeout}, {&o.PollWait, DefaultPollWait}, {&o.ReadTimeout, DefaultReadTimeout}} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{b: b, o: o, slots: make(chan struct{}, o.MaxInFlight)}
	s.routes = map[string]map[string]func(http.ResponseWriter, *http.Request) error{
		"/v1/status":   {http.MethodGet: s.status},
		"/v1/activate": {http.MethodPost: s.activate},
		"/v1/catalog":  {http.MethodGet: s.catalog},
		"/v1/list":     {http.MethodGet: s.list, http.MethodPut: s.setList},
		"/v1/progress": {http.MethodPost: s.progress},
		"/v1/pass":     {http.MethodPost: s.pass},
		"/v1/key":      {http.MethodPost: s.key},
		"/v1/changes":  {http.MethodGet: s.changes},
	}
	return s
}

// Serve answers requests on l until ctx ends, then closes l, waits a
// little for the requests being answered and returns nil.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.o.ReadTimeout,
		// No ReadTimeout or WriteTimeout: long polls and answers from the
		// head-end take longer; handlers bound their body reads instead.
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 16 << 10,
		BaseContext:    func(net.Listener) context.Context { return ctx },
		ErrorLog:       slog.NewLogLogger(s.o.Log.Handler(), slog.LevelDebug),
	}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if hs.Shutdown(sctx) != nil {
			hs.Close()
		}
	})
	defer stop()
	err := hs.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("local API: %w", err)
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	methods, ok := s.routes[r.URL.Path]
	if !ok {
		s.fail(w, r, fmt.Errorf("%s: %w", r.URL.Path, ErrNotFound))
		return
	}
	h, ok := methods[r.Method]
	if !ok {
		for m := range methods {
			w.Header().Add("Allow", m)
		}
		s.fail(w, r, fmt.Errorf("%s %s: %w", r.Method, r.URL.Path, ErrMethod))
		return
	}
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		s.fail(w, r, fmt.Errorf("%d requests being answered: %w", cap(s.slots), ErrBusy))
		return
	}
	if err := h(w, r); err != nil {
		s.fail(w, r, err)
	}
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code, status := classify(err)
	if r.Context().Err() != nil && errors.Is(err, r.Context().Err()) {
		return // the client went away: nobody reads the answer
	}
	lvl := slog.LevelDebug
	if status >= 500 && code != "busy" && code != "not_connected" && code != "timeout" {
		lvl = slog.LevelWarn
	}
	s.o.Log.Log(r.Context(), lvl, "local API request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	writeJSON(w, status, errorResponse{Error: err.Error(), Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(errorResponse{Error: "encode answer: " + err.Error(), Code: "internal"})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// decode reads a request body of at most MaxBody bytes within the read
// timeout, as exactly one JSON value of v's type with no unknown fields.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) error {
	rc := http.NewResponseController(w)
	// Not supported by a test recorder: the timeout is then the caller's.
	if rc.SetReadDeadline(time.Now().Add(s.o.ReadTimeout)) == nil {
		defer rc.SetReadDeadline(time.Time{})
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return fmt.Errorf("body over %d bytes: %w", MaxBody, ErrTooLarge)
	case err != nil:
		// What is left of the body must not be read as the next request,
		// nor waited for before answering.
		w.Header().Set("Connection", "close")
		return fmt.Errorf("read body: %w: %w", ErrBadRequest, err)
	}
	return decodeBody(b, v)
}

// decodeBody parses exactly one JSON value into v, refusing unknown
// fields and trailing data.
func decodeBody(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return fmt.Errorf("empty body: %w", ErrBadRequest)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("body: %w: %w", ErrBadRequest, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("body: data after the JSON value: %w", ErrBadRequest)
	}
	return nil
}

// checkTitles checks a list of titles from the player: at most
// api.MaxTitles, none zero, none twice.
func checkTitles(ids []media.ID) error {
	if len(ids) > api.MaxTitles {
		return fmt.Errorf("%d titles, at most %d: %w", len(ids), api.MaxTitles, ErrBadRequest)
	}
	seen := make(map[media.ID]bool, len(ids))
	for _, id := range ids {
		if id == (media.ID{}) {
			return fmt.Errorf("zero title ID: %w", ErrBadRequest)
		}
		if seen[id] {
			return fmt.Errorf("title %s listed twice: %w", id, ErrBadRequest)
		}
		seen[id] = true
	}
	return nil
}

// checkCode checks an activation code as the viewer typed it: printable
// ASCII, as every code the head-end makes is (the JSON decoder turns
// invalid UTF-8 into U+FFFD, which this refuses too).
func checkCode(code string) error {
	if code == "" || len(code) > api.MaxActivateCode {
		return fmt.Errorf("activation code of %d bytes, want 1 to %d: %w", len(code), api.MaxActivateCode, ErrBadRequest)
	}
	for _, r := range code {
		if r < 0x20 || r > 0x7e {
			return fmt.Errorf("activation code with %q: only printable ASCII: %w", r, ErrBadRequest)
		}
	}
	return nil
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) error {
	st, err := s.b.Status(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *Server) activate(w http.ResponseWriter, r *http.Request) error {
	var req activateRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	if err := checkCode(req.Code); err != nil {
		return err
	}
	if err := s.b.Activate(r.Context(), req.Code); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) catalog(w http.ResponseWriter, r *http.Request) error {
	items, err := s.b.Catalog(r.Context())
	if err != nil {
		return err
	}
	if items == nil {
		items = []api.CatalogItem{}
	}
	writeJSON(w, http.StatusOK, catalogResponse{Items: items})
	return nil
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) error {
	pl, err := s.b.List(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, normalList(pl))
	return nil
}

func (s *Server) setList(w http.ResponseWriter, r *http.Request) error {
	var req titlesRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	if err := checkTitles(req.Titles); err != nil {
		return err
	}
	pl, err := s.b.SetList(r.Context(), req.Titles)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, normalList(pl))
	return nil
}

// normalList writes an empty list as [] rather than null.
func normalList(pl api.PriorityList) api.PriorityList {
	if pl.Titles == nil {
		pl.Titles = []media.ID{}
	}
	return pl
}

func (s *Server) progress(w http.ResponseWriter, r *http.Request) error {
	var req titlesRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	if err := checkTitles(req.Titles); err != nil {
		return err
	}
	ps, err := s.b.Progress(r.Context(), req.Titles)
	if err != nil {
		return err
	}
	out := progressResponse{Titles: make([]titleProgress, 0, len(req.Titles))}
	for _, id := range req.Titles {
		out.Titles = append(out.Titles, titleProgress{Title: id, Progress: ps[id]})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// waitErr turns the end of an answer's wait into ErrTimeout.
func waitErr(ctx context.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return err
}

func (s *Server) pass(w http.ResponseWriter, r *http.Request) error {
	var req api.PassRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if req.Title == (media.ID{}) {
		return fmt.Errorf("pass request without a title: %w", ErrBadRequest)
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.o.AnswerTimeout)
	defer cancel()
	resp, err := s.b.Pass(ctx, req)
	if err != nil {
		return waitErr(ctx, err)
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (s *Server) key(w http.ResponseWriter, r *http.Request) error {
	var req keyRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	if err := (api.KeyRequest{Pass: req.Pass}).Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.o.AnswerTimeout)
	defer cancel()
	resp, err := s.b.Key(ctx, req.Pass)
	if err != nil {
		return waitErr(ctx, err)
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// errPollOver ends a long poll that saw no change.
var errPollOver = errors.New("poll time over")

func (s *Server) changes(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	since, err := strconv.ParseUint(q.Get("since"), 10, 64)
	if err != nil || len(q) != 1 || len(q["since"]) != 1 {
		return fmt.Errorf("want ?since=N with N a change number: %w", ErrBadRequest)
	}
	ctx, cancel := context.WithTimeoutCause(r.Context(), s.o.PollWait, errPollOver)
	defer cancel()
	n, err := s.b.Changes(ctx, since)
	if err != nil {
		if !errors.Is(context.Cause(ctx), errPollOver) || r.Context().Err() != nil {
			return err
		}
		n = since // nothing changed: the client asks again
	}
	writeJSON(w, http.StatusOK, changesResponse{Change: n})
	return nil
}

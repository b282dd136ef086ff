// Package admin is the head-end's operator API: HTTP with JSON bodies, on
// an address the operator keeps private (loopback by default), behind a
// bearer token kept in the head-end's data folder. The headend command's
// operator subcommands are its client (Client), and so are tests.
//
//	POST /v1/codes                  {"account": A} or {"server": true} → {"code": C}
//	POST /v1/titles                 {"manifest": <signed manifest, base64>, "publish_at": T} → {"title": ID}
//	PUT  /v1/boxes/{id}/list        {"titles": [ID...], "version": N} (0: the next)
//	GET  /v1/boxes/{id}             scheduler.BoxStatus
//	GET  /v1/boxes/{id}/transfers   [schedstore.Transfer...], newest first (?limit=N, default 100)
//	GET  /v1/status                 scheduler.Snapshot
//	GET  /metrics                   Prometheus text format (no token)
//	GET  /healthz                   "ok" (no token)
//
// Errors are answered with a status code and {"error": text}. A title is
// accepted only with a manifest signed by one of the operator's media keys,
// so nothing unverified reaches the scheduler.
package admin

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/headend/scheduler"
	"github.com/boxswarm/boxswarm/media"
)

// Scheduler is what the API needs of the scheduler.
type Scheduler interface {
	AddActivationCode(ctx context.Context, code, account string) error
	AddServerCode(ctx context.Context, code string) error
	AddTitle(ctx context.Context, t schedstore.Title) error
	SetPriorityList(ctx context.Context, box api.BoxID, titles []media.ID, version uint64) error
	Box(ctx context.Context, box api.BoxID) (scheduler.BoxStatus, error)
	Transfers(ctx context.Context, box api.BoxID, limit int) ([]schedstore.Transfer, error)
	Inspect(ctx context.Context, fn func(scheduler.Snapshot)) error
}

// Config configures the API's handler.
type Config struct {
	Scheduler Scheduler
	Token     string              // required on every /v1 call
	MediaKeys []ed25519.PublicKey // manifests must be signed by one of these
	Metrics   http.Handler        // served on /metrics, if set
	Log       *slog.Logger
}

// maxBody bounds request bodies: a manifest of a long title is the largest.
const maxBody = 64 << 20

// Handler returns the API.
func Handler(cfg Config) (http.Handler, error) {
	if cfg.Scheduler == nil || len(cfg.Token) < 16 || len(cfg.MediaKeys) == 0 {
		return nil, errors.New("admin: a scheduler, a token of 16 characters or more and a media key are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	a := &server{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/codes", a.auth(a.addCode))
	mux.HandleFunc("POST /v1/titles", a.auth(a.addTitle))
	mux.HandleFunc("PUT /v1/boxes/{id}/list", a.auth(a.setList))
	mux.HandleFunc("GET /v1/boxes/{id}", a.auth(a.box))
	mux.HandleFunc("GET /v1/boxes/{id}/transfers", a.auth(a.transfers))
	mux.HandleFunc("GET /v1/status", a.auth(a.status))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics)
	}
	return mux, nil
}

type server struct{ cfg Config }

// httpError is an error with the status code it is answered with.
type httpError struct {
	code int
	err  error
}

func (e httpError) Error() string { return e.err.Error() }
func (e httpError) Unwrap() error { return e.err }

func badRequest(format string, args ...any) error {
	return httpError{http.StatusBadRequest, fmt.Errorf(format, args...)}
}

func (a *server) auth(fn func(*http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		got, ok := bearer(r)
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(a.cfg.Token)) != 1 {
			a.cfg.Log.Info("admin call refused: bad token", "path", r.URL.Path, "remote", r.RemoteAddr)
			reply(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token"})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		v, err := fn(r)
		if err != nil {
			code := http.StatusInternalServerError
			var he httpError
			var mbe *http.MaxBytesError
			switch {
			case errors.As(err, &he):
				code = he.code
			case errors.As(err, &mbe):
				code = http.StatusRequestEntityTooLarge
			case errors.Is(err, scheduler.ErrUnknownBox), errors.Is(err, schedstore.ErrNotFound):
				code = http.StatusNotFound
			case errors.Is(err, scheduler.ErrUnknownTitle), errors.Is(err, scheduler.ErrStaleList):
				code = http.StatusConflict
			}
			a.cfg.Log.Info("admin call failed", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
			reply(w, code, map[string]string{"error": err.Error()})
			return
		}
		a.cfg.Log.Info("admin call", "method", r.Method, "path", r.URL.Path)
		reply(w, http.StatusOK, v)
	}
}

func bearer(r *http.Request) (string, bool) {
	const prefix = "Bearer "
	h := r.Header.Get("Authorization")
	if len(h) <= len(prefix) || h[:len(prefix)] != prefix {
		return "", false
	}
	return h[len(prefix):], true
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func decode(r *http.Request, v any) error {
	d := json.NewDecoder(r.Body)
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return badRequest("request body: %v", err)
	}
	return nil
}

func boxID(r *http.Request) (api.BoxID, error) {
	var id api.BoxID
	if err := id.UnmarshalText([]byte(r.PathValue("id"))); err != nil {
		return id, badRequest("box %q: %v", r.PathValue("id"), err)
	}
	return id, nil
}

// CodeRequest asks for an activation code.
type CodeRequest struct {
	Account string `json:"account,omitempty"`
	Server  bool   `json:"server,omitempty"`
}

// CodeReply carries a new activation code.
type CodeReply struct {
	Code string `json:"code"`
}

func (a *server) addCode(r *http.Request) (any, error) {
	var req CodeRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.Server == (req.Account != "") {
		return nil, badRequest("give either an account or server: true")
	}
	code := NewCode()
	var err error
	if req.Server {
		err = a.cfg.Scheduler.AddServerCode(r.Context(), code)
	} else {
		err = a.cfg.Scheduler.AddActivationCode(r.Context(), code, req.Account)
	}
	if err != nil {
		return nil, err
	}
	return CodeReply{Code: code}, nil
}

// NewCode returns a random activation code: 80 bits in five groups of
// four letters and digits, easy to read out over the phone.
func NewCode() string {
	var b [10]byte
	rand.Read(b[:])
	s := base32.StdEncoding.EncodeToString(b[:])
	return s[0:4] + "-" + s[4:8] + "-" + s[8:12] + "-" + s[12:16]
}

// TitleRequest adds a title.
type TitleRequest struct {
	Manifest  []byte    `json:"manifest"` // the signed manifest file
	PublishAt time.Time `json:"publish_at"`
}

// TitleReply names the title added.
type TitleReply struct {
	Title media.ID `json:"title"`
}

func (a *server) addTitle(r *http.Request) (any, error) {
	var req TitleRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.PublishAt.IsZero() {
		return nil, badRequest("publish_at is required")
	}
	m, err := media.Verify(req.Manifest, a.cfg.MediaKeys...)
	if err != nil {
		return nil, badRequest("manifest: %v", err)
	}
	t := schedstore.Title{ID: m.ID, Pieces: m.NumPieces(), PieceSize: int(m.PieceSize), PayloadSize: int64(m.PayloadSize),
		PayloadHash: m.PayloadHash, PublishAt: req.PublishAt}
	if err := a.cfg.Scheduler.AddTitle(r.Context(), t); err != nil {
		return nil, err
	}
	return TitleReply{Title: m.ID}, nil
}

// ListRequest replaces a box's priority list.
type ListRequest struct {
	Titles  []media.ID `json:"titles"`
	Version uint64     `json:"version,omitempty"`
}

func (a *server) setList(r *http.Request) (any, error) {
	id, err := boxID(r)
	if err != nil {
		return nil, err
	}
	var req ListRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if len(req.Titles) > api.MaxTitles {
		return nil, badRequest("%d titles: a list holds at most %d", len(req.Titles), api.MaxTitles)
	}
	return struct{}{}, a.cfg.Scheduler.SetPriorityList(r.Context(), id, req.Titles, req.Version)
}

func (a *server) box(r *http.Request) (any, error) {
	id, err := boxID(r)
	if err != nil {
		return nil, err
	}
	return a.cfg.Scheduler.Box(r.Context(), id)
}

func (a *server) transfers(r *http.Request) (any, error) {
	id, err := boxID(r)
	if err != nil {
		return nil, err
	}
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > 10000 {
			return nil, badRequest("limit %q: want 1 to 10000", s)
		}
	}
	ts, err := a.cfg.Scheduler.Transfers(r.Context(), id, limit)
	if ts == nil {
		ts = []schedstore.Transfer{}
	}
	return ts, err
}

func (a *server) status(r *http.Request) (any, error) {
	var snap scheduler.Snapshot
	err := a.cfg.Scheduler.Inspect(r.Context(), func(s scheduler.Snapshot) { snap = s })
	return snap, err
}

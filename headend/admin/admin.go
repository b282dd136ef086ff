// Package admin is the head-end's operator API: HTTP with JSON bodies, on
// an address the operator keeps private (loopback by default), behind a
// bearer token kept in the head-end's data folder. The headend command's
// operator subcommands are its client (Client), and so are tests.
//
//	POST /v1/codes                  {"account": A} or {"server": true} → {"code": C}
//	POST /v1/titles                 {"manifest": <signed manifest, base64>, "publish_at": T, "meta": TitleMeta} → {"title": ID}
//	PUT  /v1/titles/{id}/key        {"wrapped": <content key wrapped to the vault's ingest key, base64>} → {"title": ID}
//	PUT  /v1/packages/{id}          tar stream of the package folder (see WritePackage) → PackageReply
//	PUT  /v1/catalogs/{id}          {"vendor": V, "name": N}
//	GET  /v1/vault/key              VaultKeyReply: the key vault's ingest key
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
//
// Importing a title (tools/mediaimport -headend) takes three steps, in
// this order: its content key goes to the vault, wrapped to the vault's
// ingest key so it is never in the clear on the wire; its package goes to
// a media server, checked piece by piece on the way; then POST
// /v1/titles with its metadata publishes it. A title with metadata is
// refused (409) until the vault holds its key and a media server holds
// every piece, where Config has a vault and packages, so a failed import
// never leaves a title on sale that cannot be delivered or played; a key
// without a title is harmless, and every step may be repeated. The title
// goes to the scheduler first, then to customer management: the other way
// round, a viewer could put a title on a list the scheduler does not know
// yet.
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
	"os"
	"strconv"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/customers"
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

	// The import wiring, each optional (501 without it).

	// Vault takes titles' content keys (GET /v1/vault/key, PUT
	// /v1/titles/{id}/key).
	Vault Vault
	// Packages places uploaded packages (PUT /v1/packages/{id}).
	Packages Packages
	// Staging is where uploads are checked before Packages takes them: a
	// folder of the API's own (what is left in it by a crash is removed at
	// start), best on the media store's file system. Default:
	// os.TempDir().
	Staging string
	// MaxPackageSize bounds an uploaded payload in bytes
	// (DefaultMaxPackageSize if zero).
	MaxPackageSize int64
	// Catalog takes titles' metadata (POST /v1/titles with "meta", PUT
	// /v1/catalogs/{id}).
	Catalog Catalog
}

// maxBody bounds request bodies: a manifest of a long title is the largest.
// Package uploads have their own bound (Config.MaxPackageSize).
const maxBody = 64 << 20

// Handler returns the API.
func Handler(cfg Config) (http.Handler, error) {
	if cfg.Scheduler == nil || len(cfg.Token) < 16 || len(cfg.MediaKeys) == 0 {
		return nil, errors.New("admin: a scheduler, a token of 16 characters or more and a media key are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	a := &server{cfg: cfg, maxPackage: cfg.MaxPackageSize, uploads: make(chan struct{}, maxUploads)}
	if a.maxPackage <= 0 {
		a.maxPackage = DefaultMaxPackageSize
	}
	// No package is larger than the format allows.
	a.maxPackage = min(a.maxPackage, media.MaxPieces*media.MaxPieceSize)
	if cfg.Packages != nil {
		if err := a.initStaging(); err != nil {
			return nil, err
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/codes", a.auth(maxBody, a.addCode))
	mux.HandleFunc("POST /v1/titles", a.auth(maxBody, a.addTitle))
	mux.HandleFunc("PUT /v1/titles/{id}/key", a.auth(64<<10, a.putKey))
	mux.HandleFunc("PUT /v1/packages/{id}", a.auth(maxManifest+a.maxPackage+1<<20, a.putPackage))
	mux.HandleFunc("PUT /v1/catalogs/{id}", a.auth(64<<10, a.putCatalog))
	mux.HandleFunc("GET /v1/vault/key", a.auth(0, a.vaultKey))
	mux.HandleFunc("PUT /v1/boxes/{id}/list", a.auth(maxBody, a.setList))
	mux.HandleFunc("GET /v1/boxes/{id}", a.auth(0, a.box))
	mux.HandleFunc("GET /v1/boxes/{id}/transfers", a.auth(0, a.transfers))
	mux.HandleFunc("GET /v1/status", a.auth(0, a.status))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics)
	}
	return mux, nil
}

type server struct {
	cfg        Config
	staging    string
	maxPackage int64
	uploads    chan struct{} // a token per upload in progress
}

func (a *server) initStaging() error {
	if a.cfg.Staging == "" {
		a.staging = os.TempDir() // shared: no cleaning up after others
		return nil
	}
	if err := os.MkdirAll(a.cfg.Staging, 0o700); err != nil {
		return fmt.Errorf("admin: package staging: %w", err)
	}
	if err := cleanStaging(a.cfg.Staging); err != nil {
		return fmt.Errorf("admin: package staging: %w", err)
	}
	a.staging = a.cfg.Staging
	return nil
}

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

// auth checks the token, bounds the request body to limit bytes and
// answers with what fn returns.
func (a *server) auth(limit int64, fn func(*http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		got, ok := bearer(r)
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(a.cfg.Token)) != 1 {
			a.cfg.Log.Info("admin call refused: bad token", "path", r.URL.Path, "remote", r.RemoteAddr)
			reply(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token"})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
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

// TitleRequest adds a title: to the scheduler, and with Meta to customer
// management's catalog too.
type TitleRequest struct {
	Manifest  []byte     `json:"manifest"` // the signed manifest file
	PublishAt time.Time  `json:"publish_at"`
	Meta      *TitleMeta `json:"meta,omitempty"`
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
	if err := customers.ValidTime(req.PublishAt); err != nil {
		return nil, badRequest("publish_at %s: %v", req.PublishAt.Format(time.RFC3339), err)
	}
	m, err := media.Verify(req.Manifest, a.cfg.MediaKeys...)
	if err != nil {
		return nil, badRequest("manifest: %v", err)
	}
	if req.Meta != nil {
		if a.cfg.Catalog == nil {
			return nil, notConfigured("customer management (title metadata)")
		}
		if err := req.Meta.Check(); err != nil {
			return nil, badRequest("meta: %v", err)
		}
		if err := a.publishable(r.Context(), m.ID); err != nil {
			return nil, err
		}
	}
	t := schedstore.Title{ID: m.ID, Pieces: m.NumPieces(), PieceSize: int(m.PieceSize), PayloadSize: int64(m.PayloadSize),
		PayloadHash: m.PayloadHash, PublishAt: req.PublishAt}
	if err := a.cfg.Scheduler.AddTitle(r.Context(), t); err != nil {
		return nil, err
	}
	if req.Meta != nil {
		if err := a.cfg.Catalog.PutTitle(r.Context(), req.Meta.Title(m.ID, req.PublishAt)); err != nil {
			return nil, fmt.Errorf("the scheduler has title %s, but customer management refused it: %w", m.ID, catalogError(err))
		}
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

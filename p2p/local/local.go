// Package local is the transfer daemon's API for the player daemon on the
// same box: HTTP/1.1 with JSON bodies over a Unix socket. The transfer
// daemon (Server, over a Backend) owns the head-end session, the media
// store and the box's replicated state; the player daemon (Client) owns
// keys, playback and the TV, and asks through this API for what only the
// transfer daemon can reach: activation, the catalog, the priority list,
// download progress, media passes and wrapped content keys.
//
// Endpoints (all bodies JSON; media IDs and box IDs as the head-end
// protocol writes them, package api):
//
//	GET  /v1/status                  Status
//	POST /v1/activate   {"code"}     204, or an error carrying the head-end's reason
//	GET  /v1/catalog                 {"items": [api.CatalogItem]} published now, by name
//	GET  /v1/list                    api.PriorityList
//	PUT  /v1/list       {"titles"}   api.PriorityList as stored and sent
//	POST /v1/progress   {"titles"}   {"titles": [{"title", "complete", "have", "pieces"}]}
//	POST /v1/pass       api.PassRequest   api.PassResponse
//	POST /v1/key        {"pass"}     api.KeyResponse
//	GET  /v1/changes?since=N         {"change": M}: M != N once something changed
//
// Every error is {"error": message, "code": code} with an HTTP status
// that goes with the code (see Error). A refusal by the head-end that is
// an answer (a price to confirm, a key the vault will not release) is not
// an error: it is a PassResponse or KeyResponse with a Reason.
//
// Limits: request bodies of at most MaxBody bytes, headers and bodies
// read within ServerOptions.ReadTimeout, at most ServerOptions.MaxInFlight
// requests at once. The socket is 0600 in a folder only its owner may
// enter (Listen): whoever can connect acts for the box, so both daemons
// run as the same user.
//
// Try it with curl:
//
//	curl --unix-socket /run/boxswarm/transferd.sock http://box/v1/status
package local

import (
	"errors"
	"net/http"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
)

// MaxBody bounds a request body. The largest legitimate one is a list or
// progress request naming api.MaxTitles titles (about 300 KiB as JSON
// arrays of bytes).
const MaxBody = 512 << 10

// maxResponse bounds what the client reads of an answer: a catalog of
// tens of thousands of titles without their manifests.
const maxResponse = 64 << 20

// Status is the box's state as the TV shows it.
type Status struct {
	Box       api.BoxID `json:"box"` // zero until activated
	Activated bool      `json:"activated"`
	// NeedsCode: not activated and no code given: the TV must ask the
	// viewer, then call Activate.
	NeedsCode bool `json:"needs_code"`
	Connected bool `json:"connected"` // the head-end session is up
	// Error is the last activation or connection error, for the TV;
	// empty once activation succeeds or the session comes up.
	Error string `json:"error,omitempty"`
	// StoreSocket is where the media store is served for the player's
	// reads (media/store.Dial); empty if the daemon does not serve it.
	StoreSocket string `json:"store_socket,omitempty"`
}

// Progress is what the box's store holds of one title.
type Progress struct {
	Complete bool `json:"complete"`
	Have     int  `json:"have"`   // pieces stored and verified
	Pieces   int  `json:"pieces"` // 0 if the box has no manifest yet
}

// Request and response bodies.
type (
	activateRequest struct {
		Code string `json:"code"`
	}
	titlesRequest struct {
		Titles []media.ID `json:"titles"`
	}
	catalogResponse struct {
		Items []api.CatalogItem `json:"items"`
	}
	titleProgress struct {
		Title media.ID `json:"title"`
		Progress
	}
	progressResponse struct {
		Titles []titleProgress `json:"titles"`
	}
	keyRequest struct {
		Pass []byte `json:"pass"`
	}
	changesResponse struct {
		Change uint64 `json:"change"`
	}
	errorResponse struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
)

// Errors a Backend wraps to choose the answer's status, and that the
// Client's errors match with errors.Is.
var (
	// ErrBadRequest: the request is malformed or its values are out of
	// range (HTTP 400).
	ErrBadRequest = errors.New("bad request")
	// ErrTooLarge: the body exceeds MaxBody (413).
	ErrTooLarge = errors.New("request too large")
	// ErrNotFound: no such endpoint (404).
	ErrNotFound = errors.New("no such endpoint")
	// ErrMethod: the endpoint does not take that method (405).
	ErrMethod = errors.New("method not allowed")
	// ErrNotActivated: the box has no device certificate yet (409).
	ErrNotActivated = errors.New("box not activated")
	// ErrActivated: Activate on a box that is activated, or that is being
	// activated with -activate (409).
	ErrActivated = errors.New("box already activated")
	// ErrRefused: the head-end refused the activation code; the message
	// carries its reason (403).
	ErrRefused = errors.New("refused by the head-end")
	// ErrNotConnected: the head-end cannot be reached now (503).
	ErrNotConnected = errors.New("head-end not connected")
	// ErrTimeout: no answer from the head-end in time (504).
	ErrTimeout = errors.New("no answer from the head-end in time")
	// ErrBusy: too many requests at once (503).
	ErrBusy = errors.New("transfer daemon busy")
	// ErrInternal: anything else (500).
	ErrInternal = errors.New("internal error")
)

// kinds lists each error's code and status, in the order Server tests
// them.
var kinds = []struct {
	err    error
	code   string
	status int
}{
	{ErrBadRequest, "bad_request", http.StatusBadRequest},
	{ErrTooLarge, "too_large", http.StatusRequestEntityTooLarge},
	{ErrNotFound, "not_found", http.StatusNotFound},
	{ErrMethod, "method", http.StatusMethodNotAllowed},
	{ErrNotActivated, "not_activated", http.StatusConflict},
	{ErrActivated, "activated", http.StatusConflict},
	{ErrRefused, "refused", http.StatusForbidden},
	{ErrNotConnected, "not_connected", http.StatusServiceUnavailable},
	{ErrTimeout, "timeout", http.StatusGatewayTimeout},
	{ErrBusy, "busy", http.StatusServiceUnavailable},
	{ErrInternal, "internal", http.StatusInternalServerError},
}

// Error is what the Client returns for an error answer. errors.Is matches
// it against the sentinel of its Code (ErrRefused for "refused"...).
type Error struct {
	Status  int    // HTTP status
	Code    string // "bad_request", "refused"... (see the Err variables)
	Message string // for logs and, for refusals and connection errors, the TV
}

func (e *Error) Error() string { return "transfer daemon: " + e.Message }

// Is reports whether target is the sentinel error of e's code.
func (e *Error) Is(target error) bool {
	for _, k := range kinds {
		if k.err == target {
			return k.code == e.Code
		}
	}
	return false
}

// classify returns the code and status for an error from a Backend.
func classify(err error) (code string, status int) {
	for _, k := range kinds {
		if errors.Is(err, k.err) {
			return k.code, k.status
		}
	}
	return "internal", http.StatusInternalServerError
}

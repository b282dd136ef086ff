package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
)

// Timeouts a Client applies when the caller's context has no deadline.
const (
	// DefaultCallTimeout bounds the quick calls.
	DefaultCallTimeout = 10 * time.Second
	// DefaultAnswerWait bounds Pass and Key: the daemon's own wait
	// (DefaultAnswerTimeout) and some.
	DefaultAnswerWait = DefaultAnswerTimeout + 5*time.Second
	// DefaultActivateWait bounds Activate, which waits for the head-end.
	DefaultActivateWait = 75 * time.Second
)

// Client talks to the transfer daemon's local API. Its methods are safe
// for concurrent use; a call that fails to connect (the daemon is not up
// yet) returns an error wrapping the dial error, and may simply be made
// again.
type Client struct {
	socket string
	hc     *http.Client

	mu          sync.Mutex
	storeSocket string
}

// Dial returns a client for the socket at path. It does not connect:
// each call does, reusing idle connections.
func Dial(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns:           4,
		IdleConnTimeout:        time.Minute,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 16 << 10,
	}
	return &Client{socket: socket, hc: &http.Client{Transport: tr}}
}

// Close releases the client's idle connections.
func (c *Client) Close() {
	c.hc.CloseIdleConnections()
}

// Status returns the box's state and remembers the store socket it names
// (StoreSocket).
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.call(ctx, DefaultCallTimeout, http.MethodGet, "/v1/status", nil, &st)
	if err == nil {
		c.mu.Lock()
		c.storeSocket = st.StoreSocket
		c.mu.Unlock()
	}
	return st, err
}

// StoreSocket returns where the daemon serves the media store for the
// player's reads (media/store.Dial), as the last successful Status said:
// "" before the first Status, or if the daemon serves no store.
func (c *Client) StoreSocket() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.storeSocket
}

// Activate gives the daemon the code the viewer typed, and returns once
// the head-end has answered. A refusal matches ErrRefused and its message
// carries the head-end's reason; ErrActivated if the box needs no code.
func (c *Client) Activate(ctx context.Context, code string) error {
	return c.call(ctx, DefaultActivateWait, http.MethodPost, "/v1/activate", activateRequest{Code: code}, nil)
}

// Catalog returns the catalog items published by now, sorted by name,
// without their manifests (the player reads those from the store).
func (c *Client) Catalog(ctx context.Context) ([]api.CatalogItem, error) {
	var resp catalogResponse
	err := c.call(ctx, DefaultCallTimeout, http.MethodGet, "/v1/catalog", nil, &resp)
	return resp.Items, err
}

// List returns the priority list the box holds.
func (c *Client) List(ctx context.Context) (api.PriorityList, error) {
	var pl api.PriorityList
	err := c.call(ctx, DefaultCallTimeout, http.MethodGet, "/v1/list", nil, &pl)
	return pl, err
}

// SetList replaces the priority list: the daemon gives it the version
// after the one it holds, stores it, and sends it to the head-end. It
// returns the list as stored.
func (c *Client) SetList(ctx context.Context, titles []media.ID) (api.PriorityList, error) {
	if titles == nil {
		titles = []media.ID{}
	}
	var pl api.PriorityList
	err := c.call(ctx, DefaultCallTimeout, http.MethodPut, "/v1/list", titlesRequest{Titles: titles}, &pl)
	return pl, err
}

// Progress returns what the store holds of each title; a title the store
// does not know has the zero Progress.
func (c *Client) Progress(ctx context.Context, titles []media.ID) (map[media.ID]Progress, error) {
	if titles == nil {
		titles = []media.ID{}
	}
	var resp progressResponse
	if err := c.call(ctx, DefaultCallTimeout, http.MethodPost, "/v1/progress", titlesRequest{Titles: titles}, &resp); err != nil {
		return nil, err
	}
	out := make(map[media.ID]Progress, len(resp.Titles))
	for _, t := range resp.Titles {
		out[t.Title] = t.Progress
	}
	return out, nil
}

// Pass asks the head-end for a media pass and waits for its answer (the
// daemon waits up to 30 s by default: ErrTimeout). A price to confirm or
// a refusal is an answer, with Reason set. Requests for the same title
// are sent and answered in turn, each with its own answer; while the
// head-end session is down the daemon refuses at once (ErrNotConnected)
// rather than let a confirmation go out later.
func (c *Client) Pass(ctx context.Context, req api.PassRequest) (api.PassResponse, error) {
	var resp api.PassResponse
	err := c.call(ctx, DefaultAnswerWait, http.MethodPost, "/v1/pass", req, &resp)
	return resp, err
}

// Key presents a media pass to the key vault and waits for the content
// key, wrapped to the box's identity key, or the vault's refusal (Reason).
// The daemon checks that the bytes are a media pass for this box
// (ErrBadRequest otherwise) and matches the answer by the pass's title,
// one request per title at a time.
func (c *Client) Key(ctx context.Context, pass []byte) (api.KeyResponse, error) {
	var resp api.KeyResponse
	err := c.call(ctx, DefaultAnswerWait, http.MethodPost, "/v1/key", keyRequest{Pass: pass}, &resp)
	return resp, err
}

// Changes blocks until the catalog, the list, the progress of a title or
// the status changed after change number since, or ctx ends, and returns
// the new change number. Start with 0, which returns at once; a number
// from before the daemon restarted also returns at once.
func (c *Client) Changes(ctx context.Context, since uint64) (uint64, error) {
	path := "/v1/changes?since=" + strconv.FormatUint(since, 10)
	for {
		var resp changesResponse
		if err := c.call(ctx, 0, http.MethodGet, path, nil, &resp); err != nil {
			return 0, err
		}
		if resp.Change != since {
			return resp.Change, nil
		}
	}
}

// call makes one request; with no deadline on ctx, def bounds it (0:
// none).
func (c *Client) call(ctx context.Context, def time.Duration, method, path string, in, out any) error {
	if _, ok := ctx.Deadline(); !ok && def > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, def)
		defer cancel()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("transfer daemon: %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, (&url.URL{Scheme: "http", Host: "transferd"}).String()+path, body)
	if err != nil {
		return fmt.Errorf("transfer daemon: %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("transfer daemon at %s: %s %s: %w", c.socket, method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return fmt.Errorf("transfer daemon: %s %s: read answer: %w", method, path, err)
	}
	if len(b) > maxResponse {
		return fmt.Errorf("transfer daemon: %s %s: answer over %d bytes", method, path, maxResponse)
	}
	if resp.StatusCode >= 300 {
		var e errorResponse
		if json.Unmarshal(b, &e) != nil || e.Code == "" {
			return &Error{Status: resp.StatusCode, Code: "internal", Message: fmt.Sprintf("%s %s: HTTP %d: %.200q", method, path, resp.StatusCode, b)}
		}
		return &Error{Status: resp.StatusCode, Code: e.Code, Message: e.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("transfer daemon: %s %s: answer: %w", method, path, err)
	}
	return nil
}

// IsUnavailable reports whether err says the daemon could not be reached
// at all (not running yet, or restarting), rather than that it answered.
func IsUnavailable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return false
	}
	var ne *net.OpError
	return errors.As(err, &ne)
}

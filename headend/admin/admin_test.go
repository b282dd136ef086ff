package admin

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/headend/scheduler"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/p2p/piece/piecetest"
)

// fakeScheduler records what the API asked of it.
type fakeScheduler struct {
	codes  map[string]string
	titles []schedstore.Title
	lists  map[api.BoxID][]media.ID
}

func (f *fakeScheduler) AddActivationCode(_ context.Context, code, account string) error {
	f.codes[code] = account
	return nil
}
func (f *fakeScheduler) AddServerCode(_ context.Context, code string) error {
	f.codes[code] = scheduler.ServerAccount
	return nil
}
func (f *fakeScheduler) AddTitle(_ context.Context, t schedstore.Title) error {
	f.titles = append(f.titles, t)
	return nil
}
func (f *fakeScheduler) SetPriorityList(_ context.Context, box api.BoxID, titles []media.ID, _ uint64) error {
	if box != piecetest.BoxID(1) {
		return scheduler.ErrUnknownBox
	}
	f.lists[box] = titles
	return nil
}
func (f *fakeScheduler) Box(_ context.Context, box api.BoxID) (scheduler.BoxStatus, error) {
	if box != piecetest.BoxID(1) {
		return scheduler.BoxStatus{}, scheduler.ErrUnknownBox
	}
	return scheduler.BoxStatus{ID: box, Online: true}, nil
}
func (f *fakeScheduler) Transfers(context.Context, api.BoxID, int) ([]schedstore.Transfer, error) {
	return nil, nil
}
func (f *fakeScheduler) Inspect(_ context.Context, fn func(scheduler.Snapshot)) error {
	fn(scheduler.Snapshot{Boxes: 7})
	return nil
}

const token = "0123456789abcdef0123456789abcdef"

func TestAPI(t *testing.T) {
	f := &fakeScheduler{codes: map[string]string{}, lists: map[api.BoxID][]media.ID{}}
	h, err := Handler(Config{Scheduler: f, Token: token, MediaKeys: []ed25519.PublicKey{piecetest.MediaPub}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := &Client{URL: srv.URL, Token: token}
	ctx := t.Context()
	title := piecetest.MakeTitle(t, t.TempDir(), 1<<20, 256<<10)

	code, err := c.NewCode(ctx, "alice")
	if err != nil || f.codes[code] != "alice" || len(code) != 19 {
		t.Errorf("code %q, %v; stored %v", code, err, f.codes)
	}
	if code, err := c.NewServerCode(ctx); err != nil || f.codes[code] != scheduler.ServerAccount {
		t.Errorf("server code %q, %v", code, err)
	}
	at := time.Date(2027, 1, 1, 20, 0, 0, 0, time.UTC)
	if id, err := c.AddTitle(ctx, title.Signed, at); err != nil || id != title.ID() || len(f.titles) != 1 ||
		f.titles[0].Pieces != title.Manifest.NumPieces() || f.titles[0].PayloadHash != title.PayloadHash() || !f.titles[0].PublishAt.Equal(at) {
		t.Errorf("title %v, %v; stored %+v", id, err, f.titles)
	}
	if err := c.SetList(ctx, piecetest.BoxID(1), []media.ID{title.ID()}, 0); err != nil || len(f.lists[piecetest.BoxID(1)]) != 1 {
		t.Errorf("list: %v", err)
	}
	if s, err := c.Status(ctx); err != nil || s.Boxes != 7 {
		t.Errorf("status %+v, %v", s, err)
	}

	// Refusals, each with its status and a message saying why.
	forged := piecetest.MakeTitle(t, t.TempDir(), 1<<20, 256<<10)
	forged.Signed = append([]byte(nil), forged.Signed...)
	forged.Signed[len(forged.Signed)-1] ^= 1
	for _, tc := range []struct {
		name   string
		call   func(c *Client) error
		status int
		say    string
	}{
		{"no token", func(c *Client) error { c.Token = ""; _, err := c.Status(ctx); return err }, 401, "token"},
		{"wrong token", func(c *Client) error { c.Token = strings.Repeat("x", 32); _, err := c.Status(ctx); return err }, 401, "token"},
		{"neither account nor server", func(c *Client) error { return c.call(ctx, "POST", "/v1/codes", CodeRequest{}, nil) }, 400, "either"},
		{"a manifest whose signature fails", func(c *Client) error { _, err := c.AddTitle(ctx, forged.Signed, at); return err }, 400, "manifest"},
		{"a manifest that is not one", func(c *Client) error { _, err := c.AddTitle(ctx, []byte("hello"), at); return err }, 400, "manifest"},
		{"no publish time", func(c *Client) error { _, err := c.AddTitle(ctx, title.Signed, time.Time{}); return err }, 400, "publish_at"},
		{"unknown field", func(c *Client) error {
			return c.call(ctx, "POST", "/v1/codes", map[string]any{"acount": "x"}, nil)
		}, 400, "unknown field"},
		{"unknown box", func(c *Client) error { _, err := c.Box(ctx, piecetest.BoxID(9)); return err }, 404, "unknown box"},
		{"malformed box ID", func(c *Client) error { return c.call(ctx, "GET", "/v1/boxes/xyz", nil, nil) }, 400, "box"},
		{"bad limit", func(c *Client) error {
			return c.call(ctx, "GET", "/v1/boxes/"+piecetest.BoxID(1).String()+"/transfers?limit=0", nil, nil)
		}, 400, "limit"},
	} {
		cc := *c
		err := tc.call(&cc)
		var e *Error
		if !errors.As(err, &e) || e.Status != tc.status || !strings.Contains(e.Message, tc.say) {
			t.Errorf("%s: %v, want HTTP %d saying %q", tc.name, err, tc.status, tc.say)
		}
	}
	if len(f.titles) != 1 {
		t.Errorf("a refused title reached the scheduler: %+v", f.titles)
	}
	// Health and metrics need no token.
	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("healthz: %v %v", resp, err)
	}
}

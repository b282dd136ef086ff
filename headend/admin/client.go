package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/headend/scheduler"
	"github.com/boxswarm/boxswarm/media"
)

// Client calls the API.
type Client struct {
	URL   string // http://host:port
	Token string
	HTTP  *http.Client // default: one with a 30 s timeout
}

// Error is an answer other than 200.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("head-end: %s (HTTP %d)", e.Message, e.Status) }

func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Content-Type", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("head-end admin API: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("head-end admin API: %s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = string(b)
		}
		return &Error{Status: resp.StatusCode, Message: e.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("head-end admin API: %s %s: answer: %w", method, path, err)
	}
	return nil
}

// NewCode asks for an activation code for a viewer's account.
func (c *Client) NewCode(ctx context.Context, account string) (string, error) {
	var r CodeReply
	err := c.call(ctx, "POST", "/v1/codes", CodeRequest{Account: account}, &r)
	return r.Code, err
}

// NewServerCode asks for a code that enrolls a media server.
func (c *Client) NewServerCode(ctx context.Context) (string, error) {
	var r CodeReply
	err := c.call(ctx, "POST", "/v1/codes", CodeRequest{Server: true}, &r)
	return r.Code, err
}

// AddTitle adds a title from its signed manifest file.
func (c *Client) AddTitle(ctx context.Context, signedManifest []byte, publishAt time.Time) (media.ID, error) {
	var r TitleReply
	err := c.call(ctx, "POST", "/v1/titles", TitleRequest{Manifest: signedManifest, PublishAt: publishAt}, &r)
	return r.Title, err
}

// SetList replaces a box's priority list; version 0 takes the next.
func (c *Client) SetList(ctx context.Context, box api.BoxID, titles []media.ID, version uint64) error {
	return c.call(ctx, "PUT", "/v1/boxes/"+box.String()+"/list", ListRequest{Titles: titles, Version: version}, nil)
}

// Box reports on a box.
func (c *Client) Box(ctx context.Context, box api.BoxID) (scheduler.BoxStatus, error) {
	var s scheduler.BoxStatus
	err := c.call(ctx, "GET", "/v1/boxes/"+box.String(), nil, &s)
	return s, err
}

// Transfers returns a box's most recent transfers, newest first.
func (c *Client) Transfers(ctx context.Context, box api.BoxID, limit int) ([]schedstore.Transfer, error) {
	var ts []schedstore.Transfer
	err := c.call(ctx, "GET", fmt.Sprintf("/v1/boxes/%s/transfers?limit=%d", box, limit), nil, &ts)
	return ts, err
}

// Status summarises the scheduler.
func (c *Client) Status(ctx context.Context) (scheduler.Snapshot, error) {
	var s scheduler.Snapshot
	err := c.call(ctx, "GET", "/v1/status", nil, &s)
	return s, err
}

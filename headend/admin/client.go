package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/headend/scheduler"
	"github.com/boxswarm/boxswarm/headend/vault"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/keywrap"
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
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return c.do(ctx, hc, method, path, "application/json", body, out)
}

func (c *Client) do(ctx context.Context, hc *http.Client, method, path, contentType string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Content-Type", contentType)
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

// PublishTitle adds a title to the scheduler and its metadata to customer
// management's catalog, both published at publishAt. The head-end refuses
// it (409) until the vault holds the title's key and a media server holds
// its package.
func (c *Client) PublishTitle(ctx context.Context, signedManifest []byte, publishAt time.Time, meta TitleMeta) (media.ID, error) {
	var r TitleReply
	err := c.call(ctx, "POST", "/v1/titles", TitleRequest{Manifest: signedManifest, PublishAt: publishAt, Meta: &meta}, &r)
	return r.Title, err
}

// PutCatalog adds or changes a catalog in customer management.
func (c *Client) PutCatalog(ctx context.Context, id, vendor, name string) error {
	if id == "" || strings.ContainsAny(id, "/?#%") {
		return fmt.Errorf("catalog ID %q: want a non-empty name without / ? # %%", id)
	}
	return c.call(ctx, "PUT", "/v1/catalogs/"+id, CatalogRequest{Vendor: vendor, Name: name}, nil)
}

// VaultKey returns the key vault's ingest key, checking that the box the
// head-end names is the one the vault derives from the key.
func (c *Client) VaultKey(ctx context.Context) (VaultKeyReply, error) {
	var r VaultKeyReply
	if err := c.call(ctx, "GET", "/v1/vault/key", nil, &r); err != nil {
		return r, err
	}
	if _, err := keywrap.X25519PublicKey(r.Key); err != nil {
		return r, fmt.Errorf("head-end admin API: the vault's ingest key: %w", err)
	}
	if r.Box != vault.IngestBox(r.Key) {
		return r, fmt.Errorf("head-end admin API: the vault's ingest box %s is not the one its key gives", r.Box)
	}
	if r.MaxLifetime <= 0 {
		return r, fmt.Errorf("head-end admin API: the vault's wrapped-key lifetime %s", time.Duration(r.MaxLifetime))
	}
	return r, nil
}

// PutWrappedKey registers a title's content key, wrapped to the vault's
// ingest key (see KeySink, which wraps it).
func (c *Client) PutWrappedKey(ctx context.Context, id media.ID, wrapped []byte) error {
	return c.call(ctx, "PUT", "/v1/titles/"+id.String()+"/key", KeyRequest{Wrapped: wrapped}, nil)
}

// PutPackage uploads the package folder dir, which holds title id, to
// the media server, streaming it (nothing is held in memory). Unless
// c.HTTP is set, the upload has no time limit but ctx's.
func (c *Client) PutPackage(ctx context.Context, id media.ID, dir string) (PackageReply, error) {
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{}
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(WritePackage(pw, dir)) }()
	defer pr.Close()
	var r PackageReply
	err := c.do(ctx, hc, "PUT", "/v1/packages/"+id.String(), "application/x-tar", pr, &r)
	return r, err
}

// KeySink is a keys.Sink that registers content keys with the head-end's
// key vault: each key is wrapped to the vault's ingest key (Vault, from
// Client.VaultKey) for its title, expiring in a few minutes, so it is in
// the clear nowhere but in the import tool's and the vault's memory.
type KeySink struct {
	Client *Client
	Vault  VaultKeyReply
	Now    func() time.Time // time.Now if nil
}

// ingestLifetime is how long a key wrapped for the vault stays good.
const ingestLifetime = 5 * time.Minute

// Put wraps the key and sends it.
func (s *KeySink) Put(ctx context.Context, id media.ID, key []byte) error {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	life := min(ingestLifetime, time.Duration(s.Vault.MaxLifetime))
	h := keywrap.Header{Title: id, Box: s.Vault.Box, Expires: now().Add(life)}
	wrapped, err := keywrap.Wrap(s.Vault.Key, h, key)
	if err != nil {
		return fmt.Errorf("content key for %s: %w", id, err)
	}
	if err := s.Client.PutWrappedKey(ctx, id, wrapped); err != nil {
		return fmt.Errorf("register the content key of %s with the vault: %w", id, err)
	}
	return nil
}

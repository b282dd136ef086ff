package admin

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/headend/vault"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/keywrap"
)

// The import wiring: what the import tool (tools/mediaimport) calls to
// register a title's key, place its package and publish it. Each part is
// optional in Config; without it its endpoints answer 501.

// Vault is what the API needs of the key vault (*vault.Vault).
type Vault interface {
	IngestKey() ed25519.PublicKey
	PutWrapped(ctx context.Context, id media.ID, wrapped []byte) error
	Has(ctx context.Context, id media.ID) (bool, error)
}

// Packages places uploaded packages on the media servers (the in-process
// media server's *daemon.Ingester does).
type Packages interface {
	// Place stores the package folder dir, which holds title id, already
	// verified, and returns once it is stored: dir is removed afterwards.
	Place(ctx context.Context, id media.ID, dir string) error
	// Holds reports whether a media server holds every piece of id.
	Holds(ctx context.Context, id media.ID) (bool, error)
}

// Catalog is what the API needs of customer management
// (*customers.Service).
type Catalog interface {
	PutCatalog(ctx context.Context, c customers.Catalog) error
	PutTitle(ctx context.Context, t customers.Title) error
}

// VaultKeyReply is the vault's ingest key: wrap content keys to Key with
// keywrap, naming Box as the box, the title, and an expiry at most
// MaxLifetime ahead.
type VaultKeyReply struct {
	Key         []byte    `json:"key"` // Ed25519 public key
	Box         api.BoxID `json:"box"`
	MaxLifetime Duration  `json:"max_lifetime"`
}

// KeyRequest registers a title's content key, wrapped to the vault's
// ingest key.
type KeyRequest struct {
	Wrapped []byte `json:"wrapped"`
}

// PackageReply says what was placed.
type PackageReply struct {
	Title  media.ID `json:"title"`
	Pieces int      `json:"pieces"`
	Bytes  uint64   `json:"bytes"`
}

// CatalogRequest adds or changes a catalog.
type CatalogRequest struct {
	Vendor string `json:"vendor"`
	Name   string `json:"name"`
}

func notConfigured(what string) error {
	return httpError{http.StatusNotImplemented, fmt.Errorf("%s is not configured on this head-end", what)}
}

func titleID(r *http.Request) (media.ID, error) {
	id, err := media.ParseID(r.PathValue("id"))
	if err != nil {
		return id, badRequest("title %q: %v", r.PathValue("id"), err)
	}
	return id, nil
}

func (a *server) vaultKey(*http.Request) (any, error) {
	if a.cfg.Vault == nil {
		return nil, notConfigured("the key vault")
	}
	pub := a.cfg.Vault.IngestKey()
	return VaultKeyReply{Key: pub, Box: vault.IngestBox(pub), MaxLifetime: Duration(vault.MaxIngestLifetime)}, nil
}

func (a *server) putKey(r *http.Request) (any, error) {
	if a.cfg.Vault == nil {
		return nil, notConfigured("the key vault")
	}
	id, err := titleID(r)
	if err != nil {
		return nil, err
	}
	var req KeyRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	err = a.cfg.Vault.PutWrapped(r.Context(), id, req.Wrapped)
	switch {
	case err == nil:
		return TitleReply{Title: id}, nil
	case errors.Is(err, vault.ErrKeyExists):
		return nil, httpError{http.StatusConflict, err}
	case errors.Is(err, keywrap.ErrMalformed), errors.Is(err, keywrap.ErrUnsupportedVersion),
		errors.Is(err, keywrap.ErrWrongBox), errors.Is(err, keywrap.ErrWrongTitle),
		errors.Is(err, keywrap.ErrExpired), errors.Is(err, keywrap.ErrAuth), errors.Is(err, vault.ErrIngestLifetime):
		return nil, httpError{http.StatusBadRequest, err}
	}
	return nil, err
}

// maxUploads bounds the uploads staged at once.
const maxUploads = 4

func (a *server) putPackage(r *http.Request) (any, error) {
	if a.cfg.Packages == nil {
		return nil, notConfigured("placing packages on a media server")
	}
	id, err := titleID(r)
	if err != nil {
		return nil, err
	}
	select {
	case a.uploads <- struct{}{}:
		defer func() { <-a.uploads }()
	default:
		return nil, httpError{http.StatusServiceUnavailable, fmt.Errorf("%d package uploads in progress already; try again later", maxUploads)}
	}
	dir, err := os.MkdirTemp(a.staging, stagingPrefix)
	if err != nil {
		return nil, fmt.Errorf("stage package %s: %w", id, err)
	}
	defer os.RemoveAll(dir)
	m, err := receivePackage(r.Body, id, a.cfg.MediaKeys, a.maxPackage, dir)
	if err != nil {
		return nil, err
	}
	if err := a.cfg.Packages.Place(r.Context(), id, dir); err != nil {
		return nil, httpError{http.StatusServiceUnavailable, fmt.Errorf("media server: %w", err)}
	}
	a.cfg.Log.Info("package placed", "title", id, "bytes", m.PayloadSize)
	return PackageReply{Title: id, Pieces: m.NumPieces(), Bytes: m.PayloadSize}, nil
}

func (a *server) putCatalog(r *http.Request) (any, error) {
	if a.cfg.Catalog == nil {
		return nil, notConfigured("customer management")
	}
	var req CatalogRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	c := customers.Catalog{ID: customers.CatalogID(r.PathValue("id")), Vendor: req.Vendor, Name: req.Name}
	if err := a.cfg.Catalog.PutCatalog(r.Context(), c); err != nil {
		return nil, catalogError(err)
	}
	return struct{}{}, nil
}

func catalogError(err error) error {
	switch {
	case errors.Is(err, customers.ErrInvalid):
		return httpError{http.StatusBadRequest, err}
	case errors.Is(err, customers.ErrUnknownCatalog):
		return httpError{http.StatusNotFound, fmt.Errorf("%w (add it with PUT /v1/catalogs/{id})", err)}
	}
	return err
}

// publishable checks that a title about to be sold has its key in the
// vault and its package on a media server, where those are configured.
func (a *server) publishable(ctx context.Context, id media.ID) error {
	if a.cfg.Vault != nil {
		ok, err := a.cfg.Vault.Has(ctx, id)
		if err != nil {
			return err
		}
		if !ok {
			return httpError{http.StatusConflict, fmt.Errorf("title %s has no content key in the vault: register it first (PUT /v1/titles/%s/key)", id, id)}
		}
	}
	if a.cfg.Packages != nil {
		ok, err := a.cfg.Packages.Holds(ctx, id)
		if err != nil {
			return httpError{http.StatusServiceUnavailable, fmt.Errorf("media server: %w", err)}
		}
		if !ok {
			return httpError{http.StatusConflict, fmt.Errorf("no media server holds title %s: upload it first (PUT /v1/packages/%s)", id, id)}
		}
	}
	return nil
}

const stagingPrefix = "boxswarm-upload-"

// cleanStaging removes what uploads cut short by a crash left behind.
func cleanStaging(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), stagingPrefix) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

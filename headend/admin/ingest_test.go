package admin

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/headend/vault"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/keywrap"
	"github.com/boxswarm/boxswarm/p2p/daemon"
	"github.com/boxswarm/boxswarm/p2p/piece/piecetest"
)

// What the head-end wires in.
var (
	_ Vault    = (*vault.Vault)(nil)
	_ Packages = (*daemon.Ingester)(nil)
	_ Catalog  = (*customers.Service)(nil)
)

// fakePackages keeps what it was given, read from the staging folder
// before the API removes it.
type fakePackages struct {
	mu     sync.Mutex
	placed map[media.ID][2][]byte // signed manifest, payload
	err    error
}

func (f *fakePackages) Place(_ context.Context, id media.ID, dir string) error {
	if f.err != nil {
		return f.err
	}
	pkg, err := media.OpenPackage(dir, piecetest.MediaPub)
	if err != nil {
		return err
	}
	defer pkg.Close()
	if pkg.Manifest.ID != id {
		return errors.New("wrong title")
	}
	payload, err := io.ReadAll(pkg.Payload)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.placed[id] = [2][]byte{pkg.Signed, payload}
	return nil
}

func (f *fakePackages) Holds(_ context.Context, id media.ID) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.placed[id]
	return ok, nil
}

// fakeCatalog checks catalogs as customer management does.
type fakeCatalog struct {
	mu       sync.Mutex
	catalogs map[customers.CatalogID]customers.Catalog
	titles   map[media.ID]customers.Title
}

func (f *fakeCatalog) PutCatalog(_ context.Context, c customers.Catalog) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.ID == "" || c.Name == "" {
		return customers.ErrInvalid
	}
	f.catalogs[c.ID] = c
	return nil
}

func (f *fakeCatalog) PutTitle(_ context.Context, t customers.Title) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.catalogs[t.Catalog]; !ok {
		return customers.ErrUnknownCatalog
	}
	f.titles[t.Media] = t
	return nil
}

// ingestEnv is the API with a real vault and fake media server, catalog
// and scheduler.
type ingestEnv struct {
	srv      *httptest.Server
	c        *Client
	vault    *vault.Vault
	sched    *fakeScheduler
	packages *fakePackages
	catalog  *fakeCatalog
	staging  string
}

// OpenTestVault opens a vault in dir for tests.
func openTestVault(t testing.TB, dir string) *vault.Vault {
	t.Helper()
	mk, err := vault.LoadOrCreateMasterKey(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mk.Close)
	passPub, _, _ := ed25519.GenerateKey(nil)
	v, err := vault.Open(context.Background(), vault.Config{
		Path: filepath.Join(dir, "vault.db"), MasterKey: mk, PassKeys: []ed25519.PublicKey{passPub},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func newIngestEnv(t *testing.T, maxPackage int64) *ingestEnv {
	e := &ingestEnv{
		vault:    openTestVault(t, t.TempDir()),
		sched:    &fakeScheduler{codes: map[string]string{}, lists: map[api.BoxID][]media.ID{}},
		packages: &fakePackages{placed: map[media.ID][2][]byte{}},
		catalog:  &fakeCatalog{catalogs: map[customers.CatalogID]customers.Catalog{}, titles: map[media.ID]customers.Title{}},
		staging:  filepath.Join(t.TempDir(), "staging"),
	}
	h, err := Handler(Config{Scheduler: e.sched, Token: token, MediaKeys: []ed25519.PublicKey{piecetest.MediaPub},
		Vault: e.vault, Packages: e.packages, Catalog: e.catalog, Staging: e.staging, MaxPackageSize: maxPackage})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	e.c = &Client{URL: e.srv.URL, Token: token}
	return e
}

// raw sends a request and returns the status and the error message.
func (e *ingestEnv) raw(t *testing.T, method, path, tok string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type entry struct {
	name string
	typ  byte
	data []byte
	size int64 // the header's size, if not len(data)
}

func makeTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, en := range entries {
		h := &tar.Header{Name: en.name, Typeflag: en.typ, Size: int64(len(en.data)), Mode: 0o644}
		if en.typ == 0 {
			h.Typeflag = tar.TypeReg
		}
		if en.typ == tar.TypeSymlink || en.typ == tar.TypeLink {
			h.Linkname, h.Size = "/etc/passwd", 0
		}
		if en.typ == tar.TypeDir {
			h.Size = 0
		}
		if en.size != 0 {
			h.Size = en.size
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(en.data)
	}
	tw.Flush()
	// No tw.Close for entries written short on purpose: the end marker is
	// added by hand.
	buf.Write(make([]byte, 1024))
	return buf.Bytes()
}

var meta = TitleMeta{
	Catalog: "studio-a", Name: "The <b>Film</b>", Year: 2024, Genre: "Drama", Actors: []string{"A. Actor", "B. Actor"},
	Directors: []string{"D. Rector"}, Producers: []string{"P. Roducer"}, Language: "en", Rating: "PG-13",
	Rent: Price{Amount: 399, Currency: "EUR"}, Buy: Price{Amount: 1299, Currency: "EUR"}, Window: Duration(48 * time.Hour),
	Regions: []string{"DE", "AT"},
}

// TestImportSteps walks the three steps of an import, with every step
// refused while the one before it is missing.
func TestImportSteps(t *testing.T) {
	e := newIngestEnv(t, 0)
	ctx := t.Context()
	ti := piecetest.MakeTitle(t, t.TempDir(), 5*(64<<10), 64<<10)
	id := ti.ID()
	at := time.Date(2027, 5, 1, 18, 0, 0, 0, time.UTC)

	if err := e.c.PutCatalog(ctx, "studio-a", "Studio A", "Studio A's films"); err != nil {
		t.Fatal(err)
	}
	wantStatus := func(what string, err error, status int, say string) {
		t.Helper()
		var ae *Error
		if !errors.As(err, &ae) || ae.Status != status || !strings.Contains(ae.Message, say) {
			t.Errorf("%s: %v, want HTTP %d saying %q", what, err, status, say)
		}
	}
	_, err := e.c.PublishTitle(ctx, ti.Signed, at, meta)
	wantStatus("publish before the key", err, 409, "no content key in the vault")

	vk, err := e.c.VaultKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, media.ContentKeySize)
	rand.Read(key)
	sink := &KeySink{Client: e.c, Vault: vk}
	if err := sink.Put(ctx, id, key); err != nil {
		t.Fatal(err)
	}
	if err := sink.Put(ctx, id, key); err != nil {
		t.Errorf("the same key again: %v", err)
	}
	_, err = e.c.PublishTitle(ctx, ti.Signed, at, meta)
	wantStatus("publish before the package", err, 409, "upload it first")
	if len(e.sched.titles) != 0 || len(e.catalog.titles) != 0 {
		t.Fatalf("a refused title was published: %+v %+v", e.sched.titles, e.catalog.titles)
	}

	r, err := e.c.PutPackage(ctx, id, ti.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Title != id || r.Pieces != ti.Manifest.NumPieces() || r.Bytes != ti.Manifest.PayloadSize {
		t.Errorf("package reply %+v", r)
	}
	if p := e.packages.placed[id]; !bytes.Equal(p[0], ti.Signed) || !bytes.Equal(p[1], ti.Payload) {
		t.Error("the media server did not get the package as it was")
	}
	// Again: a retry after a lost answer.
	if _, err := e.c.PutPackage(ctx, id, ti.Dir); err != nil {
		t.Errorf("the same package again: %v", err)
	}

	bad := meta
	bad.Regions = []string{"de"}
	_, err = e.c.PublishTitle(ctx, ti.Signed, at, bad)
	wantStatus("a bad region", err, 400, "region")
	bad = meta
	bad.Catalog = "nobody's"
	_, err = e.c.PublishTitle(ctx, ti.Signed, at, bad)
	wantStatus("an unknown catalog", err, 404, "catalog")

	if got, err := e.c.PublishTitle(ctx, ti.Signed, at, meta); err != nil || got != id {
		t.Fatalf("publish: %s, %v", got, err)
	}
	ct := e.catalog.titles[id]
	if ct.Name != meta.Name || ct.Catalog != "studio-a" || ct.Rent != (customers.Money{Amount: 399, Currency: "EUR"}) ||
		ct.Window != 48*time.Hour || !ct.PublishAt.Equal(at) || len(ct.Actors) != 2 || ct.Regions[1] != "AT" {
		t.Errorf("catalog title %+v", ct)
	}
	if n := len(e.sched.titles); n != 2 || e.sched.titles[n-1].ID != id || !e.sched.titles[n-1].PublishAt.Equal(at) {
		t.Errorf("scheduler titles %+v", e.sched.titles)
	}
	if ok, _ := e.vault.Has(ctx, id); !ok {
		t.Error("the vault does not hold the key")
	}
	if left, _ := os.ReadDir(e.staging); len(left) != 0 {
		t.Errorf("staging holds %d entries after the uploads", len(left))
	}
}

func TestKeyRefusals(t *testing.T) {
	e := newIngestEnv(t, 0)
	ctx := t.Context()
	vk, err := e.c.VaultKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := media.NewID()
	other, _ := media.NewID()
	key := make([]byte, media.ContentKeySize)
	rand.Read(key)
	wrap := func(h keywrap.Header, k []byte) []byte {
		if h.Box == (api.BoxID{}) {
			h.Box = vk.Box
		}
		if h.Expires.IsZero() {
			h.Expires = time.Now().Add(time.Minute)
		}
		w, err := keywrap.Wrap(vk.Key, h, k)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	if err := e.c.PutWrappedKey(ctx, id, wrap(keywrap.Header{Title: id}, key)); err != nil {
		t.Fatal(err)
	}
	key2 := bytes.Clone(key)
	key2[3] ^= 0x40
	tampered := wrap(keywrap.Header{Title: other}, key)
	tampered[len(tampered)-5] ^= 1
	for _, tc := range []struct {
		name    string
		id      media.ID
		wrapped []byte
		status  int
		say     string
	}{
		{"wrong title", other, wrap(keywrap.Header{Title: id}, key), 400, "another title"},
		{"a different key for a title that has one", id, wrap(keywrap.Header{Title: id}, key2), 409, "different content key"},
		{"expired", other, wrap(keywrap.Header{Title: other, Expires: time.Now().Add(-time.Minute)}, key), 400, "expired"},
		{"too long-lived", other, wrap(keywrap.Header{Title: other, Expires: time.Now().Add(24 * time.Hour)}, key), 400, "too long"},
		{"tampered", other, tampered, 400, "authentication"},
		{"to a box", other, wrap(keywrap.Header{Title: other, Box: api.BoxID{1}}, key), 400, "another box"},
		{"not a wrapped key", other, []byte("0123456789"), 400, "malformed"},
	} {
		err := e.c.PutWrappedKey(ctx, tc.id, tc.wrapped)
		var ae *Error
		if !errors.As(err, &ae) || ae.Status != tc.status || !strings.Contains(ae.Message, tc.say) {
			t.Errorf("%s: %v, want HTTP %d saying %q", tc.name, err, tc.status, tc.say)
		}
	}
	if ok, _ := e.vault.Has(ctx, other); ok {
		t.Error("a refused key was registered")
	}
	if st, msg := e.raw(t, "PUT", "/v1/titles/xyz/key", token, []byte(`{"wrapped":""}`)); st != 400 || !strings.Contains(msg, "title") {
		t.Errorf("malformed title ID: %d %s", st, msg)
	}
}

func TestPackageRefusals(t *testing.T) {
	e := newIngestEnv(t, 4*(64<<10))
	ti := piecetest.MakeTitle(t, t.TempDir(), 3*(64<<10), 64<<10)
	big := piecetest.MakeTitle(t, t.TempDir(), 6*(64<<10), 64<<10)
	id := ti.ID()
	path := "/v1/packages/" + id.String()
	mf, pl := media.ManifestFile, media.PayloadFile
	flip := func(b []byte, i int) []byte { b = bytes.Clone(b); b[i] ^= 1; return b }
	good := makeTar(t, entry{name: mf, data: ti.Signed}, entry{name: pl, data: ti.Payload})
	outside := filepath.Dir(e.staging)
	before, _ := os.ReadDir(outside)

	for _, tc := range []struct {
		name   string
		path   string
		tok    string
		body   []byte
		status int
		say    string
	}{
		{"bad token", path, "x" + token[1:], good, 401, "token"},
		{"no token", path, "", good, 401, "token"},
		{"malformed title ID", "/v1/packages/../" + id.String(), token, good, 404, ""},
		{"short title ID", "/v1/packages/abcd", token, good, 400, "title"},
		{"another title's ID", "/v1/packages/" + big.ID().String(), token, good, 400, "uploaded as"},
		{"tampered manifest", path, token, makeTar(t, entry{name: mf, data: flip(ti.Signed, len(ti.Signed)-1)}, entry{name: pl, data: ti.Payload}), 400, "manifest"},
		{"manifest signed by another key", path, token, makeTar(t, entry{name: mf, data: media.Sign(ti.Manifest, piecetest.OtherKey)}, entry{name: pl, data: ti.Payload}), 400, "manifest"},
		{"tampered piece", path, token, makeTar(t, entry{name: mf, data: ti.Signed}, entry{name: pl, data: flip(ti.Payload, 64<<10+7)}), 400, "piece 1 does not match"},
		{"payload shorter than the manifest's", path, token, makeTar(t, entry{name: mf, data: ti.Signed}, entry{name: pl, data: ti.Payload[:len(ti.Payload)-1]}), 400, "the manifest says"},
		{"stream cut short", path, token, good[:len(good)/2], 400, "piece"},
		{"empty body", path, token, nil, 400, "ends before"},
		{"not a tar", path, token, bytes.Repeat([]byte("hello "), 200), 400, "package"},
		{"parent path", path, token, makeTar(t, entry{name: "../" + mf, data: ti.Signed}, entry{name: pl, data: ti.Payload}), 400, "../manifest.bxm"},
		{"absolute path", path, token, makeTar(t, entry{name: "/tmp/" + mf, data: ti.Signed}), 400, "/tmp/manifest.bxm"},
		{"sub folder", path, token, makeTar(t, entry{name: id.String() + "/" + mf, data: ti.Signed}), 400, "entry"},
		{"folder entry", path, token, makeTar(t, entry{name: "x/", typ: tar.TypeDir}, entry{name: mf, data: ti.Signed}), 400, "entry"},
		{"manifest as a symlink", path, token, makeTar(t, entry{name: mf, typ: tar.TypeSymlink}), 400, "not a regular file"},
		{"payload as a hard link", path, token, makeTar(t, entry{name: mf, data: ti.Signed}, entry{name: pl, typ: tar.TypeLink}), 400, "not a regular file"},
		{"payload first", path, token, makeTar(t, entry{name: pl, data: ti.Payload}, entry{name: mf, data: ti.Signed}), 400, "payload.bxp"},
		{"manifest twice", path, token, makeTar(t, entry{name: mf, data: ti.Signed}, entry{name: mf, data: ti.Signed}), 400, "entry"},
		{"an extra entry", path, token, makeTar(t, entry{name: mf, data: ti.Signed}, entry{name: pl, data: ti.Payload}, entry{name: "../../evil", data: []byte("x")}), 400, "unexpected entry"},
		{"oversized manifest entry", path, token, makeTar(t, entry{name: mf, size: 1 << 40}), 413, "exceeds"},
		{"oversized payload", "/v1/packages/" + big.ID().String(), token, makeTar(t, entry{name: mf, data: big.Signed}, entry{name: pl, data: big.Payload}), 413, "limit"},
	} {
		status, msg := e.raw(t, "PUT", tc.path, tc.tok, tc.body)
		if status != tc.status || !strings.Contains(msg, tc.say) {
			t.Errorf("%s: HTTP %d %s, want %d saying %q", tc.name, status, strings.TrimSpace(msg), tc.status, tc.say)
		}
	}
	if len(e.packages.placed) != 0 {
		t.Errorf("a refused package reached the media server: %d", len(e.packages.placed))
	}
	if left, _ := os.ReadDir(e.staging); len(left) != 0 {
		t.Errorf("staging holds %d entries after refusals", len(left))
	}
	if after, _ := os.ReadDir(outside); len(after) != len(before) {
		t.Errorf("the folder around staging went from %d to %d entries", len(before), len(after))
	}
	// The good one goes through, and a failing media server is a 503.
	if status, msg := e.raw(t, "PUT", path, token, good); status != 200 {
		t.Errorf("good package: %d %s", status, msg)
	}
	e.packages.err = errors.New("disk on fire")
	if status, msg := e.raw(t, "PUT", path, token, good); status != 503 || !strings.Contains(msg, "disk on fire") {
		t.Errorf("failing media server: %d %s", status, msg)
	}
}

// TestNotConfigured: without the import wiring the endpoints say so.
func TestNotConfigured(t *testing.T) {
	f := &fakeScheduler{codes: map[string]string{}, lists: map[api.BoxID][]media.ID{}}
	h, err := Handler(Config{Scheduler: f, Token: token, MediaKeys: []ed25519.PublicKey{piecetest.MediaPub}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	e := &ingestEnv{srv: srv}
	ti := piecetest.MakeTitle(t, t.TempDir(), 64<<10, 64<<10)
	c := &Client{URL: srv.URL, Token: token}
	at := time.Now()
	for _, tc := range []struct {
		name string
		call func() error
		say  string
	}{
		{"vault key", func() error { _, err := c.VaultKey(t.Context()); return err }, "key vault"},
		{"put key", func() error { return c.PutWrappedKey(t.Context(), ti.ID(), []byte("x")) }, "key vault"},
		{"package", func() error { _, err := c.PutPackage(t.Context(), ti.ID(), ti.Dir); return err }, "media server"},
		{"catalog", func() error { return c.PutCatalog(t.Context(), "a", "b", "c") }, "customer management"},
		{"title with metadata", func() error { _, err := c.PublishTitle(t.Context(), ti.Signed, at, meta); return err }, "customer management"},
	} {
		var ae *Error
		if err := tc.call(); !errors.As(err, &ae) || ae.Status != 501 || !strings.Contains(ae.Message, tc.say) {
			t.Errorf("%s: %v, want 501 saying %q", tc.name, err, tc.say)
		}
	}
	if st, _ := e.raw(t, "GET", "/v1/vault/key", "", nil); st != 401 {
		t.Errorf("no token, not configured: %d, want 401 first", st)
	}
	// A title without metadata still goes to the scheduler alone.
	if _, err := c.AddTitle(t.Context(), ti.Signed, at); err != nil || len(f.titles) != 1 {
		t.Errorf("title without metadata: %v", err)
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"io/fs"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/firmware/keyfile"
	"github.com/boxswarm/boxswarm/headend/admin"
	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/headend/pass"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/headend/scheduler"
	"github.com/boxswarm/boxswarm/headend/vault"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/demux"
	"github.com/boxswarm/boxswarm/media/keywrap"
	"github.com/boxswarm/boxswarm/media/mediatest"
)

// fakeScheduler keeps the titles it is given.
type fakeScheduler struct {
	mu     sync.Mutex
	titles []schedstore.Title
}

func (f *fakeScheduler) AddActivationCode(context.Context, string, string) error { return nil }
func (f *fakeScheduler) AddServerCode(context.Context, string) error             { return nil }
func (f *fakeScheduler) AddTitle(_ context.Context, t schedstore.Title) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.titles = append(f.titles, t)
	return nil
}
func (f *fakeScheduler) SetPriorityList(context.Context, api.BoxID, []media.ID, uint64) error {
	return nil
}
func (f *fakeScheduler) Box(context.Context, api.BoxID) (scheduler.BoxStatus, error) {
	return scheduler.BoxStatus{}, scheduler.ErrUnknownBox
}
func (f *fakeScheduler) Transfers(context.Context, api.BoxID, int) ([]schedstore.Transfer, error) {
	return nil, nil
}
func (f *fakeScheduler) Inspect(context.Context, func(scheduler.Snapshot)) error { return nil }

// fakeServer is the media server: it copies what it is given into its
// own folder, as a store would.
type fakeServer struct {
	mu   sync.Mutex
	dir  string
	fail error
}

func (f *fakeServer) Place(_ context.Context, id media.ID, dir string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	dst := filepath.Join(f.dir, id.String())
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	for _, name := range []string{media.ManifestFile, media.PayloadFile} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeServer) Holds(_ context.Context, id media.ID) (bool, error) {
	_, err := os.Stat(filepath.Join(f.dir, id.String(), media.PayloadFile))
	return err == nil, nil
}

type fakeCatalog struct {
	mu     sync.Mutex
	titles map[media.ID]customers.Title
}

func (f *fakeCatalog) PutCatalog(context.Context, customers.Catalog) error { return nil }
func (f *fakeCatalog) PutTitle(_ context.Context, t customers.Title) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t.Catalog != "studio-a" {
		return customers.ErrUnknownCatalog
	}
	f.titles[t.Media] = t
	return nil
}

const token = "0123456789abcdef0123456789abcdef"

var (
	passKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x50}, 32))
	boxKey  = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0xb0}, 32))
	box     = api.BoxID{0xb0}
)

// headEnd is the admin API on a real vault, with fakes for the rest.
type headEnd struct {
	url     string
	vault   *vault.Vault
	sched   *fakeScheduler
	server  *fakeServer
	catalog *fakeCatalog
	dir     string // where everything is
}

func newHeadEnd(t *testing.T, dir string, mediaPub ed25519.PublicKey) *headEnd {
	t.Helper()
	mk, err := vault.LoadOrCreateMasterKey(filepath.Join(dir, "headend", "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mk.Close)
	v, err := vault.Open(t.Context(), vault.Config{Path: filepath.Join(dir, "headend", "vault.db"), MasterKey: mk,
		PassKeys: []ed25519.PublicKey{passKey.Public().(ed25519.PublicKey)}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	h := &headEnd{vault: v, sched: &fakeScheduler{}, server: &fakeServer{dir: filepath.Join(dir, "headend", "server")},
		catalog: &fakeCatalog{titles: map[media.ID]customers.Title{}}, dir: dir}
	handler, err := admin.Handler(admin.Config{Scheduler: h.sched, Token: token, MediaKeys: []ed25519.PublicKey{mediaPub},
		Vault: v, Packages: h.server, Catalog: h.catalog, Staging: filepath.Join(dir, "headend", "staging")})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	h.url = srv.URL
	return h
}

// setup makes a clip, a media key pair, the token and metadata files and
// the head-end, all under one folder.
func setup(t *testing.T) (dir, clip string, h *headEnd, flags []string) {
	dir = t.TempDir()
	clip = mediatest.Make(t, dir, mediatest.TSH265)
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := run(t.Context(), []string{"-new-media-key", filepath.Join(dir, "keys", "media")}, &out, &out); code != 0 {
		t.Fatalf("new media key: %s", out.String())
	}
	pub, err := keyfile.ReadPublicKey(filepath.Join(dir, "keys", "media.pub"))
	if err != nil {
		t.Fatal(err)
	}
	h = newHeadEnd(t, dir, pub)
	tokenFile := filepath.Join(dir, "admin.token")
	metaFile := filepath.Join(dir, "film.json")
	write(t, tokenFile, token+"\n")
	write(t, metaFile, `{"catalog": "studio-a", "name": "Test Card", "year": 2025, "genre": "Documentary",
		"actors": ["A. Sine"], "directors": ["T. Src"], "language": "en", "rating": "U",
		"rent": "2.99 EUR", "buy": "9.99 EUR", "window": "48h", "regions": ["DE", "FR"]}`)
	flags = []string{"-headend", h.url, "-token-file", tokenFile, "-meta", metaFile, "-q"}
	return dir, clip, h, flags
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func runTool(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestImportToHeadEnd imports a real clip into the head-end and plays it:
// the vault releases a key to a box with a pass, and that key decrypts the
// package the media server was given into the clip's own frames.
func TestImportToHeadEnd(t *testing.T) {
	dir, clip, h, flags := setup(t)
	at := time.Date(2027, 2, 3, 20, 0, 0, 0, time.UTC)
	code, stdout, stderr := runTool(t, append(flags, "-in", clip, "-media-key", filepath.Join(dir, "keys", "media.key"), "-publish", at.Format(time.RFC3339))...)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, stdout, stderr)
	}
	for _, step := range []string{"step 1 of 3", "step 2 of 3", "step 3 of 3"} {
		if !strings.Contains(stdout, step) {
			t.Errorf("no %q in %s", step, stdout)
		}
	}
	if len(h.sched.titles) != 1 || len(h.catalog.titles) != 1 {
		t.Fatalf("published %d to the scheduler, %d to the catalog", len(h.sched.titles), len(h.catalog.titles))
	}
	id := h.sched.titles[0].ID
	ct := h.catalog.titles[id]
	if !h.sched.titles[0].PublishAt.Equal(at) || !ct.PublishAt.Equal(at) || ct.Name != "Test Card" ||
		ct.Rent != (customers.Money{Amount: 299, Currency: "EUR"}) || ct.Window != 48*time.Hour || len(ct.Regions) != 2 {
		t.Errorf("scheduler %+v, catalog %+v", h.sched.titles[0], ct)
	}

	// The box's side: a pass, the key released and unwrapped.
	issuer, err := pass.NewIssuer(passKey, time.Now, 0)
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := issuer.Issue(pass.Grant{Box: box, BoxKey: boxKey.Public().(ed25519.PublicKey), Title: id, NotAfter: time.Now().Add(time.Hour), Account: "a"})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h.vault.Release(t.Context(), box, boxKey.Public().(ed25519.PublicKey), p)
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := keywrap.Unwrap(boxKey, box, id, resp.WrappedKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer key.Destroy()
	pub, _ := keyfile.ReadPublicKey(filepath.Join(dir, "keys", "media.pub"))
	pkg, err := media.OpenPackage(filepath.Join(h.server.dir, id.String()), pub)
	if err != nil {
		t.Fatal(err)
	}
	defer pkg.Close()
	fc, err := media.NewFrameCipher(key.Bytes(), id)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range sourceFrames(t, clip, 5) {
		fe := pkg.Manifest.Frame(i)
		sealed := make([]byte, fe.Size)
		if _, err := pkg.Payload.ReadAt(sealed, int64(fe.Offset)); err != nil {
			t.Fatal(err)
		}
		got, err := fc.Open(nil, uint64(i), fe.FrameMeta, sealed)
		if err != nil {
			t.Fatalf("frame %d does not open with the released key: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d decrypts to other bytes than the clip's", i)
		}
	}

	// The key is nowhere in the clear: not in any file the import or the
	// head-end wrote (the vault keeps it sealed), not in the output.
	hexKey := hex.EncodeToString(key.Bytes())
	if strings.Contains(stdout+stderr, hexKey) {
		t.Error("the content key is in the tool's output")
	}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := os.ReadFile(path)
		if bytes.Contains(b, key.Bytes()) || bytes.Contains(b, []byte(hexKey)) {
			t.Errorf("%s holds the content key", path)
		}
		if strings.HasSuffix(path, ".key") && !strings.HasSuffix(path, "media.key") && !strings.HasSuffix(path, "master.key") {
			t.Errorf("a key file was written: %s", path)
		}
		return nil
	})
	// Without -out the package was only on its way.
	if left, _ := filepath.Glob(filepath.Join(os.TempDir(), "mediaimport-*", id.String())); len(left) != 0 {
		t.Errorf("the package was left in %s", left)
	}
}

// TestStepFails: when the media server fails, the title is not published,
// the tool says which step failed and how to finish, and that command
// finishes it.
func TestStepFails(t *testing.T) {
	dir, clip, h, flags := setup(t)
	h.server.fail = errors.New("disk on fire")
	out := filepath.Join(dir, "packages")
	code, stdout, stderr := runTool(t, append(flags, "-in", clip, "-media-key", filepath.Join(dir, "keys", "media.key"), "-out", out)...)
	if code != 1 || !strings.Contains(stderr, "step 2 of 3") || !strings.Contains(stderr, "disk on fire") {
		t.Fatalf("exit %d: %s%s", code, stdout, stderr)
	}
	// The command to finish, as the tool printed it.
	_, finish, ok := strings.Cut(stderr, "mediaimport -package")
	if !ok {
		t.Fatalf("no command to finish in %s", stderr)
	}
	finishArgs := append([]string{"-package"}, strings.Fields(finish)...)
	if len(h.sched.titles) != 0 || len(h.catalog.titles) != 0 {
		t.Fatal("a title was published without its package")
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != 1 {
		t.Fatalf("%d packages in -out", len(entries))
	}
	id, _ := media.ParseID(entries[0].Name())
	if ok, _ := h.vault.Has(t.Context(), id); !ok {
		t.Fatal("the key of the title is not in the vault")
	}
	// While the server still fails, finishing fails at the same step.
	if code, _, stderr := runTool(t, finishArgs...); code != 1 || !strings.Contains(stderr, "step 2 of 3") {
		t.Fatalf("while the server fails: exit %d: %s", code, stderr)
	}
	// Importing again under the same ID makes a new key, which the vault
	// refuses; the package of that attempt is removed.
	again := t.TempDir()
	code, _, stderr = runTool(t, append(flags, "-in", clip, "-media-key", filepath.Join(dir, "keys", "media.key"), "-out", again, "-id", id.String())...)
	if left, _ := os.ReadDir(again); code != 1 || !strings.Contains(stderr, "step 1 of 3") || !strings.Contains(stderr, "different content key") || len(left) != 0 {
		t.Errorf("importing again under the same ID: exit %d, %s, left %d", code, stderr, len(left))
	}

	h.server.fail = nil
	code, stdout, stderr = runTool(t, append(finishArgs, "-q")...)
	if code != 0 || !strings.Contains(stdout, "step 3 of 3") || len(h.sched.titles) != 1 || len(h.catalog.titles) != 1 {
		t.Fatalf("finishing: exit %d: %s%s", code, stdout, stderr)
	}
	if h.sched.titles[0].ID != id {
		t.Errorf("published %s, want %s", h.sched.titles[0].ID, id)
	}
	// And once more: everything is idempotent.
	if code, _, stderr := runTool(t, finishArgs...); code != 0 {
		t.Errorf("finishing again: exit %d: %s", code, stderr)
	}
}

func TestFlags(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "bad.json"), `{"catalog": "c", "name": "n", "regions": ["DE"], "rent": "1,99 EUR"}`)
	write(t, filepath.Join(dir, "tok"), token)
	he := []string{"-headend", "http://127.0.0.1:1", "-token-file", filepath.Join(dir, "tok")}
	for _, tc := range []struct {
		args []string
		code int
		say  string
	}{
		{[]string{"-in", "x"}, 2, "required"},
		{append(he, "-in", "x", "-media-key", "k"), 2, "-meta"},
		{append(he, "-meta", "m", "-in", "x", "-media-key", "k", "-keys", dir), 2, "do not go together"},
		{append(he, "-meta", "m", "-package", dir, "-in", "x"), 2, "no -in"},
		{[]string{"-headend", "127.0.0.1:7480", "-token-file", "t", "-meta", "m", "-package", dir}, 2, "URL"},
		{[]string{"-in", "x", "-out", "o", "-media-key", "k", "-keys", "d", "-meta", "m"}, 2, "go with -headend"},
		{append(he, "-meta", filepath.Join(dir, "bad.json"), "-package", dir), 1, "1,99 EUR"},
		{append(he, "-meta", filepath.Join(dir, "bad.json"), "-package", dir, "-publish", "tomorrow"), 1, "RFC 3339"},
		{append(he, "-meta", filepath.Join(dir, "missing.json"), "-package", dir), 1, "-meta"},
	} {
		code, _, stderr := runTool(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.say) {
			t.Errorf("%q: exit %d, %s; want %d saying %q", tc.args, code, stderr, tc.code, tc.say)
		}
	}
}

// sourceFrames demuxes the clip's first n frames.
func sourceFrames(t *testing.T, path string, n int) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	src, err := demux.Open(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for range n {
		fr, err := src.Next()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bytes.Clone(fr.Data))
	}
	return out
}

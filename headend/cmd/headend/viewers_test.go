package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/firmware/keyfile"
	"github.com/boxswarm/boxswarm/headend/admin"
	"github.com/boxswarm/boxswarm/internal/viewerclient"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/keywrap"
	"github.com/boxswarm/boxswarm/media/mediatest"
	schedclient "github.com/boxswarm/boxswarm/scheduler-client"
)

// TestViewerJourney runs the whole head-end in one process on its
// embedded default, and goes through what issue 6 joins: the import tool
// registers a real clip's key with the vault, places the package on the
// media server and publishes it; a viewer signs up on the web and gets an
// activation code; a box (transferd) activates with it, is sent the
// catalog, downloads the title added on the web, and My List says so; a
// second viewer's box edits its list on the TV, is quoted, confirms the
// price, gets a pass and a key, and decrypts the package's frames with it.
func TestViewerJourney(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the head-end and a box as processes; skipped with -short")
	}
	mediatest.RequireFFmpeg(t)
	bin := buildBinaries(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "headend")
	os.MkdirAll(data, 0o700)
	runTool(t, filepath.Join(bin, "mediaimport"), "-new-media-key", filepath.Join(data, "media"))

	he := startProc(t, "headend", filepath.Join(bin, "headend"), "serve", "-data", data,
		"-gateway", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-turn", "127.0.0.1:0", "-web", "127.0.0.1:0",
		"-media-listen", "127.0.0.1:0", "-turn-relay-ports", "40200-40300", "-turn-allow-private",
		"-tick", "50ms", "-heartbeat", "500ms", "-idle-timeout", "3s")
	var gatewayAddr, adminAddr, webAddr string
	for range 3 {
		m := he.await(t, `headend: (?:scheduler gateway (\S+) admin (\S+)|web http://(\S+)|media box)`)
		gatewayAddr, adminAddr, webAddr = first(gatewayAddr, m[1]), first(adminAddr, m[2]), first(webAddr, m[3])
	}
	ctx := t.Context()

	// Import: key to the vault, package to the media server, metadata
	// to customer management and the scheduler.
	clip := mediatest.Make(t, dir, mediatest.TSH264AAC)
	meta := filepath.Join(dir, "meta.json")
	writeJSON(t, meta, admin.TitleMeta{Catalog: "films", Name: "Night <Train>", Year: 2026, Genre: "Drama",
		Rent: mustPrice(t, "1.99 EUR"), Regions: []string{"*"}})
	out := runTool(t, filepath.Join(bin, "mediaimport"), "-in", clip, "-media-key", filepath.Join(data, "media.key"),
		"-headend", "http://"+adminAddr, "-token-file", filepath.Join(data, adminTokenFile), "-meta", meta,
		"-out", filepath.Join(dir, "packages"), "-publish", time.Now().Add(-time.Minute).UTC().Format(time.RFC3339), "-q")
	m := regexp.MustCompile(`step 3 of 3: ([0-9a-f]{32}) published`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("mediaimport did not publish:\n%s", out)
	}
	title, err := media.ParseID(m[1])
	must(t, err)
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), title.String()) && !d.IsDir() && path != filepath.Join(dir, "packages", title.String(), d.Name()) {
			t.Errorf("the import left %s behind", path)
		}
		return nil
	})

	// Ann signs up on the web; her box activates with the code the web
	// showed her, and is sent the catalog.
	ann := viewerclient.New("http://" + webAddr)
	annCode, err := ann.SignUp(ctx, viewerclient.SignUp{Name: "Ann", Email: "ann@example.com", Password: "correct horse ann",
		Street: "1 Main St", City: "Town", Postcode: "1000", Region: "DE", PaymentToken: "tok_ok_ann"})
	must(t, err)
	ca := filepath.Join(data, "ca", "ca.crt")
	bd := filepath.Join(dir, "ann-box")
	box := startProc(t, "ann's box", filepath.Join(bin, "transferd"), "-headend", gatewayAddr, "-ca", ca,
		"-store", filepath.Join(bd, "store"), "-key", filepath.Join(bd, "box.key"), "-cert", filepath.Join(bd, "box.crt"),
		"-activate", annCode, "-media-key", filepath.Join(data, "media.pub"), "-scheduler-key", filepath.Join(data, "scheduler.pub"),
		"-progress", "300ms", "-heartbeat", "500ms", "-region", "DE")
	annBox := parseBox(t, box.await(t, `transferd: box (\S+) pieces`)[1])

	// She adds the title on the web: the box downloads it from the media
	// server, and My List follows.
	must(t, ann.Add(ctx, title))
	c := &admin.Client{URL: "http://" + adminAddr, Token: readToken(t, data)}
	waitFor(t, 60*time.Second, "ann's box to hold the title", func() bool {
		s, err := c.Box(ctx, annBox)
		return err == nil && slices.ContainsFunc(s.Holdings, func(h api.TitleState) bool { return h.Title == title && h.Complete })
	})
	waitFor(t, 10*time.Second, "My List to say Downloaded", func() bool {
		l, err := ann.List(ctx)
		return err == nil && len(l) == 1 && l[0].Title == title && l[0].State == "Downloaded"
	})

	// Bob's box is this test, speaking the box's protocol.
	bob := viewerclient.New("http://" + webAddr)
	bobCode, err := bob.SignUp(ctx, viewerclient.SignUp{Name: "Bob", Email: "bob@example.com", Password: "correct horse bob",
		Street: "2 Main St", City: "Town", Postcode: "1000", Region: "DE", PaymentToken: "tok_ok_bob"})
	must(t, err)
	tv := startTestBox(t, gatewayAddr, ca, bobCode)
	tv.await(t, "the catalog", func(b api.Body) bool {
		u, ok := b.(api.CatalogUpdate)
		return ok && u.Full && slices.ContainsFunc(u.Items, func(it api.CatalogItem) bool { return it.Title == title && it.Name == "Night <Train>" })
	})

	// On the TV: the list, then the price, the confirmation, the pass
	// and the key.
	tv.send(t, api.PriorityList{Titles: []media.ID{title}, Version: 1})
	waitFor(t, 10*time.Second, "the TV's list on the web", func() bool {
		l, err := bob.List(ctx)
		return err == nil && len(l) == 1 && l[0].Title == title
	})
	tv.send(t, api.PassRequest{Title: title})
	quote := tv.await(t, "a price", func(b api.Body) bool { r, ok := b.(api.PassResponse); return ok && r.Price != "" }).(api.PassResponse)
	if quote.Price != "1.99 EUR" || len(quote.Pass) != 0 {
		t.Fatalf("quote %+v", quote)
	}
	tv.send(t, api.PassRequest{Title: title, Confirm: true, Price: quote.Price})
	granted := tv.await(t, "a pass", func(b api.Body) bool { r, ok := b.(api.PassResponse); return ok && len(r.Pass) > 0 }).(api.PassResponse)
	tv.send(t, api.KeyRequest{Pass: granted.Pass})
	kr := tv.await(t, "a key", func(b api.Body) bool { _, ok := b.(api.KeyResponse); return ok }).(api.KeyResponse)
	key, _, err := keywrap.Unwrap(tv.key, tv.id, title, kr.WrappedKey, time.Now())
	if err != nil {
		t.Fatalf("unwrap the key (response %q): %v", kr.Reason, err)
	}
	defer key.Destroy()
	mediaPub, err := keyfile.ReadPublicKey(filepath.Join(data, "media.pub"))
	must(t, err)
	pkg, err := media.OpenPackage(filepath.Join(dir, "packages", title.String()), mediaPub)
	must(t, err)
	defer pkg.Close()
	fc, err := media.NewFrameCipher(key.Bytes(), title)
	must(t, err)
	for i := range pkg.Manifest.NumFrames() {
		fe := pkg.Manifest.Frame(i)
		sealed := make([]byte, fe.Size)
		_, err := pkg.Payload.ReadAt(sealed, int64(fe.Offset))
		must(t, err)
		if _, err := fc.Open(nil, uint64(i), fe.FrameMeta, sealed); err != nil {
			t.Fatalf("frame %d does not open with the released key: %v", i, err)
		}
	}

	// The same pass again is a replay.
	tv.send(t, api.KeyRequest{Pass: granted.Pass})
	replay := tv.await(t, "a refusal", func(b api.Body) bool { r, ok := b.(api.KeyResponse); return ok && r.Reason != "" }).(api.KeyResponse)
	if !strings.HasPrefix(replay.Reason, "replayed") {
		t.Errorf("replayed pass answered %q", replay.Reason)
	}
}

// testBox is a box made of the scheduler client alone.
type testBox struct {
	id     api.BoxID
	key    ed25519.PrivateKey
	client *schedclient.Client
	mu     sync.Mutex
	got    []api.Body
	more   chan struct{}
}

func startTestBox(t *testing.T, gatewayAddr, caPath, code string) *testBox {
	t.Helper()
	pem, err := os.ReadFile(caPath)
	must(t, err)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	ctx := t.Context()
	id, cert, err := schedclient.Activate(ctx, gatewayAddr, "localhost", roots, code, key.Public().(ed25519.PublicKey))
	must(t, err)
	b := &testBox{id: id, key: key, more: make(chan struct{}, 1)}
	b.client, err = schedclient.New(schedclient.Config{Addr: gatewayAddr, ServerName: "localhost", Roots: roots,
		Identity: schedclient.Identity{Key: key, Certificate: cert}, State: schedclient.MemState(),
		Heartbeat: 500 * time.Millisecond,
		Handle: func(_ context.Context, body api.Body) error {
			b.mu.Lock()
			b.got = append(b.got, body)
			b.mu.Unlock()
			select {
			case b.more <- struct{}{}:
			default:
			}
			return nil
		}})
	must(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); b.client.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	return b
}

func (b *testBox) send(t *testing.T, body api.Body) {
	t.Helper()
	must(t, b.client.Send(t.Context(), body))
}

// await returns the first message so far, or to come, that match likes,
// and forgets the messages up to it.
func (b *testBox) await(t *testing.T, what string, match func(api.Body) bool) api.Body {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		b.mu.Lock()
		for i, body := range b.got {
			if match(body) {
				b.got = b.got[i+1:]
				b.mu.Unlock()
				return body
			}
		}
		b.mu.Unlock()
		select {
		case <-b.more:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("box %s: no %s within 30 s", b.id, what)
		}
	}
}

func runTool(t *testing.T, bin string, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	must(t, err)
	must(t, os.WriteFile(path, b, 0o644))
}

func mustPrice(t *testing.T, s string) admin.Price {
	t.Helper()
	var p admin.Price
	must(t, json.Unmarshal([]byte(`"`+s+`"`), &p))
	return p
}

func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

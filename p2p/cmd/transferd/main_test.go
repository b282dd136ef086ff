package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/firmware"
	"github.com/boxswarm/boxswarm/headend/deviceca"
	"github.com/boxswarm/boxswarm/headend/gateway"
	"github.com/boxswarm/boxswarm/headend/gateway/gatewaytest"
	"github.com/boxswarm/boxswarm/p2p/local"
	"github.com/boxswarm/boxswarm/p2p/piece/piecetest"
)

// headEnd is a gateway with an in-memory scheduler side.
type headEnd struct {
	h      *gatewaytest.Handler
	g      *gateway.Gateway
	addr   string
	caFile string
}

func startHeadEnd(t *testing.T, codes ...string) *headEnd {
	t.Helper()
	dir := t.TempDir()
	ca, err := deviceca.LoadOrCreate(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.IssueServer([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	h := gatewaytest.New(codes...)
	g, err := gateway.New(gateway.Config{
		TLS: &tls.Config{Certificates: []tls.Certificate{srv}}, CA: ca, Handler: h,
		Log: piecetest.Logger(t).With("end", "gateway"), RetryBase: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	caFile := filepath.Join(dir, "headend-ca.pem")
	writeFile(t, caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Certificate()}))
	return &headEnd{h: h, g: g, addr: l.Addr().String(), caFile: caFile}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func pubPEM(t *testing.T, dir, name string, k ed25519.PublicKey) string {
	t.Helper()
	b, err := firmware.MarshalPublicKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	writeFile(t, path, b)
	return path
}

// lineBuffer collects a daemon's standard output.
type lineBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lineBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lineBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testDaemon is a transferd run in this process.
type testDaemon struct {
	id    api.BoxID
	addr  string
	dir   string
	args  []string
	stop  context.CancelFunc
	code  chan int
	t     *testing.T
	stdio *lineBuffer
}

var ready = regexp.MustCompile(`transferd: box ([0-9a-f]{32}) pieces (\S+)`)

func (d *testDaemon) start() {
	d.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d.stop, d.code, d.stdio = cancel, make(chan int, 1), &lineBuffer{}
	stderr := &lineBuffer{}
	go func() { d.code <- run(ctx, d.args, d.stdio, stderr) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := ready.FindStringSubmatch(d.stdio.String()); m != nil {
			if err := d.id.UnmarshalText([]byte(m[1])); err != nil {
				d.t.Fatal(err)
			}
			d.addr = m[2]
			return
		}
		select {
		case c := <-d.code:
			d.t.Fatalf("transferd exited with %d:\n%s", c, stderr)
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("transferd not ready:\n%s", stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (d *testDaemon) halt() {
	d.t.Helper()
	d.stop()
	if c := <-d.code; c != 0 {
		d.t.Errorf("transferd exited with %d", c)
	}
}

func newDaemon(t *testing.T, he *headEnd, code, mediaKey, schedKey string, extra ...string) *testDaemon {
	dir := t.TempDir()
	args := []string{
		"-headend", he.addr, "-ca", he.caFile, "-store", filepath.Join(dir, "store"),
		"-key", filepath.Join(dir, "box.key"), "-cert", filepath.Join(dir, "box.crt"), "-activate", code,
		"-media-key", mediaKey, "-scheduler-key", schedKey, "-progress", "50ms",
		// The fake head-end relays no signalling: these daemons move
		// pieces over TCP (WebRTC between daemons is tested with the real
		// head-end in headend/cmd/headend).
		"-transport", "tcp", "-listen", "127.0.0.1:0",
	}
	return &testDaemon{t: t, dir: dir, args: append(args, extra...)}
}

// delivered returns what the head-end got from a box.
func delivered(he *headEnd, id api.BoxID) []api.Body {
	b, _ := he.h.Box(id)
	var out []api.Body
	for _, d := range b.Delivered {
		out = append(out, d.Body)
	}
	return out
}

// await waits until the box has delivered a message that satisfies ok.
func await(t *testing.T, he *headEnd, id api.BoxID, what string, ok func(api.Body) bool) api.Body {
	t.Helper()
	var found api.Body
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	err := he.h.Await(ctx, func() bool {
		for _, b := range delivered(he, id) {
			if ok(b) {
				found = b
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("box %s: no %s; delivered %+v", id, what, delivered(he, id))
	}
	return found
}

func queue(t *testing.T, he *headEnd, id api.BoxID, b api.Body) {
	t.Helper()
	if _, err := he.h.Queue(id, b); err != nil {
		t.Fatal(err)
	}
	he.g.Notify(id)
}

func TestDaemons(t *testing.T) {
	he := startHeadEnd(t, "code-a", "code-b", "code-s")
	keys := t.TempDir()
	mediaKey := pubPEM(t, keys, "media.pub", piecetest.MediaPub)
	schedKey := pubPEM(t, keys, "scheduler.pub", piecetest.SchedulerPub)
	pkgs := t.TempDir()
	ti := piecetest.MakeTitle(t, pkgs, 40*(64<<10), 64<<10)
	other := piecetest.MakeTitle(t, pkgs, 10*(64<<10), 64<<10)

	// A box that has the title, a box that wants it, and a media server
	// that ingests the other title.
	a := newDaemon(t, he, "code-a", mediaKey, schedKey)
	st := piecetest.OpenStore(t, filepath.Join(a.dir, "store"))
	piecetest.Fill(t, st, ti)
	st.Close()
	b := newDaemon(t, he, "code-b", mediaKey, schedKey, "-down-kbps", "16000")
	s := newDaemon(t, he, "code-s", mediaKey, schedKey, "-server", "-cluster", "noc-1", "-ingest", other.Dir)
	for _, d := range []*testDaemon{a, b, s} {
		d.start()
		defer d.halt()
	}

	isRegister := func(x api.Body) bool { _, ok := x.(api.Register); return ok }
	for _, d := range []*testDaemon{a, b, s} {
		r := await(t, he, d.id, "registration", isRegister).(api.Register)
		if r.PieceAddr != d.addr || r.Server != (d == s) || r.Capacity == 0 {
			t.Errorf("box %s registered %+v", d.id, r)
		}
	}
	inv := await(t, he, a.id, "inventory", func(x api.Body) bool { _, ok := x.(api.Inventory); return ok }).(api.Inventory)
	if !inv.Full || len(inv.Titles) != 1 || inv.Titles[0].Title != ti.ID() || !inv.Titles[0].Complete {
		t.Errorf("inventory of the box holding the title: %+v", inv)
	}
	inv = await(t, he, s.id, "inventory", func(x api.Body) bool { _, ok := x.(api.Inventory); return ok }).(api.Inventory)
	if !inv.Full || len(inv.Titles) != 1 || inv.Titles[0].Title != other.ID() || !inv.Titles[0].Complete {
		t.Errorf("media server's inventory: %+v", inv)
	}
	if r := await(t, he, b.id, "registration", isRegister).(api.Register); r.DownKbps != 16000 {
		t.Errorf("down cap registered as %d kbit/s", r.DownKbps)
	}

	// The scheduler's commands: a to b, then the server to b.
	transfer := func(id api.TransferID, from, to *testDaemon, title media) {
		g, tok := piecetest.Grant(id, from.id, to.id, title.ti)
		queue(t, he, from.id, api.TransferStart{Transfer: id, Title: title.ti.ID(), Role: api.RoleSend, Peer: api.Peer{Box: to.id, Addr: to.addr}, Portions: g.Portions, Token: tok, Expires: g.Expires})
		queue(t, he, to.id, api.TransferStart{Transfer: id, Title: title.ti.ID(), Role: api.RoleReceive, Peer: api.Peer{Box: from.id, Addr: from.addr, Server: from == s}, Initiate: true, Portions: g.Portions, Token: tok, Expires: g.Expires})
	}
	succeeded := func(id api.TransferID) func(api.Body) bool {
		return func(x api.Body) bool {
			r, ok := x.(api.TransferSucceeded)
			f, failed := x.(api.TransferFailed)
			if failed && f.Transfer == id {
				t.Fatalf("transfer %d failed: %s", id, f.Reason)
			}
			return ok && r.Transfer == id
		}
	}
	transfer(1, a, b, media{ti})
	transfer(2, s, b, media{other})
	for _, tc := range []struct {
		id api.TransferID
		ti *piecetest.Title
	}{{1, ti}, {2, other}} {
		r := await(t, he, b.id, fmt.Sprintf("success of transfer %d", tc.id), succeeded(tc.id)).(api.TransferSucceeded)
		if h := tc.ti.PayloadHash(); !bytes.Equal(r.PayloadHash, h[:]) {
			t.Errorf("transfer %d: payload hash %x", tc.id, r.PayloadHash)
		}
	}
	await(t, he, a.id, "sender's success", succeeded(1))
	await(t, he, s.id, "server's success", succeeded(2))
	await(t, he, b.id, "started", func(x api.Body) bool { _, ok := x.(api.TransferStarted); return ok })

	// A restart: no activation again, a new session, a new registration.
	b.halt()
	b.start()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := he.h.Await(ctx, func() bool {
		n := 0
		for _, x := range delivered(he, b.id) {
			if _, ok := x.(api.Register); ok {
				n++
			}
		}
		return n == 2
	}); err != nil {
		t.Fatalf("no second registration after a restart: %+v", delivered(he, b.id))
	}
	inv = await(t, he, b.id, "inventory", func(x api.Body) bool { i, ok := x.(api.Inventory); return ok && len(i.Titles) == 2 }).(api.Inventory)
	for _, ts := range inv.Titles {
		if !ts.Complete {
			t.Errorf("after the restart: %+v", inv)
		}
	}
	if v := he.h.Violations(); len(v) > 0 {
		t.Errorf("gateway promises broken: %v", v)
	}
}

type media struct{ ti *piecetest.Title }

func TestFlags(t *testing.T) {
	var stderr bytes.Buffer
	if c := run(t.Context(), []string{"-store", "x"}, &bytes.Buffer{}, &stderr); c != 2 || !bytes.Contains(stderr.Bytes(), []byte("missing head-end address")) {
		t.Errorf("missing flags: exit %d, %s", c, stderr.String())
	}
	stderr.Reset()
	if c := run(t.Context(), []string{"-server", "extra"}, &bytes.Buffer{}, &stderr); c != 2 {
		t.Errorf("stray argument: exit %d", c)
	}
}

func TestActivateFromTV(t *testing.T) {
	he := startHeadEnd(t, "code-tv")
	keys := t.TempDir()
	mediaKey := pubPEM(t, keys, "media.pub", piecetest.MediaPub)
	schedKey := pubPEM(t, keys, "scheduler.pub", piecetest.SchedulerPub)
	runDir := t.TempDir()
	sock := filepath.Join(runDir, "run", "transferd.sock")
	d := newDaemon(t, he, "", mediaKey, schedKey, "-local", sock, "-store-socket", filepath.Join(runDir, "run", "store.sock"))
	// No -activate at all: the code comes through the local API. And the
	// head-end's address and keys come from the box configuration, as on
	// a box.
	d.args = slices.DeleteFunc(d.args, func(a string) bool { return a == "-activate" || a == "" })
	// And the identity is a box's default: sealed, next to the store (no
	// TPM here, so in the clear, which it logs).
	i := slices.Index(d.args, "-key")
	d.args = append(slices.Delete(d.args, i, i+2), "-tpm", "none")
	cfg := filepath.Join(runDir, "box.json")
	js := fmt.Sprintf(`{"headend": %q, "ca": %q, "media_keys": [%q], "scheduler_key": %q}`, he.addr, he.caFile, mediaKey, schedKey)
	if err := os.WriteFile(cfg, []byte(js), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"-headend", "-ca", "-media-key", "-scheduler-key"} {
		i := slices.Index(d.args, f)
		d.args = slices.Delete(d.args, i, i+2)
	}
	d.args = append(d.args, "-config", cfg)
	// The supervisor's ready pipe: transferd must report ready before
	// the box is activated, or a first boot would never be healthy.
	readyR, readyW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer readyR.Close()
	fd, err := syscall.Dup(int(readyW.Fd())) // NotifyReady closes its descriptor
	if err != nil {
		t.Fatal(err)
	}
	readyW.Close()
	t.Setenv("BOXSWARM_READY_FD", fmt.Sprint(fd))
	ctx, cancel := context.WithCancel(context.Background())
	code, stdout := make(chan int, 1), &lineBuffer{}
	go func() { code <- run(ctx, d.args, stdout, &lineBuffer{}) }()
	defer func() {
		cancel()
		if c := <-code; c != 0 {
			t.Errorf("transferd exited with %d", c)
		}
	}()
	c := local.Dial(sock)
	defer c.Close()
	var st local.Status
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var err error
		if st, err = c.Status(t.Context()); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if !st.NeedsCode || st.Activated || st.StoreSocket == "" {
		t.Fatalf("status without a certificate: %+v", st)
	}
	readyR.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(readyR); string(b) != "READY\n" {
		t.Fatalf("the supervisor's ready pipe got %q (%v) before activation, want READY", b, err)
	}
	if err := c.Activate(t.Context(), "code-wrong"); !errors.Is(err, local.ErrRefused) {
		t.Fatalf("wrong code: %v", err)
	}
	if err := c.Activate(t.Context(), "code-tv"); err != nil {
		t.Fatalf("right code: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); !ready.MatchString(stdout.String()); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("transferd did not carry on after activation")
		}
	}
	if _, err := os.Stat(filepath.Join(d.dir, "box.crt")); err != nil {
		t.Errorf("certificate: %v", err)
	}
	if _, err := os.Stat(filepath.Join(d.dir, "identity")); err != nil {
		t.Errorf("sealed identity: %v", err)
	}
	if _, err := os.Stat(filepath.Join(d.dir, "box.key")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a PEM key next to the sealed identity: %v", err)
	}
}

func TestLocalFlags(t *testing.T) {
	var stderr bytes.Buffer
	args := []string{"-headend", "127.0.0.1:1", "-ca", "ca", "-store", "s", "-key", "k", "-cert", "c", "-media-key", "m", "-scheduler-key", "s",
		"-server", "-cluster", "x", "-local", "/tmp/x.sock"}
	if c := run(t.Context(), args, &bytes.Buffer{}, &stderr); c != 2 || !bytes.Contains(stderr.Bytes(), []byte("no local API")) {
		t.Errorf("-local on a media server: exit %d, %s", c, stderr.String())
	}
	stderr.Reset()
	args = []string{"-headend", "127.0.0.1:1", "-ca", "ca", "-store", "s", "-cert", "c", "-media-key", "m", "-scheduler-key", "s",
		"-tpm", filepath.Join(t.TempDir(), "tpm0")}
	if c := run(t.Context(), args, &bytes.Buffer{}, &stderr); c != 2 || !bytes.Contains(stderr.Bytes(), []byte("-tpm")) {
		t.Errorf("-tpm naming no device: exit %d, %s", c, stderr.String())
	}
	stderr.Reset()
	run(t.Context(), []string{"-h"}, &bytes.Buffer{}, &stderr)
	for _, f := range []string{"-local", "-store-socket", "-box-state", "-identity", "-tpm", "-key"} {
		if !bytes.Contains(stderr.Bytes(), []byte(f+" ")) {
			t.Errorf("help has no %s", f)
		}
	}
}

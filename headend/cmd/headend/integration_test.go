package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/firmware"
	"github.com/boxswarm/boxswarm/headend/admin"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/store"
	"github.com/boxswarm/boxswarm/p2p/piece/piecetest"
)

// TestIntegration runs the head-end, a media server and three boxes as
// separate processes on loopback, and checks the scheduler's decisions
// as they play out: order and sources after lists change, a donor killed
// mid-transfer, a box gone silent.
func TestIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five processes and moves titles between them; skipped with -short")
	}
	bin := buildBinaries(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "headend")
	os.MkdirAll(data, 0o700)
	writePub(t, filepath.Join(data, "media.pub"), piecetest.MediaPub)

	// Titles of 4 MiB in pieces of 256 KiB: 4 s at a box's 1 MB/s.
	pkgs := filepath.Join(dir, "packages")
	os.MkdirAll(pkgs, 0o755)
	var titles []*piecetest.Title
	for range 3 {
		titles = append(titles, piecetest.MakeTitle(t, pkgs, 4<<20, 256<<10))
	}
	T1, T2, T3 := titles[0], titles[1], titles[2]

	// The shadow list is planned once, at start, when there are no boxes:
	// this test is about the viewers' lists (the shadow list has its own
	// tests in package scheduler).
	he := startProc(t, "headend", filepath.Join(bin, "headend"), "serve", "-services", "scheduler,turn",
		"-data", data, "-gateway", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-turn", "127.0.0.1:0", "-web", "127.0.0.1:0",
		"-turn-relay-ports", "40000-40100", "-tick", "50ms", "-shadow-every", "24h",
		"-idle-timeout", "2s", "-offline-after", "3s", "-start-timeout", "20s", "-progress-timeout", "20s")
	m := he.await(t, `headend: scheduler gateway (\S+) admin (\S+)`)
	gatewayAddr, adminAddr := m[1], m[2]
	c := &admin.Client{URL: "http://" + adminAddr, Token: readToken(t, data)}
	ctx := t.Context()
	for _, ti := range titles {
		if _, err := c.AddTitle(ctx, ti.Signed, time.Now().Add(-time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	ca := filepath.Join(data, "ca", "ca.crt")
	schedPub := filepath.Join(data, "scheduler.pub")

	// The media server, apart, enrolled with a server code.
	code, err := c.NewServerCode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mdata := filepath.Join(dir, "media-server")
	ms := startProc(t, "media", filepath.Join(bin, "headend"), "serve", "-services", "media", "-data", mdata,
		"-media-headend", gatewayAddr, "-media-ca", ca, "-media-code", code, "-scheduler-key", schedPub,
		"-media-key", filepath.Join(data, "media.pub"), "-media-listen", "127.0.0.1:0", "-media-cluster", "noc-1", "-heartbeat", "500ms",
		"-ingest", T1.Dir, "-ingest", T2.Dir, "-ingest", T3.Dir)
	server := parseBox(t, ms.await(t, `headend: media box (\S+) pieces`)[1])

	// Three boxes, each uploading at most 1 MB/s, with no piece address:
	// like boxes behind NAT, they reach each other and the media server
	// over WebRTC only.
	type boxProc struct {
		id    api.BoxID
		proc  *proc
		store string
		args  []string
	}
	startBox := func(name string, downKbps int) boxProc {
		code, err := c.NewCode(ctx, "account-"+name)
		if err != nil {
			t.Fatal(err)
		}
		bd := filepath.Join(dir, name)
		args := []string{"-headend", gatewayAddr, "-ca", ca,
			"-store", filepath.Join(bd, "store"), "-key", filepath.Join(bd, "box.key"), "-cert", filepath.Join(bd, "box.crt"),
			"-activate", code, "-media-key", filepath.Join(data, "media.pub"), "-scheduler-key", schedPub,
			"-up-kbps", "8000", "-down-kbps", fmt.Sprint(downKbps), "-progress", "300ms", "-heartbeat", "500ms",
			"-region", "eu", "-isp", "isp-a"}
		p := startProc(t, name, filepath.Join(bin, "transferd"), args...)
		return boxProc{parseBox(t, p.await(t, `transferd: box (\S+) pieces`)[1]), p, filepath.Join(bd, "store"), args}
	}
	b1, b2, b3 := startBox("box1", 8000), startBox("box2", 8000), startBox("box3", 16000)
	for _, b := range []api.BoxID{server, b1.id, b2.id, b3.id} {
		waitFor(t, 20*time.Second, "box registered", func() bool { s, err := c.Box(ctx, b); return err == nil && s.Online })
	}
	waitFor(t, 20*time.Second, "the media server's titles known", func() bool {
		s, err := c.Box(ctx, server)
		return err == nil && len(s.Holdings) == 3
	})

	t.Run("order and sources follow the lists", func(t *testing.T) {
		// box1 holds nothing: its list is served top first, from the
		// only holder, the media server.
		setList(t, c, b1.id, T1, T2)
		waitComplete(t, c, b1.id, T1, T2)
		// A new title at the top of the list comes next.
		setList(t, c, b1.id, T3, T1, T2)
		waitComplete(t, c, b1.id, T3)
		got := received(t, c, b1.id)
		want := []string{"T1<-server", "T2<-server", "T3<-server"}
		names := map[media.ID]string{T1.ID(): "T1", T2.ID(): "T2", T3.ID(): "T3"}
		boxes := map[api.BoxID]string{server: "server", b1.id: "box1", b2.id: "box2", b3.id: "box3"}
		if d := describe(got, names, boxes); !slices.Equal(d, want) {
			t.Errorf("box1 received %v, want %v", d, want)
		}
		// box2 wants T1, which box1 now holds: a peer sends, not the
		// server (the policy prefers peers).
		setList(t, c, b2.id, T1)
		waitComplete(t, c, b2.id, T1)
		if d := describe(received(t, c, b2.id), names, boxes); !slices.Equal(d, []string{"T1<-box1"}) {
			t.Errorf("box2 received %v, want [T1<-box1]", d)
		}
	})

	t.Run("a donor killed mid-transfer has its portion reassigned", func(t *testing.T) {
		// box3's downlink is twice a box's uplink: box1 and box2 send
		// half each.
		setList(t, c, b3.id, T1)
		var legs []schedstore.Transfer
		waitFor(t, 20*time.Second, "two donors sending to box3", func() bool {
			legs = running(t, c, b3.id)
			return len(legs) == 2
		})
		var killed schedstore.Transfer
		for _, l := range legs {
			if l.Sender == b1.id {
				killed = l
			}
		}
		if killed.ID == 0 {
			t.Fatalf("box1 is not among box3's donors: %+v", legs)
		}
		// Kill box1 once it has sent something, well before it is done.
		waitFor(t, 20*time.Second, "box1 sending", func() bool {
			tr := transfer(t, c, b3.id, killed.ID)
			return tr.Pieces > 0
		})
		b1.proc.kill(t)
		waitComplete(t, c, b3.id, T1)
		all := received(t, c, b3.id)
		// The portion may go to one donor or be split between several.
		var failed bool
		covered := map[int]bool{}
		for _, tr := range all {
			if tr.ID == killed.ID && tr.State == schedstore.TransferFailed {
				failed = true
			}
			if tr.ID > killed.ID && tr.Sender != b1.id && tr.State == schedstore.TransferDone {
				for _, r := range tr.Portions {
					for p := r.First; p <= r.Last; p++ {
						covered[p] = true
					}
				}
			}
		}
		reassigned := true
		for _, r := range killed.Portions {
			for p := r.First; p <= r.Last; p++ {
				reassigned = reassigned && covered[p]
			}
		}
		if !failed {
			t.Errorf("the killed donor's transfer was not recorded failed: %+v", all)
		}
		if !reassigned {
			t.Errorf("box1's portion %v was not reassigned to other donors and completed: %+v", killed.Portions, all)
		}
	})

	t.Run("a silent box goes offline and its jobs are reset", func(t *testing.T) {
		setList(t, c, b2.id, T1, T2)
		var leg schedstore.Transfer
		waitFor(t, 20*time.Second, "box2 receiving T2", func() bool {
			for _, l := range running(t, c, b2.id) {
				if l.Title == T2.ID() && l.Pieces > 0 {
					leg = l
					return true
				}
			}
			return false
		})
		b2.proc.signal(t, syscall.SIGSTOP) // alive, but says nothing
		waitFor(t, 15*time.Second, "box2 offline", func() bool { s, _ := c.Box(ctx, b2.id); return !s.Online })
		s, _ := c.Box(ctx, b2.id)
		if len(s.Receiving) != 0 {
			t.Errorf("the offline box still has jobs: %+v", s.Receiving)
		}
		if tr := transfer(t, c, b2.id, leg.ID); tr.State != schedstore.TransferFailed || !strings.Contains(tr.Outcome, "offline") {
			t.Errorf("its transfer: %s %q, want failed, receiver offline", tr.State, tr.Outcome)
		}
		// Back again, it gets T2 after all.
		b2.proc.signal(t, syscall.SIGCONT)
		waitComplete(t, c, b2.id, T2)
	})

	t.Run("a receiver killed and restarted resumes without refetching", func(t *testing.T) {
		setList(t, c, b2.id, T1, T2, T3)
		var before api.TransferID
		waitFor(t, 20*time.Second, "box2 receiving T3", func() bool {
			moving := false
			for _, l := range running(t, c, b2.id) {
				before = max(before, l.ID)
				moving = moving || l.Title == T3.ID() && l.Pieces > 0
			}
			return moving
		})
		b2.proc.kill(t)
		have := verifiedPieces(t, b2.store, T3)
		if have == 0 || have == T3.Manifest.NumPieces() {
			t.Fatalf("box2 was killed holding %d of %d pieces: not mid-transfer", have, T3.Manifest.NumPieces())
		}
		b2.proc = startProc(t, "box2 again", filepath.Join(bin, "transferd"), b2.args...)
		b2.proc.await(t, `transferd: box (\S+) pieces`)
		waitComplete(t, c, b2.id, T3)
		fetched := 0
		for _, l := range received(t, c, b2.id) {
			if l.Title == T3.ID() && l.ID > before && l.State == schedstore.TransferDone {
				fetched += l.Pieces
			}
		}
		if fetched != T3.Manifest.NumPieces()-have {
			t.Errorf("after the restart box2 fetched %d pieces of T3; it held %d of %d, so want %d", fetched, have, T3.Manifest.NumPieces(), T3.Manifest.NumPieces()-have)
		}
	})
}

// verifiedPieces opens a stopped box's store and counts the title's
// pieces there.
func verifiedPieces(t *testing.T, dir string, ti *piecetest.Title) int {
	t.Helper()
	st, err := store.Open(dir, store.Options{MediaKeys: []ed25519.PublicKey{piecetest.MediaPub}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	have, err := st.Have(ti.ID())
	if err != nil {
		t.Fatal(err)
	}
	return have.Count()
}

func buildBinaries(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	for _, pkg := range []string{".", "../../../p2p/cmd/transferd", "../../../tools/mediaimport"} {
		cmd := exec.Command("go", "build", "-o", bin+"/", pkg)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return bin
}

// proc is a process the test started; its standard error is kept and
// shown if the test fails.
type proc struct {
	name  string
	cmd   *exec.Cmd
	lines chan string
	mu    sync.Mutex
	log   bytes.Buffer
}

func startProc(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), lines: make(chan string, 16)}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = writerFunc(func(b []byte) (int, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.log.Write(b)
	})
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGCONT)
		p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			p.mu.Lock()
			t.Logf("--- %s (standard error) ---\n%s", p.name, p.log.String())
			p.mu.Unlock()
		}
	})
	return p
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// await waits for a line of standard output matching the pattern.
func (p *proc) await(t *testing.T, pattern string) []string {
	t.Helper()
	re := regexp.MustCompile(pattern)
	deadline := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("%s exited before printing %q", p.name, pattern)
			}
			if m := re.FindStringSubmatch(l); m != nil {
				return m
			}
		case <-deadline:
			t.Fatalf("%s did not print %q within a minute", p.name, pattern)
		}
	}
}

func (p *proc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
}

func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

func writePub(t *testing.T, path string, k []byte) {
	t.Helper()
	b, err := firmware.MarshalPublicKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readToken(t *testing.T, data string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, adminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func parseBox(t *testing.T, s string) api.BoxID {
	t.Helper()
	var id api.BoxID
	if err := id.UnmarshalText([]byte(s)); err != nil {
		t.Fatal(err)
	}
	return id
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func setList(t *testing.T, c *admin.Client, box api.BoxID, titles ...*piecetest.Title) {
	t.Helper()
	var ids []media.ID
	for _, ti := range titles {
		ids = append(ids, ti.ID())
	}
	if err := c.SetList(context.Background(), box, ids, 0); err != nil {
		t.Fatal(err)
	}
}

// waitComplete waits until the scheduler records the box holding every
// title complete: confirmed against the whole-title hash.
func waitComplete(t *testing.T, c *admin.Client, box api.BoxID, titles ...*piecetest.Title) {
	t.Helper()
	waitFor(t, 60*time.Second, fmt.Sprintf("box %s to hold %d titles", box, len(titles)), func() bool {
		s, err := c.Box(context.Background(), box)
		if err != nil {
			return false
		}
		for _, ti := range titles {
			if !slices.ContainsFunc(s.Holdings, func(h api.TitleState) bool { return h.Title == ti.ID() && h.Complete }) {
				return false
			}
		}
		return true
	})
}

// received returns the transfers a box received, oldest first.
func received(t *testing.T, c *admin.Client, box api.BoxID) []schedstore.Transfer {
	t.Helper()
	all, err := c.Transfers(context.Background(), box, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var in []schedstore.Transfer
	for _, tr := range all {
		if tr.Receiver == box {
			in = append(in, tr)
		}
	}
	sort.SliceStable(in, func(i, j int) bool { return in[i].ID < in[j].ID })
	return in
}

func running(t *testing.T, c *admin.Client, box api.BoxID) []schedstore.Transfer {
	var out []schedstore.Transfer
	for _, tr := range received(t, c, box) {
		if tr.State == schedstore.TransferRequested || tr.State == schedstore.TransferRunning {
			out = append(out, tr)
		}
	}
	return out
}

func transfer(t *testing.T, c *admin.Client, box api.BoxID, id api.TransferID) schedstore.Transfer {
	t.Helper()
	for _, tr := range received(t, c, box) {
		if tr.ID == id {
			return tr
		}
	}
	t.Fatalf("no transfer %d for box %s", id, box)
	return schedstore.Transfer{}
}

// describe renders the successful transfers as "title<-sender".
func describe(ts []schedstore.Transfer, titles map[media.ID]string, boxes map[api.BoxID]string) []string {
	var out []string
	for _, tr := range ts {
		if tr.State == schedstore.TransferDone {
			out = append(out, titles[tr.Title]+"<-"+boxes[tr.Sender])
		}
	}
	return out
}

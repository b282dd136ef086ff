package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media/store"
	"github.com/boxswarm/boxswarm/p2p/piece/piecetest"
)

// recorder keeps what an agent sent the scheduler.
type recorder struct {
	mu   sync.Mutex
	msgs []api.Body
}

func (r *recorder) send(_ context.Context, b api.Body) error {
	if err := b.Validate(); err != nil {
		return fmt.Errorf("invalid %s: %w", b.Type(), err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, b)
	return nil
}

func transferOf(b api.Body) (api.TransferID, bool) {
	switch b := b.(type) {
	case api.TransferStarted:
		return b.Transfer, true
	case api.TransferProgress:
		return b.Transfer, true
	case api.TransferSucceeded:
		return b.Transfer, true
	case api.TransferFailed:
		return b.Transfer, true
	}
	return 0, false
}

// of returns the reports about transfer id.
func (r *recorder) of(id api.TransferID) []api.Body {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []api.Body
	for _, b := range r.msgs {
		if tid, ok := transferOf(b); ok && tid == id {
			out = append(out, b)
		}
	}
	return out
}

func (r *recorder) all() []api.Body {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]api.Body(nil), r.msgs...)
}

// final waits for the report that ends transfer id and returns every
// report about it.
func (r *recorder) final(t *testing.T, id api.TransferID, within time.Duration) []api.Body {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		msgs := r.of(id)
		for _, b := range msgs {
			switch b.(type) {
			case api.TransferSucceeded, api.TransferFailed:
				return msgs
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("transfer %d: no final report within %v; got %+v", id, within, r.of(id))
	return nil
}

// trackingListener remembers the connections it accepted, so a test can
// cut them as a crash would.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *trackingListener) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // a reset, as when the process dies
		}
		c.Close()
	}
}

// node is an agent under test with its store.
type node struct {
	id    api.BoxID
	store *store.Store
	agent *Agent
	rec   *recorder
	lis   *trackingListener
	addr  string
	stop  context.CancelFunc
	done  chan error
}

func newNode(t *testing.T, b byte, tune func(*Config)) *node {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &node{id: piecetest.BoxID(b), store: piecetest.OpenStore(t, t.TempDir()), rec: &recorder{}, lis: &trackingListener{Listener: l}, addr: l.Addr().String()}
	cfg := Config{
		Self: n.id, Store: n.store, MediaKeys: []ed25519.PublicKey{piecetest.MediaPub}, SchedulerKey: piecetest.SchedulerPub,
		Send: n.rec.send, Listen: n.lis, ProgressEvery: 50 * time.Millisecond, AdmitWait: 2 * time.Second,
		IdleTimeout: 3 * time.Second, Log: piecetest.Logger(t).With("box", fmt.Sprintf("%02x", b)),
	}
	if tune != nil {
		tune(&cfg)
	}
	if n.agent, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.stop, n.done = cancel, make(chan error, 1)
	go func() { n.done <- n.agent.Run(ctx) }()
	t.Cleanup(n.kill)
	return n
}

// kill stops the agent and waits for it.
func (n *node) kill() {
	n.stop()
	<-n.done
	n.done <- nil // for a second kill
}

// starts returns the two TransferStarts of a transfer from one node to
// another, with a real token.
func starts(id api.TransferID, from, to *node, ti *piecetest.Title, portions ...api.PieceRange) (send, recv api.TransferStart) {
	g, tok := piecetest.Grant(id, from.id, to.id, ti, portions...)
	send = api.TransferStart{Transfer: id, Title: ti.ID(), Role: api.RoleSend, Peer: api.Peer{Box: to.id}, Portions: g.Portions, Token: tok, Expires: g.Expires}
	recv = api.TransferStart{Transfer: id, Title: ti.ID(), Role: api.RoleReceive, Peer: api.Peer{Box: from.id, Addr: from.addr}, Initiate: true, Portions: g.Portions, Token: tok, Expires: g.Expires}
	return send, recv
}

func handle(t *testing.T, n *node, b api.Body) {
	t.Helper()
	if err := n.agent.Handle(t.Context(), b); err != nil {
		t.Fatal(err)
	}
}

// kinds lists the message types of reports, collapsing repeated progress.
func kinds(msgs []api.Body) string {
	var out []string
	for _, b := range msgs {
		k := string(b.Type())
		if len(out) > 0 && out[len(out)-1] == k {
			continue
		}
		out = append(out, k)
	}
	return strings.Join(out, " ")
}

func TestTransfer(t *testing.T) {
	dir := t.TempDir()
	ti := piecetest.MakeTitle(t, dir, 48*(64<<10)-500, 64<<10)
	from := newNode(t, 1, func(c *Config) { c.UpLimit = 6 << 20 }) // about half a second
	piecetest.Fill(t, from.store, ti)
	to := newNode(t, 2, nil)
	send, recv := starts(7, from, to, ti)

	// The receiver hears first and connects before the sender knows of
	// the transfer: the connection waits for the sender's TransferStart.
	handle(t, to, recv)
	time.Sleep(200 * time.Millisecond)
	handle(t, from, send)
	handle(t, to, recv) // repeated while running: ignored
	handle(t, from, send)

	got := to.rec.final(t, 7, 10*time.Second)
	if k := kinds(got); k != "transfer_started transfer_progress transfer_succeeded" {
		t.Errorf("receiver reported %s", k)
	}
	if p := got[len(got)-2].(api.TransferProgress); p.Pieces != 48 || p.Bytes != int64(len(ti.Payload)) {
		t.Errorf("last progress %+v", p)
	}
	if n := len(got) - 2; n < 3 {
		t.Errorf("%d progress reports over half a second every 50ms", n)
	}
	hash := ti.PayloadHash()
	if s := got[len(got)-1].(api.TransferSucceeded); !bytes.Equal(s.PayloadHash, hash[:]) {
		t.Errorf("payload hash %x, want %x", s.PayloadHash, hash)
	}
	piecetest.Complete(t, to.store, ti)
	sent := from.rec.final(t, 7, 5*time.Second)
	if k := kinds(sent); k != "transfer_started transfer_progress transfer_succeeded" {
		t.Errorf("sender reported %s", k)
	}
	if s := sent[len(sent)-1].(api.TransferSucceeded); s.PayloadHash != nil {
		t.Errorf("sender sent a payload hash")
	}

	// Repeated after the end: still ignored.
	handle(t, to, recv)
	handle(t, from, send)
	time.Sleep(300 * time.Millisecond)
	if a, b := len(to.rec.of(7)), len(from.rec.of(7)); a != len(got) || b != len(sent) {
		t.Errorf("reports after a repeated TransferStart: %d and %d, had %d and %d", a, b, len(got), len(sent))
	}
	inv, err := to.agent.Inventory()
	if err != nil || len(inv.Titles) != 1 || !inv.Titles[0].Complete || inv.Titles[0].Title != ti.ID() {
		t.Errorf("receiver's inventory %+v, %v", inv, err)
	}
}

func TestThreeSenders(t *testing.T) {
	dir := t.TempDir()
	ti := piecetest.MakeTitle(t, dir, 60*(64<<10)-10, 64<<10)
	to := newNode(t, 9, nil)
	n := ti.Manifest.NumPieces()
	portions := []api.PieceRange{{First: 0, Last: n/3 - 1}, {First: n / 3, Last: 2*n/3 - 1}, {First: 2 * n / 3, Last: n - 1}}
	for i, p := range portions {
		from := newNode(t, byte(1+i), func(c *Config) { c.UpLimit = 2 << 20 })
		piecetest.Fill(t, from.store, ti)
		send, recv := starts(api.TransferID(100+i), from, to, ti, p)
		handle(t, from, send)
		handle(t, to, recv)
	}
	hash := ti.PayloadHash()
	hashes := 0
	for i := range portions {
		got := to.rec.final(t, api.TransferID(100+i), 10*time.Second)
		s, ok := got[len(got)-1].(api.TransferSucceeded)
		if !ok {
			t.Fatalf("transfer %d: %+v", 100+i, got[len(got)-1])
		}
		if s.PayloadHash != nil {
			hashes++
			if !bytes.Equal(s.PayloadHash, hash[:]) {
				t.Errorf("transfer %d: payload hash %x", 100+i, s.PayloadHash)
			}
		}
	}
	if hashes == 0 {
		t.Error("no transfer reported the payload hash of the complete title")
	}
	piecetest.Complete(t, to.store, ti)
}

func TestSenderDies(t *testing.T) {
	for _, how := range []string{"connection reset", "agent stopped"} {
		t.Run(how, func(t *testing.T) {
			ti := piecetest.MakeTitle(t, t.TempDir(), 64*(64<<10), 64<<10)
			from := newNode(t, 1, func(c *Config) { c.UpLimit = 1 << 20 })
			piecetest.Fill(t, from.store, ti)
			to := newNode(t, 2, nil)
			send, recv := starts(8, from, to, ti)
			handle(t, from, send)
			handle(t, to, recv)
			for len(to.rec.of(8)) < 2 { // started and some progress
				time.Sleep(10 * time.Millisecond)
			}
			if how == "connection reset" {
				from.lis.cut()
			} else {
				from.kill()
			}
			got := to.rec.final(t, 8, 5*time.Second)
			f, ok := got[len(got)-1].(api.TransferFailed)
			if !ok || !strings.Contains(f.Reason, from.id.String()) {
				t.Fatalf("receiver reported %+v, want a failure naming the donor", got[len(got)-1])
			}
			t.Logf("reason: %s", f.Reason)
			have, _ := to.store.Have(ti.ID())
			if have.Count() == 0 || have.Complete() {
				t.Errorf("receiver has %d of %d pieces", have.Count(), have.Len())
			}
			// The scheduler reassigns: the rest comes from another donor.
			other := newNode(t, 3, nil)
			piecetest.Fill(t, other.store, ti)
			send, recv = starts(9, other, to, ti)
			handle(t, other, send)
			handle(t, to, recv)
			if got := to.rec.final(t, 9, 5*time.Second); kinds(got) != "transfer_started transfer_progress transfer_succeeded" {
				t.Fatalf("second donor: %s", kinds(got))
			}
			if p := other.rec.final(t, 9, time.Second); p[len(p)-2].(api.TransferProgress).Pieces != have.Len()-have.Count() {
				t.Errorf("second donor sent %+v, want only the %d missing pieces", p[len(p)-2], have.Len()-have.Count())
			}
			piecetest.Complete(t, to.store, ti)
		})
	}
}

func TestCancel(t *testing.T) {
	for _, ends := range []string{"both", "receiver", "sender"} {
		t.Run(ends, func(t *testing.T) {
			ti := piecetest.MakeTitle(t, t.TempDir(), 64*(64<<10), 64<<10)
			from := newNode(t, 1, func(c *Config) { c.UpLimit = 1 << 20 })
			piecetest.Fill(t, from.store, ti)
			to := newNode(t, 2, nil)
			send, recv := starts(11, from, to, ti)
			handle(t, from, send)
			handle(t, to, recv)
			for len(to.rec.of(11)) < 2 {
				time.Sleep(10 * time.Millisecond)
			}
			cancel := api.TransferCancel{Transfer: 11, Reason: "test"}
			var cancelled, other *node
			switch ends {
			case "both":
				handle(t, to, cancel)
				handle(t, from, cancel)
			case "receiver":
				handle(t, to, cancel)
				cancelled, other = to, from
			case "sender":
				handle(t, from, cancel)
				cancelled, other = from, to
			}
			nTo, nFrom := len(to.rec.of(11)), len(from.rec.of(11))
			// The sender lets go of the title promptly.
			deadline := time.Now().Add(2 * time.Second)
			for from.store.DeleteTitle(ti.ID()) != nil {
				if time.Now().After(deadline) {
					t.Fatal("sender still holds the title 2s after the cancel")
				}
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond)
			if ends == "both" {
				if a, b := len(to.rec.of(11)), len(from.rec.of(11)); a != nTo || b != nFrom {
					t.Errorf("reports after the cancel: %+v / %+v", to.rec.of(11)[nTo:], from.rec.of(11)[nFrom:])
				}
			} else {
				n := nTo
				if cancelled == from {
					n = nFrom
				}
				if len(cancelled.rec.of(11)) != n {
					t.Errorf("the cancelled end reported %+v", cancelled.rec.of(11)[n:])
				}
				// The other end learned from the piece protocol and
				// reports a failure, which the scheduler ignores.
				got := other.rec.final(t, 11, 2*time.Second)
				if f, ok := got[len(got)-1].(api.TransferFailed); !ok || !strings.Contains(f.Reason, "cancel") {
					t.Errorf("other end reported %+v", got[len(got)-1])
				}
			}
			if have, _ := to.store.Have(ti.ID()); have.Complete() {
				t.Error("title completed despite the cancel")
			}
		})
	}
}

func TestAdmission(t *testing.T) {
	ti := piecetest.MakeTitle(t, t.TempDir(), 8*(64<<10), 64<<10)
	for _, tc := range []struct {
		name      string
		tokenOnly bool
		announce  func(send api.TransferStart) api.TransferStart // nil: the sender is not told
		ok        bool
	}{
		{"no transfer start", false, nil, false},
		{"token only", true, nil, true},
		{"other portions", false, func(s api.TransferStart) api.TransferStart {
			s.Portions = []api.PieceRange{{First: 0, Last: 3}}
			return s
		}, false},
		{"other receiver", false, func(s api.TransferStart) api.TransferStart {
			s.Peer.Box = piecetest.BoxID(0x77)
			return s
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from := newNode(t, 1, func(c *Config) {
				c.AcceptTokenOnly = tc.tokenOnly
				c.AdmitWait = 300 * time.Millisecond
			})
			piecetest.Fill(t, from.store, ti)
			to := newNode(t, 2, nil)
			send, recv := starts(12, from, to, ti)
			if tc.announce != nil {
				handle(t, from, tc.announce(send))
			}
			handle(t, to, recv)
			got := to.rec.final(t, 12, 5*time.Second)
			last := got[len(got)-1]
			if _, ok := last.(api.TransferSucceeded); ok != tc.ok {
				t.Fatalf("receiver reported %+v", last)
			}
			if !tc.ok {
				if f := last.(api.TransferFailed); !strings.Contains(f.Reason, "not authorized") {
					t.Errorf("reason %q", f.Reason)
				}
				if ts, _ := to.store.Titles(); len(ts) != 0 {
					t.Errorf("refused receiver got %+v", ts)
				}
				return
			}
			piecetest.Complete(t, to.store, ti)
			// The token-only transfer is reported by the server too.
			if k := kinds(from.rec.final(t, 12, time.Second)); k != "transfer_started transfer_progress transfer_succeeded" {
				t.Errorf("server reported %s", k)
			}
		})
	}
}

func TestSenderFailures(t *testing.T) {
	ti := piecetest.MakeTitle(t, t.TempDir(), 4*(64<<10), 64<<10)
	from := newNode(t, 1, nil)
	to := newNode(t, 2, nil)

	// A title the sender does not hold fails at once.
	send, _ := starts(20, from, to, ti)
	handle(t, from, send)
	if f, ok := from.rec.final(t, 20, time.Second)[0].(api.TransferFailed); !ok || !strings.Contains(f.Reason, "title") {
		t.Errorf("sending a title not held: %+v", f)
	}

	// A receiver that never connects: failed once the token expires.
	piecetest.Fill(t, from.store, ti)
	send, _ = starts(21, from, to, ti)
	send.Expires = time.Now().Add(300 * time.Millisecond)
	handle(t, from, send)
	if f, ok := from.rec.final(t, 21, 2*time.Second)[0].(api.TransferFailed); !ok || !strings.Contains(f.Reason, "did not connect") {
		t.Errorf("receiver never came: %+v", f)
	}

	// A receiver without the sender's address fails at once.
	_, recv := starts(22, from, to, ti)
	recv.Peer.Addr = ""
	handle(t, to, recv)
	if f, ok := to.rec.final(t, 22, time.Second)[0].(api.TransferFailed); !ok || !strings.Contains(f.Reason, "no piece address") {
		t.Errorf("no address: %+v", f)
	}

	// Bad commands are refused.
	bad := send
	bad.Portions = nil
	if err := from.agent.Handle(t.Context(), bad); err == nil {
		t.Error("TransferStart without portions accepted")
	}
	bad = send
	bad.Peer.Box = from.id
	if err := from.agent.Handle(t.Context(), bad); err == nil {
		t.Error("TransferStart to itself accepted")
	}
}

func TestInventoryAndDelete(t *testing.T) {
	n := newNode(t, 1, nil)
	a := piecetest.MakeTitle(t, t.TempDir(), 4*(64<<10), 64<<10)
	b := piecetest.MakeTitle(t, t.TempDir(), 12*(64<<10), 64<<10)
	piecetest.Fill(t, n.store, a)
	piecetest.Fill(t, n.store, b, api.PieceRange{First: 0, Last: 2}, api.PieceRange{First: 9, Last: 9})
	inv, err := n.agent.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	if err := inv.Validate(); err != nil || !inv.Full || len(inv.Titles) != 2 {
		t.Fatalf("inventory %+v: %v", inv, err)
	}
	for _, ts := range inv.Titles {
		switch ts.Title {
		case a.ID():
			if !ts.Complete || ts.Have != nil {
				t.Errorf("complete title: %+v", ts)
			}
		case b.ID():
			if ts.Complete || !bytes.Equal(ts.Have, []byte{0xe0, 0x40}) {
				t.Errorf("partial title: %+v", ts)
			}
		}
	}

	handle(t, n, api.DeleteAnswer{Title: a.ID(), Approved: false})
	handle(t, n, api.DeleteAnswer{Title: a.ID(), Approved: true})
	if _, _, err := n.store.Manifest(a.ID()); !errors.Is(err, store.ErrUnknownTitle) {
		t.Errorf("approved deletion left the title: %v", err)
	}
	msgs := n.rec.all()
	if len(msgs) != 1 {
		t.Fatalf("sent %+v, want one inventory", msgs)
	}
	if inv := msgs[0].(api.Inventory); !inv.Full || len(inv.Titles) != 1 || inv.Titles[0].Title != b.ID() {
		t.Errorf("inventory after deletion %+v", inv)
	}
	// A locked title is not deleted.
	unlock, _ := n.store.Lock(b.ID(), "playing")
	defer unlock()
	if err := n.agent.Handle(t.Context(), api.DeleteAnswer{Title: b.ID(), Approved: true}); !errors.Is(err, store.ErrLocked) {
		t.Errorf("deleting a locked title: %v", err)
	}
}

func TestSplitInventory(t *testing.T) {
	var full api.Inventory
	full.Full = true
	for i := range 10000 {
		ts := api.TitleState{Title: [16]byte{byte(i >> 8), byte(i)}, Complete: i%3 != 0}
		if !ts.Complete {
			ts.Have = make([]byte, 1+i%1000)
		}
		full.Titles = append(full.Titles, ts)
	}
	for _, tc := range []api.Inventory{full, {Full: true}, {Titles: full.Titles[:5]}} {
		parts := SplitInventory(tc)
		var n int
		for i, p := range parts {
			if err := p.Validate(); err != nil {
				t.Fatalf("part %d: %v", i, err)
			}
			if p.Full != (i == 0 && tc.Full) {
				t.Errorf("part %d: full %v", i, p.Full)
			}
			body, _ := jsonSize(p)
			if body > api.MaxFrame-1024 {
				t.Errorf("part %d: %d bytes of JSON", i, body)
			}
			n += len(p.Titles)
		}
		if n != len(tc.Titles) {
			t.Errorf("%d titles in %d parts, want %d", n, len(parts), len(tc.Titles))
		}
	}
}

func TestRegister(t *testing.T) {
	n := newNode(t, 1, func(c *Config) { c.UpLimit, c.DownLimit = 1_000_000, 4_000_000 })
	r, err := n.agent.Register(api.Register{Location: api.Location{Region: "test"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	if r.PieceAddr != n.addr || r.UpKbps != 8000 || r.DownKbps != 32000 || r.Capacity != 1<<40 || r.Free != 1<<40 || r.Location.Region != "test" {
		t.Errorf("register %+v", r)
	}
}

func TestRecheckAfterRejectedResult(t *testing.T) {
	ti := piecetest.MakeTitle(t, t.TempDir(), 6*(64<<10), 64<<10)
	from := newNode(t, 1, nil)
	piecetest.Fill(t, from.store, ti)
	to := newNode(t, 2, nil)
	send, recv := starts(30, from, to, ti)
	handle(t, from, send)
	handle(t, to, recv)
	if got := to.rec.final(t, 30, 5*time.Second); kinds(got) != "transfer_started transfer_progress transfer_succeeded" {
		t.Fatalf("receiver reported %s", kinds(got))
	}
	// The disk changed under the store: piece 0 is now garbage.
	seg := fmt.Sprintf("%s/segments/%s/0.seg", to.store.Dir(), ti.ID())
	corruptByte(t, seg, 10)

	handle(t, to, api.TransferCancel{Transfer: 30, Reason: "whole-title hash mismatch: verify and discard the copy"})
	var inv api.Inventory
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		msgs := to.rec.all()
		if i, ok := msgs[len(msgs)-1].(api.Inventory); ok {
			inv = i
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no inventory update after the cancel: %+v", msgs)
		}
	}
	if inv.Full || len(inv.Titles) != 1 || inv.Titles[0].Complete || inv.Titles[0].Have[0]&0x80 != 0 {
		t.Errorf("title state after the recheck: %+v", inv)
	}
	if n := len(to.rec.of(30)); n != 3 {
		t.Errorf("%d reports for the transfer, want the 3 before the cancel", n)
	}
	// Once only.
	handle(t, to, api.TransferCancel{Transfer: 30})
	time.Sleep(100 * time.Millisecond)
	if _, ok := to.rec.all()[len(to.rec.all())-2].(api.Inventory); ok {
		t.Error("second cancel checked again")
	}
}

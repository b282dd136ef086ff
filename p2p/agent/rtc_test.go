package agent

// Transfers over real WebRTC data channels on loopback, signalled through
// rtctest's stand-in for the scheduler. That a peer whose DTLS certificate
// does not match the fingerprint the scheduler relayed gets no connection
// is p2p/rtc's TestDTLSFingerprintMismatch (security_test.go); these tests
// take the transport's word for who the peer is and check what the agent
// does with it.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media/store"
	"github.com/boxswarm/boxswarm/p2p/piece"
	"github.com/boxswarm/boxswarm/p2p/piece/piecetest"
	"github.com/boxswarm/boxswarm/p2p/rtc"
	"github.com/boxswarm/boxswarm/p2p/rtc/rtctest"
)

// newRTCNode is newNode for a box whose transfers all go over WebRTC: no
// TCP listener, and the transport of box b on relay r, made from rcfg.
func newRTCNode(t *testing.T, r *rtctest.Relay, b byte, rcfg rtc.Config, tune func(*Config)) *node {
	t.Helper()
	n := &node{id: piecetest.BoxID(b), store: piecetest.OpenStore(t, t.TempDir()), rec: &recorder{}}
	cfg := Config{
		Self: n.id, Store: n.store, MediaKeys: []ed25519.PublicKey{piecetest.MediaPub}, SchedulerKey: piecetest.SchedulerPub,
		Send: n.rec.send, RTC: r.Add(n.id, rcfg), ProgressEvery: 50 * time.Millisecond, AdmitWait: 2 * time.Second,
		IdleTimeout: 3 * time.Second, Log: piecetest.Logger(t).With("box", fmt.Sprintf("%02x", b)),
	}
	if tune != nil {
		tune(&cfg)
	}
	var err error
	if n.agent, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.stop, n.done = cancel, make(chan error, 1)
	go func() { n.done <- n.agent.Run(ctx) }()
	t.Cleanup(n.kill)
	return n
}

// rtcStarts returns the two TransferStarts of a transfer from one box to
// another, with a real token; exactly one end initiates, as the scheduler
// says.
func rtcStarts(id api.TransferID, from, to api.BoxID, ti *piecetest.Title, senderInitiates bool, portions ...api.PieceRange) (send, recv api.TransferStart) {
	g, tok := piecetest.Grant(id, from, to, ti, portions...)
	send = api.TransferStart{Transfer: id, Title: ti.ID(), Role: api.RoleSend, Peer: api.Peer{Box: to}, Initiate: senderInitiates, Portions: g.Portions, Token: tok, Expires: g.Expires}
	recv = api.TransferStart{Transfer: id, Title: ti.ID(), Role: api.RoleReceive, Peer: api.Peer{Box: from}, Initiate: !senderInitiates, Portions: g.Portions, Token: tok, Expires: g.Expires}
	return send, recv
}

// lastOf returns the last report of type R in msgs.
func lastOf[R api.Body](msgs []api.Body) (R, bool) {
	for i := len(msgs) - 1; i >= 0; i-- {
		if r, ok := msgs[i].(R); ok {
			return r, true
		}
	}
	var zero R
	return zero, false
}

// succeeded fails t unless msgs end with TransferSucceeded, and returns it.
func succeeded(t *testing.T, who string, msgs []api.Body) api.TransferSucceeded {
	t.Helper()
	s, ok := msgs[len(msgs)-1].(api.TransferSucceeded)
	if !ok {
		t.Fatalf("%s reported %s, ending with %+v", who, kinds(msgs), msgs[len(msgs)-1])
	}
	return s
}

// hasBit reads an api piece bitmap: bit 7 of byte 0 is piece 0.
func hasBit(b []byte, i int) bool { return i/8 < len(b) && b[i/8]&(0x80>>(i%8)) != 0 }

// checkStored fails t if a piece the store counts as present does not hold
// the title's bytes, and returns the store's bitmap.
func checkStored(t *testing.T, st *store.Store, ti *piecetest.Title) store.Bitmap {
	t.Helper()
	have, err := st.Have(ti.ID())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, ti.Manifest.PieceSize)
	for i := range have.Len() {
		if !have.Has(i) {
			continue
		}
		got, err := st.ReadPiece(ti.ID(), i, buf)
		if err != nil {
			t.Fatalf("read present piece %d: %v", i, err)
		}
		if !bytes.Equal(got, ti.Piece(i)) {
			t.Errorf("piece %d is counted as present but its bytes are not the title's", i)
		}
	}
	return have
}

func TestRTCMultiDonor(t *testing.T) {
	r := rtctest.NewRelay(t)
	ti := piecetest.MakeTitle(t, t.TempDir(), 60*(64<<10)-10, 64<<10)
	to := newRTCNode(t, r, 9, rtc.Config{}, nil)
	n := ti.Manifest.NumPieces()
	portions := []api.PieceRange{{First: 0, Last: n/3 - 1}, {First: n / 3, Last: 2*n/3 - 1}, {First: 2 * n / 3, Last: n - 1}}
	donors := make([]*node, len(portions))
	for i := range portions {
		// Capped so that the three run side by side on the receiver's
		// transport.
		donors[i] = newRTCNode(t, r, byte(1+i), rtc.Config{}, func(c *Config) { c.UpLimit = 2 << 20 })
		piecetest.Fill(t, donors[i].store, ti)
	}
	start := time.Now()
	for i, p := range portions {
		// The first donor makes the offer; the receiver makes the others.
		send, recv := rtcStarts(api.TransferID(100+i), donors[i].id, to.id, ti, i == 0, p)
		handle(t, donors[i], send)
		handle(t, to, recv)
	}

	hashes := 0
	for i, p := range portions {
		id := api.TransferID(100 + i)
		got := to.rec.final(t, id, 15*time.Second)
		s := succeeded(t, fmt.Sprintf("receiver of transfer %d", id), got)
		if s.PayloadHash != nil {
			hashes++
			if !bytes.Equal(s.PayloadHash, ti.Manifest.PayloadHash[:]) {
				t.Errorf("transfer %d: payload hash %x, the manifest's is %x", id, s.PayloadHash, ti.Manifest.PayloadHash)
			}
		}
		want := p.Last - p.First + 1
		if pr, ok := lastOf[api.TransferProgress](got); !ok || pr.Pieces != want {
			t.Errorf("receiver's last progress for transfer %d: %+v, want %d pieces from donor %d", id, pr, want, i)
		}
		sent := donors[i].rec.final(t, id, 5*time.Second)
		if k := kinds(sent); k != "transfer_started transfer_progress transfer_succeeded" {
			t.Errorf("donor %d reported %s", i, k)
		}
		if s := succeeded(t, fmt.Sprintf("donor %d", i), sent); s.PayloadHash != nil {
			t.Errorf("donor %d sent a payload hash", i)
		}
		if pr, ok := lastOf[api.TransferProgress](sent); !ok || pr.Pieces != want || pr.Pieces == 0 {
			t.Errorf("donor %d's last progress %+v, want %d pieces", i, pr, want)
		}
	}
	t.Logf("%d pieces from 3 donors in %v", n, time.Since(start).Round(time.Millisecond))
	if hashes == 0 {
		t.Error("no TransferSucceeded carried the payload hash of the complete title")
	}
	piecetest.Complete(t, to.store, ti)
	if errs := r.Errors(); len(errs) != 0 {
		t.Errorf("signals refused: %v", errs)
	}
}

// corruptDonor is a donor that speaks the piece protocol by hand over its
// own WebRTC connection and sends change(ti, i) as piece i.
type corruptDonor struct {
	ti     *piecetest.Title
	change func(ti *piecetest.Title, i int) []byte

	// What it did: the pieces it sent whole (chunks, then PieceEnd), those
	// of them whose bytes were not the title's, and the receiver's last
	// frame (Cancel, Error, Done) or nil.
	sent, corrupt []int
	last          piece.Message
}

// serve answers the receiver's Hello with Accept and the real manifest,
// then every request with change's bytes, until the receiver stops.
func (d *corruptDonor) serve(c io.ReadWriter) error {
	buf := make([]byte, piece.MaxFrame)
	m, err := piece.ReadFrame(c, buf)
	if err != nil {
		return fmt.Errorf("read hello: %w", err)
	}
	h, ok := m.(*piece.Hello)
	if !ok {
		return fmt.Errorf("first frame %v, not a hello", m.Type())
	}
	accept := &piece.Accept{Window: 16}
	if h.WantManifest {
		accept.ManifestSize = uint32(len(d.ti.Signed))
	}
	out := piece.AppendFrame(nil, accept)
	if h.WantManifest {
		for off := 0; off < len(d.ti.Signed); off += piece.MaxBody {
			out = piece.AppendFrame(out, &piece.Manifest{Data: d.ti.Signed[off:min(off+piece.MaxBody, len(d.ti.Signed))]})
		}
	}
	if _, err := c.Write(out); err != nil {
		return fmt.Errorf("write accept: %w", err)
	}
	for {
		m, err := piece.ReadFrame(c, buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("the receiver neither asked for more nor went: %w", err)
		}
		if err != nil {
			return nil // the receiver went
		}
		req, ok := m.(*piece.Request)
		if !ok {
			d.last = m
			return nil
		}
		for i := req.First; i <= req.Last; i++ {
			data := d.change(d.ti, i)
			for off := 0; off < len(data); off += 16 << 10 {
				out = piece.AppendFrame(out[:0], &piece.Chunk{Piece: i, Offset: off, Data: data[off:min(off+16<<10, len(data))]})
				if _, err := c.Write(out); err != nil {
					return nil
				}
			}
			if _, err := c.Write(piece.AppendFrame(out[:0], &piece.PieceEnd{Piece: i})); err != nil {
				return nil
			}
			d.sent = append(d.sent, i)
			if !bytes.Equal(data, d.ti.Piece(i)) {
				d.corrupt = append(d.corrupt, i)
			}
		}
	}
}

// flipped returns piece i with one bit changed at off.
func flipped(ti *piecetest.Title, i, off int) []byte {
	p := bytes.Clone(ti.Piece(i))
	p[off%len(p)] ^= 0x10
	return p
}

func TestRTCMaliciousDonor(t *testing.T) {
	ti := piecetest.MakeTitle(t, t.TempDir(), 40*(64<<10)-300, 64<<10)
	n := ti.Manifest.NumPieces()
	for _, tc := range []struct {
		name   string
		change func(ti *piecetest.Title, i int) []byte
		// many: the donor gets to send several corrupt pieces before
		// the receiver stops it.
		many bool
	}{
		{"one bit in piece 5", func(ti *piecetest.Title, i int) []byte {
			if i == 5 {
				return flipped(ti, i, 1000)
			}
			return ti.Piece(i)
		}, false},
		{"every piece", func(ti *piecetest.Title, i int) []byte { return flipped(ti, i, 7*i) }, true},
		{"each piece's neighbour", func(ti *piecetest.Title, i int) []byte {
			// Real bytes of the title, of the right size, in the wrong
			// place (the last two pieces may differ in size).
			if i+1 < n-1 {
				return ti.Piece(i + 1)
			}
			return flipped(ti, i, 0)
		}, true},
		{"tail of odd pieces zeroed", func(ti *piecetest.Title, i int) []byte {
			p := bytes.Clone(ti.Piece(i))
			if i%2 == 1 {
				clear(p[len(p)-100:])
			}
			return p
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rtctest.NewRelay(t)
			to := newRTCNode(t, r, 2, rtc.Config{}, nil)
			badID := piecetest.BoxID(0xbd)
			bad := r.Add(badID, rtc.Config{})
			ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
			defer cancel()

			send, recv := rtcStarts(40, badID, to.id, ti, true)
			d := &corruptDonor{ti: ti, change: tc.change}
			served := make(chan error, 1)
			go func() {
				c, err := bad.Connect(ctx, send.Transfer, to.id, send.Initiate)
				if err != nil {
					served <- err
					return
				}
				defer c.Close()
				// The receiver's close ends serve; this is in case it does not.
				c.SetDeadline(time.Now().Add(10 * time.Second))
				served <- d.serve(c)
			}()
			handle(t, to, recv)
			got := to.rec.final(t, 40, 10*time.Second)
			if err := <-served; err != nil {
				t.Fatalf("malicious donor: %v", err)
			}
			t.Logf("malicious donor sent %d pieces, %d of them corrupt; the receiver's last frame %T %+v", len(d.sent), len(d.corrupt), d.last, d.last)

			f, ok := got[len(got)-1].(api.TransferFailed)
			switch {
			case !ok:
				t.Fatalf("receiver reported %+v from the malicious donor", got[len(got)-1])
			case f.BadPieces < 1 || f.BadPieces > len(d.corrupt):
				t.Errorf("receiver reported %d bad pieces; the donor sent %d corrupt ones", f.BadPieces, len(d.corrupt))
			case !strings.Contains(f.Reason, badID.String()):
				t.Errorf("the failure does not name the donor: %q", f.Reason)
			}
			if len(d.corrupt) == 0 || tc.many && len(d.corrupt) < 2 {
				t.Fatalf("the donor sent %d corrupt pieces: the test tested nothing", len(d.corrupt))
			}
			t.Logf("receiver: %d bad pieces, reason %q", f.BadPieces, f.Reason)

			// Nothing corrupt is counted as present: not in the store,
			// not in any bitmap reported to the scheduler.
			have := checkStored(t, to.store, ti)
			for _, i := range d.corrupt {
				if have.Has(i) {
					t.Errorf("corrupt piece %d is in the store", i)
				}
			}
			for _, b := range got {
				if p, ok := b.(api.TransferProgress); ok {
					for _, i := range d.corrupt {
						if hasBit(p.Have, i) {
							t.Errorf("progress %+v reports corrupt piece %d as present", p, i)
						}
					}
					if p.Pieces > have.Count() {
						t.Errorf("progress counts %d pieces stored, the store has %d", p.Pieces, have.Count())
					}
				}
			}

			// The scheduler sends an honest donor: the title completes.
			honest := newRTCNode(t, r, 3, rtc.Config{}, nil)
			piecetest.Fill(t, honest.store, ti)
			send, recv = rtcStarts(41, honest.id, to.id, ti, false)
			handle(t, honest, send)
			handle(t, to, recv)
			s := succeeded(t, "receiver from the honest donor", to.rec.final(t, 41, 10*time.Second))
			if !bytes.Equal(s.PayloadHash, ti.Manifest.PayloadHash[:]) {
				t.Errorf("payload hash %x, the manifest's is %x", s.PayloadHash, ti.Manifest.PayloadHash)
			}
			piecetest.Complete(t, to.store, ti)
			sent := honest.rec.final(t, 41, 5*time.Second)
			if p, ok := lastOf[api.TransferProgress](sent); !ok || p.Pieces != n-have.Count() {
				t.Errorf("honest donor sent %+v, want the %d pieces missing", p, n-have.Count())
			}
			if errs := r.Errors(); len(errs) != 0 {
				t.Errorf("signals refused: %v", errs)
			}
		})
	}
}

// helloFrames sends a Hello on c (asking for the manifest) and returns
// every frame that came back before the connection ended, and how it
// ended.
func helloFrames(c *rtc.Conn, g api.Grant, tok []byte) ([]piece.Message, error) {
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return nil, err
	}
	if _, err := c.Write(piece.AppendFrame(nil, &piece.Hello{Grant: g, Token: tok, WantManifest: true})); err != nil {
		return nil, err
	}
	buf := make([]byte, piece.MaxFrame)
	var got []piece.Message
	for {
		m, err := piece.ReadFrame(c, buf)
		if err != nil {
			return got, err
		}
		if r, ok := m.(*piece.Refuse); ok {
			m = &piece.Refuse{Code: r.Code, Reason: strings.Clone(r.Reason)}
		}
		got = append(got, m)
	}
}

func TestRTCUnauthorized(t *testing.T) {
	ti := piecetest.MakeTitle(t, t.TempDir(), 16*(64<<10), 64<<10)
	for _, server := range []bool{false, true} {
		t.Run(map[bool]string{false: "box donor", true: "media server"}[server], func(t *testing.T) {
			r := rtctest.NewRelay(t)
			donor := newRTCNode(t, r, 1, rtc.Config{AcceptUnsolicited: server}, func(c *Config) { c.AcceptTokenOnly = server })
			piecetest.Fill(t, donor.store, ti)
			to := newRTCNode(t, r, 2, rtc.Config{}, nil)
			attackerID := piecetest.BoxID(0x66)
			attacker := r.Add(attackerID, rtc.Config{})
			ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
			defer cancel()

			// The honest transfer. A box donor hears of it first and
			// makes the offer; the receiver is told only after the
			// attacks, so the transfer is free for the taking all along.
			// A media server hears nothing: the receiver initiates.
			const honest = 50
			send, recv := rtcStarts(honest, donor.id, to.id, ti, !server)
			if !server {
				handle(t, donor, send)
			}
			honestGrant, honestToken := piecetest.Grant(honest, donor.id, to.id, ti)
			honestGrant.Expires = send.Expires

			attacks := []struct {
				name string
				// hello is what the attacker presents, given the grant
				// the scheduler would have issued it for its own
				// connection.
				hello func(own api.Grant) (api.Grant, []byte)
			}{
				{"token signed by another key", func(g api.Grant) (api.Grant, []byte) { return g, g.Sign(piecetest.OtherKey) }},
				{"expired token", func(g api.Grant) (api.Grant, []byte) {
					g.Expires = time.Now().Add(-2 * time.Minute).Truncate(time.Second)
					return g, g.Sign(piecetest.SchedulerKey)
				}},
				// The grant names box 2 and the honest transfer; the
				// WebRTC connection is the attacker's, of its own
				// transfer.
				{"another receiver's token", func(api.Grant) (api.Grant, []byte) { return honestGrant, honestToken }},
				// The connection's own transfer, but another receiver.
				{"token naming another receiver", func(g api.Grant) (api.Grant, []byte) {
					g.Receiver = to.id
					return g, g.Sign(piecetest.SchedulerKey)
				}},
			}
			for i, a := range attacks {
				t.Run(a.name, func(t *testing.T) {
					id := api.TransferID(60 + i)
					own, ownTok := piecetest.Grant(id, donor.id, attackerID, ti)
					var c *rtc.Conn
					var err error
					if server {
						c, err = attacker.Connect(ctx, id, donor.id, true)
					} else {
						// The scheduler did pair the two for a transfer of
						// the attacker's: that is the only way a box
						// connects to another.
						handle(t, donor, api.TransferStart{Transfer: id, Title: ti.ID(), Role: api.RoleSend, Peer: api.Peer{Box: attackerID}, Initiate: true, Portions: own.Portions, Token: ownTok, Expires: own.Expires})
						c, err = attacker.Connect(ctx, id, donor.id, false)
					}
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					g, tok := a.hello(own)
					got, end := helloFrames(c, g, tok)
					if len(got) != 1 {
						var types []string
						for _, m := range got {
							types = append(types, m.Type().String())
						}
						t.Fatalf("the attacker got %d frames (%s), want one Refuse", len(got), strings.Join(types, ", "))
					}
					if rf, ok := got[0].(*piece.Refuse); !ok || rf.Code != piece.RefuseUnauthorized {
						t.Errorf("the attacker got %+v, want Refuse unauthorized", got[0])
					}
					if errors.Is(end, os.ErrDeadlineExceeded) {
						t.Errorf("the donor left the connection open after refusing: %v", end)
					}
					if rep := donor.rec.of(id); len(rep) != 0 {
						t.Errorf("the donor reported %+v for the attacker's transfer", rep)
					}
				})
			}

			handle(t, to, recv)
			s := succeeded(t, "honest receiver", to.rec.final(t, honest, 10*time.Second))
			if !bytes.Equal(s.PayloadHash, ti.Manifest.PayloadHash[:]) {
				t.Errorf("payload hash %x, the manifest's is %x", s.PayloadHash, ti.Manifest.PayloadHash)
			}
			piecetest.Complete(t, to.store, ti)
			if k := kinds(donor.rec.final(t, honest, 5*time.Second)); k != "transfer_started transfer_progress transfer_succeeded" {
				t.Errorf("donor reported %s for the honest transfer", k)
			}
			for _, b := range donor.rec.all() {
				if id, ok := transferOf(b); ok && id != honest {
					t.Errorf("donor reported %+v", b)
				}
			}
			if errs := r.Errors(); len(errs) != 0 {
				t.Errorf("signals refused: %v", errs)
			}
		})
	}
}

func TestRTCInitiate(t *testing.T) {
	ti := piecetest.MakeTitle(t, t.TempDir(), 24*(64<<10)-1000, 64<<10)
	for _, tc := range []struct {
		name            string
		senderInitiates bool
		// server: the sender is a media server (AcceptTokenOnly) that
		// never hears of the transfer.
		server bool
	}{
		{"sender initiates", true, false},
		{"receiver initiates", false, false},
		{"media server", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rtctest.NewRelay(t)
			from := newRTCNode(t, r, 1, rtc.Config{AcceptUnsolicited: tc.server}, func(c *Config) { c.AcceptTokenOnly = tc.server })
			piecetest.Fill(t, from.store, ti)
			to := newRTCNode(t, r, 2, rtc.Config{}, nil)
			send, recv := rtcStarts(70, from.id, to.id, ti, tc.senderInitiates)
			start := time.Now()
			switch {
			case tc.server:
				handle(t, to, recv)
			case tc.senderInitiates:
				// The offer waits at the receiver for its TransferStart.
				handle(t, from, send)
				time.Sleep(200 * time.Millisecond)
				handle(t, to, recv)
			default:
				handle(t, to, recv)
				time.Sleep(200 * time.Millisecond)
				handle(t, from, send)
			}
			got := to.rec.final(t, 70, 10*time.Second)
			t.Logf("transfer took %v", time.Since(start).Round(time.Millisecond))
			if k := kinds(got); k != "transfer_started transfer_progress transfer_succeeded" {
				t.Errorf("receiver reported %s", k)
			}
			s := succeeded(t, "receiver", got)
			if !bytes.Equal(s.PayloadHash, ti.Manifest.PayloadHash[:]) {
				t.Errorf("payload hash %x, the manifest's is %x", s.PayloadHash, ti.Manifest.PayloadHash)
			}
			piecetest.Complete(t, to.store, ti)
			sent := from.rec.final(t, 70, 5*time.Second)
			if k := kinds(sent); k != "transfer_started transfer_progress transfer_succeeded" {
				t.Errorf("sender reported %s", k)
			}
			if p, ok := lastOf[api.TransferProgress](sent); !ok || p.Pieces != ti.Manifest.NumPieces() {
				t.Errorf("sender's last progress %+v, want all %d pieces", p, ti.Manifest.NumPieces())
			}
			if errs := r.Errors(); len(errs) != 0 {
				t.Errorf("signals refused: %v", errs)
			}
		})
	}
}

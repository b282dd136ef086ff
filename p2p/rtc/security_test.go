package rtc

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
)

var fingerprintLine = regexp.MustCompile(`(?m)^a=fingerprint:sha-256 [0-9A-Fa-f:]+\r?$`)

// otherFingerprint is the SHA-256 fingerprint of a certificate nobody
// presents.
func otherFingerprint(t testing.TB) string {
	b := make([]byte, 64)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	parts := make([]string, len(sum))
	for i, x := range sum {
		parts[i] = fmt.Sprintf("%02X", x)
	}
	return strings.Join(parts, ":")
}

// TestDTLSFingerprintMismatch replaces the fingerprint in one end's SDP on
// its way through the relay, as a scheduler (or anyone between the boxes)
// substituting its own certificate would: the other end must refuse the
// DTLS peer, and neither Connect may succeed.
func TestDTLSFingerprintMismatch(t *testing.T) {
	base := goroutineBase()
	t.Run("tamper", func(t *testing.T) {
		testFingerprintMismatch(t)
	})
	checkNoLeaks(t, base)
}

func testFingerprintMismatch(t *testing.T) {
	for _, kind := range []api.SignalKind{api.SignalOffer, api.SignalAnswer} {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			r := newRelay(t)
			cfg := loopbackConfig()
			// The end that refuses fails at once; the other learns only
			// from its timeout.
			cfg.ConnectTimeout = 4 * time.Second
			a := r.add(box(1), cfg) // offers
			b := r.add(box(2), cfg)
			fake := otherFingerprint(t)
			var tampered atomic.Int32
			r.setTamper(func(s *api.Signal) bool {
				if s.Kind == kind {
					n := len(fingerprintLine.FindAllString(s.Data, -1))
					s.Data = fingerprintLine.ReplaceAllString(s.Data, "a=fingerprint:sha-256 "+fake+"\r")
					tampered.Add(int32(n))
				}
				return true
			})
			ctx := context.Background()
			type res struct {
				c   *Conn
				err error
			}
			ca, cb := make(chan res, 1), make(chan res, 1)
			start := time.Now()
			go func() { c, err := a.Connect(ctx, 21, box(2), true); ca <- res{c, err} }()
			go func() { c, err := b.Connect(ctx, 21, box(1), false); cb <- res{c, err} }()
			ra, rb := <-ca, <-cb
			t.Logf("a: %v; b: %v (after %v)", ra.err, rb.err, time.Since(start).Round(time.Millisecond))
			if tampered.Load() == 0 {
				t.Fatalf("no fingerprint line found in the %s", kind)
			}
			if ra.err == nil || rb.err == nil {
				t.Fatalf("a connection with a substituted certificate was made: a %v, b %v", ra.err, rb.err)
			}
			// The end that checks the tampered fingerprint refuses the
			// certificate: b checks the offer's, a the answer's.
			checker := rb.err
			if kind == api.SignalAnswer {
				checker = ra.err
			}
			if !errors.Is(checker, ErrDTLSFailed) {
				t.Errorf("the end checking the %s's fingerprint: %v, want ErrDTLSFailed", kind, checker)
			}
			r.close()
		})
	}
}

// validOffer makes a real offer from a Transport that is then closed.
func validOffer(t testing.TB) string {
	r := newRelay(t)
	var offer string
	got := make(chan struct{})
	r.setTamper(func(s *api.Signal) bool {
		if s.Kind == api.SignalOffer && offer == "" {
			offer = s.Data
			close(got)
		}
		return false
	})
	a := r.add(box(1), loopbackConfig())
	r.add(box(2), loopbackConfig())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _, _ = a.Connect(ctx, 1, box(2), true) }()
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no offer")
	}
	r.close()
	return offer
}

const goodCandidate = `{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host","sdpMid":"","sdpMLineIndex":0}`

// TestBadSignals checks the signals a Transport refuses, and that refusing
// them leaves it working.
func TestBadSignals(t *testing.T) {
	base := goroutineBase()
	offer := validOffer(t)
	cands := func(n, first int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf(`{"candidate":"candidate:%d 1 udp 2130706431 127.0.0.1 %d typ host"}`, i, first+i))
		}
		return out
	}
	noFP := fingerprintLine.ReplaceAllString(offer, "")
	audio := strings.Replace(offer, "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "m=audio 9 UDP/TLS/RTP/SAVPF 111", 1)
	sha1FP := fingerprintLine.ReplaceAllString(offer, "a=fingerprint:sha-1 "+strings.Repeat("AB:", 19)+"AB\r")
	hostname := strings.Replace(goodCandidate, "127.0.0.1", "evil.example.com", 1)
	mdns := strings.Replace(goodCandidate, "127.0.0.1", "1f2e3d4c.local", 1)
	tcp := strings.Replace(goodCandidate, "udp", "tcp", 1)

	tests := []struct {
		name string
		sig  api.Signal
		want error
	}{
		{"unknown kind", api.Signal{Kind: "renegotiate", Data: "x"}, ErrBadSignal},
		{"empty data", api.Signal{Kind: api.SignalOffer}, ErrBadSignal},
		{"oversized data", api.Signal{Kind: api.SignalCandidate, Data: strings.Repeat("x", api.MaxSignal+1)}, ErrBadSignal},
		{"garbage SDP", api.Signal{Kind: api.SignalOffer, Data: "hello, I am an offer"}, ErrBadSignal},
		{"binary SDP", api.Signal{Kind: api.SignalAnswer, Data: "v=0\r\n\x00\xff\xfe"}, ErrBadSignal},
		{"SDP without fingerprint", api.Signal{Kind: api.SignalOffer, Data: noFP}, ErrBadSignal},
		{"SDP with SHA-1 fingerprint", api.Signal{Kind: api.SignalOffer, Data: sha1FP}, ErrBadSignal},
		{"SDP for audio", api.Signal{Kind: api.SignalOffer, Data: audio}, ErrBadSignal},
		{"candidate not JSON", api.Signal{Kind: api.SignalCandidate, Data: "candidate:1 1 udp 1 1.2.3.4 5 typ host"}, ErrBadSignal},
		{"candidate unknown field", api.Signal{Kind: api.SignalCandidate, Data: `{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","x":1}`}, ErrBadSignal},
		{"candidate trailing data", api.Signal{Kind: api.SignalCandidate, Data: goodCandidate + `{}`}, ErrBadSignal},
		{"candidate host name", api.Signal{Kind: api.SignalCandidate, Data: hostname}, ErrBadSignal},
		{"candidate mDNS", api.Signal{Kind: api.SignalCandidate, Data: mdns}, ErrBadSignal},
		{"candidate tcp", api.Signal{Kind: api.SignalCandidate, Data: tcp}, ErrBadSignal},
		{"candidate empty", api.Signal{Kind: api.SignalCandidate, Data: `{"candidate":""}`}, ErrBadSignal},
		{"candidate other section", api.Signal{Kind: api.SignalCandidate, Data: `{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdpMLineIndex":3}`}, ErrBadSignal},
		{"no sender", api.Signal{Kind: api.SignalCandidate, Data: goodCandidate, From: api.BoxID{}}, ErrBadSignal},
		{"addressed to another box", api.Signal{Kind: api.SignalCandidate, Data: goodCandidate, To: box(9)}, ErrBadSignal},
	}

	r := newRelay(t)
	cfg := loopbackConfig()
	cfg.ConnectTimeout = 5 * time.Second
	cfg.MaxCandidates = 8
	cfg.MaxPending = 20
	a := r.add(box(1), cfg)
	b := r.add(box(2), cfg)
	ctx := context.Background()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.sig
			s.Transfer = 77
			if s.From == (api.BoxID{}) && tc.name != "no sender" {
				s.From = box(2)
			}
			err := a.HandleSignal(ctx, s)
			if !errors.Is(err, tc.want) {
				t.Fatalf("HandleSignal: %v, want %v", err, tc.want)
			}
			t.Logf("refused: %v", err)
		})
	}
	a.mu.Lock()
	held := len(a.pending)
	a.mu.Unlock()
	if held != 0 {
		t.Errorf("%d refused signals held", held)
	}

	t.Run("wrong peer", func(t *testing.T) {
		// a waits for box 2's offer for transfer 30; box 3 (which the
		// scheduler says sent it) is not its peer.
		done := make(chan error, 1)
		go func() {
			c, err := a.Connect(ctx, 30, box(2), false)
			if err == nil {
				c.Close()
			}
			done <- err
		}()
		waitSession(t, a, 30)
		for _, s := range []api.Signal{
			{Transfer: 30, From: box(3), Kind: api.SignalOffer, Data: offer},
			{Transfer: 30, From: box(3), Kind: api.SignalCandidate, Data: goodCandidate},
		} {
			if err := a.HandleSignal(ctx, s); !errors.Is(err, ErrWrongPeer) {
				t.Errorf("%s from the wrong box: %v, want ErrWrongPeer", s.Kind, err)
			}
		}
		// The right peer still connects.
		cb, err := b.Connect(ctx, 30, box(1), true)
		if err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		cb.Close()

		// Once the connection has gone, a late duplicate of its offer is
		// dropped, not held for a Connect that will not come.
		deadline := time.Now().Add(10 * time.Second)
		for {
			a.mu.Lock()
			_, ended := a.ended[30]
			a.mu.Unlock()
			if ended {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("transfer 30's connection did not end")
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := a.HandleSignal(ctx, api.Signal{Transfer: 30, From: box(2), Kind: api.SignalOffer, Data: offer}); err != nil {
			t.Fatal(err)
		}
		a.mu.Lock()
		held := len(a.pending)
		a.mu.Unlock()
		if held != 0 {
			t.Errorf("%d signals held for an ended connection", held)
		}
	})

	t.Run("held from the wrong peer", func(t *testing.T) {
		// Box 3's offer for transfer 31 arrives before a's Connect with
		// box 2: it is held, then dropped, and box 2's offer is used.
		if err := a.HandleSignal(ctx, api.Signal{Transfer: 31, From: box(3), Kind: api.SignalOffer, Data: offer}); err != nil {
			t.Fatalf("held: %v", err)
		}
		ca, cb := connectPair(t, ctx, a, b, 31, false)
		ca.Close()
		cb.Close()
	})

	t.Run("candidate storm on a session", func(t *testing.T) {
		done := make(chan error, 1)
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() { _, err := a.Connect(cctx, 40, box(2), false); done <- err }()
		waitSession(t, a, 40)
		var refused int
		for _, c := range cands(cfg.MaxCandidates+20, 40000) {
			err := a.HandleSignal(ctx, api.Signal{Transfer: 40, From: box(2), Kind: api.SignalCandidate, Data: c})
			switch {
			case err == nil:
			case errors.Is(err, ErrTooManyCandidates):
				refused++
			default:
				t.Fatal(err)
			}
		}
		if refused != 20 {
			t.Errorf("%d candidates refused, want the 20 beyond %d", refused, cfg.MaxCandidates)
		}
		a.mu.Lock()
		s := a.sessions[40]
		a.mu.Unlock()
		s.mu.Lock()
		held := len(s.held)
		s.mu.Unlock()
		if held != cfg.MaxCandidates {
			t.Errorf("%d candidates held, want %d", held, cfg.MaxCandidates)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Connect after cancel: %v", err)
		}
	})

	t.Run("candidate storm before Connect", func(t *testing.T) {
		var refused int
		for _, c := range cands(cfg.MaxCandidates+20, 41000) {
			err := a.HandleSignal(ctx, api.Signal{Transfer: 41, From: box(2), Kind: api.SignalCandidate, Data: c})
			if errors.Is(err, ErrTooManyCandidates) {
				refused++
			} else if err != nil {
				t.Fatal(err)
			}
		}
		if want := 20 - 2; refused != want {
			t.Errorf("%d held candidates refused, want %d", refused, want)
		}
		// Other transfers fill what is left of MaxPending, then are
		// refused.
		var full error
		for i := range cfg.MaxPending {
			err := a.HandleSignal(ctx, api.Signal{Transfer: api.TransferID(1000 + i), From: box(2), Kind: api.SignalCandidate, Data: goodCandidate})
			if err != nil {
				full = err
				break
			}
		}
		if !errors.Is(full, ErrPendingFull) {
			t.Errorf("beyond MaxPending: %v, want ErrPendingFull", full)
		}
		a.mu.Lock()
		n := len(a.pending)
		a.mu.Unlock()
		if n != cfg.MaxPending {
			t.Errorf("%d signals held, want MaxPending %d", n, cfg.MaxPending)
		}
	})

	t.Run("held signals expire", func(t *testing.T) {
		a.mu.Lock()
		a.cfg.PendingTTL = 10 * time.Millisecond
		a.mu.Unlock()
		time.Sleep(30 * time.Millisecond)
		if err := a.HandleSignal(ctx, api.Signal{Transfer: 50, From: box(2), Kind: api.SignalCandidate, Data: goodCandidate}); err != nil {
			t.Fatal(err)
		}
		a.mu.Lock()
		n := len(a.pending)
		a.cfg.PendingTTL = DefaultPendingTTL
		a.mu.Unlock()
		if n != 1 {
			t.Errorf("%d signals held after the others expired, want 1", n)
		}
	})

	t.Run("malformed offer fails Connect at once", func(t *testing.T) {
		done := make(chan error, 1)
		go func() { _, err := a.Connect(ctx, 60, box(2), false); done <- err }()
		waitSession(t, a, 60)
		start := time.Now()
		if err := a.HandleSignal(ctx, api.Signal{Transfer: 60, From: box(2), Kind: api.SignalOffer, Data: "v=0\r\nbroken"}); !errors.Is(err, ErrBadSignal) {
			t.Errorf("HandleSignal: %v", err)
		}
		err := <-done
		if !errors.Is(err, ErrBadSignal) || time.Since(start) > time.Second {
			t.Errorf("Connect: %v after %v, want ErrBadSignal at once", err, time.Since(start))
		}
	})

	t.Run("offer to the initiator", func(t *testing.T) {
		done := make(chan error, 1)
		go func() { _, err := a.Connect(ctx, 61, box(2), true); done <- err }()
		waitSession(t, a, 61)
		if err := a.HandleSignal(ctx, api.Signal{Transfer: 61, From: box(2), Kind: api.SignalOffer, Data: offer}); !errors.Is(err, ErrUnexpectedSignal) {
			t.Errorf("HandleSignal: %v, want ErrUnexpectedSignal", err)
		}
		if err := <-done; !errors.Is(err, ErrUnexpectedSignal) {
			t.Errorf("Connect: %v, want ErrUnexpectedSignal", err)
		}
	})

	t.Run("too many connections", func(t *testing.T) {
		r := newRelay(t)
		cfg := loopbackConfig()
		cfg.MaxConns = 2
		c := r.add(box(5), cfg)
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		done := make(chan error, 2)
		for i := range 2 {
			go func() { _, err := c.Connect(cctx, api.TransferID(90+i), box(2), false); done <- err }()
			waitSession(t, c, api.TransferID(90+i))
		}
		if _, err := c.Connect(cctx, 92, box(2), false); !errors.Is(err, ErrTooManyConns) {
			t.Errorf("third Connect: %v, want ErrTooManyConns", err)
		}
		if _, err := c.Connect(cctx, 90, box(2), false); !errors.Is(err, ErrBusy) {
			t.Errorf("second Connect for one transfer: %v, want ErrBusy", err)
		}
		cancel()
		<-done
		<-done
		r.close()
	})

	r.close()
	checkNoLeaks(t, base)
}

// waitSession waits until tr has a session for transfer, set up.
func waitSession(t testing.TB, tr *Transport, transfer api.TransferID) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		tr.mu.Lock()
		s := tr.sessions[transfer]
		tr.mu.Unlock()
		if s != nil {
			s.mu.Lock()
			ready := s.pc != nil
			s.mu.Unlock()
			if ready {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session for transfer %d", transfer)
		}
		time.Sleep(time.Millisecond)
	}
}

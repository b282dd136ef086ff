package rtc

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
)

// loopbackBytes is what the loopback test moves each way: 32 MiB, or
// 8 MiB under the race detector, which slows pion's SCTP eightfold.
const loopbackBytes = 32 << 20 >> (2 * raceEnabled)

// TestLoopback connects two Transports over loopback through the relay,
// with either end initiating, moves 32 MiB each way at once, and checks
// the bytes, the path and that Close leaves no goroutine behind.
func TestLoopback(t *testing.T) {
	base := goroutineBase()
	for _, aInit := range []bool{true, false} {
		name := map[bool]string{true: "a-offers", false: "b-offers"}[aInit]
		t.Run(name, func(t *testing.T) {
			r := newRelay(t)
			a := r.add(box(1), loopbackConfig())
			b := r.add(box(2), loopbackConfig())
			ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
			defer cancel()

			start := time.Now()
			ca, cb := connectPair(t, ctx, a, b, 7, aInit)
			t.Logf("connected in %v", time.Since(start).Round(time.Millisecond))
			for _, c := range []*Conn{ca, cb} {
				p := c.Path()
				if p.Local != "host" || p.Remote != "host" || p.Relayed {
					t.Errorf("path %v, want host->host, direct", p)
				}
				if c.Transfer() != 7 {
					t.Errorf("Transfer() = %d, want 7", c.Transfer())
				}
			}
			if ca.Peer() != box(2) || cb.Peer() != box(1) {
				t.Errorf("peers %s, %s", ca.Peer(), cb.Peer())
			}

			d := exchange(t, ca, cb, loopbackBytes)
			mbps := float64(2*loopbackBytes) / d.Seconds() / 1e6
			t.Logf("moved 2 x %d MiB in %v: %.1f MB/s in total, %.1f MB/s each way", loopbackBytes>>20, d.Round(time.Millisecond), mbps, mbps/2)

			// After both ends read io.EOF, Close; then Read and Write say
			// closed.
			ca.Close()
			cb.Close()
			if _, err := ca.Write([]byte("x")); !errors.Is(err, ErrClosed) {
				t.Errorf("Write after Close: %v, want ErrClosed", err)
			}
			if _, err := ca.Read(make([]byte, 8)); !errors.Is(err, ErrClosed) {
				t.Errorf("Read after Close: %v, want ErrClosed", err)
			}
			r.close()
			if errs := r.errors(); len(errs) > 0 {
				t.Errorf("signals refused: %v", errs)
			}
			r.mu.Lock()
			t.Logf("signals relayed: %v", r.sent)
			r.mu.Unlock()
		})
	}
	checkNoLeaks(t, base)
}

// TestCloseDeliversAndEnds checks what each end sees when the other closes:
// everything written, then io.EOF; and that a Close with data in flight
// still delivers it.
func TestCloseDeliversAndEnds(t *testing.T) {
	base := goroutineBase()
	r := newRelay(t)
	a := r.add(box(1), loopbackConfig())
	b := r.add(box(2), loopbackConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ca, cb := connectPair(t, ctx, a, b, 9, true)

	msg := make([]byte, 3<<20)
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	// b reads as a writes: Write returns once at most HighWater is in
	// flight, which the SCTP window (smaller than msg) only allows while
	// b reads.
	type readResult struct {
		got []byte
		err error
	}
	read := make(chan readResult, 1)
	go func() {
		got, err := io.ReadAll(cb)
		read <- readResult{got, err}
	}()
	if _, err := ca.Write(msg); err != nil {
		t.Fatal(err)
	}
	ca.Close() // at once, with up to HighWater of msg unacknowledged
	res := <-read
	got, err := res.got, res.err
	if err != nil {
		t.Fatalf("reading what a wrote before Close: %v", err)
	}
	if len(got) != len(msg) || string(got) != string(msg) {
		t.Fatalf("got %d bytes, want the %d written", len(got), len(msg))
	}
	// a's PeerConnection goes after the linger: b's writes then fail.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := cb.Write([]byte("late"))
		if err != nil {
			if !errors.Is(err, ErrConnLost) {
				t.Errorf("write to a closed peer: %v, want ErrConnLost", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("writes to a closed peer still succeed after 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cb.Close()
	r.close()
	checkNoLeaks(t, base)
}

// TestFlowControl checks that Write blocks while the peer does not read,
// with a bounded amount in flight, and that a write deadline and Close end
// a blocked Write.
func TestFlowControl(t *testing.T) {
	base := goroutineBase()
	cfg := loopbackConfig()
	cfg.HighWater, cfg.LowWater = 256<<10, 128<<10
	cfg.SCTPReceiveBuffer = 1 << 20
	r := newRelay(t)
	a := r.add(box(1), cfg)
	b := r.add(box(2), cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ca, cb := connectPair(t, ctx, a, b, 3, true)

	// Write until blocked: b reads nothing.
	var mu sync.Mutex
	written := 0
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := ca.Write(buf)
			mu.Lock()
			written += n
			mu.Unlock()
			if err != nil {
				done <- err
				return
			}
		}
	}()
	stalled := func() int {
		last := -1
		for range 100 {
			time.Sleep(100 * time.Millisecond)
			mu.Lock()
			w := written
			mu.Unlock()
			if w == last {
				return w
			}
			last = w
		}
		t.Fatalf("Write never blocked: %d bytes written to a peer that reads nothing", last)
		return 0
	}
	w := stalled()
	limit := cfg.SCTPReceiveBuffer + cfg.HighWater + 4*MaxMessage
	t.Logf("Write blocked after %d KiB (receive buffer %d KiB, high water %d KiB)", w>>10, cfg.SCTPReceiveBuffer>>10, cfg.HighWater>>10)
	if w > limit || w < cfg.HighWater {
		t.Errorf("%d bytes in flight when Write blocked, want between %d and %d", w, cfg.HighWater, limit)
	}
	if ba := ca.dc.BufferedAmount(); ba > uint64(cfg.HighWater+MaxMessage) {
		t.Errorf("buffered %d bytes, above high water %d plus a message", ba, cfg.HighWater)
	}

	// The write deadline ends the blocked Write.
	if err := ca.SetWriteDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("blocked Write after the deadline: %v, want os.ErrDeadlineExceeded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the write deadline did not end a blocked Write")
	}
	_ = ca.SetWriteDeadline(time.Time{})

	// A read deadline ends a Read with nothing to read (on a's side).
	_ = ca.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := ca.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read past its deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	_ = ca.SetReadDeadline(time.Time{})

	// Close ends a blocked Write.
	go func() {
		_, err := ca.Write(make([]byte, 1<<20))
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	ca.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("blocked Write after Close: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a blocked Write")
	}

	// b can still read what was delivered, then the end.
	n, err := io.Copy(io.Discard, cb)
	if err != nil {
		t.Logf("b read %d bytes, then %v", n, err)
	}
	if n < int64(w) {
		t.Errorf("b read %d bytes, a had written %d before the first block", n, w)
	}
	cb.Close()
	r.close()
	checkNoLeaks(t, base)
}

// TestAcceptUnsolicited checks that an offer for a transfer this end was
// not told about is answered and comes out of Accept, and that a Connect
// arriving late takes such a connection over instead.
func TestAcceptUnsolicited(t *testing.T) {
	base := goroutineBase()
	r := newRelay(t)
	a := r.add(box(1), loopbackConfig())
	srvCfg := loopbackConfig()
	srvCfg.AcceptUnsolicited = true
	srv := r.add(box(2), srvCfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	ca, err := a.Connect(ctx, 11, box(2), true)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := srv.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cs.Transfer() != 11 || cs.Peer() != box(1) {
		t.Fatalf("accepted transfer %d from %s", cs.Transfer(), cs.Peer())
	}
	exchange(t, ca, cs, 1<<20)
	ca.Close()
	cs.Close()

	// The offer overtakes the server's own Connect(initiate=false): that
	// Connect gets the connection, Accept does not.
	connected := make(chan *Conn, 1)
	go func() {
		c, err := a.Connect(ctx, 12, box(2), true)
		if err != nil {
			t.Error(err)
		}
		connected <- c
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		srv.mu.Lock()
		s := srv.sessions[12]
		srv.mu.Unlock()
		if s != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the unsolicited offer made no session")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := srv.Connect(ctx, 12, box(3), false); !errors.Is(err, ErrBusy) {
		t.Fatalf("Connect naming another peer than the offer's: %v, want ErrBusy", err)
	}
	cs, err = srv.Connect(ctx, 12, box(1), false)
	if err != nil {
		t.Fatal(err)
	}
	ca = <-connected
	if ca == nil {
		t.FailNow()
	}
	exchange(t, ca, cs, 64<<10)
	actx, acancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer acancel()
	if c, err := srv.Accept(actx); err == nil {
		t.Errorf("Accept returned transfer %d, which Connect took", c.Transfer())
	}
	ca.Close()
	cs.Close()
	r.close()
	checkNoLeaks(t, base)
}

// TestHeldOffer checks that an offer arriving before the answering end's
// Connect is held and used.
func TestHeldOffer(t *testing.T) {
	base := goroutineBase()
	r := newRelay(t)
	a := r.add(box(1), loopbackConfig())
	b := r.add(box(2), loopbackConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type res struct {
		c   *Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := a.Connect(ctx, 5, box(2), true)
		ch <- res{c, err}
	}()
	// Wait until b holds the offer.
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.mu.Lock()
		n := len(b.pending)
		b.mu.Unlock()
		if n >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b holds %d signals, want the offer", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cb, err := b.Connect(ctx, 5, box(1), false)
	if err != nil {
		t.Fatal(err)
	}
	ra := <-ch
	if ra.err != nil {
		t.Fatal(ra.err)
	}
	exchange(t, ra.c, cb, 64<<10)
	ra.c.Close()
	cb.Close()
	r.close()
	checkNoLeaks(t, base)
}

// TestTransportClose checks that Close ends connections in every state,
// Connect calls waiting for a peer and Accept, and leaves nothing behind.
func TestTransportClose(t *testing.T) {
	base := goroutineBase()
	r := newRelay(t)
	cfg := loopbackConfig()
	cfg.AcceptUnsolicited = true // for a's Accept; b answers through Connect
	a := r.add(box(1), cfg)
	b := r.add(box(2), loopbackConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ca, cb := connectPair(t, ctx, a, b, 1, true)

	errs := make(chan error, 3)
	go func() { _, err := a.Connect(ctx, 2, box(3), false); errs <- err }() // no such peer: waits
	go func() { _, err := a.Accept(ctx); errs <- err }()
	go func() { _, err := ca.Read(make([]byte, 10)); errs <- err }()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Close took %v", time.Since(start).Round(time.Millisecond))
	for range 3 {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrClosed) {
				t.Errorf("after Close: %v, want ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close left a call blocked")
		}
	}
	if _, err := a.Connect(ctx, 4, box(2), true); !errors.Is(err, ErrClosed) {
		t.Errorf("Connect after Close: %v", err)
	}
	if err := a.HandleSignal(ctx, api.Signal{Transfer: 1, From: box(2), Kind: api.SignalCandidate, Data: "{}"}); !errors.Is(err, ErrClosed) {
		t.Errorf("HandleSignal after Close: %v", err)
	}
	// b sees the connection end, not a clean close.
	if _, err := io.ReadAll(cb); err == nil {
		t.Error("b read io.EOF from a connection a's Transport tore down")
	}
	cb.Close()
	r.close()
	checkNoLeaks(t, base)
}

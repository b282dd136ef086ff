package gateway

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
)

// TestUnreachable: a box that acknowledges nothing gets each message
// MaxRetries more times, with growing pauses, and is then reported
// Unreachable and disconnected.
func TestUnreachable(t *testing.T) {
	const retries = 3
	f := newFixture(t, func(c *Config) {
		c.RetryBase, c.RetryMax, c.MaxRetries = 40*time.Millisecond, 100*time.Millisecond, retries
	})
	box := f.newBox()
	rb := f.mustDial(&box.cert)
	rb.hello(0)
	for i := 1; i <= 2; i++ {
		if _, err := f.h.Queue(box.id, api.TransferCancel{Transfer: api.TransferID(i), Reason: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	f.g.Notify(box.id)

	// Read everything until the gateway gives up.
	var seqs []uint64
	var at []time.Time
	for {
		m, err := rb.read()
		if err != nil {
			if !isClosed(err) {
				t.Fatalf("read: %v", err)
			}
			break
		}
		seqs = append(seqs, m.Seq)
		at = append(at, time.Now())
	}
	want := slices.Repeat([]uint64{1, 2}, retries+1)
	if !slices.Equal(seqs, want) {
		t.Errorf("received sequences %v, want %v (sent, then resent %d times, in order)", seqs, want, retries)
	}
	// The pauses before the resends grow: 40 ms, 80 ms, then the 100 ms
	// cap. Timers may fire late, never early.
	if len(at) > 0 {
		if d := at[len(at)-1].Sub(at[0]); d < 220*time.Millisecond {
			t.Errorf("all resends within %v of the first send, want at least 40+80+100 ms", d)
		}
	}
	err := f.h.Await(f.ctx(5*time.Second), func() bool {
		b, _ := f.h.Box(box.id)
		return b.Unreachable == 1 && !b.Connected
	})
	if err != nil {
		t.Fatal("Unreachable was not called, or the box stayed connected")
	}
	var calls []string
	for _, c := range f.h.Calls() {
		if c.Method == "Unreachable" || c.Method == "Disconnected" || c.Method == "Acked" {
			calls = append(calls, c.Method)
		}
	}
	if !slices.Equal(calls, []string{"Unreachable", "Disconnected"}) {
		t.Errorf("calls %v, want Unreachable then Disconnected (and no Acked)", calls)
	}
	if b, _ := f.h.Box(box.id); len(b.Outbox) != 2 {
		t.Errorf("%d messages still owed, want both", len(b.Outbox))
	}
}

// TestAcksStopResends: acknowledged messages are not resent, and acks
// reach the handler (Acked), also through the next hello's LastSeq.
func TestAcksStopResends(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.RetryBase, c.RetryMax, c.MaxRetries = 50*time.Millisecond, 50*time.Millisecond, 100
	})
	box := f.newBox()
	for i := 1; i <= 3; i++ {
		f.h.Queue(box.id, api.TransferCancel{Transfer: api.TransferID(i), Reason: "test"})
	}
	rb := f.mustDial(&box.cert)
	rb.hello(0)
	for i := uint64(1); i <= 3; i++ {
		if m := rb.next(); m.Seq != i {
			t.Fatalf("got seq %d, want %d", m.Seq, i)
		}
	}
	rb.send(0, api.Ack{Seq: 2})
	// Only 3 comes again.
	if m := rb.next(); m.Seq != 3 {
		t.Fatalf("resent seq %d, want 3", m.Seq)
	}
	f.h.Await(f.ctx(5*time.Second), func() bool { b, _ := f.h.Box(box.id); return b.Acked == 2 })

	// A new connection whose hello says 3 was processed: that is the ack,
	// and nothing is sent again.
	rb2 := f.mustDial(&box.cert)
	rb2.hello(3)
	rb2.expectOpen()
	if b, _ := f.h.Box(box.id); b.Acked != 3 || len(b.Outbox) != 0 {
		t.Errorf("acked %d with %d owed, want 3 and none", b.Acked, len(b.Outbox))
	}
}

// TestNewConnectionReplacesOld: one connection per box. The second closes
// the first; the handler sees Connected, Disconnected, Connected, in that
// order, and the new connection carries on where the old one stopped.
func TestNewConnectionReplacesOld(t *testing.T) {
	f := newFixture(t, nil)
	box := f.newBox()
	rb1 := f.mustDial(&box.cert)
	rb1.hello(0)
	rb1.send(1, api.Inventory{Full: true})
	expect[api.Ack](rb1)

	rb2 := f.mustDial(&box.cert)
	h := rb2.hello(0)
	if h.LastSeq != 1 {
		t.Errorf("new connection's hello says %d processed, want 1", h.LastSeq)
	}
	rb1.expectClosed()
	rb2.send(2, api.Inventory{Full: true})
	if a, _ := expect[api.Ack](rb2); a.Seq != 2 {
		t.Errorf("ack %d, want 2", a.Seq)
	}
	if !f.g.Connected(box.id) {
		t.Error("box not connected")
	}
	var calls []string
	for _, c := range f.h.Calls() {
		if c.Method == "Connected" || c.Method == "Disconnected" {
			calls = append(calls, c.Method)
		}
	}
	if !slices.Equal(calls, []string{"Connected", "Disconnected", "Connected"}) {
		t.Errorf("calls %v", calls)
	}
	if v := f.h.Violations(); len(v) > 0 {
		t.Error(v)
	}
}

// TestIdleTimeout: a box that sends nothing, not even heartbeats, is
// disconnected; one that sends heartbeats stays.
func TestIdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	f := newFixture(t, func(c *Config) { c.IdleTimeout = idle })
	quiet, chatty := f.newBox(), f.newBox()
	rbQ := f.mustDial(&quiet.cert)
	rbQ.hello(0)
	rbC := f.mustDial(&chatty.cert)
	rbC.hello(0)
	start := time.Now()
	for time.Since(start) < 3*idle {
		rbC.expectOpen() // a heartbeat and its answer
		time.Sleep(idle / 3)
	}
	rbQ.expectClosed()
	if !f.g.Connected(chatty.id) || f.g.Connected(quiet.id) {
		t.Errorf("connected: chatty %v, quiet %v", f.g.Connected(chatty.id), f.g.Connected(quiet.id))
	}
}

// TestSlowReaderDoesNotBlockNotify: a box that reads nothing fills its
// socket; Notify still returns at once, for it and for other boxes, and
// the write deadline ends the stuck connection.
func TestSlowReaderDoesNotBlockNotify(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.WriteTimeout = 500 * time.Millisecond })
	slow, other := f.newBox(), f.newBox()
	rb := f.mustDial(&slow.cert)
	rb.hello(0)
	big := api.CatalogUpdate{}
	for i := range api.MaxCatalogItems { // about 130 KB
		big.Items = append(big.Items, api.CatalogItem{Title: media.ID{1, byte(i)}, Name: strings.Repeat("x", 1000)})
	}
	for range 150 { // 20 MB: more than the socket buffers hold
		if _, err := f.h.Queue(slow.id, big); err != nil {
			t.Fatal(err)
		}
	}
	f.g.Notify(slow.id)
	time.Sleep(100 * time.Millisecond) // the sender is now blocked in a write

	start := time.Now()
	for range 10000 {
		f.g.Notify(slow.id)
		f.g.Notify(other.id)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("20000 Notify calls took %v", d)
	}
	err := f.h.Await(f.ctx(10*time.Second), func() bool { b, _ := f.h.Box(slow.id); return b.Connects == 1 && !b.Connected })
	if err != nil {
		t.Error("the stuck connection was not closed")
	}
}

// TestLimits: connections beyond MaxHandshakes (here held by a client that
// never starts TLS) and beyond MaxConns are closed at once.
func TestLimits(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"handshakes", func(c *Config) { c.MaxHandshakes = 1 }},
		{"connections", func(c *Config) { c.MaxConns = 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.mod)
			hog, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer hog.Close()
			time.Sleep(50 * time.Millisecond) // accepted, holding its slot
			box := f.newBox()
			rb, err := f.dial(&box.cert)
			if err == nil {
				_, err = rb.read()
			}
			if err == nil || !isClosed(err) && !strings.Contains(err.Error(), "reset") {
				t.Fatalf("a connection over the limit: %v, want it closed", err)
			}
			// Once the hog leaves, boxes get in again.
			hog.Close()
			time.Sleep(50 * time.Millisecond)
			rb = f.mustDial(&box.cert)
			rb.hello(0)
		})
	}
}

// TestClaimsBeyondSentAreCapped: a box whose hello or ack claims more than
// it was ever sent cannot make the handler drop messages not yet assigned:
// Acked never exceeds what Pending returned.
func TestClaimsBeyondSentAreCapped(t *testing.T) {
	f := newFixture(t, nil)
	box := f.newBox()
	for i := 1; i <= 2; i++ {
		f.h.Queue(box.id, api.TransferCancel{Transfer: api.TransferID(i), Reason: "test"})
	}
	rb := f.mustDial(&box.cert)
	rb.hello(1000)
	rb.send(0, api.Ack{Seq: 999}) // within what its hello claimed: accepted
	rb.expectOpen()
	rb.send(0, api.Ack{Seq: 1001})
	rb.expectReject("ack of sequence 1001, but the head-end has sent up to 1000")
	rb.expectOpen()
	f.h.Queue(box.id, api.TransferCancel{Transfer: 3, Reason: "test"})
	if v := f.h.Violations(); len(v) > 0 {
		t.Errorf("violations: %v", v)
	}
	var acked []uint64
	for _, c := range f.h.Calls() {
		if c.Method == "Acked" {
			acked = append(acked, c.Seq)
		}
	}
	if !slices.Equal(acked, []uint64{2}) {
		t.Errorf("Acked calls %v, want [2]: capped at the highest message owed", acked)
	}
	if b, _ := f.h.Box(box.id); len(b.Outbox) != 1 || b.Outbox[0].Seq != 3 {
		t.Errorf("outbox %v, want message 3 still owed", b.Outbox)
	}
}

package gateway

import (
	"crypto/tls"
	"encoding/binary"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/deviceca"
	"github.com/boxswarm/boxswarm/media"
)

// TestBadInputInSession: each bad message from an authenticated box is
// rejected with a reason that says what was wrong, and changes nothing:
// the handler sees no call at all and the box's state is as before. Some
// also close the connection, as the package comment says.
func TestBadInputInSession(t *testing.T) {
	register := api.Register{Capacity: 100, Free: 50, NAT: api.NATOpen}
	for _, tc := range []struct {
		name   string
		send   func(rb *rawBox)
		reason string
		ack    bool // an ack of the last processed follows the reject
		closed bool
	}{
		{"malformed: invalid value", func(rb *rawBox) {
			rb.sendJSON(`{"v":1,"seq":2,"type":"register","body":{"capacity":1,"free":5}}`)
		}, "malformed message: register: free 5 of capacity 1", false, false},
		{"malformed: not JSON", func(rb *rawBox) { rb.sendJSON(`{"v":1,"seq":2,`) }, "envelope: malformed message", false, false},
		{"malformed: unknown type", func(rb *rawBox) {
			rb.sendJSON(`{"v":1,"seq":2,"type":"nuke","body":{}}`)
		}, `unknown message type "nuke"`, false, false},
		{"malformed: unknown field", func(rb *rawBox) {
			rb.sendJSON(`{"v":1,"seq":2,"type":"register","body":{"capacity":1,"admin":true}}`)
		}, `unknown field "admin"`, false, false},
		{"malformed: empty frame", func(rb *rawBox) { rb.sendRaw([]byte{0, 0, 0, 0}) }, "empty frame", false, false},
		{"oversized frame", func(rb *rawBox) {
			rb.sendRaw(binary.BigEndian.AppendUint32(nil, api.MaxFrame+1))
		}, "frame of 262145 bytes (limit 262144): message too large", false, true},
		{"another protocol version", func(rb *rawBox) {
			rb.sendJSON(`{"v":2,"seq":2,"type":"register","body":{}}`)
		}, "version 2 (this end speaks 1): unsupported protocol version", false, true},
		{"replayed message", func(rb *rawBox) { rb.send(1, register) }, "duplicate sequence 1 (already processed)", true, false},
		{"replay of an older message", func(rb *rawBox) { rb.send(1, api.Inventory{Full: true}) }, "duplicate sequence 1", true, false},
		{"gap in the sequence", func(rb *rawBox) { rb.send(3, register) }, "sequence 3 skips ahead: expected 2", false, true},
		{"transfer_start from a box", func(rb *rawBox) {
			rb.send(2, api.TransferStart{Transfer: 1, Role: api.RoleSend, Portions: []api.PieceRange{{First: 0, Last: 1}}, Token: []byte("t")})
		}, "transfer_start is not a message a box may send", false, false},
		{"activated from a box", func(rb *rawBox) {
			rb.send(0, api.Activated{Box: api.BoxID{1}, Certificate: []byte{1}})
		}, "activated is not a message a box may send", false, false},
		{"registered from a box", func(rb *rawBox) { rb.send(2, api.Registered{}) }, "registered is not a message a box may send", false, false},
		{"transfer_confirmed from a box", func(rb *rawBox) {
			rb.send(2, api.TransferConfirmed{Transfer: 1, Title: media.ID{1}})
		}, "transfer_confirmed is not a message a box may send", false, false},
		{"activate with a certificate", func(rb *rawBox) {
			rb.send(0, api.Activate{Code: goodCode, PublicKey: make([]byte, 32)})
		}, "activate is not a message a box may send on an authenticated connection", false, false},
		{"sequenced message without a sequence", func(rb *rawBox) { rb.send(0, register) }, "register without a sequence number", false, false},
		{"control message with a sequence", func(rb *rawBox) { rb.send(7, api.Heartbeat{}) }, "heartbeat is a control message and carries sequence 0, not 7", false, false},
		{"second hello", func(rb *rawBox) { rb.send(0, api.Hello{Versions: []int{1}}) }, "hello after the session started", false, false},
		{"ack of what was never sent", func(rb *rawBox) { rb.send(0, api.Ack{Seq: 5}) }, "ack of sequence 5, but the head-end has sent up to 0", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			box := f.newBox()
			rb := f.mustDial(&box.cert)
			rb.hello(0)
			rb.send(1, register)
			if a, _ := expect[api.Ack](rb); a.Seq != 1 {
				t.Fatalf("ack %d, want 1", a.Seq)
			}
			before, _ := f.h.Box(box.id)
			calls := len(f.h.Calls())

			tc.send(rb)
			r := rb.expectReject(tc.reason)
			t.Logf("reject: %q", r.Reason)
			if tc.ack {
				if a, _ := expect[api.Ack](rb); a.Seq != 1 {
					t.Errorf("ack %d after the duplicate, want 1", a.Seq)
				}
			}
			if tc.closed {
				rb.expectClosed()
				// Disconnected is the one call a closed connection makes.
				f.h.Await(f.ctx(5*time.Second), func() bool { b, _ := f.h.Box(box.id); return !b.Connected })
			} else {
				rb.expectOpen()
			}

			after, _ := f.h.Box(box.id)
			after.Connected, before.Connected = false, false
			if !reflect.DeepEqual(before, after) {
				t.Errorf("box state changed:\nbefore %+v\nafter  %+v", before, after)
			}
			var got []string
			for _, c := range f.h.Calls()[calls:] {
				if c.Method != "Disconnected" || !tc.closed {
					got = append(got, c.Method)
				}
			}
			if len(got) > 0 {
				t.Errorf("the handler was called: %v", got)
			}
			if v := f.h.Violations(); len(v) > 0 {
				t.Errorf("violations: %v", v)
			}
		})
	}
}

// TestBadConnections: connections that must not get a session. Each is
// refused with a clear reason, the handler sees at most the question it
// must answer (Authenticate), and no box or state changes.
func TestBadConnections(t *testing.T) {
	for _, tc := range []struct {
		name string
		// cert returns the client certificate (nil: none).
		cert   func(f *fixture, known testBox) *testBox
		send   func(rb *rawBox)
		reason string // in the reject, or in the TLS error
		calls  []string
	}{
		{"no certificate: register", func(*fixture, testBox) *testBox { return nil },
			func(rb *rawBox) { rb.send(1, api.Register{NAT: api.NATOpen}) },
			"register from a connection without a device certificate, which may only activate", nil},
		{"no certificate: hello", func(*fixture, testBox) *testBox { return nil },
			func(rb *rawBox) { rb.send(0, api.Hello{Versions: []int{1}}) },
			"hello from a connection without a device certificate", nil},
		{"no certificate: garbage", func(*fixture, testBox) *testBox { return nil },
			func(rb *rawBox) { rb.sendJSON(`nonsense`) },
			"activation: envelope: malformed message", nil},
		{"no certificate: activate with a sequence", func(*fixture, testBox) *testBox { return nil },
			func(rb *rawBox) { rb.send(3, api.Activate{Code: goodCode, PublicKey: make([]byte, 32)}) },
			"activate with sequence 3", nil},
		{"no certificate: bad activation code", func(*fixture, testBox) *testBox { return nil },
			func(rb *rawBox) { rb.send(0, api.Activate{Code: "WRONG", PublicKey: make([]byte, 32)}) },
			"activation refused: unknown activation code", []string{"Activate"}},
		{"certificate not from the CA", func(f *fixture, known testBox) *testBox {
			other, err := deviceca.LoadOrCreate(f.t.TempDir())
			if err != nil {
				f.t.Fatal(err)
			}
			// The very ID of a known box, signed by someone else.
			b := newIdentity(f.t, other, known.id)
			return &b
		}, nil, "unknown certificate authority", nil},
		{"CA-signed certificate of an unknown box", func(f *fixture, _ testBox) *testBox {
			b := newIdentity(f.t, f.ca, randomID(f.t))
			return &b
		}, nil, "not accepted: unknown box", []string{"Authenticate"}},
		{"known box, older certificate", func(f *fixture, known testBox) *testBox {
			old := known
			// The box was given a new certificate since (re-activation,
			// key change): the old one, still CA-signed and unexpired, is
			// refused.
			renewed := newIdentity(f.t, f.ca, known.id)
			f.h.SetCertificate(known.id, renewed.der)
			return &old
		}, nil, "certificate is not the one registered for this box", []string{"Authenticate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			known := f.newBox()
			cert := tc.cert(f, known)
			before, _ := f.h.Box(known.id)
			boxes := f.h.Boxes()

			var tlsCert *tls.Certificate
			if cert != nil {
				tlsCert = &cert.cert
			}
			rb, err := f.dial(tlsCert)
			if err == nil {
				if tc.send != nil {
					tc.send(rb)
				} else {
					rb.send(0, api.Hello{Versions: []int{api.Version}})
				}
				var m api.Message
				m, err = rb.read()
				if err == nil {
					r, ok := m.Body.(api.Reject)
					if !ok {
						t.Fatalf("got %s, want a reject", m.Body.Type())
					}
					if !strings.Contains(r.Reason, tc.reason) {
						t.Errorf("reject reason %q, want it to contain %q", r.Reason, tc.reason)
					}
					t.Logf("reject: %q", r.Reason)
					rb.expectClosed()
				}
			}
			if err != nil {
				t.Logf("error: %v", err)
				if !strings.Contains(err.Error(), tc.reason) {
					t.Errorf("error %v, want it to contain %q", err, tc.reason)
				}
			}

			var calls []string
			for _, c := range f.h.Calls() {
				calls = append(calls, c.Method)
			}
			if !slices.Equal(calls, tc.calls) {
				t.Errorf("handler calls %v, want %v", calls, tc.calls)
			}
			after, _ := f.h.Box(known.id)
			if cert == nil || cert.id != known.id {
				if !reflect.DeepEqual(before, after) {
					t.Errorf("the known box changed: %+v, then %+v", before, after)
				}
			}
			if after.Connects != 0 || f.h.Boxes() != boxes {
				t.Errorf("a box was connected (%d) or added (%d boxes, then %d)", after.Connects, boxes, f.h.Boxes())
			}
		})
	}
}

// TestDeliverErrorCountsAsProcessed: a message the handler refuses gets a
// reject with the handler's reason, and then its ack, so the box does not
// send it forever; the next message follows.
func TestDeliverErrorCountsAsProcessed(t *testing.T) {
	f := newFixture(t, nil)
	f.h.Reject = func(_ api.BoxID, b api.Body) error {
		if _, ok := b.(api.DeleteRequest); ok {
			return errorString("title 0100… is one of the last copies")
		}
		return nil
	}
	box := f.newBox()
	rb := f.mustDial(&box.cert)
	rb.hello(0)
	rb.send(1, api.DeleteRequest{Title: media.ID{1}})
	r, _ := expect[api.Reject](rb)
	if r.Seq != 1 || r.Reason != "title 0100… is one of the last copies" {
		t.Errorf("reject %+v", r)
	}
	if a, _ := expect[api.Ack](rb); a.Seq != 1 {
		t.Errorf("ack %d, want 1", a.Seq)
	}
	rb.send(2, api.Inventory{Full: true})
	if a, _ := expect[api.Ack](rb); a.Seq != 2 {
		t.Errorf("ack %d, want 2", a.Seq)
	}
	b, _ := f.h.Box(box.id)
	if b.LastIn != 2 || len(b.Delivered) != 2 {
		t.Errorf("last processed %d, %d delivered; want 2, 2", b.LastIn, len(b.Delivered))
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

// TestRejectFloodCloses: a box that sends nothing usable is cut off after
// maxRejects rejections in a row; processing a message resets the count.
func TestRejectFloodCloses(t *testing.T) {
	f := newFixture(t, nil)
	box := f.newBox()
	rb := f.mustDial(&box.cert)
	rb.hello(0)
	garbage := frameOf([]byte(`{"v":1,"seq":1,"type":"nuke","body":{}}`))
	for range maxRejects - 1 {
		rb.sendRaw(garbage)
		rb.expectReject("nuke")
	}
	rb.send(1, api.Inventory{Full: true}) // processed: the count starts again
	expect[api.Ack](rb)
	for range maxRejects {
		rb.sendRaw(garbage)
		rb.expectReject("nuke")
	}
	rb.sendRaw(garbage)
	rb.expectReject("100 messages in a row rejected: closing the connection")
	rb.expectClosed()
	if b, _ := f.h.Box(box.id); b.LastIn != 1 {
		t.Errorf("last processed %d, want 1", b.LastIn)
	}
}

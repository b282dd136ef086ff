package gateway

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/boxswarm/boxswarm/api"
	schedclient "github.com/boxswarm/boxswarm/scheduler-client"
)

// allBodies is one of every message type of the protocol.
var allBodies = []api.Body{
	api.Hello{}, api.Ack{}, api.Reject{}, api.Heartbeat{},
	api.Activate{}, api.Activated{}, api.Register{}, api.Registered{},
	api.Inventory{}, api.PriorityList{}, api.DeleteRequest{}, api.DeleteAnswer{},
	api.TransferStart{}, api.TransferStarted{}, api.TransferProgress{}, api.TransferSucceeded{},
	api.TransferFailed{}, api.TransferCancel{}, api.TransferConfirmed{}, api.Measurement{},
	api.Signal{}, api.CatalogUpdate{}, api.PassRequest{}, api.PassResponse{},
	api.KeyRequest{}, api.KeyResponse{},
}

// The gateway accepts from a box exactly what the box's client sends.
func TestBoxMaySendMatchesClient(t *testing.T) {
	n := 0
	for _, b := range allBodies {
		if boxMaySend(b.Type()) != schedclient.MaySend(b.Type()) {
			t.Errorf("%s: gateway accepts %v, client sends %v", b.Type(), boxMaySend(b.Type()), schedclient.MaySend(b.Type()))
		}
		if boxMaySend(b.Type()) {
			n++
		}
	}
	if n != 12 {
		t.Errorf("%d types a box may send, want 12", n)
	}
}

// A reject reason always encodes, and decodes to the same text.
func TestReasonFitsReject(t *testing.T) {
	for _, in := range []string{
		"",
		"short",
		strings.Repeat("x", api.MaxReason),
		strings.Repeat("x", api.MaxReason+1),
		strings.Repeat("é", api.MaxReason), // a cut inside a rune
		"bad \xff\xfe bytes " + strings.Repeat("\xff", 600), // invalid UTF-8 grows when replaced
		strings.Repeat("<>&\u2028", 300),                    // escaped by JSON
	} {
		r := reason(in)
		if len(r) > api.MaxReason || !utf8.ValidString(r) {
			t.Errorf("reason(%.20q…) = %d bytes, valid %v", in, len(r), utf8.ValidString(r))
		}
		frame, err := api.Encode(0, api.Reject{Seq: 1, Reason: r})
		if err != nil {
			t.Fatalf("reason(%.20q…): %v", in, err)
		}
		m, err := api.ReadMessage(bytes.NewReader(frame))
		if err != nil {
			t.Fatalf("reason(%.20q…): decode: %v", in, err)
		}
		if got := m.Body.(api.Reject).Reason; got != r {
			t.Errorf("reason came back as %.40q, sent %.40q", got, r)
		}
	}
}

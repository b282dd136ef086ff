package api

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/boxswarm/boxswarm/media"
)

// allBodies is one of every message type of the protocol.
var allBodies = []Body{
	Hello{}, Ack{}, Reject{}, Heartbeat{},
	Activate{}, Activated{}, Register{}, Registered{},
	Inventory{}, PriorityList{}, DeleteRequest{}, DeleteAnswer{},
	TransferStart{}, TransferStarted{}, TransferProgress{}, TransferSucceeded{},
	TransferFailed{}, TransferCancel{}, TransferConfirmed{}, Measurement{},
	Signal{}, CatalogUpdate{}, PassRequest{}, PassResponse{},
	KeyRequest{}, KeyResponse{},
}

// Each side may send the types meant for it; only a priority list (the
// web edits it too) and signalling go both ways.
func TestWhoMaySend(t *testing.T) {
	var fromBox, fromHeadEnd int
	for _, b := range allBodies {
		if FromBox(b.Type()) {
			fromBox++
		}
		if FromHeadEnd(b.Type()) {
			fromHeadEnd++
		}
		both := b.Type() == PriorityList{}.Type() || b.Type() == Signal{}.Type()
		if FromBox(b.Type()) && FromHeadEnd(b.Type()) != both {
			t.Errorf("%s: from a box %v, from the head-end %v", b.Type(), FromBox(b.Type()), FromHeadEnd(b.Type()))
		}
	}
	if fromBox != 12 || fromHeadEnd != 10 {
		t.Errorf("%d types a box may send, %d the head-end may; want 12 and 10", fromBox, fromHeadEnd)
	}
}

// A reject reason always encodes, and decodes to the same text.
func TestReasonFitsReject(t *testing.T) {
	for _, in := range []string{
		"",
		"short",
		strings.Repeat("x", MaxReason),
		strings.Repeat("x", MaxReason+1),
		strings.Repeat("é", MaxReason), // a cut inside a rune
		"bad \xff\xfe bytes " + strings.Repeat("\xff", 600), // invalid UTF-8 grows when replaced
		strings.Repeat("<>&\u2028", 300),                    // escaped by JSON
	} {
		r := FitReason(in)
		if len(r) > MaxReason || !utf8.ValidString(r) {
			t.Errorf("reason(%.20q…) = %d bytes, valid %v", in, len(r), utf8.ValidString(r))
		}
		frame, err := Encode(0, Reject{Seq: 1, Reason: r})
		if err != nil {
			t.Fatalf("reason(%.20q…): %v", in, err)
		}
		m, err := ReadMessage(bytes.NewReader(frame))
		if err != nil {
			t.Fatalf("reason(%.20q…): decode: %v", in, err)
		}
		if got := m.Body.(Reject).Reason; got != r {
			t.Errorf("reason came back as %.40q, sent %.40q", got, r)
		}
	}
}

// TestCatalogAndPassBounds: the largest valid catalog update fits a frame,
// and what exceeds the bounds is refused before it is sent.
func TestCatalogAndPassBounds(t *testing.T) {
	// "<" is escaped to six bytes in JSON: the worst case.
	long, tag := strings.Repeat("<", maxCatalogText), strings.Repeat("<", maxCatalogTag)
	full := CatalogUpdate{Full: true}
	for i := range MaxCatalogItems {
		full.Items = append(full.Items, CatalogItem{Title: media.ID{byte(i), 1}, Name: long, Genre: tag, Rating: tag,
			Year: 2026, Minutes: 999, PublishAt: time.Now()})
	}
	if err := full.Validate(); err != nil {
		t.Fatalf("largest valid update: %v", err)
	}
	if _, err := Encode(1, full); err != nil {
		t.Fatalf("largest valid update does not fit a frame: %v", err)
	}
	for name, b := range map[string]Body{
		"too many items": CatalogUpdate{Items: append(full.Items, CatalogItem{Title: media.ID{0xFF}})},
		"long name":      CatalogUpdate{Items: []CatalogItem{{Title: media.ID{1}, Name: long + "x"}}},
		"long genre":     CatalogUpdate{Items: []CatalogItem{{Title: media.ID{1}, Genre: tag + "x"}}},
		"long price":     PassRequest{Title: media.ID{1}, Confirm: true, Price: strings.Repeat("9", maxPrice+1)},
	} {
		if err := b.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

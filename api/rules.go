package api

import (
	"bufio"
	"encoding/binary"
	"strings"
	"unicode/utf8"
)

// FromBox reports whether a box may send a sequenced message of type t.
// The gateway rejects anything else without effect, and the box's client
// refuses to send it. Control messages (hello, ack, reject, heartbeat)
// carry seq 0 and are never sequenced; activate and activated, also seq
// 0, belong to no session.
func FromBox(t Type) bool {
	switch t {
	case Register{}.Type(),
		Inventory{}.Type(),
		PriorityList{}.Type(),
		DeleteRequest{}.Type(),
		TransferStarted{}.Type(),
		TransferProgress{}.Type(),
		TransferSucceeded{}.Type(),
		TransferFailed{}.Type(),
		Measurement{}.Type(),
		Signal{}.Type(),
		PassRequest{}.Type(),
		KeyRequest{}.Type():
		return true
	}
	return false
}

// FromHeadEnd reports whether the head-end may send a sequenced message of
// type t; a box rejects anything else without handling it.
func FromHeadEnd(t Type) bool {
	switch t {
	case Registered{}.Type(),
		PriorityList{}.Type(), // edits made on the web
		DeleteAnswer{}.Type(),
		TransferStart{}.Type(),
		TransferCancel{}.Type(),
		TransferConfirmed{}.Type(),
		Signal{}.Type(),
		CatalogUpdate{}.Type(),
		PassResponse{}.Type(),
		KeyResponse{}.Type():
		return true
	}
	return false
}

// FitReason makes text fit a Reject: valid UTF-8 (so it decodes to the
// same bytes on the other side) and at most MaxReason bytes. Decoder
// errors quote what they choke on, which can be anything.
func FitReason(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= MaxReason {
		return s
	}
	const ellipsis = "…"
	cut := MaxReason - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// FrameBuffered reports whether a whole frame is already buffered in br,
// so that reading it will not block: a session acknowledges once what has
// arrived is handled.
func FrameBuffered(br *bufio.Reader) bool {
	n := br.Buffered()
	if n < 4 {
		return false
	}
	hdr, err := br.Peek(4)
	if err != nil {
		return false
	}
	return uint64(n) >= 4+uint64(binary.BigEndian.Uint32(hdr))
}

package schedclient

import (
	"bufio"
	"encoding/binary"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/boxswarm/boxswarm/api"
)

// MaySend reports whether a box may send a (sequenced) message of type t:
// Send accepts exactly these, and the gateway accepts exactly these from a
// box. Control messages (hello, ack, reject, heartbeat) and activation are
// the client's own business.
func MaySend(t api.Type) bool {
	switch t {
	case api.Register{}.Type(),
		api.Inventory{}.Type(),
		api.PriorityList{}.Type(),
		api.DeleteRequest{}.Type(),
		api.TransferStarted{}.Type(),
		api.TransferProgress{}.Type(),
		api.TransferSucceeded{}.Type(),
		api.TransferFailed{}.Type(),
		api.Measurement{}.Type(),
		api.Signal{}.Type(),
		api.PassRequest{}.Type(),
		api.KeyRequest{}.Type():
		return true
	}
	return false
}

// headEndMaySend reports whether the head-end may send a sequenced message
// of type t; the box rejects anything else without handling it.
func headEndMaySend(t api.Type) bool {
	switch t {
	case api.Registered{}.Type(),
		api.PriorityList{}.Type(), // edits made on the web
		api.DeleteAnswer{}.Type(),
		api.TransferStart{}.Type(),
		api.TransferCancel{}.Type(),
		api.TransferConfirmed{}.Type(),
		api.Signal{}.Type(),
		api.CatalogUpdate{}.Type(),
		api.PassResponse{}.Type(),
		api.KeyResponse{}.Type():
		return true
	}
	return false
}

// reason makes text fit a Reject: valid UTF-8, at most api.MaxReason bytes.
func reason(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= api.MaxReason {
		return s
	}
	const ellipsis = "…"
	cut := api.MaxReason - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

func readMessage(br *bufio.Reader) (api.Message, error) {
	b, err := api.ReadFrame(br)
	if err != nil {
		return api.Message{}, err
	}
	return api.Decode(b)
}

// frameBuffered reports whether a whole frame is already buffered.
func frameBuffered(br *bufio.Reader) bool {
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

func drain(r io.Reader) {
	io.CopyN(io.Discard, r, 64<<10)
}

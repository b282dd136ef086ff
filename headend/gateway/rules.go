package gateway

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/boxswarm/boxswarm/api"
)

// boxMaySend reports whether a box may send a sequenced message of type t.
// The check lives here, at the edge, so the Handler only ever sees what a
// box is allowed to say; everything else (activated, registered,
// transfer_start, transfer_cancel, transfer_confirmed, delete_answer,
// catalog_update, pass_response, key_response, and activate once the box has
// a certificate) is rejected without effect.
func boxMaySend(t api.Type) bool {
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

// reason makes text fit a Reject: valid UTF-8 (so it decodes to the same
// bytes on the other side) and at most api.MaxReason bytes. Decoder errors
// quote what they choke on, which can be anything.
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

// readMessage reads and decodes one frame; on a decoding error the message
// holds the sequence number, if the envelope had one.
func readMessage(br *bufio.Reader) (api.Message, error) {
	b, err := api.ReadFrame(br)
	if err != nil {
		return api.Message{}, err
	}
	return api.Decode(b)
}

// frameBuffered reports whether a whole frame is already buffered, so
// reading it will not block.
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

// drain reads and drops what the peer still sends, up to a bound.
func drain(r io.Reader) {
	io.CopyN(io.Discard, r, 64<<10)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// isClosed reports an error that only says the peer went away.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/boxswarm/boxswarm/media"
)

// The protocol between Serve and Client, over a Unix stream socket.
//
// Every message is a big-endian uint32 length and that many bytes:
//
//	request   u8 version (1) | u8 op     | u32 tag | body
//	response  u8 version (1) | u8 status | u32 tag | body
//
// The client picks the tag; the server answers each request once, with
// the request's tag, in any order (a Wait may be answered long after
// later requests), except Cancel, which is not answered: it makes the
// pending request with the tag in its body end with statusCanceled.
// Requests are at most maxRequest bytes and responses at most MaxResponse;
// a peer that sends a longer length is cut off. A request that is framed
// but cannot be decoded is answered statusBadRequest (statusVersion for
// another version) and the connection goes on.
//
// Request bodies, by op; id is a 16-byte media ID:
//
//	Titles       —
//	Manifest     id
//	ReadAt       id | u64 offset | u32 length (at most MaxRead)
//	Have         id
//	Wait         id | u32 piece
//	Lock         id | u8 n | n bytes of UTF-8 reason (n at most maxReason)
//	Unlock       u64 handle
//	Position     id
//	SetPosition  id | u32 frame
//	Cancel       u32 tag
//
// Response bodies with statusOK:
//
//	Titles       u32 count | count × (id | u32 pieces | u32 present | u64 size | u64 present bytes | u32 locks | i64 added)
//	Manifest     the signed manifest file
//	ReadAt       u8 eof (0 or 1) | the bytes (all asked for unless eof)
//	Have         u32 pieces | the bitmap's bytes
//	Lock         u64 handle
//	Position     u8 has (0 or 1) | u32 frame
//	others       —
//
// Any other status carries a UTF-8 message of at most maxMessage bytes.
const (
	protoVersion = 1
	// MaxRead is the most a ReadAt request may ask for; Client splits
	// longer reads.
	MaxRead = 4 << 20
	// MaxResponse bounds a response: the largest signed manifest the media
	// limits allow is about 42 MiB.
	MaxResponse = 64 << 20
	maxRequest  = 96
	maxReason   = 64
	maxMessage  = 1024
	headerLen   = 6
	titleEntry  = 16 + 4 + 4 + 8 + 8 + 4 + 8
)

type op uint8

const (
	opTitles op = iota + 1
	opManifest
	opReadAt
	opHave
	opWait
	opLock
	opUnlock
	opPosition
	opSetPosition
	opCancel
)

func (o op) String() string {
	names := [...]string{"", "Titles", "Manifest", "ReadAt", "Have", "Wait", "Lock", "Unlock", "Position", "SetPosition", "Cancel"}
	if int(o) < len(names) && o > 0 {
		return names[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Statuses; the client turns them back into the package's errors.
const (
	statusOK uint8 = iota
	statusUnknownTitle
	statusMissing
	statusRange
	statusLocked
	statusClosed
	statusCanceled
	statusBadRequest
	statusBusy
	statusVersion
	statusOther = 255
)

// ErrProtocol is wrapped by errors about the protocol itself: malformed
// messages, another version, too many requests in flight.
var ErrProtocol = errors.New("store protocol error")

var statusErrors = map[uint8]error{
	statusUnknownTitle: ErrUnknownTitle,
	statusMissing:      ErrMissing,
	statusRange:        ErrRange,
	statusLocked:       ErrLocked,
	statusClosed:       ErrClosed,
	statusCanceled:     context.Canceled,
	statusBadRequest:   ErrProtocol,
	statusBusy:         ErrProtocol,
	statusVersion:      ErrProtocol,
}

func statusOf(err error) uint8 {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return statusCanceled
	case errors.Is(err, ErrProtocol):
		return statusBadRequest
	}
	for st, e := range statusErrors {
		if e != ErrProtocol && e != context.Canceled && errors.Is(err, e) {
			return st
		}
	}
	return statusOther
}

// request is a decoded request; which fields count depends on op.
type request struct {
	tag    uint32
	op     op
	id     media.ID
	off    uint64
	n      uint32 // ReadAt length, Wait piece, SetPosition frame, Cancel tag
	handle uint64
	reason string
}

// bodyLen is the exact body length of each op, but Lock's, which has
// reason bytes after it.
var bodyLen = map[op]int{
	opTitles: 0, opManifest: 16, opReadAt: 16 + 8 + 4, opHave: 16, opWait: 16 + 4,
	opLock: 16 + 1, opUnlock: 8, opPosition: 16, opSetPosition: 16 + 4, opCancel: 4,
}

var errMalformed = fmt.Errorf("malformed request: %w", ErrProtocol)

// decodeRequest decodes a request frame's bytes (after the length). It
// accepts only the one encoding encode gives back. When the header can be
// read the returned request has its tag, so the error can be answered.
func decodeRequest(b []byte) (request, error) {
	if len(b) < headerLen {
		return request{}, fmt.Errorf("%d-byte request: %w", len(b), errMalformed)
	}
	r := request{op: op(b[1]), tag: binary.BigEndian.Uint32(b[2:])}
	if b[0] != protoVersion {
		return r, fmt.Errorf("protocol version %d, this build speaks %d: %w", b[0], protoVersion, ErrProtocol)
	}
	b = b[headerLen:]
	want, ok := bodyLen[r.op]
	if !ok {
		return r, fmt.Errorf("unknown op %d: %w", uint8(r.op), errMalformed)
	}
	if r.op == opLock && len(b) >= want {
		want += int(b[16])
	}
	if len(b) != want {
		return r, fmt.Errorf("%v request body of %d bytes, want %d: %w", r.op, len(b), want, errMalformed)
	}
	if r.op != opTitles && r.op != opUnlock && r.op != opCancel {
		copy(r.id[:], b)
		b = b[16:]
	}
	switch r.op {
	case opReadAt:
		r.off, r.n = binary.BigEndian.Uint64(b), binary.BigEndian.Uint32(b[8:])
		if r.n > MaxRead || r.off > 1<<62 {
			return r, fmt.Errorf("read of %d bytes at %d: %w", r.n, r.off, errMalformed)
		}
	case opWait, opSetPosition, opCancel:
		r.n = binary.BigEndian.Uint32(b)
	case opUnlock:
		r.handle = binary.BigEndian.Uint64(b)
	case opLock:
		reason := b[1:]
		if len(reason) > maxReason || !utf8.Valid(reason) {
			return r, fmt.Errorf("lock reason of %d bytes: %w", len(reason), errMalformed)
		}
		r.reason = string(reason)
	}
	return r, nil
}

// encode returns the request's frame bytes, without the length.
func (r request) encode() []byte {
	b := []byte{protoVersion, byte(r.op)}
	b = binary.BigEndian.AppendUint32(b, r.tag)
	if r.op != opTitles && r.op != opUnlock && r.op != opCancel {
		b = append(b, r.id[:]...)
	}
	switch r.op {
	case opReadAt:
		b = binary.BigEndian.AppendUint64(b, r.off)
		b = binary.BigEndian.AppendUint32(b, r.n)
	case opWait, opSetPosition, opCancel:
		b = binary.BigEndian.AppendUint32(b, r.n)
	case opUnlock:
		b = binary.BigEndian.AppendUint64(b, r.handle)
	case opLock:
		b = append(b, byte(len(r.reason)))
		b = append(b, r.reason...)
	}
	return b
}

// frame prefixes body with its length. It leaves room for the header,
// which the caller fills in, so that a response is built in one buffer.
func newFrame(status uint8, tag uint32, bodyCap int) []byte {
	b := make([]byte, 4, 4+headerLen+bodyCap)
	b = append(b, protoVersion, status)
	return binary.BigEndian.AppendUint32(b, tag)
}

func finishFrame(b []byte) []byte {
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// readFrame reads one length-prefixed message of at most limit bytes.
func readFrame(r io.Reader, limit int) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size < headerLen || int64(size) > int64(limit) {
		return nil, fmt.Errorf("message of %d bytes (limit %d): %w", size, limit, ErrProtocol)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}

// response is a response frame's header and body.
type response struct {
	status uint8
	tag    uint32
	body   []byte
}

func decodeResponse(b []byte) (response, error) {
	if len(b) < headerLen || b[0] != protoVersion {
		return response{}, fmt.Errorf("response header %x: %w", b[:min(len(b), headerLen)], ErrProtocol)
	}
	return response{status: b[1], tag: binary.BigEndian.Uint32(b[2:]), body: b[headerLen:]}, nil
}

// err turns a failed response back into an error that errors.Is the
// store's own.
func (r response) err() error {
	if r.status == statusOK {
		return nil
	}
	msg := r.body
	if len(msg) > maxMessage || !utf8.Valid(msg) {
		msg = []byte("(unreadable message)")
	}
	if e := statusErrors[r.status]; e != nil {
		return fmt.Errorf("store server: %s: %w", msg, e)
	}
	return fmt.Errorf("store server: %s (status %d)", msg, r.status)
}

func appendTitles(b []byte, ts []TitleInfo) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(ts)))
	for _, t := range ts {
		b = append(b, t.ID[:]...)
		b = binary.BigEndian.AppendUint32(b, uint32(t.Pieces))
		b = binary.BigEndian.AppendUint32(b, uint32(t.Present))
		b = binary.BigEndian.AppendUint64(b, uint64(t.Size))
		b = binary.BigEndian.AppendUint64(b, uint64(t.PresentBytes))
		b = binary.BigEndian.AppendUint32(b, uint32(t.Locks))
		b = binary.BigEndian.AppendUint64(b, uint64(t.Added.Unix()))
	}
	return b
}

func parseTitles(b []byte) ([]TitleInfo, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("titles response of %d bytes: %w", len(b), ErrProtocol)
	}
	n := binary.BigEndian.Uint32(b)
	b = b[4:]
	if uint64(len(b)) != uint64(n)*titleEntry {
		return nil, fmt.Errorf("titles response: %d bytes for %d titles: %w", len(b), n, ErrProtocol)
	}
	ts := make([]TitleInfo, n)
	for i := range ts {
		e := b[i*titleEntry:]
		t := &ts[i]
		copy(t.ID[:], e)
		t.Pieces = int(binary.BigEndian.Uint32(e[16:]))
		t.Present = int(binary.BigEndian.Uint32(e[20:]))
		t.Size = int64(binary.BigEndian.Uint64(e[24:]))
		t.PresentBytes = int64(binary.BigEndian.Uint64(e[32:]))
		t.Locks = int(binary.BigEndian.Uint32(e[40:]))
		t.Added = time.Unix(int64(binary.BigEndian.Uint64(e[44:])), 0)
		if t.Pieces > media.MaxPieces || t.Present > t.Pieces || t.Size < 0 || t.PresentBytes < 0 || t.PresentBytes > t.Size {
			return nil, fmt.Errorf("titles response: title %s: %d of %d pieces, %d of %d bytes: %w", t.ID, t.Present, t.Pieces, t.PresentBytes, t.Size, ErrProtocol)
		}
		t.Complete = t.Present == t.Pieces
	}
	return ts, nil
}

func parseHave(b []byte) (Bitmap, error) {
	if len(b) < 4 {
		return Bitmap{}, fmt.Errorf("have response of %d bytes: %w", len(b), ErrProtocol)
	}
	n := binary.BigEndian.Uint32(b)
	if n > media.MaxPieces {
		return Bitmap{}, fmt.Errorf("have response for %d pieces: %w", n, ErrProtocol)
	}
	bm, err := BitmapFromBytes(int(n), b[4:])
	if err != nil {
		return Bitmap{}, fmt.Errorf("have response: %w: %w", err, ErrProtocol)
	}
	return bm, nil
}

// parseReadAt checks a ReadAt response against the length asked for.
func parseReadAt(b []byte, asked int) (data []byte, eof bool, err error) {
	if len(b) < 1 || b[0] > 1 || len(b)-1 > asked || (b[0] == 0 && len(b)-1 != asked) {
		return nil, false, fmt.Errorf("read response of %d bytes for %d asked: %w", len(b), asked, ErrProtocol)
	}
	return b[1:], b[0] == 1, nil
}

func parseHandle(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("lock response of %d bytes: %w", len(b), ErrProtocol)
	}
	return binary.BigEndian.Uint64(b), nil
}

func parsePosition(b []byte) (int, bool, error) {
	if len(b) != 5 || b[0] > 1 {
		return 0, false, fmt.Errorf("position response of %d bytes: %w", len(b), ErrProtocol)
	}
	return int(binary.BigEndian.Uint32(b[1:])), b[0] == 1, nil
}

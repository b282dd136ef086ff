package piece

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
)

// Version is the piece protocol version this build speaks.
const Version = 1

// Sizes and limits of the wire format. Every frame, header included, fits
// in MaxFrame bytes, the largest message a WebRTC data channel carries.
const (
	HeaderSize   = 4
	MaxFrame     = 64 << 10
	MaxBody      = MaxFrame - HeaderSize
	MaxChunkData = MaxBody - 8 // a Chunk's piece and offset take 8 bytes
	MaxToken     = 1024
	MaxReason    = api.MaxReason
	// MaxManifest bounds a signed manifest sent after Accept: the largest
	// frame table and piece hash list media allows, plus room for the
	// rest.
	MaxManifest = media.MaxFrames*media.FrameEntrySize + media.MaxPieces*32 + 1<<17
	// MaxWindow bounds how many pieces a sender lets a receiver have
	// requested and not yet received.
	MaxWindow = 1024
)

// Type is a message kind, the second byte of a frame header.
type Type uint8

// Message kinds.
const (
	TypeHello    Type = 1  // receiver → sender, first
	TypeAccept   Type = 2  // sender → receiver, answers Hello
	TypeRefuse   Type = 3  // sender → receiver, answers Hello, then close
	TypeRequest  Type = 4  // receiver → sender
	TypeChunk    Type = 5  // sender → receiver
	TypePieceEnd Type = 6  // sender → receiver
	TypeCancel   Type = 7  // either way, then close
	TypeError    Type = 8  // either way, then close
	TypeManifest Type = 9  // sender → receiver, after Accept when asked
	TypeDone     Type = 10 // receiver → sender: everything arrived
)

func (t Type) String() string {
	switch t {
	case TypeHello:
		return "hello"
	case TypeAccept:
		return "accept"
	case TypeRefuse:
		return "refuse"
	case TypeRequest:
		return "request"
	case TypeChunk:
		return "chunk"
	case TypePieceEnd:
		return "piece-end"
	case TypeCancel:
		return "cancel"
	case TypeError:
		return "error"
	case TypeManifest:
		return "manifest"
	case TypeDone:
		return "done"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Errors of the wire format.
var (
	// ErrMalformed is wrapped by every decoding error.
	ErrMalformed = errors.New("malformed piece protocol frame")
	// ErrVersion is wrapped when a frame has a version this build does not
	// speak.
	ErrVersion = errors.New("unsupported piece protocol version")
)

// Message is one decoded message. Decoded Chunk and Manifest data refer to
// the buffer the frame was read into and are valid until the next read.
type Message interface {
	Type() Type
	appendBody(b []byte) []byte
}

// Hello opens a connection: the receiver presents the scheduler's grant
// and its token. Grant.Receiver is the receiver's box ID; the token binds
// it, so the sender learns it from the scheduler's signature, not from the
// peer's word. Grant.Expires travels in whole seconds, as the token signs
// it.
type Hello struct {
	Grant api.Grant
	Token []byte
	// WantManifest asks the sender for the title's signed manifest after
	// Accept: a receiver that does not hold the title yet has no other
	// way to check pieces.
	WantManifest bool
}

// Accept admits the receiver.
type Accept struct {
	// ManifestSize is the size of the signed manifest that follows in
	// Manifest frames, 0 when none was asked for.
	ManifestSize uint32
	// Window is how many pieces the receiver may have requested and not
	// yet received; more is a protocol error.
	Window uint16
}

// RefuseCode says why a sender refused a Hello.
type RefuseCode uint8

// Refusal codes. An unauthorized peer is always told RefuseUnauthorized
// with the same reason, whatever was wrong with its Hello.
const (
	RefuseUnauthorized RefuseCode = 1
	RefuseUnavailable  RefuseCode = 2 // the title cannot be served now
	RefuseVersion      RefuseCode = 3
)

func (c RefuseCode) String() string {
	switch c {
	case RefuseUnauthorized:
		return "unauthorized"
	case RefuseUnavailable:
		return "unavailable"
	case RefuseVersion:
		return "version"
	}
	return fmt.Sprintf("refuse(%d)", uint8(c))
}

// Refuse turns a receiver away. Nothing follows it.
type Refuse struct {
	Code   RefuseCode
	Reason string
}

// Request asks for pieces First to Last, inclusive. The sender answers
// requests in the order they came, each piece as Chunks then a PieceEnd.
type Request struct {
	First, Last int
}

// Chunk carries Data at Offset within Piece. A piece's chunks come in
// order, back to back, and tile it exactly.
type Chunk struct {
	Piece  int
	Offset int
	Data   []byte
}

// PieceEnd closes a piece whose chunks were all sent.
type PieceEnd struct {
	Piece int
}

// Cancel says this end is stopping (the transfer was cancelled, or the
// other end misbehaved). Nothing follows it.
type Cancel struct {
	Reason string
}

// ErrorCode classifies an Error.
type ErrorCode uint16

// Error codes.
const (
	CodeProtocol   ErrorCode = 1 // a frame out of place or out of bounds
	CodeNotGranted ErrorCode = 2 // a request outside the grant
	CodeMissing    ErrorCode = 3 // the sender lacks a requested piece
	CodeInternal   ErrorCode = 4 // the sender's store failed
	CodeVersion    ErrorCode = 5
)

func (c ErrorCode) String() string {
	switch c {
	case CodeProtocol:
		return "protocol"
	case CodeNotGranted:
		return "not granted"
	case CodeMissing:
		return "missing"
	case CodeInternal:
		return "internal"
	case CodeVersion:
		return "version"
	}
	return fmt.Sprintf("code(%d)", uint16(c))
}

// Error ends a connection because something went wrong. Nothing follows
// it.
type Error struct {
	Code   ErrorCode
	Reason string
}

// Manifest carries the next bytes of the signed manifest.
type Manifest struct {
	Data []byte
}

// Done says the receiver has every piece it wanted; the sender closes.
type Done struct{}

func (*Hello) Type() Type    { return TypeHello }
func (*Accept) Type() Type   { return TypeAccept }
func (*Refuse) Type() Type   { return TypeRefuse }
func (*Request) Type() Type  { return TypeRequest }
func (*Chunk) Type() Type    { return TypeChunk }
func (*PieceEnd) Type() Type { return TypePieceEnd }
func (*Cancel) Type() Type   { return TypeCancel }
func (*Error) Type() Type    { return TypeError }
func (*Manifest) Type() Type { return TypeManifest }
func (*Done) Type() Type     { return TypeDone }

func (h *Hello) appendBody(b []byte) []byte {
	g := h.Grant
	b = binary.BigEndian.AppendUint64(b, uint64(g.Transfer))
	b = append(b, g.Sender[:]...)
	b = append(b, g.Receiver[:]...)
	b = append(b, g.Title[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(g.Expires.Unix()))
	var flags byte
	if h.WantManifest {
		flags |= 1
	}
	b = append(b, flags, byte(len(g.Portions)))
	for _, p := range g.Portions {
		b = binary.BigEndian.AppendUint32(b, uint32(p.First))
		b = binary.BigEndian.AppendUint32(b, uint32(p.Last))
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.Token)))
	return append(b, h.Token...)
}

func (a *Accept) appendBody(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, a.ManifestSize)
	return binary.BigEndian.AppendUint16(b, a.Window)
}

func (r *Refuse) appendBody(b []byte) []byte { return append(append(b, byte(r.Code)), r.Reason...) }

func (r *Request) appendBody(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(r.First))
	return binary.BigEndian.AppendUint32(b, uint32(r.Last))
}

func (c *Chunk) appendBody(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(c.Piece))
	b = binary.BigEndian.AppendUint32(b, uint32(c.Offset))
	return append(b, c.Data...)
}

func (p *PieceEnd) appendBody(b []byte) []byte {
	return binary.BigEndian.AppendUint32(b, uint32(p.Piece))
}
func (c *Cancel) appendBody(b []byte) []byte { return append(b, c.Reason...) }
func (e *Error) appendBody(b []byte) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(e.Code)), e.Reason...)
}
func (m *Manifest) appendBody(b []byte) []byte { return append(b, m.Data...) }
func (*Done) appendBody(b []byte) []byte       { return b }

// AppendFrame appends m's frame (header and body) to b. It panics if the
// body would exceed MaxBody: the senders in this package never build one.
func AppendFrame(b []byte, m Message) []byte {
	start := len(b)
	b = append(b, Version, byte(m.Type()), 0, 0)
	b = m.appendBody(b)
	n := len(b) - start - HeaderSize
	if n > MaxBody {
		panic(fmt.Sprintf("piece: %v body of %d bytes exceeds %d", m.Type(), n, MaxBody))
	}
	binary.BigEndian.PutUint16(b[start+2:], uint16(n))
	return b
}

// ReadFrame reads one frame from r into buf (which needs MaxFrame bytes of
// capacity) and decodes it. The header is checked before the body is
// read. A frame of another version is consumed and reported with
// ErrVersion, so the caller can answer it.
func ReadFrame(r io.Reader, buf []byte) (Message, error) {
	buf = buf[:MaxFrame]
	if _, err := io.ReadFull(r, buf[:HeaderSize]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(buf[2:4]))
	if n > MaxBody {
		return nil, fmt.Errorf("frame body of %d bytes exceeds %d: %w", n, MaxBody, ErrMalformed)
	}
	if _, err := io.ReadFull(r, buf[HeaderSize:HeaderSize+n]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return DecodeFrame(buf[:HeaderSize+n])
}

// DecodeFrame decodes exactly one frame. It accepts only the canonical
// encoding: AppendFrame of the result gives b back.
func DecodeFrame(b []byte) (Message, error) {
	if len(b) < HeaderSize {
		return nil, fmt.Errorf("frame of %d bytes is shorter than its header: %w", len(b), ErrMalformed)
	}
	if b[0] != Version {
		return nil, fmt.Errorf("frame version %d (this build speaks %d): %w", b[0], Version, ErrVersion)
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n > MaxBody || n != len(b)-HeaderSize {
		return nil, fmt.Errorf("frame header says %d body bytes, frame has %d: %w", n, len(b)-HeaderSize, ErrMalformed)
	}
	t := Type(b[1])
	m, err := decodeBody(t, b[HeaderSize:])
	if err != nil {
		return nil, fmt.Errorf("%v frame: %w: %w", t, err, ErrMalformed)
	}
	return m, nil
}

// body is a cursor over a frame body.
type body struct {
	b   []byte
	err error
}

func (d *body) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.err = fmt.Errorf("body ends %d bytes short", n-len(d.b))
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *body) u8() uint8 {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *body) u16() uint16 {
	if v := d.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (d *body) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *body) u64() uint64 {
	if v := d.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// piece reads a piece index, which must be below media.MaxPieces.
func (d *body) piece(what string) int {
	v := d.u32()
	if d.err == nil && v >= media.MaxPieces {
		d.err = fmt.Errorf("%s %d is not below %d", what, v, media.MaxPieces)
	}
	return int(v)
}

// rest returns the remaining bytes.
func (d *body) rest() []byte {
	v := d.b
	d.b = nil
	return v
}

func (d *body) reason() string {
	r := d.rest()
	if d.err == nil && len(r) > MaxReason {
		d.err = fmt.Errorf("reason of %d bytes exceeds %d", len(r), MaxReason)
	}
	return string(r)
}

func (d *body) end() error {
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%d bytes after the body", len(d.b))
	}
	return d.err
}

func decodeBody(t Type, b []byte) (Message, error) {
	d := &body{b: b}
	var m Message
	switch t {
	case TypeHello:
		h := &Hello{}
		g := &h.Grant
		g.Transfer = api.TransferID(d.u64())
		copy(g.Sender[:], d.take(16))
		copy(g.Receiver[:], d.take(16))
		copy(g.Title[:], d.take(16))
		g.Expires = time.Unix(int64(d.u64()), 0).UTC()
		flags := d.u8()
		if d.err == nil && flags&^1 != 0 {
			d.err = fmt.Errorf("unknown flags %#x", flags)
		}
		h.WantManifest = flags&1 != 0
		n := int(d.u8())
		if d.err == nil && (n == 0 || n > api.MaxPortions) {
			d.err = fmt.Errorf("%d portions, want 1 to %d", n, api.MaxPortions)
		}
		for i := 0; i < n && d.err == nil; i++ {
			p := api.PieceRange{First: d.piece("portion start"), Last: d.piece("portion end")}
			if d.err == nil && p.Last < p.First {
				d.err = fmt.Errorf("portion %d-%d", p.First, p.Last)
			}
			g.Portions = append(g.Portions, p)
		}
		tn := int(d.u16())
		if d.err == nil && (tn == 0 || tn > MaxToken) {
			d.err = fmt.Errorf("token of %d bytes, want 1 to %d", tn, MaxToken)
		}
		h.Token = d.take(tn)
		m = h
	case TypeAccept:
		a := &Accept{ManifestSize: d.u32(), Window: d.u16()}
		if d.err == nil && (a.ManifestSize > MaxManifest || a.Window == 0 || a.Window > MaxWindow) {
			d.err = fmt.Errorf("manifest size %d, window %d", a.ManifestSize, a.Window)
		}
		m = a
	case TypeRefuse:
		m = &Refuse{Code: RefuseCode(d.u8()), Reason: d.reason()}
	case TypeRequest:
		r := &Request{First: d.piece("first piece"), Last: d.piece("last piece")}
		if d.err == nil && r.Last < r.First {
			d.err = fmt.Errorf("pieces %d to %d", r.First, r.Last)
		}
		m = r
	case TypeChunk:
		c := &Chunk{Piece: d.piece("piece"), Offset: int(d.u32())}
		c.Data = d.rest()
		if d.err == nil && (len(c.Data) == 0 || c.Offset >= media.MaxPieceSize || c.Offset+len(c.Data) > media.MaxPieceSize) {
			d.err = fmt.Errorf("%d bytes at offset %d", len(c.Data), c.Offset)
		}
		m = c
	case TypePieceEnd:
		m = &PieceEnd{Piece: d.piece("piece")}
	case TypeCancel:
		m = &Cancel{Reason: d.reason()}
	case TypeError:
		m = &Error{Code: ErrorCode(d.u16()), Reason: d.reason()}
	case TypeManifest:
		mf := &Manifest{Data: d.rest()}
		if len(mf.Data) == 0 {
			d.err = errors.New("empty")
		}
		m = mf
	case TypeDone:
		m = &Done{}
	default:
		return nil, fmt.Errorf("unknown message type %d", uint8(t))
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return m, nil
}

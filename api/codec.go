package api

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Message is one decoded message.
type Message struct {
	Seq  uint64
	Body Body
}

// ErrMalformed is wrapped by every decoding error; ErrTooLarge by a frame
// longer than MaxFrame.
var (
	ErrMalformed = errors.New("malformed message")
	ErrTooLarge  = errors.New("message too large")
	ErrVersion   = errors.New("unsupported protocol version")
)

type envelope struct {
	V    int             `json:"v"`
	Seq  uint64          `json:"seq"`
	Type Type            `json:"type"`
	Body json.RawMessage `json:"body"`
}

// kinds maps each message type to its decoder.
var kinds = map[Type]func(raw []byte) (Body, error){}

func register[T Body]() {
	var zero T
	kinds[zero.Type()] = func(raw []byte) (Body, error) {
		var v T
		if err := strictUnmarshal(raw, &v); err != nil {
			return nil, err
		}
		return v, nil
	}
}

func init() {
	register[Hello]()
	register[Ack]()
	register[Reject]()
	register[Heartbeat]()
	register[Activate]()
	register[Activated]()
	register[Register]()
	register[Registered]()
	register[Inventory]()
	register[PriorityList]()
	register[DeleteRequest]()
	register[DeleteAnswer]()
	register[TransferStart]()
	register[TransferStarted]()
	register[TransferProgress]()
	register[TransferSucceeded]()
	register[TransferFailed]()
	register[TransferCancel]()
	register[TransferConfirmed]()
	register[Measurement]()
	register[Signal]()
	register[CatalogUpdate]()
	register[PassRequest]()
	register[PassResponse]()
	register[KeyRequest]()
	register[KeyResponse]()
}

// Encode returns the frame for a message: length, then the JSON envelope.
func Encode(seq uint64, b Body) ([]byte, error) {
	if err := b.Validate(); err != nil {
		return nil, fmt.Errorf("encode %s: %w", b.Type(), err)
	}
	body, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", b.Type(), err)
	}
	env, err := json.Marshal(envelope{V: Version, Seq: seq, Type: b.Type(), Body: body})
	if err != nil {
		return nil, err
	}
	if len(env) > MaxFrame {
		return nil, fmt.Errorf("encode %s: %d bytes: %w", b.Type(), len(env), ErrTooLarge)
	}
	frame := make([]byte, 4, 4+len(env))
	binary.BigEndian.PutUint32(frame, uint32(len(env)))
	return append(frame, env...), nil
}

// WriteMessage encodes and writes one frame.
func WriteMessage(w io.Writer, seq uint64, b Body) error {
	frame, err := Encode(seq, b)
	if err != nil {
		return err
	}
	_, err = w.Write(frame)
	return err
}

// ReadFrame reads one frame's payload, refusing a length over MaxFrame
// before reading it.
func ReadFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxFrame {
		return nil, fmt.Errorf("frame of %d bytes (limit %d): %w", n, MaxFrame, ErrTooLarge)
	}
	if n == 0 {
		return nil, fmt.Errorf("empty frame: %w", ErrMalformed)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("frame of %d bytes: %w", n, err)
	}
	return b, nil
}

// ReadMessage reads and decodes one frame.
func ReadMessage(r io.Reader) (Message, error) {
	b, err := ReadFrame(r)
	if err != nil {
		return Message{}, err
	}
	return Decode(b)
}

// Decode parses and validates a frame's payload. Unknown types and fields,
// trailing data and invalid values are all errors wrapping ErrMalformed;
// another protocol version wraps ErrVersion.
func Decode(b []byte) (Message, error) {
	var env envelope
	if err := strictUnmarshal(b, &env); err != nil {
		return Message{}, fmt.Errorf("envelope: %w: %w", ErrMalformed, err)
	}
	if env.V != Version {
		return Message{Seq: env.Seq}, fmt.Errorf("version %d (this end speaks %d): %w", env.V, Version, ErrVersion)
	}
	decode, ok := kinds[env.Type]
	if !ok {
		return Message{Seq: env.Seq}, fmt.Errorf("unknown message type %q: %w", env.Type, ErrMalformed)
	}
	if len(env.Body) == 0 {
		env.Body = []byte("{}")
	}
	v, err := decode(env.Body)
	if err != nil {
		return Message{Seq: env.Seq}, fmt.Errorf("%s: %w: %w", env.Type, ErrMalformed, err)
	}
	if err := v.Validate(); err != nil {
		return Message{Seq: env.Seq}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return Message{Seq: env.Seq, Body: v}, nil
}

func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON value")
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

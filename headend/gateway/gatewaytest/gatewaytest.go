// Package gatewaytest is an in-memory gateway.Handler for tests of the
// gateway, the box's client and what runs on them: activation codes, boxes
// with their certificate hashes, an outbox per box, every message
// delivered, and a log of every call. It also checks the gateway's
// promises as they are kept or broken: Deliver in sequence order once per
// sequence number, Connected and Disconnected alternating per box. A broken
// promise is recorded in Violations rather than failing a test from a
// gateway goroutine.
package gatewaytest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
)

// Call is one call the gateway made.
type Call struct {
	Method string
	Box    api.BoxID
	Seq    uint64   // Deliver, Acked, Pending (after)
	Type   api.Type // Deliver
}

// Delivered is one message delivered from a box.
type Delivered struct {
	Seq  uint64
	Body api.Body
}

// Box is what the handler holds for one box.
type Box struct {
	CertSHA256  [32]byte
	LastIn      uint64      // highest sequence processed from the box
	Delivered   []Delivered // in the order Deliver was called
	Outbox      []schedstore.Outbound
	LastOut     uint64 // highest sequence assigned to the box
	Acked       uint64
	Connected   bool
	Connects    int
	Unreachable int
}

func (b *Box) clone() Box {
	c := *b
	c.Delivered = slices.Clone(b.Delivered)
	c.Outbox = slices.Clone(b.Outbox)
	return c
}

// activation is what a used code gave.
type activation struct {
	pub ed25519.PublicKey
	box api.BoxID
	der []byte
}

// Handler is the in-memory handler. Set Reject before the gateway runs.
type Handler struct {
	// Reject, if set, is called by Deliver after recording a message; its
	// error is Deliver's (the message still counts as processed).
	Reject func(box api.BoxID, body api.Body) error

	mu         sync.Mutex
	codes      map[string]*activation // nil: not used yet
	boxes      map[api.BoxID]*Box
	calls      []Call
	violations []string
	changed    chan struct{}
}

// New returns a handler that accepts the given activation codes.
func New(codes ...string) *Handler {
	h := &Handler{
		codes:   make(map[string]*activation),
		boxes:   make(map[api.BoxID]*Box),
		changed: make(chan struct{}),
	}
	for _, c := range codes {
		h.codes[c] = nil
	}
	return h
}

// AddBox registers a box with its certificate (DER), as activation would.
func (h *Handler) AddBox(id api.BoxID, certDER []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.boxes[id] = &Box{CertSHA256: sha256.Sum256(certDER)}
	h.touch()
}

// SetCertificate replaces a box's registered certificate: the old one is
// no longer accepted.
func (h *Handler) SetCertificate(id api.BoxID, certDER []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if b := h.boxes[id]; b != nil {
		b.CertSHA256 = sha256.Sum256(certDER)
	}
	h.touch()
}

// Box returns a copy of what the handler holds for a box.
func (h *Handler) Box(id api.BoxID) (Box, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	b, ok := h.boxes[id]
	if !ok {
		return Box{}, false
	}
	return b.clone(), true
}

// Boxes returns the number of boxes.
func (h *Handler) Boxes() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.boxes)
}

// Calls returns the calls made so far.
func (h *Handler) Calls() []Call {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.calls)
}

// Violations returns the broken promises seen so far.
func (h *Handler) Violations() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.violations)
}

// Queue owes a message to a box with its next sequence number and returns
// the number. Tell the gateway (Notify) to have it sent now.
func (h *Handler) Queue(id api.BoxID, body api.Body) (uint64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	b, ok := h.boxes[id]
	if !ok {
		return 0, fmt.Errorf("queue for box %s: unknown box", id)
	}
	seq := b.LastOut + 1
	frame, err := api.Encode(seq, body)
	if err != nil {
		return 0, fmt.Errorf("queue for box %s: %w", id, err)
	}
	b.LastOut = seq
	b.Outbox = append(b.Outbox, schedstore.Outbound{Box: id, Seq: seq, Frame: frame})
	h.touch()
	return seq, nil
}

// Await returns once cond, called after every change, holds.
func (h *Handler) Await(ctx context.Context, cond func() bool) error {
	for {
		h.mu.Lock()
		ch := h.changed
		h.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// touch wakes Await; h.mu is held.
func (h *Handler) touch() {
	close(h.changed)
	h.changed = make(chan struct{})
}

func (h *Handler) record(c Call) {
	h.calls = append(h.calls, c)
	h.touch()
}

// Activate implements gateway.Handler. A code used before is accepted
// again from the same key only (the box lost the answer), and answers with
// the same box and certificate.
func (h *Handler) Activate(ctx context.Context, code string, pub ed25519.PublicKey,
	issue func(api.BoxID) ([]byte, error)) (api.BoxID, []byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.record(Call{Method: "Activate"})
	a, ok := h.codes[code]
	switch {
	case !ok:
		return api.BoxID{}, nil, schedstore.ErrCodeUnknown
	case a != nil && a.pub.Equal(pub):
		return a.box, a.der, nil
	case a != nil:
		return api.BoxID{}, nil, schedstore.ErrCodeUsed
	}
	var id api.BoxID
	if _, err := rand.Read(id[:]); err != nil {
		return api.BoxID{}, nil, err
	}
	der, err := issue(id)
	if err != nil {
		return api.BoxID{}, nil, fmt.Errorf("box %s: issue certificate: %w", id, err)
	}
	h.codes[code] = &activation{pub: slices.Clone(pub), box: id, der: der}
	h.boxes[id] = &Box{CertSHA256: sha256.Sum256(der)}
	return id, der, nil
}

// Authenticate implements gateway.Handler.
func (h *Handler) Authenticate(ctx context.Context, id api.BoxID, certSHA256 [32]byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.record(Call{Method: "Authenticate", Box: id})
	b, ok := h.boxes[id]
	switch {
	case !ok:
		return errors.New("unknown box")
	case b.CertSHA256 != certSHA256:
		return errors.New("certificate is not the one registered for this box (replaced or revoked)")
	}
	return nil
}

// Deliver implements gateway.Handler.
func (h *Handler) Deliver(ctx context.Context, id api.BoxID, seq uint64, body api.Body) error {
	h.mu.Lock()
	h.record(Call{Method: "Deliver", Box: id, Seq: seq, Type: body.Type()})
	b, ok := h.boxes[id]
	if !ok {
		h.violations = append(h.violations, fmt.Sprintf("Deliver for unknown box %s", id))
		h.mu.Unlock()
		return errors.New("unknown box")
	}
	if seq != b.LastIn+1 {
		h.violations = append(h.violations, fmt.Sprintf("box %s: Deliver of sequence %d after %d", id, seq, b.LastIn))
	}
	b.LastIn = seq
	b.Delivered = append(b.Delivered, Delivered{Seq: seq, Body: body})
	h.mu.Unlock()
	if h.Reject != nil {
		return h.Reject(id, body)
	}
	return nil
}

// Acked implements gateway.Handler.
func (h *Handler) Acked(ctx context.Context, id api.BoxID, seq uint64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.record(Call{Method: "Acked", Box: id, Seq: seq})
	b, ok := h.boxes[id]
	if !ok {
		return errors.New("unknown box")
	}
	if seq > b.LastOut {
		h.violations = append(h.violations, fmt.Sprintf("box %s: Acked %d beyond the last assigned %d", id, seq, b.LastOut))
		return fmt.Errorf("box %s acknowledged %d, beyond the last assigned (%d)", id, seq, b.LastOut)
	}
	n := 0
	for n < len(b.Outbox) && b.Outbox[n].Seq <= seq {
		n++
	}
	b.Outbox = slices.Delete(b.Outbox, 0, n)
	b.Acked = max(b.Acked, seq)
	return nil
}

// Pending implements gateway.Handler.
func (h *Handler) Pending(ctx context.Context, id api.BoxID, after uint64) ([]schedstore.Outbound, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.record(Call{Method: "Pending", Box: id, Seq: after})
	b, ok := h.boxes[id]
	if !ok {
		return nil, errors.New("unknown box")
	}
	var out []schedstore.Outbound
	for _, o := range b.Outbox {
		if o.Seq > after {
			out = append(out, o)
		}
	}
	return out, nil
}

// LastProcessed implements gateway.Handler.
func (h *Handler) LastProcessed(ctx context.Context, id api.BoxID) (uint64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.record(Call{Method: "LastProcessed", Box: id})
	b, ok := h.boxes[id]
	if !ok {
		return 0, errors.New("unknown box")
	}
	return b.LastIn, nil
}

// Connected implements gateway.Handler.
func (h *Handler) Connected(id api.BoxID, remote string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.record(Call{Method: "Connected", Box: id})
	if b := h.boxes[id]; b != nil {
		if b.Connected {
			h.violations = append(h.violations, fmt.Sprintf("box %s: Connected while connected", id))
		}
		b.Connected = true
		b.Connects++
	}
}

// Disconnected implements gateway.Handler.
func (h *Handler) Disconnected(id api.BoxID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.record(Call{Method: "Disconnected", Box: id})
	if b := h.boxes[id]; b != nil {
		if !b.Connected {
			h.violations = append(h.violations, fmt.Sprintf("box %s: Disconnected while not connected", id))
		}
		b.Connected = false
	}
}

// Unreachable implements gateway.Handler.
func (h *Handler) Unreachable(id api.BoxID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.record(Call{Method: "Unreachable", Box: id})
	if b := h.boxes[id]; b != nil {
		b.Unreachable++
	}
}

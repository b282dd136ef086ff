package playback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/gateway"
)

// DefaultInFlight bounds the pass and key requests Sessions works on at
// once.
const DefaultInFlight = 64

// ErrBusy rejects a request that arrives while DefaultInFlight others are
// being answered; the box asks again.
var ErrBusy = errors.New("playback: too many requests in flight")

// Sessions answers the media pass and key requests that arrive on boxes'
// sessions and hands every other message to the wrapped Handler (the
// scheduler): it is the gateway's Handler when passes and keys are
// served.
//
// The box and its identity key come from the session (the gateway's
// DeviceKey, from the verified device certificate). Answers go out
// through Tell, the scheduler's outbox, with its at-least-once delivery.
// They are worked out off the session's goroutine, since the customer
// store and the vault wait for their disks: a request counts as processed
// when Deliver returns, and one whose answer a crash loses is asked for
// again by the box (a pass inside a paid window charges nothing twice).
type Sessions struct {
	gateway.Handler
	svc  *Service
	tell func(ctx context.Context, box api.BoxID, body api.Body) error
	log  *slog.Logger
	slot chan struct{}
	wg   sync.WaitGroup
}

// NewSessions wraps next so that svc answers passes and keys through
// tell.
func NewSessions(next gateway.Handler, svc *Service, tell func(context.Context, api.BoxID, api.Body) error, log *slog.Logger) *Sessions {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Sessions{Handler: next, svc: svc, tell: tell, log: log, slot: make(chan struct{}, DefaultInFlight)}
}

// Deliver answers PassRequest and KeyRequest, and passes on the rest.
func (s *Sessions) Deliver(ctx context.Context, box api.BoxID, seq uint64, body api.Body) error {
	switch body.(type) {
	case api.PassRequest, api.KeyRequest:
	default:
		return s.Handler.Deliver(ctx, box, seq, body)
	}
	key, ok := gateway.DeviceKey(ctx)
	if !ok {
		return fmt.Errorf("%s from box %s: the session has no device key", body.Type(), box)
	}
	select {
	case s.slot <- struct{}{}:
	default:
		return fmt.Errorf("%s from box %s: %w", body.Type(), box, ErrBusy)
	}
	s.wg.Go(func() {
		defer func() { <-s.slot }()
		// The answer outlives the session that asked.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		var answer api.Body
		var err error
		switch m := body.(type) {
		case api.PassRequest:
			answer, err = s.svc.Pass(ctx, box, key, m)
		case api.KeyRequest:
			answer, err = s.svc.Key(ctx, box, key, m)
		}
		if err != nil {
			s.log.Info("request refused", "box", box, "type", body.Type(), "err", err)
		}
		if err := s.tell(ctx, box, answer); err != nil {
			s.log.Warn("answer not sent", "box", box, "type", answer.Type(), "err", err)
		}
	})
	return nil
}

// Wait returns once every request taken has been answered.
func (s *Sessions) Wait() { s.wg.Wait() }

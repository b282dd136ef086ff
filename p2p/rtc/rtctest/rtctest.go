// Package rtctest links rtc.Transports in one process for tests of what
// runs over them (the transfer agent, the transfer daemon): a Relay stands
// in for the scheduler's signalling, and every Transport gathers loopback
// host candidates only, with no STUN or TURN, so nothing leaves the host.
// It is for tests only.
package rtctest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/p2p/rtc"
)

// queueLen bounds the signals waiting for one box; a Signal call beyond it
// waits, as a scheduler session's send would.
const queueLen = 256

// Relay is the scheduler's part in signalling: it stamps each signal's
// From with the box that sent it (the scheduler takes it from the box's
// device certificate) and hands it to the addressee's HandleSignal,
// asynchronously and in the order sent. Unlike the scheduler it relays
// between any two boxes it knows, transfer or not: tests decide who talks
// to whom.
type Relay struct {
	tb     testing.TB
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	ends   map[api.BoxID]*rtc.Transport
	queues map[api.BoxID]chan api.Signal
	errs   []error
}

// NewRelay returns a Relay whose Transports are closed, and the Relay
// with them, in tb.Cleanup. Cleanups run last registered first, so what
// uses the Transports (an agent) and is stopped in a cleanup registered
// after NewRelay stops before its Transport closes.
func NewRelay(tb testing.TB) *Relay {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Relay{tb: tb, ctx: ctx, cancel: cancel, ends: map[api.BoxID]*rtc.Transport{}, queues: map[api.BoxID]chan api.Signal{}}
	tb.Cleanup(r.close)
	return r
}

// Add makes the Transport of box id from cfg, with Self, Signal and the
// loopback settings filled in (ICE is cleared; an IPFilter already set is
// kept). cfg.Log nil means a logger that is quiet unless RTC_TEST_LOG
// names a level (debug, info, warn). It fails tb if the box was added
// before or the config is refused.
func (r *Relay) Add(id api.BoxID, cfg rtc.Config) *rtc.Transport {
	r.tb.Helper()
	cfg.Self = id
	cfg.Signal = r.signalFrom(id)
	cfg.ICE = nil
	cfg.Loopback = true
	if cfg.IPFilter == nil {
		cfg.IPFilter = func(ip net.IP) bool { return ip.IsLoopback() }
	}
	if cfg.Log == nil {
		cfg.Log = logger().With("box", id.String()[:8])
	}
	r.mu.Lock()
	_, dup := r.ends[id]
	closed := r.closed
	r.mu.Unlock()
	switch {
	case dup:
		r.tb.Fatalf("rtctest: box %s added twice", id)
	case closed:
		r.tb.Fatalf("rtctest: box %s added to a closed relay", id)
	}
	tr, err := rtc.New(cfg)
	if err != nil {
		r.tb.Fatalf("rtctest: transport of box %s: %v", id, err)
	}
	q := make(chan api.Signal, queueLen)
	r.mu.Lock()
	r.ends[id], r.queues[id] = tr, q
	r.mu.Unlock()
	r.wg.Go(func() { r.deliver(tr, q) })
	return tr
}

// deliver hands one box its signals in order until the relay closes.
func (r *Relay) deliver(tr *rtc.Transport, q <-chan api.Signal) {
	for {
		select {
		case <-r.ctx.Done():
			return
		case s := <-q:
			if err := tr.HandleSignal(r.ctx, s); err != nil && r.ctx.Err() == nil {
				r.mu.Lock()
				r.errs = append(r.errs, err)
				r.mu.Unlock()
			}
		}
	}
}

// signalFrom is rtc.Config.Signal for box from.
func (r *Relay) signalFrom(from api.BoxID) func(context.Context, api.Signal) error {
	return func(ctx context.Context, s api.Signal) error {
		if err := s.Validate(); err != nil {
			return fmt.Errorf("rtctest: the scheduler would refuse this signal from %s: %w", from, err)
		}
		s.From = from
		r.mu.Lock()
		q := r.queues[s.To]
		r.mu.Unlock()
		if q == nil {
			return fmt.Errorf("rtctest: signal from %s for transfer %d to unknown box %s", from, s.Transfer, s.To)
		}
		select {
		case q <- s:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("rtctest: relay signal to %s: %w", s.To, ctx.Err())
		case <-r.ctx.Done():
			return errors.New("rtctest: relay closed")
		}
	}
}

// Errors returns what the addressees' HandleSignal refused so far (a
// signal from the wrong peer, a malformed one, one beyond a bound).
func (r *Relay) Errors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

// close closes every Transport, then stops relaying.
func (r *Relay) close() {
	r.mu.Lock()
	r.closed = true
	ends := r.ends
	r.ends = map[api.BoxID]*rtc.Transport{}
	r.mu.Unlock()
	for id, tr := range ends {
		if err := tr.Close(); err != nil {
			r.tb.Errorf("rtctest: close transport of box %s: %v", id, err)
		}
	}
	r.cancel()
	r.wg.Wait()
}

// logger writes to standard error at the level RTC_TEST_LOG names, and
// nothing otherwise: pion's logs would drown the test's own.
func logger() *slog.Logger {
	var level slog.Level
	switch strings.ToLower(os.Getenv("RTC_TEST_LOG")) {
	case "debug":
		level = slog.LevelDebug
	case "info":
		level = slog.LevelInfo
	case "warn":
		level = slog.LevelWarn
	default:
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

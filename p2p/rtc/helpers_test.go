package rtc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
)

// testLog is a logger for tests: quiet unless RTC_TEST_LOG is set (to a
// level: debug, info, warn).
func testLog(t testing.TB, name string) *slog.Logger {
	level := slog.Level(100)
	switch strings.ToLower(os.Getenv("RTC_TEST_LOG")) {
	case "trace":
		level = levelTrace
	case "debug":
		level = slog.LevelDebug
	case "info":
		level = slog.LevelInfo
	case "warn":
		level = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("end", name)
}

// relay is the scheduler's part in tests: it stamps From, as the
// scheduler does from the sender's certificate, and delivers each
// destination's signals in order. tamper, if set, may change a signal or
// drop it (false).
type relay struct {
	t      testing.TB
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	ends   map[api.BoxID]*Transport
	queues map[api.BoxID]chan api.Signal
	tamper func(*api.Signal) bool
	errs   []error // HandleSignal's errors
	sent   map[api.SignalKind]int
}

func newRelay(t testing.TB) *relay {
	ctx, cancel := context.WithCancel(context.Background())
	r := &relay{t: t, ctx: ctx, cancel: cancel, ends: map[api.BoxID]*Transport{}, queues: map[api.BoxID]chan api.Signal{}, sent: map[api.SignalKind]int{}}
	t.Cleanup(r.close) // after a failure too
	return r
}

// signalFrom is Config.Signal for the box from.
func (r *relay) signalFrom(from api.BoxID) func(context.Context, api.Signal) error {
	return func(ctx context.Context, s api.Signal) error {
		if err := s.Validate(); err != nil {
			return fmt.Errorf("relay: the scheduler would refuse this signal: %w", err)
		}
		s.From = from
		r.mu.Lock()
		tamper := r.tamper
		q := r.queues[s.To]
		r.sent[s.Kind]++
		r.mu.Unlock()
		if tamper != nil && !tamper(&s) {
			return nil
		}
		if q == nil {
			return fmt.Errorf("relay: no box %s", s.To)
		}
		select {
		case q <- s:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-r.ctx.Done():
			return errors.New("relay closed")
		}
	}
}

// add makes a Transport for box id, linked to the relay.
func (r *relay) add(id api.BoxID, cfg Config) *Transport {
	r.t.Helper()
	cfg.Self = id
	cfg.Signal = r.signalFrom(id)
	if cfg.Log == nil {
		cfg.Log = testLog(r.t, id.String()[:4])
	}
	tr, err := New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	q := make(chan api.Signal, 256)
	r.mu.Lock()
	r.ends[id] = tr
	r.queues[id] = q
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			select {
			case <-r.ctx.Done():
				return
			case s := <-q:
				if err := tr.HandleSignal(r.ctx, s); err != nil {
					r.mu.Lock()
					r.errs = append(r.errs, err)
					r.mu.Unlock()
				}
			}
		}
	}()
	return tr
}

func (r *relay) setTamper(f func(*api.Signal) bool) {
	r.mu.Lock()
	r.tamper = f
	r.mu.Unlock()
}

func (r *relay) errors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

// close closes every Transport, then the relay; again does nothing.
func (r *relay) close() {
	r.mu.Lock()
	ends := r.ends
	r.ends = map[api.BoxID]*Transport{}
	r.mu.Unlock()
	for id, tr := range ends {
		if err := tr.Close(); err != nil {
			r.t.Errorf("closing %s: %v", id, err)
		}
	}
	r.cancel()
	r.wg.Wait()
}

// loopbackConfig gathers loopback host candidates only: the test sends
// nothing beyond this host.
func loopbackConfig() Config {
	return Config{
		Loopback: true,
		IPFilter: func(ip net.IP) bool { return ip.IsLoopback() },
	}
}

// box returns a test box ID.
func box(b byte) api.BoxID { return api.BoxID{0: b, 15: 0x5a} }

// connectPair connects a and b for transfer, a initiating if aInit, and
// returns a's and b's Conn.
func connectPair(t testing.TB, ctx context.Context, a, b *Transport, transfer api.TransferID, aInit bool) (*Conn, *Conn) {
	t.Helper()
	type res struct {
		c   *Conn
		err error
	}
	ca, cb := make(chan res, 1), make(chan res, 1)
	go func() {
		c, err := a.Connect(ctx, transfer, b.cfg.Self, aInit)
		ca <- res{c, err}
	}()
	go func() {
		c, err := b.Connect(ctx, transfer, a.cfg.Self, !aInit)
		cb <- res{c, err}
	}()
	ra, rb := <-ca, <-cb
	if ra.err != nil || rb.err != nil {
		if ra.c != nil {
			ra.c.Close()
		}
		if rb.c != nil {
			rb.c.Close()
		}
		t.Fatalf("connect transfer %d: a: %v; b: %v", transfer, ra.err, rb.err)
	}
	return ra.c, rb.c
}

// payload writes n pseudo-random bytes (seeded) to w in writes of
// varying size, then CloseWrite, and returns their SHA-256.
func sendPayload(c *Conn, n int, seed uint64) ([32]byte, error) {
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	h := sha256.New()
	buf := make([]byte, 200<<10)
	sizes := []int{64 << 10, 200 << 10, 1, 1500, 64<<10 + 1, 32 << 10}
	for i, sent := 0, 0; sent < n; i++ {
		m := min(sizes[i%len(sizes)], n-sent)
		b := buf[:m]
		_, _ = rng.Read(b)
		h.Write(b)
		if _, err := c.Write(b); err != nil {
			return [32]byte{}, fmt.Errorf("write after %d bytes: %w", sent, err)
		}
		sent += m
	}
	if err := c.CloseWrite(); err != nil {
		return [32]byte{}, fmt.Errorf("close write: %w", err)
	}
	return [32]byte(h.Sum(nil)), nil
}

// receivePayload reads c to io.EOF with reads of varying size, checking
// that no read returns more than a message, and returns the SHA-256.
func receivePayload(c *Conn) ([32]byte, int, error) {
	h := sha256.New()
	buf := make([]byte, 256<<10)
	sizes := []int{7, 64 << 10, 256 << 10, 1000, 100 << 10}
	total := 0
	for i := 0; ; i++ {
		n, err := c.Read(buf[:sizes[i%len(sizes)]])
		if n > MaxMessage {
			return [32]byte{}, total, fmt.Errorf("a read returned %d bytes, more than a message", n)
		}
		h.Write(buf[:n])
		total += n
		if errors.Is(err, io.EOF) {
			return [32]byte(h.Sum(nil)), total, nil
		}
		if err != nil {
			return [32]byte{}, total, fmt.Errorf("read after %d bytes: %w", total, err)
		}
	}
}

// exchange moves n bytes each way at once and checks them; it returns the
// time taken.
func exchange(t testing.TB, ca, cb *Conn, n int) time.Duration {
	t.Helper()
	start := time.Now()
	type sent struct {
		sum [32]byte
		err error
	}
	type got struct {
		sum [32]byte
		n   int
		err error
	}
	var sa, sb chan sent
	sa, sb = make(chan sent, 1), make(chan sent, 1)
	ga, gb := make(chan got, 1), make(chan got, 1)
	go func() { s, err := sendPayload(ca, n, 1); sa <- sent{s, err} }()
	go func() { s, err := sendPayload(cb, n, 2); sb <- sent{s, err} }()
	go func() { s, m, err := receivePayload(ca); ga <- got{s, m, err} }()
	go func() { s, m, err := receivePayload(cb); gb <- got{s, m, err} }()
	xa, xb, ra, rb := <-sa, <-sb, <-ga, <-gb
	d := time.Since(start)
	for _, e := range []error{xa.err, xb.err, ra.err, rb.err} {
		if e != nil {
			t.Fatal(e)
		}
	}
	if rb.n != n || ra.n != n {
		t.Fatalf("received %d and %d bytes, want %d", rb.n, ra.n, n)
	}
	if !bytes.Equal(xa.sum[:], rb.sum[:]) || !bytes.Equal(xb.sum[:], ra.sum[:]) {
		t.Fatal("received bytes differ from those sent")
	}
	return d
}

// goroutineBase waits for the goroutine count to settle and returns it.
func goroutineBase() int {
	n := runtime.NumGoroutine()
	for range 20 {
		time.Sleep(10 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m == n {
			return n
		}
		n = m
	}
	return n
}

// checkNoLeaks fails t if, within a few seconds, the goroutine count does
// not come back to base: something a Transport started outlived its
// Close.
func checkNoLeaks(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			var b bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", n, base, b.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

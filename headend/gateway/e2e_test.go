package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
	schedclient "github.com/boxswarm/boxswarm/scheduler-client"
)

// TestActivationEndToEnd: a box activates with its code, connects with the
// certificate it got, and messages flow both ways; a wrong code gets an
// error and leaves no box behind.
func TestActivationEndToEnd(t *testing.T) {
	f := newFixture(t, nil)
	ctx := f.ctx(30 * time.Second)
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	// A wrong code: refused, nothing stored.
	_, _, err = schedclient.Activate(ctx, f.addr, "127.0.0.1", f.roots, "WRONG-CODE", key.Public().(ed25519.PublicKey))
	if !errors.Is(err, schedclient.ErrRejected) || !strings.Contains(err.Error(), "unknown activation code") {
		t.Fatalf("Activate with a wrong code: %v", err)
	}
	if n := f.h.Boxes(); n != 0 {
		t.Fatalf("%d boxes after a refused activation", n)
	}

	// The right code: a box and its certificate.
	id, der, err := schedclient.Activate(ctx, f.addr, "127.0.0.1", f.roots, goodCode, key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	b, ok := f.h.Box(id)
	if !ok || b.CertSHA256 != sha256.Sum256(der) {
		t.Fatalf("handler holds box %s: %v, with the certificate: %v", id, ok, b.CertSHA256 == sha256.Sum256(der))
	}
	// The code is spent: another key cannot use it.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	if _, _, err := schedclient.Activate(ctx, f.addr, "127.0.0.1", f.roots, goodCode, other.Public().(ed25519.PublicKey)); !errors.Is(err, schedclient.ErrRejected) {
		t.Errorf("second activation with the same code by another key: %v", err)
	}

	// Connect with the certificate: hello, then messages both ways.
	var mu sync.Mutex
	var handled []api.Body
	c, err := schedclient.New(schedclient.Config{
		Addr: f.addr, ServerName: "127.0.0.1", Roots: f.roots,
		Identity: schedclient.Identity{Key: key, Certificate: der},
		State:    schedclient.MemState(),
		Handle: func(_ context.Context, body api.Body) error {
			mu.Lock()
			defer mu.Unlock()
			handled = append(handled, body)
			return nil
		},
		Log: testLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	runClient(t, c)
	if err := f.h.Await(ctx, func() bool { b, _ := f.h.Box(id); return b.Connected }); err != nil {
		t.Fatal("box never connected")
	}

	reg := api.Register{Capacity: 1 << 40, Free: 1 << 39, UpKbps: 10_000, DownKbps: 50_000, NAT: api.NATFullCone}
	if err := c.Send(ctx, reg); err != nil {
		t.Fatal(err)
	}
	if _, err := f.h.Queue(id, api.Registered{Box: id, Time: time.Unix(1, 0).UTC()}); err != nil {
		t.Fatal(err)
	}
	f.g.Notify(id)

	err = f.h.Await(ctx, func() bool {
		b, _ := f.h.Box(id)
		mu.Lock()
		defer mu.Unlock()
		return len(b.Delivered) == 1 && len(handled) == 1 && len(b.Outbox) == 0
	})
	if err != nil {
		t.Fatal("messages did not go both ways")
	}
	b, _ = f.h.Box(id)
	if got := b.Delivered[0]; got.Seq != 1 || !reflectEqual(got.Body, reg) {
		t.Errorf("delivered %+v, want register as 1", got)
	}
	if r, ok := handled[0].(api.Registered); !ok || r.Box != id {
		t.Errorf("box handled %+v", handled[0])
	}
	if !f.g.Connected(id) || !c.Connected() {
		t.Error("not connected at both ends")
	}
	if v := f.h.Violations(); len(v) > 0 {
		t.Error(v)
	}
}

func reflectEqual(a, b api.Body) bool { return fmt.Sprintf("%#v", a) == fmt.Sprintf("%#v", b) }

// runClient runs c until the test ends.
func runClient(t *testing.T, c *schedclient.Client) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// chaosProxy forwards TCP connections to the gateway and cuts each one
// after a random number of bytes, counted in both directions, in the
// middle of whatever is flowing (a TLS record, a frame) and whichever way.
// Now and then it also stalls one direction for a moment.
type chaosProxy struct {
	l        net.Listener
	target   string
	mu       sync.Mutex
	rng      *mrand.Rand
	cuts     atomic.Int64
	stalls   atomic.Int64
	maxCuts  int64
	min, max int
	wg       sync.WaitGroup
}

func newChaosProxy(t *testing.T, target string, seed uint64) *chaosProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &chaosProxy{l: l, target: target, rng: mrand.New(mrand.NewPCG(seed, seed)), maxCuts: 150, min: 1 << 10, max: 24 << 10}
	p.wg.Go(p.serve)
	t.Cleanup(func() { l.Close(); p.wg.Wait() })
	return p
}

func (p *chaosProxy) intN(n int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rng.IntN(n)
}

func (p *chaosProxy) serve() {
	for {
		a, err := p.l.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.pipe(a) })
	}
}

func (p *chaosProxy) pipe(a net.Conn) {
	b, err := net.Dial("tcp", p.target)
	if err != nil {
		a.Close()
		return
	}
	// After maxCuts the link stays up, so the test ends in bounded time.
	budget := int64(1 << 62)
	if p.cuts.Load() < p.maxCuts {
		budget = int64(p.min + p.intN(p.max-p.min))
	}
	var used atomic.Int64
	var once sync.Once
	cut := func(counted bool) {
		once.Do(func() {
			if counted {
				p.cuts.Add(1)
			}
			a.Close()
			b.Close()
		})
	}
	forward := func(dst, src net.Conn) {
		buf := make([]byte, 1500)
		for {
			n, err := src.Read(buf)
			if n > 0 && p.intN(60) == 0 {
				// A stall, not a cut: the other end's resend timer fires
				// on a live connection, and duplicates arrive.
				p.stalls.Add(1)
				time.Sleep(time.Duration(150+p.intN(250)) * time.Millisecond)
			}
			if n > 0 {
				if used.Add(int64(n)) > budget {
					dst.Write(buf[:p.intN(n)]) // part of it, then nothing
					cut(true)
					return
				}
				if _, err := dst.Write(buf[:n]); err != nil {
					cut(false)
					return
				}
			}
			if err != nil {
				cut(false)
				return
			}
		}
	}
	p.wg.Go(func() { forward(b, a) })
	forward(a, b)
}

// TestAtLeastOnceThroughDroppedConnections: 1000 messages each way while
// the connection is cut again and again at random points, and the box
// restarts from its state file now and then. The handler's log and the
// box's are each exactly 1..1000: nothing lost, nothing twice, nothing out
// of order.
func TestAtLeastOnceThroughDroppedConnections(t *testing.T) {
	const n = 1000
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	gwLog, boxLog := countingLog(t), countingLog(t)
	f := newFixture(t, func(c *Config) {
		c.Log = gwLog.Logger
		// Quick resends, so the box also sees duplicates on a live
		// connection, and enough of them that it is never Unreachable.
		c.RetryBase, c.RetryMax, c.MaxRetries = 100*time.Millisecond, 400*time.Millisecond, 1000
		c.IdleTimeout = 3 * time.Second
	})
	box := f.newBox()
	proxy := newChaosProxy(t, f.addr, seed)
	ctx := f.ctx(3 * time.Minute)

	var mu sync.Mutex
	var handled []api.TransferID // what the box's Handle saw, in order
	statePath := filepath.Join(t.TempDir(), "box-state.json")
	cfg := schedclient.Config{
		Addr: proxy.l.Addr().String(), ServerName: "127.0.0.1", Roots: f.roots,
		Identity: schedclient.Identity{Key: box.key, Certificate: box.der},
		Handle: func(_ context.Context, body api.Body) error {
			mu.Lock()
			defer mu.Unlock()
			handled = append(handled, body.(api.TransferConfirmed).Transfer)
			return nil
		},
		Log:        boxLog.Logger,
		Heartbeat:  200 * time.Millisecond,
		BackoffMin: 5 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		Timeout: 5 * time.Second,
	}

	// The box: a client on a state file, restarted (a new Client loading
	// the same file) while messages flow.
	var (
		boxMu  sync.RWMutex
		client *schedclient.Client
		stop   func()
	)
	start := func() {
		st, err := schedclient.FileState(statePath)
		if err != nil {
			t.Fatal(err)
		}
		c := cfg
		c.State = st
		cl, err := schedclient.New(c)
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- cl.Run(rctx) }()
		client = cl
		stop = func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	start()
	defer func() { stop() }()

	var wg sync.WaitGroup
	wg.Go(func() { // the box's messages
		for i := 1; i <= n; i++ {
			boxMu.RLock()
			err := client.Send(ctx, api.TransferProgress{Transfer: 1, Pieces: i})
			boxMu.RUnlock()
			if err != nil {
				t.Errorf("Send %d: %v", i, err)
				return
			}
			if i%250 == 0 { // restart the box
				boxMu.Lock()
				stop()
				start()
				boxMu.Unlock()
			}
			if i%20 == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
	})
	wg.Go(func() { // the head-end's messages
		for i := 1; i <= n; i++ {
			if _, err := f.h.Queue(box.id, api.TransferConfirmed{Transfer: api.TransferID(i), Title: media.ID{1}}); err != nil {
				t.Errorf("Queue %d: %v", i, err)
				return
			}
			f.g.Notify(box.id)
			if i%20 == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
	})
	wg.Wait()

	err := f.h.Await(ctx, func() bool {
		b, _ := f.h.Box(box.id)
		mu.Lock()
		defer mu.Unlock()
		return b.LastIn == n && len(handled) >= n && len(b.Outbox) == 0
	})
	b, _ := f.h.Box(box.id)
	if err != nil {
		t.Fatalf("not everything arrived: handler processed %d, box handled %d, %d owed", b.LastIn, len(handled), len(b.Outbox))
	}
	// The box's outbox drains once the last acks arrive.
	st, _ := schedclient.FileState(statePath)
	for {
		_, lastOut, pending, err := st.Load()
		if err != nil {
			t.Fatal(err)
		}
		if len(pending) == 0 && lastOut == n {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("box outbox still holds %d messages", len(pending))
		}
		time.Sleep(10 * time.Millisecond)
		st, _ = schedclient.FileState(statePath)
	}

	var seqs []uint64
	for i, d := range b.Delivered {
		seqs = append(seqs, d.Seq)
		if p := d.Body.(api.TransferProgress).Pieces; p != i+1 {
			t.Fatalf("handler's message %d carries pieces=%d", i+1, p)
		}
	}
	if want := count(n); !slices.Equal(seqs, want) {
		t.Errorf("handler delivered %d messages, not 1..%d once each: %v", len(seqs), n, firstDiff(seqs, want))
	}
	mu.Lock()
	got := slices.Clone(handled)
	mu.Unlock()
	var ids []uint64
	for _, id := range got {
		ids = append(ids, uint64(id))
	}
	if want := count(n); !slices.Equal(ids, want) {
		t.Errorf("box handled %d messages, not 1..%d once each: %v", len(ids), n, firstDiff(ids, want))
	}
	if v := f.h.Violations(); len(v) > 0 {
		t.Errorf("violations: %v", v)
	}
	connects := b.Connects
	t.Logf("%d connections cut and %d stalled by the proxy, %d sessions, 3 box restarts; gateway: %d resends; box: %d duplicates rejected, %d sessions ended by a read or write error",
		proxy.cuts.Load(), proxy.stalls.Load(), connects, gwLog.count("resending unacknowledged messages"),
		boxLog.count("rejecting a head-end message"), boxLog.count("disconnected from the head-end"))
	if proxy.cuts.Load() < 10 {
		t.Errorf("only %d cuts: the test did not test much", proxy.cuts.Load())
	}
}

func count(n int) []uint64 {
	s := make([]uint64, n)
	for i := range s {
		s[i] = uint64(i + 1)
	}
	return s
}

func firstDiff(got, want []uint64) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("at %d: got %d, want %d", i, got[i], want[i])
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(got), len(want))
}

// logCounter counts log records by message, and passes them on to the
// test log when that is on.
type logCounter struct {
	*slog.Logger
	mu sync.Mutex
	n  map[string]int
}

func countingLog(t *testing.T) *logCounter {
	lc := &logCounter{n: make(map[string]int)}
	lc.Logger = slog.New(countHandler{lc, testLog(t).Handler()})
	return lc
}

func (lc *logCounter) count(msg string) int {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.n[msg]
}

type countHandler struct {
	lc   *logCounter
	next slog.Handler
}

func (h countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countHandler) Handle(ctx context.Context, r slog.Record) error {
	h.lc.mu.Lock()
	h.lc.n[r.Message]++
	h.lc.mu.Unlock()
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}
func (h countHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return countHandler{h.lc, h.next.WithAttrs(as)}
}
func (h countHandler) WithGroup(g string) slog.Handler {
	return countHandler{h.lc, h.next.WithGroup(g)}
}

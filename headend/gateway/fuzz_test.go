package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/deviceca"
	"github.com/boxswarm/boxswarm/headend/gateway/gatewaytest"
)

// fakeStream is a box's side of a session held in memory: reads come from
// the fuzzer's bytes, writes are counted and dropped.
type fakeStream struct {
	r       io.Reader
	mu      sync.Mutex
	written int
	closed  bool
}

func (s *fakeStream) Read(b []byte) (int, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return 0, net.ErrClosed
	}
	return s.r.Read(b)
}

func (s *fakeStream) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, net.ErrClosed
	}
	s.written += len(b)
	return len(b), nil
}

func (s *fakeStream) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (*fakeStream) SetReadDeadline(time.Time) error  { return nil }
func (*fakeStream) SetWriteDeadline(time.Time) error { return nil }
func (*fakeStream) CloseWrite() error                { return nil }

func fuzzFrame(seq uint64, b api.Body) []byte {
	f, err := api.Encode(seq, b)
	if err != nil {
		panic(err)
	}
	return f
}

// FuzzSession feeds arbitrary bytes to the session loop as an
// authenticated box's stream (after a valid hello when the fuzzer says so;
// hello itself is fuzzed otherwise). Whatever arrives, the gateway must
// not panic or hang, must deliver only in order and once per sequence
// (the handler checks), must never pass on an ack of more than it sent,
// and must answer with a bounded amount of output.
func FuzzSession(f *testing.F) {
	hello := fuzzFrame(0, api.Hello{Versions: []int{api.Version}})
	reg := fuzzFrame(1, api.Register{Capacity: 10, Free: 5, NAT: api.NATOpen})
	for _, seed := range [][]byte{
		nil,
		reg,
		append(slicesConcat(reg, fuzzFrame(1, api.Inventory{Full: true})), fuzzFrame(2, api.Inventory{})...),
		slicesConcat(fuzzFrame(0, api.Ack{Seq: 1}), fuzzFrame(0, api.Ack{Seq: 2}), fuzzFrame(0, api.Ack{Seq: 9})),
		slicesConcat(fuzzFrame(0, api.Heartbeat{}), fuzzFrame(3, api.Inventory{})),
		slicesConcat(reg, []byte{0, 0, 0, 0}, fuzzFrame(2, api.Inventory{})),
		slicesConcat(reg, binary.BigEndian.AppendUint32(nil, api.MaxFrame+1)),
		slicesConcat(frameOf([]byte(`{"v":1,"seq":1,"type":"register","body":{"capacity":1,"free":5}}`)), reg),
		slicesConcat(fuzzFrame(0, api.Activate{Code: "x", PublicKey: make([]byte, 32)}), fuzzFrame(0, api.Reject{Seq: 1, Reason: "no"})),
		frameOf([]byte(`{"v":2,"seq":1,"type":"heartbeat","body":{}}`)),
	} {
		f.Add(true, seed)
	}
	f.Add(false, slicesConcat(hello, reg))
	f.Add(false, fuzzFrame(0, api.Hello{Versions: []int{7}}))

	ca, err := deviceca.LoadOrCreate(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	srv, err := ca.IssueServer([]string{"127.0.0.1"})
	if err != nil {
		f.Fatal(err)
	}
	box := api.BoxID{0xb0}

	f.Fuzz(func(t *testing.T, withHello bool, in []byte) {
		h := gatewaytest.New()
		h.AddBox(box, []byte("cert"))
		for i := 1; i <= 2; i++ {
			h.Queue(box, api.TransferCancel{Transfer: api.TransferID(i), Reason: "fuzz"})
		}
		h.Reject = func(_ api.BoxID, b api.Body) error {
			if _, ok := b.(api.Inventory); ok {
				return errorString("inventory refused")
			}
			return nil
		}
		g, err := New(Config{
			TLS: &tls.Config{Certificates: []tls.Certificate{srv}}, CA: ca, Handler: h,
			Log:       testLog(t),
			RetryBase: time.Hour, // no resends: the run ends when the input does
		})
		if err != nil {
			t.Fatal(err)
		}
		if withHello {
			in = slicesConcat(hello, in)
		}
		s := &fakeStream{r: bytes.NewReader(in)}
		done := make(chan struct{})
		go func() {
			defer close(done)
			g.runBox(context.Background(), s, s.Close, box, "fuzz", func() {})
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the session did not end with its input")
		}

		if v := h.Violations(); len(v) > 0 {
			t.Fatalf("violations: %v", v)
		}
		b, _ := h.Box(box)
		if b.Connected {
			t.Error("still connected after the session ended")
		}
		// Each frame in gets at most a reject, an ack and a heartbeat
		// out (a few hundred bytes each, reasons being capped), on top
		// of hello and the two queued messages.
		frames := len(in)/4 + 1
		if limit := 2048 + frames*3*(api.MaxReason+128); s.written > limit {
			t.Errorf("wrote %d bytes for %d bytes in", s.written, len(in))
		}
		if g.Connected(box) {
			t.Error("gateway still lists the box")
		}
	})
}

func slicesConcat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

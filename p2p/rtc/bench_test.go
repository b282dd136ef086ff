package rtc

import (
	"context"
	"io"
	"testing"
	"time"
)

// BenchmarkLoopbackOneWay moves b.N x 1 MiB one way over loopback (one
// connection, the default thresholds and buffers).
func BenchmarkLoopbackOneWay(b *testing.B) {
	r := newRelay(b)
	a := r.add(box(1), loopbackConfig())
	c := r.add(box(2), loopbackConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ca, cc := connectPair(b, ctx, a, c, 1, true)
	const chunk = 1 << 20
	buf := make([]byte, chunk)
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, cc)
		done <- err
	}()
	b.SetBytes(chunk)
	b.ResetTimer()
	for range b.N {
		if _, err := ca.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := ca.CloseWrite(); err != nil {
		b.Fatal(err)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	ca.Close()
	cc.Close()
}

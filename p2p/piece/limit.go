package piece

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Limiter paces bytes: WaitN returns once n more bytes may pass, or with
// ctx's error. One Limiter may be shared by every connection of a box, so
// that they share its cap.
type Limiter interface {
	WaitN(ctx context.Context, n int) error
}

// TokenBucket is a Limiter that lets Rate bytes a second through on
// average and up to Burst at once. A request larger than what is in the
// bucket takes the bucket into debt and waits until the debt is paid, so
// requests of any size work and concurrent callers are served in the
// order they asked.
type TokenBucket struct {
	rate  float64 // bytes per second
	burst float64

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// NewTokenBucket returns a full bucket for rate bytes a second. burst 0
// means MaxFrame, about one chunk.
func NewTokenBucket(rate, burst int) (*TokenBucket, error) {
	if rate <= 0 || burst < 0 {
		return nil, fmt.Errorf("token bucket: rate %d, burst %d", rate, burst)
	}
	if burst == 0 {
		burst = MaxFrame
	}
	return &TokenBucket{rate: float64(rate), burst: float64(burst), tokens: float64(burst), last: time.Now()}, nil
}

// WaitN waits until n bytes may pass. If ctx ends first, the bytes are
// given back.
func (b *TokenBucket) WaitN(ctx context.Context, n int) error {
	b.mu.Lock()
	now := time.Now()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	b.tokens -= float64(n)
	debt := -b.tokens
	b.mu.Unlock()
	if debt <= 0 {
		return nil
	}
	t := time.NewTimer(time.Duration(debt / b.rate * float64(time.Second)))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		b.tokens += float64(n)
		b.mu.Unlock()
		return ctx.Err()
	}
}

// unlimited is the Limiter used when none is configured.
type unlimited struct{}

func (unlimited) WaitN(context.Context, int) error { return nil }

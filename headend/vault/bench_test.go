package vault

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkRelease measures the vault's whole path per pass: the issuer
// signs a pass, the vault verifies it, checks it against the box, unseals
// the content key, wraps it to the box and commits the used pass and the
// log entry to disk (one bbolt transaction with fsync, shared with
// concurrent releases).
func BenchmarkRelease(b *testing.B) {
	e := newEnv(b)
	title, _ := e.put(b)
	ctx := context.Background()
	g := e.grant(title)
	for b.Loop() {
		p, _, err := e.issuer.Issue(g)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.v.Release(ctx, box, boxPub, p); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "releases/s")
}

// BenchmarkReleaseParallel is the same with concurrent boxes: 1, 8 and 32
// goroutines per GOMAXPROCS. Releases that wait for a commit in flight
// share the next one (committer).
func BenchmarkReleaseParallel(b *testing.B) {
	for _, p := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("x%d", p), func(b *testing.B) {
			e := newEnv(b)
			title, _ := e.put(b)
			ctx := context.Background()
			g := e.grant(title)
			b.SetParallelism(p)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					p, _, err := e.issuer.Issue(g)
					if err != nil {
						b.Error(err)
						return
					}
					if _, err := e.v.Release(ctx, box, boxPub, p); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "releases/s")
		})
	}
}

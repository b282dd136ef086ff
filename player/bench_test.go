package player_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/importer"
	"github.com/boxswarm/boxswarm/media/keys"
	"github.com/boxswarm/boxswarm/media/mediatest"
	"github.com/boxswarm/boxswarm/player"
)

// benchTitle is a real title (mediatest.BenchClip: 720p30 at 5 Mb/s), its frames
// in the clear, and its payload, made once per benchmark run.
type benchTitle struct {
	m       *media.Manifest
	ck      []byte
	payload []byte
	plain   [][]byte
	bytes   int64
}

var (
	benchOnce sync.Once
	benchData *benchTitle
)

func loadBenchTitle(b *testing.B) *benchTitle {
	benchOnce.Do(func() {
		dir, err := os.MkdirTemp("", "decrypt-bench-")
		if err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(dir)
		clip := mediatest.Make(b, dir, mediatest.BenchClip)
		_, mk, _ := ed25519.GenerateKey(nil)
		kd := keys.Dir(filepath.Join(dir, "keys"))
		m, err := importer.ImportFile(context.Background(), clip, importer.Options{Out: dir, MediaKey: mk, Keys: kd}, nil)
		if err != nil {
			b.Fatal(err)
		}
		s, _ := kd.ContentKey(context.Background(), m.ID)
		t := &benchTitle{m: m, ck: bytes.Clone(s.Bytes())}
		s.Destroy()
		t.payload, _ = os.ReadFile(filepath.Join(dir, m.ID.String(), media.PayloadFile))
		c, _ := media.NewFrameCipher(t.ck, m.ID)
		for i := range m.NumFrames() {
			e := m.Frame(i)
			p, err := c.Open(nil, uint64(i), e.FrameMeta, t.payload[e.Offset:e.End()])
			if err != nil {
				b.Fatal(err)
			}
			t.plain = append(t.plain, p)
			t.bytes += int64(len(p))
		}
		benchData = t
	})
	if benchData == nil {
		b.Fatal("no benchmark title")
	}
	return benchData
}

// BenchmarkDecrypt opens every frame of a real title once per iteration.
// One op is the whole title; SetBytes makes MB/s comparable across cases.
//
//   - raw-aes-gcm: the same frames sealed under a single, already expanded
//     key: the CPU's AES-GCM limit, the reference;
//   - per-frame-keys: per-frame keys known in advance, a new AES-GCM
//     instance for each: the least the format's per-frame keys can cost
//     with the standard library;
//   - player: media.FrameCipher.Open as the player calls it (key
//     derivation, key schedule, open, inside runtime/secret's erasure when
//     built with GOEXPERIMENT=runtimesecret).
func BenchmarkDecrypt(b *testing.B) {
	t := loadBenchTitle(b)
	n := t.m.NumFrames()
	maxLen := 0
	for _, p := range t.plain {
		maxLen = max(maxLen, len(p))
	}
	dst := make([]byte, 0, maxLen)

	b.Run("raw-aes-gcm", func(b *testing.B) {
		blk, _ := aes.NewCipher(t.ck)
		g, _ := cipher.NewGCM(blk)
		nonce := make([]byte, 12)
		sealed := make([][]byte, n)
		for i, p := range t.plain {
			sealed[i] = g.Seal(nil, nonce, p, nil)
		}
		b.SetBytes(t.bytes)
		b.ReportAllocs()
		for b.Loop() {
			for i := range n {
				if _, err := g.Open(dst[:0], nonce, sealed[i], nil); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/frame")
		b.ReportMetric(float64(n), "frames/op")
	})
	b.Run("per-frame-keys", func(b *testing.B) {
		c, _ := media.NewFrameCipher(t.ck, t.m.ID)
		keysAhead := make([][32]byte, n)
		for i := range n {
			keysAhead[i] = c.FrameKey(uint64(i))
		}
		nonce := make([]byte, 12)
		sealed := make([][]byte, n)
		for i, p := range t.plain {
			blk, _ := aes.NewCipher(keysAhead[i][:])
			g, _ := cipher.NewGCM(blk)
			sealed[i] = g.Seal(nil, nonce, p, nil)
		}
		b.SetBytes(t.bytes)
		b.ReportAllocs()
		for b.Loop() {
			for i := range n {
				blk, _ := aes.NewCipher(keysAhead[i][:])
				g, _ := cipher.NewGCM(blk)
				if _, err := g.Open(dst[:0], nonce, sealed[i], nil); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/frame")
		b.ReportMetric(float64(n), "frames/op")
	})
	b.Run("player", func(b *testing.B) {
		c, _ := media.NewFrameCipher(t.ck, t.m.ID)
		open := player.OpenFrameForBenchmark(c)
		b.SetBytes(t.bytes)
		b.ReportAllocs()
		for b.Loop() {
			for i := range n {
				e := t.m.Frame(i)
				if _, err := open(dst[:0], i, e.FrameMeta, t.payload[e.Offset:e.End()]); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/frame")
		b.ReportMetric(float64(n), "frames/op")
	})
}

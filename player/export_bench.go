package player

import "github.com/boxswarm/boxswarm/media"

// OpenFrameForBenchmark returns the player's frame-opening step, exactly as
// Play runs it, for benchmarks outside this package.
func OpenFrameForBenchmark(c *media.FrameCipher) func(dst []byte, i int, m media.FrameMeta, sealed []byte) ([]byte, error) {
	return func(dst []byte, i int, m media.FrameMeta, sealed []byte) (out []byte, err error) {
		erase(func() { out, err = c.Open(dst, uint64(i), m, sealed) })
		return out, err
	}
}

package nbd

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// overlay is a copy-on-write Disk: reads come from base until a block is
// written, after which that block lives in memory.
type overlay struct {
	base io.ReaderAt
	size int64

	mu    sync.RWMutex
	dirty map[int64]*[BlockSize]byte
}

// NewOverlay returns a Disk of size bytes that reads from base and keeps
// every write in memory, in 4 KiB blocks, so that a test never modifies the
// image it started from. A nil base, or a base shorter than size, reads as
// zeros where it has no bytes. The Disk is safe for concurrent use.
func NewOverlay(base io.ReaderAt, size int64) Disk {
	return &overlay{base: base, size: size, dirty: make(map[int64]*[BlockSize]byte)}
}

func (o *overlay) Size() int64 { return o.size }

// readBase fills p from base at off, with zeros past base's end.
func (o *overlay) readBase(p []byte, off int64) error {
	if o.base == nil {
		clear(p)
		return nil
	}
	n, err := o.base.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == io.EOF || err == nil {
		clear(p[n:])
		return nil
	}
	return fmt.Errorf("nbd: overlay base: reading %d bytes at offset %d: %w", len(p), off, err)
}

func (o *overlay) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("nbd: overlay: read at negative offset %d", off)
	}
	if off >= o.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), o.size-off))
	o.mu.RLock()
	defer o.mu.RUnlock()
	// Runs of clean blocks go to base in one read, so that reading a large
	// range of an untouched image costs one read, not one per block.
	cleanFrom := -1
	flush := func(to int) error {
		if cleanFrom < 0 {
			return nil
		}
		err := o.readBase(p[cleanFrom:to], off+int64(cleanFrom))
		cleanFrom = -1
		return err
	}
	for i := 0; i < n; {
		pos := off + int64(i)
		blk, in := pos/BlockSize, int(pos%BlockSize)
		m := min(BlockSize-in, n-i)
		if d, ok := o.dirty[blk]; ok {
			if err := flush(i); err != nil {
				return 0, err
			}
			copy(p[i:i+m], d[in:in+m])
		} else if cleanFrom < 0 {
			cleanFrom = i
		}
		i += m
	}
	if err := flush(n); err != nil {
		return 0, err
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (o *overlay) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off > o.size || int64(len(p)) > o.size-off {
		return 0, fmt.Errorf("nbd: overlay: write of %d bytes at offset %d outside a %d-byte disk", len(p), off, o.size)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := 0; i < len(p); {
		pos := off + int64(i)
		blk, in := pos/BlockSize, int(pos%BlockSize)
		m := min(BlockSize-in, len(p)-i)
		d, ok := o.dirty[blk]
		if !ok {
			d = new([BlockSize]byte)
			if m < BlockSize {
				// A partial write keeps the rest of the block's bytes.
				if err := o.readBase(d[:], blk*BlockSize); err != nil {
					return i, err
				}
			}
			o.dirty[blk] = d
		}
		copy(d[in:in+m], p[i:i+m])
		i += m
	}
	return len(p), nil
}

// Region is a byte range of the disk: Len bytes from Off.
type Region struct{ Off, Len int64 }

// maxFlipBytes bounds the regions a Flip hook tracks: it keeps the evil
// bytes and a bit per byte in memory.
const maxFlipBytes = 256 << 20

// flipper is the state of a Flip hook.
type flipper struct {
	mu        sync.Mutex
	evilFirst bool
	regions   []flipRegion
}

type flipRegion struct {
	Region
	evil []byte
	seen []uint64 // one bit per byte of the region
}

// FlipAfterFirstRead returns a ReadHook under which the first read of any
// byte inside regions returns the real bytes and every later read of that
// byte returns the bytes at the same offset of evil, an image of the same
// size: a disk that passes a check and then serves something else. The
// regions' evil bytes are read now, so the hook cannot fail later; regions
// must not overlap and may total at most 256 MiB.
func FlipAfterFirstRead(regions []Region, evil io.ReaderAt) (func(off int64, p []byte), error) {
	return newFlipper(regions, evil, false)
}

// FlipOnFirstRead is the reverse: the first read of a byte returns evil's
// bytes, later reads the real ones (a disk that serves something else to a
// first, unchecked look).
func FlipOnFirstRead(regions []Region, evil io.ReaderAt) (func(off int64, p []byte), error) {
	return newFlipper(regions, evil, true)
}

func newFlipper(regions []Region, evil io.ReaderAt, evilFirst bool) (func(off int64, p []byte), error) {
	f := &flipper{evilFirst: evilFirst}
	var total int64
	for i, r := range regions {
		if r.Off < 0 || r.Len <= 0 || r.Len > maxFlipBytes || r.Off > 1<<62 {
			return nil, fmt.Errorf("nbd: flip region %d (offset %d, length %d): want a non-negative offset and a length from 1 to %d", i, r.Off, r.Len, maxFlipBytes)
		}
		if total += r.Len; total > maxFlipBytes {
			return nil, fmt.Errorf("nbd: flip regions total %d bytes, more than %d", total, maxFlipBytes)
		}
		for j, q := range regions[:i] {
			if r.Off < q.Off+q.Len && q.Off < r.Off+r.Len {
				return nil, fmt.Errorf("nbd: flip regions %d and %d overlap", j, i)
			}
		}
		fr := flipRegion{Region: r, evil: make([]byte, r.Len), seen: make([]uint64, (r.Len+63)/64)}
		if n, err := evil.ReadAt(fr.evil, r.Off); n < len(fr.evil) {
			if err == nil {
				err = errors.New("short read")
			}
			return nil, fmt.Errorf("nbd: flip region %d: reading %d evil bytes at offset %d: %w", i, r.Len, r.Off, err)
		}
		f.regions = append(f.regions, fr)
	}
	return f.hook, nil
}

func (f *flipper) hook(off int64, p []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	end := off + int64(len(p))
	for _, r := range f.regions {
		lo, hi := max(off, r.Off), min(end, r.Off+r.Len)
		for pos := lo; pos < hi; pos++ {
			i := pos - r.Off
			word, bit := i/64, uint64(1)<<(i%64)
			first := r.seen[word]&bit == 0
			r.seen[word] |= bit
			if first == f.evilFirst {
				p[pos-off] = r.evil[i]
			}
		}
	}
}

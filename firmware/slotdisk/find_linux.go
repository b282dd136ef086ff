package slotdisk

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Disk is a whole-disk block device. Reads bypass the page cache
// (O_DIRECT), so every read reaches the disk: what stage one verifies is
// exactly what the disk answered, and a verifier that read twice could not
// hide behind the cache. Writes go through a second, ordinary descriptor.
type Disk struct {
	*os.File          // writes, Sync and Name
	direct   *os.File // reads
	size     int64
}

// Size returns the device's size in bytes.
func (d *Disk) Size() int64 { return d.size }

// directAlign is the alignment O_DIRECT needs for offsets, lengths and
// buffers on every disk we support (4 KiB covers 512e and 4Kn drives).
const directAlign = 4096

// ReadAt reads through the page-cache bypass, widening the request to
// aligned blocks.
func (d *Disk) ReadAt(p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	start := off &^ (directAlign - 1)
	end := (off + int64(len(p)) + directAlign - 1) &^ (directAlign - 1)
	buf, err := unix.Mmap(-1, 0, int(end-start), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return 0, fmt.Errorf("read buffer: %w", err)
	}
	defer unix.Munmap(buf)
	n, err := d.direct.ReadAt(buf, start)
	got := max(0, min(len(p), n-int(off-start)))
	copy(p, buf[off-start:])
	if got < len(p) && err == nil {
		err = fmt.Errorf("short read at %d: %d of %d bytes", off, got, len(p))
	}
	return got, err
}

// Close closes both descriptors.
func (d *Disk) Close() error {
	d.direct.Close()
	return d.File.Close()
}

// Find returns the first whole disk whose partition table holds the
// firmware partitions, waiting until ctx ends for disks to appear.
func Find(ctx context.Context) (*Disk, Layout, error) {
	var tried []string
	for {
		tried = tried[:0]
		entries, _ := os.ReadDir("/sys/block")
		for _, e := range entries {
			name := e.Name()
			if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "ram") || strings.HasPrefix(name, "dm-") {
				continue
			}
			d, l, err := open("/dev/" + name)
			if err == nil {
				return d, l, nil
			}
			tried = append(tried, fmt.Sprintf("%s: %v", name, err))
		}
		select {
		case <-ctx.Done():
			if len(tried) == 0 {
				return nil, Layout{}, fmt.Errorf("no disk found")
			}
			return nil, Layout{}, fmt.Errorf("no disk with firmware slots (%s)", strings.Join(tried, "; "))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Open opens a disk device or image file and reads its layout.
func Open(path string) (*Disk, Layout, error) { return open(path) }

func deviceSize(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if st.Mode().IsRegular() {
		return st.Size(), nil
	}
	size, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKGETSIZE64)
	return int64(size), err
}

func open(path string) (*Disk, Layout, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, Layout{}, err
	}
	direct, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		f.Close()
		return nil, Layout{}, err
	}
	d := &Disk{File: f, direct: direct}
	if d.size, err = deviceSize(f); err != nil {
		d.Close()
		return nil, Layout{}, fmt.Errorf("size of %s: %w", path, err)
	}
	l, err := ReadLayout(d, d.size)
	if err != nil {
		d.Close()
		return nil, Layout{}, err
	}
	return d, l, nil
}

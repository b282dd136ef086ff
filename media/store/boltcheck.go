package store

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// checkBoltFile looks at the parts of a bbolt file that bbolt.Open trusts
// without checking: the high-water mark of the meta page it will use,
// against the file's size, and the type of the freelist page. bbolt
// v1.5.0 faults on a page past the end of a file cut short and panics on a
// freelist page that is not one, and either way its memory map keeps the
// file, and so its lock, open for the life of the process. Checked here
// first, such damage is an error like any other.
//
// Layout (bbolt file format version 2, native byte order): a 16-byte page
// header (id u64, flags u16, count u16, overflow u32), then in the two
// meta pages: magic u32, version u32, page size u32, flags u32, root
// bucket (u64 page, u64 sequence), freelist page u64, high-water page u64,
// txid u64, FNV-64a of all before it u64.
func checkBoltFile(f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	type meta struct{ pageSize, root, freelist, hwm, txid uint64 }
	read := func(off int64) (meta, bool) {
		var b [16 + 64]byte
		if _, err := f.ReadAt(b[:], off); err != nil {
			return meta{}, false
		}
		m := b[16:]
		ne := binary.NativeEndian
		h := fnv.New64a()
		h.Write(m[:56])
		if ne.Uint32(m[0:]) != 0xED0CDAED || ne.Uint32(m[4:]) != 2 || ne.Uint64(m[56:]) != h.Sum64() {
			return meta{}, false
		}
		return meta{pageSize: uint64(ne.Uint32(m[8:])), root: ne.Uint64(m[16:]), freelist: ne.Uint64(m[32:]), hwm: ne.Uint64(m[40:]), txid: ne.Uint64(m[48:])}, true
	}
	m, ok := read(0)
	if !ok {
		// bbolt falls back on the second meta page; where it is depends
		// on the page size the first one would have said.
		if m, ok = read(int64(os.Getpagesize())); !ok {
			return nil // bbolt says ErrInvalid
		}
	} else if m1, ok1 := read(int64(m.pageSize)); ok1 && m1.txid > m.txid {
		m = m1
	}
	if m.pageSize < 512 || m.pageSize > 1<<24 {
		return fmt.Errorf("page size %d", m.pageSize)
	}
	if m.hwm > uint64(size)/m.pageSize {
		return fmt.Errorf("file is %d bytes but its pages reach %d", size, m.hwm*m.pageSize)
	}
	if m.root >= m.hwm {
		return fmt.Errorf("root page %d is past the high-water mark %d", m.root, m.hwm)
	}
	const noFreelist = 1<<64 - 1
	if m.freelist == noFreelist {
		return nil
	}
	if m.freelist >= m.hwm {
		return fmt.Errorf("freelist page %d is past the high-water mark %d", m.freelist, m.hwm)
	}
	var hdr [16]byte
	if _, err := f.ReadAt(hdr[:], int64(m.freelist*m.pageSize)); err != nil && err != io.EOF {
		return err
	}
	if flags := binary.NativeEndian.Uint16(hdr[8:]); flags != 0x10 {
		return fmt.Errorf("freelist page %d has page flags %#x", m.freelist, flags)
	}
	if end := m.freelist + uint64(binary.NativeEndian.Uint32(hdr[12:])) + 1; end > m.hwm {
		return fmt.Errorf("freelist pages %d to %d pass the high-water mark %d", m.freelist, end-1, m.hwm)
	}
	return nil
}

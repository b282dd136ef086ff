package keys

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// Secret is key material in its own memory mapping: locked in RAM (never
// swapped), excluded from core dumps and from children made by fork, and
// zeroed and unmapped by Destroy.
type Secret struct {
	mu  sync.Mutex
	mem []byte
	n   int
}

// NewSecret returns n zero bytes of locked memory.
func NewSecret(n int) (*Secret, error) {
	page := unix.Getpagesize()
	size := (n + page - 1) / page * page
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("secret memory: %w", err)
	}
	if err := unix.Mlock(mem); err != nil {
		unix.Munmap(mem)
		return nil, fmt.Errorf("lock secret memory (RLIMIT_MEMLOCK?): %w", err)
	}
	// Best effort: a kernel without these still keeps the memory locked.
	_ = unix.Madvise(mem, unix.MADV_DONTDUMP)
	_ = unix.Madvise(mem, unix.MADV_DONTFORK)
	return &Secret{mem: mem, n: n}, nil
}

// Bytes returns the secret. It is valid until Destroy.
func (s *Secret) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mem == nil {
		return nil
	}
	return s.mem[:s.n]
}

// Destroy zeroes and releases the memory. It is safe to call more than once.
func (s *Secret) Destroy() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mem == nil {
		return
	}
	clear(s.mem)
	unix.Munlock(s.mem)
	unix.Munmap(s.mem)
	s.mem = nil
}

//go:build !linux

package keys

import "sync"

// Secret is key material, zeroed by Destroy. Only Linux builds lock it in
// memory; this fallback exists so host tools build elsewhere.
type Secret struct {
	mu  sync.Mutex
	mem []byte
}

// NewSecret returns n zero bytes.
func NewSecret(n int) (*Secret, error) { return &Secret{mem: make([]byte, n)}, nil }

// Bytes returns the secret. It is valid until Destroy.
func (s *Secret) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mem
}

// Destroy zeroes the memory. It is safe to call more than once.
func (s *Secret) Destroy() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.mem)
	s.mem = nil
}

//go:build !linux

package rollback

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2/transport"
)

// Open opens a TPM character device. It exists only on Linux; elsewhere it
// fails, so the package (and its simulator tests) still build.
func Open(path string) (transport.TPMCloser, error) {
	return nil, fmt.Errorf("opening TPM %q: %w", path, errors.ErrUnsupported)
}

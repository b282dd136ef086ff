//go:build linux

package rollback

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// Open opens the TPM character device at path. An empty path means
// DevTPMRM if the kernel has a resource manager, else DevTPM.
//
// Stage one should pass DevTPM explicitly. It is the only TPM user at that
// point, and /dev/tpm0 is exclusive: opening it fails with EBUSY if anyone
// else has it, and recent kernels also keep /dev/tpmrm0 users out while it is
// open, so nothing can interleave commands with ours. Going through the
// resource manager would also work, since it lets through every command code
// the TPM supports and rewrites only transient object and session handles,
// which we do not use (we only use permanent, NV and PCR handles and password
// sessions), so HierarchyControl and the NV commands pass unchanged. The
// resource manager is the right default for everyone else (stage two, tools),
// who must share the TPM.
func Open(path string) (transport.TPMCloser, error) {
	if path == "" {
		path = DevTPM
		if _, err := os.Stat(DevTPMRM); err == nil {
			path = DevTPMRM
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("opening TPM: stat %s: %w", DevTPMRM, err)
		}
	}
	t, err := linuxtpm.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening TPM %s: %w", path, err)
	}
	return t, nil
}

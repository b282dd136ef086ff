package identity

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/boxswarm/boxswarm/firmware/rollback"
)

// TPMOpener returns how to open the TPM a daemon's -tpm flag names, for
// Options.TPM, and its device path: "none" (nil and "": the board has no
// TPM), "auto", or a device path. "auto" takes the kernel's resource manager (/dev/tpmrm0), which
// any number of processes may share, else /dev/tpm0, else none. It never
// falls back to none when the kernel has a TPM: the package comment says
// why a board with a TPM must pass it.
//
// The daemons open the TPM only around each identity operation and close
// it right after (LoadOrCreate does not keep it), so that /dev/tpm0,
// which admits one user at a time, can serve two daemons too: opening it
// while the other holds it fails with EBUSY, and the opener then retries
// for a few seconds.
func TPMOpener(flagValue string) (open func() (transport.TPMCloser, error), device string, err error) {
	path := flagValue
	switch flagValue {
	case "none":
		return nil, "", nil
	case "auto", "":
		path = ""
		for _, p := range []string{rollback.DevTPMRM, rollback.DevTPM} {
			if _, err := os.Stat(p); err == nil {
				path = p
				break
			}
		}
		if path == "" {
			return nil, "", nil
		}
	default:
		if _, err := os.Stat(path); err != nil {
			return nil, "", fmt.Errorf("-tpm: %w", err)
		}
	}
	return func() (transport.TPMCloser, error) { return openRetrying(path, busyWait) }, path, nil
}

// busyWait bounds the retries of a TPM device another process holds: an
// identity operation takes well under a second on a real TPM.
const busyWait = 5 * time.Second

// openRetrying opens the TPM at path, retrying while it is busy.
func openRetrying(path string, wait time.Duration) (transport.TPMCloser, error) {
	deadline := time.Now().Add(wait)
	for pause := 20 * time.Millisecond; ; pause = min(2*pause, 500*time.Millisecond) {
		t, err := rollback.Open(path)
		if err == nil || !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return t, err
		}
		time.Sleep(pause)
	}
}

//go:build linux

package board

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// FindVirtioPort returns the device node of the virtio serial port with the
// given name, waiting until ctx ends for the device to appear.
func FindVirtioPort(ctx context.Context, name string) (string, error) {
	for {
		names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err == nil && strings.TrimSpace(string(b)) == name {
				dev := "/dev/" + filepath.Base(filepath.Dir(n))
				if _, err := os.Stat(dev); err == nil {
					return dev, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("virtio serial port %q not found: %w", name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// PowerOff syncs and powers the machine off. It returns only on failure.
func PowerOff() error {
	drainConsole()
	unix.Sync()
	return fmt.Errorf("power off: %w", unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF))
}

// Reboot syncs and restarts the machine. It returns only on failure.
func Reboot() error {
	drainConsole()
	unix.Sync()
	return fmt.Errorf("reboot: %w", unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART))
}

// drainConsole waits until the serial console has sent what was written to
// it. A tty write returns once the bytes are queued, so without this the
// last line before a power-off (often the verdict a technician or a test is
// waiting for) can be cut off.
func drainConsole() {
	for _, f := range []*os.File{os.Stdout, os.Stderr} {
		// TCSBRK with a non-zero argument is tcdrain(3); on a non-tty it fails
		// harmlessly with ENOTTY.
		_ = unix.IoctlSetInt(int(f.Fd()), unix.TCSBRK, 1)
	}
}

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
	unix.Sync()
	return fmt.Errorf("power off: %w", unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF))
}

// Reboot syncs and restarts the machine. It returns only on failure.
func Reboot() error {
	unix.Sync()
	return fmt.Errorf("reboot: %w", unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART))
}

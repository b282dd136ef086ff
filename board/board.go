// Package board is the box's hardware as the firmware sees it: the front
// panel that tells the viewer what state the box is in, and power control.
// Each board profile (a folder under board/) implements it for its hardware;
// code above this layer never touches a device directly.
package board

import (
	"context"
	"errors"
)

// PanelState is what the front panel shows.
type PanelState string

// Front-panel states, in the order a box normally passes through them.
const (
	PanelBooting       PanelState = "BOOTING"
	PanelRunning       PanelState = "RUNNING"
	PanelUpdating      PanelState = "UPDATING"
	PanelServiceNeeded PanelState = "SERVICE NEEDED"
)

// Panel is the box's front-panel display and status LEDs.
type Panel interface {
	// Show displays a state, with a short detail for service staff (for
	// example the reason a boot was refused).
	Show(ctx context.Context, state PanelState, detail string) error
}

// Board is one hardware profile.
type Board interface {
	// ID is the board identifier firmware images are signed for.
	ID() string
	// Panel opens the front panel.
	Panel(ctx context.Context) (Panel, error)
	// Halt stops the box for good, leaving the panel as it is. It returns
	// only if the hardware refused.
	Halt() error
}

// DeviceSecreter is implemented by boards that can give each unit a secret
// of its own that software on another unit cannot learn (a key in eFuses, a
// secure element, a SoC's hardware-unique key). board/identity seals the
// box's identity key with it where the board has no TPM. It is optional: a
// board without such a secret does not implement it.
type DeviceSecreter interface {
	// DeviceSecret returns the unit's secret, at least 16 bytes, the same on
	// every call and every boot; the caller zeroes it after use. It returns
	// an error wrapping ErrNoDeviceSecret if this unit has none (for
	// example, fuses never programmed), and any other error if it has one
	// but could not read it.
	DeviceSecret(ctx context.Context) ([]byte, error)
}

// ErrNoDeviceSecret means the board has no per-unit secret.
var ErrNoDeviceSecret = errors.New("no device secret")

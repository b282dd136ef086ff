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

// LED is a front-panel light.
type LED string

// The box's lights.
const (
	LEDPower   LED = "POWER"   // on while the box runs; blinking when it needs service
	LEDNetwork LED = "NETWORK" // on while the box has a network address
)

// Light is what an LED does.
type Light string

// What a light can do.
const (
	LightOff   Light = "OFF"
	LightOn    Light = "ON"
	LightBlink Light = "BLINK"
)

// LEDs is implemented by panels that have status lights.
type LEDs interface {
	SetLED(ctx context.Context, led LED, light Light) error
}

// SetLED sets a light if the panel has lights; a panel without them, or
// no panel at all (nil), is not an error.
func SetLED(ctx context.Context, p Panel, led LED, light Light) error {
	if l, ok := p.(LEDs); ok {
		return l.SetLED(ctx, led, light)
	}
	return nil
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

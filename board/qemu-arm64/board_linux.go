//go:build linux

package qemuarm64

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/boxswarm/boxswarm/board"
)

// PanelPort is the name of the virtio serial port that stands in for the
// front-panel display: the host side of the port is a file the tests read.
const PanelPort = "front-panel"

// Board is the QEMU set-top box, seen from inside the guest.
type Board struct{}

var _ board.Board = Board{}

// ID returns BoardID.
func (Board) ID() string { return BoardID }

// Panel opens the front-panel port.
func (Board) Panel(ctx context.Context) (board.Panel, error) {
	dev, err := board.FindVirtioPort(ctx, PanelPort)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("open front panel: %w", err)
	}
	return panel{f}, nil
}

// Halt powers the machine off: QEMU has no panel to keep lit, and powering
// off is what lets the emulator (and a test waiting on it) end. The panel
// file on the host keeps the last state shown.
func (Board) Halt() error { return board.PowerOff() }

type panel struct{ f *os.File }

// Show writes one line per state change: "PANEL <state>: <detail>".
func (p panel) Show(_ context.Context, st board.PanelState, detail string) error {
	line := "PANEL " + string(st)
	if detail != "" {
		line += ": " + strings.ReplaceAll(detail, "\n", " ")
	}
	if _, err := fmt.Fprintln(p.f, line); err != nil {
		return fmt.Errorf("front panel: %w", err)
	}
	return nil
}

// SetLED writes one line per change: "LED <name> <light>".
func (p panel) SetLED(_ context.Context, led board.LED, light board.Light) error {
	if _, err := fmt.Fprintf(p.f, "LED %s %s\n", led, light); err != nil {
		return fmt.Errorf("front panel LED: %w", err)
	}
	return nil
}

// Command stage1 is the uinit of the ROM's u-root initramfs: the first-stage
// verifier (B1). It boots the second stage from a verified slot or, if none
// verifies, shows that the box needs service and halts. It never returns and
// never offers a shell.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/boxswarm/boxswarm/board"
	qemuarm64 "github.com/boxswarm/boxswarm/board/qemu-arm64"
	"github.com/boxswarm/boxswarm/boot/console"
	"github.com/boxswarm/boxswarm/boot/rom"
	"github.com/boxswarm/boxswarm/boot/stage1"
	"github.com/boxswarm/boxswarm/firmware/rollback"
	"github.com/boxswarm/boxswarm/firmware/slotdisk"
)

// RefusedMarker starts the console line that says the box will not boot.
const RefusedMarker = "BOOT REFUSED: "

func main() {
	ctx := context.Background()
	log := console.Logger(os.Stdout, "stage1: ")
	b := qemuarm64.Board{}
	panel := openPanel(ctx, b, log)
	// Blinking until the second stage says it runs, or for good if this
	// box needs service.
	if err := board.SetLED(ctx, panel, board.LEDPower, board.LightBlink); err != nil {
		log.Warn("front panel", "err", err)
	}

	// Anything that goes wrong, including a panic, ends in the fallback:
	// the process must never exit, or init would look for a shell.
	defer func() {
		if r := recover(); r != nil {
			refuse(ctx, os.Stdout, panel, b, fmt.Errorf("internal error: %v", r))
		}
	}()
	refuse(ctx, os.Stdout, panel, b, boot(ctx, b, panel, log))
}

func boot(ctx context.Context, b board.Board, panel board.Panel, log *slog.Logger) error {
	facts, err := rom.Load()
	if err != nil {
		return err
	}
	if facts.BoardID != b.ID() {
		return fmt.Errorf("ROM built for board %q runs on %q", facts.BoardID, b.ID())
	}
	show(ctx, panel, board.PanelBooting, "", log)
	findCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	disk, _, err := slotdisk.Find(findCtx)
	cancel()
	if err != nil {
		return err
	}
	defer disk.Close()
	tpm, err := openTPM(ctx, 10*time.Second)
	if err != nil {
		return fmt.Errorf("no TPM: %w", err)
	}
	defer tpm.Close()
	return stage1.Run(ctx, stage1.Config{
		RootKey:       facts.RootKey,
		BoardID:       facts.BoardID,
		MinKeyVersion: facts.MinKeyVersion,
		Disk:          disk,
		DiskDevice:    disk.Name(),
		TPM:           tpm,
		Execute:       execute,
		Log:           log,
	})
}

// refuse is the fallback (B2'): it lives in the ROM, says why, lights the
// service state, and halts without touching the disk again. The console
// and the panel come first; the TV's service screen is best effort, and
// is left up for a moment before the halt, which on this board powers
// the box (and the picture) off.
func refuse(ctx context.Context, console io.Writer, panel board.Panel, b board.Board, err error) {
	fmt.Fprintf(console, "%s%v\n", RefusedMarker, err)
	show(ctx, panel, board.PanelServiceNeeded, err.Error(), nil)
	if serviceScreen(ctx, console, err, screenWait, openDisplay) {
		time.Sleep(screenHold)
	}
	for {
		if err := b.Halt(); err != nil {
			fmt.Fprintf(console, "stage1: halt failed (%v); stopping here\n", err)
		}
		time.Sleep(time.Hour)
	}
}

func openPanel(ctx context.Context, b board.Board, log *slog.Logger) board.Panel {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	p, err := b.Panel(ctx)
	if err != nil {
		log.Warn("front panel unavailable", "err", err)
		return nil
	}
	return p
}

func show(ctx context.Context, p board.Panel, st board.PanelState, detail string, log *slog.Logger) {
	if p == nil {
		return
	}
	if err := p.Show(ctx, st, detail); err != nil && log != nil {
		log.Warn("front panel", "err", err)
	}
}

func openTPM(ctx context.Context, wait time.Duration) (transport.TPMCloser, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		t, err := rollback.Open(rollback.DevTPM)
		if err == nil {
			return t, nil
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

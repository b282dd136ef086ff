// Command qemu boots a baked board headless: its ROM stand-in, its disk and
// a software TPM whose state persists next to the image, with the serial
// console on standard output. It returns when the box powers off, reboots
// (QEMU runs with -no-reboot) or the timeout passes.
//
//	go run ./tools/qemu -board qemu-arm64 [-disk path] [-timeout 2m]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	qemuarm64 "github.com/boxswarm/boxswarm/board/qemu-arm64"
	"github.com/boxswarm/boxswarm/board/qemu-arm64/rom"
	"github.com/boxswarm/boxswarm/board/qemu-arm64/vm"
	"github.com/boxswarm/boxswarm/images/bake"
)

func main() {
	board := flag.String("board", "qemu-arm64", "board to boot")
	dir := flag.String("dir", "", "baked images (default out/<board>)")
	disk := flag.String("disk", "", "disk image (default <dir>/disk.img)")
	tpm := flag.String("tpm", "", "swtpm state folder (default <dir>/tpm); it persists like the chip's NV memory")
	timeout := flag.Duration("timeout", 2*time.Minute, "stop the machine after this long")
	flag.Parse()
	if *board != qemuarm64.BoardID {
		fmt.Fprintf(os.Stderr, "qemu: only board %s runs in QEMU\n", qemuarm64.BoardID)
		os.Exit(2)
	}
	if *dir == "" {
		*dir = filepath.Join("out", *board)
	}
	if *disk == "" {
		*disk = filepath.Join(*dir, bake.DiskFile)
	}
	if *tpm == "" {
		*tpm = filepath.Join(*dir, "tpm")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := run(ctx, *dir, *disk, *tpm); err != nil {
		fmt.Fprintf(os.Stderr, "qemu: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dir, disk, tpm string) error {
	romDir := filepath.Join(dir, "rom")
	m := qemuarm64.Machine{
		Disk: disk,
		BIOS: filepath.Join(romDir, rom.UBootFile),
		DTB:  filepath.Join(romDir, rom.DTBFile),
		FIT:  filepath.Join(romDir, rom.FITFile),
	}
	for _, f := range []string{m.Disk, m.BIOS, m.DTB, m.FIT} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%w (run make image first)", err)
		}
	}
	v, err := vm.Start(ctx, vm.Config{Machine: m, TPMState: tpm, Dir: filepath.Join(dir, "run"), Console: os.Stdout})
	if err != nil {
		return err
	}
	defer v.Close()
	err = v.Wait(ctx)
	if panel := v.Panel(); panel != "" {
		fmt.Printf("--- front panel ---\n%s", panel)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		fmt.Fprintln(os.Stderr, "qemu: timeout, stopping the machine")
		return nil
	}
	return err
}

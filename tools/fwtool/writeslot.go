package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/boxswarm/boxswarm/firmware"
	"github.com/boxswarm/boxswarm/firmware/bootctl"
	"github.com/boxswarm/boxswarm/firmware/keyfile"
	"github.com/boxswarm/boxswarm/firmware/slotdisk"
	"github.com/boxswarm/boxswarm/firmware/update"
)

func runWriteSlot(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("write-slot", "-disk DISK -image IMAGE [-slot A|B] [-proven | -tries N] [-root ROOT.pub -board B]", stderr)
	diskPath := fs.String("disk", "", "disk image (or block device) with the box's partition table")
	imagePath := fs.String("image", "", "signed firmware image")
	slotName := fs.String("slot", "", "slot to write (default: the one the box does not boot)")
	proven := fs.Bool("proven", false, "mark the image as already healthy (factory install) instead of putting it on trial")
	tries := fs.Uint("tries", 1, "boots the trial image gets to report healthy")
	root := fs.String("root", "", "verify the image against this ROM root public key before writing")
	board := fs.String("board", "", "board ID for -root verification")
	minImage := fs.Uint64("min-image-version", 0, "rollback floor for -root verification")
	force := fs.Bool("force", false, "allow overwriting the slot the box boots from")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "disk", "image"); err != nil {
		return err
	}
	if *tries == 0 || *tries > 7 {
		return fmt.Errorf("-tries %d: want 1 to 7", *tries)
	}
	img, err := os.ReadFile(*imagePath)
	if err != nil {
		return err
	}
	d, err := slotdisk.OpenFile(*diskPath)
	if err != nil {
		return err
	}
	defer d.Close()
	o := update.Options{Tries: uint8(*tries), AllowActive: *force}
	if *proven {
		o.Mode = update.Proven
	}
	if *root != "" {
		if *board == "" {
			return fmt.Errorf("-root needs -board")
		}
		k, err := keyfile.ReadPublicKey(*root)
		if err != nil {
			return err
		}
		o.Policy = firmware.Policy{RootKey: k, BoardID: *board, MinImageVersion: *minImage}
	}
	if *slotName != "" {
		if o.Slot, err = bootctl.ParseSlot(*slotName); err != nil {
			return err
		}
	} else if o.Slot, err = inactiveSlot(d); err != nil {
		return err
	}
	if err := update.Install(d, img, o); err != nil {
		return fmt.Errorf("%s: %w", *diskPath, err)
	}
	mode := fmt.Sprintf("on trial (%d boot attempts)", *tries)
	if *proven {
		mode = "as proven"
	}
	fmt.Fprintf(stdout, "wrote %s into slot %s of %s, %s\n", *imagePath, o.Slot, *diskPath, mode)
	return nil
}

func inactiveSlot(d slotdisk.File) (bootctl.Slot, error) {
	l, err := slotdisk.ReadLayout(d, d.Size())
	if err != nil {
		return 0, err
	}
	st, _ := l.LoadState(d) // an unreadable record means the default order
	if a, ok := st.Active(); ok {
		return a.Other(), nil
	}
	return bootctl.SlotA, nil
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/u-root/u-root/pkg/boot/kexec"
	"github.com/u-root/u-root/pkg/boot/linux"
	"golang.org/x/sys/unix"

	"github.com/boxswarm/boxswarm/boot/stage1"
)

// execute loads the verified kernel and initramfs with kexec_load and jumps
// to them. The bytes go through sealed memory files, never a filesystem,
// so nothing can change between verification and execution.
func execute(_ context.Context, h stage1.Handover) error {
	k, err := sealedFile("kernel", h.Kernel)
	if err != nil {
		return err
	}
	defer k.Close()
	i, err := sealedFile("initramfs", h.Initramfs)
	if err != nil {
		return err
	}
	defer i.Close()
	var dtb io.ReaderAt // nil: reuse the running device tree, which the ROM verified
	if h.DTB != nil {
		dtb = bytes.NewReader(h.DTB)
	}
	if err := linux.KexecLoad(k, i, h.Cmdline, dtb, nil); err != nil {
		return fmt.Errorf("kexec_load: %w", err)
	}
	unix.Sync()
	return kexec.Reboot()
}

func sealedFile(name string, data []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd for %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, fmt.Errorf("memfd for %s: %w", name, err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil, fmt.Errorf("seal memfd for %s: %w", name, err)
	}
	return f, nil
}

// Package qemuarm64 is the board profile for an arm64 set-top box emulated by
// QEMU's "virt" machine: the exact virtual hardware the box has, so that the
// device tree the ROM verifies against and the machine the tests boot are
// always the same one.
package qemuarm64

import (
	"fmt"
	"strconv"
	"strings"
)

// BoardID is the identifier firmware images for this board are signed for.
const BoardID = "qemu-arm64"

// Machine describes one QEMU invocation of the board. The zero value plus a
// disk is a valid headless box without a TPM.
type Machine struct {
	// MemoryMiB is the guest RAM; 1024 if zero.
	MemoryMiB int
	// Disk is the box's hard disk: a raw image path, or an NBD address
	// understood by QEMU ("nbd:unix:/path/sock").
	Disk string
	// TPMSocket is the control socket of a running swtpm; empty means the
	// box has no TPM. The ROM's device tree must be dumped with the same
	// choice, because the TPM is a platform device listed in it.
	TPMSocket string
	// PanelPath receives what the box writes to its front-panel display
	// (a virtio serial port named "front-panel").
	PanelPath string
	// ReportPath, if set, receives what the box writes to a virtio serial
	// port named "report": measurements a test takes out of the guest,
	// such as the decoder's frame hashes. Boxes in the field have none.
	ReportPath string
	// BIOS, DTB and FIT are the ROM stand-in: U-Boot, its control device
	// tree holding the public key, and the signed FIT it boots.
	BIOS, DTB, FIT string
	// Kernel, Initrd and Append boot a kernel directly, without the ROM
	// (used only to test the kernel itself).
	Kernel, Initrd, Append string
	// Netdev is the backend of the box's network card (virtio-net-pci), a
	// QEMU -netdev option without its id: "user" for QEMU's own NAT,
	// "tap,fd=3" for a tap device handed over by the caller. Empty means
	// no network card. The card is a PCI device, so the device tree (and
	// with it the ROM) is the same with or without it.
	Netdev string
	// MAC is the card's address; QEMU's 52:54:00:12:34:56 if empty. Boxes
	// that share a network need different ones.
	MAC string
	// QMP, if set, is a unix socket path where QEMU serves its machine
	// protocol (screendump, send-key).
	QMP string
	// DumpDTB, if set, makes QEMU write its generated device tree there
	// and exit instead of running. Set BIOS as for the real boot and leave
	// DTB empty: with -dtb QEMU would dump the given file.
	DumpDTB string
}

// FITAddress is where the ROM stand-in places the signed FIT in guest RAM;
// the U-Boot boot command reads it from there.
const FITAddress = 0x50000000

// Args returns the qemu-system-aarch64 arguments for the machine. The serial
// console is always on stdio.
func (m Machine) Args() []string {
	mem := m.MemoryMiB
	if mem == 0 {
		mem = 1024
	}
	// Without ACPI the device tree is the whole description of the board,
	// the same with or without firmware (-bios), and the power button is
	// the device-tree gpio-keys a kernel booted by the ROM can see.
	machine := "virt,acpi=off"
	if m.DumpDTB != "" {
		machine += ",dumpdtb=" + m.DumpDTB
	}
	a := []string{
		"-M", machine, "-cpu", "cortex-a57", "-smp", "1", "-m", strconv.Itoa(mem),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-serial", "stdio",
		"-device", "virtio-rng-pci",
		"-device", "virtio-gpu-pci",
		"-device", "virtio-keyboard-pci",
	}
	if m.Disk != "" {
		a = append(a,
			"-drive", "if=none,id=disk0,format=raw,cache=writeback,file="+optEscape(m.Disk),
			"-device", "virtio-blk-pci,drive=disk0")
	}
	if m.Netdev != "" {
		dev := "virtio-net-pci,netdev=net0,romfile="
		if m.MAC != "" {
			dev += ",mac=" + optEscape(m.MAC)
		}
		a = append(a, "-netdev", m.Netdev+",id=net0", "-device", dev)
	}
	if m.QMP != "" {
		a = append(a, "-qmp", "unix:"+optEscape(m.QMP)+",server=on,wait=off")
	}
	panel := "null"
	if m.PanelPath != "" {
		panel = "file,path=" + optEscape(m.PanelPath)
	}
	a = append(a,
		"-device", "virtio-serial-pci",
		"-chardev", panel+",id=panel",
		"-device", "virtserialport,chardev=panel,name=front-panel")
	if m.ReportPath != "" {
		a = append(a,
			"-chardev", "file,path="+optEscape(m.ReportPath)+",id=report",
			"-device", "virtserialport,chardev=report,name=report")
	}
	if m.TPMSocket != "" {
		a = append(a,
			"-chardev", "socket,id=chrtpm,path="+optEscape(m.TPMSocket),
			"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
			"-device", "tpm-tis-device,tpmdev=tpm0")
	}
	if m.BIOS != "" {
		a = append(a, "-bios", m.BIOS)
	}
	if m.DTB != "" {
		a = append(a, "-dtb", m.DTB)
	}
	if m.FIT != "" {
		a = append(a, "-device", fmt.Sprintf("loader,file=%s,addr=%#x,force-raw=on", optEscape(m.FIT), FITAddress))
	}
	if m.Kernel != "" {
		a = append(a, "-kernel", m.Kernel)
	}
	if m.Initrd != "" {
		a = append(a, "-initrd", m.Initrd)
	}
	if m.Append != "" {
		a = append(a, "-append", m.Append)
	}
	return a
}

// optEscape doubles commas, QEMU's escape inside a comma-separated option
// list, so any file name can be passed.
func optEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

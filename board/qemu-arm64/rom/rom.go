// Package rom builds the QEMU board's stand-in for a set-top box SoC's secure
// boot ROM: Debian's U-Boot for qemu_arm64, a control device tree holding the
// manufacturer's RSA public key and a fixed boot command, and the signed FIT
// image (kernel, stage-one initramfs, device tree) that U-Boot verifies before
// it starts anything.
package rom

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	qemuarm64 "github.com/boxswarm/boxswarm/board/qemu-arm64"
)

// DefaultUBoot is Debian's U-Boot for QEMU's arm64 "virt" machine
// (package u-boot-qemu).
const DefaultUBoot = "/usr/lib/u-boot/qemu_arm64/u-boot.bin"

// BaseBootArgs is the part of the kernel command line every stage one gets:
// the console is the board's serial port, and a panic restarts at once (the
// board runs QEMU with -no-reboot, so a panic ends the run).
const BaseBootArgs = "console=ttyAMA0 panic=-1"

// Names of the files Build leaves in OutDir.
const (
	UBootFile = "u-boot.bin"
	DTBFile   = "rom.dtb"
	FITFile   = "rom.itb"
)

// Where U-Boot copies the FIT's images before starting the kernel. All of
// them sit below qemuarm64.FITAddress so that nothing is copied over the FIT
// while U-Boot still reads it.
const (
	ramBase = 0x40000000
	// kernelAddr is U-Boot's own kernel_addr_r: 2 MiB aligned as the arm64
	// boot protocol wants, and clear of the control DTB QEMU puts at
	// ramBase.
	kernelAddr  = 0x40400000
	ramdiskAddr = 0x48000000
	fdtAddr     = 0x4fe00000
	// ubootReserve is what U-Boot keeps for itself at the top of RAM
	// (relocated code, 16 MiB malloc arena, stack, its copy of the control
	// DTB) with generous slack; the ramdisk and fdt are copied just below
	// it before the kernel starts.
	ubootReserve = 64 << 20
)

// fitMagic is the first word of a FIT (the FDT magic 0xd00dfeed) as U-Boot's
// little-endian itest.l reads it from RAM.
const fitMagic = 0xedfe0dd0

// Options says what goes into the ROM stand-in.
type Options struct {
	// Kernel is an arm64 Linux Image, plain or gzip-compressed.
	Kernel string
	// Initramfs is stage one (B1): a newc cpio archive.
	Initramfs string
	// KeyDir holds the manufacturer's signing key as <KeyName>.key (PEM
	// private key) and <KeyName>.crt (self-signed certificate); see
	// GenerateKey. Build only reads it.
	KeyDir, KeyName string
	// OutDir receives u-boot.bin, rom.dtb and rom.itb.
	OutDir string
	// UBoot is the U-Boot binary; DefaultUBoot if empty.
	UBoot string
	// BootArgs is appended to BaseBootArgs on the kernel command line.
	BootArgs string
	// Machine is the board's device set, from which the device tree is
	// dumped. Its TPMSocket only says whether the box has a TPM: the dump
	// runs its own throwaway swtpm. BIOS, DTB, FIT, Kernel, Initrd,
	// Append, Disk, PanelPath and DumpDTB are ignored.
	Machine qemuarm64.Machine
}

// Artifacts are the paths of the files Build produced.
type Artifacts struct {
	UBoot, DTB, FIT string
}

// Build dumps the board's device tree, makes U-Boot's control DTB (boot
// command plus public key) and the signed FIT, and copies U-Boot, all into
// o.OutDir. The same inputs (and SOURCE_DATE_EPOCH, 0 if unset) give
// byte-identical rom.dtb and rom.itb.
func Build(ctx context.Context, o Options) (Artifacts, error) {
	if o.UBoot == "" {
		o.UBoot = DefaultUBoot
	}
	if err := o.check(); err != nil {
		return Artifacts{}, err
	}
	// mkimage runs in a work dir, so relative paths would point elsewhere.
	for _, p := range []*string{&o.Kernel, &o.Initramfs, &o.KeyDir, &o.OutDir, &o.UBoot} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return Artifacts{}, fmt.Errorf("rom options: %w", err)
		}
		// The FIT source names its inputs (some in a work dir under
		// OutDir) in double-quoted device tree strings.
		if strings.ContainsAny(abs, "\"\\\n") {
			return Artifacts{}, fmt.Errorf("rom options: path %q contains a quote, backslash or newline", abs)
		}
		*p = abs
	}
	epoch, err := sourceDateEpoch()
	if err != nil {
		return Artifacts{}, err
	}
	algo, err := keyAlgo(filepath.Join(o.KeyDir, o.KeyName+".key"))
	if err != nil {
		return Artifacts{}, err
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return Artifacts{}, fmt.Errorf("creating output dir: %w", err)
	}
	// Working inside OutDir keeps the final renames on one file system.
	work, err := os.MkdirTemp(o.OutDir, ".rom-build-")
	if err != nil {
		return Artifacts{}, fmt.Errorf("creating work dir in %s: %w", o.OutDir, err)
	}
	defer os.RemoveAll(work)

	kernel, err := prepareKernel(o.Kernel, work)
	if err != nil {
		return Artifacts{}, err
	}
	ramdisk, err := os.Stat(o.Initramfs)
	if err != nil {
		return Artifacts{}, fmt.Errorf("initramfs: %w", err)
	}
	if ramdisk.Size() == 0 || ramdisk.Size() > fdtAddr-ramdiskAddr {
		return Artifacts{}, fmt.Errorf("initramfs %s is %d bytes; it must be non-empty and fit in %d", o.Initramfs, ramdisk.Size(), fdtAddr-ramdiskAddr)
	}

	slog.InfoContext(ctx, "dumping board device tree", "uboot", o.UBoot, "tpm", o.Machine.TPMSocket != "")
	dump := filepath.Join(work, "dump.dtb")
	if err := dumpDTB(ctx, o.Machine, o.UBoot, dump); err != nil {
		return Artifacts{}, err
	}
	base, err := run(ctx, work, nil, "dtc", "-q", "-I", "dtb", "-O", "dts", dump)
	if err != nil {
		return Artifacts{}, err
	}

	fdt := filepath.Join(work, "fdt.dtb")
	if err := compileDTS(ctx, work, string(base)+stripSeedsDTS, fdt, 0); err != nil {
		return Artifacts{}, err
	}
	if fi, err := os.Stat(fdt); err != nil {
		return Artifacts{}, fmt.Errorf("kernel device tree: %w", err)
	} else if fi.Size() > qemuarm64.FITAddress-fdtAddr {
		return Artifacts{}, fmt.Errorf("kernel device tree is %d bytes, more than %d", fi.Size(), qemuarm64.FITAddress-fdtAddr)
	}

	bootArgs := BaseBootArgs
	if o.BootArgs != "" {
		bootArgs += " " + o.BootArgs
	}
	control := filepath.Join(work, DTBFile)
	// The padding leaves mkimage room to add the public key in place.
	if err := compileDTS(ctx, work, string(base)+stripSeedsDTS+configDTS(bootCommand(bootArgs)), control, 16<<10); err != nil {
		return Artifacts{}, err
	}

	its, err := renderITS(itsParams{
		Kernel: kernel, Ramdisk: o.Initramfs, FDT: fdt,
		KeyName: o.KeyName, Algo: algo,
	})
	if err != nil {
		return Artifacts{}, err
	}
	itsPath := filepath.Join(work, "rom.its")
	if err := os.WriteFile(itsPath, []byte(its), 0o644); err != nil {
		return Artifacts{}, fmt.Errorf("writing FIT source: %w", err)
	}
	fit := filepath.Join(work, FITFile)
	slog.InfoContext(ctx, "signing FIT", "key", filepath.Join(o.KeyDir, o.KeyName), "algo", algo)
	if _, err := run(ctx, work, []string{"SOURCE_DATE_EPOCH=" + strconv.FormatInt(epoch, 10)},
		"mkimage", "-f", itsPath, "-k", o.KeyDir, "-K", control, "-r", fit); err != nil {
		return Artifacts{}, err
	}
	if err := checkFITFits(fit, ramdisk.Size(), o.Machine.MemoryMiB); err != nil {
		return Artifacts{}, err
	}

	a := Artifacts{
		UBoot: filepath.Join(o.OutDir, UBootFile),
		DTB:   filepath.Join(o.OutDir, DTBFile),
		FIT:   filepath.Join(o.OutDir, FITFile),
	}
	if err := copyFile(o.UBoot, filepath.Join(work, UBootFile)); err != nil {
		return Artifacts{}, err
	}
	for _, mv := range [][2]string{{filepath.Join(work, UBootFile), a.UBoot}, {control, a.DTB}, {fit, a.FIT}} {
		if err := os.Rename(mv[0], mv[1]); err != nil {
			return Artifacts{}, fmt.Errorf("moving %s into place: %w", filepath.Base(mv[1]), err)
		}
	}
	slog.InfoContext(ctx, "ROM stand-in built", "dir", o.OutDir)
	return a, nil
}

var keyNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)

func (o Options) check() error {
	for _, f := range []struct{ name, val string }{
		{"Kernel", o.Kernel}, {"Initramfs", o.Initramfs}, {"KeyDir", o.KeyDir},
		{"KeyName", o.KeyName}, {"OutDir", o.OutDir},
	} {
		if f.val == "" {
			return fmt.Errorf("rom options: %s is empty", f.name)
		}
	}
	if !keyNameRE.MatchString(o.KeyName) {
		return fmt.Errorf("rom options: key name %q: want letters, digits, '-' and '_'", o.KeyName)
	}
	return checkBootArgs(o.BootArgs)
}

// checkBootArgs keeps the extra arguments to what survives being placed in a
// single-quoted U-Boot hush word inside a device tree string unchanged.
func checkBootArgs(s string) error {
	for _, r := range s {
		if r < 0x20 || r > 0x7e || strings.ContainsRune(`'"\$;`+"`", r) {
			return fmt.Errorf("rom options: boot args %q: character %q not allowed", s, r)
		}
	}
	return nil
}

// sourceDateEpoch is the FIT's timestamp: the reproducible-builds
// SOURCE_DATE_EPOCH if the caller set one, else 0, so that a build never
// depends on the clock.
func sourceDateEpoch() (int64, error) {
	s, ok := os.LookupEnv("SOURCE_DATE_EPOCH")
	if !ok || s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("SOURCE_DATE_EPOCH %q is not a non-negative integer", s)
	}
	return v, nil
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return fmt.Errorf("copying U-Boot: %w", err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		return fmt.Errorf("copying U-Boot: %w", err)
	}
	return nil
}

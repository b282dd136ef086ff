// Package rom builds the QEMU board's stand-in for a set-top box SoC's secure
// boot ROM: Debian's U-Boot for qemu_arm64, a control device tree holding the
// manufacturer's RSA public key and a fixed boot command, and the signed FIT
// image (kernel, stage-one initramfs, device tree) that U-Boot verifies before
// it starts anything.
package rom

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"

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

// bootCommand is U-Boot's whole job. The FIT magic check matters: this
// U-Boot also boots legacy uImages, which carry only a CRC, so "bootm" alone
// would start an unsigned multi-file uImage (kernel, initramfs and fdt).
// "verify yes" guards against an environment that turned FIT checks off.
// Whatever happens, U-Boot powers off rather than fall through to its
// prompt.
func bootCommand(bootArgs string) string {
	return fmt.Sprintf("setenv verify yes; setenv bootargs '%s'; "+
		"if itest.l *%#x == %#x; then bootm %#x; else echo 'rom: no FIT image at %#x, not booting'; fi; "+
		"poweroff; reset",
		bootArgs, qemuarm64.FITAddress, fitMagic, qemuarm64.FITAddress, qemuarm64.FITAddress)
}

// stripSeedsDTS removes the random seeds QEMU puts in /chosen: they would
// make every dump differ, and a seed frozen into a signed image would hand
// every box the same KASLR offset and a publicly known "random" seed.
const stripSeedsDTS = `
/ {
	chosen {
		/delete-property/ rng-seed;
		/delete-property/ kaslr-seed;
	};
};
`

// configDTS is U-Boot's /config node. bootdelay -2 makes U-Boot autoboot
// without looking at the console at all; 0 would still stop at a key
// already typed. (U-Boot 2023.01 reads "bootdelay", not the documented
// "bootdelay-sec".) "bootsecure" is deliberately absent: it accepts only a
// single command word run without arguments, so it could neither set
// bootargs nor refuse a legacy image, and it hangs instead of powering off.
func configDTS(bootcmd string) string {
	return fmt.Sprintf(`
/ {
	config {
		bootcmd = "%s";
		bootdelay = <0xfffffffe>;
	};
};
`, dtsEscape(bootcmd))
}

func dtsEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

type itsParams struct {
	Kernel, Ramdisk, FDT string
	// KeyName and Algo sign the configuration; an empty KeyName leaves it
	// unsigned (only tests want that).
	KeyName, Algo string
}

var itsTemplate = template.Must(template.New("its").Funcs(template.FuncMap{
	"hex": func(v uint32) string { return fmt.Sprintf("%#08x", v) },
}).Parse(`/dts-v1/;

/ {
	description = "boxswarm stage one for {{.Board}}";
	#address-cells = <1>;

	images {
		kernel {
			description = "Linux kernel";
			data = /incbin/("{{.Kernel}}");
			type = "kernel";
			arch = "arm64";
			os = "linux";
			compression = "none";
			load = <{{hex .KernelAddr}}>;
			entry = <{{hex .KernelAddr}}>;
			hash {
				algo = "sha256";
			};
		};
		ramdisk {
			description = "stage one initramfs";
			data = /incbin/("{{.Ramdisk}}");
			type = "ramdisk";
			arch = "arm64";
			os = "linux";
			compression = "none";
			load = <{{hex .RamdiskAddr}}>;
			hash {
				algo = "sha256";
			};
		};
		fdt {
			description = "{{.Board}} device tree";
			data = /incbin/("{{.FDT}}");
			type = "flat_dt";
			arch = "arm64";
			compression = "none";
			load = <{{hex .FDTAddr}}>;
			hash {
				algo = "sha256";
			};
		};
	};

	configurations {
		default = "conf";
		conf {
			description = "boxswarm stage one";
			kernel = "kernel";
			ramdisk = "ramdisk";
			fdt = "fdt";
{{- if .KeyName}}
			signature {
				algo = "{{.Algo}}";
				key-name-hint = "{{.KeyName}}";
				sign-images = "kernel", "fdt", "ramdisk";
			};
{{- end}}
		};
	};
};
`))

// renderITS writes the FIT source. The addresses default to the board's
// layout.
func renderITS(p itsParams) (string, error) {
	if p.KeyName != "" && p.Algo == "" {
		return "", errors.New("FIT source: key name without algorithm")
	}
	data := struct {
		itsParams
		Board                            string
		KernelAddr, RamdiskAddr, FDTAddr uint32
	}{itsParams: p, Board: qemuarm64.BoardID,
		KernelAddr: kernelAddr, RamdiskAddr: ramdiskAddr, FDTAddr: fdtAddr}
	var b strings.Builder
	if err := itsTemplate.Execute(&b, data); err != nil {
		return "", fmt.Errorf("rendering FIT source: %w", err)
	}
	return b.String(), nil
}

// prepareKernel returns the path of an uncompressed arm64 Image: the input
// itself, or its decompressed copy in work. U-Boot could gunzip it too, but
// an uncompressed kernel keeps the decompressor out of the path that
// handles verified data and costs nothing here.
func prepareKernel(path, work string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("kernel: %w", err)
	}
	out := path
	if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return "", fmt.Errorf("kernel %s: gunzip: %w", path, err)
		}
		if data, err = io.ReadAll(zr); err != nil {
			return "", fmt.Errorf("kernel %s: gunzip: %w", path, err)
		}
		out = filepath.Join(work, "Image")
		if err := os.WriteFile(out, data, 0o644); err != nil {
			return "", fmt.Errorf("kernel: writing decompressed Image: %w", err)
		}
	}
	size, err := imageSize(data)
	if err != nil {
		return "", fmt.Errorf("kernel %s: %w", path, err)
	}
	if size > ramdiskAddr-kernelAddr {
		return "", fmt.Errorf("kernel %s needs %d bytes of RAM, more than the %d below the ramdisk", path, size, ramdiskAddr-kernelAddr)
	}
	return out, nil
}

// imageSize reads the memory footprint (including BSS) from an arm64 Image
// header (Documentation/arch/arm64/booting.rst).
func imageSize(data []byte) (uint64, error) {
	if len(data) < 64 || string(data[56:60]) != "ARM\x64" {
		return 0, errors.New("not an arm64 Linux Image (no ARM\\x64 magic at offset 56)")
	}
	size := binary.LittleEndian.Uint64(data[16:24])
	if size == 0 { // Kernels before 3.17 leave it 0.
		size = uint64(len(data))
	}
	return size, nil
}

// checkFITFits makes sure the FIT placed at FITAddress, and the copies U-Boot
// makes of the ramdisk and fdt below its own reserve, stay inside RAM.
func checkFITFits(fit string, ramdiskSize int64, memMiB int) error {
	fi, err := os.Stat(fit)
	if err != nil {
		return fmt.Errorf("signed FIT: %w", err)
	}
	if memMiB == 0 {
		memMiB = 1024
	}
	ramEnd := int64(ramBase) + int64(memMiB)<<20
	if need := int64(qemuarm64.FITAddress) + fi.Size() + ramdiskSize + ubootReserve; need > ramEnd {
		return fmt.Errorf("signed FIT is %d bytes: with the ramdisk copy and U-Boot it needs RAM up to %#x, the board has %d MiB (up to %#x)", fi.Size(), need, memMiB, ramEnd)
	}
	return nil
}

// dumpDTB makes QEMU write the device tree it generates for m. U-Boot must
// be loaded for the dump: with firmware present, QEMU's virt machine swaps
// the PL061 GPIO and gpio-keys nodes for ACPI's GED, so the tree differs.
// PCI devices (disk, panel) are probed, not listed, so Disk and PanelPath are
// dropped rather than have QEMU open the box's disk or truncate its panel
// file.
func dumpDTB(ctx context.Context, m qemuarm64.Machine, uboot, out string) error {
	m.BIOS, m.DTB, m.FIT = uboot, "", ""
	m.Kernel, m.Initrd, m.Append = "", "", ""
	m.Disk, m.PanelPath = "", ""
	m.DumpDTB = out
	if m.TPMSocket != "" {
		tpm, err := startSwtpm(ctx)
		if err != nil {
			return err
		}
		defer tpm.Stop()
		m.TPMSocket = tpm.Socket
	}
	if _, err := run(ctx, "", nil, "qemu-system-aarch64", m.Args()...); err != nil {
		return fmt.Errorf("dumping device tree: %w", err)
	}
	if fi, err := os.Stat(out); err != nil || fi.Size() == 0 {
		return fmt.Errorf("dumping device tree: qemu wrote no %s", out)
	}
	return nil
}

// swtpm is a running TPM emulator with its state in a throwaway directory.
type swtpm struct {
	Socket string
	dir    string
	cmd    *exec.Cmd
	done   chan struct{}
}

// startSwtpm starts a fresh TPM 2.0 emulator and waits for its control
// socket. swtpm exits by itself when QEMU disconnects; Stop is needed all
// the same.
func startSwtpm(ctx context.Context) (*swtpm, error) {
	// The state lives in a short path of its own: a unix socket path must
	// stay under 108 bytes.
	dir, err := os.MkdirTemp("", "swtpm-")
	if err != nil {
		return nil, fmt.Errorf("swtpm state dir: %w", err)
	}
	s := &swtpm{Socket: filepath.Join(dir, "sock"), dir: dir, done: make(chan struct{})}
	var stderr bytes.Buffer
	s.cmd = exec.CommandContext(ctx, "swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+dir, "--ctrl", "type=unixio,path="+s.Socket)
	s.cmd.Stderr = &stderr
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting swtpm: %w", err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if fi, err := os.Stat(s.Socket); err == nil && fi.Mode()&fs.ModeSocket != 0 {
			return s, nil
		}
		select {
		case <-s.done:
			os.RemoveAll(dir)
			return nil, fmt.Errorf("swtpm exited before creating %s: %v: %s", s.Socket, s.cmd.ProcessState, strings.TrimSpace(stderr.String()))
		case <-deadline.C:
			s.Stop()
			return nil, fmt.Errorf("swtpm: no control socket %s after 10s: %s", s.Socket, strings.TrimSpace(stderr.String()))
		case <-ctx.Done():
			s.Stop()
			return nil, fmt.Errorf("waiting for swtpm: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// Stop kills the emulator if it is still running and removes its state.
func (s *swtpm) Stop() {
	select {
	case <-s.done:
	default:
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	os.RemoveAll(s.dir)
}

// compileDTS compiles device tree source to a blob with pad bytes of free
// space.
func compileDTS(ctx context.Context, work, src, out string, pad int) error {
	in := strings.TrimSuffix(out, filepath.Ext(out)) + ".dts"
	if err := os.WriteFile(in, []byte(src), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Base(in), err)
	}
	_, err := run(ctx, work, nil, "dtc", "-q", "-I", "dts", "-O", "dtb", "-p", strconv.Itoa(pad), "-o", out, in)
	return err
}

// run runs a tool and returns its standard output; a failure names the tool,
// its arguments and what it said on standard error.
func run(ctx context.Context, dir string, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		// mkimage follows its complaint with its whole usage text.
		msg := firstLines(stderr.String(), 12)
		if msg == "" {
			msg = lastLines(stdout.String(), 20)
		}
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return stdout.Bytes(), nil
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = append(lines[:n], fmt.Sprintf("[%d more lines]", len(lines)-n))
	}
	return strings.Join(lines, "\n")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
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

// keyAlgo names the FIT signature algorithm for the private key in path; the
// key size decides it, since a manufacturer may bring its own key.
func keyAlgo(path string) (string, error) {
	key, err := readPrivateKey(path)
	if err != nil {
		return "", err
	}
	switch bits := key.N.BitLen(); bits {
	case 2048, 3072, 4096:
		return fmt.Sprintf("sha256,rsa%d", bits), nil
	default:
		return "", fmt.Errorf("signing key %s: RSA-%d; U-Boot verifies only 2048, 3072 or 4096 bits", path, bits)
	}
}

func readPrivateKey(path string) (*rsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("signing key %s: no PEM block", path)
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("signing key %s: %w", path, err)
		}
		return k, nil
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("signing key %s: %w", path, err)
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("signing key %s: %T, U-Boot's FIT checks want RSA", path, k)
		}
		return rk, nil
	default:
		return nil, fmt.Errorf("signing key %s: PEM block %q is not a private key", path, block.Type)
	}
}

// KeyBits is the size of the RSA keys GenerateKey makes.
const KeyBits = 4096

// GenerateKey creates the signing key pair dir/name.key (PKCS#8 PEM, mode
// 0600) and dir/name.crt (self-signed certificate, which is where mkimage
// takes the public key from). It does nothing if both exist, and refuses to
// touch a half-present pair: the key belongs to the manufacturer and is
// never overwritten.
func GenerateKey(dir, name string) error {
	if !keyNameRE.MatchString(name) {
		return fmt.Errorf("key name %q: want letters, digits, '-' and '_'", name)
	}
	keyPath, crtPath := filepath.Join(dir, name+".key"), filepath.Join(dir, name+".crt")
	haveKey, err := exists(keyPath)
	if err != nil {
		return err
	}
	haveCrt, err := exists(crtPath)
	if err != nil {
		return err
	}
	switch {
	case haveKey && haveCrt:
		return nil
	case haveKey || haveCrt:
		return fmt.Errorf("signing key %s: only one of %s.key and %s.crt exists; not generating over it", filepath.Join(dir, name), name, name)
	}

	key, err := rsa.GenerateKey(rand.Reader, KeyBits)
	if err != nil {
		return fmt.Errorf("generating RSA key %s: %w", name, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return fmt.Errorf("certificate serial for %s: %w", name, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"boxswarm"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(30, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	crt, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("self-signing certificate for %s: %w", name, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding key %s: %w", name, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating key dir: %w", err)
	}
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	if err := writeNew(crtPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: crt}), 0o644); err != nil {
		// The key was created just now, so removing it loses nothing.
		os.Remove(keyPath)
		return err
	}
	return nil
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("checking %s: %w", path, err)
	}
}

// writeNew writes a file that must not exist yet, so that a key that
// appeared meanwhile is never replaced.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

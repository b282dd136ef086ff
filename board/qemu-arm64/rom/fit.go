package rom

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	qemuarm64 "github.com/boxswarm/boxswarm/board/qemu-arm64"
)

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

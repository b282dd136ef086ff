package rom

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	qemuarm64 "github.com/boxswarm/boxswarm/board/qemu-arm64"
	"github.com/u-root/u-root/pkg/cpio"
	"golang.org/x/sys/unix"
)

// guestMarker is what this test binary prints when the kernel runs it as
// stage one's /init.
const guestMarker = "boxswarm-rom-test: stage one reached"

// TestMain doubles as the guest's /init: the QEMU test cross-compiles this
// very test binary for arm64 and packs it as the initramfs, which keeps the
// stand-in stage one inside this package.
func TestMain(m *testing.M) {
	if os.Getpid() == 1 {
		guestInit()
	}
	os.Exit(m.Run())
}

func guestInit() {
	console, err := os.OpenFile("/dev/console", os.O_WRONLY, 0)
	if err != nil {
		console = os.Stdout
	}
	cmdline := "?"
	if err := unix.Mount("proc", "/proc", "proc", 0, ""); err == nil {
		if b, err := os.ReadFile("/proc/cmdline"); err == nil {
			cmdline = strings.TrimSpace(string(b))
		}
	}
	fmt.Fprintf(console, "%s, cmdline: %s\n", guestMarker, cmdline)
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Fprintf(console, "boxswarm-rom-test: power off: %v\n", err)
	}
	select {}
}

func TestBootCommand(t *testing.T) {
	for _, tc := range []struct {
		name, args, want string
	}{
		{"base", BaseBootArgs,
			"setenv verify yes; setenv bootargs 'console=ttyAMA0 panic=-1'; " +
				"if itest.l *0x50000000 == 0xedfe0dd0; then bootm 0x50000000; " +
				"else echo 'rom: no FIT image at 0x50000000, not booting'; fi; poweroff; reset"},
		{"extra", BaseBootArgs + " root=/dev/vda quiet",
			"setenv verify yes; setenv bootargs 'console=ttyAMA0 panic=-1 root=/dev/vda quiet'; " +
				"if itest.l *0x50000000 == 0xedfe0dd0; then bootm 0x50000000; " +
				"else echo 'rom: no FIT image at 0x50000000, not booting'; fi; poweroff; reset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := bootCommand(tc.args); got != tc.want {
				t.Errorf("bootCommand(%q)\n got %q\nwant %q", tc.args, got, tc.want)
			}
		})
	}
}

func TestConfigDTS(t *testing.T) {
	for _, tc := range []struct {
		name, cmd string
		want      []string
	}{
		{"plain", "bootm 0x50000000", []string{
			"\tconfig {\n",
			"\t\tbootcmd = \"bootm 0x50000000\";\n",
			"\t\tbootdelay = <0xfffffffe>;\n",
		}},
		{"escaped", `echo "a\b"`, []string{`bootcmd = "echo \"a\\b\"";`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := configDTS(tc.cmd)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("configDTS(%q) = %q, missing %q", tc.cmd, got, w)
				}
			}
			if strings.Contains(got, "bootsecure") {
				t.Errorf("configDTS(%q) sets bootsecure", tc.cmd)
			}
		})
	}
}

func TestCheckBootArgs(t *testing.T) {
	for _, tc := range []struct {
		args string
		ok   bool
	}{
		{"", true},
		{"root=PARTUUID=1234-5678 ro quiet loglevel=3 boxswarm.slot=a", true},
		{"init=/bin/sh'; bootz", false},
		{`a="b c"`, false},
		{`a\b`, false},
		{"a;b", false},
		{"$x", false},
		{"a`b`", false},
		{"a\nb", false},
		{"a\u00e9", false},
	} {
		err := checkBootArgs(tc.args)
		if (err == nil) != tc.ok {
			t.Errorf("checkBootArgs(%q) = %v, want ok=%v", tc.args, err, tc.ok)
		}
	}
}

func TestRenderITS(t *testing.T) {
	common := []string{
		`data = /incbin/("/k/Image");`,
		`data = /incbin/("/r/b1.cpio");`,
		`data = /incbin/("/f/virt.dtb");`,
		`type = "kernel";`, `arch = "arm64";`, `os = "linux";`,
		`compression = "none";`,
		`load = <0x40400000>;`, `entry = <0x40400000>;`,
		`load = <0x48000000>;`, `load = <0x4fe00000>;`,
		`type = "flat_dt";`,
		`algo = "sha256";`,
		`default = "conf";`,
	}
	for _, tc := range []struct {
		name    string
		p       itsParams
		want    []string
		notWant []string
		wantErr bool
	}{
		{"signed", itsParams{Kernel: "/k/Image", Ramdisk: "/r/b1.cpio", FDT: "/f/virt.dtb", KeyName: "dev", Algo: "sha256,rsa4096"},
			append([]string{
				"signature {",
				`algo = "sha256,rsa4096";`,
				`key-name-hint = "dev";`,
				`sign-images = "kernel", "fdt", "ramdisk";`,
			}, common...), nil, false},
		{"unsigned", itsParams{Kernel: "/k/Image", Ramdisk: "/r/b1.cpio", FDT: "/f/virt.dtb"},
			common, []string{"signature", "key-name-hint"}, false},
		{"key without algo", itsParams{Kernel: "k", Ramdisk: "r", FDT: "f", KeyName: "dev"}, nil, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := renderITS(tc.p)
			if (err != nil) != tc.wantErr {
				t.Fatalf("renderITS: err = %v, want error %v", err, tc.wantErr)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("FIT source lacks %q:\n%s", w, got)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(got, w) {
					t.Errorf("FIT source has %q:\n%s", w, got)
				}
			}
		})
	}
}

// TestRenderITSCompiles checks that mkimage's DTS compiler accepts the FIT
// source and that the addresses it loads to do not overlap the FIT.
func TestRenderITSCompiles(t *testing.T) {
	needTools(t, "dtc")
	dir := t.TempDir()
	for _, f := range []string{"Image", "b1.cpio", "virt.dtb"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	its, err := renderITS(itsParams{Kernel: filepath.Join(dir, "Image"), Ramdisk: filepath.Join(dir, "b1.cpio"),
		FDT: filepath.Join(dir, "virt.dtb"), KeyName: "dev", Algo: "sha256,rsa2048"})
	if err != nil {
		t.Fatal(err)
	}
	if err := compileDTS(t.Context(), dir, its, filepath.Join(dir, "rom.itb"), 0); err != nil {
		t.Fatal(err)
	}
	if !(kernelAddr < ramdiskAddr && ramdiskAddr < fdtAddr && fdtAddr < qemuarm64.FITAddress) {
		t.Errorf("load addresses out of order: kernel %#x ramdisk %#x fdt %#x FIT %#x", kernelAddr, ramdiskAddr, fdtAddr, qemuarm64.FITAddress)
	}
}

// TestControlDTS compiles a stand-in dump plus the generated fragments and
// checks the seeds are gone and /config is what U-Boot reads.
func TestControlDTS(t *testing.T) {
	needTools(t, "dtc", "fdtget")
	dir := t.TempDir()
	dump := "/dts-v1/;\n/ {\n\tchosen {\n\t\tstdout-path = \"/pl011@9000000\";\n" +
		"\t\trng-seed = <0x1 0x2>;\n\t\tkaslr-seed = <0x3 0x4>;\n\t};\n};\n"
	for _, tc := range []struct {
		name, src string
		config    bool
	}{
		{"kernel fdt", dump + stripSeedsDTS, false},
		{"control", dump + stripSeedsDTS + configDTS(bootCommand(BaseBootArgs)), true},
		{"no seeds to strip", "/dts-v1/;\n/ { chosen { }; };\n" + stripSeedsDTS, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".dtb")
			if err := compileDTS(t.Context(), dir, tc.src, out, 0); err != nil {
				t.Fatal(err)
			}
			props, err := run(t.Context(), "", nil, "fdtget", "-p", out, "/chosen")
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(props), "seed") {
				t.Errorf("/chosen still has seeds: %s", props)
			}
			cmd, err := run(t.Context(), "", nil, "fdtget", "-ts", out, "/config", "bootcmd")
			if tc.config {
				if err != nil {
					t.Fatal(err)
				}
				if got, want := strings.TrimSpace(string(cmd)), bootCommand(BaseBootArgs); got != want {
					t.Errorf("/config/bootcmd = %q, want %q", got, want)
				}
				delay, err := run(t.Context(), "", nil, "fdtget", "-ti", out, "/config", "bootdelay")
				if err != nil {
					t.Fatal(err)
				}
				if got := strings.TrimSpace(string(delay)); got != "-2" {
					t.Errorf("/config/bootdelay = %s, want -2", got)
				}
			} else if err == nil {
				t.Errorf("unexpected /config/bootcmd %q", cmd)
			}
		})
	}
}

func fakeImage(size int, imageSize uint64) []byte {
	b := make([]byte, size)
	binary.LittleEndian.PutUint64(b[16:], imageSize)
	copy(b[56:], "ARM\x64")
	for i := 64; i < size; i++ {
		b[i] = byte(i * 7)
	}
	return b
}

func TestPrepareKernel(t *testing.T) {
	dir := t.TempDir()
	img := fakeImage(1<<20, 3<<20)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(img)
	zw.Close()
	for _, tc := range []struct {
		name     string
		data     []byte
		wantErr  string
		wantCopy bool
	}{
		{"plain", img, "", false},
		{"gzip", gz.Bytes(), "", true},
		{"not an image", []byte("#!/bin/sh\n" + strings.Repeat("x", 100)), "no ARM\\x64 magic", false},
		{"too big", fakeImage(4096, ramdiskAddr-kernelAddr+1), "more than", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if err := os.WriteFile(in, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			work := t.TempDir()
			out, err := prepareKernel(in, work)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("prepareKernel: err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (out != in) != tc.wantCopy {
				t.Errorf("prepareKernel returned %s for input %s", out, in)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, img) {
				t.Errorf("prepared kernel differs from the Image")
			}
		})
	}
}

func TestGenerateKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if err := GenerateKey(dir, "vendor"); err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(filepath.Join(dir, "vendor.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "vendor.key")); fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", fi.Mode().Perm())
	}
	if algo, err := keyAlgo(filepath.Join(dir, "vendor.key")); err != nil || algo != fmt.Sprintf("sha256,rsa%d", KeyBits) {
		t.Errorf("keyAlgo = %q, %v", algo, err)
	}
	if err := GenerateKey(dir, "vendor"); err != nil {
		t.Fatalf("second GenerateKey: %v", err)
	}
	again, _ := os.ReadFile(filepath.Join(dir, "vendor.key"))
	if !bytes.Equal(key, again) {
		t.Error("second GenerateKey replaced the key")
	}

	if err := os.WriteFile(filepath.Join(dir, "half.crt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := GenerateKey(dir, "half"); err == nil {
		t.Error("GenerateKey over a lone certificate succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "half.key")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("GenerateKey wrote half.key next to a lone certificate: %v", err)
	}
	if err := GenerateKey(dir, "../escape"); err == nil {
		t.Error("GenerateKey accepted a path as a name")
	}
}

func TestBuildOptionErrors(t *testing.T) {
	dir := t.TempDir()
	ok := Options{Kernel: "Image", Initramfs: "b1.cpio", KeyDir: filepath.Join(dir, "keys"), KeyName: "dev", OutDir: filepath.Join(dir, "out")}
	for _, tc := range []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"no kernel", func(o *Options) { o.Kernel = "" }, "Kernel is empty"},
		{"no out dir", func(o *Options) { o.OutDir = "" }, "OutDir is empty"},
		{"bad key name", func(o *Options) { o.KeyName = "a/b" }, "key name"},
		{"quote in boot args", func(o *Options) { o.BootArgs = "x='y'" }, "boot args"},
		{"quote in path", func(o *Options) { o.Initramfs = `b1".cpio` }, "contains a quote"},
		{"missing key", func(*Options) {}, "signing key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.edit(&o)
			_, err := Build(t.Context(), o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build: err = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := os.Stat(ok.OutDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed Build created %s", ok.OutDir)
	}
}

// needTools skips (or, in CI, fails) a test whose host tools are missing.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, "%s not installed (Debian packages qemu-system-arm, swtpm, u-boot-qemu, u-boot-tools, device-tree-compiler)", tool)
		}
		if tool == "qemu-system-aarch64" {
			if _, err := os.Stat(DefaultUBoot); err != nil {
				skipOrFail(t, "U-Boot for the board missing (Debian package u-boot-qemu): %v", err)
			}
		}
	}
}

func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// TestBuildReproducible builds twice from the same inputs and wants the same
// bytes, and checks the key went into the control DTB as required for
// configurations.
func TestBuildReproducible(t *testing.T) {
	needTools(t, "qemu-system-aarch64", "swtpm", "dtc", "mkimage", "fdtget")
	dir := t.TempDir()
	kernel := filepath.Join(dir, "Image")
	if err := os.WriteFile(kernel, fakeImage(2<<20, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	ramdisk := filepath.Join(dir, "b1.cpio")
	if err := os.WriteFile(ramdisk, bytes.Repeat([]byte("070701"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(dir, "keys")
	if err := GenerateKey(keys, "dev"); err != nil {
		t.Fatal(err)
	}
	var outs [2]Artifacts
	for i := range outs {
		a, err := Build(t.Context(), Options{
			Kernel: kernel, Initramfs: ramdisk, KeyDir: keys, KeyName: "dev",
			OutDir:   filepath.Join(dir, fmt.Sprint("out", i)),
			BootArgs: "boxswarm.test=1",
			Machine:  qemuarm64.Machine{TPMSocket: "present"},
		})
		if err != nil {
			t.Fatal(err)
		}
		outs[i] = a
	}
	for _, f := range []func(Artifacts) string{
		func(a Artifacts) string { return a.UBoot },
		func(a Artifacts) string { return a.DTB },
		func(a Artifacts) string { return a.FIT },
	} {
		a, err := os.ReadFile(f(outs[0]))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(f(outs[1]))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds of the same inputs", filepath.Base(f(outs[0])))
		}
	}
	for _, tc := range []struct{ node, prop, want string }{
		{"/signature/key-dev", "required", "conf"},
		{"/signature/key-dev", "algo", "sha256,rsa4096"},
		{"/config", "bootcmd", bootCommand(BaseBootArgs + " boxswarm.test=1")},
		{"/configurations/conf/signature", "key-name-hint", "dev"},
	} {
		file := outs[0].DTB
		if strings.HasPrefix(tc.node, "/configurations") {
			file = outs[0].FIT
		}
		got, err := run(t.Context(), "", nil, "fdtget", "-ts", file, tc.node, tc.prop)
		if err != nil {
			t.Fatal(err)
		}
		if s := strings.TrimSpace(string(got)); s != tc.want {
			t.Errorf("%s %s:%s = %q, want %q", filepath.Base(file), tc.node, tc.prop, s, tc.want)
		}
	}
	if entries, _ := os.ReadDir(filepath.Dir(outs[0].FIT)); len(entries) != 3 {
		t.Errorf("output dir holds %d entries, want u-boot.bin, rom.dtb, rom.itb", len(entries))
	}
}

// TestBuildToolError wants a failing tool's name and complaint in the error.
func TestBuildToolError(t *testing.T) {
	needTools(t, "qemu-system-aarch64", "dtc", "mkimage")
	dir := t.TempDir()
	kernel := filepath.Join(dir, "Image")
	ramdisk := filepath.Join(dir, "b1.cpio")
	keys := filepath.Join(dir, "keys")
	for _, f := range []struct {
		path string
		data []byte
	}{{kernel, fakeImage(4096, 8192)}, {ramdisk, []byte("070701")}} {
		if err := os.WriteFile(f.path, f.data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := GenerateKey(keys, "dev"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(keys, "dev.crt"), []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Build(t.Context(), Options{Kernel: kernel, Initramfs: ramdisk, KeyDir: keys, KeyName: "dev", OutDir: filepath.Join(dir, "out")})
	if err == nil || !strings.Contains(err.Error(), "mkimage -f") || !strings.Contains(err.Error(), "exit status") {
		t.Fatalf("Build with a broken certificate: err = %v, want mkimage's failure", err)
	}
}

// boardKernel finds a real arm64 kernel: $BOXSWARM_KERNEL, else the newest
// Image the board's kernel build left in ~/.cache/boxswarm/kernel.
func boardKernel(t *testing.T) string {
	t.Helper()
	if k := os.Getenv("BOXSWARM_KERNEL"); k != "" {
		if _, err := os.Stat(k); err != nil {
			t.Fatalf("BOXSWARM_KERNEL: %v", err)
		}
		return k
	}
	home, err := os.UserHomeDir()
	if err == nil {
		matches, _ := filepath.Glob(filepath.Join(home, ".cache", "boxswarm", "kernel", "*", "Image"))
		var newest string
		var newestTime time.Time
		for _, m := range matches {
			if fi, err := os.Stat(m); err == nil && fi.ModTime().After(newestTime) {
				newest, newestTime = m, fi.ModTime()
			}
		}
		if newest != "" {
			return newest
		}
	}
	skipOrFail(t, "no arm64 kernel: set BOXSWARM_KERNEL or build the board kernel into ~/.cache/boxswarm/kernel/*/Image")
	return ""
}

// guestInitramfs cross-compiles this test binary for arm64 and packs it as
// /init with the console device the kernel opens for it.
func guestInitramfs(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "init")
	cmd := exec.CommandContext(t.Context(), "go", "test", "-c", "-o", bin, "-ldflags=-s -w", ".")
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cross-compiling the guest init: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	recs := []cpio.Record{
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.Directory("proc", 0o755),
		cpio.StaticRecord(data, cpio.Info{Name: "init", Mode: cpio.S_IFREG | 0o755}),
	}
	cpio.MakeAllReproducible(recs)
	out := filepath.Join(dir, "b1.cpio")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	w := cpio.Newc.Writer(f)
	if err := cpio.WriteRecords(w, recs); err != nil {
		t.Fatal(err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// fitData finds where image's "data" property lies in a FIT by walking the
// flattened tree's structure block.
func fitData(fit []byte, image string) (off, size int, err error) {
	if len(fit) < 40 || binary.BigEndian.Uint32(fit) != 0xd00dfeed {
		return 0, 0, errors.New("not a flattened device tree")
	}
	structOff := int(binary.BigEndian.Uint32(fit[8:]))
	stringsOff := int(binary.BigEndian.Uint32(fit[12:]))
	align := func(n int) int { return (n + 3) &^ 3 }
	var path []string
	for p := structOff; p+4 <= len(fit); {
		tok := binary.BigEndian.Uint32(fit[p:])
		p += 4
		switch tok {
		case 1: // FDT_BEGIN_NODE
			end := bytes.IndexByte(fit[p:], 0)
			path = append(path, string(fit[p:p+end]))
			p = align(p + end + 1)
		case 2: // FDT_END_NODE
			path = path[:len(path)-1]
		case 3: // FDT_PROP
			n := int(binary.BigEndian.Uint32(fit[p:]))
			nameOff := int(binary.BigEndian.Uint32(fit[p+4:]))
			name := fit[stringsOff+nameOff:]
			name = name[:bytes.IndexByte(name, 0)]
			if string(name) == "data" && strings.Join(path, "/") == "/images/"+image {
				return p + 8, n, nil
			}
			p = align(p + 8 + n)
		case 4: // FDT_NOP
		case 9: // FDT_END
			return 0, 0, fmt.Errorf("no data for image %q", image)
		default:
			return 0, 0, fmt.Errorf("bad token %#x at %d", tok, p-4)
		}
	}
	return 0, 0, errors.New("truncated structure block")
}

// boot is one run of the board until QEMU exits.
type boot struct {
	console string
	// Times since QEMU started; 0 if never: U-Boot hands over to the
	// kernel, the kernel's first console line, stage one's marker.
	handoffAt, kernelAt, initAt time.Duration
	exitErr                     error
}

// bootBoard runs the board with the ROM stand-in. typing, if set, is written to
// the console from the first moment, as a person hammering keys would. Both
// outcomes end with a guest power-off, which QEMU reports as a clean exit.
func bootBoard(t *testing.T, uboot, dtb, fit string, typing []byte) boot {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	tpm, err := startSwtpm(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm.Stop()
	m := qemuarm64.Machine{BIOS: uboot, DTB: dtb, FIT: fit, TPMSocket: tpm.Socket}
	cmd := exec.CommandContext(ctx, "qemu-system-aarch64", m.Args()...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var stdin io.WriteCloser
	if typing != nil {
		if stdin, err = cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu  sync.Mutex
		b   boot
		buf strings.Builder
	)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if typing != nil {
		go func() {
			for ctx.Err() == nil {
				if _, err := stdin.Write(typing); err != nil {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		chunk := make([]byte, 4096)
		for {
			n, err := pr.Read(chunk)
			mu.Lock()
			buf.Write(chunk[:n])
			s := buf.String()
			if b.handoffAt == 0 && strings.Contains(s, "Starting kernel ...") {
				b.handoffAt = time.Since(start)
			}
			if b.kernelAt == 0 && strings.Contains(s, "Booting Linux on physical CPU") {
				b.kernelAt = time.Since(start)
			}
			if b.initAt == 0 && strings.Contains(s, guestMarker) {
				b.initAt = time.Since(start)
			}
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	b.exitErr = cmd.Wait()
	pw.Close()
	<-readDone
	mu.Lock()
	defer mu.Unlock()
	b.console = strings.ReplaceAll(buf.String(), "\r", "")
	if ctx.Err() != nil {
		t.Fatalf("board did not stop within 60s; console:\n%s", tail(b.console, 40))
	}
	if b.exitErr != nil {
		t.Errorf("qemu: %v; console:\n%s", b.exitErr, tail(b.console, 40))
	}
	return b
}

func tail(s string, n int) string { return lastLines(s, n) }

// TestQEMU boots the ROM stand-in for real: a signed FIT reaches stage one,
// and tampered, foreign-signed, unsigned and legacy images are refused
// without U-Boot ever offering its prompt.
func TestQEMU(t *testing.T) {
	needTools(t, "qemu-system-aarch64", "swtpm", "dtc", "mkimage", "go")
	kernel := boardKernel(t)
	dir := t.TempDir()
	ramdisk := guestInitramfs(t, dir)
	const keyName = "boxswarm-test"
	const extraArgs = "boxswarm.rom_test=1"
	build := func(keyDir, out string) Artifacts {
		if err := GenerateKey(keyDir, keyName); err != nil {
			t.Fatal(err)
		}
		a, err := Build(t.Context(), Options{
			Kernel: kernel, Initramfs: ramdisk, KeyDir: keyDir, KeyName: keyName,
			OutDir: out, BootArgs: extraArgs,
			Machine: qemuarm64.Machine{TPMSocket: "present"},
		})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	good := build(filepath.Join(dir, "keys"), filepath.Join(dir, "rom"))
	foreign := build(filepath.Join(dir, "other-keys"), filepath.Join(dir, "foreign"))

	fit, err := os.ReadFile(good.FIT)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(ramdisk); err == nil {
		t.Logf("kernel %s, initramfs %d bytes, signed FIT %d bytes", kernel, fi.Size(), len(fit))
	}
	variant := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flipped := func(image string) string {
		off, size, err := fitData(fit, image)
		if err != nil {
			t.Fatal(err)
		}
		bad := bytes.Clone(fit)
		bad[off+size/2] ^= 0x01
		return variant("flipped-"+image+".itb", bad)
	}
	fdtOff, fdtSize, err := fitData(fit, "fdt")
	if err != nil {
		t.Fatal(err)
	}
	fdt := variant("virt.dtb", fit[fdtOff:fdtOff+fdtSize])
	its, err := renderITS(itsParams{Kernel: kernel, Ramdisk: ramdisk, FDT: fdt})
	if err != nil {
		t.Fatal(err)
	}
	unsignedITS := variant("unsigned.its", []byte(its))
	unsigned := filepath.Join(dir, "unsigned.itb")
	if _, err := run(t.Context(), dir, nil, "mkimage", "-f", unsignedITS, unsigned); err != nil {
		t.Fatal(err)
	}
	// A multi-file legacy uImage carries kernel, initramfs and fdt with
	// nothing but a CRC: "bootm" alone would start it.
	legacy := filepath.Join(dir, "legacy.uimg")
	if _, err := run(t.Context(), dir, nil, "mkimage", "-A", "arm64", "-O", "linux", "-T", "multi", "-C", "none",
		"-a", fmt.Sprintf("%#x", kernelAddr), "-e", fmt.Sprintf("%#x", kernelAddr), "-n", "unsigned",
		"-d", kernel+":"+ramdisk+":"+fdt, legacy); err != nil {
		t.Fatal(err)
	}

	keys := []byte("\x03 \r\nhelp\r\n")
	for _, tc := range []struct {
		name   string
		typing []byte
	}{
		{"signed", nil},
		{"signed, typing during boot", keys},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bootBoard(t, good.UBoot, good.DTB, good.FIT, tc.typing)
			if b.initAt == 0 {
				t.Fatalf("stage one not reached; console:\n%s", tail(b.console, 40))
			}
			for _, want := range []string{
				"Verifying Hash Integrity ... sha256,rsa4096:" + keyName + "+ OK",
				"cmdline: " + BaseBootArgs + " " + extraArgs,
			} {
				if !strings.Contains(b.console, want) {
					t.Errorf("console lacks %q", want)
				}
			}
			for _, bad := range []string{"Hit any key", "=> "} {
				if strings.Contains(b.console, bad) {
					t.Errorf("console has %q", bad)
				}
			}
			t.Logf("from QEMU start: U-Boot starts the kernel at %v, kernel's first console line %v, stage one's init %v",
				b.handoffAt.Round(time.Millisecond), b.kernelAt.Round(time.Millisecond), b.initAt.Round(time.Millisecond))
		})
	}

	refused := []struct {
		name, fit string
		typing    []byte
		want      []string
	}{
		{"flipped kernel", flipped("kernel"), nil, []string{"Bad hash value for 'hash' hash node in 'kernel' image node", "ERROR: can't get kernel image!"}},
		{"flipped ramdisk", flipped("ramdisk"), nil, []string{"Bad hash value for 'hash' hash node in 'ramdisk' image node", "Ramdisk image is corrupt or invalid"}},
		{"flipped fdt", flipped("fdt"), nil, []string{"Bad hash value for 'hash' hash node in 'fdt' image node", "Could not find a valid device tree"}},
		{"foreign key", foreign.FIT, nil, []string{"sha256,rsa4096:" + keyName + "-", "Failed to verify required signature 'key-" + keyName + "'"}},
		{"unsigned", unsigned, nil, []string{"No 'signature' subnode found", "Failed to verify required signature 'key-" + keyName + "'"}},
		{"legacy uImage", legacy, nil, []string{"rom: no FIT image at 0x50000000, not booting"}},
		{"unsigned, typing during boot", unsigned, keys, []string{"Failed to verify required signature"}},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			b := bootBoard(t, good.UBoot, good.DTB, tc.fit, tc.typing)
			for _, want := range append(tc.want, "poweroff ...") {
				if !strings.Contains(b.console, want) {
					t.Errorf("console lacks %q", want)
				}
			}
			for _, bad := range []string{"Starting kernel", guestMarker, "Hit any key", "=> "} {
				if strings.Contains(b.console, bad) {
					t.Errorf("console has %q", bad)
				}
			}
			if t.Failed() {
				t.Logf("console:\n%s", tail(b.console, 40))
			}
		})
	}
}

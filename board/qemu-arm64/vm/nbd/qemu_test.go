package nbd

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests check the server against QEMU's own NBD client, through
// qemu-img and qemu-io (Debian package qemu-utils) and qemu-system-aarch64
// (qemu-system-arm). They skip, saying why, where a tool is missing.

func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not found (%v): install the Debian package %s to run this check against QEMU", name, err, pkg)
	}
	return p
}

func runTool(t *testing.T, stdin string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// imageFile writes b to a file and returns it open for reading.
func imageFile(t *testing.T, b []byte) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "base.img")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func nbdURL(sock string) string { return "nbd+unix:///?socket=" + sock }

func TestQemuImgConvert(t *testing.T) {
	qemuImg := needTool(t, "qemu-img", "qemu-utils")
	const size = 8 << 20
	img := randomImage(size, 3)
	srv := &Server{Backing: NewOverlay(imageFile(t, img), size)}
	sock := start(t, srv)
	out := filepath.Join(t.TempDir(), "out.raw")
	runTool(t, "", qemuImg, "convert", "-f", "raw", "-O", "raw", nbdURL(sock), out)
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, img) {
		t.Fatalf("qemu-img copied %d bytes that differ from the %d-byte export", len(got), len(img))
	}
	for b := range int64(size / BlockSize) {
		if srv.ReadCount(b) == 0 {
			t.Fatalf("block %d never read, yet the copy matches", b)
		}
	}
}

func TestQemuIoWrite(t *testing.T) {
	qemuIo := needTool(t, "qemu-io", "qemu-utils")
	const size = 1 << 20
	img := randomImage(size, 4)
	f := imageFile(t, img)
	srv := &Server{Backing: NewOverlay(f, size)}
	sock := start(t, srv)
	out := runTool(t, "", qemuIo, "-f", "raw",
		"-c", "write -P 0x5a 8000 5000", "-c", "flush", "-c", "read -P 0x5a 8000 5000", nbdURL(sock))
	if strings.Contains(out, "failed") {
		t.Fatalf("qemu-io:\n%s", out)
	}
	got := make([]byte, 5000)
	if _, err := srv.Backing.ReadAt(got, 8000); err != nil || !bytes.Equal(got, bytes.Repeat([]byte{0x5a}, 5000)) {
		t.Fatalf("the overlay does not hold what qemu-io wrote (%v)", err)
	}
	onDisk, err := os.ReadFile(f.Name())
	if err != nil || !bytes.Equal(onDisk, img) {
		t.Fatal("the base image file changed")
	}
}

// flipImages returns a real image whose first sector is 0x11 and an evil
// one that is 0x22 throughout.
func flipImages(size int) (real, evil []byte) {
	real = randomImage(size, 5)
	copy(real, bytes.Repeat([]byte{0x11}, 512))
	return real, bytes.Repeat([]byte{0x22}, size)
}

// qemuIoRead runs one qemu-io process reading sector 0 and checking it
// against pattern; it reports whether the check passed.
func qemuIoRead(t *testing.T, qemuIo, sock string, pattern byte) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// qemu-io exits 1 when the pattern does not match, which is an answer
	// here, not a failure.
	out, err := exec.CommandContext(ctx, qemuIo, "-r", "-f", "raw", "-c", fmt.Sprintf("read -P %#02x 0 512", pattern), nbdURL(sock)).CombinedOutput()
	if !strings.Contains(string(out), "read 512/512 bytes") {
		t.Fatalf("qemu-io did not read (%v):\n%s", err, out)
	}
	return !strings.Contains(string(out), "Pattern verification failed")
}

func TestQemuIoFlip(t *testing.T) {
	qemuIo := needTool(t, "qemu-io", "qemu-utils")
	const size = 1 << 20
	real, evil := flipImages(size)
	cases := []struct {
		name        string
		flip        func([]Region, *bytes.Reader) (func(int64, []byte), error)
		first, then byte
	}{
		{"after first read", func(r []Region, e *bytes.Reader) (func(int64, []byte), error) { return FlipAfterFirstRead(r, e) }, 0x11, 0x22},
		{"on first read", func(r []Region, e *bytes.Reader) (func(int64, []byte), error) { return FlipOnFirstRead(r, e) }, 0x22, 0x11},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hook, err := c.flip([]Region{{0, 512}}, bytes.NewReader(evil))
			if err != nil {
				t.Fatal(err)
			}
			srv := &Server{Backing: NewOverlay(bytes.NewReader(real), size), ReadHook: hook}
			sock := start(t, srv)
			// The negative control shows a wrong pattern is noticed.
			if qemuIoRead(t, qemuIo, sock, 0x33) {
				t.Fatal("qemu-io accepted a pattern the disk does not hold")
			}
			if !qemuIoRead(t, qemuIo, sock, c.then) {
				t.Errorf("second read is not %#x", c.then)
			}
			if !qemuIoRead(t, qemuIo, sock, c.then) {
				t.Errorf("third read is not %#x", c.then)
			}
			if n := srv.ReadCount(0); n != 3 {
				t.Errorf("ReadCount(0) = %d, want 3 (QEMU read the disk more than asked)", n)
			}
		})
		t.Run(c.name+", first read", func(t *testing.T) {
			hook, err := c.flip([]Region{{0, 512}}, bytes.NewReader(evil))
			if err != nil {
				t.Fatal(err)
			}
			sock := start(t, &Server{Backing: NewOverlay(bytes.NewReader(real), size), ReadHook: hook})
			if !qemuIoRead(t, qemuIo, sock, c.first) {
				t.Errorf("first read is not %#x", c.first)
			}
			if !qemuIoRead(t, qemuIo, sock, c.then) {
				t.Errorf("second read is not %#x", c.then)
			}
		})
	}
}

// TestQemuSystemDrive boots nothing: it starts the board's QEMU machine
// stopped (-S) with the disk on NBD in each documented -drive spelling, and
// reads the disk through the machine's own block backend with the HMP
// monitor's qemu-io command, twice, under the flip hook. The flipped
// region is not sector 0, because QEMU itself reads sector 0 once when it
// starts the machine, before any guest code runs.
func TestQemuSystemDrive(t *testing.T) {
	qemu := needTool(t, "qemu-system-aarch64", "qemu-system-arm")
	const size = 1 << 20
	real, evil := flipImages(size)
	spellings := []struct {
		name  string
		drive func(sock string) string
	}{
		// What board/qemu-arm64's Machine.Args makes of Disk "nbd:unix:SOCK".
		{"legacy filename", func(s string) string {
			return "if=none,id=disk0,format=raw,cache=writeback,file=nbd:unix:" + s
		}},
		{"file.driver=nbd", func(s string) string {
			return "if=none,id=disk0,format=raw,cache=writeback,file.driver=nbd,file.server.type=unix,file.server.path=" + strings.ReplaceAll(s, ",", ",,")
		}},
	}
	for _, sp := range spellings {
		t.Run(sp.name, func(t *testing.T) {
			const off = 64 << 10
			copy(real[off:], bytes.Repeat([]byte{0x11}, 512))
			hook, err := FlipAfterFirstRead([]Region{{off, 512}}, bytes.NewReader(evil))
			if err != nil {
				t.Fatal(err)
			}
			srv := &Server{Backing: NewOverlay(bytes.NewReader(real), size), ReadHook: hook}
			sock := start(t, srv)
			monitor := "qemu-io disk0 \"read -P 0x11 65536 512\"\n" +
				"qemu-io disk0 \"read -P 0x22 65536 512\"\n" +
				"quit\n"
			out := runTool(t, monitor, qemu,
				"-M", "virt", "-cpu", "cortex-a57", "-m", "128", "-smp", "1",
				"-nodefaults", "-no-user-config", "-display", "none", "-S",
				"-drive", sp.drive(sock), "-device", "virtio-blk-pci,drive=disk0",
				"-monitor", "stdio")
			if strings.Count(out, "read 512/512 bytes") != 2 || strings.Contains(out, "Pattern verification failed") {
				t.Fatalf("monitor session:\n%s", out)
			}
			if n := srv.ReadCount(off / BlockSize); n != 2 {
				t.Errorf("ReadCount(%d) = %d, want 2", off/BlockSize, n)
			}
			t.Logf("QEMU read block 0 %d times on its own", srv.ReadCount(0))
		})
	}
}

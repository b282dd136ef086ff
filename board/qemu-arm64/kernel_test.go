package qemuarm64

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/cpio"
)

// Shared with internal/devprobe, which cannot be imported (package main).
const (
	probePanelLine  = "boxswarm devprobe: front-panel ok"
	probeDiskMarker = "BOXSWARM-DEVPROBE-DISK"
	bootTimeout     = 90 * time.Second
)

// requiredChecks are the devprobe checks the box cannot do without; the probe
// runs a few more, and the test fails on any FAIL line regardless.
var requiredChecks = []string{
	"go-runtime", "tpm0", "vda", "drm", "fbdev", "keyboard", "front-panel",
	"mapper-control", "kexec_load", "dm-verity",
}

// TestKernelBootsWithBoxDevices boots the board kernel with the board's full
// device set and a probe as /init, and checks from inside the guest that
// every device the box uses is there without loading anything.
func TestKernelBootsWithBoxDevices(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU; skipped with -short")
	}
	kernel := findKernel(t)
	for _, tool := range []string{"qemu-system-aarch64", "swtpm"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, tool+" not installed: "+err.Error())
		}
	}
	dir := t.TempDir()
	initrd := buildProbeInitramfs(t, dir)
	disk := filepath.Join(dir, "disk.raw")
	writeDisk(t, disk)
	sock := startSWTPM(t, dir)
	panel := filepath.Join(dir, "panel.out")

	m := Machine{
		Disk:      disk,
		TPMSocket: sock,
		PanelPath: panel,
		Kernel:    kernel,
		Initrd:    initrd,
		Append:    "console=ttyAMA0 panic=-1",
	}
	ctx, cancel := context.WithTimeout(t.Context(), bootTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-aarch64", m.Args()...)
	cmd.WaitDelay = 5 * time.Second
	// A file, not a buffer: it is read while QEMU may still be running.
	qemuErr := logFile(t, filepath.Join(dir, "qemu.stderr"))
	cmd.Stderr = qemuErr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("qemu stdout pipe: %v", err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting qemu: %v", err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	var console []string
	results := map[string]string{} // check -> "OK: detail" or "FAIL: err"
	done := ""
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		console = append(console, line)
		rest, ok := strings.CutPrefix(line, "DEVPROBE ")
		if !ok {
			continue
		}
		t.Log(line)
		switch verb, body, _ := strings.Cut(rest, " "); verb {
		case "START":
			t.Logf("user space reached at guest %s s, %s after qemu started", strings.TrimPrefix(body, "uptime="), time.Since(start).Round(10*time.Millisecond))
		case "OK", "FAIL":
			name, detail, _ := strings.Cut(body, ": ")
			results[name] = verb + ": " + detail
		case "DONE":
			done = body
		}
		if done != "" {
			break
		}
	}
	if done == "" {
		t.Fatalf("no DEVPROBE DONE line within %s (ctx: %v); qemu stderr:\n%s\nconsole:\n%s",
			bootTimeout, ctx.Err(), readAll(qemuErr), strings.Join(console, "\n"))
	}

	// The probe powers off through PSCI; QEMU exiting by itself proves it.
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("qemu exited with %v after power-off; stderr:\n%s", waitErr, readAll(qemuErr))
		}
	case <-ctx.Done():
		t.Errorf("qemu still running %s after the probe powered off", bootTimeout)
	}

	for _, name := range requiredChecks {
		r, ok := results[name]
		if !ok {
			t.Errorf("check %s: not reported", name)
		} else if !strings.HasPrefix(r, "OK") {
			t.Errorf("check %s: %s", name, r)
		}
	}
	for name, r := range results {
		if strings.HasPrefix(r, "FAIL") {
			t.Errorf("check %s: %s", name, r)
		}
	}
	if !strings.HasSuffix(done, " failed=0") {
		t.Errorf("probe summary %q, want failed=0", done)
	}
	got, err := os.ReadFile(panel)
	if err != nil {
		t.Fatalf("reading front-panel output: %v", err)
	}
	if !strings.Contains(string(got), probePanelLine+"\n") {
		t.Errorf("front-panel output %q does not contain %q", got, probePanelLine)
	}
	if t.Failed() {
		t.Logf("console:\n%s", strings.Join(console, "\n"))
	}
}

// skipOrFail skips locally but fails in CI, where a missing prerequisite
// means the pipeline is broken rather than the developer's machine.
func skipOrFail(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// findKernel returns $BOXSWARM_KERNEL or the Image cached by tools/kernel,
// without ever starting a several-minute kernel build from a test.
func findKernel(t *testing.T) string {
	t.Helper()
	if k := os.Getenv("BOXSWARM_KERNEL"); k != "" {
		if _, err := os.Stat(k); err != nil {
			t.Fatalf("BOXSWARM_KERNEL: %v", err)
		}
		return k
	}
	root := moduleRoot(t)
	cmd := exec.CommandContext(t.Context(), "go", "run", "./tools/kernel", "-board", "board/qemu-arm64", "-print-path")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 1 {
			skipOrFail(t, "no cached kernel for board/qemu-arm64/kernel.config; build it with `go run ./tools/kernel -board board/qemu-arm64` (about 6 minutes) or set BOXSWARM_KERNEL")
		}
		t.Fatalf("go run ./tools/kernel -print-path: %v\n%s", err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Fatal("go env GOMOD: not inside the module")
	}
	return filepath.Dir(gomod)
}

// buildProbeInitramfs cross-compiles the probe and packs it as /init into a
// newc cpio. /dev/console is included because the kernel opens it for init's
// stdio before the probe can mount devtmpfs.
func buildProbeInitramfs(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "devprobe")
	build := exec.CommandContext(t.Context(), "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./internal/devprobe")
	build.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building devprobe: %v\n%s", err, out)
	}
	prog, err := os.ReadFile(bin)
	if err != nil {
		t.Fatalf("reading devprobe binary: %v", err)
	}
	path := filepath.Join(dir, "initramfs.cpio")
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("creating initramfs: %v", err)
	}
	defer f.Close()
	w := cpio.Newc.Writer(f)
	recs := []cpio.Record{
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.Directory("proc", 0o755),
		cpio.Directory("sys", 0o755),
		cpio.StaticFile("init", string(prog), 0o755),
	}
	if err := cpio.WriteRecordsAndDirs(w, recs); err != nil {
		t.Fatalf("writing initramfs records: %v", err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		t.Fatalf("writing initramfs trailer: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("closing initramfs: %v", err)
	}
	return path
}

func writeDisk(t *testing.T, path string) {
	t.Helper()
	const size = 4 << 20
	b := make([]byte, size)
	copy(b, probeDiskMarker)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatalf("writing disk image: %v", err)
	}
}

// startSWTPM runs a TPM 2.0 simulator for the test's lifetime and returns
// its control socket.
func startSWTPM(t *testing.T, dir string) string {
	t.Helper()
	state := filepath.Join(dir, "tpm")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatalf("creating TPM state folder: %v", err)
	}
	sock := filepath.Join(state, "sock")
	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+state,
		"--ctrl", "type=unixio,path="+sock)
	stderr := logFile(t, filepath.Join(dir, "swtpm.log"))
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting swtpm: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return sock
		}
		select {
		case <-exited:
			t.Fatalf("swtpm exited before creating %s:\n%s", sock, readAll(stderr))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("swtpm did not create %s within 10s:\n%s", sock, readAll(stderr))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func logFile(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("creating %s: %v", path, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func readAll(f *os.File) string {
	b, err := os.ReadFile(f.Name())
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return string(b)
}

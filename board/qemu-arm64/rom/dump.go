package rom

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	qemuarm64 "github.com/boxswarm/boxswarm/board/qemu-arm64"
)

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

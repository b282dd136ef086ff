// Package vm runs the QEMU board the way a test or a developer needs it: a
// private swtpm for the box's TPM, QEMU with the board's exact device set,
// the serial console captured line by line, the front panel read back
// from its file, a network of the caller's choice (QEMU's user-mode NAT or
// a tap in a network namespace, see Network), and QEMU's machine protocol
// for screenshots of the TV and keys on the remote (Screendump, SendKey,
// QMP). Everything it starts ends when the VM is stopped or its context
// ends.
package vm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	qemuarm64 "github.com/boxswarm/boxswarm/board/qemu-arm64"
)

// Config describes one run.
type Config struct {
	// Machine is the board; Disk, BIOS, DTB and FIT (or Kernel/Initrd)
	// must be set. TPMSocket and PanelPath are filled in by Start.
	Machine qemuarm64.Machine
	// TPMState is the swtpm state folder; it persists between runs like
	// the chip's NV memory. Empty means the box has no TPM.
	TPMState string
	// Dir holds the run's logs; a temporary folder if empty.
	Dir string
	// Console, if set, receives a copy of the serial console as it comes.
	Console io.Writer
	// Net is the box's network; nil means no network card. Set
	// Machine.MAC when several boxes share a network.
	Net Network
}

// VM is a running box.
type VM struct {
	dir     string
	private string // sockets and the panel file: a short path, kept until Close
	cmd     *exec.Cmd
	swtpm   *exec.Cmd
	done    chan struct{} // closed when QEMU has exited and its output is read
	err     error         // QEMU's exit status, valid after done
	tmpDir  bool
	qmp     qmp
	onExit  []func() // run once QEMU has exited

	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced whenever a line arrives
}

// Start boots the machine.
func Start(ctx context.Context, c Config) (*VM, error) {
	v := &VM{done: make(chan struct{}), changed: make(chan struct{})}
	v.dir = c.Dir
	if v.dir == "" {
		d, err := os.MkdirTemp("", "boxswarm-vm-")
		if err != nil {
			return nil, err
		}
		v.dir, v.tmpDir = d, true
	} else if err := os.MkdirAll(v.dir, 0o755); err != nil {
		return nil, err
	}
	// Socket paths are limited to 107 bytes, so sockets (and, with them,
	// the panel file) live in a short private folder.
	private, err := os.MkdirTemp("", "vm")
	if err != nil {
		v.cleanup()
		return nil, err
	}
	v.private = private
	m := c.Machine
	m.PanelPath = filepath.Join(v.private, "panel.txt")
	if err := os.WriteFile(m.PanelPath, nil, 0o644); err != nil {
		return nil, err
	}
	if c.TPMState != "" {
		sock, err := v.startTPM(ctx, c.TPMState)
		if err != nil {
			v.cleanup()
			return nil, err
		}
		m.TPMSocket = sock
	}
	m.QMP = filepath.Join(v.private, "qmp")
	v.qmp.path = m.QMP
	// From here on a failure also stops what the network and the TPM
	// started.
	fail := func(err error) (*VM, error) {
		v.stopTPM()
		v.exitHooks()
		v.cleanup()
		return nil, err
	}
	var files []*os.File
	if c.Net != nil {
		netdev, fs, err := c.Net.attach(ctx, v)
		if err != nil {
			return fail(err)
		}
		m.Netdev, files = netdev, fs
	}
	qemu := exec.CommandContext(ctx, "qemu-system-aarch64", m.Args()...)
	qemu.Stdin = nil
	qemu.ExtraFiles = files
	// QEMU holds its own copies once started.
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	out, err := qemu.StdoutPipe()
	if err != nil {
		return fail(err)
	}
	qemuLog, err := os.Create(filepath.Join(v.dir, "qemu.log"))
	if err != nil {
		return fail(err)
	}
	qemu.Stderr = qemuLog
	qemu.WaitDelay = 5 * time.Second
	if err := qemu.Start(); err != nil {
		qemuLog.Close()
		return fail(fmt.Errorf("start qemu-system-aarch64: %w", err))
	}
	v.cmd = qemu
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			if c.Console != nil {
				fmt.Fprintln(c.Console, line)
			}
			v.mu.Lock()
			v.lines = append(v.lines, line)
			close(v.changed)
			v.changed = make(chan struct{})
			v.mu.Unlock()
		}
		v.err = qemu.Wait()
		qemuLog.Close()
		v.stopTPM()
		v.qmp.close()
		v.exitHooks()
		close(v.done)
	}()
	return v, nil
}

func (v *VM) startTPM(ctx context.Context, state string) (string, error) {
	if err := os.MkdirAll(state, 0o700); err != nil {
		return "", err
	}
	sock := filepath.Join(v.private, "swtpm")
	// swtpm splits its options at ',' with no escape: reach the state
	// folder through a link with a plain name.
	link := filepath.Join(v.private, "tpmstate")
	abs, err := filepath.Abs(state)
	if err != nil {
		return "", err
	}
	if err := os.Symlink(abs, link); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+link,
		"--ctrl", "type=unixio,path="+sock,
		"--log", "file="+filepath.Join(v.private, "swtpm.log")+",level=1",
		"--terminate")
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start swtpm: %w", err)
	}
	v.swtpm = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return sock, nil
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(v.private, "swtpm.log"))
			return "", fmt.Errorf("swtpm did not create %s within 10 s: %s", sock, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (v *VM) exitHooks() {
	for _, f := range v.onExit {
		f()
	}
	v.onExit = nil
}

func (v *VM) stopTPM() {
	if v.swtpm == nil {
		return
	}
	_ = v.swtpm.Process.Signal(syscall.SIGTERM)
	waited := make(chan struct{})
	go func() { v.swtpm.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		_ = v.swtpm.Process.Kill()
		<-waited
	}
}

// ErrExited is returned by WaitFor when the machine stopped first.
var ErrExited = errors.New("machine exited")

// WaitFor waits until a console line matches re and returns it. Lines seen
// before the call count.
func (v *VM) WaitFor(ctx context.Context, re *regexp.Regexp) (string, error) {
	seen := 0
	for {
		v.mu.Lock()
		for ; seen < len(v.lines); seen++ {
			if re.MatchString(v.lines[seen]) {
				line := v.lines[seen]
				v.mu.Unlock()
				return line, nil
			}
		}
		changed := v.changed
		v.mu.Unlock()
		select {
		case <-changed:
		case <-v.done:
			// Check the lines that arrived with the exit, then give up.
			v.mu.Lock()
			n := len(v.lines)
			v.mu.Unlock()
			if seen == n {
				return "", fmt.Errorf("waiting for %q: %w (%v)", re, ErrExited, v.err)
			}
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for %q: %w", re, ctx.Err())
		}
	}
}

// Wait waits for QEMU to exit (a power-off, a reboot with -no-reboot, or a
// kill) and returns its exit status.
func (v *VM) Wait(ctx context.Context) error {
	select {
	case <-v.done:
		return v.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Kill cuts the power: QEMU is killed without warning, as a power cut
// would. It waits until QEMU and swtpm are gone.
func (v *VM) Kill() {
	if v.cmd != nil && v.cmd.Process != nil {
		_ = v.cmd.Process.Kill()
	}
	<-v.done
}

// Close kills the machine if it still runs and removes the run's folder if
// Start made it.
func (v *VM) Close() {
	v.Kill()
	v.cleanup()
}

// Console returns the console output so far.
func (v *VM) Console() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return strings.Join(v.lines, "\n")
}

// Panel returns what the box has written to its front panel.
func (v *VM) Panel() string {
	b, _ := os.ReadFile(filepath.Join(v.private, "panel.txt"))
	return string(b)
}

// WaitPanel waits until the front panel shows text.
func (v *VM) WaitPanel(ctx context.Context, text string) error {
	for !strings.Contains(v.Panel(), text) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("front panel never showed %q: %w", text, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// Dir is the run's folder (logs, panel file).
func (v *VM) Dir() string { return v.dir }

func (v *VM) cleanup() {
	if v.private != "" {
		os.RemoveAll(v.private)
	}
	if v.tmpDir {
		os.RemoveAll(v.dir)
	}
}

// Package swtpmtest runs swtpm, the software TPM 2.0 that the QEMU board
// uses, in its own process for tests: a transport.TPM whose reboots are real
// process restarts on the same state folder.
package swtpmtest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
)

// TPM is swtpm, a libtpms-based software TPM in its own process, keeping its NV
// in a state directory, so that a reboot can be a real process restart: what
// survives it is exactly what libtpms wrote to disk.
//
// It listens on Unix sockets rather than TCP ports, so parallel test binaries
// (and other packages' swtpm tests) cannot collide on a port. The server
// socket speaks raw TPM 2.0 commands: one command in, one response out.
type TPM struct {
	t       *testing.T
	bin     string
	dir     string
	cmd     *exec.Cmd
	exited  chan error
	conn    net.Conn
	reboots int
}

// need returns swtpm's path, skipping the test if it is missing, unless
// CI is "true", where a missing swtpm must fail the run rather than silently
// drop the test.
func need(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("swtpm")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("swtpm is required in CI (apt-get install swtpm swtpm-tools): %v", err)
		}
		t.Skipf("swtpm not installed: %v", err)
	}
	return path
}

// Start runs a fresh swtpm for the test; it is killed when the test ends.
func Start(t *testing.T) *TPM {
	t.Helper()
	bin := need(t)
	// t.TempDir paths can exceed the 108-byte limit of a Unix socket path.
	dir, err := os.MkdirTemp("", "swtpm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &TPM{t: t, bin: bin, dir: dir}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *TPM) start() {
	s.t.Helper()
	sock := filepath.Join(s.dir, "server.sock")
	os.Remove(sock)
	os.Remove(filepath.Join(s.dir, "ctrl.sock"))
	s.cmd = exec.Command(s.bin, "socket", "--tpm2",
		"--tpmstate", "dir="+s.dir,
		"--server", "type=unixio,path="+sock,
		"--ctrl", "type=unixio,path="+filepath.Join(s.dir, "ctrl.sock"),
		// Power on and send TPM2_Startup(CLEAR) like the box's firmware
		// would, without a control-channel handshake.
		"--flags", "not-need-init,startup-clear",
		"--log", fmt.Sprintf("file=%s,level=1", filepath.Join(s.dir, "swtpm.log")),
	)
	var stderr bytes.Buffer
	s.cmd.Stdout, s.cmd.Stderr = &stderr, &stderr
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("starting swtpm: %v", err)
	}
	s.exited = make(chan error, 1)
	go func(c *exec.Cmd) { s.exited <- c.Wait() }(s.cmd)

	deadline := time.Now().Add(15 * time.Second)
	for {
		conn, err := net.Dial("unix", sock)
		if err == nil {
			s.conn = conn
			return
		}
		select {
		case werr := <-s.exited:
			s.t.Fatalf("swtpm exited before listening: %v\n%s%s", werr, stderr.String(), s.Log())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("swtpm not listening on %s after 15s: %v\n%s", sock, err, s.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Log returns swtpm's log so far.
func (s *TPM) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "swtpm.log"))
	return string(b)
}

// stop kills swtpm without a TPM2_Shutdown: a power cut. NV writes that
// returned success must already be on disk.
func (s *TPM) stop() {
	if s.cmd == nil {
		return
	}
	if s.conn != nil {
		s.conn.Close()
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
	s.cmd, s.conn = nil, nil
}

// Reboot alternates a power cut with an orderly shutdown
// (TPM2_Shutdown(CLEAR), then SIGTERM), restarting swtpm on the same state
// either way.
func (s *TPM) Reboot(t *testing.T) {
	t.Helper()
	s.reboots++
	if s.reboots%2 == 0 {
		if _, err := (tpm2.Shutdown{ShutdownType: tpm2.TPMSUClear}).Execute(s); err != nil {
			t.Fatalf("TPM2_Shutdown: %v", err)
		}
		s.conn.Close()
		s.conn = nil
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			t.Fatal("swtpm did not exit on SIGTERM")
		}
		s.cmd = nil
	} else {
		s.stop()
	}
	s.start()
}

// Send implements transport.TPM: the command as is, then a response read
// by its header's size field.
func (s *TPM) Send(cmd []byte) ([]byte, error) {
	if s.conn == nil {
		return nil, errors.New("swtpm not running")
	}
	if err := s.conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return nil, err
	}
	if _, err := s.conn.Write(cmd); err != nil {
		return nil, fmt.Errorf("sending to swtpm: %w", err)
	}
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(s.conn, hdr); err != nil {
		return nil, fmt.Errorf("reading swtpm response header: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > 1<<16 {
		return nil, fmt.Errorf("swtpm response size %d", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(s.conn, rsp[10:]); err != nil {
		return nil, fmt.Errorf("reading swtpm response body: %w", err)
	}
	return rsp, nil
}

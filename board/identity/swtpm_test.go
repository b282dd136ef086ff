package identity

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
)

// swtpm is a libtpms-based software TPM in its own process, keeping its
// state in a folder, so that a reboot is a real process restart: what
// survives it is exactly what libtpms wrote to disk. It is the TPM the
// QEMU board uses. (The same harness as firmware/rollback's tests.)
type swtpm struct {
	t      *testing.T
	bin    string
	dir    string
	cmd    *exec.Cmd
	exited chan error
	conn   net.Conn
}

// needSwtpm returns swtpm's path, skipping the test if it is missing,
// unless CI is "true", where a missing swtpm must fail the run.
func needSwtpm(t *testing.T) string {
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

func startSwtpm(t *testing.T) *swtpm {
	t.Helper()
	bin := needSwtpm(t)
	// t.TempDir paths can exceed the 108-byte limit of a Unix socket path.
	dir, err := os.MkdirTemp("", "swtpm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &swtpm{t: t, bin: bin, dir: dir}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *swtpm) start() {
	s.t.Helper()
	sock := filepath.Join(s.dir, "server.sock")
	os.Remove(sock)
	os.Remove(filepath.Join(s.dir, "ctrl.sock"))
	s.cmd = exec.Command(s.bin, "socket", "--tpm2",
		"--tpmstate", "dir="+s.dir,
		"--server", "type=unixio,path="+sock,
		"--ctrl", "type=unixio,path="+filepath.Join(s.dir, "ctrl.sock"),
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
			s.t.Fatalf("swtpm exited before listening: %v\n%s", werr, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("swtpm not listening on %s after 15s: %v", sock, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop kills swtpm without a TPM2_Shutdown: a power cut.
func (s *swtpm) stop() {
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

// Reboot is a power cut and a cold start on the same state.
func (s *swtpm) Reboot(t *testing.T) {
	t.Helper()
	s.stop()
	s.start()
}

// Send implements transport.TPM: the command as is, then a response read
// by its header's size field.
func (s *swtpm) Send(cmd []byte) ([]byte, error) {
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

func TestBootStorySwtpm(t *testing.T) {
	bootStory(t, startSwtpm(t))
}

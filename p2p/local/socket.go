package local

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"
)

// maxSocketPath is the longest path a Unix socket address may have on
// Linux (sun_path is 108 bytes, with the terminating NUL).
const maxSocketPath = 107

// Listen listens on a Unix socket at path for one of the daemon's local
// services. The folder of path is created 0700 if missing and must not be
// open to group or others (the socket's mode alone is set after bind, so
// the folder is what keeps others out meanwhile); the socket is made
// 0600. A socket file left by a daemon that died is replaced; one that
// still answers is refused, as is a path that is not a socket. The socket
// file is removed when the listener is closed.
func Listen(path string) (net.Listener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("socket %s: path of %d bytes, at most %d", path, len(path), maxSocketPath)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("socket folder: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("socket folder: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("socket folder %s is open to others (mode %04o): want 0700", dir, fi.Mode().Perm())
	}
	fi, err = os.Lstat(path)
	switch {
	case err == nil && fi.Mode().Type() == fs.ModeSocket:
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("socket %s: another process is listening on it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("stale socket: %w", err)
		}
	case err == nil:
		return nil, fmt.Errorf("socket %s: a %s is in the way", path, fileKind(fi.Mode()))
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("socket: %w", err)
	}
	return l, nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "folder"
	case m.IsRegular():
		return "regular file"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	}
	return "file of mode " + m.String()
}

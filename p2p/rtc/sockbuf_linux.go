package rtc

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// socketBuffers reads SO_RCVBUF and SO_SNDBUF back. Linux reports twice
// what it grants the payload (the rest is its bookkeeping): halve it.
func socketBuffers(c bufConn) (rcv, snd int, err error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, 0, errors.New("not a system socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var gerr error
	err = raw.Control(func(fd uintptr) {
		rcv, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		if gerr == nil {
			snd, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
		}
	})
	if err == nil {
		err = gerr
	}
	return rcv / 2, snd / 2, err
}

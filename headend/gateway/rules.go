package gateway

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// drain reads and drops what the peer still sends, up to a bound.
func drain(r io.Reader) {
	io.CopyN(io.Discard, r, 64<<10)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// isClosed reports an error that only says the peer went away.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

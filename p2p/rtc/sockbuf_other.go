//go:build !linux

package rtc

import "errors"

func socketBuffers(bufConn) (rcv, snd int, err error) {
	return 0, 0, errors.New("not read back on this system")
}

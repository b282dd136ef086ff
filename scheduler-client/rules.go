package schedclient

import (
	"io"
)

func drain(r io.Reader) {
	io.CopyN(io.Discard, r, 64<<10)
}

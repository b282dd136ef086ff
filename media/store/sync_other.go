//go:build !linux

package store

import (
	"errors"
	"os"
)

func datasync(f *os.File) error { return f.Sync() }

func diskSpace(string) (avail, total int64, err error) {
	return 0, 0, errors.New("free space is only known on Linux; set Options.Capacity")
}

package identity

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// readFile reads the identity file, refusing anything larger than a valid
// one could be (a damaged or hostile data partition must not make the
// daemons read gigabytes into memory).
func readFile(path string) ([]byte, fs.FileMode, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("identity file %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("identity file %s is not a regular file (%v): %w", path, st.Mode().Type(), ErrCorrupt)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, 0, fmt.Errorf("identity file %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, 0, fmt.Errorf("identity file %s is larger than %d bytes: %w", path, maxFileSize, ErrCorrupt)
	}
	return data, st.Mode().Perm(), nil
}

// writeFile puts data at path, complete or not at all: it is written and
// synced under a temporary name in the same folder, then linked into
// place, and the folder is synced, so a power cut leaves either no file or
// the whole one. With replace false an existing file wins (both daemons
// may create the identity at the same first boot): writeFile then reports
// false and leaves it alone.
func writeFile(path string, data []byte, replace bool) (bool, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("identity folder %s: %w", dir, err)
	}
	sweepTemps(dir)
	tmp, err := os.CreateTemp(dir, ".identity-*")
	if err != nil {
		return false, fmt.Errorf("identity file %s: %w", path, err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	// CreateTemp makes the file 0600; say so rather than rely on it.
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("identity file %s: writing %s: %w", path, tmpName, err)
	}
	if replace {
		err = os.Rename(tmpName, path)
	} else {
		err = os.Link(tmpName, path)
	}
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("identity file %s: %w", path, err)
	}
	// The temporary name goes before the folder is synced: a power cut
	// must not leave a second copy of the key behind.
	os.Remove(tmpName)
	if err := syncDir(dir); err != nil {
		return false, fmt.Errorf("identity file %s: %w", path, err)
	}
	return true, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// sweepTemps removes temporary files a power cut left behind while an
// identity was written (without a TPM they hold the seed). Young ones
// may be another daemon's write in progress, and are left alone.
func sweepTemps(dir string) {
	names, _ := filepath.Glob(filepath.Join(dir, ".identity-*"))
	for _, n := range names {
		if fi, err := os.Lstat(n); err == nil && fi.Mode().IsRegular() && time.Since(fi.ModTime()) > time.Minute {
			os.Remove(n)
		}
	}
}

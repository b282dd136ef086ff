//go:build !linux

package display

import (
	"errors"
	"fmt"
	"io/fs"
)

// Elsewhere than Linux there is neither DRM nor fbdev; the package still
// builds so that tools drawing screens on a developer's machine can link it.

func openDRM(path string, _ Options) (Display, error) {
	return nil, fmt.Errorf("DRM %s: %w", path, errors.ErrUnsupported)
}

func openFB(path string) (Display, error) {
	return nil, fmt.Errorf("fbdev %s: %w", path, errors.ErrUnsupported)
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

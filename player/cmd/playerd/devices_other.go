//go:build !linux

package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/boxswarm/boxswarm/board/remote"
)

// Elsewhere than Linux there is no evdev device: playerd builds (for
// tools that draw screens on a developer's machine) but has no remote.

func openRemote(context.Context, string, *slog.Logger) (remote.Reader, error) {
	return nil, errors.ErrUnsupported
}

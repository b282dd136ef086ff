//go:build !linux

package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/boxswarm/boxswarm/board/remote"
)

// Elsewhere than Linux there is no evdev or TPM device: playerd builds
// (for tools that draw screens on a developer's machine) but has neither.

func openRemote(context.Context, string, *slog.Logger) (remote.Reader, error) {
	return nil, errors.ErrUnsupported
}

func openTPM(string) (transport.TPMCloser, error) { return nil, errors.ErrUnsupported }

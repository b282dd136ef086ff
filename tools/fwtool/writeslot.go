package main

import (
	"context"
	"errors"
	"io"
)

func runWriteSlot(_ context.Context, args []string, stdout io.Writer) error {
	return errors.New("not implemented yet")
}

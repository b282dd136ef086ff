package console

import (
	"bytes"
	"testing"
)

func TestLogger(t *testing.T) {
	var b bytes.Buffer
	Logger(&b, "stage1: ").Info("slot verified", "slot", "A")
	if got, want := b.String(), "stage1: level=INFO msg=\"slot verified\" slot=A\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

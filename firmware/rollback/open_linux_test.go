//go:build linux

package rollback

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

func TestOpenRefusesNonDevices(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "tpm0")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		want error
	}{
		{"missing", filepath.Join(dir, "nope"), fs.ErrNotExist},
		{"regular file", regular, linuxtpm.ErrFileIsNotDevice},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tpm, err := Open(tt.path)
			if err == nil {
				tpm.Close()
				t.Fatalf("Open(%s) succeeded", tt.path)
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.path) {
				t.Errorf("Open(%s): %v, want %v naming the path", tt.path, err, tt.want)
			}
		})
	}
}

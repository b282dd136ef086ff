package identity

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/boxswarm/boxswarm/firmware/rollback"
)

func TestTPMOpener(t *testing.T) {
	_, rmErr := os.Stat(rollback.DevTPMRM)
	_, rawErr := os.Stat(rollback.DevTPM)
	hostHasTPM := rmErr == nil || rawErr == nil
	for _, tc := range []struct {
		flag     string
		wantOpen bool
		wantErr  string
	}{
		{"none", false, ""},
		{"auto", hostHasTPM, ""},
		{filepath.Join(t.TempDir(), "tpm0"), false, "-tpm"},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			open, dev, err := TPMOpener(tc.flag)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("got %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || (open != nil) != tc.wantOpen || (dev != "") != tc.wantOpen {
				t.Errorf("opener %v for %q, err %v; want an opener: %v", open != nil, dev, err, tc.wantOpen)
			}
		})
	}
	// A path that exists but is no TPM: the opener is made, and opening
	// fails at once rather than retry (only EBUSY is retried).
	open, _, err := TPMOpener(t.TempDir())
	if err != nil || open == nil {
		t.Fatalf("TPMOpener(a folder): %v", err)
	}
	if tpm, err := open(); err == nil {
		tpm.Close()
		t.Error("a folder opened as a TPM")
	}
}

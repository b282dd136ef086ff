package rom

import (
	"crypto/ed25519"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	key := strings.Repeat("ab", ed25519.PublicKeySize)
	for _, tc := range []struct {
		name, key, board, min string
		ok                    bool
	}{
		{"good", key, "qemu-arm64", "2", true},
		{"no minimum", key, "qemu-arm64", "", true},
		{"unset", "", "", "", false},
		{"short key", "abcd", "qemu-arm64", "1", false},
		{"no board", key, "", "1", false},
		{"bad minimum", key, "qemu-arm64", "x", false},
	} {
		f, err := parse(tc.key, tc.board, tc.min)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v", tc.name, err)
		}
		if tc.ok && tc.min == "2" && f.MinKeyVersion != 2 {
			t.Errorf("%s: min key version %d", tc.name, f.MinKeyVersion)
		}
	}
}

// TestUnsetROMRefuses guards the default: a stage one built without facts
// must have nothing to trust.
func TestUnsetROMRefuses(t *testing.T) {
	if _, err := Load(); err == nil {
		t.Fatal("Load succeeded in a build without linker flags")
	}
}

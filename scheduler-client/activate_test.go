package schedclient

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"strings"
	"testing"
)

// TestActivateRefusesBadKey: Activate takes the public key only, and
// refuses anything that is not one before dialling (the address is
// unreachable, so a dial would give another error).
func TestActivateRefusesBadKey(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		key  ed25519.PublicKey
	}{
		{"none", nil},
		{"a private key's bytes", ed25519.PublicKey(priv)},
		{"short", make(ed25519.PublicKey, 31)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Activate(t.Context(), "127.0.0.1:1", "x", x509.NewCertPool(), "CODE", tc.key)
			if err == nil || !strings.Contains(err.Error(), "want an Ed25519 key") {
				t.Errorf("got %v", err)
			}
		})
	}
}

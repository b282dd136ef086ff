package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/firmware"
)

func TestFlags(t *testing.T) {
	dir := t.TempDir()
	pub, priv, _ := ed25519.GenerateKey(nil)
	mk, err := firmware.MarshalPublicKeyPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	mediaKey := filepath.Join(dir, "media.pub")
	if err := os.WriteFile(mediaKey, mk, 0o644); err != nil {
		t.Fatal(err)
	}
	ik, err := firmware.MarshalPrivateKeyPEM(priv)
	if err != nil {
		t.Fatal(err)
	}
	idKey := filepath.Join(dir, "box.key")
	if err := os.WriteFile(idKey, ik, 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"-local", filepath.Join(dir, "none.sock"), "-no-display", "-no-input"}
	boxConfig := filepath.Join(dir, "box.json")
	if err := os.WriteFile(boxConfig, []byte(`{"headend": "h:1", "ca": "ca.crt", "media_keys": ["`+mediaKey+`"], "scheduler_key": "s.pub"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	badConfig := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(badConfig, []byte(`{"headend": "h:1", "ca": "ca.crt", "media_keys": ["`+idKey+`"], "scheduler_key": "s.pub"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		say  string
	}{
		{"no media key", []string{"-identity-pem", idKey}, 2, "-media-key"},
		{"no identity", []string{"-media-key", mediaKey, "-identity", ""}, 2, "identity key is required"},
		{"sealed identity by default", []string{"-media-key", mediaKey, "-tpm", "none"}, 0, "player daemon stopped"},
		{"PEM identity said to be unsealed", []string{"-media-key", mediaKey, "-identity-pem", idKey}, 0, "not sealed"},
		{"default identity with a PEM one", []string{"-media-key", mediaKey, "-identity-pem", idKey, "-identity", defaultIdentity}, 2, "not both"},
		{"two identities", []string{"-media-key", mediaKey, "-identity-pem", idKey, "-identity", idKey}, 2, "not both"},
		{"bad media key", []string{"-media-key", idKey, "-identity-pem", idKey}, 2, "media key"},
		{"bad size", []string{"-media-key", mediaKey, "-identity-pem", idKey, "-size", "big"}, 2, "-size"},
		{"missing TPM", []string{"-media-key", mediaKey, "-identity", idKey, "-tpm", filepath.Join(dir, "tpm0")}, 2, "-tpm"},
		{"extra argument", []string{"-media-key", mediaKey, "-identity-pem", idKey, "more"}, 2, "unexpected arguments"},
		{"media key from the box configuration", []string{"-config", boxConfig, "-identity-pem", idKey}, 0, "player daemon stopped"},
		{"a flag wins over the configuration", []string{"-config", badConfig, "-media-key", mediaKey, "-identity-pem", idKey}, 0, "player daemon stopped"},
		{"bad key in the configuration", []string{"-config", badConfig, "-identity-pem", idKey}, 2, "media key"},
		{"missing configuration", []string{"-config", filepath.Join(dir, "none.json"), "-identity-pem", idKey}, 2, "box configuration"},
		// Runs until its context ends: here at once.
		{"runs", []string{"-media-key", mediaKey, "-identity-pem", idKey, "-report-framemd5", filepath.Join(dir, "f.md5")}, 0, "player daemon stopped"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			var stderr bytes.Buffer
			code := run(ctx, append(append([]string{}, base...), tc.args...), &stderr)
			if code != tc.code || !strings.Contains(stderr.String(), tc.say) {
				t.Errorf("exit %d, want %d with %q; stderr:\n%s", code, tc.code, tc.say, stderr.String())
			}
		})
	}
}

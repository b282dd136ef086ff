package keyfile

import (
	"crypto/ed25519"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/boxswarm/boxswarm/firmware"
)

func TestRoundTripAndNoOverwrite(t *testing.T) {
	dir := t.TempDir()
	rootPub, root, _ := ed25519.GenerateKey(nil)
	pub, priv, _ := ed25519.GenerateKey(nil)
	prefix := filepath.Join(dir, "signing")
	if err := WritePair(prefix, priv, pub); err != nil {
		t.Fatal(err)
	}
	if err := WriteCertificate(prefix+".cert", firmware.Certify(root, firmware.Certificate{KeyVersion: 3, PublicKey: pub})); err != nil {
		t.Fatal(err)
	}
	s, err := ReadSigner(prefix+".key", prefix+".cert")
	if err != nil || s.Certificate.KeyVersion != 3 || s.Certificate.Verify(rootPub) != nil {
		t.Fatalf("ReadSigner: %+v, %v", s.Certificate, err)
	}
	if p, err := ReadPublicKey(prefix + ".pub"); err != nil || !p.Equal(pub) {
		t.Fatalf("ReadPublicKey: %v", err)
	}
	if st, _ := os.Stat(prefix + ".key"); st.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v", st.Mode())
	}
	_, other, _ := ed25519.GenerateKey(nil)
	if err := WritePair(prefix, other, pub); !errors.Is(err, fs.ErrExist) {
		t.Errorf("WritePair over an existing key = %v", err)
	}
	if k, _ := ReadPrivateKey(prefix + ".key"); !k.Equal(priv) {
		t.Error("existing private key was replaced")
	}
	// A key that is not the certified one.
	os.Remove(prefix + ".key")
	WriteNew(prefix+".key", mustPEM(t, other), 0o600)
	if _, err := ReadSigner(prefix+".key", prefix+".cert"); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("ReadSigner with a foreign key = %v", err)
	}
}

func mustPEM(t *testing.T, k ed25519.PrivateKey) []byte {
	b, err := firmware.MarshalPrivateKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

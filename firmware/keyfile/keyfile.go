// Package keyfile reads and writes the files of the firmware key hierarchy:
// Ed25519 keys as PEM (PKCS #8 private, PKIX public) and signing-key
// certificates. Writing never replaces an existing file: a key file that
// exists may be the only copy of a manufacturer's key. Private keys are
// written with mode 0600 and synced before they are reported written.
package keyfile

import (
	"crypto/ed25519"
	"fmt"
	"os"

	"github.com/boxswarm/boxswarm/firmware"
)

// ReadPrivateKey reads a PKCS #8 PEM Ed25519 private key.
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := firmware.ParsePrivateKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ReadPublicKey reads a PKIX PEM Ed25519 public key.
func ReadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := firmware.ParsePublicKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ReadSigner reads a signing key and its certificate and checks that they
// belong together. It does not check the certificate's signature.
func ReadSigner(keyPath, certPath string) (firmware.Signer, error) {
	k, err := ReadPrivateKey(keyPath)
	if err != nil {
		return firmware.Signer{}, err
	}
	b, err := os.ReadFile(certPath)
	if err != nil {
		return firmware.Signer{}, err
	}
	c, err := firmware.ParseCertificatePEM(b)
	if err != nil {
		return firmware.Signer{}, fmt.Errorf("%s: %w", certPath, err)
	}
	s := firmware.Signer{Key: k, Certificate: c}
	if err := s.Check(); err != nil {
		return firmware.Signer{}, fmt.Errorf("%s and %s: %w", keyPath, certPath, err)
	}
	return s, nil
}

// WritePair writes prefix.key (0600) and prefix.pub.
func WritePair(prefix string, priv ed25519.PrivateKey, pub ed25519.PublicKey) error {
	privPEM, err := firmware.MarshalPrivateKeyPEM(priv)
	if err != nil {
		return err
	}
	pubPEM, err := firmware.MarshalPublicKeyPEM(pub)
	if err != nil {
		return err
	}
	if err := WriteNew(prefix+".key", privPEM, 0o600); err != nil {
		return err
	}
	return WriteNew(prefix+".pub", pubPEM, 0o644)
}

// WriteCertificate writes a signed certificate file.
func WriteCertificate(path string, c firmware.SignedCertificate) error {
	return WriteNew(path, c.MarshalPEM(), 0o644)
}

// WriteNew creates path with data, failing with an error wrapping
// fs.ErrExist if it already exists.
func WriteNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("create %s (existing keys are never overwritten): %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return f.Close()
}

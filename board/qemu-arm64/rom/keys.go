package rom

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// keyAlgo names the FIT signature algorithm for the private key in path; the
// key size decides it, since a manufacturer may bring its own key.
func keyAlgo(path string) (string, error) {
	key, err := readPrivateKey(path)
	if err != nil {
		return "", err
	}
	switch bits := key.N.BitLen(); bits {
	case 2048, 3072, 4096:
		return fmt.Sprintf("sha256,rsa%d", bits), nil
	default:
		return "", fmt.Errorf("signing key %s: RSA-%d; U-Boot verifies only 2048, 3072 or 4096 bits", path, bits)
	}
}

func readPrivateKey(path string) (*rsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("signing key %s: no PEM block", path)
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("signing key %s: %w", path, err)
		}
		return k, nil
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("signing key %s: %w", path, err)
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("signing key %s: %T, U-Boot's FIT checks want RSA", path, k)
		}
		return rk, nil
	default:
		return nil, fmt.Errorf("signing key %s: PEM block %q is not a private key", path, block.Type)
	}
}

// KeyBits is the size of the RSA keys GenerateKey makes.
const KeyBits = 4096

// GenerateKey creates the signing key pair dir/name.key (PKCS#8 PEM, mode
// 0600) and dir/name.crt (self-signed certificate, which is where mkimage
// takes the public key from). It does nothing if both exist, and refuses to
// touch a half-present pair: the key belongs to the manufacturer and is
// never overwritten.
func GenerateKey(dir, name string) error {
	if !keyNameRE.MatchString(name) {
		return fmt.Errorf("key name %q: want letters, digits, '-' and '_'", name)
	}
	keyPath, crtPath := filepath.Join(dir, name+".key"), filepath.Join(dir, name+".crt")
	haveKey, err := exists(keyPath)
	if err != nil {
		return err
	}
	haveCrt, err := exists(crtPath)
	if err != nil {
		return err
	}
	switch {
	case haveKey && haveCrt:
		return nil
	case haveKey || haveCrt:
		return fmt.Errorf("signing key %s: only one of %s.key and %s.crt exists; not generating over it", filepath.Join(dir, name), name, name)
	}

	key, err := rsa.GenerateKey(rand.Reader, KeyBits)
	if err != nil {
		return fmt.Errorf("generating RSA key %s: %w", name, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return fmt.Errorf("certificate serial for %s: %w", name, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"boxswarm"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(30, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	crt, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("self-signing certificate for %s: %w", name, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding key %s: %w", name, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating key dir: %w", err)
	}
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	if err := writeNew(crtPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: crt}), 0o644); err != nil {
		// The key was created just now, so removing it loses nothing.
		os.Remove(keyPath)
		return err
	}
	return nil
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("checking %s: %w", path, err)
	}
}

// writeNew writes a file that must not exist yet, so that a key that
// appeared meanwhile is never replaced.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

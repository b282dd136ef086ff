package vault

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/boxswarm/boxswarm/media/keys"
)

// KeyEncrypter is the KMS interface: it encrypts and decrypts the vault's
// data key under a master key it never hands out. The vault calls it only
// when it opens, so a remote KMS is not on the path of a key release.
//
// Decrypt must fail with an error wrapping ErrWrongMasterKey when the
// ciphertext does not authenticate under its master key and aad. The
// vault zeroes what Decrypt returns once it has copied it.
type KeyEncrypter interface {
	Encrypt(ctx context.Context, plaintext, aad []byte) ([]byte, error)
	Decrypt(ctx context.Context, ciphertext, aad []byte) ([]byte, error)
}

// MasterKeySize is the size of a master key file.
const MasterKeySize = 32

// MasterKeyFile is the embedded KeyEncrypter: a 32-byte AES-256 key in a
// file of mode 0600, held in locked memory. Ciphertexts are a random
// 12-byte nonce followed by the AES-256-GCM ciphertext and tag.
type MasterKeyFile struct {
	path string
	key  *keys.Secret
}

// LoadOrCreateMasterKey reads the master key at path, or makes a new random
// one there (mode 0600, in a folder of mode 0700) if there is no file. It
// refuses a file that is not a regular file, that anyone but its owner may
// read or write, or that does not hold exactly 32 bytes. The caller closes
// the result when the vault is closed.
func LoadOrCreateMasterKey(path string) (*MasterKeyFile, error) {
	m, err := loadMasterKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return m, err
	}
	if err := createMasterKey(path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	// Read back what is on disk, also when another process won the race
	// to create it.
	return loadMasterKey(path)
}

func loadMasterKey(path string) (*MasterKeyFile, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	switch {
	case !st.Mode().IsRegular():
		return nil, fmt.Errorf("master key %s is not a regular file (%s)", path, st.Mode())
	case st.Mode().Perm()&0o077 != 0:
		return nil, fmt.Errorf("master key %s has mode %04o: others may use it; want 0600 (chmod 600 %s)", path, st.Mode().Perm(), path)
	case st.Size() != MasterKeySize:
		return nil, fmt.Errorf("master key %s has %d bytes, want %d", path, st.Size(), MasterKeySize)
	}
	s, err := keys.NewSecret(MasterKeySize)
	if err != nil {
		return nil, err
	}
	// Read straight into locked memory; one byte more must be the end, in
	// case the file grew after the Stat.
	var extra [1]byte
	if _, err := io.ReadFull(f, s.Bytes()); err != nil {
		s.Destroy()
		return nil, fmt.Errorf("master key %s: %w", path, err)
	}
	if n, _ := f.Read(extra[:]); n != 0 {
		s.Destroy()
		return nil, fmt.Errorf("master key %s is longer than %d bytes", path, MasterKeySize)
	}
	return &MasterKeyFile{path: path, key: s}, nil
}

func createMasterKey(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("master key: %w", err)
	}
	s, err := keys.NewSecret(MasterKeySize)
	if err != nil {
		return err
	}
	defer s.Destroy()
	rand.Read(s.Bytes())
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("master key: %w", err)
	}
	_, err = f.Write(s.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("master key %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Path returns the file the key came from.
func (m *MasterKeyFile) Path() string { return m.path }

// Close zeroes the key in memory.
func (m *MasterKeyFile) Close() { m.key.Destroy() }

// gcm builds the cipher for one call: the master key is used only when a
// vault opens, so its expanded form need not outlive the call.
func (m *MasterKeyFile) gcm() (cipher.AEAD, error) {
	k := m.key.Bytes()
	if k == nil {
		return nil, fmt.Errorf("master key %s: closed", m.path)
	}
	b, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// Encrypt seals plaintext under the master key.
func (m *MasterKeyFile) Encrypt(_ context.Context, plaintext, aad []byte) ([]byte, error) {
	g, err := m.gcm()
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, g.NonceSize(), g.NonceSize()+len(plaintext)+g.Overhead())
	rand.Read(nonce)
	return g.Seal(nonce, nonce, plaintext, aad), nil
}

// Decrypt opens what Encrypt sealed, failing with ErrWrongMasterKey if it
// does not authenticate.
func (m *MasterKeyFile) Decrypt(_ context.Context, ciphertext, aad []byte) ([]byte, error) {
	g, err := m.gcm()
	if err != nil {
		return nil, err
	}
	if len(ciphertext) < g.NonceSize()+g.Overhead() {
		return nil, fmt.Errorf("master key %s: ciphertext of %d bytes is too short: %w", m.path, len(ciphertext), ErrWrongMasterKey)
	}
	n := g.NonceSize()
	out, err := g.Open(nil, ciphertext[:n], ciphertext[n:], aad)
	if err != nil {
		return nil, fmt.Errorf("master key %s does not open it: %w", m.path, ErrWrongMasterKey)
	}
	return out, nil
}

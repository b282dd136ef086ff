package identity

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
)

// minDeviceSecret is the shortest board secret accepted: 128 bits.
const minDeviceSecret = 16

// deviceInfo is the HKDF info; the file version is part of it.
const deviceInfo = "boxswarm identity seed sealed with the device secret v1"

// deviceAEAD derives the AES-256-GCM key that seals the seed from the
// board's secret and the file's salt. The salt makes the key differ per
// sealing, so re-creating an identity never reuses a key with a new nonce
// under the same secret by chance.
func deviceAEAD(secret, salt []byte) (cipher.AEAD, error) {
	if len(secret) < minDeviceSecret {
		return nil, fmt.Errorf("device secret of %d bytes, want at least %d", len(secret), minDeviceSecret)
	}
	key, err := hkdf.Key(sha256.New, secret, salt, deviceInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("deriving the sealing key from the device secret: %w", err)
	}
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// sealDevice encrypts seed under the board's secret and fills in b's
// device-secret fields.
func sealDevice(secret, seed []byte, b *blob) error {
	b.Salt = make([]byte, saltSize)
	b.Nonce = make([]byte, nonceSize)
	rand.Read(b.Salt)
	rand.Read(b.Nonce)
	var err error
	erase(func() {
		var aead cipher.AEAD
		aead, err = deviceAEAD(secret, b.Salt)
		if err != nil {
			return
		}
		b.Sealed = aead.Seal(nil, b.Nonce, seed, b.sealedAAD())
	})
	if err != nil {
		return fmt.Errorf("sealing the identity with the device secret: %w", err)
	}
	return nil
}

// unsealDevice decrypts b's seed into dst (seedSize bytes).
func unsealDevice(secret []byte, b *blob, dst []byte) error {
	var err error
	erase(func() {
		var aead cipher.AEAD
		aead, err = deviceAEAD(secret, b.Salt)
		if err != nil {
			return
		}
		// Open writes the plaintext straight into dst (locked memory) and
		// zeroes it again if authentication fails.
		if _, oerr := aead.Open(dst[:0], b.Nonce, b.Sealed, b.sealedAAD()); oerr != nil {
			err = fmt.Errorf("the sealed seed does not open with this board's device secret: %w", ErrOtherDevice)
		}
	})
	return err
}

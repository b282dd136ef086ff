package main

import (
	"crypto/ed25519"
	"crypto/rand"

	"github.com/boxswarm/boxswarm/firmware"
)

// benchKeys makes a throwaway key hierarchy: the hashing benchmark needs a
// valid signature, not a real key.
func benchKeys() (ed25519.PublicKey, firmware.Signer) {
	rootPub, root, _ := ed25519.GenerateKey(rand.Reader)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	return rootPub, firmware.Signer{Key: priv, Certificate: firmware.Certify(root, firmware.Certificate{KeyVersion: 1, PublicKey: pub})}
}

package identity

import (
	"crypto/ed25519"
	"crypto/sha512"

	"filippo.io/edwards25519"
)

// Ed25519 (RFC 8032, section 5.1) done here rather than by crypto/ed25519,
// for two reasons:
//
//   - crypto/ed25519's PrivateKey.Sign caches the expanded key in a weak map
//     keyed by the address of the key's first byte. The runtime cannot make
//     a weak pointer to memory outside the Go heap, so signing with a key in
//     a keys.Secret (an mmap) stops the process with "fatal error:
//     getWeakHandle on invalid pointer".
//   - That cache would also keep the seed and the expanded secret scalar on
//     the ordinary heap, unzeroed, for as long as the key lives.
//
// The arithmetic is filippo.io/edwards25519, the same group code the
// standard library uses inside; the tests check signatures byte for byte
// against crypto/ed25519 (Ed25519 signatures are deterministic).

// derivePublic writes the public key of seed into pub (RFC 8032 5.1.5):
// A = s·B, with s the clamped first half of SHA-512(seed).
func derivePublic(seed, pub []byte) {
	h := sha512.Sum512(seed)
	s, err := edwards25519.NewScalar().SetBytesWithClamping(h[:32])
	clear(h[:])
	if err != nil {
		panic("identity: clamping a 32-byte scalar failed: " + err.Error())
	}
	copy(pub, new(edwards25519.Point).ScalarBaseMult(s).Bytes())
	s.Set(edwards25519.NewScalar())
}

// signEd25519 is pure Ed25519 (RFC 8032 5.1.6) with priv, which must be
// seed || public key with the public key derived from the seed: signing
// with a mismatched public key would leak the secret scalar.
func signEd25519(priv []byte, message []byte) []byte {
	seed, pub := priv[:ed25519.SeedSize], priv[ed25519.SeedSize:ed25519.PrivateKeySize]
	h := sha512.Sum512(seed)
	defer clear(h[:])
	s, err := edwards25519.NewScalar().SetBytesWithClamping(h[:32])
	if err != nil {
		panic("identity: clamping a 32-byte scalar failed: " + err.Error())
	}
	defer s.Set(edwards25519.NewScalar())

	// r = SHA-512(prefix || M) mod L, the deterministic nonce.
	var digest [sha512.Size]byte
	defer clear(digest[:])
	mh := sha512.New()
	mh.Write(h[32:])
	mh.Write(message)
	mh.Sum(digest[:0])
	mh.Reset()
	r, err := edwards25519.NewScalar().SetUniformBytes(digest[:])
	if err != nil {
		panic("identity: reducing a 64-byte digest failed: " + err.Error())
	}
	defer r.Set(edwards25519.NewScalar())
	R := new(edwards25519.Point).ScalarBaseMult(r).Bytes()

	// k = SHA-512(R || A || M) mod L; S = r + k·s mod L.
	kh := sha512.New()
	kh.Write(R)
	kh.Write(pub)
	kh.Write(message)
	k, err := edwards25519.NewScalar().SetUniformBytes(kh.Sum(nil))
	if err != nil {
		panic("identity: reducing a 64-byte digest failed: " + err.Error())
	}
	S := edwards25519.NewScalar().MultiplyAdd(k, s, r)

	sig := make([]byte, ed25519.SignatureSize)
	copy(sig, R)
	copy(sig[32:], S.Bytes())
	return sig
}

package identity

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"testing"

	"github.com/boxswarm/boxswarm/media/keys"
)

// TestSignMatchesStandardLibrary: Ed25519 is deterministic, so our
// signatures must equal crypto/ed25519's byte for byte, for every key and
// message, including the RFC 8032 test vectors.
func TestSignMatchesStandardLibrary(t *testing.T) {
	type vector struct{ seed, msg, sig string }
	rfc8032 := []vector{
		{"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", "",
			"e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
		{"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb", "72",
			"92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
	}
	for _, v := range rfc8032 {
		seed, _ := hex.DecodeString(v.seed)
		msg, _ := hex.DecodeString(v.msg)
		priv := make([]byte, ed25519.PrivateKeySize)
		copy(priv, seed)
		derivePublic(seed, priv[32:])
		if got := hex.EncodeToString(signEd25519(priv, msg)); got != v.sig {
			t.Fatalf("RFC 8032 seed %s: signature %s, want %s", v.seed, got, v.sig)
		}
	}

	for i := range 200 {
		_, std, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		var pub [32]byte
		derivePublic(std.Seed(), pub[:])
		if !bytes.Equal(pub[:], std[32:]) {
			t.Fatalf("key %d: public key %x, crypto/ed25519 says %x", i, pub, std[32:])
		}
		msg := make([]byte, i*7)
		rand.Read(msg)
		if got, want := signEd25519(std, msg), ed25519.Sign(std, msg); !bytes.Equal(got, want) {
			t.Fatalf("key %d, %d-byte message: signature %x, crypto/ed25519 says %x", i, len(msg), got, want)
		}
	}
}

// TestSignFromLockedMemory: signing with a key held in a keys.Secret works
// through the Identity (crypto/ed25519's own Sign cannot do this; see
// sign.go), and variants Ed25519 keys do not use in TLS are refused.
func TestSignFromLockedMemory(t *testing.T) {
	s, err := keys.NewSecret(ed25519.PrivateKeySize)
	if err != nil {
		t.Fatal(err)
	}
	rand.Read(s.Bytes()[:seedSize])
	id := &Identity{secret: s}
	id.pub = completeKey(s.Bytes())
	defer id.Close()
	msg := []byte("message")
	sig, err := id.Sign(nil, msg, crypto.Hash(0))
	if err != nil || !ed25519.Verify(id.pub, msg, sig) {
		t.Fatalf("Sign: %v", err)
	}
	sig, err = id.Sign(nil, msg, &ed25519.Options{})
	if err != nil || !ed25519.Verify(id.pub, msg, sig) {
		t.Fatalf("Sign with empty ed25519.Options: %v", err)
	}
	digest := sha512.Sum512(msg)
	if _, err := id.Sign(nil, digest[:], crypto.SHA512); err == nil {
		t.Fatal("Ed25519ph accepted")
	}
	if _, err := id.Sign(nil, msg, &ed25519.Options{Context: "ctx"}); err == nil {
		t.Fatal("Ed25519ctx accepted")
	}
}

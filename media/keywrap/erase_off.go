//go:build !goexperiment.runtimesecret

package keywrap

// ErasesTemporaries reports whether this build erases what Wrap and Unwrap
// leave behind in the standard library (the X25519 scalar inside
// crypto/ecdh, HPKE's key schedule, stack and registers) with
// runtime/secret. Build with GOEXPERIMENT=runtimesecret, as the player
// daemon is, to make it true.
const ErasesTemporaries = false

func erase(f func()) { f() }

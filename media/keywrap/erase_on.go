//go:build goexperiment.runtimesecret

package keywrap

import "runtime/secret"

// ErasesTemporaries reports whether this build erases what Wrap and Unwrap
// leave behind in the standard library (the X25519 scalar inside
// crypto/ecdh, HPKE's key schedule, stack and registers) with
// runtime/secret.
const ErasesTemporaries = true

func erase(f func()) { secret.Do(f) }

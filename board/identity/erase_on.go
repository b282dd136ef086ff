//go:build goexperiment.runtimesecret

package identity

import "runtime/secret"

// ErasesTemporaries reports whether this build erases what sealing,
// unsealing and signing leave behind in go-tpm and the standard library
// (command and response buffers, the expanded signing key, stack and
// registers) with runtime/secret.
const ErasesTemporaries = true

func erase(f func()) { secret.Do(f) }

//go:build goexperiment.runtimesecret

package player

import "runtime/secret"

// ErasesKeySchedules reports whether this build erases the temporaries of
// frame decryption (the key schedules crypto/aes allocates per frame, and
// the stack and registers) with runtime/secret.
const ErasesKeySchedules = true

func erase(f func()) { secret.Do(f) }

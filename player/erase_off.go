//go:build !goexperiment.runtimesecret

package player

// ErasesKeySchedules reports whether this build erases the temporaries of
// frame decryption (the key schedules crypto/aes allocates per frame, and
// the stack and registers) with runtime/secret. Build with
// GOEXPERIMENT=runtimesecret to make it true.
const ErasesKeySchedules = false

func erase(f func()) { f() }

//go:build !goexperiment.runtimesecret

package identity

// ErasesTemporaries reports whether this build erases what sealing,
// unsealing and signing leave behind in go-tpm and the standard library
// (command and response buffers, the expanded signing key, stack and
// registers) with runtime/secret. Build with GOEXPERIMENT=runtimesecret, as
// the player daemon is, to make it true.
const ErasesTemporaries = false

func erase(f func()) { f() }

//go:build !insecure_noverify

package firmware

// VerificationDisabled reports whether this build skips signature and hash
// checks. It is true only in builds tagged insecure_noverify, which exist to
// measure what verification costs and must never be flashed.
const VerificationDisabled = verificationDisabled

const verificationDisabled = false

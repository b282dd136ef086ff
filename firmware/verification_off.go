//go:build insecure_noverify

package firmware

// VerificationDisabled reports whether this build skips signature and hash
// checks. This build does: it exists only to measure what verification costs
// and must never be flashed.
const VerificationDisabled = verificationDisabled

const verificationDisabled = true

package firmware

import "errors"

// Reasons a slot is refused. Every error from LoadSlot wraps exactly one of
// them and ends with its text, so the first stage can say why a box needs
// service and tests can check that a tampered image fails for the right
// reason.
var (
	ErrNoImage              = errors.New("no image")
	ErrMalformed            = errors.New("malformed")
	ErrUnsupportedVersion   = errors.New("unsupported format version")
	ErrCertificateSignature = errors.New("untrusted signing key")
	ErrKeyRevoked           = errors.New("revoked signing key")
	ErrKeyMismatch          = errors.New("signing key mismatch")
	ErrManifestSignature    = errors.New("bad manifest signature")
	ErrWrongBoard           = errors.New("wrong board")
	ErrRollback             = errors.New("rollback")
	ErrComponentBounds      = errors.New("bad layout")
	ErrComponentHash        = errors.New("hash mismatch")
	ErrRead                 = errors.New("read error")
)

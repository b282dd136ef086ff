package customers

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// PasswordParams are argon2id's cost parameters.
type PasswordParams struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
}

// DefaultPasswordParams follow RFC 9106's second recommendation (64 MiB,
// three passes): about 0.2 s per log-in on the 2-core test machine.
var DefaultPasswordParams = PasswordParams{Memory: 64 << 10, Time: 3, Threads: 2}

// Bounds on parameters read from a stored hash, so that a damaged or
// planted record cannot make one log-in take the machine's memory.
const (
	maxMemoryKiB = 1 << 20 // 1 GiB
	maxTime      = 16
	saltLen      = 16
	keyLen       = 32
)

func (p PasswordParams) check() error {
	if p.Memory < 8*uint32(p.Threads) || p.Memory > maxMemoryKiB || p.Time < 1 || p.Time > maxTime || p.Threads < 1 {
		return fmt.Errorf("argon2id m=%d t=%d p=%d out of range", p.Memory, p.Time, p.Threads)
	}
	return nil
}

var errBadHash = errors.New("stored password hash is malformed")

// hashPassword hashes pw with a fresh random salt, in PHC string format:
// $argon2id$v=19$m=65536,t=3,p=2$<salt>$<hash>, base64 without padding.
func hashPassword(pw string, p PasswordParams) (string, error) {
	if err := p.check(); err != nil {
		return "", err
	}
	salt := make([]byte, saltLen)
	_, _ = rand.Read(salt) // never fails
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, keyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// verifyPassword reports whether pw matches the stored hash, comparing in
// constant time, and whether the hash was made with other parameters than
// want (so it should be redone).
func verifyPassword(pw, stored string, want PasswordParams) (ok, stale bool, err error) {
	p, salt, key, err := parseHash(stored)
	if err != nil {
		return false, false, err
	}
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, p != want, nil
}

func parseHash(s string) (p PasswordParams, salt, key []byte, err error) {
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" || f[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return p, nil, nil, errBadHash
	}
	var threads uint32
	if n, err := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &threads); err != nil || n != 3 ||
		fmt.Sprintf("m=%d,t=%d,p=%d", p.Memory, p.Time, threads) != f[3] || threads > 255 {
		return p, nil, nil, errBadHash
	}
	p.Threads = uint8(threads)
	if p.check() != nil {
		return p, nil, nil, errBadHash
	}
	b64 := base64.RawStdEncoding.Strict()
	salt, err1 := b64.DecodeString(f[4])
	key, err2 := b64.DecodeString(f[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(key) < 16 || len(key) > 64 {
		return p, nil, nil, errBadHash
	}
	return p, salt, key, nil
}

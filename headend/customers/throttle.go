package customers

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// ThrottlePolicy is how failed log-ins slow the next ones down. Failures
// are counted per e-mail address (whether or not it has an account, so the
// answers give nothing away) and per remote address. Once a key has had
// its free failures, each further failure locks it out for Base, then
// twice that, and so on up to Max. A successful log-in clears its e-mail
// address's count, not its remote address's: one account of one's own must
// not reset the guessing budget for others. A count is forgotten once its
// last failure is Forget old.
type ThrottlePolicy struct {
	EmailFree int
	AddrFree  int // higher than EmailFree: many viewers can share one address
	Base      time.Duration
	Max       time.Duration
	Forget    time.Duration // at least Max
}

// DefaultThrottle allows 5 free failures per e-mail address and 20 per
// remote address, then locks out for 1 s, 2 s, 4 s… up to 15 minutes.
var DefaultThrottle = ThrottlePolicy{EmailFree: 5, AddrFree: 20, Base: time.Second, Max: 15 * time.Minute, Forget: 24 * time.Hour}

func (p ThrottlePolicy) check() error {
	if p.EmailFree < 0 || p.AddrFree < 0 || p.Base <= 0 || p.Max < p.Base || p.Forget < p.Max {
		return fmt.Errorf("%+v: want free counts >= 0, 0 < Base <= Max <= Forget", p)
	}
	return nil
}

// lockout is how long a key is locked after its n-th failure in a row.
func (p ThrottlePolicy) lockout(n, free int) time.Duration {
	if n <= free {
		return 0
	}
	d := p.Base
	for i := free + 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	return min(d, p.Max)
}

// fail records one failure against a key's throttle (zero if new).
func (p ThrottlePolicy) fail(t Throttle, key string, free int, now time.Time) Throttle {
	if t.Key == "" || now.Sub(t.Last) >= p.Forget {
		t = Throttle{Key: key}
	}
	t.Failures++
	t.Last = now
	t.Until = now.Add(p.lockout(t.Failures, free))
	return t
}

// ThrottledError is the answer to a log-in tried while locked out.
type ThrottledError struct {
	Scope string // "e-mail address" or "remote address"
	Until time.Time
	Now   time.Time
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("%v for this %s: try again in %v (after %s)",
		ErrThrottled, e.Scope, e.RetryAfter(), e.Until.Format(time.RFC3339))
}

// Is makes errors.Is(err, ErrThrottled) true.
func (e *ThrottledError) Is(target error) bool { return target == ErrThrottled }

// RetryAfter is how long to wait, rounded up to a second (for a
// Retry-After header).
func (e *ThrottledError) RetryAfter() time.Duration {
	d := e.Until.Sub(e.Now)
	return max(time.Second, (d+time.Second-1)/time.Second*time.Second)
}

// Throttle keys.
func emailKey(email string) string { return "email:" + email }

// addrKey keys a remote address ("host:port" or a bare IP): an IPv4
// address as it is, an IPv6 address by its /64, which is what one home or
// one host usually has.
func addrKey(remote string) (string, error) {
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return "", fmt.Errorf("%w: remote address %q", ErrInvalid, remote)
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return "addr:" + p.String(), nil
	}
	return "addr:" + ip.String(), nil
}

// lockedOut returns a *ThrottledError if either key is locked at now.
func lockedOut(tx ReadTx, now time.Time, keys ...string) error {
	for i, key := range keys {
		t, err := tx.Throttle(key)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if now.Before(t.Until) {
			scope := "e-mail address"
			if i > 0 {
				scope = "remote address"
			}
			return &ThrottledError{Scope: scope, Until: t.Until, Now: now}
		}
	}
	return nil
}

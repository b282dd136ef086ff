package customers_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/headend/customers/boltstore"
)

const home = "198.51.100.7:50000"

func TestLoginAndSessions(t *testing.T) {
	e := newEnv(t)
	e.catalog()
	a, _ := e.signUp("alice", "DE")
	// E-mail addresses are case-insensitive.
	iss, err := e.svc.Login(ctx, customers.Login{Email: " ALICE@Example.com", Password: password("alice"), RemoteAddr: home})
	must(t, err)
	if iss.Account != a.ID || len(iss.ID) < 43 || len(iss.CSRF) < 43 || iss.ID == iss.CSRF {
		t.Errorf("issued %+v", iss)
	}
	if !iss.Expires.Equal(start.Add(customers.DefaultSessionTTL)) {
		t.Errorf("expires %v, want %v", iss.Expires, start.Add(customers.DefaultSessionTTL))
	}
	sess, acct, err := e.svc.Authenticate(ctx, iss.ID)
	must(t, err)
	if acct.ID != a.ID || sess.Account != a.ID || sess.Hash != customers.HashSessionID(iss.ID) || sess.Addr != home {
		t.Errorf("session %+v of %s", sess, acct.ID)
	}

	// CSRF: the session's own token, and nothing else.
	must(t, customers.CheckCSRF(sess, iss.CSRF))
	other := e.login("alice", home)
	for name, tok := range map[string]string{"empty": "", "another session's": other.CSRF, "the session ID": iss.ID,
		"a prefix": iss.CSRF[:20], "longer": iss.CSRF + "x"} {
		wantErr(t, "CSRF "+name, customers.CheckCSRF(sess, tok), customers.ErrCSRF)
	}
	wantErr(t, "CSRF of an empty session", customers.CheckCSRF(customers.Session{}, ""), customers.ErrCSRF)

	// Wrong password, unknown address, garbage: one answer.
	for _, l := range []customers.Login{
		{Email: "alice@example.com", Password: "correct horse alicE", RemoteAddr: home},
		{Email: "bob@example.com", Password: password("alice"), RemoteAddr: home},
		{Email: "not an address", Password: "x", RemoteAddr: home},
		{Email: "alice@example.com", Password: "", RemoteAddr: home},
	} {
		_, err := e.svc.Login(ctx, l)
		wantErr(t, "log-in as "+l.Email, err, customers.ErrBadCredentials)
	}
	_, err = e.svc.Login(ctx, customers.Login{Email: "alice@example.com", Password: password("alice"), RemoteAddr: "somewhere"})
	wantErr(t, "log-in without a remote address", err, customers.ErrInvalid)

	// Unknown and expired sessions.
	for _, id := range []string{"", "nonsense", strings.Repeat("x", 10000), iss.CSRF} {
		_, _, err := e.svc.Authenticate(ctx, id)
		wantErr(t, "authenticate "+id[:min(len(id), 10)], err, customers.ErrNoSession)
	}
	e.clock.Advance(customers.DefaultSessionTTL - time.Microsecond)
	if _, _, err := e.svc.Authenticate(ctx, iss.ID); err != nil {
		t.Errorf("a microsecond before expiry: %v", err)
	}
	e.clock.Advance(time.Microsecond)
	_, _, err = e.svc.Authenticate(ctx, iss.ID)
	wantErr(t, "at expiry", err, customers.ErrNoSession)
	// And it stays gone, even if the clock went back.
	e.clock.Advance(-time.Hour)
	_, _, err = e.svc.Authenticate(ctx, iss.ID)
	wantErr(t, "after expiry, clock back", err, customers.ErrNoSession)

	// Log-out.
	must(t, e.svc.Logout(ctx, other.ID))
	_, _, err = e.svc.Authenticate(ctx, other.ID)
	wantErr(t, "after log-out", err, customers.ErrNoSession)
	must(t, e.svc.Logout(ctx, other.ID)) // again: not an error
}

// TestSessionIDsNotStored checks that the store holds only hashes of
// session IDs: the file never contains one.
func TestSessionIDsNotStored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "customers.db")
	s, err := boltstore.Open(path, boltstore.WithLogger(quiet))
	must(t, err)
	e := newEnvOn(t, s)
	e.catalog()
	e.signUp("alice", "DE")
	var issued []customers.Issued
	for range 5 {
		issued = append(issued, e.login("alice", home))
	}
	must(t, s.Close())
	raw, err := os.ReadFile(path)
	must(t, err)
	for _, iss := range issued {
		if bytes.Contains(raw, []byte(iss.ID)) {
			t.Fatalf("session ID %s… found in the store's file", iss.ID[:8])
		}
		h := customers.HashSessionID(iss.ID)
		if !bytes.Contains(raw, h[:]) {
			t.Fatalf("hash of session %s… not in the file: the test does not see what it should", iss.ID[:8])
		}
	}
	if bytes.Contains(raw, []byte(password("alice"))) {
		t.Fatal("the password is in the store's file")
	}
}

func TestSessionRotation(t *testing.T) {
	e := newEnv(t)
	e.catalog()
	e.signUp("alice", "DE")
	first := e.login("alice", home)

	// Logging in again with the old session presented replaces it.
	second, err := e.svc.Login(ctx, customers.Login{Email: "alice@example.com", Password: password("alice"),
		RemoteAddr: home, Previous: first.ID})
	must(t, err)
	if second.ID == first.ID || second.CSRF == first.CSRF {
		t.Error("log-in kept the session ID or its CSRF token")
	}
	_, _, err = e.svc.Authenticate(ctx, first.ID)
	wantErr(t, "the session presented at log-in", err, customers.ErrNoSession)
	if _, _, err := e.svc.Authenticate(ctx, second.ID); err != nil {
		t.Errorf("the new session: %v", err)
	}

	// A session ID planted in the browser before log-in never becomes a
	// logged-in session.
	planted := "attacker-chosen-session-id-0000000000000000"
	third, err := e.svc.Login(ctx, customers.Login{Email: "alice@example.com", Password: password("alice"),
		RemoteAddr: home, Previous: planted})
	must(t, err)
	if third.ID == planted {
		t.Fatal("log-in adopted the session ID the browser presented")
	}
	_, _, err = e.svc.Authenticate(ctx, planted)
	wantErr(t, "planted session", err, customers.ErrNoSession)

	// A failed log-in leaves the presented session alone.
	_, err = e.svc.Login(ctx, customers.Login{Email: "alice@example.com", Password: "wrong password", RemoteAddr: home, Previous: third.ID})
	wantErr(t, "wrong password", err, customers.ErrBadCredentials)
	if _, _, err := e.svc.Authenticate(ctx, third.ID); err != nil {
		t.Errorf("session after a failed log-in: %v", err)
	}

	// Changing the password ends every session and issues one new one.
	fourth, err := e.svc.ChangePassword(ctx, third.ID, home, password("alice"), "a brand new password")
	must(t, err)
	for _, old := range []customers.Issued{second, third} {
		_, _, err := e.svc.Authenticate(ctx, old.ID)
		wantErr(t, "session after a password change", err, customers.ErrNoSession)
	}
	if _, _, err := e.svc.Authenticate(ctx, fourth.ID); err != nil {
		t.Errorf("session issued by the change: %v", err)
	}
	_, err = e.svc.Login(ctx, customers.Login{Email: "alice@example.com", Password: password("alice"), RemoteAddr: home})
	wantErr(t, "old password", err, customers.ErrBadCredentials)
	if _, err := e.svc.Login(ctx, customers.Login{Email: "alice@example.com", Password: "a brand new password", RemoteAddr: home}); err != nil {
		t.Errorf("new password: %v", err)
	}
	_, err = e.svc.ChangePassword(ctx, fourth.ID, home, "not the password", "another new password")
	wantErr(t, "change with a wrong old password", err, customers.ErrBadCredentials)
	_, err = e.svc.ChangePassword(ctx, fourth.ID, home, "a brand new password", "short")
	wantErr(t, "change to a short password", err, customers.ErrInvalid)

	must(t, e.svc.LogoutEverywhere(ctx, fourth.Account))
	_, _, err = e.svc.Authenticate(ctx, fourth.ID)
	wantErr(t, "after log-out everywhere", err, customers.ErrNoSession)
}

var testThrottle = customers.ThrottlePolicy{EmailFree: 3, AddrFree: 6, Base: time.Second, Max: 8 * time.Second, Forget: time.Hour}

func withThrottle(c *customers.Config) { c.Throttle = testThrottle }

// throttled returns the lock's remaining time, or fails the test if err is
// not a throttling.
func throttled(t *testing.T, what string, err error) time.Duration {
	t.Helper()
	var te *customers.ThrottledError
	if !errors.As(err, &te) || !errors.Is(err, customers.ErrThrottled) {
		t.Fatalf("%s: %v, want a *ThrottledError", what, err)
	}
	return te.RetryAfter()
}

func TestThrottleBackoff(t *testing.T) {
	// Only the e-mail address's count matters here.
	e := newEnv(t, func(c *customers.Config) { c.Throttle = testThrottle; c.Throttle.AddrFree = 1000 })
	e.catalog()
	e.signUp("alice", "DE")
	bad := customers.Login{Email: "alice@example.com", Password: "wrong password", RemoteAddr: home}
	good := customers.Login{Email: "alice@example.com", Password: password("alice"), RemoteAddr: "203.0.113.9:1"}

	for range testThrottle.EmailFree {
		_, err := e.svc.Login(ctx, bad)
		wantErr(t, "free failure", err, customers.ErrBadCredentials)
	}
	// Each failure past the free ones locks for twice as long, up to Max;
	// while locked, even the right password is not tried.
	for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second} {
		_, err := e.svc.Login(ctx, bad)
		wantErr(t, "failure past the free ones", err, customers.ErrBadCredentials)
		_, err = e.svc.Login(ctx, good)
		if got := throttled(t, "right password while locked", err); got != want {
			t.Errorf("locked for %v, want %v", got, want)
		}
		if !strings.Contains(err.Error(), "e-mail address") {
			t.Errorf("throttle error %q does not say what is locked", err)
		}
		e.clock.Advance(want - time.Millisecond)
		_, err = e.svc.Login(ctx, good)
		throttled(t, "just before the lock ends", err)
		e.clock.Advance(time.Millisecond)
	}
	// Success clears the e-mail address's count.
	if _, err := e.svc.Login(ctx, good); err != nil {
		t.Fatalf("log-in after the lock: %v", err)
	}
	for range testThrottle.EmailFree {
		_, err := e.svc.Login(ctx, bad)
		wantErr(t, "free failure after success", err, customers.ErrBadCredentials)
	}
	_, err := e.svc.Login(ctx, bad)
	wantErr(t, "first failure past the free ones again", err, customers.ErrBadCredentials)
	_, err = e.svc.Login(ctx, good)
	if got := throttled(t, "locked again", err); got != time.Second {
		t.Errorf("locked for %v after a reset, want %v", got, time.Second)
	}

	// Failures are forgotten after a while.
	e.clock.Advance(testThrottle.Forget)
	for range testThrottle.EmailFree {
		_, err := e.svc.Login(ctx, bad)
		wantErr(t, "free failure after forgetting", err, customers.ErrBadCredentials)
	}
	if _, err := e.svc.Login(ctx, good); err != nil {
		t.Errorf("log-in after forgetting: %v", err)
	}
}

func TestThrottlePerAddress(t *testing.T) {
	e := newEnv(t, withThrottle)
	e.catalog()
	e.signUp("alice", "DE")
	// One address guessing at many e-mail addresses, known or not: each
	// address stays within its free failures, the remote address does not.
	attacker := "[2001:db8:aaaa:1::1]:4000"
	for i := range testThrottle.AddrFree {
		_, err := e.svc.Login(ctx, customers.Login{Email: string(rune('a'+i)) + "@example.com", Password: "guess", RemoteAddr: attacker})
		wantErr(t, "guess", err, customers.ErrBadCredentials)
	}
	_, err := e.svc.Login(ctx, customers.Login{Email: "z@example.com", Password: "guess", RemoteAddr: attacker})
	wantErr(t, "guess past the address's free ones", err, customers.ErrBadCredentials)
	// The same /64 is the same attacker; the right password does not help.
	sameNet := "[2001:db8:aaaa:1:ffff::2]:1"
	_, err = e.svc.Login(ctx, customers.Login{Email: "alice@example.com", Password: password("alice"), RemoteAddr: sameNet})
	throttled(t, "same /64", err)
	if !strings.Contains(err.Error(), "remote address") {
		t.Errorf("throttle error %q does not say the remote address is locked", err)
	}
	// Alice from home is not affected.
	if _, err := e.svc.Login(ctx, customers.Login{Email: "alice@example.com", Password: password("alice"), RemoteAddr: home}); err != nil {
		t.Errorf("log-in from another address: %v", err)
	}
	// A success from the attacker's address does not reset its count.
	e.clock.Advance(testThrottle.Base)
	if _, err := e.svc.Login(ctx, customers.Login{Email: "alice@example.com", Password: password("alice"), RemoteAddr: sameNet}); err != nil {
		t.Fatalf("log-in once the lock ended: %v", err)
	}
	_, err = e.svc.Login(ctx, customers.Login{Email: "y@example.com", Password: "guess", RemoteAddr: attacker})
	wantErr(t, "guess after a success", err, customers.ErrBadCredentials)
	_, err = e.svc.Login(ctx, customers.Login{Email: "x@example.com", Password: "guess", RemoteAddr: attacker})
	if got := throttled(t, "address after a success elsewhere", err); got != 2*time.Second {
		t.Errorf("address locked for %v, want the next step, 2s", got)
	}
}

func TestThrottleUnknownEmail(t *testing.T) {
	e := newEnv(t, withThrottle)
	// An address without an account is throttled exactly like one with.
	l := customers.Login{Email: "ghost@example.com", Password: "guess", RemoteAddr: home}
	for range testThrottle.EmailFree + 1 {
		_, err := e.svc.Login(ctx, l)
		wantErr(t, "guess", err, customers.ErrBadCredentials)
	}
	_, err := e.svc.Login(ctx, l)
	throttled(t, "unknown e-mail address", err)
}

func TestRehashOnLogin(t *testing.T) {
	store := boltStore(t)
	old := newEnvOn(t, store)
	old.catalog()
	a, _ := old.signUp("alice", "DE")
	stronger := customers.PasswordParams{Memory: 128, Time: 2, Threads: 1}
	e := newEnvOn(t, store, func(c *customers.Config) { c.Password = stronger })
	e.login("alice", home)
	got, err := e.svc.Account(ctx, a.ID)
	must(t, err)
	if got.PasswordHash == a.PasswordHash || !strings.Contains(got.PasswordHash, "$m=128,t=2,p=1$") {
		t.Errorf("hash after log-in %q, want it redone with the new parameters", got.PasswordHash)
	}
	e.login("alice", home) // and it still verifies
}

func TestSweep(t *testing.T) {
	e := newEnv(t, withThrottle)
	e.catalog()
	e.signUp("alice", "DE")
	keep := e.login("alice", home)
	e.clock.Advance(customers.DefaultSessionTTL / 2)
	fresh := e.login("alice", home)
	e.clock.Advance(customers.DefaultSessionTTL/2 + time.Second)
	_, err := e.svc.Login(ctx, customers.Login{Email: "ghost@example.com", Password: "x", RemoteAddr: home})
	wantErr(t, "failure", err, customers.ErrBadCredentials)
	sessions, throttles, err := e.svc.Sweep(ctx)
	must(t, err)
	if sessions != 1 || throttles != 0 {
		t.Errorf("swept %d sessions and %d throttles, want 1 and 0", sessions, throttles)
	}
	_, _, err = e.svc.Authenticate(ctx, keep.ID)
	wantErr(t, "expired session", err, customers.ErrNoSession)
	if _, _, err := e.svc.Authenticate(ctx, fresh.ID); err != nil {
		t.Errorf("fresh session: %v", err)
	}
	e.clock.Advance(testThrottle.Forget + time.Second)
	_, throttles, err = e.svc.Sweep(ctx)
	if err != nil || throttles != 2 { // ghost's e-mail address and the remote address
		t.Errorf("swept %d throttles, %v; want 2", throttles, err)
	}
}

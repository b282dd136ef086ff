package customers

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// Login is a log-in attempt from a browser.
type Login struct {
	Email      string
	Password   string
	RemoteAddr string // the peer's address (http.Request.RemoteAddr): throttled per address
	// Previous is the session ID the browser presented, if any. It is
	// dropped whatever the outcome of a successful log-in: a session ID
	// planted before log-in never becomes a logged-in one.
	Previous string
}

// Issued is a new session, for the browser: ID goes into the cookie, CSRF
// into every form. ID is not kept anywhere and cannot be had again.
type Issued struct {
	ID      string
	CSRF    string
	Account AccountID
	Expires time.Time
}

// Login checks an e-mail address and password and issues a new session.
// Wrong addresses and wrong passwords both get ErrBadCredentials; a key
// locked out by earlier failures gets a *ThrottledError (ErrThrottled)
// without the password being checked.
func (s *Service) Login(ctx context.Context, req Login) (Issued, error) {
	email, err := NormalizeEmail(req.Email)
	if err != nil {
		// Not an address: no account can match, and nothing to count.
		return Issued{}, fmt.Errorf("customers: log-in: %w", ErrBadCredentials)
	}
	ak, err := addrKey(req.RemoteAddr)
	if err != nil {
		return Issued{}, fmt.Errorf("customers: log-in of %q: %w", email, err)
	}
	ek := emailKey(email)
	now := s.clock()
	var a Account
	found := false
	err = s.store.View(ctx, func(tx ReadTx) error {
		if err := lockedOut(tx, now, ek, ak); err != nil {
			return err
		}
		a, err = tx.AccountByEmail(email)
		switch {
		case err == nil:
			found = true
		case !errors.Is(err, ErrNotFound):
			return err
		}
		return nil
	})
	if err != nil {
		return Issued{}, fmt.Errorf("customers: log-in of %q: %w", email, err)
	}

	// An unknown address costs the same hashing as a known one. A
	// password too long to have been set is wrong without hashing it.
	stored := s.dummyHash
	if found {
		stored = a.PasswordHash
	}
	ok, stale := false, false
	if len(req.Password) <= MaxPassword {
		ok, stale, err = verifyPassword(req.Password, stored, s.pw)
		if err != nil {
			s.log.Error("password hash unreadable", "account", a.ID, "err", err)
			ok = false
		}
	}
	if !ok || !found {
		if err := s.recordFailure(ctx, ek, ak, now); err != nil {
			return Issued{}, fmt.Errorf("customers: log-in of %q: %w", email, err)
		}
		return Issued{}, fmt.Errorf("customers: log-in of %q: %w", email, ErrBadCredentials)
	}

	var rehash string
	if stale {
		if rehash, err = hashPassword(req.Password, s.pw); err != nil {
			return Issued{}, fmt.Errorf("customers: log-in of %q: %w", email, err)
		}
	}
	iss, sess := s.newSession(a.ID, req.RemoteAddr, now)
	err = s.store.Update(ctx, func(tx Tx) error {
		cur, err := tx.Account(a.ID)
		if err != nil {
			return err
		}
		// The password may have changed since it was checked.
		if cur.PasswordHash != a.PasswordHash {
			return ErrBadCredentials
		}
		if rehash != "" {
			cur.PasswordHash, cur.Updated = rehash, now
			if err := tx.PutAccount(cur); err != nil {
				return err
			}
		}
		if err := tx.DeleteThrottle(ek); err != nil {
			return err
		}
		if req.Previous != "" {
			if err := tx.DeleteSession(HashSessionID(req.Previous)); err != nil {
				return err
			}
		}
		return tx.PutSession(sess)
	})
	if err != nil {
		return Issued{}, fmt.Errorf("customers: log-in of %q: %w", email, err)
	}
	s.log.Info("logged in", "account", a.ID, "addr", req.RemoteAddr)
	return iss, nil
}

// recordFailure counts a failed log-in against both keys.
func (s *Service) recordFailure(ctx context.Context, ek, ak string, now time.Time) error {
	return s.store.Update(ctx, func(tx Tx) error {
		for _, k := range []struct {
			key  string
			free int
		}{{ek, s.throttle.EmailFree}, {ak, s.throttle.AddrFree}} {
			t, err := tx.Throttle(k.key)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			if err := tx.PutThrottle(s.throttle.fail(t, k.key, k.free, now)); err != nil {
				return err
			}
		}
		return nil
	})
}

// newSession makes a session and what the browser gets of it.
func (s *Service) newSession(account AccountID, addr string, now time.Time) (Issued, Session) {
	id, csrf := randomToken(), randomToken()
	exp := now.Add(s.ttl)
	if len(addr) > maxText {
		addr = addr[:maxText]
	}
	if ValidText(addr) != nil {
		addr = ""
	}
	return Issued{ID: id, CSRF: csrf, Account: account, Expires: exp},
		Session{Hash: HashSessionID(id), Account: account, CSRF: csrf, Addr: addr, Created: now, Expires: exp}
}

// randomToken returns 256 random bits, base64url without padding.
func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Authenticate returns the session with the ID a browser presented, and
// its account: ErrNoSession if there is none or it has expired. A
// suspended account's session is returned; the account's Status says so.
func (s *Service) Authenticate(ctx context.Context, id string) (Session, Account, error) {
	if id == "" || len(id) > 256 {
		return Session{}, Account{}, fmt.Errorf("customers: %w", ErrNoSession)
	}
	h := HashSessionID(id)
	now := s.clock()
	var sess Session
	var a Account
	expired := false
	err := s.store.View(ctx, func(tx ReadTx) error {
		var err error
		sess, err = tx.Session(h)
		if errors.Is(err, ErrNotFound) {
			return ErrNoSession
		}
		if err != nil {
			return err
		}
		if !now.Before(sess.Expires) {
			expired = true
			return ErrNoSession
		}
		a, err = tx.Account(sess.Account)
		if errors.Is(err, ErrNotFound) {
			return ErrNoSession
		}
		return err
	})
	if expired {
		// Gone for good; Sweep would remove it too.
		_ = s.store.Update(ctx, func(tx Tx) error { return tx.DeleteSession(h) })
	}
	if err != nil {
		return Session{}, Account{}, fmt.Errorf("customers: authenticate: %w", err)
	}
	return sess, a, nil
}

// CheckCSRF checks the token a form carried against its session's, in
// constant time.
func CheckCSRF(sess Session, token string) error {
	if sess.CSRF == "" || subtle.ConstantTimeCompare([]byte(sess.CSRF), []byte(token)) != 1 {
		return fmt.Errorf("customers: %w", ErrCSRF)
	}
	return nil
}

// Logout ends a session. Ending one that does not exist is not an error.
func (s *Service) Logout(ctx context.Context, id string) error {
	if err := s.store.Update(ctx, func(tx Tx) error { return tx.DeleteSession(HashSessionID(id)) }); err != nil {
		return fmt.Errorf("customers: log-out: %w", err)
	}
	return nil
}

// LogoutEverywhere ends every session of an account.
func (s *Service) LogoutEverywhere(ctx context.Context, account AccountID) error {
	if err := s.store.Update(ctx, func(tx Tx) error { return tx.DeleteSessionsOf(account) }); err != nil {
		return fmt.Errorf("customers: log-out of %s: %w", account, err)
	}
	return nil
}

// ChangePassword changes the password of the session's account, ends all
// its sessions and issues a new one. A wrong old password counts as a
// failed log-in.
func (s *Service) ChangePassword(ctx context.Context, sessionID, remoteAddr, oldPW, newPW string) (Issued, error) {
	_, a, err := s.Authenticate(ctx, sessionID)
	if err != nil {
		return Issued{}, err
	}
	ak, err := addrKey(remoteAddr)
	if err != nil {
		return Issued{}, fmt.Errorf("customers: password of %s: %w", a.ID, err)
	}
	ek, now := emailKey(a.Email), s.clock()
	if err := s.store.View(ctx, func(tx ReadTx) error { return lockedOut(tx, now, ek, ak) }); err != nil {
		return Issued{}, fmt.Errorf("customers: password of %s: %w", a.ID, err)
	}
	if err := checkPassword(newPW, a.Email); err != nil {
		return Issued{}, fmt.Errorf("customers: password of %s: %w", a.ID, err)
	}
	ok, _, err := verifyPassword(oldPW, a.PasswordHash, s.pw)
	if err != nil || !ok {
		if err := s.recordFailure(ctx, ek, ak, now); err != nil {
			return Issued{}, fmt.Errorf("customers: password of %s: %w", a.ID, err)
		}
		return Issued{}, fmt.Errorf("customers: password of %s: %w", a.ID, ErrBadCredentials)
	}
	hash, err := hashPassword(newPW, s.pw)
	if err != nil {
		return Issued{}, fmt.Errorf("customers: password of %s: %w", a.ID, err)
	}
	iss, next := s.newSession(a.ID, remoteAddr, now)
	err = s.store.Update(ctx, func(tx Tx) error {
		cur, err := tx.Account(a.ID)
		if err != nil {
			return err
		}
		if cur.PasswordHash != a.PasswordHash {
			return ErrBadCredentials // changed meanwhile
		}
		cur.PasswordHash, cur.Updated = hash, now
		if err := tx.PutAccount(cur); err != nil {
			return err
		}
		if err := tx.DeleteSessionsOf(a.ID); err != nil {
			return err
		}
		return tx.PutSession(next)
	})
	if err != nil {
		return Issued{}, fmt.Errorf("customers: password of %s: %w", a.ID, err)
	}
	s.log.Info("password changed", "account", a.ID)
	return iss, nil
}

package turnserver

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // HMAC-SHA1 is what the TURN REST API convention specifies.
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/boxswarm/boxswarm/api"
)

// Mint returns short-lived credentials for a box, following the TURN REST
// API convention that the server checks: the username is
// "<expiry-unix>:<user>" and the password is
// base64(HMAC-SHA1(secret, username)). The URLs are the ones boxes should
// use, "stun:<addr>" and "turn:<addr>?transport=udp", where addr is the
// server's public host:port.
//
// Expires is the expiry in the username (now+ttl, rounded down to the
// second); the server refuses the credentials from then on, including for
// refreshing an allocation made earlier, so the TTL must outlast the
// longest transfer a box may relay. The server refuses an empty user.
func Mint(secret []byte, user string, ttl time.Duration, now time.Time, addr string) api.ICECredentials {
	expiry := now.Add(ttl).Unix()
	username := strconv.FormatInt(expiry, 10) + ":" + user
	return api.ICECredentials{
		URLs:     []string{"stun:" + addr, "turn:" + addr + "?transport=udp"},
		Username: username,
		Password: password(secret, username),
		Expires:  time.Unix(expiry, 0).UTC(),
	}
}

// password is the TURN REST API password for username.
func password(secret []byte, username string) string {
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

var errUsername = errors.New(`username is not "<expiry-unix>:<user>"`)

// parseUsername splits a minted username into its user and expiry.
func parseUsername(username string) (user string, expires time.Time, err error) {
	exp, user, ok := strings.Cut(username, ":")
	if !ok || user == "" {
		return "", time.Time{}, errUsername
	}
	secs, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %w", errUsername, err)
	}
	return user, time.Unix(secs, 0), nil
}

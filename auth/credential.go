package auth

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// CredentialStore looks up the HA1 hashes of users.
type CredentialStore interface {
	// Lookup returns the HA1 hashes of user@realm, or ErrUnknownUser.
	// Errors reaching the store wrap ErrUnavailable.
	Lookup(ctx context.Context, user, realm string) (Credential, error)
}

// Credential holds the HA1 hashes of one user, never the password:
// HA1 = H(username ":" realm ":" password) in lower-case hex, where username
// is the user part of the AOR and realm its domain.
type Credential struct {
	User, Realm, HA1MD5, HA1SHA256 string
}

// NewCredential computes the Credential of user@realm for password.
func NewCredential(user, realm, password string) Credential {
	a1 := user + ":" + realm + ":" + password
	m := md5.Sum([]byte(a1))
	s := sha256.Sum256([]byte(a1))
	return Credential{User: user, Realm: realm, HA1MD5: hex.EncodeToString(m[:]), HA1SHA256: hex.EncodeToString(s[:])}
}

// ParseAOR splits an address of record "user@domain" (an optional "sip:"
// is dropped) and returns its user part and its domain in lower case. The
// user part may not hold spaces, control characters or any of `@:"\<>`;
// the domain must be a host name or an IP address.
func ParseAOR(aor string) (user, domain string, err error) {
	s := strings.TrimPrefix(aor, "sip:")
	if len(s) > 255 {
		return "", "", fmt.Errorf("%w: longer than 255 bytes", ErrInvalidAOR)
	}
	at := strings.IndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return "", "", fmt.Errorf("%w: %q is not user@domain", ErrInvalidAOR, aor)
	}
	user, domain = s[:at], strings.ToLower(s[at+1:])
	for i := 0; i < len(user); i++ {
		if c := user[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`@:"\<>`, c) >= 0 {
			return "", "", fmt.Errorf("%w: user part %q has %q", ErrInvalidAOR, user, c)
		}
	}
	if !validHost(domain) {
		return "", "", fmt.Errorf("%w: bad domain %q", ErrInvalidAOR, domain)
	}
	return user, domain, nil
}

// validHost reports whether h (lower case) is a host name, an IPv4
// address or a bracketed IPv6 address.
func validHost(h string) bool {
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") && len(h) > 2 {
		for _, c := range h[1 : len(h)-1] {
			if !(c == ':' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
		return true
	}
	if h == "" || h[0] == '.' || h[0] == '-' || h[len(h)-1] == '-' || strings.Contains(h, "..") {
		return false
	}
	for _, c := range h {
		if !(c == '.' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// checkPassword rejects passwords that are empty or hold control
// characters (a stray CR from a Windows file, say).
func checkPassword(password string) error {
	if password == "" {
		return fmt.Errorf("%w: empty", ErrInvalidPassword)
	}
	for i := 0; i < len(password); i++ {
		if c := password[i]; c < ' ' || c == 0x7f {
			return fmt.Errorf("%w: control character %q", ErrInvalidPassword, c)
		}
	}
	return nil
}

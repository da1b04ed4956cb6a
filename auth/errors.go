package auth

import "errors"

var (
	// ErrUnknownUser is returned by a CredentialStore that has no such user.
	ErrUnknownUser = errors.New("auth: unknown user")
	// ErrUnavailable wraps errors of a credential store that cannot be
	// reached; the server answers 503 with Retry-After.
	ErrUnavailable = errors.New("auth: credential store unavailable")
	// ErrAliasConflict is returned for an alias that would make a name
	// both a user and an alias, that is in another domain than its user,
	// or whose user does not exist.
	ErrAliasConflict = errors.New("auth: alias conflict")
	// ErrInvalidAOR is returned for an address of record that is not
	// user@domain.
	ErrInvalidAOR = errors.New("auth: invalid address of record")
	// ErrInvalidPassword is returned for an empty password or one with
	// control characters.
	ErrInvalidPassword = errors.New("auth: invalid password")
	// ErrMalformed is returned for an Authorization header that does not
	// parse as Digest credentials.
	ErrMalformed = errors.New("auth: malformed digest credentials")
	// ErrNoCredentials means the request has no credentials for the realm.
	ErrNoCredentials = errors.New("auth: no credentials for realm")
	// ErrUnsupported means the credentials use an algorithm or qop the
	// server does not offer (only MD5 and SHA-256 with qop=auth are).
	ErrUnsupported = errors.New("auth: unsupported algorithm or qop")
	// ErrBadNonce means the nonce was not issued by a node sharing the
	// secret, or is from the future.
	ErrBadNonce = errors.New("auth: nonce not issued by us")
	// ErrStaleNonce means the nonce was ours but has expired.
	ErrStaleNonce = errors.New("auth: stale nonce")
	// ErrReplay means the nonce count was not above the highest seen for
	// the nonce.
	ErrReplay = errors.New("auth: nonce count replayed")
	// ErrWrongPassword means the digest response does not match.
	ErrWrongPassword = errors.New("auth: wrong password")
	// ErrBanned means the request's source is banned by the Guard for
	// failing to authenticate too often; the server answers 403.
	ErrBanned = errors.New("auth: source banned after failed authentications")
)

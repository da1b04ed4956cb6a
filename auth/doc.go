// Package auth authenticates SIP requests with HTTP Digest (RFC 3261 §22,
// https://www.rfc-editor.org/rfc/rfc3261#section-22; RFC 7616 and RFC 8760
// for SHA-256) using stateless HMAC nonces, and stores users' HA1 hashes,
// and their aliases, in a file or in Redis.
//
// The users file holds one user per line, "AOR md5=HEX sha-256=HEX", where
// HEX is HA1 = H(user ":" domain ":" password) in lower-case hex; lines
// starting with '#' and blank lines are ignored. An alias line,
// "1001@a.example alias=alice@a.example", makes 1001 another name of alice
// within her domain (AliasResolver). See FileStore.
package auth

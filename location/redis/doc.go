// Package redis is the location.Store shared by sipfed nodes: one Redis hash
// per AOR, updated atomically by a Lua script (RFC 3261 §10.3,
// https://www.rfc-editor.org/rfc/rfc3261#section-10.3; Path RFC 3327; instances RFC 5626).
package redis

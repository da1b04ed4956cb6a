// Package redis is the location.Store that sipfed nodes share: the bindings of RFC 3261 §10
// (https://www.rfc-editor.org/rfc/rfc3261#section-10), with Path (https://www.rfc-editor.org/rfc/rfc3327)
// and instances (https://www.rfc-editor.org/rfc/rfc5626), one Redis hash per AOR, changed by one Lua script.
package redis

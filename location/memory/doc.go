// Package memory is the location.Store of a single sipfed node: the bindings of RFC 3261 §10
// (https://www.rfc-editor.org/rfc/rfc3261#section-10), with Path (https://www.rfc-editor.org/rfc/rfc3327)
// and instances (https://www.rfc-editor.org/rfc/rfc5626), in a sharded map in memory.
package memory

// Package memory is the in-process location.Store: bindings of one node, kept
// in a sharded map, for a single sipfed without Redis (RFC 3261 §10,
// https://www.rfc-editor.org/rfc/rfc3261#section-10; Path RFC 3327; instances RFC 5626).
package memory

// Package storetest is the conformance suite every location.Store must pass:
// the REGISTER rules of RFC 3261 §10.3 (https://www.rfc-editor.org/rfc/rfc3261#section-10.3),
// Path (RFC 3327) and instance-keyed devices (RFC 5626 §6), checked one subtest per rule.
package storetest

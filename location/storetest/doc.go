// Package storetest is the conformance suite every location.Store passes, one subtest per rule of
// RFC 3261 §10.3 (https://www.rfc-editor.org/rfc/rfc3261#section-10.3), Path (https://www.rfc-editor.org/rfc/rfc3327)
// and instance keys (https://www.rfc-editor.org/rfc/rfc5626#section-6), plus the benchmarks both stores run.
package storetest

package sipcore

import "github.com/google/uuid"

// sipgo tags each response that lacks a To tag (every 401 and 200 to a
// REGISTER, every 407) with uuid.NewString, which by default reads the
// system's random source once per call: a getrandom system call per
// response. The pool reads 4 kB at a time. Tags need to be unique, not
// secret (RFC 3261 §19.3), and the pool's bytes come from the same
// cryptographic source.
func init() { uuid.EnableRandPool() }

package resolver

import "errors"

// Errors a look-up wraps; test them with errors.Is.
var (
	// ErrNXDomain is a name that does not exist (RCODE 3).
	ErrNXDomain = errors.New("NXDOMAIN")
	// ErrNoRecords is a name that exists without records of the type asked for.
	ErrNoRecords = errors.New("no records of this type")
	// ErrServFail is an upstream server that could not answer (RCODE 2).
	ErrServFail = errors.New("SERVFAIL")
	// ErrRefused is an upstream server that refused the query (RCODE 5).
	ErrRefused = errors.New("REFUSED")
	// ErrTimeout is an upstream server that did not answer in time.
	ErrTimeout = errors.New("timeout")
	// ErrUnreachable is an upstream server that could not be reached.
	ErrUnreachable = errors.New("upstream unreachable")
	// ErrNoService is an SRV target of "." (RFC 2782): the domain says the
	// service is decidedly not available.
	ErrNoService = errors.New(`SRV target "." says the service is not available here`)
	// ErrNoTargets is a resolution that produced no address to try.
	ErrNoTargets = errors.New("no targets")
	// ErrUnsupported is a URI we cannot resolve: another scheme, or a
	// transport we do not speak.
	ErrUnsupported = errors.New("not supported")
)

// LookupError is a failed DNS look-up: the name and type asked for, and why.
type LookupError struct {
	Name string // the name queried, e.g. _sip._udp.b.test.
	Type string // the record type, e.g. SRV
	Err  error  // why; wraps one of the Err* values
}

// Error returns e.g. "resolver: _sip._udp.b.test SRV: NXDOMAIN".
func (e *LookupError) Error() string {
	name := e.Name
	if len(name) > 1 && name[len(name)-1] == '.' {
		name = name[:len(name)-1]
	}
	return "resolver: " + name + " " + e.Type + ": " + e.Err.Error()
}

// Unwrap returns the reason.
func (e *LookupError) Unwrap() error { return e.Err }

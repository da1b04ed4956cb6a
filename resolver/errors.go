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

	// ErrENUMNoRecord is a number with no ENUM record for SIP under any
	// suffix: no NAPTR at all, or none with the E2U+sip service (RFC 6116,
	// RFC 3764). A proxy answers 404, or hands the number to a gateway.
	ErrENUMNoRecord = errors.New("no E2U+sip record")
	// ErrENUMBadRecord is a number whose ENUM records for SIP are all
	// unusable: a regexp that is malformed or does not match, a result
	// that is not a sip: or sips: URI, unknown flags. A proxy answers 502:
	// the fault is in someone else's DNS.
	ErrENUMBadRecord = errors.New("no usable E2U+sip record")
	// ErrENUMLoop is a chain of non-terminal ENUM records that comes back
	// to a name already visited, or goes on too long. A proxy answers 482.
	ErrENUMLoop = errors.New("ENUM loop")
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

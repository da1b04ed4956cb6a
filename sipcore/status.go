// Package sipcore holds the SIP plumbing shared by sipfed's registrar,
// proxy and endpoints on top of sipgo: the StatusError that carries a SIP
// status to send, response helpers and header sanitising.
package sipcore

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// StatusError is an error that carries the SIP response to send for it.
// Packages return it; one place (Respond) turns it into a response.
type StatusError struct {
	Code    int
	Reason  string
	Headers []sip.Header // extra headers for the response (WWW-Authenticate, Min-Expires, Retry-After…)
	Err     error        // the cause, for logs; never sent
}

// Errorf returns a StatusError with code and a reason phrase built from
// format; the phrase is sanitised for use on a status line.
func Errorf(code int, format string, args ...any) *StatusError {
	return &StatusError{Code: code, Reason: Sanitize(fmt.Sprintf(format, args...))}
}

func (e *StatusError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %v", e.Code, e.Reason, e.Err)
	}
	return fmt.Sprintf("%d %s", e.Code, e.Reason)
}

func (e *StatusError) Unwrap() error { return e.Err }

// With returns e with extra response headers added.
func (e *StatusError) With(h ...sip.Header) *StatusError {
	e.Headers = append(e.Headers, h...)
	return e
}

// AsStatus returns the StatusError inside err, or a 500 that wraps err.
func AsStatus(err error) *StatusError {
	var se *StatusError
	if errors.As(err, &se) {
		return se
	}
	return &StatusError{Code: 500, Reason: "Server Internal Error", Err: err}
}

// RetryAfter is the Retry-After, in seconds, of a 503 that does not say
// (RFC 3261 §21.5.4): a client that gets 503 without it may fail over
// at once or give up, and one that retries at once adds to an overload.
const RetryAfter = 5

// Response builds the response to req that err calls for. A 503 always
// carries Retry-After. The answer to a malformed request (400, 505) has
// the headers it copies from the request cleaned of control characters
// and says SIP/2.0.
func Response(req *sip.Request, err error) *sip.Response {
	se := AsStatus(err)
	res := NewResponse(req, se.Code, se.Reason)
	res.SipVersion = "SIP/2.0" // sipgo copies the request's, whatever it is
	if se.Code == 400 || se.Code == 505 {
		res = cleanCopy(res)
	}
	retry := false
	for _, h := range se.Headers {
		res.AppendHeader(h)
		retry = retry || h.Name() == "Retry-After"
	}
	if se.Code == 503 && !retry {
		res.AppendHeader(sip.NewHeader("Retry-After", strconv.Itoa(RetryAfter)))
	}
	return res
}

// Sanitize makes s safe to copy into a header value or a reason phrase:
// CR, LF and other control characters become spaces, and the result is
// cut to 256 bytes.
func Sanitize(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			clean = false
			break
		}
	}
	if clean && len(s) <= 256 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 256; i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			c = ' '
		}
		b.WriteByte(c)
	}
	return b.String()
}

// cleanCopy returns res as SIP/2.0 with every header value that holds a
// control character (copied from a malformed request) sanitised.
func cleanCopy(res *sip.Response) *sip.Response {
	out := sip.NewResponse(res.StatusCode, res.Reason)
	for _, h := range res.Headers() {
		if v := h.Value(); hasControl(v) {
			h = sip.NewHeader(h.Name(), Sanitize(v))
		}
		out.AppendHeader(h)
	}
	out.SetTransport(res.Transport())
	out.SetSource(res.Source())
	out.SetDestination(res.Destination())
	return out
}

// MaxUDPMessage is the largest message sent over UDP (the largest UDP
// payload over IPv4).
const MaxUDPMessage = 65507

var largeUDP sync.Once

// AllowLargeUDP lifts sipgo's limit on UDP messages: it refuses anything
// over 1300 bytes and the message is lost silently, so a REGISTER with
// five or more devices never got its 200. RFC 3261 §18.2.2 sends a
// response over UDP whatever its size (IP fragments it); requests are
// kept small by the proxy, which moves large ones to TCP where that can
// work (§18.1.1). sipgo has one limit per process; this sets it once.
func AllowLargeUDP() {
	largeUDP.Do(func() { sip.UDPMTUSize = MaxUDPMessage + 200 })
}

package sipcore

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/emiago/sipgo/sip"
)

// lenientHeaders are the headers whose parse errors are kept as BadHeader.
// Via and CSeq are left strict: without them sipgo cannot build a
// transaction and answers 400 by itself.
var lenientHeaders = []string{"from", "f", "to", "t", "contact", "m", "call-id", "i", "max-forwards", "route", "record-route"}

// NewParser returns a sipgo parser that keeps messages with a garbled
// From, To, Contact, Call-ID, Max-Forwards, Route or Record-Route header.
// sipgo's own parser drops such a message, so nobody gets an answer; here
// the header is kept as an untyped generic header and CheckRequest answers
// 400 saying which header is wrong.
//
// A control character (a bare CR or LF, NUL; RFC 3261 §25.1 allows none
// inside a header value) makes any header it types malformed: sipgo
// splits header lines only on CRLF, so a bare LF inside a tag, a display
// name or a branch would otherwise be copied into responses and
// forwarded requests as a header of its own. A lenient header is kept
// for a 400; a Via, CSeq or other strict header makes the message
// unparsable, and it is dropped.
func NewParser() *sip.Parser {
	base := sip.DefaultHeadersParser()
	parsers := make(map[string]sip.HeaderParser, len(base))
	for k, v := range base {
		parsers[k] = func(headerName []byte, text string) (sip.Header, error) {
			if hasControl(text) {
				return nil, errControl
			}
			return v(headerName, text)
		}
	}
	for _, name := range lenientHeaders {
		strict := base[name]
		parsers[name] = func(headerName []byte, text string) (sip.Header, error) {
			if !hasControl(text) {
				h, err := strict(headerName, text)
				if err == nil || err.Error() == "comma detected" {
					return h, err
				}
			}
			// Kept as a generic header: CheckRequest finds it untyped.
			return sip.NewHeader(canonicalName(string(headerName)), text), nil
		}
	}
	return sip.NewParser(sip.WithHeadersParsers(parsers))
}

var errControl = errors.New("sipcore: control character in a header value")

func canonicalName(lower string) string {
	switch lower {
	case "f", "from":
		return "From"
	case "t", "to":
		return "To"
	case "m", "contact":
		return "Contact"
	case "i", "call-id":
		return "Call-ID"
	case "max-forwards":
		return "Max-Forwards"
	case "route":
		return "Route"
	case "record-route":
		return "Record-Route"
	}
	return lower
}

// CheckRequest checks what every request must carry (RFC 3261 §8.2, §16.3):
// well-formed From, To, Call-ID, CSeq and Via, a CSeq method equal to the
// request method, and no control characters in any header value. It
// returns a 400 StatusError whose reason says what is wrong.
func CheckRequest(req *sip.Request) error {
	// RFC 3261 §7.1: the version is case-insensitive.
	if !strings.EqualFold(req.SipVersion, "SIP/2.0") {
		return Errorf(505, "Version Not Supported")
	}
	if uriHasControl(&req.Recipient) {
		return Errorf(400, "Control character in the Request-URI")
	}
	// RFC 3261 §7.3: these may appear once.
	var from, to, cseq, callID, maxFwd, clen, ctype int
	for _, h := range req.Headers() {
		switch h.(type) {
		case *sip.FromHeader:
			from++
			continue
		case *sip.ToHeader:
			to++
			continue
		case *sip.CSeqHeader:
			cseq++
			continue
		case *sip.CallIDHeader:
			callID++
			continue
		case *sip.MaxForwardsHeader:
			maxFwd++
			continue
		case *sip.ContentLengthHeader:
			clen++
			continue
		case *sip.ContentTypeHeader:
			ctype++
			continue
		case *sip.ViaHeader, *sip.ContactHeader, *sip.RouteHeader, *sip.RecordRouteHeader:
			// Parsed by sipgo into fields, and NewParser refused
			// control characters in them.
			continue
		}
		if h.Name() == "" {
			return Errorf(400, "Empty header name")
		}
		if hasControl(h.Value()) {
			return Errorf(400, "Control character in %s header", Sanitize(h.Name()))
		}
		if Malformed(h) {
			return Errorf(400, "Malformed %s header", h.Name())
		}
	}
	switch {
	case from > 1, to > 1, cseq > 1, callID > 1, maxFwd > 1, clen > 1, ctype > 1:
		return Errorf(400, "Duplicate single-value header (From, To, Call-ID, CSeq, Max-Forwards, Content-Length or Content-Type)")
	case req.From() == nil:
		return Errorf(400, "Missing From header")
	case req.To() == nil:
		return Errorf(400, "Missing To header")
	case req.CallID() == nil || strings.TrimSpace(req.CallID().Value()) == "":
		return Errorf(400, "Missing Call-ID header")
	case !utf8.ValidString(req.CallID().Value()):
		return Errorf(400, "Call-ID is not UTF-8")
	case req.CSeq() == nil:
		return Errorf(400, "Missing CSeq header")
	case req.Via() == nil:
		return Errorf(400, "Missing Via header")
	}
	if req.CSeq().MethodName != req.Method {
		return Errorf(400, "CSeq method %s does not match request method", req.CSeq().MethodName)
	}
	// To may be a telephone number as dialled (RFC 3966 tel:, RFC 3261
	// §8.1.1.2); From is who the request is from, a SIP address.
	if to := &req.To().Address; req.From().Address.Host == "" || to.Host == "" && !(strings.EqualFold(to.Scheme, "tel") && to.Raw() != "") {
		return Errorf(400, "From and To must be SIP URIs with a host")
	}
	return nil
}

// Malformed reports whether h is a header sipgo types (From, To, Contact,
// Call-ID, Max-Forwards, Route, Record-Route) that NewParser kept untyped
// because it did not parse.
func Malformed(h sip.Header) bool {
	switch h.(type) {
	case *sip.FromHeader, *sip.ToHeader, *sip.ContactHeader, *sip.CallIDHeader,
		*sip.MaxForwardsHeader, *sip.RouteHeader, *sip.RecordRouteHeader:
		return false
	}
	switch strings.ToLower(h.Name()) {
	case "from", "to", "contact", "call-id", "max-forwards", "route", "record-route":
		return true
	}
	return false
}

// uriHasControl reports a control character in any part of u, without
// rendering it.
func uriHasControl(u *sip.Uri) bool {
	if hasControl(u.User) || hasControl(u.Password) || hasControl(u.Host) || hasControl(u.Raw()) {
		return true
	}
	for _, ps := range []sip.HeaderParams{u.UriParams, u.Headers} {
		for _, kv := range ps {
			if hasControl(kv.K) || hasControl(kv.V) {
				return true
			}
		}
	}
	return false
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return true
		}
	}
	return false
}

// AOR returns the canonical address-of-record of u: "user@host" with the
// host lower-cased (RFC 3261 §10.3 step 5; the user part is case-sensitive).
func AOR(u sip.Uri) string {
	return u.User + "@" + strings.ToLower(u.Host)
}

// Describe is a short printable summary of a request for logs.
func Describe(req *sip.Request) string {
	return Sanitize(fmt.Sprintf("%s %s", req.Method, req.Recipient.String()))
}

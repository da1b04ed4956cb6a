package sipcore

import (
	"strings"

	"github.com/emiago/sipgo/sip"
)

// CallID returns req's Call-ID, sanitised for logs, or "".
func CallID(req *sip.Request) string {
	if c := req.CallID(); c != nil {
		return Sanitize(c.Value())
	}
	return ""
}

// SameUser reports whether authUser, the name a client authenticated
// with, is user of domain: either the bare user part or user@domain
// (as the credential stores accept both).
func SameUser(authUser, user, domain string) bool {
	return authUser == user || len(authUser) == len(user)+1+len(domain) &&
		strings.HasPrefix(authUser, user) && authUser[len(user)] == '@' && strings.EqualFold(authUser[len(user)+1:], domain)
}

// OptionTags returns the option tags listed in every header called name
// (Require, Proxy-Require, Supported; RFC 3261 §20), lower-cased and
// sanitised.
//
// It walks the headers itself: sipgo's GetHeaders lower-cases a name such
// as "Require" or "Proxy-Require" into a new string and returns a new
// slice on every call, for every request.
func OptionTags(req *sip.Request, name string) []string {
	var out []string
	for _, h := range req.Headers() {
		if !strings.EqualFold(h.Name(), name) {
			continue
		}
		rest := h.Value()
		for rest != "" {
			var tag string
			tag, rest, _ = strings.Cut(rest, ",")
			if tag = strings.TrimSpace(tag); tag != "" {
				out = append(out, Sanitize(strings.ToLower(tag)))
			}
		}
	}
	return out
}

// Unsupported returns the tags of req's header name (Require or
// Proxy-Require) that are not in supported: what a 420 lists in
// Unsupported (RFC 3261 §8.2.2.3).
func Unsupported(req *sip.Request, name string, supported ...string) []string {
	var out []string
	for _, tag := range OptionTags(req, name) {
		known := false
		for _, s := range supported {
			known = known || tag == s
		}
		if !known {
			out = append(out, tag)
		}
	}
	return out
}

// Supports reports whether req lists tag in Supported.
func Supports(req *sip.Request, tag string) bool {
	for _, t := range OptionTags(req, "Supported") {
		if t == tag {
			return true
		}
	}
	return false
}

// DefaultPort is the port of a SIP URI or Via that gives none: 5061 for
// TLS (and sips:), 5060 for the rest (RFC 3261 §19.1.2, §18.2.2).
func DefaultPort(transport string) int {
	switch strings.ToLower(transport) {
	case "tls", "sips":
		return 5061
	}
	return 5060
}

// PortOr returns port, or the default port for transport when it is 0.
func PortOr(port int, transport string) int {
	if port != 0 {
		return port
	}
	return DefaultPort(transport)
}

// CancelFor returns the CANCEL of the INVITE inv (RFC 3261 §9.1): its
// Request-URI, top Via, Route, From, To, Call-ID and CSeq number, with
// Max-Forwards 70 and no body. Transport and destination are the
// caller's to set.
func CancelFor(inv *sip.Request) *sip.Request {
	c := sip.NewRequest(sip.CANCEL, inv.Recipient)
	if v := inv.Via(); v != nil {
		c.AppendHeader(sip.HeaderClone(v))
	}
	for _, h := range inv.GetHeaders("Route") {
		c.AppendHeader(sip.HeaderClone(h))
	}
	mf := sip.MaxForwardsHeader(70)
	c.AppendHeader(&mf)
	for _, h := range []sip.Header{inv.From(), inv.To(), inv.CallID()} {
		if h != nil {
			c.AppendHeader(sip.HeaderClone(h))
		}
	}
	if cs := inv.CSeq(); cs != nil {
		c.AppendHeader(&sip.CSeqHeader{SeqNo: cs.SeqNo, MethodName: sip.CANCEL})
	}
	c.SetBody(nil)
	return c
}

package proxy

import (
	"encoding/base64"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/sipfed/sipfed/resolver"
	"github.com/sipfed/sipfed/sipcore"
)

// A phone behind NAT puts its private address in Contact, and in-dialog
// requests sent there never arrive. The proxy therefore remembers, in
// its own Record-Route, where the phone really is: fl=FLOW, the
// transport and address its packets came from (for the caller, in the
// route set the callee gets; for a callee reached over its registered
// flow, in the one the caller gets). An in-dialog request whose Route of
// ours carries a flow goes to that address over that transport, over
// the phone's own connection for TCP and TLS, whatever its Request-URI
// says. This is RFC 5626 §5.3's flow token in a Record-Route, as
// Kamailio does with set_contact_alias/handle_ruri_alias. The flow is
// signed with the dialog (see signer), so a forged one is refused.

// encodeFlow is the fl= value for transport (a SIP transport name) and
// address ap: a letter for the transport (u, t, s for TLS, w for WS, x
// for WSS) and the
// address in base64url.
func encodeFlow(transport string, ap netip.AddrPort) string {
	b, _ := ap.MarshalBinary()
	code := "u"
	switch strings.ToLower(transport) {
	case resolver.TCP:
		code = "t"
	case resolver.TLS:
		code = "s"
	case "ws":
		code = "w"
	case "wss":
		code = "x"
	}
	return code + base64.RawURLEncoding.EncodeToString(b)
}

// decodeFlow reverses encodeFlow.
func decodeFlow(s string) (resolver.Target, bool) {
	if len(s) < 2 {
		return resolver.Target{}, false
	}
	var t string
	switch s[0] {
	case 'u':
		t = resolver.UDP
	case 't':
		t = resolver.TCP
	case 's':
		t = resolver.TLS
	case 'w':
		t = "ws"
	case 'x':
		t = "wss"
	default:
		return resolver.Target{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(s[1:])
	if err != nil {
		return resolver.Target{}, false
	}
	var ap netip.AddrPort
	if err := ap.UnmarshalBinary(b); err != nil || !ap.IsValid() {
		return resolver.Target{}, false
	}
	return resolver.Target{Transport: t, IP: ap.Addr(), Port: ap.Port()}, true
}

// callerFlow is the flow of the phone that sent req straight to us (one
// Via) from an address other than its Contact's: behind NAT, or on a
// connection. "" when req came through another proxy or from its
// Contact address.
func callerFlow(req *sip.Request) string {
	if len(req.GetHeaders("Via")) != 1 {
		return ""
	}
	c := req.Contact()
	if c == nil {
		return ""
	}
	src, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return ""
	}
	return flowFrom(req.Transport(), src, c.Address)
}

// flowFrom is the flow for a phone at src over transport whose Contact
// is contact, or "" when contact is where it is.
func flowFrom(transport string, src netip.AddrPort, contact sip.Uri) string {
	port := sipcore.PortOr(contact.Port, contact.Scheme)
	if ip, err := netip.ParseAddr(strings.Trim(contact.Host, "[]")); err == nil && ip.Unmap() == src.Addr().Unmap() && int(src.Port()) == port {
		return ""
	}
	return encodeFlow(transport, netip.AddrPortFrom(src.Addr().Unmap(), src.Port()))
}

// calleeFlow is the flow for the callee of branch b that answered res:
// the registered flow the branch went over (behind NAT, RFC 5626), or,
// for a device of ours reached at its Contact (it answers us itself),
// where its response came from when that is not its Contact. "" for
// other domains, devices behind an edge proxy (Path) and devices at
// their Contact.
func calleeFlow(b *branch, res *sip.Response) string {
	if b == nil || b.target.binary || len(b.target.route) > 0 {
		return ""
	}
	c := res.Contact()
	if c == nil {
		return ""
	}
	if b.target.flow {
		return flowFrom(b.target.hop.Transport, b.target.hop.AddrPort(), c.Address)
	}
	src, err := netip.ParseAddrPort(res.Source())
	if err != nil {
		return ""
	}
	return flowFrom(res.Transport(), src, c.Address)
}

package sipcore

import (
	"sync/atomic"

	"github.com/emiago/sipgo/sip"
)

// serverHeader is the value of the Server header on the responses this
// process makes (RFC 3261 §20.35), "" for none.
var serverHeader atomic.Pointer[string]

// SetServerHeader sets the Server header of every response made with
// NewResponse: the software and its version ("sipfed/1.4.0"), or "" to
// send none (operators who do not tell attackers what they run, like
// Kamailio's server_signature=no). Relayed responses keep the callee's.
func SetServerHeader(v string) {
	v = Sanitize(v)
	serverHeader.Store(&v)
}

// NewResponse is sip.NewResponseFromRequest with our Server header.
func NewResponse(req *sip.Request, code int, reason string) *sip.Response {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if v := serverHeader.Load(); v != nil && *v != "" {
		res.AppendHeader(sip.NewHeader("Server", *v))
	}
	return res
}

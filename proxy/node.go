package proxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipfed/sipfed/resolver"
)

// Several nodes of one domain share the location store, and any of them
// may take a call for a device that registered through another. A device
// on a connection (TCP, TLS, WebSocket) or behind NAT can only be reached
// over the flow it registered from, which one node holds. That node acts
// as the device's edge proxy (RFC 5626 §5): it stores itself as the
// binding's Path, a URI of its own whose nf= parameter names the flow
// (flow.go) with a MAC, and the other nodes route the call through it as
// through any Path (RFC 3327). The node that holds the flow sees a Route
// of its own with a flow it signed and sends the request over that flow;
// when it finds its own Path on a binding it goes to the flow directly.
//
// The node that forwards through another has already applied the policy
// (authenticated the caller, refused relaying); it says so in a
// Sipfed-Node header: a time and an HMAC, with the domain's secret, over
// the Call-ID, the From URI and tag, and that time. The receiving node
// trusts a request that carries both a valid flow and a fresh valid
// assertion, and removes the header before forwarding anything. A
// request that carries a flow token without the assertion (a device that
// learned its own Path) is treated as any request: a user of ours is
// challenged, and nobody else may use it (403).

// nodeFlowParam is the Path URI parameter holding a signed flow.
const nodeFlowParam = "nf"

// nodeHeader carries a node's assertion that it applied the policy.
const nodeHeader = "Sipfed-Node"

// nodeAssertionAge bounds how old an assertion may be (clock skew between
// nodes, and a request's time in flight).
const nodeAssertionAge = time.Minute

// NodePath returns the Path value (RFC 3327) by which the other nodes of
// the domain reach a device that registered through this node from source
// ("ip:port") over transport, or "" when there is none to give (no
// listener, a source that is no address). It names this node over TCP
// when it listens on TCP (a call with video outgrows UDP), else UDP.
func (p *Proxy) NodePath(transport, source string) string {
	ap, err := netip.ParseAddrPort(source)
	if err != nil {
		return ""
	}
	l, ok := p.listener(resolver.TCP)
	if !ok {
		if l, ok = p.listener(resolver.UDP); !ok {
			return ""
		}
	}
	fl := encodeFlow(transport, ap)
	u := sip.Uri{Scheme: "sip", Host: l.Host, Port: l.Port}
	u.UriParams.Add("transport", l.Transport)
	u.UriParams.Add("lr", "")
	u.UriParams.Add("ob", "")
	u.UriParams.Add(nodeFlowParam, fl+"."+p.sign.flowMAC(fl))
	return "<" + u.String() + ">"
}

// flowMAC signs a flow put in a Path.
func (s *signer) flowMAC(fl string) string {
	var buf [sha256.Size]byte
	return base64.RawURLEncoding.EncodeToString(s.sum(buf[:0], "path", fl)[:12])
}

// nodeFlow returns the flow of a signed nf= value.
func (p *Proxy) nodeFlow(v string) (resolver.Target, bool) {
	fl, mac, ok := strings.Cut(v, ".")
	if !ok || !hmac.Equal([]byte(p.sign.flowMAC(fl)), []byte(mac)) {
		return resolver.Target{}, false
	}
	return decodeFlow(fl)
}

// nodeAssertion is the Sipfed-Node value for r, made at now.
func (s *signer) nodeAssertion(r *sip.Request, now time.Time) string {
	t := strconv.FormatInt(now.Unix(), 10)
	return "t=" + t + ";m=" + s.nodeMAC(r, t)
}

func (s *signer) nodeMAC(r *sip.Request, t string) string {
	cid, from := "", ""
	if h := r.CallID(); h != nil {
		cid = h.Value()
	}
	if f := r.From(); f != nil {
		from = f.Address.String()
	}
	var buf [sha256.Size]byte
	return base64.RawURLEncoding.EncodeToString(s.sum(buf[:0], "node", cid, from, fromTag(r), t)[:16])
}

// nodeAsserted reports whether req carries a valid, fresh Sipfed-Node
// assertion from a node of the domain.
func (s *signer) nodeAsserted(req *sip.Request, now time.Time) bool {
	h := req.GetHeader(nodeHeader)
	if h == nil {
		return false
	}
	var t, m string
	for _, kv := range strings.Split(h.Value(), ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		switch k {
		case "t":
			t = v
		case "m":
			m = v
		}
	}
	sec, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		return false
	}
	if d := now.Sub(time.Unix(sec, 0)); d > nodeAssertionAge || d < -nodeAssertionAge {
		return false
	}
	return hmac.Equal([]byte(s.nodeMAC(req, t)), []byte(m))
}

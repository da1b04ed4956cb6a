package proxy_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// BenchmarkForwardMESSAGE measures one request forwarded by the proxy
// over loopback UDP: caller → proxy (location lookup, new branch, Via) →
// phone → 200 → proxy → caller. Caller and phone run in the same process,
// so time and allocations include their sipgo stacks too.
func BenchmarkForwardMESSAGE(b *testing.B) {
	d := startProxy(b)
	phone := startRecorder(b)
	d.bind(b, "bob@a.test", fmt.Sprintf("sip:bob@127.0.0.1:%d", phone.port), 1000)
	c := newCaller(b, d.addr)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, _ := c.do(c.request(sip.MESSAGE, "carol@c.test", "bob@a.test"), 5*time.Second)
		if res.StatusCode != 200 {
			b.Fatalf("got %d", res.StatusCode)
		}
	}
}

// BenchmarkForwardINVITE measures a call's setup through the proxy over
// loopback UDP: INVITE from another domain's caller → proxy (location
// lookup, Record-Route, a branch with our Via, its client transaction) →
// callee → 200 → proxy (the server transaction ended, the 2xx relayed
// statelessly) → caller. Caller and callee are raw UDP endpoints in the
// same process that parse what they receive, so their parsing counts in
// time and allocations too.
func BenchmarkForwardINVITE(b *testing.B) {
	d := startProxy(b)
	callee := udpEndpoint(b, "127.0.0.1")
	d.bind(b, "bob@a.test", "sip:bob@"+callee.addr(), 1000)
	caller := udpEndpoint(b, "127.0.0.1")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("bench-%d", i)
		caller.send(d.addr, carolInvite(caller, "z9hG4bK-"+id, id))
		inv := callee.request(sip.INVITE, 5*time.Second)
		callee.reply(d.addr, inv, 200, "bob0", "Contact: <sip:bob@"+callee.addr()+">")
		if res := caller.response(sip.INVITE, 200, 5*time.Second); res.StatusCode != 200 {
			b.Fatalf("got %d", res.StatusCode)
		}
	}
}

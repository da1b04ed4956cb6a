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

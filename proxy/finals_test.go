package proxy

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestFinalCacheBounded: a generation holds at most its byte budget,
// whatever the responses' size; beyond it put refuses (the transaction
// is kept instead), and what was kept is still found.
func TestFinalCacheBounded(t *testing.T) {
	f := newFinalCache(10_000)
	req := func(branch string) *sip.Request {
		r := sip.NewRequest(sip.BYE, sip.Uri{Scheme: "sip", Host: "a.test"})
		v := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "127.0.0.1", Port: 5060, Params: sip.NewParams()}
		v.Params.Add("branch", branch)
		r.AppendHeader(v)
		cid := sip.CallIDHeader("c1")
		r.AppendHeader(&cid)
		r.AppendHeader(&sip.CSeqHeader{SeqNo: 2, MethodName: sip.BYE})
		r.SetSource("127.0.0.1:5060")
		return r
	}
	big := []byte(strings.Repeat("x", 4000))
	if !f.put(req("z9hG4bK1"), big) || !f.put(req("z9hG4bK2"), big) {
		t.Fatal("two 4 kB responses refused under a 10 kB budget")
	}
	if f.put(req("z9hG4bK3"), big) {
		t.Fatal("a third 4 kB response kept over a 10 kB budget")
	}
	if !f.put(req("z9hG4bK2"), big) {
		t.Fatal("a response kept again for the same request counted twice")
	}
	if got := f.get(req("z9hG4bK1")); len(got) != 4000 {
		t.Fatalf("kept response: %d bytes", len(got))
	}
	if f.get(req("z9hG4bK3")) != nil {
		t.Fatal("a refused response found")
	}
}

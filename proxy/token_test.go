package proxy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func parse(t *testing.T, raw string) sip.Message {
	t.Helper()
	m, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDialogTokenBothDirections: the token of a dialog is accepted from
// either side (the creator's tag is in From one way, in To the other) and
// refused for another Call-ID, other tags, another Request-URI, another
// secret.
func TestDialogTokenBothDirections(t *testing.T) {
	s := newSigner([]byte("k"))
	tok := s.dialogToken("call-1", "alicetag", "x@192.0.2.1:5060", "")
	req := func(callID, from, to string) *sip.Request {
		return parse(t, "BYE sip:x@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\r\nFrom: <sip:a@a.test>;tag="+from+
			"\r\nTo: <sip:b@b.test>;tag="+to+"\r\nCall-ID: "+callID+"\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n").(*sip.Request)
	}
	if !s.dialogOK(req("call-1", "alicetag", "bobtag"), tok, "") || !s.dialogOK(req("call-1", "bobtag", "alicetag"), tok, "") {
		t.Fatal("a request of the dialog was refused")
	}
	for _, r := range []*sip.Request{req("call-2", "alicetag", "bobtag"), req("call-1", "eve", "bobtag")} {
		if s.dialogOK(r, tok, "") {
			t.Errorf("accepted %s", r.StartLine())
		}
	}
	other := req("call-1", "alicetag", "bobtag")
	other.Recipient.Host = "198.51.100.9"
	if s.dialogOK(other, tok, "") {
		t.Error("the token of one target let a request go to another")
	}
	if newSigner([]byte("other")).dialogOK(req("call-1", "alicetag", "bobtag"), tok, "") || s.dialogOK(req("call-1", "alicetag", "bobtag"), "", "") {
		t.Error("a token of another secret, or none, was accepted")
	}
	// A flow is signed with the dialog: none can be added or changed.
	flow := encodeFlow("udp", netip.MustParseAddrPort("203.0.113.5:40000"))
	withFlow := s.dialogToken("call-1", "alicetag", "x@192.0.2.1:5060", flow)
	if !s.dialogOK(req("call-1", "bobtag", "alicetag"), withFlow, flow) {
		t.Error("a request of the dialog with its flow was refused")
	}
	forged := encodeFlow("udp", netip.MustParseAddrPort("198.51.100.1:5060"))
	if s.dialogOK(req("call-1", "bobtag", "alicetag"), tok, forged) || s.dialogOK(req("call-1", "bobtag", "alicetag"), withFlow, forged) {
		t.Error("a flow the token was not made for was accepted")
	}
}

// TestFlowEncoding: flows round-trip for each transport and both
// address families; anything else is refused.
func TestFlowEncoding(t *testing.T) {
	for _, c := range []struct{ transport, addr string }{{"udp", "203.0.113.5:40000"}, {"TCP", "[2001:db8::7]:5060"}, {"tls", "192.0.2.1:5061"}, {"ws", "192.0.2.9:51000"}, {"WSS", "[2001:db8::9]:443"}} {
		ap := netip.MustParseAddrPort(c.addr)
		got, ok := decodeFlow(encodeFlow(c.transport, ap))
		if !ok || got.AddrPort() != ap || got.Transport != strings.ToLower(c.transport) {
			t.Errorf("%s %s: decoded %v %v", c.transport, c.addr, got, ok)
		}
	}
	for _, bad := range []string{"", "u", "z" + encodeFlow("udp", netip.MustParseAddrPort("192.0.2.1:1"))[1:], "u!!", "uAAAA"} {
		if _, ok := decodeFlow(bad); ok {
			t.Errorf("decodeFlow(%q) accepted", bad)
		}
	}
}

// TestBranchSignedForPreviousHop: a response's top Via is ours only for
// the previous hop we made it for.
func TestBranchSignedForPreviousHop(t *testing.T) {
	s := newSigner([]byte("k"))
	up := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "192.0.2.7", Port: 5060, Params: sip.NewParams()}
	up.Params.Add("branch", "z9hG4bK-caller")
	ours := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "127.0.0.1", Port: 5060, Params: sip.NewParams()}
	ours.Params.Add("branch", s.branch("0badf00d", up))
	if !s.branchOK(ours, up) {
		t.Fatal("our own branch refused")
	}
	victim := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "198.51.100.1", Port: 5060, Params: sip.NewParams()}
	victim.Params.Add("branch", "z9hG4bK-caller")
	if s.branchOK(ours, victim) {
		t.Fatal("our branch accepted for another previous hop")
	}
	if a, b := s.branch("0badf00d", up), s.branch("0badf00d", up); a == b {
		t.Fatal("two branches of one request are equal")
	}
}

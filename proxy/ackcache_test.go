package proxy

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestInviteBranchesMatchTheirACK: the ACK with an INVITE's branch and
// Call-ID is recognised for 64*T1 at least and at most twice that; an
// ACK with another branch (a 2xx ACK) or Call-ID is not.
func TestInviteBranchesMatchTheirACK(t *testing.T) {
	msg := func(method, branch, callID string) *sip.Request {
		return parse(t, method+" sip:bob@a.test SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.9;branch="+branch+
			"\r\nFrom: <sip:a@a.test>;tag=1\r\nTo: <sip:bob@a.test>\r\nCall-ID: "+callID+"\r\nCSeq: 1 "+method+"\r\nContent-Length: 0\r\n\r\n").(*sip.Request)
	}
	b := newInviteBranches()
	b.add(msg("INVITE", "z9hG4bK-1", "c1"))
	if !b.ackOf(msg("ACK", "z9hG4bK-1", "c1")) {
		t.Fatal("the INVITE's own ACK was not recognised")
	}
	if b.ackOf(msg("ACK", "z9hG4bK-2", "c1")) || b.ackOf(msg("ACK", "z9hG4bK-1", "c2")) {
		t.Fatal("an ACK of another branch or Call-ID was taken for the INVITE's")
	}
	b.since = b.since.Add(-64*sip.T1 - time.Second) // one generation later
	if !b.ackOf(msg("ACK", "z9hG4bK-1", "c1")) {
		t.Fatal("forgotten after one generation")
	}
	b.since = b.since.Add(-64*sip.T1 - time.Second)
	if b.ackOf(msg("ACK", "z9hG4bK-1", "c1")) {
		t.Fatal("still remembered after two generations")
	}
}

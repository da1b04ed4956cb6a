package proxy

import (
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// inviteBranches remembers the INVITEs received over TCP and TLS for
// 64*T1, so that their ACK for a non-2xx final response (hop by hop, same
// branch as the INVITE, RFC 3261 §17.1.1.3) is absorbed here. Over UDP
// sipgo keeps the finished server transaction and matches the ACK itself;
// over a reliable transport it ends the transaction as soon as the
// handler returns, and the ACK would otherwise look like a new request.
// Two generations of 32 s bound the memory.
//
// Entries are 64-bit keyed hashes of the keys (whose length the sender
// chooses), so each costs the same few bytes.
type inviteBranches struct {
	mu        sync.Mutex
	cur, prev map[uint64]struct{}
	since     time.Time
	max       int
	bySource  bool // the key includes the source address (sourceKey)
	seed      maphash.Seed
}

func newInviteBranches() *inviteBranches {
	return &inviteBranches{cur: map[uint64]struct{}{}, prev: map[uint64]struct{}{}, since: time.Now(), max: 200000, seed: maphash.MakeSeed()}
}

// newAcceptedBranches remembers INVITEs over UDP answered 2xx by branch,
// Call-ID and source (see collector.respondFrom).
func newAcceptedBranches() *inviteBranches {
	b := newInviteBranches()
	b.bySource = true
	return b
}

// key is the hash of branchKey, or of sourceKey when b is bySource.
func (b *inviteBranches) key(req *sip.Request) (uint64, bool) {
	k, ok := branchKey(req)
	if b.bySource {
		k, ok = sourceKey(req)
	}
	if !ok {
		return 0, false
	}
	return maphash.String(b.seed, k), true
}

// sourceKey is branchKey, the CSeq and the address req came from, for
// RFC 3261 branches only: a request matches only its own retransmission
// (not the next request of a UA that reuses branches, nor a sender who
// copies another's branch and Call-ID from elsewhere).
func sourceKey(req *sip.Request) (string, bool) {
	k, ok := branchKey(req)
	cseq := req.CSeq()
	if !ok || cseq == nil || !strings.HasPrefix(k, sip.RFC3261BranchMagicCookie) {
		return "", false
	}
	return k + "\x00" + strconv.FormatUint(uint64(cseq.SeqNo), 10) + " " + string(cseq.MethodName) + "\x00" + req.Source(), true
}

func branchKey(req *sip.Request) (string, bool) {
	v, cid := req.Via(), req.CallID()
	if v == nil || cid == nil {
		return "", false
	}
	br, ok := v.Params.Get("branch")
	if !ok || br == "" {
		return "", false
	}
	return br + "\x00" + cid.Value(), true
}

func (b *inviteBranches) rotate(now time.Time) {
	if now.Sub(b.since) >= 64*sip.T1 || len(b.cur) >= b.max {
		b.prev, b.cur, b.since = b.cur, make(map[uint64]struct{}, len(b.cur)), now
	}
}

// add notes an INVITE.
func (b *inviteBranches) add(req *sip.Request) {
	k, ok := b.key(req)
	if !ok {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rotate(time.Now())
	b.cur[k] = struct{}{}
}

// ackOf reports whether ack has the branch of a noted INVITE: the ACK of
// its non-2xx final response.
func (b *inviteBranches) ackOf(ack *sip.Request) bool {
	k, ok := b.key(ack)
	if !ok {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rotate(time.Now())
	_, in := b.cur[k]
	if !in {
		_, in = b.prev[k]
	}
	return in
}

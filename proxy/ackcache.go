package proxy

import (
	"hash/maphash"
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
	bySource  bool // the key is sourceHash
	seed      maphash.Seed
}

func newInviteBranches() *inviteBranches {
	return &inviteBranches{cur: map[uint64]struct{}{}, prev: map[uint64]struct{}{}, since: time.Now(), max: 200000, seed: maphash.MakeSeed()}
}

// newAcceptedBranches remembers INVITEs answered 2xx by branch,
// Call-ID and source (see collector.respondFrom).
// Every call over any transport passes through it: 500,000 entries a
// generation (8-byte keys, about 10 MB) hold 64*T1 of calls up to 15,000
// calls/s.
func newAcceptedBranches() *inviteBranches {
	b := newInviteBranches()
	b.bySource = true
	b.max = 500_000
	return b
}

// key is the hash of branchKey, or sourceHash when b is bySource.
func (b *inviteBranches) key(req *sip.Request) (uint64, bool) {
	if b.bySource {
		return sourceHash(b.seed, req)
	}
	k, ok := branchKey(req)
	if !ok {
		return 0, false
	}
	return maphash.String(b.seed, k), true
}

// sourceHash is a keyed hash of req's branch, Call-ID, CSeq and source
// address, for RFC 3261 branches only: a request matches only its own
// retransmission (not the next request of a UA that reuses branches, nor
// a sender who copies another's branch and Call-ID from elsewhere). It
// allocates nothing: it runs for every request over UDP.
func sourceHash(seed maphash.Seed, req *sip.Request) (uint64, bool) {
	v, cid, cseq := req.Via(), req.CallID(), req.CSeq()
	if v == nil || cid == nil || cseq == nil {
		return 0, false
	}
	br, _ := v.Params.Get("branch")
	if !strings.HasPrefix(br, sip.RFC3261BranchMagicCookie) {
		return 0, false
	}
	var h maphash.Hash
	h.SetSeed(seed)
	h.WriteString(br)
	h.WriteByte(0)
	h.WriteString(cid.Value())
	h.WriteByte(0)
	var n [4]byte
	n[0], n[1], n[2], n[3] = byte(cseq.SeqNo>>24), byte(cseq.SeqNo>>16), byte(cseq.SeqNo>>8), byte(cseq.SeqNo)
	h.Write(n[:])
	h.WriteString(string(cseq.MethodName))
	h.WriteByte(0)
	h.WriteString(req.Source())
	return h.Sum64(), true
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

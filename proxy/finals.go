package proxy

import (
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// finalCache keeps, for 64*T1, the final response the proxy relayed to a
// non-INVITE request that came over UDP, by the request's branch and
// Call-ID, as bytes. It stands in for the server transaction's Completed
// state (RFC 3261 §17.2.2, Timer J): a retransmitted BYE gets the same
// answer again, and the transaction itself ends at once. sipgo's
// transaction would keep the parsed request and response, several kB a
// BYE for 32 s; this keeps the response's bytes. Two generations of 32 s
// and a bound on entries (beyond which the transaction is kept as
// before) bound the memory.
type finalCache struct {
	mu        sync.Mutex
	cur, prev map[string][]byte
	since     time.Time
	max       int
}

func newFinalCache(max int) *finalCache {
	return &finalCache{cur: map[string][]byte{}, prev: map[string][]byte{}, since: time.Now(), max: max}
}

func (f *finalCache) rotate(now time.Time) {
	if now.Sub(f.since) >= 64*sip.T1 {
		f.prev, f.cur, f.since = f.cur, make(map[string][]byte, len(f.cur)), now
	}
}

// put keeps res for req, and reports false when the cache is full.
func (f *finalCache) put(req *sip.Request, res []byte) bool {
	k, ok := branchKey(req)
	if !ok {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rotate(time.Now())
	if len(f.cur) >= f.max {
		return false
	}
	f.cur[k] = res
	return true
}

// get returns the response kept for a retransmission of req, or nil.
func (f *finalCache) get(req *sip.Request) []byte {
	k, ok := branchKey(req)
	if !ok {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rotate(time.Now())
	if b, ok := f.cur[k]; ok {
		return b
	}
	return f.prev[k]
}

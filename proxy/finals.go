package proxy

import (
	"hash/maphash"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// finalCache keeps, for 64*T1, the final response the proxy relayed to a
// non-INVITE request that came over UDP, by a hash of the request's
// branch, Call-ID, CSeq and source (sourceHash), as bytes. It stands in for the server transaction's Completed
// state (RFC 3261 §17.2.2, Timer J): a retransmitted BYE gets the same
// answer again, and the transaction itself ends at once. sipgo's
// transaction would keep the parsed request and response, several kB a
// BYE for 32 s; this keeps the response's bytes. Two generations of 32 s,
// each of at most maxBytes of responses, bound the memory whatever the
// responses' size (a device may send large ones): beyond it the
// transaction is kept as before.
type finalCache struct {
	mu        sync.Mutex
	cur, prev map[uint64][]byte
	curBytes  int
	since     time.Time
	maxBytes  int
	seed      maphash.Seed
}

// entryOverhead is what an entry costs besides its response: the key,
// the slice header and the map's share.
const entryOverhead = 48

// finalCacheBytes bounds each generation of finalCache: 64 MB, 160,000
// responses of 400 bytes (a BYE's 200), 5,000 BYEs a second for 32 s.
const finalCacheBytes = 64 << 20

func newFinalCache(maxBytes int) *finalCache {
	return &finalCache{cur: map[uint64][]byte{}, prev: map[uint64][]byte{}, since: time.Now(), maxBytes: maxBytes, seed: maphash.MakeSeed()}
}

func (f *finalCache) rotate(now time.Time) {
	if now.Sub(f.since) >= 64*sip.T1 {
		f.prev, f.cur, f.curBytes, f.since = f.cur, make(map[uint64][]byte, len(f.cur)), 0, now
	}
}

// put keeps res for req, and reports false when the cache is full.
func (f *finalCache) put(req *sip.Request, res []byte) bool {
	k, ok := sourceHash(f.seed, req)
	if !ok {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rotate(time.Now())
	size := entryOverhead + len(res)
	if old, ok := f.cur[k]; ok {
		f.curBytes -= entryOverhead + len(old)
	}
	if f.curBytes+size > f.maxBytes {
		return false
	}
	f.cur[k] = res
	f.curBytes += size
	return true
}

// get returns the response kept for a retransmission of req, or nil.
func (f *finalCache) get(req *sip.Request) []byte {
	k, ok := sourceHash(f.seed, req)
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

package sipcore

import (
	"hash/maphash"
	"sync"
	"time"
)

// ResponseCache remembers the final response to a request answered
// without a server transaction, by the request's key (its top Via branch
// and source), so that a retransmission gets the same answer again
// instead of being handled twice (RFC 3261 §17.2.3 matching; for a
// REGISTER, handling it twice would refuse the copy: same CSeq, nonce
// count already seen). A key being handled has an empty entry: its
// retransmissions are dropped until the answer exists, as a transaction
// in the Trying state would absorb them.
//
// Entries live TTL (Kamailio keeps a finished transaction 5 s); the cache
// holds at most Max entries, after which Begin refuses new keys and the
// caller falls back to a server transaction. Safe for concurrent use.
type ResponseCache struct {
	ttl    time.Duration
	max    int
	seed   maphash.Seed
	shards [64]respShard
}

type respShard struct {
	mu      sync.Mutex
	m       map[string]respEntry
	swept   time.Time
	entries int
}

type respEntry struct {
	data    []byte // nil while the request is being handled
	expires time.Time
}

// NewResponseCache returns a cache whose entries live ttl, at most max of
// them.
func NewResponseCache(ttl time.Duration, max int) *ResponseCache {
	c := &ResponseCache{ttl: ttl, max: max, seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = make(map[string]respEntry)
	}
	return c
}

func (c *ResponseCache) shard(key string) *respShard {
	return &c.shards[maphash.String(c.seed, key)%uint64(len(c.shards))]
}

// Begin looks key up. A cached answer is returned (resend it); an entry
// being handled returns handling=true (drop the copy); an unknown key is
// marked as being handled and returns ok=true (handle it, then Finish).
// ok=false with no data: the cache is full, use a server transaction.
func (c *ResponseCache) Begin(key string, now time.Time) (data []byte, handling, ok bool) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.swept) > c.ttl/4 {
		s.sweep(now)
	}
	if e, found := s.m[key]; found && now.Before(e.expires) {
		return e.data, e.data == nil, false
	}
	if s.entries >= c.max/len(c.shards)+1 {
		return nil, false, false
	}
	s.m[key] = respEntry{expires: now.Add(c.ttl)}
	s.entries = len(s.m)
	return nil, false, true
}

// Finish stores the answer to key, sent now.
func (c *ResponseCache) Finish(key string, data []byte, now time.Time) {
	s := c.shard(key)
	s.mu.Lock()
	s.m[key] = respEntry{data: data, expires: now.Add(c.ttl)}
	s.entries = len(s.m)
	s.mu.Unlock()
}

// Forget drops key (its handling ended without an answer).
func (c *ResponseCache) Forget(key string) {
	s := c.shard(key)
	s.mu.Lock()
	delete(s.m, key)
	s.entries = len(s.m)
	s.mu.Unlock()
}

// Sweep drops the expired entries of every shard: Begin sweeps only the
// shard it touches, so a cache that traffic no longer reaches would keep
// its last entries.
func (c *ResponseCache) Sweep(now time.Time) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.sweep(now)
		s.mu.Unlock()
	}
}

// Len returns the number of entries.
func (c *ResponseCache) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

func (s *respShard) sweep(now time.Time) {
	for k, e := range s.m {
		if !now.Before(e.expires) {
			delete(s.m, k)
		}
	}
	s.entries = len(s.m)
	s.swept = now
}

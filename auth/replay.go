package auth

import (
	"fmt"
	"sync"
	"time"
)

// ncTracker remembers the highest nonce count accepted for each nonce
// (RFC 7616 §3.4: a repeated nc is a replay). It lives in one node's
// memory: a replay sent to another node of the domain within the nonce
// lifetime is not caught there.
//
// Entries sit in two generations swapped every lifetime+maxSkew, so an
// entry is kept at least until its nonce has expired and memory stays
// bounded by 2*max entries. When the current generation fills up early
// (more than max nonces used in one period: 131,072 at 437 fresh nonces
// a second with the default lifetime), the older one is dropped, and
// every untracked nonce issued no later than the newest nonce dropped
// counts as stale: its client fetches a fresh nonce (stale=true) rather
// than a replay slipping through. The bound is each nonce's own stamp, so
// nonces issued after the dropped ones (those of clients registering
// now) are untouched however often the tracker fills.
type ncTracker struct {
	mu        sync.Mutex
	cur, prev map[nonceKey]ncEntry
	curNewest time.Time // the latest issue time of a nonce in cur
	prvNewest time.Time // and in prev
	rotated   time.Time // when cur was started
	floor     time.Time // untracked nonces issued at or before floor are stale
	period    time.Duration
	max       int
}

type ncEntry struct {
	nc uint32
	ts int64 // the nonce's issue time, Unix ns
}

func newNCTracker(lifetime time.Duration, max int) *ncTracker {
	return &ncTracker{cur: map[nonceKey]ncEntry{}, period: lifetime + maxSkew, max: max}
}

// rotate drops prev, whose newest nonce becomes the floor, and starts a
// new cur. A nonce stamped after now (another node's clock runs ahead, by
// up to maxSkew) would put the floor in the future and make this node's
// own fresh nonces stale: such entries (a few) move to the new cur
// instead, and the floor is the newest of the rest.
func (t *ncTracker) rotate(now time.Time, size int) {
	next := make(map[nonceKey]ncEntry, size)
	var nextNewest time.Time
	dropped := t.prvNewest
	if dropped.After(now) {
		dropped = time.Time{}
		for k, e := range t.prev {
			ts := time.Unix(0, e.ts)
			switch {
			case ts.After(now):
				next[k] = e
				if ts.After(nextNewest) {
					nextNewest = ts
				}
			case ts.After(dropped):
				dropped = ts
			}
		}
	}
	if dropped.After(t.floor) {
		t.floor = dropped
	}
	t.prev, t.prvNewest = t.cur, t.curNewest
	t.cur, t.curNewest, t.rotated = next, nextNewest, now
}

// use records nc for nonce k issued at ts. It returns an error wrapping
// ErrReplay when nc is not above the highest seen, or ErrStaleNonce when
// the nonce is old enough that its count may have been forgotten. forced
// reports that the tracker had to drop a generation early.
func (t *ncTracker) use(k nonceKey, ts time.Time, nc uint32, now time.Time) (forced bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.rotated) >= t.period {
		t.rotate(now, len(t.cur))
	}
	seen, ok := t.cur[k]
	if !ok {
		seen, ok = t.prev[k]
	}
	switch {
	case ok && nc <= seen.nc:
		return false, fmt.Errorf("%w: nc %d, already saw %d", ErrReplay, nc, seen.nc)
	case !ok && !ts.After(t.floor) && !t.floor.IsZero():
		return false, fmt.Errorf("%w: nonce count no longer tracked", ErrStaleNonce)
	}
	if !ok && len(t.cur) >= t.max {
		t.rotate(now, t.max)
		forced = true
		if !ts.After(t.floor) {
			return forced, fmt.Errorf("%w: nonce count no longer tracked", ErrStaleNonce)
		}
	}
	t.cur[k] = ncEntry{nc: nc, ts: ts.UnixNano()}
	if ts.After(t.curNewest) {
		t.curNewest = ts
	}
	return forced, nil
}

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
// bounded by 2*max entries. When the current generation fills up early, the
// older one is dropped and every nonce issued before that point which is
// no longer tracked counts as stale: clients then fetch a fresh nonce
// (stale=true) rather than a replay slipping through.
type ncTracker struct {
	mu        sync.Mutex
	cur, prev map[nonceKey]uint32
	rotated   time.Time // when cur was started
	floor     time.Time // untracked nonces issued before floor are stale
	period    time.Duration
	max       int
}

func newNCTracker(lifetime time.Duration, max int) *ncTracker {
	return &ncTracker{cur: map[nonceKey]uint32{}, period: lifetime + maxSkew, max: max}
}

// use records nc for nonce k issued at ts. It returns an error wrapping
// ErrReplay when nc is not above the highest seen, or ErrStaleNonce when
// the nonce is old enough that its count may have been forgotten. forced
// reports that the tracker had to drop a generation early.
func (t *ncTracker) use(k nonceKey, ts time.Time, nc uint32, now time.Time) (forced bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.rotated) >= t.period {
		t.prev, t.cur, t.rotated = t.cur, make(map[nonceKey]uint32, len(t.cur)), now
	}
	seen, ok := t.cur[k]
	if !ok {
		seen, ok = t.prev[k]
	}
	switch {
	case ok && nc <= seen:
		return false, fmt.Errorf("%w: nc %d, already saw %d", ErrReplay, nc, seen)
	case !ok && ts.Before(t.floor):
		return false, fmt.Errorf("%w: nonce count no longer tracked", ErrStaleNonce)
	}
	if !ok && len(t.cur) >= t.max {
		// Dropped entries were all inserted before t.rotated, so their
		// nonces were issued before t.rotated+maxSkew.
		t.floor = t.rotated.Add(maxSkew)
		t.prev, t.cur, t.rotated = t.cur, make(map[nonceKey]uint32, t.max), now
		forced = true
		if ts.Before(t.floor) {
			return forced, fmt.Errorf("%w: nonce count no longer tracked", ErrStaleNonce)
		}
	}
	t.cur[k] = nc
	return forced, nil
}

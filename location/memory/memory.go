package memory

import (
	"cmp"
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unique"

	"github.com/sipfed/sipfed/location"
)

// shards is the number of independently locked parts of the store.
const shards = 64

// Store is a location.Store kept in memory. Expired bindings are dropped
// when their AOR is next touched and by a sweeper that runs until Close.
type Store struct {
	now   func() time.Time
	sweep time.Duration
	seed  maphash.Seed
	parts [shards]shard

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

var _ location.Store = (*Store)(nil)

// shard holds the AORs whose hash falls into it.
type shard struct {
	mu   sync.Mutex
	aors map[string][]record // AOR → its bindings (a few: a slice, not a map)
}

// record is a stored binding, compact: a million of them must fit in half
// a gigabyte. The AOR is the map key; the expiry and the time of the
// update that last set the binding are Unix milliseconds; the strings
// that repeat across bindings (transport, node, User-Agent) are interned.
type record struct {
	contact, instance, callID, received string
	path                                []string
	transport, nodeID, userAgent        unique.Handle[string]
	expires, updated                    int64
	regID, q                            int32
	cseq                                uint32
	nat                                 bool
}

func newRecord(b *location.Binding, exp, now int64) record {
	return record{
		contact: b.Contact, instance: b.InstanceID, callID: b.CallID, received: b.Received,
		path:      slices.Clone(b.Path),
		transport: unique.Make(b.Transport), nodeID: unique.Make(b.NodeID), userAgent: unique.Make(b.UserAgent),
		expires: exp, updated: now, regID: int32(b.RegID), q: int32(b.Q), cseq: b.CSeq, nat: b.NAT,
	}
}

func (r *record) binding(aor string) location.Binding {
	return location.Binding{
		AOR: aor, Contact: r.contact, InstanceID: r.instance, RegID: int(r.regID), Q: int(r.q),
		Expires: time.UnixMilli(r.expires), CallID: r.callID, CSeq: r.cseq, Path: slices.Clone(r.path),
		Received: r.received, Transport: r.transport.Value(), NAT: r.nat, NodeID: r.nodeID.Value(), UserAgent: r.userAgent.Value(),
	}
}

// is reports whether r is the device of key (location.Binding.Key),
// without building r's key.
func (r *record) is(key string) bool {
	if r.instance != "" {
		rest, ok := strings.CutPrefix(key, "i:")
		if !ok {
			return false
		}
		inst, reg, ok := strings.Cut(rest, ";")
		return ok && inst == r.instance && reg == strconv.Itoa(int(r.regID))
	}
	c, ok := strings.CutPrefix(key, "c:")
	return ok && c == r.contact
}

func find(rs []record, key string) int {
	for i := range rs {
		if rs[i].is(key) {
			return i
		}
	}
	return -1
}

// Option configures a Store.
type Option func(*Store)

// WithClock makes the store read the time from now instead of time.Now,
// for Lookup and for the sweeper (Update uses Update.Now).
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// WithSweepInterval sets how often the sweeper drops expired bindings and
// empty AORs (default one minute); zero or less disables the sweeper.
func WithSweepInterval(d time.Duration) Option {
	return func(s *Store) { s.sweep = d }
}

// New returns an empty Store and starts its sweeper; Close stops it.
func New(opts ...Option) *Store {
	s := &Store{
		now:   time.Now,
		sweep: time.Minute,
		seed:  maphash.MakeSeed(),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	for i := range s.parts {
		s.parts[i].aors = make(map[string][]record)
	}
	if s.sweep > 0 {
		go s.sweeper()
	} else {
		close(s.done)
	}
	return s
}

func (s *Store) shard(aor string) *shard {
	return &s.parts[maphash.String(s.seed, aor)%shards]
}

// Update implements location.Store.
func (s *Store) Update(ctx context.Context, aor string, u location.Update) ([]location.Binding, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("location/memory: %w", err)
	}
	now := u.Now.UnixMilli()
	sh := s.shard(aor)
	sh.mu.Lock()
	defer sh.mu.Unlock()

	cur := prune(sh.aors[aor], now)
	stale := func(k string) bool {
		i := find(cur, k)
		return i >= 0 && cur[i].callID == u.CallID && u.CSeq <= cur[i].cseq
	}
	if u.RemoveAll {
		for i := range cur {
			if cur[i].callID == u.CallID && u.CSeq <= cur[i].cseq {
				return nil, location.ErrStaleCSeq
			}
		}
	}
	for _, k := range u.Remove {
		if stale(k) {
			return nil, location.ErrStaleCSeq
		}
	}
	for i := range u.Set {
		if stale(u.Set[i].Key()) {
			return nil, location.ErrStaleCSeq
		}
	}

	// A new slice: an update that fails part-way (too many contacts)
	// must leave the stored one untouched.
	var next []record
	if !u.RemoveAll {
		next = make([]record, len(cur), len(cur)+len(u.Set))
		copy(next, cur)
	}
	for i := range u.Set {
		b := &u.Set[i]
		k := b.Key()
		exp := b.Expires.UnixMilli()
		j := find(next, k)
		if exp <= now {
			if j >= 0 {
				next = slices.Delete(next, j, j+1)
			}
			continue
		}
		b.CallID, b.CSeq = u.CallID, u.CSeq
		r := newRecord(b, exp, now)
		if j >= 0 {
			next[j] = r
		} else {
			next = append(next, r)
		}
	}
	for _, k := range u.Remove {
		if j := find(next, k); j >= 0 {
			next = slices.Delete(next, j, j+1)
		}
	}
	if u.MaxContacts > 0 && len(next) > u.MaxContacts && len(next) > len(cur) {
		return nil, location.ErrTooManyContacts
	}
	if len(next) == 0 {
		delete(sh.aors, aor)
	} else {
		sh.aors[aor] = slices.Clip(next)
	}
	return sorted(aor, next), nil
}

// Lookup implements location.Store.
func (s *Store) Lookup(ctx context.Context, aor string) ([]location.Binding, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("location/memory: %w", err)
	}
	sh := s.shard(aor)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	cur := sh.aors[aor]
	if kept := prune(cur, s.now().UnixMilli()); len(kept) != len(cur) {
		if len(kept) == 0 {
			delete(sh.aors, aor)
		} else {
			sh.aors[aor] = kept
		}
		cur = kept
	}
	return sorted(aor, cur), nil
}

// Close stops the sweeper. The store keeps working without it.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.stop) })
	<-s.done
	return nil
}

func (s *Store) sweeper() {
	defer close(s.done)
	t := time.NewTicker(s.sweep)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.sweepOnce()
		}
	}
}

// sweepOnce drops expired bindings and AORs left without any, one shard at
// a time so that requests wait for at most one shard.
func (s *Store) sweepOnce() {
	for i := range s.parts {
		sh := &s.parts[i]
		sh.mu.Lock()
		now := s.now().UnixMilli()
		for aor, bs := range sh.aors {
			if kept := prune(bs, now); len(kept) == 0 {
				delete(sh.aors, aor)
			} else if len(kept) != len(bs) {
				sh.aors[aor] = kept
			}
		}
		sh.mu.Unlock()
	}
}

// prune returns the records of rs that expire after now (Unix ms): rs
// itself when none expired, else a new slice, so that rs is never
// changed in place.
func prune(rs []record, now int64) []record {
	for i := range rs {
		if rs[i].expires <= now {
			kept := make([]record, 0, len(rs)-1)
			for j := range rs {
				if rs[j].expires > now {
					kept = append(kept, rs[j])
				}
			}
			return kept
		}
	}
	return rs
}

// sorted returns the bindings of rs in Lookup order: highest q first,
// then most recently updated, then by key so the order is stable.
func sorted(aor string, rs []record) []location.Binding {
	if len(rs) == 0 {
		return nil
	}
	out := make([]location.Binding, len(rs))
	for i := range rs {
		out[i] = rs[i].binding(aor)
	}
	if len(out) > 1 {
		idx := make([]int, len(rs))
		for i := range idx {
			idx[i] = i
		}
		slices.SortFunc(idx, func(a, b int) int {
			return cmp.Or(
				cmp.Compare(rs[b].q, rs[a].q),
				cmp.Compare(rs[b].updated, rs[a].updated),
				cmp.Compare(out[a].Key(), out[b].Key()),
			)
		})
		sortedOut := make([]location.Binding, len(out))
		for i, j := range idx {
			sortedOut[i] = out[j]
		}
		out = sortedOut
	}
	return out
}

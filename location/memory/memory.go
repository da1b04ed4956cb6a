package memory

import (
	"cmp"
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"time"

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
	aors map[string]map[string]record // AOR → Binding.Key() → record
}

// record is a stored binding with its expiry and the time of the update
// that last set it, both in Unix milliseconds.
type record struct {
	b       location.Binding
	expires int64
	updated int64
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
		s.parts[i].aors = make(map[string]map[string]record)
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

	cur := sh.aors[aor]
	prune(cur, now)
	stale := func(k string) bool {
		r, ok := cur[k]
		return ok && r.b.CallID == u.CallID && u.CSeq <= r.b.CSeq
	}
	if u.RemoveAll {
		for k := range cur {
			if stale(k) {
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

	next := make(map[string]record, len(cur)+len(u.Set))
	if !u.RemoveAll {
		for k, r := range cur {
			next[k] = r
		}
	}
	for _, b := range u.Set {
		k := b.Key()
		exp := b.Expires.UnixMilli()
		if exp <= now {
			delete(next, k)
			continue
		}
		b.AOR, b.CallID, b.CSeq = aor, u.CallID, u.CSeq
		b.Expires = time.UnixMilli(exp)
		b.Path = slices.Clone(b.Path)
		next[k] = record{b: b, expires: exp, updated: now}
	}
	for _, k := range u.Remove {
		delete(next, k)
	}
	if u.MaxContacts > 0 && len(next) > u.MaxContacts && len(next) > len(cur) {
		return nil, location.ErrTooManyContacts
	}
	if len(next) == 0 {
		delete(sh.aors, aor)
	} else {
		sh.aors[aor] = next
	}
	return sorted(next), nil
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
	if prune(cur, s.now().UnixMilli()) && len(cur) == 0 {
		delete(sh.aors, aor)
	}
	return sorted(cur), nil
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
			if prune(bs, now) && len(bs) == 0 {
				delete(sh.aors, aor)
			}
		}
		sh.mu.Unlock()
	}
}

// prune deletes the records of bs that expire at or before now (Unix ms)
// and reports whether it deleted any.
func prune(bs map[string]record, now int64) bool {
	pruned := false
	for k, r := range bs {
		if r.expires <= now {
			delete(bs, k)
			pruned = true
		}
	}
	return pruned
}

// sorted returns copies of the bindings in bs in Lookup order: highest q
// first, then most recently updated, then by key so the order is stable.
func sorted(bs map[string]record) []location.Binding {
	if len(bs) == 0 {
		return nil
	}
	type keyed struct {
		key string
		r   record
	}
	rs := make([]keyed, 0, len(bs))
	for k, r := range bs {
		rs = append(rs, keyed{k, r})
	}
	slices.SortFunc(rs, func(a, b keyed) int {
		return cmp.Or(
			cmp.Compare(b.r.b.Q, a.r.b.Q),
			cmp.Compare(b.r.updated, a.r.updated),
			cmp.Compare(a.key, b.key),
		)
	})
	out := make([]location.Binding, len(rs))
	for i, kr := range rs {
		out[i] = kr.r.b
		out[i].Path = slices.Clone(kr.r.b.Path)
	}
	return out
}

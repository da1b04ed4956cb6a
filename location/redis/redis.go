package redis

import (
	"cmp"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sipfed/sipfed/location"
)

// keyPrefix starts the name of every AOR's hash and of its change channel:
// sipfed:loc:{alice@a.example}. The braces make the AOR the Cluster hash tag.
const keyPrefix = "sipfed:loc:"

// Key returns the name of aor's hash, which is also the channel its
// changes are published on (payload: aor).
func Key(aor string) string { return keyPrefix + "{" + aor + "}" }

//go:embed update.lua
var updateLua string

// updateScript is run with EVALSHA, and EVAL when Redis does not know it
// (after a restart or failover).
var updateScript = goredis.NewScript(updateLua)

// Store is a location.Store in Redis: single server, Sentinel or Cluster.
//
// Each AOR is a hash (Key) with one field per device (Binding.Key) whose
// value is the binding's JSON, with expires in Unix milliseconds and the
// time of the update that set it. The key expires with its last binding.
// Errors talking to Redis wrap location.ErrUnavailable.
type Store struct {
	c   goredis.UniversalClient
	now func() time.Time
}

var _ location.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithClock makes Lookup read the time from now instead of time.Now
// (Update uses Update.Now). Key TTLs in Redis follow Redis' own clock.
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// New returns a Store on client. The client stays the caller's: Close does
// not close it.
func New(client goredis.UniversalClient, opts ...Option) *Store {
	s := &Store{c: client, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
}

// record is the JSON value of a hash field. Its Expires shadows
// Binding.Expires so that the Lua script reads a number.
type record struct {
	location.Binding
	Expires int64 `json:"expires"` // Unix ms
	Updated int64 `json:"updated"` // Unix ms of the Update.Now that set it
}

// Update implements location.Store with one script run.
func (s *Store) Update(ctx context.Context, aor string, u location.Update) ([]location.Binding, error) {
	now := u.Now.UnixMilli()
	removeAll := 0
	if u.RemoveAll {
		removeAll = 1
	}
	args := make([]any, 0, 8+len(u.Remove)+3*len(u.Set))
	args = append(args, now, u.CallID, u.CSeq, removeAll, u.MaxContacts, Key(aor), aor, len(u.Remove))
	for _, k := range u.Remove {
		args = append(args, k)
	}
	for _, b := range u.Set {
		r := record{Binding: b, Expires: b.Expires.UnixMilli(), Updated: now}
		r.AOR, r.CallID, r.CSeq = aor, u.CallID, u.CSeq
		v, err := json.Marshal(&r)
		if err != nil {
			return nil, fmt.Errorf("location/redis: encode binding: %w", err)
		}
		args = append(args, b.Key(), r.Expires, v)
	}
	vals, err := updateScript.Run(ctx, s.c, []string{Key(aor)}, args...).StringSlice()
	if err != nil {
		return nil, fail(err)
	}
	rs := make([]record, 0, len(vals))
	for _, v := range vals {
		if r, ok := decode(v); ok {
			rs = append(rs, r)
		}
	}
	return sorted(rs), nil
}

// Lookup implements location.Store with one HGETALL. A field that does not
// decode is treated as absent (the next Update drops it).
func (s *Store) Lookup(ctx context.Context, aor string) ([]location.Binding, error) {
	vals, err := s.c.HGetAll(ctx, Key(aor)).Result()
	if err != nil {
		return nil, fail(err)
	}
	now := s.now().UnixMilli()
	rs := make([]record, 0, len(vals))
	for _, v := range vals {
		if r, ok := decode(v); ok && r.Expires > now {
			rs = append(rs, r)
		}
	}
	return sorted(rs), nil
}

// Close implements location.Store; it does not close the client.
func (s *Store) Close() error { return nil }

// Watch subscribes to the changes of every AOR and returns a channel that
// receives the AOR of each Update that changed something, on any node,
// until ctx ends. The subscription is active when Watch returns; go-redis
// renews it after a lost connection, and changes made meanwhile are lost.
func (s *Store) Watch(ctx context.Context) (<-chan string, error) {
	ps := s.c.PSubscribe(ctx, keyPrefix+"{*}")
	if _, err := ps.Receive(ctx); err != nil {
		ps.Close()
		return nil, fail(err)
	}
	out := make(chan string)
	go func() {
		defer close(out)
		defer ps.Close()
		msgs := ps.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-msgs:
				if !ok {
					return
				}
				select {
				case out <- m.Payload:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

func decode(v string) (record, bool) {
	var r record
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		return record{}, false
	}
	r.Binding.Expires = time.UnixMilli(r.Expires)
	return r, true
}

// sorted returns the bindings of rs in Lookup order: highest q first, then
// most recently updated, then by key so the order is stable.
func sorted(rs []record) []location.Binding {
	if len(rs) == 0 {
		return nil
	}
	slices.SortFunc(rs, func(a, b record) int {
		return cmp.Or(
			cmp.Compare(b.Q, a.Q),
			cmp.Compare(b.Updated, a.Updated),
			cmp.Compare(a.Key(), b.Key()),
		)
	})
	out := make([]location.Binding, len(rs))
	for i := range rs {
		out[i] = rs[i].Binding
	}
	return out
}

// fail maps the script's error replies to the location errors; every other
// error, from the network, a timeout or Redis itself, makes the store
// unavailable.
func fail(err error) error {
	var re goredis.Error
	if errors.As(err, &re) {
		switch msg := re.Error(); {
		case strings.HasPrefix(msg, "STALE_CSEQ"):
			return location.ErrStaleCSeq
		case strings.HasPrefix(msg, "TOO_MANY_CONTACTS"):
			return location.ErrTooManyContacts
		}
	}
	return fmt.Errorf("location/redis: %w: %w", location.ErrUnavailable, err)
}

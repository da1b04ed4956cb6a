package redis

import (
	"cmp"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sipfed/sipfed/internal/redisbatch"
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

// Store is a location.Store in Redis: single server, Sentinel or Cluster.
//
// Each AOR is a hash (Key) with one field per device (Binding.Key) whose
// value is the rest of the binding as short JSON (wire), with expires in
// Unix milliseconds and the time of the update that set it. The key expires with its last binding.
// Errors talking to Redis wrap location.ErrUnavailable.
type Store struct {
	c     goredis.UniversalClient
	now   func() time.Time
	batch *redisbatch.Batcher // Update's scripts, pipelined under load
}

var _ location.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithClock makes Lookup read the time from now instead of time.Now
// (Update uses Update.Now). Key TTLs in Redis follow Redis' own clock.
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// WithMinReplicas makes Update wait until n replicas of the master that
// took the write have acknowledged it (Redis' WAIT, on the connection
// that wrote), for at most timeout, and fail with ErrUnavailable when
// fewer did: the registrar then answers 503 rather than 200, so a binding
// that was acknowledged survives the loss of its master (a Sentinel or
// Cluster failover promotes a replica that has it). Without it,
// replication is asynchronous and the last writes before a failover can
// be lost (the device's next registration restores its binding). n = 0:
// no wait.
func WithMinReplicas(n int, timeout time.Duration) Option {
	return func(s *Store) { s.batch.SetMinReplicas(n, timeout) }
}

// New returns a Store on client. The client stays the caller's: Close does
// not close it.
func New(client goredis.UniversalClient, opts ...Option) *Store {
	s := &Store{c: client, now: time.Now, batch: redisbatch.New(client, updateLua)}
	for _, o := range opts {
		o(s)
	}
	return s
}

// record is a binding read back, with the time of the update that set it
// (Lookup's order).
type record struct {
	location.Binding
	Updated int64 // Unix ms
}

// wire is the JSON value of a hash field, kept short because Redis keeps
// one per device: at a million registrations every byte is a megabyte.
// The AOR is the key's, and what the field says (Binding.Key: the
// contact, or the instance and reg-id) is not repeated. Q is absent when
// it is 1000 (a pointer, since 0 is a valid q), Transport when "udp".
//
// Values written before this format (a Binding's JSON with "aor",
// "contact", "expires" in Unix ms, "updated"…) are still read, through
// the long names below, so bindings outlive an upgrade; nodes older than
// this format do not read the new values, so every node of a domain is
// upgraded together.
type wire struct {
	Contact   string   `json:"c,omitempty"`
	Q         *int     `json:"q,omitempty"`
	Expires   int64    `json:"e,omitempty"` // Unix ms
	CallID    string   `json:"ci,omitempty"`
	CSeq      uint32   `json:"s,omitempty"`
	Path      []string `json:"p,omitempty"`
	Received  string   `json:"r,omitempty"`
	Transport string   `json:"t,omitempty"`
	NAT       bool     `json:"n,omitempty"`
	NodeID    string   `json:"o,omitempty"`
	UserAgent string   `json:"ua,omitempty"`
	Updated   int64    `json:"u,omitempty"` // Unix ms

	// The long names of the first format.
	OldContact  string   `json:"contact,omitempty"`
	OldInstance string   `json:"instance,omitempty"`
	OldRegID    int      `json:"reg_id,omitempty"`
	OldExpires  int64    `json:"expires,omitempty"`
	OldCallID   string   `json:"call_id,omitempty"`
	OldCSeq     uint32   `json:"cseq,omitempty"`
	OldPath     []string `json:"path,omitempty"`
	OldReceived string   `json:"received,omitempty"`
	OldTranspt  string   `json:"transport,omitempty"`
	OldNAT      bool     `json:"nat,omitempty"`
	OldNodeID   string   `json:"node,omitempty"`
	OldUpdated  int64    `json:"updated,omitempty"`
}

// encode returns the value of b's field, set at now by the REGISTER
// callID, cseq.
func encode(b *location.Binding, callID string, cseq uint32, now int64) ([]byte, error) {
	w := wire{
		Expires: b.Expires.UnixMilli(), CallID: callID, CSeq: cseq, Path: b.Path,
		Received: b.Received, NAT: b.NAT, NodeID: b.NodeID, UserAgent: b.UserAgent, Updated: now,
	}
	if b.InstanceID != "" {
		w.Contact = b.Contact
	}
	if b.Q != 1000 {
		q := b.Q
		w.Q = &q
	}
	if b.Transport != "udp" {
		w.Transport = b.Transport
		if w.Transport == "" {
			w.Transport = "-"
		}
	}
	return json.Marshal(&w)
}

// decode returns the binding of aor in field f with value v, and false
// when v does not decode.
func decode(aor, f, v string) (record, bool) {
	var w wire
	if err := json.Unmarshal([]byte(v), &w); err != nil {
		return record{}, false
	}
	b := location.Binding{AOR: aor, Q: 1000}
	if w.OldExpires != 0 || w.OldContact != "" { // the first format: every field long-named
		b.Contact, b.InstanceID, b.RegID = w.OldContact, w.OldInstance, w.OldRegID
		b.CallID, b.CSeq, b.Path = w.OldCallID, w.OldCSeq, w.OldPath
		b.Received, b.Transport, b.NAT, b.NodeID = w.OldReceived, w.OldTranspt, w.OldNAT, w.OldNodeID
		if w.Q != nil {
			b.Q = *w.Q
		}
		b.UserAgent = w.UserAgent
		b.Expires = time.UnixMilli(w.OldExpires)
		return record{Binding: b, Updated: w.OldUpdated}, true
	}
	switch {
	case strings.HasPrefix(f, "c:"):
		b.Contact = f[2:]
	case strings.HasPrefix(f, "i:"):
		i := strings.LastIndexByte(f, ';')
		if i < 0 || w.Contact == "" {
			return record{}, false
		}
		id, err := strconv.Atoi(f[i+1:])
		if err != nil {
			return record{}, false
		}
		b.Contact, b.InstanceID, b.RegID = w.Contact, f[2:i], id
	default:
		return record{}, false
	}
	if w.Q != nil {
		b.Q = *w.Q
	}
	b.Expires = time.UnixMilli(w.Expires)
	b.CallID, b.CSeq, b.Path = w.CallID, w.CSeq, w.Path
	b.Received, b.NAT, b.NodeID, b.UserAgent = w.Received, w.NAT, w.NodeID, w.UserAgent
	switch w.Transport {
	case "":
		b.Transport = "udp"
	case "-":
	default:
		b.Transport = w.Transport
	}
	return record{Binding: b, Updated: w.Updated}, true
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
	for i := range u.Set {
		b := &u.Set[i]
		v, err := encode(b, u.CallID, u.CSeq, now)
		if err != nil {
			return nil, fmt.Errorf("location/redis: encode binding: %w", err)
		}
		args = append(args, b.Key(), b.Expires.UnixMilli(), v)
	}
	reply, err := s.batch.Eval(ctx, []string{Key(aor)}, args)
	if err != nil {
		return nil, fail(err)
	}
	// The script's reply: field, value, field, value… as bulk strings.
	vals, _ := reply.([]any)
	rs := make([]record, 0, len(vals)/2)
	for i := 0; i+1 < len(vals); i += 2 {
		f, _ := vals[i].(string)
		v, _ := vals[i+1].(string)
		if r, ok := decode(aor, f, v); ok {
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
		if cc, ok := s.c.(*goredis.ClusterClient); ok {
			cc.ReloadState(ctx) // see reloadOnFailure
		}
		return nil, fail(err)
	}
	now := s.now().UnixMilli()
	rs := make([]record, 0, len(vals))
	for f, v := range vals {
		if r, ok := decode(aor, f, v); ok && r.Expires.UnixMilli() > now {
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

package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/sipfed/sipfed/location"
)

// NewStore returns an empty store for one subtest. The store must read the
// current time from now (the suite's fake clock) wherever it does not get
// it from Update.Now; Run closes it when the subtest ends.
type NewStore func(t *testing.T, now func() time.Time) location.Store

// Run runs the conformance suite against the stores newStore makes, one
// subtest per rule.
func Run(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		f    func(t *testing.T, s location.Store, c *clock)
	}{
		{"LookupUnknownAOREmpty", testLookupUnknownAOREmpty},
		{"UpdateReturnsCurrentBindings", testUpdateReturnsCurrentBindings},
		{"UpdateStampsAORCallIDAndCSeq", testUpdateStampsAORCallIDAndCSeq},
		{"RFC3261_10_3_Step7_SameCallIDLowerCSeqRejected", testSameCallIDLowerCSeqRejected},
		{"RFC3261_10_3_Step7_SameCallIDHigherCSeqRefreshes", testSameCallIDHigherCSeqRefreshes},
		{"RFC3261_10_3_Step7_OtherCallIDReplaces", testOtherCallIDReplaces},
		{"RFC3261_10_3_Step7_CSeqCheckedOnlyForTouchedBindings", testCSeqCheckedOnlyForTouchedBindings},
		{"RFC3261_10_3_Step6_RemoveAll", testRemoveAll},
		{"RFC3261_10_3_Step6_RemoveAllSameCallIDLowerCSeqRejected", testRemoveAllStale},
		{"ExpiresZeroRemoves", testExpiresZeroRemoves},
		{"SetAndRemoveSameKeyRemoves", testSetAndRemoveSameKeyRemoves},
		{"ExpiredBindingsNeverReturned", testExpiredBindingsNeverReturned},
		{"ExpiredSetActsAsRemoval", testExpiredSetActsAsRemoval},
		{"ExpiredBindingIgnoredByCSeqCheck", testExpiredBindingIgnoredByCSeqCheck},
		{"MaxContacts", testMaxContacts},
		{"MaxContactsLoweredStillRefreshes", testMaxContactsLowered},
		{"AtomicAbortLeavesNothingChanged", testAtomicAbort},
		{"LookupOrderHighestQFirst", testLookupOrder},
		{"RFC5626_6_InstanceIDKeysTheDevice", testInstanceIDKeysTheDevice},
		{"PathAndReceivedRoundTrip", testRoundTrip},
		{"ReturnedBindingsAreCopies", testReturnedBindingsAreCopies},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"ConcurrentUpdatesRespectMaxContacts", testConcurrentMaxContacts},
		{"IndependentAORs", testIndependentAORs},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			s := newStore(t, c.Now)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.f(t, s, c)
		})
	}
}

const (
	alice = "alice@a.example"
	bob   = "bob@a.example"
)

// clock is a fake clock that starts at the real time (so that Redis key
// TTLs, which follow the real clock, stay in the future) and moves only
// when told.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.UnixMilli(time.Now().UnixMilli())} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func bind(contact string, expires time.Time) location.Binding {
	return location.Binding{Contact: contact, Q: 1000, Expires: expires}
}

func key(contact string) string {
	b := location.Binding{Contact: contact}
	return b.Key()
}

func update(t *testing.T, s location.Store, aor string, u location.Update) []location.Binding {
	t.Helper()
	bs, err := s.Update(context.Background(), aor, u)
	if err != nil {
		t.Fatalf("Update(%s, Call-ID %s, CSeq %d): %v", aor, u.CallID, u.CSeq, err)
	}
	return bs
}

func updateErr(t *testing.T, s location.Store, aor string, u location.Update, want error) {
	t.Helper()
	bs, err := s.Update(context.Background(), aor, u)
	if !errors.Is(err, want) {
		t.Fatalf("Update(%s, Call-ID %s, CSeq %d) = %v, %v; want error %v", aor, u.CallID, u.CSeq, contacts(bs), err, want)
	}
	if bs != nil {
		t.Errorf("failed Update returned bindings %v", contacts(bs))
	}
}

func lookup(t *testing.T, s location.Store, aor string) []location.Binding {
	t.Helper()
	bs, err := s.Lookup(context.Background(), aor)
	if err != nil {
		t.Fatalf("Lookup(%s): %v", aor, err)
	}
	return bs
}

func contacts(bs []location.Binding) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.Contact
	}
	return out
}

// wantContacts checks the contacts of bs, in order.
func wantContacts(t *testing.T, what string, bs []location.Binding, want ...string) {
	t.Helper()
	got := contacts(bs)
	if len(got) != len(want) || (len(want) > 0 && !reflect.DeepEqual(got, want)) {
		t.Fatalf("%s: contacts %q, want %q", what, got, want)
	}
}

// wantSet checks the contacts of bs, in any order.
func wantSet(t *testing.T, what string, bs []location.Binding, want ...string) {
	t.Helper()
	got := map[string]int{}
	for _, b := range bs {
		got[b.Contact]++
	}
	ok := len(bs) == len(want)
	for _, c := range want {
		if got[c] != 1 {
			ok = false
		}
	}
	if !ok {
		t.Fatalf("%s: contacts %q, want %q in any order", what, contacts(bs), want)
	}
}

func find(t *testing.T, bs []location.Binding, contact string) location.Binding {
	t.Helper()
	for _, b := range bs {
		if b.Contact == contact {
			return b
		}
	}
	t.Fatalf("no binding for %s in %q", contact, contacts(bs))
	return location.Binding{}
}

// normal returns b with Expires in UTC and an empty Path as nil, so that
// bindings can be compared with reflect.DeepEqual.
func normal(b location.Binding) location.Binding {
	b.Expires = time.UnixMilli(b.Expires.UnixMilli()).UTC()
	if len(b.Path) == 0 {
		b.Path = nil
	}
	return b
}

func wantBinding(t *testing.T, what string, got, want location.Binding) {
	t.Helper()
	if g, w := normal(got), normal(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

func testLookupUnknownAOREmpty(t *testing.T, s location.Store, _ *clock) {
	if bs := lookup(t, s, alice); len(bs) != 0 {
		t.Fatalf("Lookup of unknown AOR = %q, want none", contacts(bs))
	}
}

func testUpdateReturnsCurrentBindings(t *testing.T, s location.Store, c *clock) {
	now := c.Now()
	bs := update(t, s, alice, location.Update{CallID: "c1", CSeq: 1, Now: now,
		Set: []location.Binding{bind("sip:alice@10.0.0.1", now.Add(time.Hour))}})
	wantContacts(t, "first update", bs, "sip:alice@10.0.0.1")
	bs = update(t, s, alice, location.Update{CallID: "c2", CSeq: 1, Now: now,
		Set: []location.Binding{bind("sip:alice@10.0.0.2", now.Add(time.Hour))}})
	wantSet(t, "second update", bs, "sip:alice@10.0.0.1", "sip:alice@10.0.0.2")
	wantSet(t, "lookup", lookup(t, s, alice), "sip:alice@10.0.0.1", "sip:alice@10.0.0.2")
	bs = update(t, s, alice, location.Update{CallID: "c3", CSeq: 1, Now: now})
	wantSet(t, "empty update (a query, RFC 3261 §10.2.3)", bs, "sip:alice@10.0.0.1", "sip:alice@10.0.0.2")
}

func testUpdateStampsAORCallIDAndCSeq(t *testing.T, s location.Store, c *clock) {
	now := c.Now()
	b := bind("sip:alice@10.0.0.1", now.Add(time.Hour))
	b.AOR, b.CallID, b.CSeq = "mallory@b.example", "other", 99
	bs := update(t, s, alice, location.Update{CallID: "c1", CSeq: 7, Now: now, Set: []location.Binding{b}})
	for what, bs := range map[string][]location.Binding{"update": bs, "lookup": lookup(t, s, alice)} {
		got := find(t, bs, b.Contact)
		if got.AOR != alice || got.CallID != "c1" || got.CSeq != 7 {
			t.Errorf("%s: AOR %q Call-ID %q CSeq %d, want %q c1 7", what, got.AOR, got.CallID, got.CSeq, alice)
		}
	}
}

func testSameCallIDLowerCSeqRejected(t *testing.T, s location.Store, c *clock) {
	now := c.Now()
	const contact = "sip:alice@10.0.0.1"
	update(t, s, alice, location.Update{CallID: "c1", CSeq: 5, Now: now,
		Set: []location.Binding{bind(contact, now.Add(time.Hour))}})
	for _, cseq := range []uint32{4, 5} {
		updateErr(t, s, alice, location.Update{CallID: "c1", CSeq: cseq, Now: now,
			Set: []location.Binding{bind(contact, now.Add(2*time.Hour))}}, location.ErrStaleCSeq)
		updateErr(t, s, alice, location.Update{CallID: "c1", CSeq: cseq, Now: now,
			Remove: []string{key(contact)}}, location.ErrStaleCSeq)
	}
	got := find(t, lookup(t, s, alice), contact)
	if got.CSeq != 5 || !got.Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("after stale updates: CSeq %d expires %v, want 5 and %v", got.CSeq, got.Expires, now.Add(time.Hour))
	}
}

func testSameCallIDHigherCSeqRefreshes(t *testing.T, s location.Store, c *clock) {
	now := c.Now()
	const contact = "sip:alice@10.0.0.1"
	update(t, s, alice, location.Update{CallID: "c1", CSeq: 5, Now: now,
		Set: []location.Binding{bind(contact, now.Add(time.Hour))}})
	c.Advance(time.Minute)
	now = c.Now()
	bs := update(t, s, alice, location.Update{CallID: "c1", CSeq: 6, Now: now,
		Set: []location.Binding{bind(contact, now.Add(time.Hour))}})
	wantContacts(t, "refresh", bs, contact)
	got := find(t, lookup(t, s, alice), contact)
	if got.CSeq != 6 || !got.Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("after refresh: CSeq %d expires %v, want 6 and %v", got.CSeq, got.Expires, now.Add(time.Hour))
	}
}

func testOtherCallIDReplaces(t *testing.T, s location.Store, c *clock) {
	now := c.Now()
	const contact = "sip:alice@10.0.0.1"
	update(t, s, alice, location.Update{CallID: "c1", CSeq: 50, Now: now,
		Set: []location.Binding{bind(contact, now.Add(time.Hour))}})
	// A rebooted phone starts a new Call-ID with a low CSeq.
	bs := update(t, s, alice, location.Update{CallID: "c2", CSeq: 1, Now: now,
		Set: []location.Binding{bind(contact, now.Add(30*time.Minute))}})
	wantContacts(t, "update", bs, contact)
	got := find(t, lookup(t, s, alice), contact)
	if got.CallID != "c2" || got.CSeq != 1 || !got.Expires.Equal(now.Add(30*time.Minute)) {
		t.Fatalf("binding %+v, want Call-ID c2, CSeq 1, expires %v", got, now.Add(30*time.Minute))
	}
}

func testCSeqCheckedOnlyForTouchedBindings(t *testing.T, s location.Store, c *clock) {
	now := c.Now()
	update(t, s, alice, location.Update{CallID: "c1", CSeq: 9, Now: now,
		Set: []location.Binding{bind("sip:alice@10.0.0.1", now.Add(time.Hour))}})
	bs := update(t, s, alice, location.Update{CallID: "c1", CSeq: 3, Now: now,
		Set: []location.Binding{bind("sip:alice@10.0.0.2", now.Add(time.Hour))}})
	wantSet(t, "update", bs, "sip:alice@10.0.0.1", "sip:alice@10.0.0.2")
}

func testRemoveAll(t *testing.T, s location.Store, c *clock) {
	now := c.Now()
	update(t, s, alice, location.Update{CallID: "c1", CSeq: 5, Now: now,
		Set: []location.Binding{bind("sip:alice@10.0.0.1", now.Add(time.Hour))}})
	update(t, s, alice, location.Update{CallID: "c2", CSeq: 9, Now: now,
		Set: []location.Binding{bind("sip:alice@10.0.0.2", now.Add(time.Hour))}})
	// Other Call-ID (c2, CSeq 9): removed regardless; same Call-ID: higher CSeq.
	bs := update(t, s, alice, location.Update{CallID: "c1", CSeq: 6, Now: now, RemoveAll: true})
	wantContacts(t, "update", bs)
	wantContacts(t, "lookup", lookup(t, s, alice))
	bs = update(t, s, alice, location.Update{CallID: "c1", CSeq: 7, Now: now, RemoveAll: true})
	wantContacts(t, "remove all of nothing", bs)
}

func testRemoveAllStale(t *testing.T, s location.Store, c *clock) {
	now := c.Now()
	update(t, s, alice, location.Update{CallID: "c1", CSeq: 5, Now: now,
		Set: []location.Binding{bind("sip:alice@10.0.0.1", now.Add(time.Hour))}})
	update(t, s, alice, location.Update{CallID: "c2", CSeq: 9, Now: now,
		Set: []location.Binding{bind("sip:alice@10.0.0.2", now.Add(time.Hour))}})
	updateErr(t, s, alice, location.Update{CallID: "c2", CSeq: 9, Now: now, RemoveAll: true}, location.ErrStaleCSeq)
	wantSet(t, "lookup", lookup(t, s, alice), "sip:alice@10.0.0.1", "sip:alice@10.0.0.2")
}

func testExpiresZeroRemoves(t *testing.T, s location.Store, c *clock) {
	now := c.Now()
	update(t, s, alice, location.Update{CallID: "c1", CSeq: 1, Now: now, Set: []location.Binding{
		bind("sip:alice@10.0.0.1", now.Add(time.Hour)),
		bind("sip:alice@10.0.0.2", now.Add(time.Hour)),
	}})
	bs := update(t, s, alice, location.Update{CallID: "c1", CSeq: 2, Now: now, Remove: []string{key("sip:alice@10.0.0.1")}})
	wantContacts(t, "update", bs, "sip:alice@10.0.0.2")
	wantContacts(t, "lookup", lookup(t, s, alice), "sip:alice@10.0.0.2")
	bs = update(t, s, alice, location.Update{CallID: "c1", CSeq: 3, Now: now, Remove: []string{key("sip:alice@10.0.0.9")}})
	wantContacts(t, "removing an unknown contact", bs, "sip:alice@10.0.0.2")
	bs = update(t, s, alice, location.Update{CallID: "c1", CSeq: 4, Now: now, Remove: []string{key("sip:alice@10.0.0.2")}})
	wantContacts(t, "removing the last contact", bs)
	wantContacts(t, "lookup", lookup(t, s, alice))
}

func testSetAndRemoveSameKeyRemoves(t *testing.T, s location.Store, c *clock) {
	now := c.Now()
	const contact = "sip:alice@10.0.0.1"
	update(t, s, alice, location.Update{CallID: "c1", CSeq: 1, Now: now,
		Set: []location.Binding{bind(contact, now.Add(time.Hour))}})
	bs := update(t, s, alice, location.Update{CallID: "c1", CSeq: 2, Now: now,
		Set: []location.Binding{bind(contact, now.Add(2*time.Hour))}, Remove: []string{key(contact)}})
	wantContacts(t, "update", bs)
	wantContacts(t, "lookup", lookup(t, s, alice))
}

func testExpiredBindingsNeverReturned(t *testing.T, s location.Store, c *clock) {
	now := c.Now()
	update(t, s, alice, location.Update{CallID: "c1", CSeq: 1, Now: now, Set: []location.Binding{
		bind("sip:alice@10.0.0.1", now.Add(10*time.Second)),
		bind("sip:alice@10.0.0.2", now.Add(time.Hour)),
	}})
	c.Advance(10*time.Second - time.Millisecond)
	wantSet(t, "lookup 1 ms before expiry", lookup(t, s, alice), "sip:alice@10.0.0.1", "sip:alice@10.0.0.2")
	c.Advance(time.Millisecond)
	wantContacts(t, "lookup at expiry", lookup(t, s, alice), "sip:alice@10.0.0.2")
	bs := update(t, s, alice, location.Update{CallID: "c2", CSeq: 1, Now: c.Now(),
		Set: []location.Binding{bind("sip:alice@10.0.0.3", c.Now().Add(time.Hour))}})
	wantSet(t, "update after expiry", bs, "sip:alice@10.0.0.2", "sip:alice@10.0.0.3")
	c.Advance(2 * time.Hour)
	wantContacts(t, "lookup after all expired", lookup(t, s, alice))
	bs = update(t, s, alice, location.Update{CallID: "c2", CSeq: 2, Now: c.Now()})
	wantContacts(t, "query after all expired", bs)
}

func testExpiredSetActsAsRemoval(t *testing.T, s location.Store, c *clock) {
	now := c.Now()
	update(t, s, alice, location.Update{CallID: "c1", CSeq: 1, Now: now, Set: []location.Binding{
		bind("sip:alice@10.0.0.1", now.Add(time.Hour)),
		bind("sip:alice@10.0.0.2", now.Add(time.Hour)),
	}})
	bs := update(t, s, alice, location.Update{CallID: "c1", CSeq: 2, Now: now, Set: []location.Binding{
		bind("sip:alice@10.0.0.1", now),
		bind("sip:alice@10.0.0.3", now.Add(-time.Second)),
	}})
	wantContacts(t, "update", bs, "sip:alice@10.0.0.2")
	wantContacts(t, "lookup", lookup(t, s, alice), "sip:alice@10.0.0.2")
}

func testExpiredBindingIgnoredByCSeqCheck(t *testing.T, s location.Store, c *clock) {
	now := c.Now()
	const contact = "sip:alice@10.0.0.1"
	update(t, s, alice, location.Update{CallID: "c1", CSeq: 9, Now: now,
		Set: []location.Binding{bind(contact, now.Add(time.Minute))}})
	c.Advance(time.Minute)
	bs := update(t, s, alice, location.Update{CallID: "c1", CSeq: 2, Now: c.Now(),
		Set: []location.Binding{bind(contact, c.Now().Add(time.Hour))}})
	wantContacts(t, "update", bs, contact)
	if got := find(t, bs, contact); got.CSeq != 2 {
		t.Fatalf("CSeq %d, want 2", got.CSeq)
	}
}

func testMaxContacts(t *testing.T, s location.Store, c *clock) {
	now := c.Now()
	const limit = 2
	a, b, cc, d := "sip:alice@10.0.0.1", "sip:alice@10.0.0.2", "sip:alice@10.0.0.3", "sip:alice@10.0.0.4"

	updateErr(t, s, bob, location.Update{CallID: "b1", CSeq: 1, Now: now, MaxContacts: limit, Set: []location.Binding{
		bind(a, now.Add(time.Hour)), bind(b, now.Add(time.Hour)), bind(cc, now.Add(time.Hour)),
	}}, location.ErrTooManyContacts)
	wantContacts(t, "lookup after a first update over the limit", lookup(t, s, bob))

	update(t, s, alice, location.Update{CallID: "c1", CSeq: 1, Now: now, MaxContacts: limit, Set: []location.Binding{
		bind(a, now.Add(time.Hour)), bind(b, now.Add(time.Hour)),
	}})
	// Adding beyond the limit fails and changes nothing, not even the refresh of a.
	updateErr(t, s, alice, location.Update{CallID: "c1", CSeq: 2, Now: now, MaxContacts: limit, Set: []location.Binding{
		bind(a, now.Add(2*time.Hour)), bind(cc, now.Add(time.Hour)),
	}}, location.ErrTooManyContacts)
	got := lookup(t, s, alice)
	wantSet(t, "lookup after adding beyond the limit", got, a, b)
	if e := find(t, got, a).Expires; !e.Equal(now.Add(time.Hour)) {
		t.Fatalf("a expires %v after a failed update, want %v", e, now.Add(time.Hour))
	}
	// Refreshing at the limit is fine.
	bs := update(t, s, alice, location.Update{CallID: "c1", CSeq: 3, Now: now, MaxContacts: limit, Set: []location.Binding{
		bind(a, now.Add(2*time.Hour)), bind(b, now.Add(2*time.Hour)),
	}})
	wantSet(t, "refresh at the limit", bs, a, b)
	// Removing and adding in one update is counted after the update.
	bs = update(t, s, alice, location.Update{CallID: "c1", CSeq: 4, Now: now, MaxContacts: limit,
		Remove: []string{key(a)}, Set: []location.Binding{bind(cc, now.Add(time.Hour))}})
	wantSet(t, "remove a, add c", bs, b, cc)
	updateErr(t, s, alice, location.Update{CallID: "c1", CSeq: 5, Now: now, MaxContacts: limit,
		Remove: []string{key(b)}, Set: []location.Binding{bind(a, now.Add(time.Hour)), bind(d, now.Add(time.Hour))}},
		location.ErrTooManyContacts)
	wantSet(t, "lookup after remove one, add two", lookup(t, s, alice), b, cc)
	// Expired bindings do not count.
	c.Advance(90 * time.Minute)
	bs = update(t, s, alice, location.Update{CallID: "c1", CSeq: 6, Now: c.Now(), MaxContacts: limit,
		Set: []location.Binding{bind(d, c.Now().Add(time.Hour))}})
	wantSet(t, "add after one expired", bs, b, d)
}

func testMaxContactsLowered(t *testing.T, s location.Store, c *clock) {
	now := c.Now()
	a, b, cc, d := "sip:alice@10.0.0.1", "sip:alice@10.0.0.2", "sip:alice@10.0.0.3", "sip:alice@10.0.0.4"
	update(t, s, alice, location.Update{CallID: "c1", CSeq: 1, Now: now, Set: []location.Binding{
		bind(a, now.Add(time.Hour)), bind(b, now.Add(time.Hour)), bind(cc, now.Add(time.Hour)),
	}})
	bs := update(t, s, alice, location.Update{CallID: "c1", CSeq: 2, Now: now, MaxContacts: 2,
		Set: []location.Binding{bind(a, now.Add(2*time.Hour))}})
	wantSet(t, "refresh above a lowered limit", bs, a, b, cc)
	bs = update(t, s, alice, location.Update{CallID: "c1", CSeq: 3, Now: now, MaxContacts: 2,
		Remove: []string{key(b)}, Set: []location.Binding{bind(d, now.Add(time.Hour))}})
	wantSet(t, "replace above a lowered limit", bs, a, cc, d)
	updateErr(t, s, alice, location.Update{CallID: "c1", CSeq: 4, Now: now, MaxContacts: 2,
		Set: []location.Binding{bind(b, now.Add(time.Hour))}}, location.ErrTooManyContacts)
}

func testAtomicAbort(t *testing.T, s location.Store, c *clock) {
	now := c.Now()
	a, b, cc := "sip:alice@10.0.0.1", "sip:alice@10.0.0.2", "sip:alice@10.0.0.3"
	update(t, s, alice, location.Update{CallID: "c1", CSeq: 5, Now: now, Set: []location.Binding{
		bind(a, now.Add(time.Hour)), bind(b, now.Add(time.Hour)),
	}})
	update(t, s, alice, location.Update{CallID: "c2", CSeq: 5, Now: now, Set: []location.Binding{bind(cc, now.Add(time.Hour))}})
	before := lookup(t, s, alice)
	// The stale binding (c, same Call-ID c2, same CSeq) comes last, so that
	// a store applying contacts one by one would already have changed a,
	// removed b and added d.
	updateErr(t, s, alice, location.Update{CallID: "c2", CSeq: 5, Now: now,
		Remove: []string{key(b)},
		Set: []location.Binding{
			bind(a, now.Add(3*time.Hour)),
			bind("sip:alice@10.0.0.4", now.Add(time.Hour)),
			bind(cc, now.Add(3*time.Hour)),
		}}, location.ErrStaleCSeq)
	after := lookup(t, s, alice)
	if len(after) != len(before) {
		t.Fatalf("after an aborted update: %q, want %q", contacts(after), contacts(before))
	}
	for i := range before {
		wantBinding(t, fmt.Sprintf("binding %d after an aborted update", i), after[i], before[i])
	}
}

func testLookupOrder(t *testing.T, s location.Store, c *clock) {
	now := c.Now()
	set := func(q int, contact string) location.Binding {
		b := bind(contact, c.Now().Add(time.Hour))
		b.Q = q
		return b
	}
	update(t, s, alice, location.Update{CallID: "c1", CSeq: 1, Now: now, Set: []location.Binding{
		set(500, "sip:a@10.0.0.1"), set(1000, "sip:b@10.0.0.2"),
	}})
	c.Advance(time.Second)
	bs := update(t, s, alice, location.Update{CallID: "c2", CSeq: 1, Now: c.Now(), Set: []location.Binding{
		set(1000, "sip:c@10.0.0.3"), set(100, "sip:d@10.0.0.4"),
	}})
	order := []string{"sip:c@10.0.0.3", "sip:b@10.0.0.2", "sip:a@10.0.0.1", "sip:d@10.0.0.4"}
	wantContacts(t, "update", bs, order...)
	wantContacts(t, "lookup", lookup(t, s, alice), order...)
	c.Advance(time.Second)
	update(t, s, alice, location.Update{CallID: "c1", CSeq: 2, Now: c.Now(), Set: []location.Binding{
		set(1000, "sip:b@10.0.0.2"),
	}})
	wantContacts(t, "lookup after refreshing b", lookup(t, s, alice),
		"sip:b@10.0.0.2", "sip:c@10.0.0.3", "sip:a@10.0.0.1", "sip:d@10.0.0.4")
}

func testInstanceIDKeysTheDevice(t *testing.T, s location.Store, c *clock) {
	now := c.Now()
	const inst = "urn:uuid:00000000-0000-1000-8000-000a95a0e128"
	dev := func(contact string, regID int) location.Binding {
		b := bind(contact, now.Add(time.Hour))
		b.InstanceID, b.RegID = inst, regID
		return b
	}
	update(t, s, alice, location.Update{CallID: "c1", CSeq: 1, Now: now, Set: []location.Binding{
		dev("sip:alice@192.0.2.1:5060;transport=tcp", 1),
		bind("sip:alice@192.0.2.1:5060;transport=tcp", now.Add(time.Hour)),
	}})
	// Behind a new NAT binding the same device registers a new contact URI.
	bs := update(t, s, alice, location.Update{CallID: "c1", CSeq: 2, Now: now, Set: []location.Binding{
		dev("sip:alice@198.51.100.7:41000;transport=tcp", 1),
	}})
	wantSet(t, "update", bs, "sip:alice@198.51.100.7:41000;transport=tcp", "sip:alice@192.0.2.1:5060;transport=tcp")
	if got := find(t, bs, "sip:alice@198.51.100.7:41000;transport=tcp"); got.InstanceID != inst || got.RegID != 1 {
		t.Fatalf("binding %+v lost its instance", got)
	}
	// A second flow (reg-id 2) of the same instance is a binding of its own.
	bs = update(t, s, alice, location.Update{CallID: "c1", CSeq: 3, Now: now, Set: []location.Binding{
		dev("sip:alice@203.0.113.9:5061;transport=tls", 2),
	}})
	if len(bs) != 3 {
		t.Fatalf("after a second flow: %q, want 3 bindings", contacts(bs))
	}
	bs = update(t, s, alice, location.Update{CallID: "c1", CSeq: 4, Now: now, Remove: []string{instanceKey(inst, 1)}})
	wantSet(t, "after removing flow 1", bs, "sip:alice@203.0.113.9:5061;transport=tls", "sip:alice@192.0.2.1:5060;transport=tcp")
}

func testRoundTrip(t *testing.T, s location.Store, c *clock) {
	now := c.Now()
	want := location.Binding{
		AOR:        alice,
		Contact:    `sip:alice@[2001:db8::1]:5062;transport=ws;ob;x="a b"`,
		InstanceID: "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
		RegID:      3,
		Q:          700,
		Expires:    now.Add(time.Hour + 123*time.Millisecond),
		CallID:     "a84b4c76e66710@pc33.a.example",
		CSeq:       4294967295,
		Path:       []string{"<sip:edge1.a.example;lr>", `<sip:P2@edge2.a.example;lr;ob;x="y,z">`},
		Received:   "[2001:db8::1]:49152",
		Transport:  "wss",
		NAT:        true,
		NodeID:     "node-7",
		UserAgent:  `Zoiper "5.6" (Linux) ünïcode`,
	}
	in := want
	in.Path = append([]string(nil), want.Path...)
	// Sub-millisecond precision is dropped.
	in.Expires = want.Expires.Add(456 * time.Microsecond)
	bs := update(t, s, alice, location.Update{CallID: want.CallID, CSeq: want.CSeq, Now: now, Set: []location.Binding{in}})
	if len(bs) != 1 {
		t.Fatalf("update returned %q", contacts(bs))
	}
	wantBinding(t, "update", bs[0], want)
	got := lookup(t, s, alice)
	if len(got) != 1 {
		t.Fatalf("lookup returned %q", contacts(got))
	}
	wantBinding(t, "lookup", got[0], want)
	if !got[0].Expires.Equal(want.Expires) {
		t.Fatalf("expires %v, want %v", got[0].Expires, want.Expires)
	}
}

func testReturnedBindingsAreCopies(t *testing.T, s location.Store, c *clock) {
	now := c.Now()
	b := bind("sip:alice@10.0.0.1", now.Add(time.Hour))
	b.Path = []string{"<sip:edge.a.example;lr>"}
	set := []location.Binding{b}
	bs := update(t, s, alice, location.Update{CallID: "c1", CSeq: 1, Now: now, Set: set})
	set[0].Path[0] = "changed by the caller"
	bs[0].Path[0] = "changed by the caller"
	got := lookup(t, s, alice)
	got[0].Path[0] = "changed by the caller"
	if p := lookup(t, s, alice)[0].Path[0]; p != "<sip:edge.a.example;lr>" {
		t.Fatalf("Path %q after callers changed their copies", p)
	}
}

func testConcurrentUpdates(t *testing.T, s location.Store, c *clock) {
	const n = 16
	now := c.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := s.Update(context.Background(), alice, location.Update{
				CallID: fmt.Sprintf("call-%d", i), CSeq: 1, Now: now,
				Set: []location.Binding{bind(fmt.Sprintf("sip:alice@10.0.0.%d", i), now.Add(time.Hour))},
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Update: %v", err)
		}
	}
	if bs := lookup(t, s, alice); len(bs) != n {
		t.Fatalf("%d bindings after %d concurrent registrations: %q", len(bs), n, contacts(bs))
	}
}

func testConcurrentMaxContacts(t *testing.T, s location.Store, c *clock) {
	const n, limit = 16, 5
	now := c.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := s.Update(context.Background(), alice, location.Update{
				CallID: fmt.Sprintf("call-%d", i), CSeq: 1, Now: now, MaxContacts: limit,
				Set: []location.Binding{bind(fmt.Sprintf("sip:alice@10.0.0.%d", i), now.Add(time.Hour))},
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	ok := 0
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, location.ErrTooManyContacts):
			t.Fatalf("concurrent Update: %v", err)
		}
	}
	if bs := lookup(t, s, alice); ok != limit || len(bs) != limit {
		t.Fatalf("%d updates succeeded, %d bindings stored; want %d and %d", ok, len(bs), limit, limit)
	}
}

func testIndependentAORs(t *testing.T, s location.Store, c *clock) {
	now := c.Now()
	const contact = "sip:phone@10.0.0.1"
	update(t, s, alice, location.Update{CallID: "c1", CSeq: 5, Now: now, MaxContacts: 1,
		Set: []location.Binding{bind(contact, now.Add(time.Hour))}})
	// The same device key and Call-ID in another AOR is another binding.
	update(t, s, bob, location.Update{CallID: "c1", CSeq: 1, Now: now, MaxContacts: 1,
		Set: []location.Binding{bind(contact, now.Add(2*time.Hour))}})
	if got := find(t, lookup(t, s, alice), contact); got.CSeq != 5 || !got.Expires.Equal(now.Add(time.Hour)) || got.AOR != alice {
		t.Fatalf("alice's binding changed by bob's update: %+v", got)
	}
	update(t, s, alice, location.Update{CallID: "c1", CSeq: 6, Now: now, RemoveAll: true})
	wantContacts(t, "alice after removing all", lookup(t, s, alice))
	got := lookup(t, s, bob)
	wantContacts(t, "bob after alice removed all", got, contact)
	if got[0].AOR != bob {
		t.Fatalf("bob's binding has AOR %q", got[0].AOR)
	}
}

func instanceKey(instance string, regID int) string {
	b := location.Binding{InstanceID: instance, RegID: regID}
	return b.Key()
}

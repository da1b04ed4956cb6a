package memory

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sipfed/sipfed/location"
)

func (s *Store) aors() int {
	n := 0
	for i := range s.parts {
		s.parts[i].mu.Lock()
		n += len(s.parts[i].aors)
		s.parts[i].mu.Unlock()
	}
	return n
}

// TestSweeperDropsExpiredAORs checks that AORs nobody touches again do not
// keep memory once their bindings expired.
func TestSweeperDropsExpiredAORs(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	s := New(WithClock(clock), WithSweepInterval(5*time.Millisecond))
	defer s.Close()
	for _, aor := range []string{"a@a.example", "b@a.example", "c@a.example"} {
		exp := now.Add(time.Minute)
		if aor == "c@a.example" {
			exp = now.Add(time.Hour)
		}
		_, err := s.Update(context.Background(), aor, location.Update{CallID: "c", CSeq: 1, Now: now,
			Set: []location.Binding{{Contact: "sip:" + aor, Expires: exp}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for s.aors() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d AORs held a while after two expired, want 1", s.aors())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLookupDropsExpiredAOR(t *testing.T) {
	now := time.Now()
	later := now.Add(time.Hour)
	clock := &now
	s := New(WithClock(func() time.Time { return *clock }), WithSweepInterval(0))
	defer s.Close()
	_, err := s.Update(context.Background(), "a@a.example", location.Update{CallID: "c", CSeq: 1, Now: now,
		Set: []location.Binding{{Contact: "sip:a@10.0.0.1", Expires: now.Add(time.Minute)}}})
	if err != nil {
		t.Fatal(err)
	}
	clock = &later
	if bs, err := s.Lookup(context.Background(), "a@a.example"); err != nil || len(bs) != 0 {
		t.Fatalf("Lookup = %v, %v; want nothing", bs, err)
	}
	if n := s.aors(); n != 0 {
		t.Fatalf("%d AORs held after Lookup found all expired, want 0", n)
	}
}

package memory_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sipfed/sipfed/location"
	"github.com/sipfed/sipfed/location/memory"
	"github.com/sipfed/sipfed/location/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) location.Store {
		return memory.New(memory.WithClock(now))
	})
}

func TestCanceledContext(t *testing.T) {
	s := memory.New()
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Lookup(ctx, "alice@a.example"); err == nil {
		t.Fatal("Lookup with a canceled context succeeded")
	}
	if _, err := s.Update(ctx, "alice@a.example", location.Update{Now: time.Now()}); err == nil {
		t.Fatal("Update with a canceled context succeeded")
	}
}

// BenchmarkUpdate refreshes one of 1000 AORs' two bindings per operation,
// as a registrar does for each REGISTER.
func BenchmarkUpdate(b *testing.B) {
	s := memory.New()
	defer s.Close()
	benchUpdate(b, s)
}

// BenchmarkLookup looks up one of 1000 AORs with two bindings each, as a
// proxy does for each INVITE to a local user.
func BenchmarkLookup(b *testing.B) {
	s := memory.New()
	defer s.Close()
	benchLookup(b, s)
}

const benchAORs = 1000

func benchSeed(b *testing.B, s location.Store) {
	ctx := context.Background()
	now := time.Now()
	for i := range benchAORs {
		aor := fmt.Sprintf("user%d@a.example", i)
		_, err := s.Update(ctx, aor, location.Update{CallID: "seed", CSeq: 1, Now: now, Set: []location.Binding{
			{Contact: "sip:" + aor + ";transport=tcp", Q: 1000, Expires: now.Add(time.Hour), Received: "192.0.2.1:5060", Transport: "tcp"},
			{Contact: "sip:desk@10.0.0.1", Q: 500, Expires: now.Add(time.Hour), Path: []string{"<sip:edge.a.example;lr>"}},
		}})
		if err != nil {
			b.Fatal(err)
		}
	}
}

func benchUpdate(b *testing.B, s location.Store) {
	benchSeed(b, s)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		aor := fmt.Sprintf("user%d@a.example", i%benchAORs)
		now := time.Now()
		_, err := s.Update(ctx, aor, location.Update{CallID: "bench", CSeq: uint32(i + 1), Now: now, MaxContacts: 10, Set: []location.Binding{
			{Contact: "sip:" + aor + ";transport=tcp", Q: 1000, Expires: now.Add(time.Hour), Received: "192.0.2.1:5060", Transport: "tcp"},
		}})
		if err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func benchLookup(b *testing.B, s location.Store) {
	benchSeed(b, s)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		bs, err := s.Lookup(ctx, fmt.Sprintf("user%d@a.example", i%benchAORs))
		if err != nil || len(bs) != 2 {
			b.Fatal(len(bs), err)
		}
		i++
	}
}

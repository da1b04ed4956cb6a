package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sipfed/sipfed/location"
)

// benchAORs is the number of AORs the benchmarks spread their work over.
const benchAORs = 1000

// BenchUpdate measures Update as a registrar makes it for each REGISTER:
// one of 1000 AORs with two bindings refreshes one of them.
func BenchUpdate(b *testing.B, s location.Store) {
	benchSeed(b, s)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		aor := fmt.Sprintf("user%d@a.example", i%benchAORs)
		now := time.Now()
		_, err := s.Update(ctx, aor, location.Update{CallID: "bench", CSeq: uint32(i + 1), Now: now, MaxContacts: 10,
			Set: []location.Binding{benchBinding(aor, now)}})
		if err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchLookup measures Lookup as a proxy makes it for each INVITE to a
// local user: one of 1000 AORs with two bindings each.
func BenchLookup(b *testing.B, s location.Store) {
	benchSeed(b, s)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		bs, err := s.Lookup(ctx, fmt.Sprintf("user%d@a.example", i%benchAORs))
		if err != nil || len(bs) != 2 {
			b.Fatalf("Lookup = %d bindings, %v; want 2", len(bs), err)
		}
		i++
	}
}

func benchBinding(aor string, now time.Time) location.Binding {
	return location.Binding{
		Contact: "sip:" + aor + ";transport=tcp", Q: 1000, Expires: now.Add(time.Hour),
		InstanceID: "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", RegID: 1,
		Received: "192.0.2.1:49152", Transport: "tcp", NodeID: "node-1", UserAgent: "bench/1.0",
	}
}

func benchSeed(b *testing.B, s location.Store) {
	b.Helper()
	ctx := context.Background()
	now := time.Now()
	for i := range benchAORs {
		aor := fmt.Sprintf("user%d@a.example", i)
		_, err := s.Update(ctx, aor, location.Update{CallID: "seed", CSeq: 1, Now: now, Set: []location.Binding{
			benchBinding(aor, now),
			{Contact: "sip:desk@10.0.0.1", Q: 500, Expires: now.Add(time.Hour), Path: []string{"<sip:edge.a.example;lr>"}},
		}})
		if err != nil {
			b.Fatal(err)
		}
	}
}

package memory_test

import (
	"context"
	"fmt"
	"runtime"
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

// BenchmarkUpdate measures one REGISTER's Update.
func BenchmarkUpdate(b *testing.B) {
	s := memory.New()
	defer s.Close()
	storetest.BenchUpdate(b, s)
}

// BenchmarkLookup measures one INVITE's Lookup.
func BenchmarkLookup(b *testing.B) {
	s := memory.New()
	defer s.Close()
	storetest.BenchLookup(b, s)
}

// BenchmarkHeapPerBinding fills the store with 1,000,000 AORs of one
// binding each, shaped like real ones (a UDP phone behind NAT), and
// reports the heap they hold after a GC (heap-B/binding). Lookups stay
// one map access and a copy.
func BenchmarkHeapPerBinding(b *testing.B) {
	const n = 1_000_000
	for range b.N {
		s := memory.New(memory.WithSweepInterval(0))
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		now := time.Now()
		for i := range n {
			aor := fmt.Sprintf("user%06d@a.example", i)
			s.Update(context.Background(), aor, location.Update{CallID: fmt.Sprintf("%08x-4b1c-9e2f-%012x", i, i), CSeq: 2, Now: now, Set: []location.Binding{{
				Contact: fmt.Sprintf("sip:user%06d@192.168.1.%d:5060;transport=udp", i, i%250), Q: 1000, Expires: now.Add(time.Hour),
				Received: fmt.Sprintf("203.0.113.%d:%d", i%250, 40000+i%20000), Transport: "udp", NAT: true, NodeID: "node-1", UserAgent: "baresip v3.10.1",
			}}})
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-B/binding")
		runtime.KeepAlive(s)
		s.Close()
	}
}

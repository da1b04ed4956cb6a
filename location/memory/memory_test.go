package memory_test

import (
	"context"
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

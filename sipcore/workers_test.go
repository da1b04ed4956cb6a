package sipcore

import (
	"sync"
	"testing"
	"time"
)

// TestWorkersReuseAndEnd: a worker that finished waits for the next
// function instead of a new goroutine starting; never more than maxIdle
// wait; an idle worker ends after the idle time, leaving no goroutine.
func TestWorkersReuseAndEnd(t *testing.T) {
	w := NewWorkers(2, 200*time.Millisecond)
	run := func(n int) {
		var wg sync.WaitGroup
		release := make(chan struct{})
		for range n {
			wg.Add(1)
			w.Go(func() { defer wg.Done(); <-release })
		}
		close(release)
		wg.Wait()
	}
	run(5) // five at once: five workers, of which two stay
	waitFor(t, "two idle workers", func() bool { return w.Idle() == 2 && w.Live() == 2 })
	for range 20 { // one at a time, each once a worker waits: it takes it
		waitFor(t, "an idle worker", func() bool { return w.Idle() >= 1 })
		done := make(chan struct{})
		w.Go(func() { close(done) })
		<-done
		if n := w.Live(); n > 2 {
			t.Fatalf("%d workers, want at most 2: a new one started although workers were idle", n)
		}
	}
	waitFor(t, "idle workers ending", func() bool { return w.Idle() == 0 && w.Live() == 0 })
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 5 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkWorkersGo is the cost of handing a function to an idle worker
// and waiting for it, as OnWorker does for every request sipgo passes on.
func BenchmarkWorkersGo(b *testing.B) {
	w := NewWorkers(16, time.Minute)
	b.ReportAllocs()
	for b.Loop() {
		done := make(chan struct{})
		w.Go(func() { close(done) })
		<-done
	}
}

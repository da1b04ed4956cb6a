package proxy

import (
	"sync"
	"testing"
)

// TestLateLookupsCoalesced: a flood of changes for one AOR (REGISTERs
// while a call to it is in progress) runs at most one look-up at a time
// and, after the flood, exactly one more, never one per change.
func TestLateLookupsCoalesced(t *testing.T) {
	var l lateForks
	if !l.begin("bob@a.test") {
		t.Fatal("the first change must start a look-up")
	}
	var wg sync.WaitGroup
	var started sync.Map
	for i := range 1000 {
		wg.Go(func() {
			if l.begin("bob@a.test") {
				started.Store(i, true)
			}
		})
	}
	wg.Wait()
	n := 0
	started.Range(func(any, any) bool { n++; return true })
	if n != 0 {
		t.Fatalf("%d look-ups started while one ran", n)
	}
	if !l.end("bob@a.test") {
		t.Fatal("changes during the look-up must make it run once more")
	}
	if l.end("bob@a.test") {
		t.Fatal("one more look-up covers every change before it")
	}
	if !l.begin("bob@a.test") {
		t.Fatal("after the look-up ended, the next change starts one")
	}
	if !l.begin("carol@a.test") {
		t.Fatal("another AOR's look-up waits for nobody")
	}
}

package sipcore_test

import (
	"testing"
	"time"

	"github.com/sipfed/sipfed/sipcore"
)

// TestResponseCache: a key is handled once; its copies meanwhile are
// dropped, afterwards answered from the cache until the TTL; a full cache
// refuses new keys; Sweep empties what expired.
func TestResponseCache(t *testing.T) {
	c := sipcore.NewResponseCache(time.Second, 64)
	now := time.Now()
	if _, _, fresh := c.Begin("a", now); !fresh {
		t.Fatal("a new key is not handed out")
	}
	if data, handling, _ := c.Begin("a", now); data != nil || !handling {
		t.Fatal("a copy while the first is handled is not dropped")
	}
	c.Finish("a", []byte("SIP/2.0 200 OK"), now)
	if data, _, _ := c.Begin("a", now.Add(500*time.Millisecond)); string(data) != "SIP/2.0 200 OK" {
		t.Fatalf("the copy got %q, want the cached answer", data)
	}
	if _, _, fresh := c.Begin("a", now.Add(2*time.Second)); !fresh {
		t.Fatal("an expired key is not handled afresh")
	}
	c.Forget("a")
	full := 0
	for i := range 1000 {
		if _, _, fresh := c.Begin(string(rune('A'+i%26))+time.Duration(i).String(), now); !fresh {
			full++
		}
	}
	if full == 0 {
		t.Fatal("1000 keys in a cache of 64: none refused")
	}
	c.Sweep(now.Add(2 * time.Second))
	if n := c.Len(); n != 0 {
		t.Fatalf("%d entries after the sweep, want 0", n)
	}
}

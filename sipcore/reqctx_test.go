package sipcore

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
)

func TestReqCtxDeadlineWithoutTimer(t *testing.T) {
	ctx, release := withDeadline(context.Background(), 20*time.Millisecond)
	defer release()
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > 20*time.Millisecond {
		t.Fatalf("deadline %v %v", d, ok)
	}
	if ctx.Err() != nil || ctx.inner != nil {
		t.Fatalf("err %v, armed %v before anyone waited", ctx.Err(), ctx.inner != nil)
	}
	time.Sleep(25 * time.Millisecond)
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("err after the deadline: %v", ctx.Err())
	}
	select {
	case <-ctx.Done():
	case <-time.After(time.Second):
		t.Fatal("Done not closed after the deadline")
	}
}

func TestReqCtxDoneAtDeadline(t *testing.T) {
	ctx, release := withDeadline(context.Background(), 20*time.Millisecond)
	defer release()
	child, cancel := context.WithCancel(ctx) // derived before the deadline
	defer cancel()
	select {
	case <-child.Done():
		if !errors.Is(child.Err(), context.DeadlineExceeded) || !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("child %v, ctx %v", child.Err(), ctx.Err())
		}
	case <-time.After(time.Second):
		t.Fatal("a derived context was not cancelled at the deadline")
	}
}

func TestReqCtxBaseAndRelease(t *testing.T) {
	base, stop := context.WithCancel(context.Background())
	ctx, release := withDeadline(base, time.Hour)
	done := ctx.Done()
	stop()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("cancelling base did not reach the request")
	}
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatalf("err %v", ctx.Err())
	}
	release()

	// Released without ever being waited for: done, cancelled, no timer.
	ctx, release = withDeadline(context.Background(), time.Hour)
	release()
	if !errors.Is(ctx.Err(), context.Canceled) || ctx.inner != nil {
		t.Fatalf("err %v, armed %v", ctx.Err(), ctx.inner != nil)
	}
	select {
	case <-ctx.Done():
	default:
		t.Fatal("Done open after release")
	}

	// An earlier deadline of base wins.
	b2, c2 := context.WithTimeout(context.Background(), time.Minute)
	defer c2()
	ctx, release = withDeadline(b2, time.Hour)
	defer release()
	if d, _ := ctx.Deadline(); time.Until(d) > time.Minute {
		t.Fatalf("deadline %v later than base's", d)
	}
}

// TestReqCtxDerivedWithoutGoroutines: contexts derived from a request's
// join its cancellation as they would join context.WithTimeout's, without
// a goroutine each.
func TestReqCtxDerivedWithoutGoroutines(t *testing.T) {
	ctx, release := withDeadline(context.Background(), time.Hour)
	before := runtime.NumGoroutine()
	var cancels []context.CancelFunc
	for range 100 {
		_, cancel := context.WithCancel(ctx)
		cancels = append(cancels, cancel)
	}
	if n := runtime.NumGoroutine() - before; n > 10 {
		t.Fatalf("100 derived contexts started %d goroutines", n)
	}
	child, cancel := context.WithCancel(ctx)
	defer cancel()
	release()
	select {
	case <-child.Done():
	case <-time.After(time.Second):
		t.Fatal("releasing the request did not reach a derived context")
	}
	for _, c := range cancels {
		c()
	}
}

// TestReqCtxReleaseRace derives contexts while the request is released:
// Done closed always comes with an Err (the context package panics
// otherwise).
func TestReqCtxReleaseRace(t *testing.T) {
	for range 2000 {
		ctx, release := withDeadline(context.Background(), time.Hour)
		done := make(chan struct{})
		go func() {
			defer close(done)
			c, cancel := context.WithCancel(ctx)
			<-c.Done()
			if c.Err() == nil {
				t.Error("derived context done without an error")
			}
			cancel()
		}()
		release()
		<-done
		select {
		case <-ctx.Done():
			if ctx.Err() == nil {
				t.Fatal("Done closed, Err nil")
			}
		default:
			t.Fatal("Done open after release")
		}
	}
}

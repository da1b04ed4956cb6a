package sipcore

import (
	"context"
	"errors"
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

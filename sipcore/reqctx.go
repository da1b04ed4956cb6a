package sipcore

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// reqCtx is a request's context: base bounded by a deadline, whose timer
// is armed only when something waits for it (Done). Most requests are
// answered without anyone waiting: a REGISTER on the memory store never
// calls Done, and context.WithTimeout's timer, armed and stopped for each
// of them, was 4 % of a registration's CPU. Deadline and Err are exact
// without the timer; Value is base's.
//
// A context derived from a reqCtx (context.WithCancel and the like) finds
// no cancelCtx of its own parent through Value that matches Done, so it
// calls Done, which arms the timer: cancellation reaches it as it would
// from context.WithTimeout.
type reqCtx struct {
	context.Context // base
	deadline        time.Time

	once     sync.Once
	released atomic.Bool
	inner    context.Context // base bounded by deadline, once Done was called
	cancel   context.CancelFunc
}

// withDeadline returns base bounded by d from now, and the function that
// releases it (call it when the request is done, as with
// context.WithTimeout).
func withDeadline(base context.Context, d time.Duration) (*reqCtx, func()) {
	c := &reqCtx{Context: base, deadline: time.Now().Add(d)}
	return c, c.release
}

func (c *reqCtx) arm() {
	c.once.Do(func() { c.inner, c.cancel = context.WithDeadline(c.Context, c.deadline) })
}

func (c *reqCtx) release() {
	c.once.Do(func() {}) // nothing can arm it after this
	c.released.Store(true)
	if c.cancel != nil {
		c.cancel()
	}
}

func (c *reqCtx) Deadline() (time.Time, bool) {
	if d, ok := c.Context.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, true
}

func (c *reqCtx) Done() <-chan struct{} {
	c.arm()
	if c.inner == nil { // released: as a cancelled context
		return closedDone
	}
	return c.inner.Done()
}

func (c *reqCtx) Err() error {
	if c.released.Load() {
		if c.inner != nil {
			return c.inner.Err()
		}
		return context.Canceled
	}
	if err := c.Context.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *reqCtx) String() string { return "sipcore.reqCtx" }

var closedDone = func() chan struct{} { ch := make(chan struct{}); close(ch); return ch }()

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
// A context derived from a reqCtx (context.WithCancel and the like) calls
// Done, which arms the timer, and then finds the armed context through
// Value: cancellation reaches it as it would from context.WithTimeout,
// without a goroutine.
type reqCtx struct {
	context.Context // base
	deadline        time.Time

	once     sync.Once
	armed    atomic.Bool // inner is set (written in once, before this)
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
	c.once.Do(func() {
		if c.released.Load() {
			return // released first: Done is the closed channel
		}
		c.inner, c.cancel = context.WithDeadline(c.Context, c.deadline)
		c.armed.Store(true)
	})
}

// release ends the context: Err is Canceled from here on (or what the
// armed context says), and Done closed.
func (c *reqCtx) release() {
	c.released.Store(true)
	c.once.Do(func() {}) // nothing arms it after this
	if c.armed.Load() {
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
	if !c.armed.Load() { // released before anyone waited
		return closedDone
	}
	return c.inner.Done()
}

// Err agrees with Done: once Done is closed, Err is not nil.
func (c *reqCtx) Err() error {
	if c.armed.Load() {
		return c.inner.Err()
	}
	if c.released.Load() {
		return context.Canceled
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return c.Context.Err()
}

// Value is base's, or the armed context's: context.WithCancel and the
// like find the armed context's cancellation through it (and whose Done
// it is), and join it without a goroutine of their own.
func (c *reqCtx) Value(k any) any {
	if c.armed.Load() {
		return c.inner.Value(k)
	}
	return c.Context.Value(k)
}

func (c *reqCtx) String() string { return "sipcore.reqCtx" }

var closedDone = func() chan struct{} { ch := make(chan struct{}); close(ch); return ch }()

package sipcore

import (
	"sync/atomic"
	"time"
)

// Workers runs functions on goroutines kept from one request to the next.
//
// A goroutine starts with a small stack, and one that handles a SIP
// request outgrows it: the runtime copies the stack at every doubling
// (measured: 9–11 % of the server's CPU went to runtime.copystack with a
// fresh goroutine per REGISTER or per request sipgo passed on). A worker
// has grown its stack once and keeps it for the next request. When no
// worker is idle a new one starts, so a request never waits for another;
// at most maxIdle wait for work, each for at most idle before it ends.
type Workers struct {
	work    chan func()
	idle    atomic.Int32
	live    atomic.Int32
	maxIdle int32
	timeout time.Duration
}

// NewWorkers returns a pool that keeps at most maxIdle idle workers, each
// for at most idle.
func NewWorkers(maxIdle int, idle time.Duration) *Workers {
	return &Workers{work: make(chan func()), maxIdle: int32(maxIdle), timeout: idle}
}

// Go runs f on an idle worker, or on a new one.
func (w *Workers) Go(f func()) {
	select {
	case w.work <- f:
	default:
		w.live.Add(1)
		go w.loop(f)
	}
}

// Live returns how many workers there are, busy or idle.
func (w *Workers) Live() int { return int(w.live.Load()) }

// Idle returns how many workers wait for work.
func (w *Workers) Idle() int { return int(w.idle.Load()) }

func (w *Workers) loop(f func()) {
	defer w.live.Add(-1)
	t := time.NewTimer(w.timeout)
	t.Stop()
	for {
		f()
		f = nil
		if w.idle.Add(1) > w.maxIdle {
			w.idle.Add(-1)
			return
		}
		t.Reset(w.timeout)
		select {
		case f = <-w.work:
			w.idle.Add(-1)
			t.Stop()
		case <-t.C:
			w.idle.Add(-1)
			return
		}
	}
}

// handlers is the pool request handlers run on (Adapt, and the stateless
// UDP paths of package server): 1024 idle at most, for 10 s.
var handlers = NewWorkers(1024, 10*time.Second)

// Go runs f on a worker of the request handlers' pool.
func Go(f func()) { handlers.Go(f) }

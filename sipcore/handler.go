package sipcore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Handler serves one SIP request on its server transaction, as
// http.Handler does for HTTP and plugin.Handler for CoreDNS. It answers on
// tx itself when it succeeds; when it cannot, it returns an error (a
// *StatusError says which response to send) and the Respond middleware
// answers for it. ctx is cancelled when the request's deadline passes or
// the server shuts down.
type Handler interface {
	ServeSIP(ctx context.Context, req *sip.Request, tx sip.ServerTransaction) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req *sip.Request, tx sip.ServerTransaction) error

// ServeSIP calls f.
func (f HandlerFunc) ServeSIP(ctx context.Context, req *sip.Request, tx sip.ServerTransaction) error {
	return f(ctx, req, tx)
}

// Middleware wraps a Handler with work every request shares.
type Middleware func(next Handler) Handler

// Chain wraps h in mws, the first outermost: Chain(h, a, b) runs a, then
// b, then h. It is called once, when a server starts.
func Chain(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// Deadlines bound the context of each request.
type Deadlines struct {
	// Invite bounds an INVITE: ringing included (Kamailio's
	// max_inv_lifetime). When it passes, the proxy CANCELs its branches.
	Invite time.Duration
	// Other bounds every other request; 64*T1 (32 s) by default, the
	// time after which a client has given up (RFC 3261 Timer F).
	Other time.Duration
}

func (d Deadlines) of(req *sip.Request) time.Duration {
	if req.IsInvite() {
		if d.Invite > 0 {
			return d.Invite
		}
		return 10 * time.Minute
	}
	if d.Other > 0 {
		return d.Other
	}
	return 64 * sip.T1
}

// Adapt returns the sipgo request handler that runs h for each request,
// with a context derived from base (cancel base to cancel every request
// in flight) bounded by d, and the transaction wrapped in a *Tx. It runs
// h on the calling goroutine: see OnWorker.
func Adapt(base context.Context, d Deadlines, h Handler) func(*sip.Request, sip.ServerTransaction) {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		ctx, cancel := withDeadline(base, d.of(req))
		defer cancel()
		t := &Tx{ServerTransaction: tx, start: time.Now()}
		if err := h.ServeSIP(ctx, req, t); err != nil && !req.IsAck() && t.Status() == 0 && tx != nil {
			// No Respond middleware in the chain: answer anyway.
			tx.Respond(Response(req, err))
		}
	}
}

// OnWorker returns a sipgo request handler that runs h on a worker of the
// handlers' pool (Workers) rather than on the goroutine sipgo started for
// the request, which waits for it (sipgo ends the transaction when its
// handler returns).
func OnWorker(h func(*sip.Request, sip.ServerTransaction)) func(*sip.Request, sip.ServerTransaction) {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		done := doneChans.Get().(chan struct{})
		handlers.Go(func() {
			defer func() { done <- struct{}{} }()
			h(req, tx)
		})
		<-done
		doneChans.Put(done)
	}
}

// doneChans holds the channels OnWorker waits on (one buffered slot each,
// empty when in the pool): a channel per request was 1 % of a call's CPU.
var doneChans = sync.Pool{New: func() any { return make(chan struct{}, 1) }}

// Tx is the server transaction the pipeline hands to handlers: it
// remembers the first final response sent and when.
type Tx struct {
	sip.ServerTransaction
	start time.Time

	mu      sync.Mutex
	status  int
	finalAt time.Time
}

// Respond sends res and notes it when it is the first final response
// sent.
func (t *Tx) Respond(res *sip.Response) error {
	if t.ServerTransaction == nil {
		return errors.New("sipcore: no server transaction")
	}
	if err := t.ServerTransaction.Respond(res); err != nil {
		return err
	}
	if res.StatusCode >= 200 {
		t.mu.Lock()
		if t.status == 0 {
			t.status, t.finalAt = res.StatusCode, time.Now()
		}
		t.mu.Unlock()
	}
	return nil
}

// Sent notes res as sent outside the transaction (a 2xx a proxy relays
// statelessly after ending it).
func (t *Tx) Sent(res *sip.Response) {
	if res.StatusCode < 200 {
		return
	}
	t.mu.Lock()
	if t.status == 0 {
		t.status, t.finalAt = res.StatusCode, time.Now()
	}
	t.mu.Unlock()
}

// Status returns the first final status sent, or 0.
func (t *Tx) Status() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.status
}

// Elapsed returns the time from the request's arrival to its first final
// response, or to now when none was sent.
func (t *Tx) Elapsed() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.status == 0 {
		return time.Since(t.start)
	}
	return t.finalAt.Sub(t.start)
}

// txOf returns the *Tx inside tx, or a fresh one for handlers run outside
// Adapt (tests).
func txOf(tx sip.ServerTransaction) *Tx {
	if t, ok := tx.(*Tx); ok {
		return t
	}
	return &Tx{ServerTransaction: tx, start: time.Now()}
}

// Respond is the one place where a handler's error becomes a response:
// a *StatusError gives its status and headers, a 503 gets Retry-After
// (RetryAfter) when it has none, a context error (deadline or shutdown)
// becomes 408 or 503, anything else 500. Errors for ACK (which has no
// response) and errors after a final response was sent are only logged.
// Failures (5xx) are logged at warn with the cause, refusals at debug.
func Respond(log *slog.Logger) Middleware {
	return func(next Handler) Handler { return &responder{next: next, log: log} }
}

// The middleware are small structs rather than closures around
// HandlerFunc: every frame they add sits under each handler's own, and a
// goroutine whose stack outgrows its start is copied (measured: REGISTER
// at 6000/s spent 16 % of its CPU in copystack with closures, 8 % before
// the pipeline existed). Logging lives in functions of its own so that
// its argument lists do not enlarge the frames on the request's path.
type responder struct {
	next Handler
	log  *slog.Logger
}

func (h *responder) ServeSIP(ctx context.Context, req *sip.Request, tx sip.ServerTransaction) error {
	t := txOf(tx)
	if err := h.next.ServeSIP(ctx, req, t); err != nil {
		h.answer(req, t, err)
	}
	return nil
}

//go:noinline
func (h *responder) answer(req *sip.Request, t *Tx, err error) {
	if req.IsAck() || t.Status() != 0 {
		h.log.Debug("error after the answer", "method", string(req.Method), "call_id", CallID(req), "error", err)
		return
	}
	se := asStatusCtx(err)
	if se.Code >= 500 {
		h.log.Warn("request failed", "method", string(req.Method), "call_id", CallID(req), "status", se.Code, "error", err)
	} else if h.log.Enabled(context.Background(), slog.LevelDebug) {
		h.log.Debug("request refused", "method", string(req.Method), "call_id", CallID(req), "status", se.Code, "reason", se.Reason)
	}
	if err := t.Respond(Response(req, se)); err != nil {
		h.log.Debug("respond", "call_id", CallID(req), "error", err)
	}
}

// asStatusCtx is AsStatus, with context errors turned into what a client
// can act on: the server is shutting down (503, retry) or the request ran
// out of time (408).
func asStatusCtx(err error) *StatusError {
	var se *StatusError
	switch {
	case errors.As(err, &se):
		return se
	case errors.Is(err, context.DeadlineExceeded):
		return &StatusError{Code: 408, Reason: "Request Timeout", Err: err}
	case errors.Is(err, context.Canceled):
		return &StatusError{Code: 503, Reason: "Shutting down", Err: err}
	}
	return AsStatus(err)
}

// Recover turns a panic in a handler into a 500 and a log line with the
// stack, so one bad request cannot end the process.
func Recover(log *slog.Logger) Middleware {
	return func(next Handler) Handler { return &recoverer{next: next, log: log} }
}

type recoverer struct {
	next Handler
	log  *slog.Logger
}

func (h *recoverer) ServeSIP(ctx context.Context, req *sip.Request, tx sip.ServerTransaction) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = h.panicked(req, v)
		}
	}()
	return h.next.ServeSIP(ctx, req, tx)
}

//go:noinline
func (h *recoverer) panicked(req *sip.Request, v any) error {
	h.log.Error("panic serving request", "method", Sanitize(string(req.Method)), "call_id", CallID(req), "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	return &StatusError{Code: 500, Reason: "Server Internal Error", Err: fmt.Errorf("sipcore: panic: %v", v)}
}

// Gate admits requests until it is closed and lets shutdown wait for the
// ones admitted, as net/http's Server.Shutdown does.
type Gate struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// Close stops admitting requests.
func (g *Gate) Close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// Wait waits for the admitted requests to finish, or for ctx.
func (g *Gate) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *Gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

// Drain refuses requests with 503 and Retry-After once g is closed, and
// tracks the others so that g.Wait can wait for them.
func Drain(g *Gate) Middleware {
	return func(next Handler) Handler { return &drainer{next: next, g: g} }
}

type drainer struct {
	next Handler
	g    *Gate
}

func (h *drainer) ServeSIP(ctx context.Context, req *sip.Request, tx sip.ServerTransaction) error {
	if !h.g.enter() {
		if req.IsAck() {
			return nil
		}
		return Errorf(503, "Shutting down")
	}
	defer h.g.wg.Done()
	return h.next.ServeSIP(ctx, req, tx)
}

// Observer records each request and its first final response;
// internal/metrics implements it on Prometheus.
type Observer interface {
	Observe(req *sip.Request, status int, elapsed time.Duration)
}

// Observe reports every request to o once it has been served: status is
// the first final response sent (0 for none, as for ACK) and elapsed the
// time it took to send it.
func Observe(o Observer) Middleware {
	return func(next Handler) Handler { return &observer{next: next, o: o} }
}

type observer struct {
	next Handler
	o    Observer
}

func (h *observer) ServeSIP(ctx context.Context, req *sip.Request, tx sip.ServerTransaction) error {
	t := txOf(tx)
	err := h.next.ServeSIP(ctx, req, t)
	h.o.Observe(req, t.Status(), t.Elapsed())
	return err
}

// Log writes one debug line per request once it has been served: method,
// Call-ID, final status and time to answer. Whether debug is on is asked
// per request (a slog.LevelVar may change it), at the cost of one call when
// it is off.
func Log(log *slog.Logger) Middleware {
	return func(next Handler) Handler { return &logger{next: next, log: log} }
}

type logger struct {
	next Handler
	log  *slog.Logger
}

func (h *logger) ServeSIP(ctx context.Context, req *sip.Request, tx sip.ServerTransaction) error {
	if !h.log.Enabled(ctx, slog.LevelDebug) {
		return h.next.ServeSIP(ctx, req, tx)
	}
	t := txOf(tx)
	err := h.next.ServeSIP(ctx, req, t)
	h.log.Debug("served", "method", Sanitize(string(req.Method)), "call_id", CallID(req), "from", Sanitize(req.Source()),
		"status", strconv.Itoa(t.Status()), "elapsed", t.Elapsed())
	return err
}

package server

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipfed/sipfed/sipcore"
)

// REGISTER over UDP is answered without a sipgo server transaction.
//
// A registrar needs none of what a transaction gives: it answers at once
// with one final response, there is no CANCEL or ACK to match, and a
// retransmission only needs the same answer again. sipgo's transaction
// costs a goroutine, timers and about 4.5 kB kept for 32 s (Timer J) per
// request: at 10,000 REGISTER/s that is 3 GB of heap and most of the CPU
// of a registration. Here a REGISTER is parsed in the UDP read loop (as
// sipgo would), handled in a goroutine of its own by the same pipeline,
// and its final response kept for 5 s by branch and source
// (sipcore.ResponseCache), which is how RFC 3261 §17.2.3 matches a
// retransmission: a copy that arrives meanwhile is answered from the
// cache, one that arrives while the first is being handled is dropped
// (its sender retransmits). Anything this path does not take (another
// method, an RFC 2543 branch, a full cache, a message that does not
// parse) goes to sipgo as before.

// responseTTL is how long a stateless final response is kept for
// retransmissions: Kamailio keeps a finished transaction as long.
const responseTTL = 5 * time.Second

// maxCachedResponses bounds the cache: about 700 bytes each, so 140 MB;
// beyond it REGISTERs take sipgo's transactions again. Only final
// answers other than challenges are kept 5 s: 50,000 at 10,000
// registrations a second.
const maxCachedResponses = 200_000

type statelessRegister struct {
	parser *sip.Parser
	cache  *sipcore.ResponseCache
	handle atomic.Pointer[func(*sip.Request, sip.ServerTransaction)] // the REGISTER pipeline, set once the server is wired
}

func newStatelessRegister() *statelessRegister {
	return &statelessRegister{parser: sipcore.NewParser(), cache: sipcore.NewResponseCache(responseTTL, maxCachedResponses)}
}

// setHandler sets the pipeline; nil sends every REGISTER to sipgo's
// transactions (as the benchmark compares).
func (r *statelessRegister) setHandler(h func(*sip.Request, sip.ServerTransaction)) {
	if h == nil {
		r.handle.Store(nil)
		return
	}
	r.handle.Store(&h)
}

// sweep drops expired cached answers every second until ctx ends, so an
// idle server keeps none.
func (r *statelessRegister) sweep(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			r.cache.Sweep(now)
		}
	}
}

// intercept returns the sipcore.PacketConn hook of the UDP listener conn.
func (r *statelessRegister) intercept(conn net.PacketConn) func([]byte, netip.AddrPort) bool {
	return func(b []byte, from netip.AddrPort) bool {
		if len(b) < 9 || string(b[:9]) != "REGISTER " {
			return false
		}
		hp := r.handle.Load()
		if hp == nil {
			return false
		}
		handle := *hp
		msg, err := r.parser.ParseSIP(b)
		if err != nil {
			return false // sipgo logs and counts it
		}
		req, ok := msg.(*sip.Request)
		if !ok || req.Method != sip.REGISTER {
			return false
		}
		v := req.Via()
		if v == nil {
			return false
		}
		branch, _ := v.Params.Get("branch")
		if !strings.HasPrefix(branch, sip.RFC3261BranchMagicCookie) {
			return false
		}
		src := from.String()
		key := branch + " " + src
		now := time.Now()
		data, handling, fresh := r.cache.Begin(key, now)
		to := net.UDPAddrFromAddrPort(from)
		switch {
		case data != nil:
			conn.WriteTo(data, to) // a retransmission: the same answer
			return true
		case handling:
			return true // the first copy is being answered
		case !fresh:
			return false // cache full: a server transaction
		}
		req.SetTransport("UDP")
		req.SetSource(src)
		req.SetDestination(conn.LocalAddr().String())
		go func() {
			tx := &udpTx{conn: conn, to: to, key: key, cache: r.cache}
			handle(req, tx)
			tx.finish()
		}()
		return true
	}
}

// udpTx is the sip.ServerTransaction of a stateless REGISTER: Respond
// writes to the request's source (RFC 3581, as sipgo answers over UDP) and
// caches the final response.
type udpTx struct {
	conn  net.PacketConn
	to    *net.UDPAddr
	key   string
	cache *sipcore.ResponseCache

	mu    sync.Mutex
	final bool
}

func (t *udpTx) Respond(res *sip.Response) error {
	data := []byte(res.String())
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.final {
		return nil // one final response per request
	}
	if _, err := t.conn.WriteTo(data, t.to); err != nil {
		return err
	}
	if res.StatusCode >= 200 {
		t.final = true
		if res.StatusCode == 401 || res.StatusCode == 407 {
			// A challenge is not kept: a retransmission answered afresh
			// gets another nonce, which is as good. Only an answer that
			// changed something (a 200 that updated bindings) must come
			// back the same. Half the cache, at a registrar's mix.
			t.cache.Forget(t.key)
		} else {
			t.cache.Finish(t.key, data, time.Now())
		}
	}
	return nil
}

// finish forgets a request that got no final response, so that its
// retransmission is handled afresh.
func (t *udpTx) finish() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.final {
		t.cache.Forget(t.key)
	}
}

func (t *udpTx) Acks() <-chan *sip.Request          { return nil }
func (t *udpTx) OnCancel(sip.FnTxCancel) bool       { return false }
func (t *udpTx) Terminate()                         {}
func (t *udpTx) OnTerminate(sip.FnTxTerminate) bool { return false }
func (t *udpTx) Done() <-chan struct{}              { return closedChan }
func (t *udpTx) Err() error                         { return nil }

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

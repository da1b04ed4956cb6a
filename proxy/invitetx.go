package proxy

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// clientTx is what a branch needs of a client transaction: sipgo's for
// most methods, inviteTx for INVITE.
type clientTx interface {
	Responses() <-chan *sip.Response
	Done() <-chan struct{}
	Terminate()
}

// inviteTx is the proxy's own INVITE client transaction (RFC 3261
// §17.1.1, with the Accepted state of RFC 6026). sipgo's would do, but
// its ACK for a non-2xx final response copies every Via of the INVITE,
// where §17.1.1.3 wants only the top one: a forwarded INVITE carries the
// caller's Vias under ours, and the callee would get them all in the
// ACK. Here the ACK is built to the rule.
//
// The request goes out on a connection from sipgo's transport layer;
// its responses match no sipgo transaction and come back through the
// unhandled-response hook (HandleStrayResponse), which hands them here
// by branch. UDP: Timer A retransmits until a response, Timer B ends a
// transaction nobody answered. After a final response the transaction
// lingers 64*T1 so that a retransmitted non-2xx is ACKed again and a
// retransmitted 2xx still reaches the caller.
//
// A proxy has tens of thousands of these lingering at a few thousand
// calls a second, so the timers are runtime timers, not a goroutine each,
// and the first response drops the request (nothing is retransmitted any
// more) and keeps of the final response only that it came: the lingering
// state is the struct, the prepared ACK and the connection reference.
type inviteTx struct {
	p        *Proxy
	req      *sip.Request
	key      string
	conn     sip.Connection
	reliable bool

	responses chan *sip.Response
	done      chan struct{}

	mu        sync.Mutex
	got       bool         // a response came: no more retransmissions
	final     bool         // the first final response came
	ack       *sip.Request // the ACK of a non-2xx final response
	timerA    *time.Timer  // UDP retransmission, until a response
	timerB    *time.Timer  // no response at all, until a response
	interval  time.Duration
	onRetrans func(*sip.Response)
	over      bool // Terminate was called: the branch no longer listens
	err       error
	doneOnce  sync.Once
	forget    sync.Once
}

// inviteKey is the branch and Call-ID of a request or response's top Via.
func inviteKey(m sip.Message) (string, bool) {
	var v *sip.ViaHeader
	var cid *sip.CallIDHeader
	switch m := m.(type) {
	case *sip.Request:
		v, cid = m.Via(), m.CallID()
	case *sip.Response:
		v, cid = m.Via(), m.CallID()
	}
	if v == nil || cid == nil {
		return "", false
	}
	br, _ := v.Params.Get("branch")
	return br + "\x00" + cid.Value(), br != ""
}

// sendInvite sends r (an INVITE with our Via on top) in a transaction of
// ours; ctx bounds only the connection's set-up.
func (p *Proxy) sendInvite(ctx context.Context, r *sip.Request) (*inviteTx, error) {
	key, ok := inviteKey(r)
	if !ok {
		return nil, errors.New("proxy: INVITE without a branch")
	}
	conn, err := p.client.TransportLayer().ClientRequestConnection(ctx, r)
	if err != nil {
		return nil, err
	}
	tx := &inviteTx{p: p, req: r, key: key, conn: conn, reliable: reliable(r.Transport()),
		responses: make(chan *sip.Response, 8), done: make(chan struct{}), interval: sip.T1}
	p.inviteTxs.Store(key, tx)
	// The timers are armed before the write (a response may come back
	// before it returns and must find them to stop), and no lock is held
	// across the write: a stalled TCP write must not hold up receive.
	tx.mu.Lock()
	tx.timerB = time.AfterFunc(64*sip.T1, tx.expireB)
	if !tx.reliable {
		tx.timerA = time.AfterFunc(tx.interval, tx.retransmit)
	}
	tx.mu.Unlock()
	if err := conn.WriteMsg(r); err != nil {
		tx.mu.Lock()
		tx.stopTimers()
		tx.mu.Unlock()
		p.inviteTxs.Delete(key)
		conn.TryClose()
		return nil, err
	}
	return tx, nil
}

// retransmit is Timer A: the request again, at doubling intervals, until
// a response or Terminate.
func (tx *inviteTx) retransmit() {
	tx.mu.Lock()
	if tx.got || tx.over || tx.req == nil {
		tx.mu.Unlock()
		return
	}
	req := tx.req
	tx.interval *= 2
	tx.timerA = time.AfterFunc(tx.interval, tx.retransmit)
	tx.mu.Unlock()
	if err := tx.conn.WriteMsg(req); err != nil {
		tx.fail(err)
	}
}

// expireB is Timer B: no response at all within 64*T1.
func (tx *inviteTx) expireB() {
	tx.mu.Lock()
	got := tx.got
	tx.mu.Unlock()
	if !got {
		tx.fail(sip.ErrTransactionTimeout)
	}
}

// stopTimers stops Timers A and B and lets the request go; tx.mu is held.
func (tx *inviteTx) stopTimers() {
	if tx.timerA != nil {
		tx.timerA.Stop()
		tx.timerA = nil
	}
	if tx.timerB != nil {
		tx.timerB.Stop()
		tx.timerB = nil
	}
}

// fail ends the transaction without a response.
func (tx *inviteTx) fail(err error) {
	tx.mu.Lock()
	tx.err = err
	tx.stopTimers()
	tx.mu.Unlock()
	tx.doneOnce.Do(func() { close(tx.done) })
	tx.release()
}

// receive handles a response of this transaction.
func (tx *inviteTx) receive(res *sip.Response) {
	tx.mu.Lock()
	if !tx.got {
		tx.got = true
		tx.stopTimers()
	}
	first := false
	if res.StatusCode >= 200 && !tx.final {
		tx.final, first = true, true
	}
	retrans := res.StatusCode >= 200 && !first
	if res.StatusCode >= 300 && tx.ack == nil && tx.req != nil {
		tx.ack = ackFor(tx.req, res)
	}
	if first {
		tx.req = nil // all a final response's linger needs is the ACK
	}
	ack, onRetrans, over := tx.ack, tx.onRetrans, tx.over
	tx.mu.Unlock()

	if res.StatusCode >= 300 && ack != nil {
		// §17.1.1.2: every final non-2xx, the first and its
		// retransmissions, is ACKed (not one that follows a 2xx).
		if err := tx.conn.WriteMsg(ack); err != nil {
			tx.p.log.Debug("ack", "call_id", callIDOf(res), "error", err)
		}
	}
	if retrans {
		if res.IsSuccess() && onRetrans != nil {
			onRetrans(res)
		}
		return
	}
	if over {
		return
	}
	select {
	case tx.responses <- res:
	default: // the branch stopped reading; nothing waits for it
	}
	if first {
		// Linger for retransmissions (Timer D, RFC 6026 Timer M), then
		// forget.
		time.AfterFunc(64*sip.T1, tx.release)
	}
}

// ackFor is the ACK of a non-2xx final response res to req (RFC 3261
// §17.1.1.3): req's Request-URI, its top Via alone, its Route, From,
// Call-ID and CSeq number, and res's To.
func ackFor(req *sip.Request, res *sip.Response) *sip.Request {
	ack := sip.NewRequest(sip.ACK, req.Recipient)
	ack.SipVersion = req.SipVersion
	ack.AppendHeader(sip.HeaderClone(req.Via()))
	for _, h := range req.GetHeaders("Route") {
		ack.AppendHeader(sip.HeaderClone(h))
	}
	mf := sip.MaxForwardsHeader(70)
	ack.AppendHeader(&mf)
	ack.AppendHeader(sip.HeaderClone(req.From()))
	if to := res.To(); to != nil {
		ack.AppendHeader(sip.HeaderClone(to))
	}
	ack.AppendHeader(sip.HeaderClone(req.CallID()))
	ack.AppendHeader(&sip.CSeqHeader{SeqNo: req.CSeq().SeqNo, MethodName: sip.ACK})
	ack.AppendHeader(sip.NewHeader("Content-Length", "0"))
	ack.SetTransport(req.Transport())
	ack.SetDestination(req.Destination())
	ack.Laddr = req.Laddr
	return ack
}

// release forgets the transaction and gives its connection back.
func (tx *inviteTx) release() {
	tx.forget.Do(func() {
		tx.p.inviteTxs.Delete(tx.key)
		tx.conn.TryClose()
	})
}

// Responses delivers the provisional responses and the first final one.
func (tx *inviteTx) Responses() <-chan *sip.Response { return tx.responses }

// Done is closed when the transaction failed: Timer B, or the transport.
func (tx *inviteTx) Done() <-chan struct{} { return tx.done }

// Err is why Done was closed.
func (tx *inviteTx) Err() error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.err
}

// OnRetransmission sets the function given 2xx responses retransmitted
// after the first.
func (tx *inviteTx) OnRetransmission(f func(*sip.Response)) {
	tx.mu.Lock()
	tx.onRetrans = f
	tx.mu.Unlock()
}

// Terminate tells the transaction the branch is done with it. It lingers
// 64*T1 for retransmissions (or until its final response's linger ends).
func (tx *inviteTx) Terminate() {
	tx.mu.Lock()
	already := tx.over
	tx.over = true
	final := tx.final
	if !tx.got {
		if tx.timerA != nil { // no more retransmissions; Timer B still fails it
			tx.timerA.Stop()
			tx.timerA = nil
		}
	}
	tx.mu.Unlock()
	if already {
		return
	}
	if !final {
		// No final response yet (a CANCEL whose 487 never came, or a
		// branch that gave up): its final response, if it comes, is
		// still ACKed while the transaction lingers.
		time.AfterFunc(64*sip.T1, tx.release)
	}
}

// deliverInvite hands a response to the INVITE transaction of ours it
// belongs to, if any.
func (p *Proxy) deliverInvite(res *sip.Response) bool {
	cseq := res.CSeq()
	if cseq == nil || cseq.MethodName != sip.INVITE {
		return false
	}
	key, ok := inviteKey(res)
	if !ok {
		return false
	}
	v, ok := p.inviteTxs.Load(key)
	if !ok {
		return false
	}
	v.(*inviteTx).receive(res)
	return true
}

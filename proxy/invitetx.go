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
type inviteTx struct {
	p        *Proxy
	req      *sip.Request
	key      string
	conn     sip.Connection
	reliable bool

	responses chan *sip.Response
	done      chan struct{}

	mu        sync.Mutex
	got       bool          // a response came: no more retransmissions
	final     *sip.Response // the first final response
	ack       *sip.Request  // the ACK of a non-2xx final response
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
		responses: make(chan *sip.Response, 8), done: make(chan struct{})}
	p.inviteTxs.Store(key, tx)
	if err := conn.WriteMsg(r); err != nil {
		p.inviteTxs.Delete(key)
		conn.TryClose()
		return nil, err
	}
	go tx.timers()
	return tx, nil
}

// timers runs Timer A (UDP retransmissions) and Timer B (no response at
// all within 64*T1).
func (tx *inviteTx) timers() {
	timerB := time.NewTimer(64 * sip.T1)
	defer timerB.Stop()
	interval := sip.T1
	var timerA <-chan time.Time
	if !tx.reliable {
		timerA = time.After(interval)
	}
	for {
		select {
		case <-timerA:
			tx.mu.Lock()
			stop := tx.got || tx.over
			tx.mu.Unlock()
			if stop {
				timerA = nil
				continue
			}
			if err := tx.conn.WriteMsg(tx.req); err != nil {
				tx.fail(err)
				return
			}
			interval *= 2
			timerA = time.After(interval)
		case <-timerB.C:
			tx.mu.Lock()
			got := tx.got
			tx.mu.Unlock()
			if !got {
				tx.fail(sip.ErrTransactionTimeout)
			}
			return
		case <-tx.done:
			return
		}
	}
}

// fail ends the transaction without a response.
func (tx *inviteTx) fail(err error) {
	tx.mu.Lock()
	tx.err = err
	tx.mu.Unlock()
	tx.doneOnce.Do(func() { close(tx.done) })
	tx.release()
}

// receive handles a response of this transaction.
func (tx *inviteTx) receive(res *sip.Response) {
	tx.mu.Lock()
	tx.got = true
	first := false
	if res.StatusCode >= 200 && tx.final == nil {
		tx.final, first = res, true
	}
	retrans := res.StatusCode >= 200 && !first
	if res.StatusCode >= 300 && tx.ack == nil {
		tx.ack = ackFor(tx.req, res)
	}
	ack, onRetrans, over := tx.ack, tx.onRetrans, tx.over
	tx.mu.Unlock()

	if res.StatusCode >= 300 {
		// §17.1.1.2: every final non-2xx, the first and its
		// retransmissions, is ACKed.
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
	final := tx.final != nil
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

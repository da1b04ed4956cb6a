package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipfed/sipfed/resolver"
	"github.com/sipfed/sipfed/sipcore"
)

// branch is one forwarded copy of the request (§16.6), tried against its
// targets in order until one answers.
type branch struct {
	base   *sip.Request // the copy before Via and transport are chosen
	once   bool         // base is sent once (an ACK): prepare takes it rather than a copy
	size   int          // len(base.String()), rendered once for the UDP size rule
	target branchTarget
	rr     bool
	ctx    context.Context
	cancel context.CancelFunc
	reason []string     // Reason header values for its CANCEL (RFC 3326); collector.mu
	media  MediaSession // the bridge of this branch (or of the dialog: collector.media)
	// dialogMedia is an in-dialog request's bridge (the call's), as
	// opposed to one made for this branch.
	dialogMedia MediaSession
	callerWeb   bool // with media: the caller is the browser

	ansMu         sync.Mutex
	ansIn, ansOut []byte // the last answer bridged, as received and as sent
}

// collector gathers the branches' responses and answers upstream (§16.7).
type collector struct {
	p    *Proxy
	req  *sip.Request
	tx   sip.ServerTransaction
	loop string // loopHash(req), the same in every branch ID

	mu        sync.Mutex
	branches  []*branch
	finals    []*sip.Response
	finalSent bool
	got6xx    bool
	status    int           // the first final status sent upstream
	media     MediaSession  // an in-dialog request's bridge
	winner    *branch       // the branch whose 2xx was sent first
	busy      *sip.Response // our own 503 (the media bridge full), kept a 503
}

// closeMedia closes the bridges of an initial INVITE's branches that did
// not win; the winner's becomes the call's.
func (c *collector) closeMedia() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.branches {
		if b.media != nil && b.media != c.media && b != c.winner {
			b.media.Close()
		}
	}
}

// newBranch makes the branch of fwd to t: a copy of fwd, or fwd itself
// when it is the only branch (own).
func (c *collector) newBranch(fwd *sip.Request, t branchTarget, rr, own bool) *branch {
	r := fwd
	if !own {
		r = fwd.Clone()
	}
	if t.ruri != nil {
		r.Recipient = *t.ruri
	}
	for i := len(t.route) - 1; i >= 0; i-- {
		var u sip.Uri
		if parseNameAddr(t.route[i], &u) == nil {
			r.PrependHeader(&sip.RouteHeader{Address: u})
		}
	}
	decMaxForwards(r)
	// RFC 3581 §4: note where the previous hop really is, so responses
	// (and retransmitted 2xx relayed statelessly) find their way back:
	// received= whenever rport was asked for or the address differs.
	if v := r.Via(); v != nil {
		host, port, err := net.SplitHostPort(c.req.Source())
		if err == nil {
			rport := v.Params.Has("rport")
			if rport {
				v.Params.Add("rport", port)
			}
			if rport || host != strings.Trim(v.Host, "[]") {
				v.Params.Add("received", host)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &branch{base: r, target: t, rr: rr, ctx: ctx, cancel: cancel, media: c.media, dialogMedia: c.media}
	c.mu.Lock()
	c.branches = append(c.branches, b)
	c.mu.Unlock()
	return b
}

// upgraded reports whether r goes over TCP although hop is a UDP target
// (prepare moved it for its size).
func upgraded(r *sip.Request, hop resolver.Target) bool {
	t := strings.ToLower(hop.Transport)
	return (t == "" || t == resolver.UDP) && strings.EqualFold(r.Transport(), "TCP")
}

// decMaxForwards sets r's Max-Forwards one below the received value, or
// to 70 when there was none (RFC 3261 §16.6 step 3). The header is
// replaced, not decremented in place: sipgo's Clone shares it between
// copies, so Dec would lower it once per fork, in every fork and in the
// received request.
func decMaxForwards(r *sip.Request) {
	n := sip.MaxForwardsHeader(70)
	if mf := r.MaxForwards(); mf != nil {
		n = sip.MaxForwardsHeader(mf.Val() - 1) // 0 was refused with 483
		r.ReplaceHeader(&n)
		return
	}
	r.AppendHeader(&n)
}

// cancelAll stops every branch (upstream CANCEL), passing on the
// CANCEL's Reason headers (RFC 3326).
func (c *collector) cancelAll(cancel *sip.Request) {
	var reason []string
	if cancel != nil {
		for _, h := range cancel.GetHeaders("Reason") {
			reason = append(reason, h.Value())
		}
	}
	c.cancelOthers(nil, reason...)
}

// completedElsewhere is the Reason of the CANCELs a fork's other
// branches get once one answered (RFC 3326 §2), so those phones do not
// show a missed call.
const completedElsewhere = `SIP;cause=200;text="Call completed elsewhere"`

// cancelOthers stops every branch but keep; reason goes into their
// CANCELs.
func (c *collector) cancelOthers(keep *branch, reason ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.branches {
		if b != keep {
			if b.reason == nil {
				b.reason = reason
			}
			b.cancel()
		}
	}
}

// cancelReason returns the Reason values for b's CANCEL.
func (c *collector) cancelReason(b *branch) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return b.reason
}

// provisional relays a 1xx other than 100 upstream.
func (c *collector) provisional(b *branch, res *sip.Response) {
	c.mu.Lock()
	sent := c.finalSent
	c.mu.Unlock()
	if sent {
		return
	}
	c.respondFrom(b, res)
}

// success relays a 2xx at once and cancels the other branches; later 2xx
// from other forks are relayed too (§16.7 step 5).
func (c *collector) success(b *branch, res *sip.Response) {
	c.mu.Lock()
	first := !c.finalSent
	c.finalSent = true
	if first {
		c.winner = b
	}
	c.mu.Unlock()
	if first && b.media != nil && c.media == nil && c.req.IsInvite() {
		c.p.keepMedia(c.req, res, b)
	}
	c.respondFrom(b, res)
	if first {
		c.cancelOthers(b, completedElsewhere)
	}
}

// final stores a non-2xx final response; a 6xx ends the search (§16.7 step 5).
func (c *collector) final(b *branch, res *sip.Response) {
	c.mu.Lock()
	c.finals = append(c.finals, res)
	six := res.StatusCode >= 600
	if six {
		c.got6xx = true
	}
	c.mu.Unlock()
	if six {
		c.cancelOthers(b, fmt.Sprintf("SIP;cause=%d;text=%s", res.StatusCode, quote(res.Reason)))
	}
}

func (c *collector) done() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.finalSent || c.got6xx
}

// finish answers upstream with the best final response when no 2xx was
// sent: 408 when no branch answered, 401/407 challenges aggregated, 503
// turned into 500 (§16.7 steps 6-7).
func (c *collector) finish() error {
	c.mu.Lock()
	if c.finalSent {
		c.mu.Unlock()
		return nil
	}
	c.finalSent = true
	finals := c.finals
	c.mu.Unlock()
	best := bestResponse(finals)
	if best == nil {
		return sipcore.Errorf(408, "Request Timeout")
	}
	res := best.Clone()
	if best.StatusCode == 401 || best.StatusCode == 407 {
		for _, f := range finals {
			if f == best || (f.StatusCode != 401 && f.StatusCode != 407) {
				continue
			}
			for _, name := range []string{"WWW-Authenticate", "Proxy-Authenticate"} {
				for _, h := range f.GetHeaders(name) {
					res.AppendHeader(sip.NewHeader(name, h.Value()))
				}
			}
		}
	}
	if res.StatusCode == 503 && best != c.busy {
		// Another server's overload is not ours (§16.7 step 6); our own
		// (the media bridge full) says when to come back.
		res.StatusCode, res.Reason = 500, "Server Internal Error"
	}
	c.respond(res)
	return nil
}

// respond sends a downstream response upstream without our Via.
func (c *collector) respond(res *sip.Response) { c.respondFrom(nil, res) }

// respondFrom is respond for a response of branch b.
func (c *collector) respondFrom(b *branch, res *sip.Response) {
	out := res
	if v := res.Via(); v != nil && c.p.isOurVia(v) {
		out = stripVia(res)
		// A received response carries where it arrived; it goes to the
		// hop in the next Via.
		if v := out.Via(); v != nil {
			out.SetDestination(viaDest(v))
		}
		c.p.resignRecordRoute(c.req, out, calleeFlow(b, res))
		c.p.anchorResponse(b, out)
	}
	if out.StatusCode >= 200 {
		c.mu.Lock()
		first := c.status == 0
		if first {
			c.status = out.StatusCode
		}
		c.mu.Unlock()
		if !first && !c.req.IsInvite() {
			// §16.7 step 10: one final response to a non-INVITE (a
			// second fork's 2xx is dropped; only INVITE relays every 2xx).
			return
		}
	}
	if out.IsSuccess() && c.req.IsInvite() && reliable(c.req.Transport()) {
		// Over TCP or TLS nothing is retransmitted: the Accepted state
		// (RFC 6026) has nothing to do, yet sipgo keeps the transaction,
		// the request and the 2xx for Timer L (32 s). The 2xx goes out on
		// the request's connection and the transaction ends.
		c.p.accepted.add(c.req)
		c.endStateless(out, nil)
		return
	}
	if out.IsSuccess() && c.req.IsInvite() && !reliable(c.req.Transport()) {
		// A 2xx to an INVITE over UDP ends the server transaction and
		// is relayed statelessly, as RFC 3261 §17.2.1 had it. RFC 6026's
		// Accepted state would keep the transaction 64*T1 for two
		// things: relaying the callee's retransmitted 2xx, which the
		// client side does (inviteTx, statelessly), and absorbing the
		// caller's retransmitted INVITE, which needs only its branch
		// (accepted, checked in ServeSIP). sipgo's transaction would
		// keep the request and the 2xx, about 10 kB a call for 32 s:
		// 650 MB of heap at 2,000 calls/s, and a collector that marks it.
		c.p.accepted.add(c.req)
		c.endStateless(out, nil)
		return
	}
	if out.StatusCode >= 200 && !c.req.IsInvite() && !reliable(c.req.Transport()) {
		// Over UDP a non-INVITE server transaction would linger 64*T1
		// (Timer J) holding the request and this response; the
		// response's bytes, kept by branch (finals), answer a
		// retransmission as well. Over a full cache, the transaction.
		data := render(out)
		if c.p.finals.put(c.req, data) {
			c.endStateless(out, data)
			return
		}
	}
	if err := c.tx.Respond(out); err != nil {
		// The server transaction is over (upstream CANCEL, or a 2xx from
		// another fork after it): relay statelessly.
		if out.IsSuccess() {
			c.p.writeResponse(out)
		}
	}
}

// resignRecordRoute gives our Record-Route entries in a response that
// makes a dialog (the caller's route set) the token for requests to the
// callee's Contact (see signer), and the callee's flow when it is behind
// NAT (flow.go).
func (p *Proxy) resignRecordRoute(req *sip.Request, res *sip.Response, flow string) {
	if res.StatusCode < 101 || res.StatusCode >= 300 || !recordRoutes(req.Method) {
		return
	}
	var token string
	for _, h := range res.GetHeaders("Record-Route") {
		rr, ok := h.(*sip.RecordRouteHeader)
		if !ok || !p.isOurs(rr.Address) || !rr.Address.UriParams.Has("sf") {
			continue
		}
		if token == "" {
			token = p.sign.dialogToken(req.CallID().Value(), fromTag(req), contactKey(res), flow)
		}
		rr.Address.UriParams.Add("sf", token)
		if flow != "" {
			rr.Address.UriParams.Add("fl", flow)
		} else {
			rr.Address.UriParams.Remove("fl")
		}
	}
}

// bestResponse picks per §16.7 step 6: a 6xx if any, else the lowest class,
// preferring inside 4xx the responses a caller can act on.
func bestResponse(finals []*sip.Response) *sip.Response {
	var best *sip.Response
	for _, f := range finals {
		if best == nil || rank(f) < rank(best) {
			best = f
		}
	}
	return best
}

func rank(r *sip.Response) int {
	code := r.StatusCode
	class := code / 100
	switch {
	case class == 6:
		return code
	case code == 401 || code == 407:
		return 1000
	case code == 415 || code == 420 || code == 484:
		return 1100 + code
	case code == 486:
		return 1600
	case code == 408 || code == 487 || code == 480:
		// The proxy's own timeouts and cancellations say least.
		return 5000 + class*1000 + code
	}
	return 2000 + class*1000 + code
}

// stripVia returns a copy of res without its top Via (ours). A copy: the
// response handed on by the client transaction is read again after it
// is relayed (removing the Via in place broke calls answered by
// linphonec across two domains).
func stripVia(res *sip.Response) *sip.Response {
	out := res.Clone()
	out.RemoveHeader("Via")
	return out
}

// runBranch sends b to its targets in order (RFC 3263 §4.3 failover) and
// feeds the collector.
func (p *Proxy) runBranch(parent context.Context, c *collector, b *branch) {
	defer b.cancel()
	if res := p.anchorBranch(parent, c, b); res != nil {
		if res.StatusCode == 503 {
			c.mu.Lock()
			c.busy = res
			c.mu.Unlock()
		}
		c.final(b, res)
		return
	}
	hops := b.target.hops
	if len(hops) == 0 {
		hops = []resolver.Target{b.target.hop}
	}
	for i, hop := range hops {
		last := i == len(hops)-1
		next, res := p.attempt(parent, c, b, hop, b.target.binary && !last)
		if !next {
			if res != nil {
				c.final(b, res)
			}
			return
		}
		p.log.Info("failing over", "call_id", sipcore.CallID(c.req), "target", hop.String())
	}
}

// attempt sends one copy of b to hop. It returns next=true when the caller
// should try the next target (failover allowed and the target failed).
func (p *Proxy) attempt(parent context.Context, c *collector, b *branch, hop resolver.Target, failover bool) (next bool, final *sip.Response) {
	if !b.target.gateway && p.isGateway(parent, hop) {
		p.log.Info("branch to the ENUM fallback gateway refused", "call_id", sipcore.CallID(c.req), "target", hop.String())
		return failover, synth(c.req, 403, "Forbidden")
	}
	r, err := p.prepare(c.req, c.loop, b, hop, true)
	if err != nil {
		p.log.Debug("branch not sent", "target", hop.String(), "error", err)
		return failover, synth(c.req, 503, "Service Unavailable")
	}
	if strings.EqualFold(hop.Transport, resolver.TLS) && p.tlsExpect != nil {
		domain := b.target.domain
		if domain == "" {
			domain = strings.ToLower(r.Recipient.Host)
		}
		p.tlsExpect(hop.IP, domain)
	}
	// The context only bounds the connection set-up; the transaction
	// lives on after a CANCEL to collect the 487.
	dialCtx, dialCancel := context.WithTimeout(context.Background(), p.failoverTimeout)
	tx, err := p.transaction(dialCtx, r)
	dialCancel()
	if err != nil && upgraded(r, hop) && (errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, context.DeadlineExceeded)) {
		// RFC 3261 §18.1.1: a request moved to TCP for its size whose
		// connection is refused (or never answered) is sent over UDP
		// after all (many phones listen on UDP only).
		p.log.Debug("large request: TCP failed, sending over UDP", "call_id", sipcore.CallID(c.req), "target", hop.String(), "error", err)
		if r, err = p.prepare(c.req, c.loop, b, hop, false); err == nil {
			udpCtx, udpCancel := context.WithTimeout(context.Background(), p.failoverTimeout)
			tx, err = p.transaction(udpCtx, r)
			udpCancel()
		}
	}
	if err != nil {
		p.res.MarkDown(hop, p.markDown)
		p.log.Info("target unreachable", "call_id", sipcore.CallID(c.req), "target", hop.String(), "error", err)
		if !b.target.binary {
			// A device of ours that cannot be reached is away, not a
			// server failure (which 503 would become upstream: 500).
			return false, synth(c.req, 480, "Temporarily Unavailable")
		}
		return failover, synth(c.req, 503, "Service Unavailable")
	}
	handedOff := false // to drainCanceled, which terminates tx
	defer func() {
		if !handedOff {
			tx.Terminate()
		}
	}()
	if itx, ok := tx.(*inviteTx); ok {
		// The transaction lingers 32 s after its 2xx: what it keeps for
		// a retransmission is this function, which holds the branch (its
		// request) only when the answer must be bridged again.
		var bridged *branch
		if b.media != nil {
			bridged = b
		}
		itx.OnRetransmission(func(res *sip.Response) {
			if res.IsSuccess() {
				out := stripVia(res)
				p.anchorResponse(bridged, out) // the same answer as the first copy got
				p.writeResponse(out)
			}
		})
	}

	var timerC *time.Timer
	var timerCC <-chan time.Time
	if r.IsInvite() {
		timerC = time.NewTimer(p.timerC)
		defer timerC.Stop()
		timerCC = timerC.C
	}
	var noAnswer <-chan time.Time
	// Another node of the domain that holds the device's flow and does
	// not answer within the failover timeout is gone (as a federation
	// target would be): its device is away, not ringing for 32 s.
	if failover || b.target.node {
		t := time.NewTimer(p.failoverTimeout)
		defer t.Stop()
		noAnswer = t.C
	}
	provisional := false
	cancelSent := false
	cancelWanted := false
	// RFC 3261 §9.1: a CANCELed INVITE that gets no final response within
	// 64*T1 is considered over.
	var cancelDeadline <-chan time.Time
	sendCancel := func() {
		if !cancelSent && r.IsInvite() {
			cancelSent = true
			p.sendCancel(r, hop, c.cancelReason(b))
			cancelDeadline = time.After(64 * sip.T1)
		}
	}
	stop := b.ctx.Done()
	for {
		select {
		case res := <-tx.Responses():
			noAnswer = nil
			switch {
			case res.StatusCode < 200:
				if res.StatusCode == 100 {
					continue
				}
				provisional = true
				if cancelWanted {
					sendCancel()
				}
				if timerC != nil {
					timerC.Reset(p.timerC)
				}
				c.provisional(b, res)
			case res.StatusCode < 300:
				c.success(b, res)
				return false, nil
			case res.StatusCode == 503 && failover:
				p.res.MarkDown(hop, retryAfter(res, p.markDown))
				return true, nil
			default:
				return false, res
			}
		case <-tx.Done():
			// Timeout or transport error with no final response.
			if failover {
				p.res.MarkDown(hop, p.markDown)
				return true, nil
			}
			if cancelSent || cancelWanted {
				return false, synth(c.req, 487, "Request Terminated")
			}
			if b.target.node {
				return false, synth(c.req, 480, "Temporarily Unavailable")
			}
			return false, synth(c.req, 408, "Request Timeout")
		case <-cancelDeadline:
			return false, synth(c.req, 487, "Request Terminated")
		case <-noAnswer:
			p.res.MarkDown(hop, p.markDown)
			p.log.Info("no answer from target", "call_id", sipcore.CallID(c.req), "target", hop.String(), "after", p.failoverTimeout)
			if !failover {
				sendCancel() // in case it was only slow
				return false, synth(c.req, 480, "Temporarily Unavailable")
			}
			return true, nil
		case <-timerCC:
			// Timer C (§16.6 step 11): CANCEL a ringing branch, or give up
			// on one that never answered.
			timerCC = nil
			if provisional {
				// The caller is answered now, as Kamailio's fr_inv_timer
				// does, not after the CANCEL's 487 or its 32 s timeout.
				sendCancel()
				handedOff = true
				go drainCanceled(c, b, tx, cancelDeadline)
				return false, synth(c.req, 408, "Request Timeout")
			}
			return false, synth(c.req, 408, "Request Timeout")
		case <-stop:
			stop = nil
			cancelWanted = true
			if provisional {
				sendCancel()
			}
			if !r.IsInvite() {
				return false, nil
			}
		case <-parent.Done():
			parent = context.Background()
			cancelWanted = true
			if provisional {
				sendCancel()
			}
		}
	}
}

// transaction sends r in a client transaction: our own for INVITE (see
// inviteTx), sipgo's for the other methods. ctx bounds the connection's
// set-up only.
func (p *Proxy) transaction(ctx context.Context, r *sip.Request) (clientTx, error) {
	if r.IsInvite() {
		itx, err := p.sendInvite(ctx, r)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return itx, nil
	}
	return p.client.TransactionRequest(ctx, r, noBuild)
}

// drainCanceled sees a CANCELed INVITE branch to its end once the caller
// has been answered: the 487 is ACKed by the transaction, and a 2xx that
// crossed the CANCEL is still relayed (RFC 3261 §16.7 step 5), so that
// the caller can ACK and hang up.
func drainCanceled(c *collector, b *branch, tx clientTx, deadline <-chan time.Time) {
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			switch {
			case res.IsSuccess():
				c.success(b, res)
			case res.StatusCode >= 200:
				return
			}
		case <-tx.Done():
			return
		case <-deadline:
			return
		}
	}
}

// prepare makes the copy of b for hop: Record-Route, our Via, transport and
// destination.
//
// A request too large for UDP goes over TCP when upgrade is set, a TCP
// listener exists and the hop is not the device's own UDP flow (behind
// NAT only that flow reaches it).
func (p *Proxy) prepare(in *sip.Request, loop string, b *branch, hop resolver.Target, upgrade bool) (*sip.Request, error) {
	r := b.base
	if !b.once {
		r = r.Clone() // the next hop (failover) starts again from base
	}
	transport := strings.ToLower(hop.Transport)
	if transport == "" {
		transport = resolver.UDP
	}
	// RFC 3261 §18.1.1: too large for UDP goes over TCP.
	if upgrade && transport == resolver.UDP && !b.target.flow && b.size == 0 {
		b.size = renderedSize(b.base)
	}
	// Our Via and Record-Route add up to about 200 bytes.
	if upgrade && transport == resolver.UDP && !b.target.flow && b.size+200 > p.maxUDP {
		if _, ok := p.listener(resolver.TCP); ok {
			transport = resolver.TCP
		}
	}
	out, ok := p.listener(transport)
	if !ok {
		return nil, fmt.Errorf("proxy: no %s listener for %s", transport, hop)
	}
	if b.rr {
		inT := strings.ToLower(in.Transport())
		inL, ok := p.listener(inT)
		if !ok {
			inL = out
		}
		// The callee's requests in this dialog go to the caller's Contact,
		// or to where the caller really is when it is behind NAT.
		flow := callerFlow(in)
		token := p.sign.dialogToken(in.CallID().Value(), fromTag(in), contactKey(in), flow)
		r.PrependHeader(recordRoute(inL, token, flow))
		if inL != out {
			r.PrependHeader(recordRoute(out, token, flow))
		}
	}
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: strings.ToUpper(transport), Host: out.Host, Port: out.Port}
	via.Params.Add("branch", p.sign.branch(loop, r.Via()))
	via.Params.Add("rport", "")
	r.PrependHeader(via)
	if b.target.node {
		r.AppendHeader(sip.NewHeader(nodeHeader, p.sign.nodeAssertion(r, time.Now())))
	}
	r.SetTransport(strings.ToUpper(transport))
	r.SetDestination(hop.AddrPort().String())
	if transport == resolver.TLS && p.tlsExpect != nil && b.target.domain != "" {
		if _, err := netip.ParseAddr(strings.Trim(b.target.domain, "[]")); err != nil {
			// By the SIP domain's name, which the TLS handshake then
			// carries and checks (RFC 5922); tlsExpect pins it to hop.
			r.SetDestination(net.JoinHostPort(b.target.domain, strconv.Itoa(int(hop.Port))))
		}
	}
	if transport == resolver.UDP {
		bind := out.Bind
		if bind == "" {
			bind = net.JoinHostPort(out.Host, strconv.Itoa(out.Port))
		}
		if ap, err := netip.ParseAddrPort(bind); err == nil {
			r.Laddr = sip.Addr{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}
		}
	}
	return r, nil
}

func recordRoute(l Listener, token, flow string) *sip.RecordRouteHeader {
	u := sip.Uri{Scheme: "sip", Host: l.Host, Port: l.Port}
	u.UriParams.Add("transport", l.Transport)
	u.UriParams.Add("lr", "")
	u.UriParams.Add("sf", token)
	if flow != "" {
		u.UriParams.Add("fl", flow)
	}
	return &sip.RecordRouteHeader{Address: u}
}

func (p *Proxy) listener(transport string) (Listener, bool) {
	for _, l := range p.listeners {
		if l.Transport == transport {
			return l, true
		}
	}
	return Listener{}, false
}

// sendCancel sends a CANCEL for the INVITE copy r (RFC 3261 §9.1): same
// Request-URI, Call-ID, From, To, CSeq number, Route and top Via. It goes
// to hop's address (r's destination may be a name pinned only for a while).
func (p *Proxy) sendCancel(r *sip.Request, hop resolver.Target, reason []string) {
	c := sipcore.CancelFor(r)
	for _, v := range reason {
		c.AppendHeader(sip.NewHeader("Reason", v))
	}
	c.SetTransport(r.Transport())
	c.SetDestination(hop.AddrPort().String())
	c.Laddr = r.Laddr
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 32*time.Second)
		defer cancel()
		tx, err := p.client.TransactionRequest(ctx, c, noBuild)
		if err != nil {
			p.log.Debug("cancel not sent", "call_id", sipcore.CallID(r), "error", err)
			return
		}
		defer tx.Terminate()
		select {
		case <-tx.Responses():
		case <-tx.Done():
		case <-ctx.Done():
		}
	}()
}

// forwardACK relays an ACK for a 2xx statelessly along the route set, or
// to flow, the callee's real address behind NAT.
func (p *Proxy) forwardACK(ctx context.Context, in, fwd *sip.Request, flow *resolver.Target) error {
	var next sip.Uri
	if rt := fwd.Route(); rt != nil {
		next = rt.Address
	} else {
		next = fwd.Recipient
	}
	var hop resolver.Target
	if flow != nil {
		hop = *flow
	} else {
		hops, err := p.res.Resolve(ctx, next)
		if err != nil {
			return fmt.Errorf("proxy: ack: %w", err)
		}
		if len(hops) == 0 {
			return errors.New("proxy: ack: no target")
		}
		hop = hops[0]
	}
	b := &branch{base: fwd, once: true, target: branchTarget{flow: flow != nil}}
	decMaxForwards(fwd)
	r, err := p.prepare(in, loopHash(in), b, hop, true)
	if err != nil {
		return err
	}
	return p.client.WriteRequest(r, noBuild)
}

// HandleStrayResponse hands a response of our own INVITE client
// transactions to it (inviteTx), and relays any other that matches no
// client transaction (an INVITE's 2xx retransmitted after ours ended) upstream, statelessly,
// when its top Via is ours and was made for the hop in its second Via
// (RFC 3261 §16.7, RFC 6026); any other is dropped.
func (p *Proxy) HandleStrayResponse(res *sip.Response) {
	if p.deliverInvite(res) {
		return // a response of our own INVITE transaction
	}
	vias := res.GetHeaders("Via")
	if cseq := res.CSeq(); len(vias) < 2 || !res.IsSuccess() || cseq == nil || cseq.MethodName != sip.INVITE {
		// RFC 6026 §7.3: only an INVITE's 2xx outlives its transaction;
		// a non-INVITE answered once (a fork's second 200) is not
		// answered again.
		return
	}
	ours, ok1 := vias[0].(*sip.ViaHeader)
	up, ok2 := vias[1].(*sip.ViaHeader)
	if !ok1 || !ok2 || !p.isOurVia(ours) || !p.sign.branchOK(ours, up) {
		p.log.Debug("stray response dropped", "call_id", callIDOf(res), "status", res.StatusCode)
		return
	}
	p.writeResponse(stripVia(res))
}

func callIDOf(res *sip.Response) string {
	if c := res.CallID(); c != nil {
		return sipcore.Sanitize(c.Value())
	}
	return ""
}

func (p *Proxy) writeResponse(res *sip.Response) {
	v := res.Via()
	if v == nil {
		return
	}
	res.SetTransport(v.Transport)
	res.SetDestination(viaDest(v))
	if err := p.client.TransportLayer().WriteMsg(res); err != nil {
		p.log.Debug("stateless relay", "error", err)
	}
}

// endStateless ends the server transaction of c.req and sends out (data,
// when it is already rendered) outside it, to where the request came
// from, as the transaction would have: on the connection the transaction
// answered on (a UDP listener, or the request's TCP, TLS or WebSocket
// connection, held open until the response is out). The first final
// status is noted for the logs and metrics.
func (c *collector) endStateless(out *sip.Response, data []byte) {
	conn := txConn(c.tx)
	if conn != nil {
		// Ending the transaction gives back its reference to the
		// connection, which closes a TCP connection nothing else holds:
		// hold it until the response is out.
		conn.Ref(1)
		defer conn.TryClose()
	}
	c.tx.Terminate()
	if t, ok := c.tx.(*sipcore.Tx); ok {
		t.Sent(out)
	}
	if data == nil {
		data = render(out)
	}
	c.p.sendBytes(c.req, out, data, conn)
}

// render returns res as it goes on the wire.
func render(res *sip.Response) []byte {
	var b bytes.Buffer
	res.StringWrite(&b)
	return b.Bytes()
}

// sendBytes sends data, a response to req, outside any transaction, to
// where req came from (a client that left rport out may not listen at
// its Via's port): on conn, the connection req's transaction answered on
// (a UDP listener, or the request's TCP or TLS connection), or, when there is none or it fails, through the transport
// layer, which finds a connection by address (one sipgo may have
// forgotten: the UDP read loop's restarts clear its pool).
//
// res is data parsed, when the caller has it: the fallback sends it
// rather than parsing data again (which a WebSocket client connection
// masks in place as it writes).
func (p *Proxy) sendBytes(req *sip.Request, res *sip.Response, data []byte, conn sip.Connection) {
	switch c := conn.(type) {
	case *sip.UDPConnection:
		if ap, err := netip.ParseAddrPort(req.Source()); err == nil {
			if _, err := c.WriteTo(data, net.UDPAddrFromAddrPort(ap)); err == nil {
				return
			}
		}
	case io.Writer: // a stream (TCP, TLS): one Write is one message
		if n, err := c.Write(data); err == nil && n == len(data) {
			return
		}
	}
	if res == nil {
		m, err := sip.ParseMessage(data)
		r, ok := m.(*sip.Response)
		if err != nil || !ok {
			return
		}
		res = r
	}
	res.SetTransport(req.Transport())
	res.SetDestination(req.Source())
	if err := p.client.TransportLayer().WriteMsg(res); err != nil {
		p.log.Debug("response outside a transaction", "call_id", sipcore.CallID(req), "status", res.StatusCode, "error", err)
	}
}

// txConn returns the connection of tx, a sipgo server transaction (in a
// sipcore.Tx or not), or nil.
func txConn(tx sip.ServerTransaction) sip.Connection {
	if t, ok := tx.(*sipcore.Tx); ok {
		tx = t.ServerTransaction
	}
	if c, ok := tx.(interface{ Connection() sip.Connection }); ok {
		return c.Connection()
	}
	return nil
}

// renderedSize is len(r.String()) without building the string.
func renderedSize(r *sip.Request) int {
	var n byteCounter
	r.StringWrite(&n)
	return int(n)
}

// byteCounter is an io.StringWriter that only counts.
type byteCounter int

func (c *byteCounter) WriteString(s string) (int, error) {
	*c += byteCounter(len(s))
	return len(s), nil
}

// viaDest is where a response to the hop that added v goes (RFC 3261
// §18.2.2, RFC 3581 §4).
func viaDest(v *sip.ViaHeader) string {
	host := v.Host
	if r, ok := v.Params.Get("received"); ok && r != "" {
		host = r
	}
	port := v.Port
	if rp, ok := v.Params.Get("rport"); ok && rp != "" {
		if n, err := strconv.Atoi(rp); err == nil {
			port = n
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(sipcore.PortOr(port, v.Transport)))
}

func (p *Proxy) isOurVia(v *sip.ViaHeader) bool {
	return p.isOurHostPort(v.Host, sipcore.PortOr(v.Port, v.Transport))
}

// loopPrefix is the start of every branch we make; the 8 hex digits after
// it hash the request as received (RFC 3261 §16.6 step 8), so a request
// that comes back unchanged is a loop (§16.3 step 4) and one that comes
// back retargeted is a spiral.
const loopPrefix = sip.RFC3261BranchMagicCookie + "-sf"

func loopHash(req *sip.Request) string {
	h := fnv.New32a()
	h.Write([]byte(req.Recipient.String()))
	if f := req.From(); f != nil {
		t, _ := f.Params.Get("tag")
		h.Write([]byte("\x00" + t))
	}
	if to := req.To(); to != nil {
		t, _ := to.Params.Get("tag")
		h.Write([]byte("\x00" + t))
	}
	if c := req.CallID(); c != nil {
		h.Write([]byte("\x00" + c.Value()))
	}
	if c := req.CSeq(); c != nil {
		h.Write([]byte("\x00" + strconv.FormatUint(uint64(c.SeqNo), 10)))
	}
	for _, pr := range req.GetHeaders("Proxy-Require") {
		h.Write([]byte("\x00" + pr.Value()))
	}
	return fmt.Sprintf("%08x", h.Sum32())
}

// isLoop reports whether a Via of ours carries the branch we would give
// req now (§16.3 step 4).
func (p *Proxy) isLoop(req *sip.Request) bool {
	var want string
	for _, h := range req.GetHeaders("Via") {
		v, ok := h.(*sip.ViaHeader)
		if !ok || !p.isOurVia(v) {
			continue
		}
		if want == "" {
			want = loopPrefix + loopHash(req) + "."
		}
		if br, _ := v.Params.Get("branch"); strings.HasPrefix(br, want) {
			return true
		}
	}
	return false
}

// quote makes s a quoted-string (RFC 3261 §25.1), escaping \ and ".
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(sipcore.Sanitize(s)) + `"`
}

// synth is a response the proxy makes up for a branch (no answer, error).
func synth(req *sip.Request, code int, reason string) *sip.Response {
	return sipcore.NewResponse(req, code, reason)
}

// retryAfter reads Retry-After seconds, or returns def.
func retryAfter(res *sip.Response, def time.Duration) time.Duration {
	if h := res.GetHeader("Retry-After"); h != nil {
		v, _, _ := strings.Cut(h.Value(), ";")
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 && n < 86400 {
			return time.Duration(n) * time.Second
		}
	}
	return def
}

func netipAddrPort(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return ap, fmt.Errorf("proxy: received address %q: %w", s, err)
	}
	return ap, nil
}

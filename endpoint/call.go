package endpoint

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipfed/sipfed/media/sdp"
	"github.com/sipfed/sipfed/resolver"
	"github.com/sipfed/sipfed/sipcore"
)

// Event is one thing that happened, as `sipfed phone --json` prints it:
// registered, ringing, answered, dtmf, held, resumed, hangup, error.
type Event struct {
	Event     string        `json:"event"`
	CallID    string        `json:"call_id,omitempty"`
	AOR       string        `json:"aor,omitempty"`
	Peer      string        `json:"peer,omitempty"`      // the other party's URI
	Direction string        `json:"direction,omitempty"` // in or out
	Status    int           `json:"status,omitempty"`    // the SIP status that ended a call attempt
	Reason    string        `json:"reason,omitempty"`    // why a call ended: local, remote, media-timeout, or the status's reason
	Digit     string        `json:"digit,omitempty"`
	Expires   int           `json:"expires,omitempty"`    // registered: seconds granted
	Proxy     string        `json:"proxy,omitempty"`      // registered: the proxy it went through, ip:port
	To        string        `json:"to,omitempty"`         // ringing (in): the address the caller dialled (an alias, a number)
	Duration  float64       `json:"duration_s,omitempty"` // hangup: seconds since answered
	Streams   []StreamStats `json:"streams,omitempty"`    // hangup: per stream
	Error     string        `json:"error,omitempty"`
}

// Call is one call of the phone, in either direction.
type Call struct {
	p        *Phone
	ID       string
	Peer     string
	outgoing bool
	out      *sipgo.DialogClientSession
	in       *sipgo.DialogServerSession
	audio    *stream
	video    *stream // nil: no video in this call
	answered time.Time
	path     []string   // the hops the INVITE crossed (incoming calls), caller first
	sdpCfg   sdp.Config // our side of the session, for re-INVITEs
	target   sip.Uri    // the peer's Contact: the remote target
	holdMu   sync.Mutex // one re-INVITE at a time
	held     bool       // on hold, by either side

	endOnce sync.Once
	ended   chan struct{}
	mu      sync.Mutex
	hangup  Event // the hangup event, once ended
}

// Done is closed when the call has ended.
func (c *Call) Done() <-chan struct{} { return c.ended }

// Result returns the hangup event (with the streams' statistics) once
// the call has ended.
func (c *Call) Result() Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hangup
}

// parseTarget reads "bob@b.test", "sip:bob@b.test", a bare "bob" or
// extension "1001" (of our own domain), or a telephone number
// "+81312345678" or "tel:+81312345678", which goes to our own domain's
// proxy as sip:+81312345678@our.domain;user=phone (RFC 3261 §19.1.6)
// for it to look up (ENUM).
func (p *Phone) parseTarget(target string) (sip.Uri, error) {
	s := strings.TrimSpace(target)
	if len(s) > 4 && strings.EqualFold(s[:4], "tel:") {
		s = s[4:]
		if !strings.HasPrefix(s, "+") {
			return sip.Uri{}, fmt.Errorf("endpoint: %q: want a global number, tel:+…", target)
		}
	}
	if strings.HasPrefix(s, "+") && !strings.ContainsAny(s, "@:") {
		number, _, _ := strings.Cut(s, ";")
		n, ok := resolver.NormalizeE164(number)
		if !ok {
			return sip.Uri{}, fmt.Errorf("endpoint: %q: want a global number, + and up to 15 digits", target)
		}
		return sip.Uri{Scheme: "sip", User: n, Host: p.domain, UriParams: sip.HeaderParams{{K: "user", V: "phone"}}}, nil
	}
	if !strings.Contains(s, "@") && !strings.Contains(s, ":") {
		s += "@" + p.domain
	}
	if !strings.HasPrefix(strings.ToLower(s), "sip:") && !strings.HasPrefix(strings.ToLower(s), "sips:") {
		s = "sip:" + s
	}
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil || u.Host == "" {
		return u, fmt.Errorf("endpoint: %q is not a SIP address", target)
	}
	return u, nil
}

// recordPath is the recording file of the next call.
func (p *Phone) recordPath() string {
	if p.cfg.Record == "" {
		return ""
	}
	p.mu.Lock()
	p.recorded++
	n := p.recorded
	p.mu.Unlock()
	if n == 1 {
		return p.cfg.Record
	}
	ext := filepath.Ext(p.cfg.Record)
	return strings.TrimSuffix(p.cfg.Record, ext) + "-" + strconv.Itoa(n) + ext
}

// cancelGate sends the CANCEL of an INVITE whose caller gave up (ctx
// ended), once the INVITE in flight has had a provisional response
// (RFC 3261 §9.1: a CANCEL before one may overtake the INVITE). The phone
// sends it itself, to its proxy, rather than leaving it to sipgo's
// WaitAnswer, which sent it at once after a 407 (before the INVITE with
// credentials was answered) and, on a loaded machine, now and then
// without the INVITE's destination, to the callee's domain looked up in
// the system's DNS. WaitAnswer then ends with the 487 the CANCEL brings.
type cancelGate struct {
	mu          sync.Mutex
	provisional bool // the INVITE in flight has had a 1xx
	wanted      bool // ctx ended
	sent        bool
	send        func()
	cancel      context.CancelFunc // ends the wait: stop, or no 487 in 64*T1
	force       context.CancelCauseFunc
	done        chan struct{}
}

// abandon ends the wait at once, without a CANCEL (nothing answered the
// INVITE: there is nothing to cancel), for the next proxy to take it.
func (g *cancelGate) abandon() { g.force(sipgo.WaitAnswerForceCancelErr) }

// cancelAfterProvisional returns the context to wait for the answer in,
// which outlives ctx, and the gate that sends the CANCEL (send) when ctx
// ends.
func cancelAfterProvisional(ctx context.Context, send func()) (context.Context, *cancelGate) {
	fctx, force := context.WithCancelCause(context.WithoutCancel(ctx))
	wctx, cancel := context.WithCancel(fctx)
	g := &cancelGate{cancel: cancel, force: force, send: send, done: make(chan struct{})}
	go func() {
		select {
		case <-ctx.Done():
			g.mu.Lock()
			g.wanted = true
			g.maybeSend()
			g.mu.Unlock()
		case <-g.done:
		}
	}()
	return wctx, g
}

// maybeSend sends the CANCEL when it is wanted and allowed; g.mu held.
func (g *cancelGate) maybeSend() {
	if !g.wanted || !g.provisional || g.sent {
		return
	}
	g.sent = true
	go g.send()
	// The 487 ends the wait; without one, give up as a UAC would
	// (Timer B's 64*T1).
	time.AfterFunc(64*sip.T1, g.cancel)
}

// saw notes a response of the INVITE: a 1xx allows the CANCEL, a final
// one (a challenge, after which sipgo sends the INVITE again) holds it
// back until the next INVITE has had its own.
func (g *cancelGate) saw(res *sip.Response) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if res.IsProvisional() {
		g.provisional = true
		g.maybeSend()
		return
	}
	g.provisional = false
}

func (g *cancelGate) stop() {
	close(g.done)
	g.cancel()
	g.force(nil)
}

// sendCancel sends the CANCEL of inv (its Request-URI, top Via, Route,
// From, To, Call-ID and CSeq number) to the phone's proxy and waits for
// its answer.
func (p *Phone) sendCancel(inv *sip.Request) {
	c := sipcore.CancelFor(inv)
	p.outbound(c)
	if d := inv.Destination(); d != "" && c.Route() == nil {
		// Where the INVITE went (RFC 3261 §9.1), though the phone may have
		// moved to another proxy since (failover).
		c.SetDestination(d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 64*sip.T1)
	defer cancel()
	tx, err := p.client.TransactionRequest(ctx, c, func(*sipgo.Client, *sip.Request) error { return nil })
	if err != nil {
		return
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.StatusCode >= 200 {
				return
			}
		case <-tx.Done():
			return
		case <-ctx.Done():
			return
		}
	}
}

// Dial calls target and returns once the call is answered, or the error
// that ended the attempt (a *StatusError for a final response). Cancelling
// ctx while it rings sends CANCEL.
func (p *Phone) Dial(ctx context.Context, target string) (*Call, error) {
	if p.isClosed() {
		return nil, ErrClosed
	}
	uri, err := p.parseTarget(target)
	if err != nil {
		return nil, err
	}
	socks, err := p.listenMedia(len(p.video) > 0)
	if err != nil {
		return nil, err
	}
	closeSockets := socks.close
	sdpCfg := socks.config(p)
	offer, err := sdp.NewOffer(sdpCfg)
	if err != nil {
		closeSockets()
		return nil, fmt.Errorf("endpoint: %w", err)
	}
	body, err := offer.Marshal()
	if err != nil {
		closeSockets()
		return nil, fmt.Errorf("endpoint: %w", err)
	}
	var req *sip.Request
	var sess *sipgo.DialogClientSession
	var c *Call
	var earlySDP []byte
	proxy, targets := p.proxyTargets()
	for attempt := 1; ; attempt++ {
		req = sip.NewRequest(sip.INVITE, uri)
		req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: p.user, Host: p.domain}, Params: tagParams()})
		req.AppendHeader(&sip.ToHeader{Address: uri})
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		req.AppendHeader(sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"))
		req.SetBody(body)
		p.outboundTo(req, proxy)
		if sess, err = p.outDlg.WriteInvite(ctx, req); err != nil {
			if ctx.Err() != nil || attempt >= targets {
				closeSockets()
				return nil, fmt.Errorf("endpoint: INVITE via %s: %w", proxy.AddrPort(), err)
			}
			// The proxy could not be reached (a TCP connection refused):
			// the next target takes the call, and the registration,
			// whose flow went through the failed one, is renewed.
			p.log.Debug("INVITE could not reach the proxy", "proxy", proxy.String(), "error", err)
			proxy = p.failover(ctx, proxy)
			p.reregister()
			continue
		}
		sdpCfg.SessionID = offer.SessionID
		c = &Call{p: p, ID: req.CallID().Value(), Peer: uri.String(), outgoing: true, out: sess, ended: make(chan struct{}), sdpCfg: sdpCfg}
		rang := false
		earlySDP = nil
		waitCtx, cancelWait := cancelAfterProvisional(ctx, func() { p.sendCancel(sess.InviteRequest) })
		// A proxy answers an INVITE with 100 Trying at once (RFC 3261
		// §16.2): one that says nothing for attemptTimeout, when other
		// targets remain, is taken for dead (RFC 3263 §4.3), as over
		// UDP nothing else would tell.
		var heard, silent atomic.Bool
		var watchdog *time.Timer
		if attempt < targets {
			watchdog = time.AfterFunc(attemptTimeout, func() {
				if !heard.Load() {
					silent.Store(true)
					cancelWait.abandon()
				}
			})
		}
		err = sess.WaitAnswer(waitCtx, sipgo.AnswerOptions{Username: p.user, Password: p.cfg.Password, OnResponse: func(res *sip.Response) error {
			heard.Store(true)
			cancelWait.saw(res)
			if res.StatusCode == 183 && len(res.Body()) > 0 && c.audio == nil {
				// Early media (RFC 3960): the ringback or announcement the
				// callee's side plays before answering is played now.
				if n, nv, err := answered(offer, res.Body()); err == nil && p.openMedia(c, socks, n, nv) == nil {
					c.audio.sess.SetReceiveTimeout(0) // it may stop before the answer
					earlySDP = res.Body()
				}
			}
			if (res.StatusCode == 180 || res.StatusCode == 183) && !rang {
				rang = true
				ev := Event{Event: "ringing", CallID: c.ID, Peer: c.Peer, Direction: "out"}
				if c.audio != nil {
					ev.Reason = "early-media"
				}
				p.emit(ev)
			}
			return nil
		}})
		if watchdog != nil {
			watchdog.Stop()
		}
		cancelWait.stop()
		if err != nil && silent.Load() && ctx.Err() == nil {
			p.log.Info("no answer to the INVITE from the proxy: trying the next", "proxy", proxy.String())
			sess.Close()
			proxy = p.failover(ctx, proxy)
			p.reregister()
			continue
		}
		break
	}
	if err != nil {
		c.closeMedia()
		closeSockets()
		sess.Close()
		if ctx.Err() != nil { // the caller gave up: the 487 says no more
			return nil, fmt.Errorf("endpoint: INVITE: %w", ctx.Err())
		}
		var de *sipgo.ErrDialogResponse
		if errors.As(err, &de) {
			return nil, &StatusError{Method: "INVITE", Code: de.Res.StatusCode, Reason: de.Res.Reason}
		}
		return nil, fmt.Errorf("endpoint: INVITE: %w", err)
	}
	if ctx.Err() != nil {
		// Answered as the CANCEL crossed it: the call is acknowledged
		// and ended at once (RFC 3261 §15).
		sess.Ack(context.Background())
		sess.Bye(context.Background())
		sess.Close()
		c.closeMedia()
		closeSockets()
		return nil, fmt.Errorf("endpoint: INVITE: %w", ctx.Err())
	}
	body = sess.InviteResponse.Body()
	if len(body) == 0 && c.audio != nil {
		body = earlySDP // the answer came with the 183
	}
	n, nv, err := answered(offer, body)
	if err != nil {
		// The 2xx is acknowledged and the call ended at once.
		sess.Ack(ctx)
		sess.Bye(ctx)
		sess.Close()
		c.closeMedia()
		closeSockets()
		return nil, err
	}
	if ct := sess.InviteResponse.Contact(); ct != nil {
		c.target = ct.Address
	}
	if err := sess.Ack(ctx); err != nil {
		c.closeMedia()
		closeSockets()
		sess.Close()
		return nil, fmt.Errorf("endpoint: ACK: %w", err)
	}
	if err := p.startCall(c, socks, n, nv); err != nil {
		sess.Bye(ctx)
		sess.Close()
		c.closeMedia()
		closeSockets()
		return nil, err
	}
	return c, nil
}

// sockets are a call's RTP and RTCP sockets: audio, and video when the
// call has video.
type sockets struct{ a, ar, v, vr *net.UDPConn }

func (p *Phone) listenMedia(video bool) (*sockets, error) {
	var s sockets
	var err error
	if s.a, s.ar, err = p.ports.Listen(false); err != nil {
		return nil, fmt.Errorf("endpoint: rtp: %w", err)
	}
	if video {
		if s.v, s.vr, err = p.ports.Listen(false); err != nil {
			s.close()
			return nil, fmt.Errorf("endpoint: rtp: %w", err)
		}
	}
	return &s, nil
}

func (s *sockets) close() {
	for _, c := range []*net.UDPConn{s.a, s.ar, s.v, s.vr} {
		if c != nil {
			c.Close()
		}
	}
}

// dropVideo closes the video sockets (the peer took no video).
func (s *sockets) dropVideo() {
	if s.v != nil {
		s.v.Close()
		s.vr.Close()
		s.v, s.vr = nil, nil
	}
}

// config is our side of the session on these sockets.
func (s *sockets) config(p *Phone) sdp.Config {
	c := sdp.Config{Addr: p.local.Addr(), AudioPort: s.a.LocalAddr().(*net.UDPAddr).Port, Audio: p.audio, Video: p.video}
	if s.v != nil {
		c.VideoPort = s.v.LocalAddr().(*net.UDPAddr).Port
	}
	return c
}

// answered reads the answer to offer: the audio, and the video if the
// peer took it.
func answered(offer *sdp.Session, body []byte) (negotiated, *negotiated, error) {
	ans, err := sdp.Parse(body)
	if err != nil {
		return negotiated{}, nil, fmt.Errorf("endpoint: the answer's SDP: %w", err)
	}
	neg, err := sdp.ReadAnswer(offer, ans)
	if err != nil {
		return negotiated{}, nil, fmt.Errorf("endpoint: the answer's SDP: %w", err)
	}
	n, err := negotiate(neg.Audio())
	if err != nil {
		return n, nil, err
	}
	if v, ok := negotiateVideo(neg.Video()); ok {
		return n, &v, nil
	}
	return n, nil, nil
}

// startCall starts the media of an answered call and watches its end.
func (p *Phone) startCall(c *Call, socks *sockets, n negotiated, nv *negotiated) error {
	if c.audio == nil {
		if err := p.openMedia(c, socks, n, nv); err != nil {
			return err
		}
	} else {
		// Early media ran already; the answer may name other addresses.
		c.audio.sess.SetRemote(n.remote, n.rtcp)
		c.audio.sess.SetReceiveTimeout(p.mediaTimeout())
		if c.video != nil && nv != nil {
			c.video.sess.SetRemote(nv.remote, nv.rtcp)
		}
	}
	c.answered = time.Now()
	p.mu.Lock()
	p.calls[c.ID] = c
	p.mu.Unlock()
	dir := "in"
	if c.outgoing {
		dir = "out"
	}
	p.emit(Event{Event: "answered", CallID: c.ID, Peer: c.Peer, Direction: dir})
	go func() {
		select {
		case <-c.dialogDone():
			c.end(context.Background(), "remote", false)
		case <-c.ended:
		}
	}()
	return nil
}

func (p *Phone) mediaTimeout() time.Duration {
	return max(p.cfg.MediaTimeout, 0)
}

// openMedia makes and runs the call's streams on socks.
func (p *Phone) openMedia(c *Call, socks *sockets, n negotiated, nv *negotiated) error {
	timeout := p.mediaTimeout()
	mf := mediaFiles{play: p.cfg.Play, record: p.recordPath(), video: p.cfg.Video, recordVideo: p.cfg.RecordVideo,
		timeout: timeout, echo: p.cfg.Echo && !c.outgoing,
		onDTMF:    func(d rune) { p.emit(Event{Event: "dtmf", CallID: c.ID, Digit: string(d)}) },
		onTimeout: func() { go c.end(context.Background(), "media-timeout", true) },
		onError:   func(err error) { p.emit(Event{Event: "error", CallID: c.ID, Error: err.Error()}) },
	}
	a, err := startAudio(socks.a, socks.ar, n, mf)
	if err != nil {
		return err
	}
	if nv != nil {
		v, err := startVideo(socks.v, socks.vr, *nv, mf)
		if err != nil {
			a.close()
			return err
		}
		c.video = v
	} else {
		socks.dropVideo()
		c.sdpCfg.VideoPort = 0
	}
	c.audio = a
	a.run()
	if c.video != nil {
		c.video.run()
	}
	return nil
}

// closeMedia stops the streams of a call that never got answered.
func (c *Call) closeMedia() {
	for _, s := range []*stream{c.audio, c.video} {
		if s != nil {
			s.close()
		}
	}
	c.audio, c.video = nil, nil
}

func (c *Call) dialogDone() <-chan struct{} {
	if c.out != nil {
		return c.out.Context().Done()
	}
	return c.in.Context().Done()
}

// Path returns, for an incoming call, the hops its INVITE crossed as its
// Via headers name them: the caller's phone first, then each proxy.
func (c *Call) Path() []string { return c.path }

// Media returns the statistics of the call's streams so far: audio, then
// video if any.
func (c *Call) Media() []StreamStats {
	var out []StreamStats
	for _, s := range []*stream{c.audio, c.video} {
		if s != nil {
			out = append(out, s.stats())
		}
	}
	return out
}

// Hold puts the call on hold with a re-INVITE offering sendonly (RFC
// 3264 §8.4): both sides stop sending, and neither times out meanwhile.
func (c *Call) Hold(ctx context.Context) error { return c.reinvite(ctx, sdp.SendOnly) }

// Resume takes the call off hold (sendrecv).
func (c *Call) Resume(ctx context.Context) error { return c.reinvite(ctx, sdp.SendRecv) }

// reinvite sends a re-INVITE with our session at direction, ACKs its 2xx
// and applies the answer.
func (c *Call) reinvite(ctx context.Context, dir sdp.Direction) error {
	if c.audio == nil {
		return errors.New("endpoint: call not answered")
	}
	c.holdMu.Lock()
	defer c.holdMu.Unlock()
	cfg := c.sdpCfg
	cfg.Direction = dir
	cfg.Version++
	offer, err := sdp.NewOffer(cfg)
	if err != nil {
		return fmt.Errorf("endpoint: %w", err)
	}
	body, err := offer.Marshal()
	if err != nil {
		return fmt.Errorf("endpoint: %w", err)
	}
	req := sip.NewRequest(sip.INVITE, c.target)
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(body)
	var tx sip.ClientTransaction
	if c.out != nil {
		tx, err = c.out.TransactionRequest(ctx, req)
	} else {
		tx, err = c.in.TransactionRequest(ctx, req)
	}
	if err != nil {
		return fmt.Errorf("endpoint: re-INVITE: %w", err)
	}
	defer tx.Terminate()
	var res *sip.Response
	for res == nil {
		select {
		case r := <-tx.Responses():
			if r.StatusCode >= 200 {
				res = r
			}
		case <-tx.Done():
			return fmt.Errorf("endpoint: re-INVITE: %w", tx.Err())
		case <-ctx.Done():
			return fmt.Errorf("endpoint: re-INVITE: %w", ctx.Err())
		}
	}
	if !res.IsSuccess() {
		return &StatusError{Method: "re-INVITE", Code: res.StatusCode, Reason: res.Reason}
	}
	ack := sip.NewRequest(sip.ACK, c.target)
	ack.AppendHeader(&sip.CSeqHeader{MethodName: sip.ACK})
	if c.out != nil {
		err = c.out.WriteRequest(ack)
	} else {
		err = c.in.WriteRequest(ack)
	}
	if err != nil {
		return fmt.Errorf("endpoint: ACK: %w", err)
	}
	c.sdpCfg.Version = cfg.Version
	c.setHold(dir != sdp.SendRecv, "local")
	return nil
}

// reinvited answers the peer's re-INVITE (hold, resume, a new offer for
// the same stream) with our session, its direction the answer to theirs.
func (c *Call) reinvited(req *sip.Request, tx sip.ServerTransaction) {
	var err error
	if c.out != nil {
		err = c.out.ReadRequest(req, tx)
	} else {
		err = c.in.ReadRequest(req, tx)
	}
	if err != nil {
		tx.Respond(sip.NewResponseFromRequest(req, 500, "Server Internal Error", nil))
		return
	}
	offer, err := sdp.Parse(req.Body())
	if err != nil || offer.Audio() == nil {
		tx.Respond(sip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil))
		return
	}
	c.holdMu.Lock()
	cfg := c.sdpCfg
	cfg.Version++
	ans, err := sdp.Answer(offer, cfg)
	if err == nil {
		_, err = negotiate(ans.Audio())
	}
	if err != nil {
		c.holdMu.Unlock()
		tx.Respond(sip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil))
		return
	}
	c.sdpCfg.Version = cfg.Version
	c.holdMu.Unlock()
	body, _ := ans.Marshal()
	res := sip.NewResponseFromRequest(req, 200, "OK", body)
	res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	res.AppendHeader(sip.HeaderClone(&c.p.contact))
	if err := tx.Respond(res); err != nil {
		return
	}
	if ct := req.Contact(); ct != nil {
		c.holdMu.Lock()
		c.target = ct.Address
		c.holdMu.Unlock()
	}
	c.setHold(offer.Audio().OnHold(), "remote")
}

// setHold applies hold or resume to the media and reports it.
func (c *Call) setHold(on bool, by string) {
	c.mu.Lock()
	changed := c.held != on
	c.held = on
	c.mu.Unlock()
	timeout := c.p.cfg.MediaTimeout
	if timeout < 0 {
		timeout = 0
	}
	c.audio.hold(on, timeout)
	if c.video != nil {
		c.video.hold(on, timeout)
	}
	if !changed {
		return
	}
	name := "resumed"
	if on {
		name = "held"
	}
	c.p.emit(Event{Event: name, CallID: c.ID, Reason: by})
}

// Hangup ends the call with a BYE.
func (c *Call) Hangup(ctx context.Context) { c.end(ctx, "local", true) }

// SendDTMF sends digits as RFC 4733 telephone events.
func (c *Call) SendDTMF(ctx context.Context, digits string) error {
	if c.audio == nil {
		return errors.New("endpoint: call not answered")
	}
	return c.audio.sendDTMF(ctx, digits)
}

// end stops the media, sends BYE when bye is set, and reports hangup.
func (c *Call) end(ctx context.Context, reason string, bye bool) {
	c.endOnce.Do(func() {
		if bye {
			bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			var err error
			if c.out != nil {
				err = c.out.Bye(bctx)
			} else {
				err = c.in.Bye(bctx)
			}
			cancel()
			if err != nil {
				c.p.log.Warn("bye failed; media stopped all the same", "call_id", c.ID, "error", err)
			}
		}
		var streams []StreamStats
		for _, st := range []*stream{c.audio, c.video} {
			if st != nil {
				streams = append(streams, st.close())
			}
		}
		if c.out != nil {
			c.out.Close()
		} else {
			c.in.Close()
		}
		c.p.mu.Lock()
		delete(c.p.calls, c.ID)
		c.p.mu.Unlock()
		ev := Event{Event: "hangup", CallID: c.ID, Peer: c.Peer, Reason: reason, Streams: streams,
			Duration: float64(time.Since(c.answered).Round(10*time.Millisecond)) / float64(time.Second)}
		c.mu.Lock()
		c.hangup = ev
		c.mu.Unlock()
		c.p.emit(ev)
		close(c.ended)
	})
}

// Calls returns the calls in progress.
func (p *Phone) Calls() []*Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*Call, 0, len(p.calls))
	for _, c := range p.calls {
		out = append(out, c)
	}
	return out
}

// OnAnswered sets the function called for every incoming call once it is
// answered.
func (p *Phone) OnAnswered(f func(*Call)) {
	p.mu.Lock()
	p.onAnswered = f
	p.mu.Unlock()
}

// handle installs the request handlers.
func (p *Phone) handle() {
	p.srv.OnInvite(p.onInvite)
	p.srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) {
		if err := p.inDlg.ReadAck(req, tx); err != nil {
			p.log.Debug("ack", "error", err)
		}
	})
	p.srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if err := p.inDlg.ReadBye(req, tx); err == nil {
			return
		}
		if err := p.outDlg.ReadBye(req, tx); err == nil {
			return
		}
		tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
	})
	p.srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		res.AppendHeader(sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"))
		tx.Respond(res)
	})
	p.srv.OnInfo(p.onInfo)
}

// onInvite answers a new call: 180, then 200 with our answer after
// AnswerDelay, or 486 when rejecting, 488 without a common codec.
func (p *Phone) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if hasToTag(req) {
		p.mu.Lock()
		c := p.calls[req.CallID().Value()]
		p.mu.Unlock()
		if c == nil {
			tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
			return
		}
		c.reinvited(req, tx)
		return
	}
	if p.isClosed() {
		tx.Respond(sip.NewResponseFromRequest(req, 480, "Temporarily Unavailable", nil))
		return
	}
	if n := p.incoming.Add(1); n > int32(p.cfg.MaxIncoming) {
		p.incoming.Add(-1)
		tx.Respond(sip.NewResponseFromRequest(req, 486, "Busy Here", nil))
		return
	}
	defer p.incoming.Add(-1) // onInvite returns when the call has ended
	dlg, err := p.inDlg.ReadInvite(req, tx)
	if err != nil {
		tx.Respond(sip.NewResponseFromRequest(req, 400, "Bad Request", nil))
		return
	}
	peer := req.From().Address.String()
	id := req.CallID().Value()
	if p.cfg.Reject {
		dlg.Respond(486, "Busy Here", nil)
		dlg.Close()
		p.emit(Event{Event: "hangup", CallID: id, Peer: peer, Direction: "in", Status: 486, Reason: "rejected"})
		return
	}
	offer, err := sdp.Parse(req.Body())
	if err != nil {
		dlg.Respond(488, "Not Acceptable Here", nil)
		dlg.Close()
		return
	}
	// No codec in common: 488 at once, not after ringing.
	if !p.canAnswer(offer) {
		dlg.Respond(488, "Not Acceptable Here", nil)
		dlg.Close()
		p.emit(Event{Event: "hangup", CallID: id, Peer: peer, Direction: "in", Status: 488, Reason: "no common codec"})
		return
	}
	if err := dlg.Respond(180, "Ringing", nil); err != nil {
		dlg.Close()
		return
	}
	// The number or name the caller dialled: an alias (1001) or a
	// telephone number reaches this phone under the To it was called by.
	p.emit(Event{Event: "ringing", CallID: id, Peer: peer, Direction: "in", To: sipcore.Sanitize(req.To().Address.String())})
	if p.cfg.AnswerDelay > 0 {
		select {
		case <-time.After(p.cfg.AnswerDelay):
		case <-dlg.Context().Done():
			dlg.Close()
			p.emit(Event{Event: "hangup", CallID: id, Peer: peer, Direction: "in", Reason: "canceled"})
			return
		}
	}
	socks, err := p.listenMedia(len(p.video) > 0 && offer.Video() != nil)
	if err != nil {
		dlg.Respond(500, "Server Internal Error", nil)
		dlg.Close()
		return
	}
	sdpCfg := socks.config(p)
	ans, err := sdp.Answer(offer, sdpCfg)
	var n negotiated
	var nv *negotiated
	if err == nil {
		n, err = negotiate(ans.Audio())
		if err == nil {
			n.remote, n.rtcp = offer.Audio().RTPAddr(), offer.Audio().RTCPAddr()
		}
		if v, ok := negotiateVideo(ans.Video()); ok && err == nil {
			v.remote, v.rtcp = offer.Video().RTPAddr(), offer.Video().RTCPAddr()
			nv = &v
		}
	}
	if err != nil {
		socks.close()
		dlg.Respond(488, "Not Acceptable Here", nil)
		dlg.Close()
		p.emit(Event{Event: "hangup", CallID: id, Peer: peer, Direction: "in", Status: 488, Reason: "no common codec"})
		return
	}
	body, _ := ans.Marshal()
	sdpCfg.SessionID = ans.SessionID
	c := &Call{p: p, ID: id, Peer: peer, in: dlg, ended: make(chan struct{}), path: viaPath(req), sdpCfg: sdpCfg}
	if ct := req.Contact(); ct != nil {
		c.target = ct.Address
	}
	if err := dlg.RespondSDP(body); err != nil {
		socks.close()
		dlg.Close()
		return
	}
	if err := p.startCall(c, socks, n, nv); err != nil {
		c.end(context.Background(), "error", true)
		return
	}
	p.mu.Lock()
	f := p.onAnswered
	p.mu.Unlock()
	if f != nil {
		f(c)
	}
	<-c.ended
}

// canAnswer reports whether offer has an audio codec we take.
func (p *Phone) canAnswer(offer *sdp.Session) bool {
	probe, err := sdp.Answer(offer, sdp.Config{Addr: p.local.Addr(), AudioPort: 9, Audio: p.audio})
	if err != nil {
		return false
	}
	_, err = negotiate(probe.Audio())
	return err == nil
}

// onInfo takes DTMF sent as SIP INFO (application/dtmf-relay or
// application/dtmf) in a call of ours; an INFO outside one gets 481, so
// that nobody can type digits into a phone without being in its call.
func (p *Phone) onInfo(req *sip.Request, tx sip.ServerTransaction) {
	p.mu.Lock()
	c := p.calls[req.CallID().Value()]
	p.mu.Unlock()
	if c == nil || !hasToTag(req) {
		tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		return
	}
	ct := ""
	if h := req.GetHeader("Content-Type"); h != nil {
		ct = strings.ToLower(h.Value())
	}
	body := string(req.Body())
	digit := ""
	switch {
	case strings.HasPrefix(ct, "application/dtmf-relay"):
		for _, line := range strings.Split(body, "\n") {
			if k, v, ok := strings.Cut(line, "="); ok && strings.EqualFold(strings.TrimSpace(k), "signal") {
				digit = strings.TrimSpace(v)
			}
		}
	case strings.HasPrefix(ct, "application/dtmf"):
		digit = strings.TrimSpace(body)
	}
	tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	if len(digit) == 1 && strings.Contains("0123456789*#ABCDabcd", digit) {
		p.emit(Event{Event: "dtmf", CallID: req.CallID().Value(), Digit: strings.ToUpper(digit)})
	}
}

// viaPath lists the sent-by of req's Vias, the first hop first.
func viaPath(req *sip.Request) []string {
	var out []string
	for _, h := range req.GetHeaders("Via") {
		if v, ok := h.(*sip.ViaHeader); ok {
			out = append([]string{strings.ToLower(v.Transport) + ":" + v.SentBy()}, out...)
		}
	}
	return out
}

func hasToTag(req *sip.Request) bool {
	to := req.To()
	return to != nil && to.Params.Has("tag")
}

package proxy

import (
	"context"
	"strings"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"

	"github.com/sipfed/sipfed/sipcore"
)

// MediaAnchor bridges the media of a call whose two sides disagree: a
// browser (WebRTC: ICE, DTLS-SRTP) and a plain RTP endpoint. The proxy
// asks it only for such calls; browser to browser and phone to phone,
// the SDP is not touched and media goes end to end (DESIGN.md). The
// bridge package implements it.
type MediaAnchor interface {
	// IsWebRTC reports whether an SDP body is a browser's.
	IsWebRTC(sdp []byte) bool
	// Open starts bridging the call with Call-ID callID.
	Open(callID string) (MediaSession, error)
}

// MediaSession is the bridge of one call (or of one INVITE branch until
// it wins).
type MediaSession interface {
	// Offer rewrites an offer going towards the browser (toWebRTC) or
	// towards the plain side. An error means the call cannot be bridged
	// (no common codec): 488.
	Offer(ctx context.Context, sdp []byte, toWebRTC bool) ([]byte, error)
	// Answer rewrites the answer to the last offer; a repeated answer
	// (183, then 200) gives the same result.
	Answer(ctx context.Context, sdp []byte) ([]byte, error)
	// Reject forgets the last offer: the other side refused it (a
	// non-2xx final response to a re-INVITE).
	Reject()
	// Done is closed when the session has ended (Close, media timeout).
	Done() <-chan struct{}
	Close()
}

// bridgedDialog is a bridged call as the proxy keeps it: the session and
// which side is the browser, told apart by the caller's From tag.
type bridgedDialog struct {
	s         MediaSession
	callerTag string
	callerWeb bool // the caller is the browser
}

// dialogKey names one dialog: Call-ID and both tags, in either order (a
// request from the callee has them the other way round). Forks of one
// INVITE share the Call-ID and the caller's tag: each 2xx makes a dialog
// of its own, and only the one whose answer was bridged has a session.
func dialogKey(callID, tagA, tagB string) string {
	if tagB < tagA {
		tagA, tagB = tagB, tagA
	}
	return callID + "\x00" + tagA + "\x00" + tagB
}

// MaxBridgedPerUser is how many calls of one browser (its AOR) the bridge
// joins at once, ringing ones included; a call beyond gets 486.
const MaxBridgedPerUser = 8

// WithMediaAnchor sets the bridge for calls between browsers and plain
// RTP endpoints. Without one, such calls are relayed unchanged (and their
// media fails).
func WithMediaAnchor(a MediaAnchor) Option { return func(p *Proxy) { p.anchor = a } }

// anchorBranch bridges an initial INVITE branch when its caller and its
// target disagree on WebRTC: a browser of ours calling anything that is
// not a browser of ours (a phone, another domain), or a plain offer to a
// browser of ours. It returns the final response when the branch cannot
// go (488).
func (p *Proxy) anchorBranch(ctx context.Context, c *collector, b *branch) *sip.Response {
	if p.anchor == nil || b.media != nil || !b.base.IsInvite() || hasToTag(b.base) {
		return nil
	}
	body := b.base.Body()
	if len(body) == 0 || !isSDP(b.base) {
		return nil // an offerless INVITE is not bridged (see README)
	}
	if p.anchor.IsWebRTC(body) == b.target.browser {
		return nil
	}
	// The browser's AOR: the target's, or the caller's. Each one holds at
	// most MaxBridgedPerUser bridges at once, so that nobody can take the
	// bridge's ports for a whole domain by calling one browser that does
	// not answer (a ringing branch lasts Timer C).
	who := c.req.From().Address
	if b.target.browser {
		who = c.req.Recipient
	}
	user := strings.ToLower(who.User + "@" + who.Host)
	n, _ := p.bridgedUsers.LoadOrStore(user, new(atomic.Int32))
	count := n.(*atomic.Int32)
	if count.Add(1) > MaxBridgedPerUser {
		count.Add(-1)
		p.log.Info("call not bridged: too many for one user", "call_id", sipcore.CallID(c.req), "user", sipcore.Sanitize(user), "max", MaxBridgedPerUser)
		return synth(c.req, 486, "Busy Here")
	}
	s, err := p.anchor.Open(c.req.CallID().Value())
	if err != nil {
		count.Add(-1)
		p.log.Warn("media bridge", "call_id", sipcore.CallID(c.req), "error", err)
		res := synth(c.req, 503, "Service Unavailable")
		res.AppendHeader(sip.NewHeader("Retry-After", "10"))
		return res
	}
	go func() {
		<-s.Done()
		if count.Add(-1) == 0 {
			p.bridgedUsers.CompareAndDelete(user, count)
		}
	}()
	out, err := s.Offer(ctx, body, b.target.browser)
	if err != nil {
		s.Close()
		p.log.Info("call not bridged", "call_id", sipcore.CallID(c.req), "error", err)
		return synth(c.req, 488, "Not Acceptable Here")
	}
	b.base.SetBody(out)
	b.media = s
	b.callerWeb = !b.target.browser
	return nil
}

// dialogMedia returns the bridged dialog an in-dialog request belongs to.
func (p *Proxy) dialogMedia(req *sip.Request) (*bridgedDialog, string) {
	if p.anchor == nil || p.bridgedDialogs.Load() == 0 {
		return nil, "" // no bridged call: no key to build for every in-dialog request
	}
	key := dialogKey(req.CallID().Value(), fromTag(req), toTag(req))
	if v, ok := p.mediaDialogs.Load(key); ok {
		return v.(*bridgedDialog), key
	}
	return nil, ""
}

// anchorInDialog passes an in-dialog request's offer (re-INVITE, UPDATE:
// hold, resume) through the call's bridge; BYE ends the bridge.
func (p *Proxy) anchorInDialog(ctx context.Context, req, fwd *sip.Request) (MediaSession, error) {
	d, key := p.dialogMedia(req)
	if d == nil {
		return nil, nil
	}
	s := d.s
	switch {
	case req.Method == sip.BYE:
		s.Close()
		p.mediaDialogs.CompareAndDelete(key, d)
		return nil, nil
	case req.IsInvite() || req.Method == sip.UPDATE:
		body := fwd.Body()
		if len(body) == 0 || !isSDP(fwd) {
			if req.IsInvite() {
				// The offer would come in the 2xx and the answer in the
				// ACK: not bridged.
				return nil, sipcore.Errorf(488, "Not Acceptable Here")
			}
			return nil, nil
		}
		// Which side offers is told by who sends it, not by the body.
		fromCaller := fromTag(req) == d.callerTag
		out, err := s.Offer(ctx, body, fromCaller != d.callerWeb)
		if err != nil {
			p.log.Info("re-offer not bridged", "call_id", sipcore.CallID(req), "error", err)
			return nil, sipcore.Errorf(488, "Not Acceptable Here")
		}
		fwd.SetBody(out)
		return s, nil
	}
	return nil, nil
}

// anchorResponse rewrites the answer in a response of branch b; a
// non-2xx final response to a re-INVITE rejects its offer.
func (p *Proxy) anchorResponse(b *branch, res *sip.Response) {
	if b == nil || b.media == nil {
		return
	}
	if res.StatusCode >= 300 {
		if b.media == b.dialogMedia {
			b.media.Reject()
		}
		return
	}
	if len(res.Body()) == 0 || !isSDP(res) || res.StatusCode < 180 {
		return
	}
	b.ansMu.Lock()
	defer b.ansMu.Unlock()
	if b.ansIn != nil && string(res.Body()) == string(b.ansIn) {
		// The same answer again (a 183 then the 200, a retransmitted 2xx).
		res.SetBody(b.ansOut)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.failoverTimeout)
	defer cancel()
	in := res.Body()
	out, err := b.media.Answer(ctx, in)
	if err != nil {
		p.log.Warn("answer not bridged", "call_id", callIDOf(res), "status", res.StatusCode, "error", err)
		if res.IsSuccess() && b.media != b.dialogMedia {
			b.media.Close() // the call has no media that could work
		}
		return
	}
	b.ansIn, b.ansOut = in, out
	res.SetBody(out)
}

// keepMedia makes b's bridge the dialog's that res (a 2xx) makes, for its
// in-dialog requests.
func (p *Proxy) keepMedia(req *sip.Request, res *sip.Response, b *branch) {
	d := &bridgedDialog{s: b.media, callerTag: fromTag(req), callerWeb: b.callerWeb}
	key := dialogKey(req.CallID().Value(), d.callerTag, toTag(res))
	p.mediaDialogs.Store(key, d)
	p.bridgedDialogs.Add(1)
	go func() {
		<-d.s.Done()
		p.mediaDialogs.CompareAndDelete(key, d)
		p.bridgedDialogs.Add(-1)
	}()
}

func isSDP(m interface{ GetHeader(string) sip.Header }) bool {
	ct := m.GetHeader("Content-Type")
	return ct == nil || strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct.Value())), "application/sdp")
}

package proxy

import (
	"context"
	"strings"

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
	// Done is closed when the session has ended (Close, media timeout).
	Done() <-chan struct{}
	Close()
}

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
	s, err := p.anchor.Open(c.req.CallID().Value())
	if err != nil {
		p.log.Warn("media bridge", "call_id", sipcore.CallID(c.req), "error", err)
		return synth(c.req, 503, "Service Unavailable")
	}
	out, err := s.Offer(ctx, body, b.target.browser)
	if err != nil {
		s.Close()
		p.log.Info("call not bridged", "call_id", sipcore.CallID(c.req), "error", err)
		return synth(c.req, 488, "Not Acceptable Here")
	}
	b.base.SetBody(out)
	b.media = s
	return nil
}

// dialogMedia returns the bridge session of an in-dialog request's call.
func (p *Proxy) dialogMedia(req *sip.Request) MediaSession {
	if p.anchor == nil {
		return nil
	}
	if v, ok := p.mediaDialogs.Load(req.CallID().Value()); ok {
		return v.(MediaSession)
	}
	return nil
}

// anchorInDialog passes an in-dialog request's offer (re-INVITE, UPDATE:
// hold, resume) through the call's bridge; BYE ends the bridge.
func (p *Proxy) anchorInDialog(ctx context.Context, req, fwd *sip.Request) (MediaSession, error) {
	s := p.dialogMedia(req)
	if s == nil {
		return nil, nil
	}
	switch {
	case req.Method == sip.BYE:
		s.Close()
		p.mediaDialogs.Delete(req.CallID().Value())
		return nil, nil
	case req.IsInvite() || req.Method == sip.UPDATE:
		body := fwd.Body()
		if len(body) == 0 || !isSDP(fwd) {
			return nil, nil
		}
		out, err := s.Offer(ctx, body, !p.anchor.IsWebRTC(body))
		if err != nil {
			p.log.Info("re-offer not bridged", "call_id", sipcore.CallID(req), "error", err)
			return nil, sipcore.Errorf(488, "Not Acceptable Here")
		}
		fwd.SetBody(out)
		return s, nil
	}
	return nil, nil
}

// anchorResponse rewrites the answer in a response of branch b.
func (p *Proxy) anchorResponse(b *branch, res *sip.Response) {
	if b == nil || b.media == nil || len(res.Body()) == 0 || !isSDP(res) {
		return
	}
	if res.StatusCode < 180 || res.StatusCode >= 300 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.failoverTimeout)
	defer cancel()
	out, err := b.media.Answer(ctx, res.Body())
	if err != nil {
		p.log.Warn("answer not bridged", "call_id", callIDOf(res), "status", res.StatusCode, "error", err)
		return
	}
	res.SetBody(out)
}

// keepMedia makes b's bridge the call's, for its in-dialog requests.
func (p *Proxy) keepMedia(callID string, s MediaSession) {
	p.mediaDialogs.Store(callID, s)
	go func() {
		<-s.Done()
		p.mediaDialogs.CompareAndDelete(callID, s)
	}()
}

func isSDP(m interface{ GetHeader(string) sip.Header }) bool {
	ct := m.GetHeader("Content-Type")
	return ct == nil || strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct.Value())), "application/sdp")
}

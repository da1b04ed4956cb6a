package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	prtp "github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/sipfed/sipfed/media/rtp"
	"github.com/sipfed/sipfed/media/sdp"
)

// supported are the codecs the bridge passes across, by lower-case name.
var supported = map[string]bool{"pcmu": true, "pcma": true, "opus": true, "telephone-event": true, "vp8": true, "h264": true}

func isVideo(c sdp.Codec) bool { return c.ClockRate == 90000 }

// codecKey names a codec across payload type numbers.
func codecKey(name string, clock uint32) string {
	return strings.ToLower(name) + "/" + strconv.FormatUint(uint64(clock), 10)
}

// IsWebRTC reports whether an SDP body is a browser's: DTLS-SRTP with a
// fingerprint (RFC 8827), not plain RTP/AVP.
func IsWebRTC(body []byte) bool {
	return bytes.Contains(body, []byte("UDP/TLS/RTP/SAVP")) && bytes.Contains(body, []byte("a=fingerprint:"))
}

// Session is the bridge of one call. The proxy calls Offer with each
// offer that crosses it (the first one and those of re-INVITEs), then
// Answer with its answer; Close at the end of the call.
type Session struct {
	b      *Bridge
	callID string
	log    *slog.Logger
	done   chan struct{}

	mu sync.Mutex
	// browserOfferer: the browser made the first offer (it called, or a
	// plain phone sent an INVITE without... no: it called).
	browserOfferer bool
	started        bool
	pc             *webrtc.PeerConnection
	legs           map[string]*leg // "audio", "video"

	webOffer    string       // the browser's first offer (browserOfferer)
	plainOffer  *sdp.Session // the plain side's first offer (!browserOfferer)
	webLocal    string       // our last SDP to the browser
	plainLocal  *sdp.Session // our last SDP to the plain side
	plainVer    uint64
	webRole     string // our DTLS setup role towards the browser: active or passive
	webUfrag    string // the browser's ICE username fragment
	webMedia    int    // m= lines of the browser's description
	pending     *pending
	lastAnsIn   []byte
	lastAnsOut  []byte
	held        bool
	heldSince   time.Time
	pcp         atomic.Pointer[webrtc.PeerConnection] // s.pc, for the forwarding goroutines
	lastPacket  atomic.Int64                          // unix nanoseconds of the last packet either way
	closeOnce   sync.Once
	established bool
}

// pending is an offer waiting for its answer. What a re-offer changes
// (hold, a new address) takes effect with the answer: a refused
// re-INVITE changes nothing (Reject).
type pending struct {
	toWebRTC bool
	plain    *sdp.Session // a plain offer (toWebRTC) or the plain offer we sent
	initial  bool
	held     bool
	retarget []sdp.Media // the plain side's new addresses
	webLocal string      // our description to the browser before the re-offer
}

// leg is one stream (audio or video) on both sides.
type leg struct {
	kind       string
	clock      uint32 // the main codec's clock rate
	plain      *rtp.Session
	plainSend  map[string]uint8 // codec key → payload type the plain side receives
	plainRecv  map[uint8]string // payload type from the plain side → codec key
	track      *track           // towards the browser
	remote     *webrtc.TrackRemote
	toWeb      continuity
	toPlain    continuity
	remoteSSRC atomic.Uint32 // the browser's stream, for feedback towards it
}

// Done is closed when the session ends (Close, or the media timeout).
func (s *Session) Done() <-chan struct{} { return s.done }

// Offer rewrites an offer crossing the bridge: towards the browser
// (toWebRTC, from a plain phone) or towards the plain side (from the
// browser).
func (s *Session) Offer(ctx context.Context, body []byte, toWebRTC bool) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done:
		return nil, errors.New("bridge: session closed")
	default:
	}
	if !s.started {
		s.started = true
		s.browserOfferer = !toWebRTC
		if toWebRTC {
			return s.initialPlainOffer(ctx, body)
		}
		return s.initialWebOffer(body)
	}
	if !s.established {
		return nil, errors.New("bridge: a new offer before the first answer")
	}
	if toWebRTC {
		return s.plainReOffer(body)
	}
	return s.webReOffer(body)
}

// Answer rewrites the answer to the last Offer. The same answer seen
// twice (in a 183 and the 200) gives the same result.
func (s *Session) Answer(ctx context.Context, body []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done:
		return nil, errors.New("bridge: session closed")
	default:
	}
	if s.pending == nil && s.lastAnsIn != nil {
		// A second copy of the answer (183 then 200): the same result.
		// A plain answer that moved (another early-media source, then
		// the phone) moves the plain side; the browser keeps its answer.
		if !bytes.Equal(body, s.lastAnsIn) && !IsWebRTC(body) {
			if a, err := sdp.Parse(body); err == nil {
				for _, m := range a.Media {
					if l := s.legs[m.Kind]; l != nil && m.Port != 0 {
						l.retarget(m)
					}
				}
			}
		}
		return s.lastAnsOut, nil
	}
	if s.pending == nil {
		return nil, errors.New("bridge: an answer without an offer")
	}
	p := s.pending
	var out []byte
	var err error
	switch {
	case p.initial && !p.toWebRTC:
		out, err = s.initialPlainAnswer(ctx, body)
	case p.initial:
		out, err = s.initialWebAnswer(body)
	case p.toWebRTC:
		out, err = s.webReAnswer(body)
	default:
		out, err = s.plainReAnswer(body)
	}
	if err != nil {
		return nil, err
	}
	if !p.initial {
		s.setHeld(p.held)
		for _, m := range p.retarget {
			if l := s.legs[m.Kind]; l != nil {
				l.retarget(m)
			}
		}
	}
	s.pending = nil
	s.lastAnsIn, s.lastAnsOut = body, out
	if !s.established {
		s.established = true
		s.lastPacket.Store(time.Now().UnixNano())
		go s.watch()
	}
	return out, nil
}

// Reject forgets the pending re-offer, refused by the other side (a
// non-2xx final response to the re-INVITE): nothing it changed stays.
func (s *Session) Reject() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.pending; p != nil && !p.initial {
		if p.webLocal != "" {
			s.webLocal = p.webLocal
		}
		s.pending = nil
	}
}

func (s *Session) setHeld(held bool) {
	if held && !s.held {
		s.heldSince = time.Now()
	}
	s.held = held
}

// Close ends the session: sockets, PeerConnection, goroutines.
func (s *Session) Close() {
	s.closeOnce.Do(func() {
		s.b.forget(s)
		close(s.done)
		s.mu.Lock()
		pc, legs := s.pc, s.legs
		s.mu.Unlock()
		if pc != nil {
			pc.Close()
		}
		for _, l := range legs {
			if l.plain != nil {
				l.plain.Close()
			}
		}
		s.log.Debug("bridge session closed")
	})
}

// watch ends the session when no media has flowed for the media timeout
// (not while on hold).
func (s *Session) watch() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		s.mu.Lock()
		held, since := s.held, s.heldSince
		s.mu.Unlock()
		last := time.Unix(0, s.lastPacket.Load())
		if held {
			if time.Since(since) > s.b.cfg.HoldTimeout {
				s.log.Info("bridge: on hold too long", "after", s.b.cfg.HoldTimeout)
				s.Close()
				return
			}
			s.lastPacket.Store(time.Now().UnixNano())
			continue
		}
		if time.Since(last) > s.b.cfg.MediaTimeout {
			s.log.Info("bridge: media timeout", "after", s.b.cfg.MediaTimeout)
			s.Close()
			return
		}
	}
}

// --- the browser calls a plain phone ------------------------------------

// initialWebOffer turns the browser's offer into a plain one: its
// supported codecs in its order, on sockets of ours.
func (s *Session) initialWebOffer(body []byte) ([]byte, error) {
	off, err := sdp.Parse(body)
	if err != nil {
		return nil, err
	}
	s.webOffer = string(body)
	s.webUfrag, s.webMedia = iceUfrag(string(body)), len(off.Media)
	cfg := sdp.Config{Addr: s.b.cfg.Public, Audio: []sdp.Codec{}, Video: []sdp.Codec{}}
	for _, m := range off.Media {
		if m.Port == 0 || (m.Kind != "audio" && m.Kind != "video") || s.legs[m.Kind] != nil {
			continue
		}
		codecs := filter(m.Codecs)
		if len(codecs) == 0 || !hasMedia(codecs) {
			continue
		}
		l, err := s.newLeg(m.Kind)
		if err != nil {
			return nil, err
		}
		if m.Kind == "audio" {
			cfg.Audio, cfg.AudioPort = codecs, int(l.plain.LocalAddr().Port())
		} else {
			cfg.Video, cfg.VideoPort = codecs, int(l.plain.LocalAddr().Port())
		}
	}
	if len(s.legs) == 0 {
		return nil, fmt.Errorf("%w: the browser offers none of PCMU, PCMA, opus, VP8, H264", ErrNoCommonCodec)
	}
	po, err := sdp.NewOffer(cfg)
	if err != nil {
		return nil, err
	}
	s.plainLocal = po
	s.plainVer = po.Version
	s.pending = &pending{initial: true, plain: po}
	return po.Marshal()
}

// initialPlainAnswer answers the browser with a PeerConnection that has
// exactly the codecs the plain side accepted.
func (s *Session) initialPlainAnswer(ctx context.Context, body []byte) ([]byte, error) {
	ans, err := sdp.Parse(body)
	if err != nil {
		return nil, err
	}
	ans, err = sdp.ReadAnswer(s.pending.plain, ans)
	if err != nil {
		return nil, err
	}
	web, err := sdp.Parse([]byte(s.webOffer))
	if err != nil {
		return nil, err
	}
	// The codecs of the browser's offer that the plain side took.
	var codecs []sdp.Codec
	kinds := map[string]bool{}
	for _, am := range ans.Media {
		l := s.legs[am.Kind]
		if am.Port == 0 || l == nil {
			continue
		}
		wm := web.First(am.Kind)
		if wm == nil {
			continue
		}
		kinds[am.Kind] = true
		l.setPlain(am, *s.pending.plain.First(am.Kind))
		for _, c := range wm.Codecs {
			if _, ok := am.Codec(c); ok && supported[strings.ToLower(c.Name)] {
				codecs = append(codecs, c)
			}
		}
	}
	if len(kinds) == 0 {
		return nil, fmt.Errorf("%w: the plain side took no stream", ErrNoCommonCodec)
	}
	if err := s.newPeer(codecs, kinds); err != nil {
		return nil, err
	}
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: s.webOffer}); err != nil {
		return nil, fmt.Errorf("bridge: browser offer: %w", err)
	}
	for kind := range kinds {
		if _, err := s.pc.AddTrack(s.legs[kind].track); err != nil {
			return nil, fmt.Errorf("bridge: %w", err)
		}
	}
	answer, err := s.pc.CreateAnswer(nil)
	if err != nil {
		return nil, fmt.Errorf("bridge: answer: %w", err)
	}
	local, err := s.setLocal(ctx, answer)
	if err != nil {
		return nil, err
	}
	for _, am := range ans.Media {
		if am.Port != 0 && am.Direction != sdp.SendRecv {
			local = setDirection(local, am.Kind, am.Direction.Reverse())
		}
	}
	s.webLocal = local
	s.webRole = setupOf(local)
	s.startPlain()
	return []byte(local), nil
}

// --- a plain phone calls the browser ------------------------------------

// initialPlainOffer offers the browser a PeerConnection with the plain
// offer's supported codecs (and payload types).
func (s *Session) initialPlainOffer(ctx context.Context, body []byte) ([]byte, error) {
	off, err := sdp.Parse(body)
	if err != nil {
		return nil, err
	}
	s.plainOffer = off
	var codecs []sdp.Codec
	kinds := map[string]bool{}
	for _, m := range off.Media {
		if m.Port == 0 || (m.Kind != "audio" && m.Kind != "video") || kinds[m.Kind] {
			continue
		}
		cs := filter(m.Codecs)
		if len(cs) == 0 || !hasMedia(cs) {
			continue
		}
		if _, err := s.newLeg(m.Kind); err != nil {
			return nil, err
		}
		kinds[m.Kind] = true
		for _, c := range cs {
			if m.Kind == "video" && len(c.Feedback) == 0 {
				c.Feedback = []string{"nack", "nack pli", "ccm fir"}
			}
			codecs = append(codecs, c)
		}
	}
	if len(kinds) == 0 {
		return nil, fmt.Errorf("%w: the offer has none of PCMU, PCMA, opus, VP8, H264", ErrNoCommonCodec)
	}
	if err := s.newPeer(codecs, kinds); err != nil {
		return nil, err
	}
	for _, kind := range []string{"audio", "video"} {
		if kinds[kind] {
			if _, err := s.pc.AddTransceiverFromTrack(s.legs[kind].track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
				return nil, fmt.Errorf("bridge: %w", err)
			}
		}
	}
	offer, err := s.pc.CreateOffer(nil)
	if err != nil {
		return nil, fmt.Errorf("bridge: offer: %w", err)
	}
	if s.webLocal, err = s.setLocal(ctx, offer); err != nil {
		return nil, err
	}
	s.pending = &pending{initial: true, toWebRTC: true, plain: off}
	return []byte(s.webLocal), nil
}

// initialWebAnswer takes the browser's answer and answers the plain
// phone with the codecs the browser chose.
func (s *Session) initialWebAnswer(body []byte) ([]byte, error) {
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		return nil, fmt.Errorf("bridge: browser answer: %w", err)
	}
	web, err := sdp.Parse(body)
	if err != nil {
		return nil, err
	}
	s.webRole = opposite(setupOf(string(body)))
	s.webUfrag, s.webMedia = iceUfrag(string(body)), len(web.Media)
	cfg := sdp.Config{Addr: s.b.cfg.Public, Audio: []sdp.Codec{}, Video: []sdp.Codec{}}
	for _, wm := range web.Media {
		l := s.legs[wm.Kind]
		if wm.Port == 0 || l == nil {
			continue
		}
		port := int(l.plain.LocalAddr().Port())
		if wm.Kind == "audio" {
			cfg.Audio, cfg.AudioPort = wm.Codecs, port
		} else {
			cfg.Video, cfg.VideoPort = wm.Codecs, port
		}
		cfg.Direction = wm.Direction
	}
	pa, err := sdp.Answer(s.plainOffer, cfg)
	if err != nil {
		return nil, err
	}
	for _, am := range pa.Media {
		if l := s.legs[am.Kind]; l != nil && am.Port != 0 {
			l.setPlain(*s.plainOffer.First(am.Kind), am)
		}
	}
	s.plainLocal, s.plainVer = pa, pa.Version
	s.startPlain()
	return pa.Marshal()
}

// --- re-INVITEs: hold and resume ------------------------------------------

// webReOffer: the browser re-offers (hold, resume). The plain side gets
// an offer of the negotiated codecs with the browser's direction.
func (s *Session) webReOffer(body []byte) ([]byte, error) {
	web, err := sdp.Parse(body)
	if err != nil {
		return nil, err
	}
	// The PeerConnection is not renegotiated: a re-offer may change
	// directions only, not ICE credentials (a restart) or the streams.
	if len(web.Media) != s.webMedia || iceUfrag(string(body)) != s.webUfrag {
		return nil, fmt.Errorf("%w: a re-offer that restarts ICE or changes the streams", ErrNoCommonCodec)
	}
	dir := sdp.SendRecv
	for _, wm := range web.Media {
		if s.legs[wm.Kind] != nil {
			dir = wm.Direction
		}
	}
	// Our last description to the plain side, same m= lines in the same
	// order (rejected ones stay, port 0: RFC 3264 §8), new direction.
	po := *s.plainLocal
	po.Media = append([]sdp.Media(nil), s.plainLocal.Media...)
	for i := range po.Media {
		if po.Media[i].Port != 0 {
			po.Media[i].Direction = dir
		}
	}
	s.plainVer++
	po.Version = s.plainVer
	s.pending = &pending{plain: &po, held: dir == sdp.SendOnly || dir == sdp.Inactive}
	return po.Marshal()
}

// plainReAnswer answers the browser's re-offer: our last description to
// it with the plain side's direction.
func (s *Session) plainReAnswer(body []byte) ([]byte, error) {
	ans, err := sdp.Parse(body)
	if err != nil {
		return nil, err
	}
	local := answerFrom(s.webLocal, s.webRole)
	for _, am := range ans.Media {
		if s.legs[am.Kind] != nil {
			local = setDirection(local, am.Kind, am.Direction.Reverse())
			if am.Port != 0 {
				s.pending.retarget = append(s.pending.retarget, am)
			}
		}
	}
	local = bumpVersion(local)
	s.webLocal = local
	s.plainLocal = s.pending.plain
	return []byte(local), nil
}

// plainReOffer: the plain phone re-offers; the browser gets our last
// description with the phone's direction.
func (s *Session) plainReOffer(body []byte) ([]byte, error) {
	off, err := sdp.Parse(body)
	if err != nil {
		return nil, err
	}
	// Our DTLS role stays what it is (RFC 8842 §5.5): a re-offer names it
	// instead of actpass, as the PeerConnection is not renegotiated.
	local := answerFrom(s.webLocal, s.webRole)
	p := &pending{toWebRTC: true, plain: off, webLocal: s.webLocal}
	for _, m := range off.Media {
		if l := s.legs[m.Kind]; l != nil {
			local = setDirection(local, m.Kind, m.Direction)
			p.held = p.held || m.OnHold()
			if m.Port != 0 {
				p.retarget = append(p.retarget, m)
			}
		}
	}
	local = bumpVersion(local)
	s.webLocal = local
	s.pending = p
	return []byte(local), nil
}

// webReAnswer answers the plain re-offer with the browser's direction.
func (s *Session) webReAnswer(body []byte) ([]byte, error) {
	web, err := sdp.Parse(body)
	if err != nil {
		return nil, err
	}
	cfg := s.plainConfig()
	for _, wm := range web.Media {
		if s.legs[wm.Kind] != nil {
			cfg.Direction = wm.Direction
		}
	}
	s.plainVer++
	cfg.Version = s.plainVer
	pa, err := sdp.Answer(s.pending.plain, cfg)
	if err != nil {
		return nil, err
	}
	s.plainLocal = pa
	return pa.Marshal()
}

// plainConfig describes our plain side as negotiated.
func (s *Session) plainConfig() sdp.Config {
	cfg := sdp.Config{Addr: s.b.cfg.Public, Audio: []sdp.Codec{}, Video: []sdp.Codec{}, SessionID: s.plainLocal.SessionID}
	for _, m := range s.plainLocal.Media {
		l := s.legs[m.Kind]
		if l == nil || m.Port == 0 {
			continue
		}
		if m.Kind == "audio" {
			cfg.Audio, cfg.AudioPort = m.Codecs, m.Port
		} else {
			cfg.Video, cfg.VideoPort = m.Codecs, m.Port
		}
	}
	return cfg
}

// --- plumbing ----------------------------------------------------------

// setLocal applies our description to the PeerConnection and returns it
// with every ICE candidate in it: JsSIP and SIP.js do not trickle, so the
// SDP waits for gathering (bounded by GatherTimeout).
func (s *Session) setLocal(ctx context.Context, d webrtc.SessionDescription) (string, error) {
	gathered := webrtc.GatheringCompletePromise(s.pc)
	if err := s.pc.SetLocalDescription(d); err != nil {
		return "", fmt.Errorf("bridge: %s: %w", d.Type, err)
	}
	t := time.NewTimer(s.b.cfg.GatherTimeout)
	defer t.Stop()
	select {
	case <-gathered:
	case <-t.C:
	case <-ctx.Done():
	}
	return s.pc.LocalDescription().SDP, nil
}

func (s *Session) newLeg(kind string) (*leg, error) {
	conn, rtcpConn, err := s.b.ports.Listen(false)
	if err != nil {
		return nil, fmt.Errorf("bridge: no RTP port: %w", err)
	}
	l := &leg{kind: kind}
	l.plain = rtp.NewSession(conn, rtcpConn, rtp.WithSymmetric(true), rtp.WithStrictSource(true), rtp.WithLogger(s.log),
		rtp.WithFeedback(func(p rtcp.Packet) { s.feedbackToWeb(l, p) }))
	l.track = &track{kind: kind, id: kind, stream: "sipfed-" + s.callID}
	l.track.byPT.clear()
	if s.legs == nil {
		s.legs = map[string]*leg{}
	}
	s.legs[kind] = l
	return l, nil
}

// setPlain records the plain side's payload types: recv is the
// description we sent (what we receive), send is the plain side's (what
// it receives).
func (l *leg) setPlain(send, recv sdp.Media) {
	l.plainSend = map[string]uint8{}
	l.plainRecv = map[uint8]string{}
	for _, c := range send.Codecs {
		if _, ok := l.plainSend[codecKey(c.Name, c.ClockRate)]; !ok {
			l.plainSend[codecKey(c.Name, c.ClockRate)] = c.PayloadType
		}
		if l.clock == 0 && !c.IsTelephoneEvent() {
			l.clock = c.ClockRate
		}
	}
	for _, c := range recv.Codecs {
		l.plainRecv[c.PayloadType] = codecKey(c.Name, c.ClockRate)
	}
	l.retarget(send)
}

// retarget points the plain socket at m's address (a re-INVITE may move
// it); symmetric RTP still latches to where packets come from.
func (l *leg) retarget(m sdp.Media) {
	if m.Addr.IsValid() && !m.Addr.IsUnspecified() && m.Port != 0 {
		l.plain.SetRemote(m.RTPAddr(), m.RTCPAddr())
	}
}

func (s *Session) newPeer(codecs []sdp.Codec, kinds map[string]bool) error {
	api, err := s.b.newAPI(codecs, kinds)
	if err != nil {
		return err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle, RTCPMuxPolicy: webrtc.RTCPMuxPolicyRequire})
	if err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	s.pc = pc
	s.pcp.Store(pc)
	pc.OnTrack(func(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
		s.mu.Lock()
		l := s.legs[remote.Kind().String()]
		first := l != nil && l.remote == nil
		if first {
			l.remote = remote
		}
		s.mu.Unlock()
		if !first {
			return // one stream per kind: a second one (simulcast, a second m= line) is not forwarded
		}
		web := map[uint8]string{}
		for _, c := range recv.GetParameters().Codecs {
			_, name, _ := strings.Cut(c.MimeType, "/")
			web[uint8(c.PayloadType)] = codecKey(name, c.ClockRate)
		}
		l.remoteSSRC.Store(uint32(remote.SSRC()))
		go s.webToPlain(l, remote, web)
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		s.log.Debug("bridge: browser leg", "state", st.String())
		if st == webrtc.PeerConnectionStateFailed {
			s.log.Info("bridge: browser leg failed (ICE or DTLS)")
			go s.Close() // not from pion's callback: Close closes the PeerConnection
		}
	})
	return nil
}

// startPlain starts reading the plain side of every leg, and the RTCP of
// our senders towards the browser.
func (s *Session) startPlain() {
	for _, l := range s.legs {
		l.track.setPlain(l.plainRecv)
		go s.plainToWeb(l)
	}
	if s.pc != nil {
		for _, tr := range s.pc.GetTransceivers() {
			if snd := tr.Sender(); snd != nil {
				go s.webFeedback(snd, s.legs[tr.Kind().String()])
			}
		}
	}
}

// plainToWeb forwards the plain side's RTP to the browser.
func (s *Session) plainToWeb(l *leg) {
	var p prtp.Packet
	for {
		if err := l.plain.ReadRTP(&p); err != nil {
			return
		}
		now := time.Now()
		s.lastPacket.Store(now.UnixNano())
		if l.track.write(&p, &l.toWeb, l.clock, now) {
			s.b.forwarded.Add(1)
		}
	}
}

// webToPlain forwards the browser's RTP to the plain side.
func (s *Session) webToPlain(l *leg, remote *webrtc.TrackRemote, webRecv map[uint8]string) {
	// Payload types from the browser's to the plain side's, looked up
	// once: a packet costs an array index.
	var types ptMap
	types.clear()
	for pt, key := range webRecv {
		if out, ok := l.plainSend[key]; ok {
			types[pt&0x7f] = int16(out)
		}
	}
	buf := make([]byte, 1500)
	var p prtp.Packet
	for {
		n, _, err := remote.Read(buf)
		if err != nil {
			return
		}
		if p.Unmarshal(buf[:n]) != nil {
			continue
		}
		now := time.Now()
		s.lastPacket.Store(now.UnixNano())
		pt := types[p.PayloadType&0x7f]
		if pt < 0 {
			continue
		}
		p.PayloadType = uint8(pt)
		l.toPlain.apply(&p.Header, l.clock, now)
		p.Extension = false // the browser's header extensions mean nothing to the phone (the slice is kept for reuse)
		if l.plain.WriteRTP(&p) == nil {
			s.b.forwarded.Add(1)
		}
	}
}

// webFeedback reads the browser's RTCP about what we send it: picture
// loss requests go on to the plain sender.
func (s *Session) webFeedback(snd *webrtc.RTPSender, l *leg) {
	for {
		pkts, _, err := snd.ReadRTCP()
		if err != nil {
			return
		}
		if l == nil {
			continue
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				// The plain sender's stream is the one we received.
				l.plain.WriteRTCP(&rtcp.PictureLossIndication{MediaSSRC: l.toWeb.source()})
			}
		}
	}
}

// feedbackToWeb passes the plain side's picture loss requests to the
// browser's sender.
func (s *Session) feedbackToWeb(l *leg, p rtcp.Packet) {
	switch p.(type) {
	case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
	default:
		return
	}
	pc := s.pcp.Load() // no lock: this runs on the plain side's RTCP goroutine
	if ssrc := l.remoteSSRC.Load(); pc != nil && ssrc != 0 {
		pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
	}
}

// filter keeps the codecs the bridge passes across.
func filter(cs []sdp.Codec) []sdp.Codec {
	var out []sdp.Codec
	for _, c := range cs {
		if supported[strings.ToLower(c.Name)] {
			out = append(out, c)
		}
	}
	return out
}

// hasMedia: something other than telephone-event.
func hasMedia(cs []sdp.Codec) bool {
	for _, c := range cs {
		if !c.IsTelephoneEvent() {
			return true
		}
	}
	return false
}

// setDirection sets the direction attribute of the m= sections of kind.
func setDirection(s, kind string, d sdp.Direction) string {
	lines := strings.Split(s, "\r\n")
	in := false
	for i, ln := range lines {
		if strings.HasPrefix(ln, "m=") {
			in = strings.HasPrefix(ln, "m="+kind+" ")
			continue
		}
		if in {
			switch ln {
			case "a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive":
				lines[i] = "a=" + d.String()
			}
		}
	}
	return strings.Join(lines, "\r\n")
}

// bumpVersion increments the o= line's version (RFC 3264 §8).
func bumpVersion(s string) string {
	lines := strings.Split(s, "\r\n")
	for i, ln := range lines {
		if strings.HasPrefix(ln, "o=") {
			f := strings.Fields(ln)
			if len(f) >= 6 {
				if v, err := strconv.ParseUint(f[2], 10, 64); err == nil {
					f[2] = strconv.FormatUint(v+1, 10)
					lines[i] = strings.Join(f, " ")
				}
			}
			break
		}
	}
	return strings.Join(lines, "\r\n")
}

// iceUfrag returns the first a=ice-ufrag value of an SDP.
func iceUfrag(s string) string { return attr(s, "a=ice-ufrag:") }

// setupOf returns the first a=setup value of an SDP.
func setupOf(s string) string { return attr(s, "a=setup:") }

// attr returns the value of the first line of s that starts with prefix
// (an "a=name:" attribute), or "".
func attr(s, prefix string) string {
	i := strings.Index(s, prefix)
	if i < 0 {
		return ""
	}
	v := s[i+len(prefix):]
	if j := strings.IndexAny(v, "\r\n"); j >= 0 {
		v = v[:j]
	}
	return v
}

func opposite(role string) string {
	if role == "active" {
		return "passive"
	}
	return "active"
}

// answerFrom turns our last description to the browser into an answer:
// an offer's actpass becomes the role we took.
func answerFrom(s, role string) string {
	if role == "" {
		return s
	}
	return strings.ReplaceAll(s, "a=setup:actpass", "a=setup:"+role)
}

// continuity keeps an outgoing stream's sequence numbers and timestamps
// going on when its source changes SSRC (a phone restarting its stream,
// resuming from hold): the receiver sees one stream.
type continuity struct {
	mu      sync.Mutex
	started bool
	ssrc    uint32
	seqOff  uint16
	tsOff   uint32
	lastSeq uint16
	lastTS  uint32
	lastAt  time.Time
}

func (c *continuity) apply(h *prtp.Header, clock uint32, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case !c.started:
		c.started, c.ssrc = true, h.SSRC
	case h.SSRC != c.ssrc:
		c.ssrc = h.SSRC
		c.seqOff = c.lastSeq + 1 - h.SequenceNumber
		step := uint32(now.Sub(c.lastAt).Seconds() * float64(clock))
		if step == 0 {
			step = 1
		}
		c.tsOff = c.lastTS + step - h.Timestamp
	}
	h.SequenceNumber += c.seqOff
	h.Timestamp += c.tsOff
	if int16(h.SequenceNumber-c.lastSeq) > 0 || c.lastAt.IsZero() {
		c.lastSeq, c.lastTS, c.lastAt = h.SequenceNumber, h.Timestamp, now
	}
}

// source is the SSRC of the stream being forwarded.
func (c *continuity) source() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ssrc
}

// track is a webrtc.TrackLocal fed with packets from the plain side: its
// own SSRC, payload types mapped to the browser's.
type track struct {
	kind, id, stream string

	mu     sync.Mutex
	w      webrtc.TrackLocalWriter
	ssrc   uint32
	types  map[string]uint8 // codec key → the browser's payload type (Bind)
	plain  map[uint8]string // the plain side's payload type → codec key (setPlain)
	byPT   ptMap            // the plain side's payload type → the browser's
	header prtp.Header
}

// ptMap maps a payload type (7 bits) to another; -1: not negotiated.
type ptMap [128]int16

func (m *ptMap) clear() {
	for i := range m {
		m[i] = -1
	}
}

// setPlain gives the track the plain side's payload types.
func (t *track) setPlain(recv map[uint8]string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.plain = recv
	t.remap()
}

// remap rebuilds byPT from both sides' payload types; mu is held.
func (t *track) remap() {
	t.byPT.clear()
	for pt, key := range t.plain {
		if out, ok := t.types[key]; ok {
			t.byPT[pt&0x7f] = int16(out)
		}
	}
}

func (t *track) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	params := ctx.CodecParameters()
	if len(params) == 0 {
		return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
	}
	t.types = map[string]uint8{}
	var first *webrtc.RTPCodecParameters
	for i, c := range params {
		_, name, _ := strings.Cut(c.MimeType, "/")
		key := codecKey(name, c.ClockRate)
		if _, ok := t.types[key]; !ok {
			t.types[key] = uint8(c.PayloadType)
		}
		if first == nil && !strings.EqualFold(name, "telephone-event") && !strings.EqualFold(name, "rtx") {
			first = &params[i]
		}
	}
	if first == nil {
		first = &params[0]
	}
	t.w, t.ssrc = ctx.WriteStream(), uint32(ctx.SSRC())
	t.remap()
	return *first, nil
}

func (t *track) Unbind(webrtc.TrackLocalContext) error {
	t.mu.Lock()
	t.w = nil
	t.mu.Unlock()
	return nil
}

func (t *track) ID() string                { return t.id }
func (t *track) RID() string               { return "" }
func (t *track) StreamID() string          { return t.stream }
func (t *track) Kind() webrtc.RTPCodecType { return webrtc.NewRTPCodecType(t.kind) }
func (t *track) String() string            { return t.kind + " track " + t.stream }

// write sends p, from the plain side, to the browser; false when it
// cannot go (not bound yet, codec not negotiated).
func (t *track) write(p *prtp.Packet, c *continuity, clock uint32, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	pt := t.byPT[p.PayloadType&0x7f]
	if t.w == nil || pt < 0 {
		return false
	}
	c.apply(&p.Header, clock, now)
	t.header = prtp.Header{Version: 2, Marker: p.Marker, PayloadType: uint8(pt), SequenceNumber: p.SequenceNumber, Timestamp: p.Timestamp, SSRC: t.ssrc}
	_, err := t.w.WriteRTP(&t.header, p.Payload)
	return err == nil
}

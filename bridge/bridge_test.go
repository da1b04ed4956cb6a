package bridge_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	prtp "github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/sipfed/sipfed/bridge"
	"github.com/sipfed/sipfed/media/rtp"
	"github.com/sipfed/sipfed/media/sdp"
)

var loopback = netip.MustParseAddr("127.0.0.1")

func newBridge(t testing.TB) *bridge.Bridge {
	t.Helper()
	b, err := bridge.New(bridge.Config{Addr: loopback, PortMin: 42000, PortMax: 42999, MediaTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// browser is a pion PeerConnection standing in for a browser: Opus,
// PCMU and telephone-event with Chrome's payload types, VP8.
type browser struct {
	pc     *webrtc.PeerConnection
	audio  *webrtc.TrackLocalStaticRTP
	got    map[string]*atomic.Int64 // packets received by kind
	gotPTs chan uint8
	probe  atomic.Pointer[func(payload []byte)] // called for each packet received
}

func newBrowser(t testing.TB, video bool) *browser {
	t.Helper()
	m := &webrtc.MediaEngine{}
	reg := func(kind webrtc.RTPCodecType, mime string, clock uint32, ch uint16, fmtp string, pt uint8) {
		if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mime, ClockRate: clock, Channels: ch, SDPFmtpLine: fmtp}, PayloadType: webrtc.PayloadType(pt)}, kind); err != nil {
			t.Fatal(err)
		}
	}
	reg(webrtc.RTPCodecTypeAudio, "audio/opus", 48000, 2, "minptime=10;useinbandfec=1", 111)
	reg(webrtc.RTPCodecTypeAudio, "audio/PCMU", 8000, 1, "", 0)
	reg(webrtc.RTPCodecTypeAudio, "audio/telephone-event", 48000, 1, "0-15", 110)
	reg(webrtc.RTPCodecTypeAudio, "audio/telephone-event", 8000, 1, "0-15", 126)
	reg(webrtc.RTPCodecTypeVideo, "video/VP8", 90000, 0, "", 96)
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	br := &browser{pc: pc, got: map[string]*atomic.Int64{"audio": {}, "video": {}}, gotPTs: make(chan uint8, 1000)}
	// Like a browser's microphone track, it sends whichever codec the
	// answer chose; here that is PCMU.
	br.audio, _ = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: "audio/PCMU", ClockRate: 8000, Channels: 1}, "audio", "browser")
	if _, err := pc.AddTrack(br.audio); err != nil {
		t.Fatal(err)
	}
	if video {
		v, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: "video/VP8", ClockRate: 90000}, "video", "browser")
		if _, err := pc.AddTrack(v); err != nil {
			t.Fatal(err)
		}
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		buf := make([]byte, 1500)
		var p prtp.Packet
		for {
			n, _, err := tr.Read(buf)
			if err != nil || p.Unmarshal(buf[:n]) != nil {
				return
			}
			br.got[tr.Kind().String()].Add(1)
			if probe := br.probe.Load(); probe != nil {
				(*probe)(p.Payload)
			}
			select {
			case br.gotPTs <- p.PayloadType:
			default:
			}
		}
	})
	return br
}

func (br *browser) offer(t testing.TB) []byte {
	t.Helper()
	o, err := br.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(br.pc)
	if err := br.pc.SetLocalDescription(o); err != nil {
		t.Fatal(err)
	}
	<-done
	return []byte(br.pc.LocalDescription().SDP)
}

func (br *browser) answer(t testing.TB, offer []byte) []byte {
	t.Helper()
	if err := br.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer)}); err != nil {
		t.Fatalf("browser: the bridge's offer: %v\n%s", err, offer)
	}
	a, err := br.pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(br.pc)
	if err := br.pc.SetLocalDescription(a); err != nil {
		t.Fatal(err)
	}
	<-done
	return []byte(br.pc.LocalDescription().SDP)
}

// send writes n PCMU packets to the bridge, 20 ms apart.
func (br *browser) send(n int) {
	for i := range n {
		br.audio.WriteRTP(&prtp.Packet{Header: prtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(i), Timestamp: uint32(i * 160)}, Payload: make([]byte, 160)})
		time.Sleep(20 * time.Millisecond)
	}
}

// phone is a plain RTP endpoint: one audio stream.
type phone struct {
	s     *rtp.Session
	got   atomic.Int64
	pts   chan uint8
	probe atomic.Pointer[func(payload []byte)]
}

func newPhone(t testing.TB, opts ...rtp.Option) *phone {
	t.Helper()
	a, err := rtp.NewPortAllocator(loopback, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	c, rc, err := a.Listen(false)
	if err != nil {
		t.Fatal(err)
	}
	p := &phone{s: rtp.NewSession(c, rc, append([]rtp.Option{rtp.WithSymmetric(true)}, opts...)...), pts: make(chan uint8, 1000)}
	t.Cleanup(func() { p.s.Close() })
	go func() {
		var pk prtp.Packet
		for p.s.ReadRTP(&pk) == nil {
			p.got.Add(1)
			if probe := p.probe.Load(); probe != nil {
				(*probe)(pk.Payload)
			}
			select {
			case p.pts <- pk.PayloadType:
			default:
			}
		}
	}()
	return p
}

func (p *phone) config(audio ...sdp.Codec) sdp.Config {
	return sdp.Config{Addr: loopback, AudioPort: int(p.s.LocalAddr().Port()), Audio: audio, Video: []sdp.Codec{}}
}

func (p *phone) send(pt uint8, n int) {
	for range n {
		p.s.WriteSample(pt, make([]byte, 160), 160, false)
		time.Sleep(20 * time.Millisecond)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBrowserCallsPlainPhone: the browser's offer (Opus, PCMU over
// DTLS-SRTP) becomes a plain RTP/AVP offer; the phone answers PCMU only;
// the browser's answer then has PCMU (and telephone-event/8000) only,
// with the browser's payload types,
// and packets flow both ways with the payload types mapped.
func TestBrowserCallsPlainPhone(t *testing.T) {
	b := newBridge(t)
	br := newBrowser(t, false)
	ph := newPhone(t)
	s, err := b.Open("call-1")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	plainOffer, err := s.Offer(ctx, br.offer(t), false)
	if err != nil {
		t.Fatal(err)
	}
	if bridge.IsWebRTC(plainOffer) || !strings.Contains(string(plainOffer), "RTP/AVP") {
		t.Fatalf("plain offer is not plain:\n%s", plainOffer)
	}
	po, err := sdp.Parse(plainOffer)
	if err != nil {
		t.Fatal(err)
	}
	ans, err := sdp.Answer(po, ph.config(sdp.PCMU, sdp.TelephoneEvent))
	if err != nil {
		t.Fatal(err)
	}
	ab, _ := ans.Marshal()
	webAnswer, err := s.Answer(ctx, ab)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Answer(ctx, ab) // the 200 after a 183 with the same SDP
	if err != nil || string(again) != string(webAnswer) {
		t.Fatalf("second copy of the answer: %v", err)
	}
	if !bridge.IsWebRTC(webAnswer) || strings.Contains(string(webAnswer), "opus") {
		t.Fatalf("answer to the browser should be WebRTC with PCMU only:\n%s", webAnswer)
	}
	if err := br.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(webAnswer)}); err != nil {
		t.Fatalf("browser: %v\n%s", err, webAnswer)
	}
	ph.s.SetRemote(po.Audio().RTPAddr(), po.Audio().RTCPAddr())
	waitFor(t, "the browser leg to connect", func() bool { return br.pc.ConnectionState() == webrtc.PeerConnectionStateConnected })

	go ph.send(0, 50)
	waitFor(t, "phone→browser packets", func() bool { return br.got["audio"].Load() >= 20 })
	if pt := <-br.gotPTs; pt != 0 {
		t.Fatalf("browser got payload type %d, want PCMU's 0", pt)
	}
	go br.send(50)
	waitFor(t, "browser→phone packets", func() bool { return ph.got.Load() >= 20 })
	if pt := <-ph.pts; pt != 0 {
		t.Fatalf("phone got payload type %d, want 0", pt)
	}
	if st := b.Stats(); st.Sessions != 1 || st.Forwarded < 40 {
		t.Fatalf("stats %+v", st)
	}

	// The phone puts the browser on hold (the bridge answered the
	// browser's offer: its re-offer is built from that answer).
	phoneHolds(t, s, br, ph, nil)
	s.Close()
	if st := b.Stats(); st.Sessions != 0 {
		t.Fatalf("after close: %+v", st)
	}
}

// TestPlainPhoneCallsBrowser: a plain offer (PCMU, telephone-event)
// becomes a WebRTC offer the browser answers; the plain answer carries
// the phone's payload types.
func TestPlainPhoneCallsBrowser(t *testing.T) {
	b := newBridge(t)
	br := newBrowser(t, false)
	ph := newPhone(t)
	s, _ := b.Open("call-2")
	ctx := context.Background()
	off, _ := sdp.NewOffer(ph.config(sdp.PCMU, sdp.TelephoneEvent))
	ob, _ := off.Marshal()
	webOffer, err := s.Offer(ctx, ob, true)
	if err != nil {
		t.Fatal(err)
	}
	if !bridge.IsWebRTC(webOffer) {
		t.Fatalf("offer to the browser is not WebRTC:\n%s", webOffer)
	}
	plainAnswer, err := s.Answer(ctx, br.answer(t, webOffer))
	if err != nil {
		t.Fatal(err)
	}
	pa, err := sdp.Parse(plainAnswer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sdp.ReadAnswer(off, pa); err != nil {
		t.Fatalf("plain answer: %v\n%s", err, plainAnswer)
	}
	ph.s.SetRemote(pa.Audio().RTPAddr(), pa.Audio().RTCPAddr())
	waitFor(t, "the browser leg to connect", func() bool { return br.pc.ConnectionState() == webrtc.PeerConnectionStateConnected })
	go ph.send(0, 50)
	go br.send(50)
	waitFor(t, "media both ways", func() bool { return br.got["audio"].Load() >= 20 && ph.got.Load() >= 20 })

	// Hold from the phone (its own offer's session, next version).
	phoneHolds(t, s, br, ph, off)
}

// phoneHolds puts the browser on hold from the phone: a sendonly
// re-offer (of session prev when given) reaches the browser as sendonly,
// and the browser's answer goes back to the phone as recvonly.
func phoneHolds(t *testing.T, s *bridge.Session, br *browser, ph *phone, prev *sdp.Session) {
	t.Helper()
	hold := ph.config(sdp.PCMU, sdp.TelephoneEvent)
	hold.Direction = sdp.SendOnly
	if prev != nil {
		hold.SessionID, hold.Version = prev.SessionID, prev.Version+1
	}
	ho, _ := sdp.NewOffer(hold)
	hb, _ := ho.Marshal()
	ctx := context.Background()
	reoffer, err := s.Offer(ctx, hb, true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(reoffer), "a=sendonly") {
		t.Fatalf("re-offer to the browser not on hold:\n%s", reoffer)
	}
	reans, err := s.Answer(ctx, br.answer(t, reoffer))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(reans), "a=recvonly") {
		t.Fatalf("the phone's answer to its hold:\n%s", reans)
	}
}

// TestNoCommonCodec: an offer with only G.729 cannot be bridged.
func TestNoCommonCodec(t *testing.T) {
	b := newBridge(t)
	s, _ := b.Open("call-3")
	defer s.Close()
	off, _ := sdp.NewOffer(sdp.Config{Addr: loopback, AudioPort: 4000, Audio: []sdp.Codec{{PayloadType: 18, Name: "G729", ClockRate: 8000}}, Video: []sdp.Codec{}})
	ob, _ := off.Marshal()
	if _, err := s.Offer(context.Background(), ob, true); !errors.Is(err, bridge.ErrNoCommonCodec) {
		t.Fatalf("G.729 only: %v, want ErrNoCommonCodec", err)
	}
}

// TestMediaTimeoutClosesSession: a browser that vanishes after the
// answer leaves a session that closes itself.
func TestMediaTimeoutClosesSession(t *testing.T) {
	b := newBridge(t)
	ph := newPhone(t)
	s, _ := b.Open("call-4")
	off, _ := sdp.NewOffer(ph.config(sdp.PCMU))
	ob, _ := off.Marshal()
	br := newBrowser(t, false)
	webOffer, err := s.Offer(context.Background(), ob, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Answer(context.Background(), br.answer(t, webOffer)); err != nil {
		t.Fatal(err)
	}
	br.pc.Close()
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("session still open after the media timeout")
	}
	if st := b.Stats(); st.Sessions != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestPublicAddress: behind a 1:1 NAT the bridge announces the public
// address, in the plain SDP and as its ICE host candidate.
func TestPublicAddress(t *testing.T) {
	b, err := bridge.New(bridge.Config{Addr: loopback, Public: netip.MustParseAddr("192.0.2.77"), PortMin: 43000, PortMax: 43099})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s, _ := b.Open("call-5")
	defer s.Close()
	off, _ := sdp.NewOffer(sdp.Config{Addr: loopback, AudioPort: 4000, Audio: []sdp.Codec{sdp.PCMU}, Video: []sdp.Codec{}})
	ob, _ := off.Marshal()
	web, err := s.Offer(context.Background(), ob, true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(web), " 192.0.2.77 ") || strings.Contains(string(web), " 127.0.0.1 ") {
		t.Fatalf("ICE candidates of the offer to the browser:\n%s", web)
	}
	br := newBrowser(t, false)
	plain, err := s.Answer(context.Background(), br.answer(t, web))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(plain), "c=IN IP4 192.0.2.77") {
		t.Fatalf("plain answer:\n%s", plain)
	}
	// Ports stay in the configured range.
	pa, _ := sdp.Parse(plain)
	if p := pa.Audio().Port; p < 43000 || p > 43099 {
		t.Fatalf("RTP port %d outside 43000-43099", p)
	}
}

// TestPictureLossPassesAcross: a plain phone's PLI for the video it gets
// reaches the browser's sender, and the browser's PLI reaches the phone
// (RTCP is otherwise terminated at the bridge).
func TestPictureLossPassesAcross(t *testing.T) {
	b := newBridge(t)
	br := newBrowser(t, true)
	ph := newPhone(t)
	phonePLI := make(chan struct{}, 1)
	vid := newPhone(t, rtp.WithFeedback(func(p rtcp.Packet) { // the phone's video stream
		if _, ok := p.(*rtcp.PictureLossIndication); ok {
			select {
			case phonePLI <- struct{}{}:
			default:
			}
		}
	}))
	s, _ := b.Open("call-pli")
	defer s.Close()
	ctx := context.Background()
	plainOffer, err := s.Offer(ctx, br.offer(t), false)
	if err != nil {
		t.Fatal(err)
	}
	po, _ := sdp.Parse(plainOffer)
	cfg := ph.config(sdp.PCMU)
	cfg.VideoPort, cfg.Video = int(vid.s.LocalAddr().Port()), []sdp.Codec{sdp.VP8}
	ans, err := sdp.Answer(po, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ab, _ := ans.Marshal()
	webAnswer, err := s.Answer(ctx, ab)
	if err != nil {
		t.Fatal(err)
	}
	if err := br.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(webAnswer)}); err != nil {
		t.Fatal(err)
	}
	ph.s.SetRemote(po.Audio().RTPAddr(), po.Audio().RTCPAddr())
	vm := po.Video()
	vid.s.SetRemote(vm.RTPAddr(), vm.RTCPAddr())
	waitFor(t, "the browser leg", func() bool { return br.pc.ConnectionState() == webrtc.PeerConnectionStateConnected })

	// Video both ways, so each side knows the other's stream.
	var videoTrack *webrtc.RTPSender
	for _, tr := range br.pc.GetTransceivers() {
		if tr.Kind() == webrtc.RTPCodecTypeVideo {
			videoTrack = tr.Sender()
		}
	}
	if videoTrack == nil || videoTrack.Track() == nil {
		t.Fatal("the browser has no video sender")
	}
	vtrack := videoTrack.Track().(*webrtc.TrackLocalStaticRTP)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			vid.s.WriteSample(96, []byte{0x10, 0, 0, 0}, 3000, true)
			vtrack.WriteRTP(&prtp.Packet{Header: prtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: uint32(i * 3000), Marker: true}, Payload: []byte{0x10, 0, 0, 0}})
		}
	}()
	waitFor(t, "video both ways", func() bool { return br.got["video"].Load() > 5 && vid.got.Load() > 5 })

	// The phone asks for a key frame: the browser's video sender hears it.
	browserPLI := make(chan struct{}, 1)
	go func() {
		for {
			pkts, _, err := videoTrack.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				if _, ok := p.(*rtcp.PictureLossIndication); ok {
					select {
					case browserPLI <- struct{}{}:
					default:
					}
				}
			}
		}
	}()
	deadline := time.After(5 * time.Second)
	for got := false; !got; {
		vid.s.WriteRTCP(&rtcp.PictureLossIndication{MediaSSRC: 1})
		select {
		case <-browserPLI:
			got = true
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			t.Fatal("the phone's PLI did not reach the browser")
		}
	}

	// And the browser asks the phone for one.
	var remoteSSRC uint32
	for _, tr := range br.pc.GetTransceivers() {
		if tr.Kind() == webrtc.RTPCodecTypeVideo && tr.Receiver().Track() != nil {
			remoteSSRC = uint32(tr.Receiver().Track().SSRC())
		}
	}
	deadline = time.After(5 * time.Second)
	for got := false; !got; {
		br.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: remoteSSRC}})
		select {
		case <-phonePLI:
			got = true
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			t.Fatal("the browser's PLI did not reach the phone")
		}
	}
}

// TestMaxSessions: beyond MaxSessions, Open refuses (the proxy says 503).
func TestMaxSessions(t *testing.T) {
	b, err := bridge.New(bridge.Config{Addr: loopback, PortMin: 43100, PortMax: 43199, MaxSessions: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := range 2 {
		if _, err := b.Open("c" + string(rune('0'+i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Open("c2"); !errors.Is(err, bridge.ErrBusy) {
		t.Fatalf("third session: %v, want ErrBusy", err)
	}
}

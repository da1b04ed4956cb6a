package sdp

import (
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden answers in testdata")

var local = Config{
	Addr:      netip.MustParseAddr("192.0.2.10"),
	AudioPort: 40000,
	VideoPort: 40002,
	RTCPMux:   true,
	SessionID: 4242,
	Version:   1,
}

func load(t testing.TB, name string) *Session {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Parse(b)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return s
}

// TestGoldenAnswers answers offers captured from real phones and compares
// the answer with testdata/NAME.answer (go test -update rewrites them).
func TestGoldenAnswers(t *testing.T) {
	for _, tc := range []struct {
		offer string
		audio string // accepted audio formats, as "pt name/rate" list
		video string
	}{
		{"baresip-1.0.0-offer.sdp", "0 PCMU/8000,8 PCMA/8000,96 opus/48000,101 telephone-event/8000", "96 VP8/90000"},
		{"linphonec-offer.sdp", "96 opus/48000,0 PCMU/8000,8 PCMA/8000,101 telephone-event/8000", "96 VP8/90000"},
	} {
		t.Run(tc.offer, func(t *testing.T) {
			offer := load(t, tc.offer)
			ans, err := Answer(offer, local)
			if err != nil {
				t.Fatal(err)
			}
			if got := list(ans.Audio()); got != tc.audio {
				t.Errorf("audio %s, want %s", got, tc.audio)
			}
			if got := list(ans.Video()); got != tc.video {
				t.Errorf("video %s, want %s", got, tc.video)
			}
			b, err := ans.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", strings.TrimSuffix(tc.offer, "-offer.sdp")+".answer")
			if *update {
				if err := os.WriteFile(golden, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != string(want) {
				t.Errorf("answer differs from %s:\n%s", golden, b)
			}
			// The offerer reads our answer back.
			back, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ReadAnswer(offer, back); err != nil {
				t.Fatalf("offerer would refuse the answer: %v", err)
			}
		})
	}
}

func list(m *Media) string {
	if m == nil {
		return "(rejected)"
	}
	var s []string
	for _, c := range m.Codecs {
		s = append(s, itoa(int(c.PayloadType))+" "+c.Name+"/"+itoa(int(c.ClockRate)))
	}
	return strings.Join(s, ",")
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// TestParseCapturedOffers checks what the captured offers say.
func TestParseCapturedOffers(t *testing.T) {
	lp := load(t, "linphonec-offer.sdp")
	a := lp.Audio()
	if a == nil || a.Addr != netip.MustParseAddr("fd00::2") || a.Port != 7078 || a.RTCPAddr().Port() != 7079 {
		t.Fatalf("linphone audio %+v", a)
	}
	if c, ok := a.Codec(PCMA); !ok || c.PayloadType != 8 {
		t.Errorf("static PCMA without rtpmap not found: %+v", a.Codecs)
	}
	if te, ok := a.TelephoneEvent(48000); !ok || te.PayloadType != 99 {
		t.Errorf("telephone-event/48000 = %+v", te)
	}
	if v := lp.Video(); v == nil || len(v.Codecs) != 1 || !contains(v.Codecs[0].Feedback, "nack pli") || !contains(v.Codecs[0].Feedback, "ccm tmmbr") {
		t.Errorf("linphone video feedback (with wildcard) %+v", v)
	}

	ch := load(t, "chromium-156-offer.sdp")
	a = ch.Audio()
	if a == nil || a.Proto != "UDP/TLS/RTP/SAVPF" || !a.RTCPMux {
		t.Fatalf("chromium audio %+v", a)
	}
	if te, ok := a.TelephoneEvent(8000); !ok || te.PayloadType != 126 {
		t.Errorf("chromium telephone-event/8000 = %+v", te)
	}
	h, ok := ch.Video().Codec(H264)
	if !ok || h264Profile(h.Fmtp) != "cb" || fmtpParam(h.Fmtp, "packetization-mode") != "1" {
		t.Errorf("chromium H.264 constrained baseline mode 1 = %+v, %v", h, ok)
	}
}

// TestChromiumOfferIs488 checks that a WebRTC offer (DTLS-SRTP) is not
// answered as plain RTP: that is the bridge's work.
func TestChromiumOfferIs488(t *testing.T) {
	_, err := Answer(load(t, "chromium-156-offer.sdp"), local)
	if !errors.Is(err, ErrNoCommonCodec) {
		t.Fatalf("Answer = %v, want ErrNoCommonCodec", err)
	}
	if !strings.Contains(err.Error(), "UDP/TLS/RTP/SAVPF") {
		t.Errorf("error does not say why: %v", err)
	}
}

func TestNoCommonCodec(t *testing.T) {
	offer, err := NewOffer(Config{Addr: local.Addr, AudioPort: 5004, Audio: []Codec{{PayloadType: 9, Name: "G722", ClockRate: 8000}, TelephoneEvent}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Answer(offer, local); !errors.Is(err, ErrNoCommonCodec) {
		t.Fatalf("G.722 + telephone-event only: %v, want ErrNoCommonCodec", err)
	}
}

// TestRFC3264Directions checks section 6.1: the answer's direction is the
// offer's reversed, limited by what the answerer wants (hold).
func TestRFC3264Directions(t *testing.T) {
	for _, tc := range []struct {
		offer, local, want Direction
	}{
		{SendRecv, SendRecv, SendRecv},
		{SendOnly, SendRecv, RecvOnly},
		{RecvOnly, SendRecv, SendOnly},
		{Inactive, SendRecv, Inactive},
		{SendRecv, SendOnly, SendOnly},
		{SendOnly, SendOnly, Inactive},
		{SendRecv, Inactive, Inactive},
	} {
		offer, err := NewOffer(Config{Addr: local.Addr, AudioPort: 5004, Direction: tc.offer})
		if err != nil {
			t.Fatal(err)
		}
		l := local
		l.Direction = tc.local
		ans, err := Answer(roundTrip(t, offer), l)
		if err != nil {
			t.Fatal(err)
		}
		if got := roundTrip(t, ans).Media[0].Direction; got != tc.want {
			t.Errorf("offer %v, local %v: answer %v, want %v", tc.offer, tc.local, got, tc.want)
		}
	}
}

// TestRFC3264RejectedStreams checks section 6: one m= line per offered
// stream, unusable ones with port 0, in the offer's order.
func TestRFC3264RejectedStreams(t *testing.T) {
	offer := []byte("v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n" +
		"m=text 6000 RTP/AVP 98\r\na=rtpmap:98 t140/1000\r\n" +
		"m=audio 6002 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=rtcp-mux\r\na=ptime:30\r\n" +
		"m=audio 6004 RTP/AVP 8\r\n" +
		"m=video 0 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n")
	o, err := Parse(offer)
	if err != nil {
		t.Fatal(err)
	}
	ans, err := Answer(o, local)
	if err != nil {
		t.Fatal(err)
	}
	ans = roundTrip(t, ans)
	ports := []int{}
	for _, m := range ans.Media {
		ports = append(ports, m.Port)
	}
	if len(ports) != 4 || ports[0] != 0 || ports[1] != 40000 || ports[2] != 0 || ports[3] != 0 {
		t.Fatalf("answer ports %v, want [0 40000 0 0]", ports)
	}
	a := ans.Media[1]
	if !a.RTCPMux || a.Ptime != 20 || list(&a) != "0 PCMU/8000,101 telephone-event/8000" {
		t.Errorf("accepted audio %+v", a)
	}
	if ans.Media[0].Kind != "text" || strings.Join(ans.Media[0].Formats, " ") != "98" {
		t.Errorf("rejected text stream %+v", ans.Media[0])
	}
}

func TestOfferRoundTrip(t *testing.T) {
	c := local
	c.RTCPMux = false
	c.AudioRTCPPort = 40011
	o, err := NewOffer(c)
	if err != nil {
		t.Fatal(err)
	}
	b, err := o.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "sipfed-offer.sdp")
	if *update {
		if err := os.WriteFile(golden, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if want, err := os.ReadFile(golden); err != nil || string(want) != string(b) {
		t.Errorf("offer differs from %s (%v):\n%s", golden, err, b)
	}
	p, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if got := list(p.Audio()); got != "0 PCMU/8000,8 PCMA/8000,111 opus/48000,101 telephone-event/8000" {
		t.Errorf("audio %s", got)
	}
	if got := p.Audio().RTCPAddr(); got != netip.MustParseAddrPort("192.0.2.10:40011") {
		t.Errorf("a=rtcp lost: %v", got)
	}
	if got := list(p.Video()); got != "96 VP8/90000,97 H264/90000" {
		t.Errorf("video %s", got)
	}
	// The answer a peer would give (ours, with only PCMA and no video).
	peer := Config{Addr: netip.MustParseAddr("192.0.2.20"), AudioPort: 5000, Audio: []Codec{PCMA, TelephoneEvent}}
	ans, err := Answer(p, peer)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadAnswer(p, roundTrip(t, ans))
	if err != nil {
		t.Fatal(err)
	}
	if got.Audio().RTPAddr() != netip.MustParseAddrPort("192.0.2.20:5000") || got.Video() != nil {
		t.Errorf("read answer %+v", got)
	}
}

func TestReadAnswerMismatch(t *testing.T) {
	o, _ := NewOffer(local)
	bad := &Session{Media: []Media{{Kind: "audio", Port: 1, Addr: local.Addr, Codecs: []Codec{{PayloadType: 9, Name: "G722", ClockRate: 8000}}}, {Kind: "video"}}}
	if _, err := ReadAnswer(o, bad); !errors.Is(err, ErrAnswerMismatch) {
		t.Errorf("unoffered codec: %v", err)
	}
	if _, err := ReadAnswer(o, &Session{Media: bad.Media[:1]}); !errors.Is(err, ErrAnswerMismatch) {
		t.Errorf("missing m= line: %v", err)
	}
	rej := &Session{Media: []Media{{Kind: "audio"}, {Kind: "video"}}}
	if _, err := ReadAnswer(o, rej); !errors.Is(err, ErrNoCommonCodec) {
		t.Errorf("all rejected: %v", err)
	}
}

func TestH264Profiles(t *testing.T) {
	for _, tc := range []struct {
		fmtp string
		want bool
	}{
		{"profile-level-id=42e01f;packetization-mode=1", true},
		{"profile-level-id=42c01f;packetization-mode=1;level-asymmetry-allowed=1", true},
		{"profile-level-id=4de01f;packetization-mode=1", true},  // main with set0+set1: constrained baseline
		{"profile-level-id=42001f;packetization-mode=1", false}, // baseline
		{"profile-level-id=42e01f", false},                      // mode 0
		{"profile-level-id=640c1f;packetization-mode=1", false}, // high
		{"profile-level-id=zz;packetization-mode=1", false},
	} {
		c := Codec{Name: "H264", ClockRate: 90000, Fmtp: tc.fmtp}
		if got := H264.Matches(c); got != tc.want {
			t.Errorf("%s: match %v, want %v", tc.fmtp, got, tc.want)
		}
	}
}

func roundTrip(t testing.TB, s *Session) *Session {
	t.Helper()
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	return p
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

// FuzzParseOffer parses anything, and answers and re-reads what parses.
func FuzzParseOffer(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.sdp"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := Parse(b)
		if err != nil {
			return
		}
		ans, err := Answer(o, local)
		if err != nil {
			return
		}
		out, err := ans.Marshal()
		if err != nil {
			t.Fatalf("answer does not marshal: %v", err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("our answer does not parse: %v\n%s", err, out)
		}
		if _, err := ReadAnswer(o, back); err != nil {
			t.Fatalf("our answer does not fit the offer: %v\n%s", err, out)
		}
	})
}

// TestT38IsParseError pins a limitation of pion/sdp: it refuses m=image
// udptl lines, so a T.38 re-INVITE fails with ErrParse (the SIP layer
// answers 488 all the same).
func TestT38IsParseError(t *testing.T) {
	_, err := Parse([]byte("v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\nm=image 6000 udptl t38\r\n"))
	if !errors.Is(err, ErrParse) {
		t.Fatalf("Parse = %v, want ErrParse", err)
	}
}

package sdp

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// Config is what the local side can do, for making an offer or an answer.
type Config struct {
	Addr     netip.Addr // for c= and o=
	Username string     // o= user name; default "sipfed"

	// AudioPort and VideoPort are the local RTP ports; 0 leaves the
	// stream out of an offer and rejects it in an answer.
	AudioPort, VideoPort int
	// AudioRTCPPort and VideoRTCPPort are written as a=rtcp when the RTCP
	// socket is not on RTP port + 1; 0 otherwise.
	AudioRTCPPort, VideoRTCPPort int

	Audio []Codec // default DefaultAudio
	Video []Codec // default DefaultVideo

	Direction Direction // SendOnly or Inactive to put a call on hold
	Ptime     int       // audio packet time in ms; default 20
	RTCPMux   bool      // offer, or accept, RTP and RTCP on one port (RFC 5761)

	SessionID uint64 // default random
	Version   uint64 // o= version, to be incremented by each new offer
}

func (c Config) withDefaults() Config {
	if c.Username == "" {
		c.Username = "sipfed"
	}
	if c.Audio == nil {
		c.Audio = DefaultAudio
	}
	if c.Video == nil {
		c.Video = DefaultVideo
	}
	if c.Ptime == 0 {
		c.Ptime = 20
	}
	if c.SessionID == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		c.SessionID = binary.BigEndian.Uint64(b[:]) >> 2 // fits in int64, like most implementations
	}
	return c
}

// acceptedProtos are the transports of plain RTP endpoints. Anything else
// (SRTP, DTLS: WebRTC) is rejected here and left to the bridge.
var acceptedProtos = map[string]bool{"RTP/AVP": true, "RTP/AVPF": true}

// NewOffer makes an offer with an audio and/or a video stream (RFC 3264
// section 5).
func NewOffer(c Config) (*Session, error) {
	c = c.withDefaults()
	if !c.Addr.IsValid() {
		return nil, fmt.Errorf("sdp: offer without an address")
	}
	s := &Session{Username: c.Username, SessionID: c.SessionID, Version: c.Version, Addr: c.Addr}
	if c.AudioPort != 0 {
		s.Media = append(s.Media, Media{Kind: "audio", Proto: "RTP/AVP", Port: c.AudioPort, Addr: c.Addr,
			RTCPPort: c.AudioRTCPPort, RTCPMux: c.RTCPMux, Direction: c.Direction, Ptime: c.Ptime, Codecs: c.Audio})
	}
	if c.VideoPort != 0 {
		s.Media = append(s.Media, Media{Kind: "video", Proto: "RTP/AVP", Port: c.VideoPort, Addr: c.Addr,
			RTCPPort: c.VideoRTCPPort, RTCPMux: c.RTCPMux, Direction: c.Direction, Codecs: c.Video})
	}
	if len(s.Media) == 0 {
		return nil, fmt.Errorf("sdp: offer without streams")
	}
	return s, nil
}

// Answer answers offer (RFC 3264 section 6): every offered stream gets an
// m= line in the same place; the first audio and the first video stream over
// RTP/AVP(F) with a codec in common are accepted with the common codecs in
// the offerer's order and payload type numbers, the others are rejected with
// port 0. It returns ErrNoCommonCodec when nothing is accepted.
func Answer(offer *Session, c Config) (*Session, error) {
	c = c.withDefaults()
	if !c.Addr.IsValid() {
		return nil, fmt.Errorf("sdp: answer without an address")
	}
	ans := &Session{Username: c.Username, SessionID: c.SessionID, Version: c.Version, Addr: c.Addr}
	var taken = map[string]bool{}
	var why []string
	for _, om := range offer.Media {
		am := Media{Kind: om.Kind, Proto: om.Proto, Formats: om.Formats, Addr: c.Addr}
		port, rtcpPort, local, ptime := 0, 0, []Codec(nil), 0
		switch om.Kind {
		case "audio":
			port, rtcpPort, local, ptime = c.AudioPort, c.AudioRTCPPort, c.Audio, c.Ptime
		case "video":
			port, rtcpPort, local = c.VideoPort, c.VideoRTCPPort, c.Video
		}
		switch {
		case om.Port == 0:
			why = append(why, om.Kind+" disabled by the offer")
		case port == 0:
			why = append(why, om.Kind+" not supported")
		case !acceptedProtos[om.Proto]:
			why = append(why, om.Kind+" over "+om.Proto)
		case !om.Addr.IsValid():
			why = append(why, om.Kind+" without a connection address")
		case taken[om.Kind]:
			why = append(why, "second "+om.Kind+" stream")
		default:
			am.Codecs = common(om.Codecs, local)
			if len(am.Codecs) == 0 {
				why = append(why, om.Kind+" codecs "+names(om.Codecs))
				break
			}
			taken[om.Kind] = true
			am.Port, am.RTCPPort, am.Ptime = port, rtcpPort, ptime
			am.RTCPMux = om.RTCPMux && c.RTCPMux
			am.Direction = direction(om.Direction.Receives() && c.Direction.Sends(),
				om.Direction.Sends() && c.Direction.Receives())
		}
		ans.Media = append(ans.Media, am)
	}
	if len(taken) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoCommonCodec, strings.Join(why, "; "))
	}
	return ans, nil
}

// common returns the offered codecs that match a local one, in the offer's
// order with the offer's payload types and parameters. telephone-event is
// kept only at the clock rate of a kept codec, and only beside one.
func common(offered, local []Codec) []Codec {
	match := func(o Codec) (Codec, bool) {
		for _, l := range local {
			if l.Matches(o) {
				o.Feedback = commonFeedback(o.Feedback, l.Feedback)
				return o, true
			}
		}
		return Codec{}, false
	}
	rates := map[uint32]bool{}
	for _, o := range offered {
		if _, ok := match(o); ok && !o.IsTelephoneEvent() {
			rates[o.ClockRate] = true
		}
	}
	if len(rates) == 0 {
		return nil
	}
	var out []Codec
	for _, o := range offered {
		switch c, ok := match(o); {
		case !ok:
		case !o.IsTelephoneEvent():
			out = append(out, c)
		case rates[o.ClockRate]:
			out = append(out, c)
		}
	}
	return out
}

func commonFeedback(offered, local []string) []string {
	var out []string
	for _, o := range offered {
		for _, l := range local {
			if strings.EqualFold(o, l) {
				out = append(out, o)
				break
			}
		}
	}
	return out
}

func names(cs []Codec) string {
	var n []string
	for _, c := range cs {
		n = append(n, c.Name)
	}
	if len(n) == 0 {
		return "(none)"
	}
	return strings.Join(n, ",")
}

// ReadAnswer checks answer against the offer it answers (RFC 3264 section
// 6) and returns it: as many m= lines in the same order and of the same
// kinds, and in each accepted stream only formats that were offered. It
// returns ErrNoCommonCodec when every stream was rejected.
func ReadAnswer(offer, answer *Session) (*Session, error) {
	if len(answer.Media) != len(offer.Media) {
		return nil, fmt.Errorf("%w: %d m= lines for %d offered", ErrAnswerMismatch, len(answer.Media), len(offer.Media))
	}
	accepted := false
	for i, am := range answer.Media {
		om := offer.Media[i]
		if am.Kind != om.Kind {
			return nil, fmt.Errorf("%w: m= line %d is %s, offered %s", ErrAnswerMismatch, i, am.Kind, om.Kind)
		}
		if am.Port == 0 {
			continue
		}
		if om.Port == 0 {
			return nil, fmt.Errorf("%w: %s accepted though not offered", ErrAnswerMismatch, am.Kind)
		}
		media := 0
		for _, c := range am.Codecs {
			if _, ok := om.Codec(c); !ok {
				return nil, fmt.Errorf("%w: %s %s/%d was not offered", ErrAnswerMismatch, am.Kind, c.Name, c.ClockRate)
			}
			if !c.IsTelephoneEvent() {
				media++
			}
		}
		if media == 0 {
			return nil, fmt.Errorf("%w: %s accepted without a codec", ErrAnswerMismatch, am.Kind)
		}
		if !am.Addr.IsValid() {
			return nil, fmt.Errorf("%w: %s without a connection address", ErrAnswerMismatch, am.Kind)
		}
		accepted = true
	}
	if !accepted {
		return nil, fmt.Errorf("%w: every stream rejected", ErrNoCommonCodec)
	}
	return answer, nil
}

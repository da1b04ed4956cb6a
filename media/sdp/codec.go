package sdp

import (
	"strconv"
	"strings"
)

// Codec is one payload format of a media stream: rtpmap, fmtp and rtcp-fb.
type Codec struct {
	PayloadType uint8
	Name        string // encoding name as in rtpmap: PCMU, opus, VP8, H264
	ClockRate   uint32
	Channels    int // audio channels; 0 means 1
	Fmtp        string
	Feedback    []string // rtcp-fb values, such as "nack pli"
}

// Codecs sipfed offers by default.
var (
	PCMU           = Codec{PayloadType: 0, Name: "PCMU", ClockRate: 8000}
	PCMA           = Codec{PayloadType: 8, Name: "PCMA", ClockRate: 8000}
	TelephoneEvent = Codec{PayloadType: 101, Name: "telephone-event", ClockRate: 8000, Fmtp: "0-16"}
	Opus           = Codec{PayloadType: 111, Name: "opus", ClockRate: 48000, Channels: 2, Fmtp: "minptime=10;useinbandfec=1"}
	VP8            = Codec{PayloadType: 96, Name: "VP8", ClockRate: 90000, Feedback: []string{"nack", "nack pli", "ccm fir"}}
	// H264 is constrained baseline, level 3.1, non-interleaved mode.
	H264 = Codec{PayloadType: 97, Name: "H264", ClockRate: 90000,
		Fmtp:     "profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1",
		Feedback: []string{"nack", "nack pli", "ccm fir"}}
)

// DefaultAudio and DefaultVideo are the codecs of an offer when Config
// names none, in order of preference.
var (
	DefaultAudio = []Codec{PCMU, PCMA, Opus, TelephoneEvent}
	DefaultVideo = []Codec{VP8, H264}
)

// staticTypes are the RFC 3551 payload types that need no rtpmap.
var staticTypes = map[uint8]Codec{
	0:  {Name: "PCMU", ClockRate: 8000},
	3:  {Name: "GSM", ClockRate: 8000},
	4:  {Name: "G723", ClockRate: 8000},
	8:  {Name: "PCMA", ClockRate: 8000},
	9:  {Name: "G722", ClockRate: 8000},
	13: {Name: "CN", ClockRate: 8000},
	18: {Name: "G729", ClockRate: 8000},
	26: {Name: "JPEG", ClockRate: 90000},
	31: {Name: "H261", ClockRate: 90000},
	34: {Name: "H263", ClockRate: 90000},
}

// IsTelephoneEvent reports whether c is RFC 4733 telephone-event.
func (c Codec) IsTelephoneEvent() bool { return strings.EqualFold(c.Name, "telephone-event") }

func (c Codec) channels() int { return max(c.Channels, 1) }

// Matches reports whether c and o are the same format: same encoding name,
// clock rate and channels, and for H.264 the same profile and
// packetization mode (RFC 6184 section 8.2.2).
func (c Codec) Matches(o Codec) bool {
	if !strings.EqualFold(c.Name, o.Name) || c.ClockRate != o.ClockRate || c.channels() != o.channels() {
		return false
	}
	if strings.EqualFold(c.Name, "H264") {
		return h264Profile(c.Fmtp) == h264Profile(o.Fmtp) && fmtpParam(c.Fmtp, "packetization-mode") == fmtpParam(o.Fmtp, "packetization-mode")
	}
	return true
}

// h264Profile classifies profile-level-id: "cb" for constrained baseline
// (profile_idc 66 with constraint_set1, or 77/88 with both set0 and set1
// flags per RFC 6184 table 5), else the profile_idc.
func h264Profile(fmtp string) string {
	pli := fmtpParam(fmtp, "profile-level-id")
	if pli == "" {
		pli = "42000a" // RFC 6184 section 8.1 default: baseline
	}
	v, err := strconv.ParseUint(pli, 16, 32)
	if err != nil || len(pli) != 6 {
		return "invalid"
	}
	idc, iop := v>>16, (v>>8)&0xFF
	switch {
	case idc == 66 && iop&0x40 != 0, (idc == 77 || idc == 88) && iop&0xC0 == 0xC0:
		return "cb"
	}
	return strconv.FormatUint(idc, 10)
}

// fmtpParam returns the value of key in a fmtp parameter list ("" when
// absent; "0" for a missing packetization-mode, its default).
func fmtpParam(fmtp, key string) string {
	for p := range strings.SplitSeq(fmtp, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, key) {
			return strings.TrimSpace(v)
		}
	}
	if key == "packetization-mode" {
		return "0"
	}
	return ""
}

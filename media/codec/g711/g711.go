package g711

import (
	"strings"
	"time"
)

// SampleRate is the G.711 sampling rate and RTP clock rate in Hz.
const SampleRate = 8000

// FrameDuration is the packetisation interval sipfed uses (ptime 20).
const FrameDuration = 20 * time.Millisecond

// FrameSamples is the number of samples, and of encoded bytes, in one frame.
const FrameSamples = SampleRate / 50

// Law is one of the two G.711 companding laws. Its value is the static RTP
// payload type of RFC 3551.
type Law uint8

const (
	// Ulaw is µ-law, RTP payload type 0 (PCMU).
	Ulaw Law = 0
	// Alaw is A-law, RTP payload type 8 (PCMA).
	Alaw Law = 8
)

// ByName returns the law for an SDP encoding name (PCMU or PCMA, any case).
func ByName(name string) (Law, bool) {
	switch {
	case strings.EqualFold(name, "PCMU"):
		return Ulaw, true
	case strings.EqualFold(name, "PCMA"):
		return Alaw, true
	}
	return 0, false
}

// Name returns the SDP encoding name of l.
func (l Law) Name() string {
	if l == Alaw {
		return "PCMA"
	}
	return "PCMU"
}

// PayloadType returns the static RTP payload type of l.
func (l Law) PayloadType() uint8 { return uint8(l) }

// Silence returns the code that decodes to (near) zero.
func (l Law) Silence() byte {
	if l == Alaw {
		return 0xD5
	}
	return 0xFF
}

// Encode appends the encoding of pcm to dst and returns the extended slice.
func (l Law) Encode(dst []byte, pcm []int16) []byte {
	if l == Alaw {
		return EncodeAlaw(dst, pcm)
	}
	return EncodeUlaw(dst, pcm)
}

// Decode appends the samples of payload to dst and returns the extended slice.
func (l Law) Decode(dst []int16, payload []byte) []int16 {
	if l == Alaw {
		return DecodeAlaw(dst, payload)
	}
	return DecodeUlaw(dst, payload)
}

// EncodeUlaw appends the µ-law encoding of pcm to dst.
func EncodeUlaw(dst []byte, pcm []int16) []byte {
	for _, s := range pcm {
		dst = append(dst, ulawEnc[uint16(s)])
	}
	return dst
}

// DecodeUlaw appends the linear samples of the µ-law bytes in b to dst.
func DecodeUlaw(dst []int16, b []byte) []int16 {
	for _, c := range b {
		dst = append(dst, ulawDec[c])
	}
	return dst
}

// EncodeAlaw appends the A-law encoding of pcm to dst.
func EncodeAlaw(dst []byte, pcm []int16) []byte {
	for _, s := range pcm {
		dst = append(dst, alawEnc[uint16(s)>>3])
	}
	return dst
}

// DecodeAlaw appends the linear samples of the A-law bytes in b to dst.
func DecodeAlaw(dst []int16, b []byte) []int16 {
	for _, c := range b {
		dst = append(dst, alawDec[c])
	}
	return dst
}

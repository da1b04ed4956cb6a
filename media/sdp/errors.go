package sdp

import "errors"

var (
	// ErrNoCommonCodec is returned when no stream of an offer can be
	// accepted; the SIP layer answers 488 Not Acceptable Here.
	ErrNoCommonCodec = errors.New("sdp: no common codec")
	// ErrParse is returned for a description that is not valid SDP.
	ErrParse = errors.New("sdp: malformed description")
	// ErrAnswerMismatch is returned for an answer that does not fit its
	// offer (RFC 3264 section 6).
	ErrAnswerMismatch = errors.New("sdp: answer does not match offer")
)

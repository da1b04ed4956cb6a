// Package sdp makes and answers SDP offers for sipfed's endpoints: PCMU, PCMA,
// telephone-event and Opus audio, VP8 and H.264 video, hold directions,
// ptime and rtcp-mux (RFC 3264 offer/answer on RFC 4566/8866 SDP, via pion/sdp).
// https://www.rfc-editor.org/rfc/rfc3264 https://www.rfc-editor.org/rfc/rfc8866
package sdp

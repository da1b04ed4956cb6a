// Package endpoint is a SIP user agent: one account that registers with
// its domain's proxy (RFC 3261 §10, digest MD5 or SHA-256, RFC 5626
// +sip.instance), places and answers calls through it, and sends and
// receives the media itself, directly to and from the other phone.
//
// Dialogs are sipgo's (its client and server dialog caches and
// sessions); SDP offer/answer, RTP/RTCP, G.711, RFC 4733 DTMF, WAV, Ogg
// (Opus) and IVF (VP8) files and the jitter buffer are media/*. Without
// an outbound proxy a Phone finds its domain's proxy through DNS (RFC
// 3263), as a hardware phone does.
//
// The package never imports the server side (proxy, registrar,
// location, server).
package endpoint

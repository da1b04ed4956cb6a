// Package rtp runs one RTP media stream over UDP (RFC 3550): sending and
// receiving packets, RTCP sender and receiver reports at the RFC 3550
// interval, loss, jitter and round-trip statistics, symmetric RTP for NAT
// (RFC 4961), rtcp-mux (RFC 5761) and RFC 4733 telephone-event sending.
// https://www.rfc-editor.org/rfc/rfc3550
package rtp

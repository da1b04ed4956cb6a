// Package dtmf sends and receives DTMF digits as RTP telephone events
// (RFC 4733): the 4-byte event payload, the packet sequence of one digit with
// its end-packet redundancy, and a receiver that reports each digit once.
package dtmf

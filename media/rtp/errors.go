package rtp

import "errors"

var (
	// ErrClosed is returned by a Session after Close.
	ErrClosed = errors.New("rtp: session closed")
	// ErrTimeout is returned by ReadRTP when no RTP packet arrived within
	// the receive timeout.
	ErrTimeout = errors.New("rtp: receive timeout")
	// ErrNoRemote is returned by writes before the remote address is known.
	ErrNoRemote = errors.New("rtp: remote address unknown")
	// ErrNoPorts is returned when no port (pair) of the range can be bound.
	ErrNoPorts = errors.New("rtp: no free port in range")
)

package dtmf

import "errors"

var (
	// ErrDigit is returned for a rune that is not a DTMF digit.
	ErrDigit = errors.New("dtmf: not a DTMF digit")
	// ErrShort is returned for an event payload shorter than 4 bytes.
	ErrShort = errors.New("dtmf: event payload shorter than 4 bytes")
)

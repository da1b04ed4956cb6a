package dtmf

import (
	"encoding/binary"
	"fmt"
	"time"
)

// EndRepeats is how many times the end packet of an event is sent
// (https://www.rfc-editor.org/rfc/rfc4733#section-2.5.1.4 recommends three).
const EndRepeats = 3

// DefaultVolume is the power level sent with events, in -dBm0 (RFC 4733
// section 2.3.4).
const DefaultVolume = 10

const digits = "0123456789*#ABCD"

// Code returns the RFC 4733 event code of a DTMF digit (0-9, *, #, A-D).
func Code(digit rune) (uint8, error) {
	if digit >= 'a' && digit <= 'd' {
		digit -= 'a' - 'A'
	}
	for i, d := range digits {
		if d == digit {
			return uint8(i), nil
		}
	}
	return 0, fmt.Errorf("%w: %q", ErrDigit, digit)
}

// Digit returns the digit of an event code, or 0 when code is not one of the
// 16 DTMF events.
func Digit(code uint8) rune {
	if int(code) < len(digits) {
		return rune(digits[code])
	}
	return 0
}

// Event is one telephone-event payload
// (https://www.rfc-editor.org/rfc/rfc4733#section-2.3).
type Event struct {
	Code     uint8
	End      bool
	Volume   uint8  // 0-63, -dBm0
	Duration uint16 // in RTP timestamp units since the event began
}

// Marshal appends the 4-byte payload of e to b.
func (e Event) Marshal(b []byte) []byte {
	v := e.Volume & 0x3F
	if e.End {
		v |= 0x80
	}
	return binary.BigEndian.AppendUint16(append(b, e.Code, v), e.Duration)
}

// Unmarshal parses a 4-byte event payload.
func (e *Event) Unmarshal(b []byte) error {
	if len(b) < 4 {
		return ErrShort
	}
	e.Code = b[0]
	e.End = b[1]&0x80 != 0
	e.Volume = b[1] & 0x3F
	e.Duration = binary.BigEndian.Uint16(b[2:4])
	return nil
}

// Packet is one RTP packet of an event: all packets of an event carry the
// RTP timestamp of its start, and the first one has the marker bit.
type Packet struct {
	Event  Event
	Marker bool
}

// Packets returns the packets that send digit for length d at clockRate,
// one every interval (usually the audio ptime), followed by EndRepeats
// copies of the end packet. The caller sends the non-end packets one
// interval apart and the end packets together or back to back.
func Packets(digit rune, d time.Duration, clockRate uint32, interval time.Duration) ([]Packet, error) {
	code, err := Code(digit)
	if err != nil {
		return nil, err
	}
	if interval <= 0 || d < interval {
		return nil, fmt.Errorf("dtmf: duration %v shorter than interval %v", d, interval)
	}
	total := uint64(d) * uint64(clockRate) / uint64(time.Second)
	if total > 0xFFFF {
		return nil, fmt.Errorf("dtmf: duration %v too long for one event", d)
	}
	step := uint64(interval) * uint64(clockRate) / uint64(time.Second)
	var ps []Packet
	for dur := step; dur < total; dur += step {
		ps = append(ps, Packet{Event: Event{Code: code, Volume: DefaultVolume, Duration: uint16(dur)}, Marker: len(ps) == 0})
	}
	for range EndRepeats {
		ps = append(ps, Packet{Event: Event{Code: code, End: true, Volume: DefaultVolume, Duration: uint16(total)}, Marker: len(ps) == 0})
	}
	return ps, nil
}

// Receiver turns received telephone-event packets into digits, reporting each
// event once however many of its packets (and end repeats) arrive. An event
// whose end packets are all lost is reported when the next one begins.
type Receiver struct {
	started  bool
	ts       uint32 // RTP timestamp of the current event
	reported bool
	code     uint8
}

// Receive handles the payload of one telephone-event packet with RTP
// timestamp ts. It returns the digit when an event is complete, otherwise 0.
func (r *Receiver) Receive(ts uint32, payload []byte) (rune, error) {
	var e Event
	if err := e.Unmarshal(payload); err != nil {
		return 0, err
	}
	var out rune
	if !r.started || ts != r.ts {
		if r.started && !r.reported && int32(ts-r.ts) > 0 {
			out = Digit(r.code) // the previous event lost all its end packets
		}
		if r.started && int32(ts-r.ts) < 0 {
			return 0, nil // a late packet of an event already reported
		}
		r.started, r.ts, r.reported, r.code = true, ts, false, e.Code
	}
	if e.End && !r.reported && out == 0 {
		// When out is set, an end repeat of this event reports it later.
		r.reported = true
		return Digit(e.Code), nil
	}
	return out, nil
}

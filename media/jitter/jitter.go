package jitter

import "github.com/pion/rtp"

// Defaults of New.
const (
	// DefaultDepth is how many packets past a gap the buffer holds before it
	// declares the missing packet lost: 3 packets, 60 ms of 20 ms audio.
	DefaultDepth = 3
	// DefaultSize is the number of slots; packets further ahead than this
	// restart the buffer.
	DefaultSize = 64
)

// Frame is one packet out of the buffer, or the place of a lost one.
type Frame struct {
	SSRC        uint32
	Seq         uint16
	Timestamp   uint32
	PayloadType uint8
	Marker      bool
	// Payload aliases the buffer's memory: it is valid until the next call
	// to Push, Pop or Flush.
	Payload []byte
	// Lost is set when no packet came for Seq; Duration then estimates its
	// length in timestamp units from the packets around it.
	Lost     bool
	Duration uint32
}

type slot struct {
	used    bool
	seq     uint16
	ts      uint32
	pt      uint8
	marker  bool
	payload []byte
}

// Buffer reorders the packets of one RTP source at a time. It is not safe for
// concurrent use. A change of SSRC restarts it.
type Buffer struct {
	slots []slot
	mask  uint16
	depth int

	started bool
	primed  bool
	ssrc    uint32
	next    uint16 // sequence number of the next frame out
	highest uint16 // highest sequence number held or played
	count   int    // packets held

	havePrev bool
	prevSeq  uint16 // last frame out
	prevTS   uint32

	stats Stats
}

// Stats counts what the buffer did with the packets pushed.
type Stats struct {
	Pushed, Played, Lost, Late, Duplicate, Resets uint64
}

// Option configures a Buffer.
type Option func(*Buffer)

// WithDepth sets how many packets past a gap are waited for (default
// DefaultDepth). A larger depth absorbs more reordering and adds delay.
func WithDepth(n int) Option {
	return func(b *Buffer) {
		if n > 0 {
			b.depth = n
		}
	}
}

// New returns an empty buffer. All of its memory is allocated here or the
// first time a slot holds a packet of a new maximum size.
func New(opts ...Option) *Buffer {
	b := &Buffer{depth: DefaultDepth}
	for _, o := range opts {
		o(b)
	}
	size := DefaultSize
	for size < 4*b.depth {
		size *= 2
	}
	b.slots = make([]slot, size)
	b.mask = uint16(size - 1)
	return b
}

// Stats returns the counters.
func (b *Buffer) Stats() Stats { return b.stats }

// Len returns the number of packets held.
func (b *Buffer) Len() int { return b.count }

func (b *Buffer) reset(p *rtp.Packet) {
	if b.started {
		b.stats.Resets++
	}
	for i := range b.slots {
		b.slots[i].used = false
	}
	b.started, b.primed, b.havePrev = true, false, false
	b.ssrc = p.SSRC
	b.next = p.SequenceNumber
	b.highest = p.SequenceNumber
	b.count = 0
}

// Push copies p into the buffer. It returns false when p was dropped: a
// duplicate, or later than a frame already given out.
func (b *Buffer) Push(p *rtp.Packet) bool {
	b.stats.Pushed++
	if !b.started || p.SSRC != b.ssrc {
		b.reset(p)
	}
	ahead := int(int16(p.SequenceNumber - b.next))
	switch {
	case ahead > int(b.mask) || ahead < -int(b.mask):
		b.reset(p) // the source jumped: start over from here
	case ahead < 0:
		b.stats.Late++
		return false
	}
	s := &b.slots[p.SequenceNumber&b.mask]
	if s.used {
		b.stats.Duplicate++
		return false
	}
	s.used = true
	s.seq = p.SequenceNumber
	s.ts = p.Timestamp
	s.pt = p.PayloadType
	s.marker = p.Marker
	s.payload = append(s.payload[:0], p.Payload...)
	b.count++
	if int16(p.SequenceNumber-b.highest) > 0 {
		b.highest = p.SequenceNumber
	}
	return true
}

// span is the number of sequence numbers from next to highest, inclusive.
func (b *Buffer) span() int { return int(uint16(b.highest-b.next)) + 1 }

// Pop returns the next frame when it is due: the next packet in sequence if
// it is held, or a lost frame in its place once depth packets past it are.
// Until depth packets have arrived after a (re)start nothing is due, which
// is the playout delay. ok is false when nothing is due.
func (b *Buffer) Pop() (f Frame, ok bool) {
	if b.count == 0 {
		return Frame{}, false
	}
	if !b.primed {
		if b.span() < b.depth {
			return Frame{}, false
		}
		b.primed = true
	}
	return b.pop(false)
}

// Flush returns the frames still held, in order, without waiting: gaps
// between them come out as lost frames. Call it until ok is false when the
// stream ends.
func (b *Buffer) Flush() (f Frame, ok bool) {
	if b.count == 0 {
		return Frame{}, false
	}
	return b.pop(true)
}

func (b *Buffer) pop(force bool) (Frame, bool) {
	s := &b.slots[b.next&b.mask]
	if s.used && s.seq == b.next {
		s.used = false
		b.count--
		b.stats.Played++
		b.havePrev, b.prevSeq, b.prevTS = true, s.seq, s.ts
		b.next++
		return Frame{SSRC: b.ssrc, Seq: s.seq, Timestamp: s.ts, PayloadType: s.pt, Marker: s.marker, Payload: s.payload}, true
	}
	if !force && b.span() <= b.depth {
		return Frame{}, false
	}
	// b.next is missing. Estimate its timestamp from the last frame out and
	// the first packet held after the gap.
	f := Frame{SSRC: b.ssrc, Seq: b.next, Lost: true}
	for i := uint16(1); i <= b.mask; i++ {
		n := &b.slots[(b.next+i)&b.mask]
		if !n.used || n.seq != b.next+i {
			continue
		}
		if b.havePrev {
			step := (n.ts - b.prevTS) / uint32(uint16(n.seq-b.prevSeq))
			f.Timestamp, f.Duration = b.prevTS+step, step
		} else {
			f.Timestamp = n.ts // no history: only the position is known
		}
		break
	}
	b.stats.Lost++
	b.havePrev, b.prevSeq, b.prevTS = true, f.Seq, f.Timestamp
	b.next++
	return f, true
}

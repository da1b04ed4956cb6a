package jitter

import (
	"testing"

	"github.com/pion/rtp"
)

func pkt(ssrc uint32, seq uint16) *rtp.Packet {
	return &rtp.Packet{
		Header:  rtp.Header{Version: 2, SSRC: ssrc, SequenceNumber: seq, Timestamp: 1000 + uint32(seq)*160},
		Payload: []byte{byte(seq), byte(seq >> 8)},
	}
}

type out struct {
	seq  uint16
	lost bool
	ts   uint32
}

func drain(b *Buffer, flush bool) []out {
	var o []out
	for {
		pop := b.Pop
		if flush {
			pop = b.Flush
		}
		f, ok := pop()
		if !ok {
			return o
		}
		if !f.Lost && (f.Payload[0] != byte(f.Seq) || f.Payload[1] != byte(f.Seq>>8)) {
			panic("payload does not match seq")
		}
		o = append(o, out{f.Seq, f.Lost, f.Timestamp})
	}
}

func TestJitterBuffer(t *testing.T) {
	for _, tc := range []struct {
		name string
		seqs []uint16
		pop  []out // after pushing all, Pop until nothing is due
		rest []out // then Flush
	}{
		{
			name: "in order waits for depth then plays",
			seqs: []uint16{10, 11, 12, 13},
			pop:  []out{{10, false, 2600}, {11, false, 2760}, {12, false, 2920}, {13, false, 3080}},
		},
		{
			name: "reordered",
			seqs: []uint16{10, 12, 11, 14, 13},
			pop:  []out{{10, false, 2600}, {11, false, 2760}, {12, false, 2920}, {13, false, 3080}, {14, false, 3240}},
		},
		{
			name: "gap declared lost once depth packets follow, timestamp interpolated",
			seqs: []uint16{10, 12, 13, 14},
			pop:  []out{{10, false, 2600}, {11, true, 2760}, {12, false, 2920}, {13, false, 3080}, {14, false, 3240}},
		},
		{
			name: "gap not yet due is kept for flush",
			seqs: []uint16{10, 11, 12, 14, 15},
			pop:  []out{{10, false, 2600}, {11, false, 2760}, {12, false, 2920}},
			rest: []out{{13, true, 3080}, {14, false, 3240}, {15, false, 3400}},
		},
		{
			name: "duplicates and late packets dropped",
			seqs: []uint16{10, 11, 11, 12, 13},
			pop:  []out{{10, false, 2600}, {11, false, 2760}, {12, false, 2920}, {13, false, 3080}},
		},
		{
			name: "sequence wraps",
			seqs: []uint16{65534, 65535, 0, 1},
			pop:  []out{{65534, false, 1000 + 65534*160}, {65535, false, 1000 + 65535*160}, {0, false, 1000}, {1, false, 1160}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New()
			for _, s := range tc.seqs {
				b.Push(pkt(1, s))
			}
			got := drain(b, false)
			if !equal(got, tc.pop) {
				t.Fatalf("pop = %v, want %v", got, tc.pop)
			}
			if got := drain(b, true); !equal(got, tc.rest) {
				t.Fatalf("flush = %v, want %v", got, tc.rest)
			}
		})
	}
}

func TestJitterLateAndDuplicate(t *testing.T) {
	b := New(WithDepth(1))
	b.Push(pkt(1, 5))
	if _, ok := b.Pop(); !ok {
		t.Fatal("nothing due at depth 1")
	}
	if b.Push(pkt(1, 5)) || b.Push(pkt(1, 4)) {
		t.Fatal("late packet accepted")
	}
	b.Push(pkt(1, 6))
	if b.Push(pkt(1, 6)) {
		t.Fatal("duplicate accepted")
	}
	if s := b.Stats(); s.Late != 2 || s.Duplicate != 1 || s.Played != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestJitterSSRCChange checks that a new source restarts the buffer instead
// of being mixed with the old one's sequence numbers.
func TestJitterSSRCChange(t *testing.T) {
	b := New(WithDepth(1))
	b.Push(pkt(1, 100))
	b.Push(pkt(2, 7))
	f, ok := b.Pop()
	if !ok || f.SSRC != 2 || f.Seq != 7 {
		t.Fatalf("after SSRC change got %+v, %v", f, ok)
	}
	if b.Stats().Resets != 1 {
		t.Fatalf("resets %d", b.Stats().Resets)
	}
}

func equal(a, b []out) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func BenchmarkJitterPushPop(b *testing.B) {
	buf := New()
	p := pkt(1, 0)
	p.Payload = make([]byte, 160)
	b.ReportAllocs()
	seq := uint16(0)
	for b.Loop() {
		p.SequenceNumber = seq
		p.Timestamp = uint32(seq) * 160
		seq++
		buf.Push(p)
		buf.Pop()
	}
}
